//! `setup-git [--identity NAME]… [--remove]` and `git-credential`: the Gren
//! compiler fetches every package from
//! `https://github.com/<author>/<project>.git` with git; entries in the
//! user's global git configuration make it fetch from the registry instead,
//! unchanged:
//!
//! ```text
//! [url "<registry>/github/"]
//!     insteadOf = https://github.com/
//! [url "<registry>/git/<NAME>/"]          # one per --identity NAME
//!     insteadOf = https://github.com/<NAME>/
//! [url "https://github.com/"]
//!     pushInsteadOf = https://github.com/
//! [credential "<registry>"]
//!     helper =
//!     helper = !'<this program>' git-credential --registry '<registry>'
//! ```
//!
//! The registry answers under `/github/` only for identities linked to the
//! GitHub owner of their name, and redirects every other author to GitHub,
//! so the rest of the ecosystem still installs and nobody who merely took
//! an identity name here gets to answer for that GitHub account. Someone
//! who trusts an unlinked identity anyway names it with `--identity`: git
//! prefers the longest matching `insteadOf`, so that owner's URLs go to the
//! registry's own `/git/<NAME>/`, where every identity is served. (Before
//! the `/github/` tree existed, `setup-git` sent all of GitHub to `/git/`;
//! running it again replaces that entry.)
//!
//! The `pushInsteadOf` gives a push to GitHub
//! a push URL of its own (itself), which git does not send through the
//! fetch rewrite: pushes still go to GitHub. It is not added when another
//! `pushInsteadOf` already sends GitHub's pushes somewhere (SSH, say). The empty `helper` clears helpers named
//! before for this registry (a keychain must not answer with, or store, an
//! old token); ours reads the token when git asks (`GREN_REGISTRY_TOKEN`, a
//! CI job's automation token with the `download` scope of the private
//! packages it installs, else the login in `~/.gren/user`), so no token is
//! ever written into `.gitconfig`, and answers with a git token made from
//! it, good for fetches only and for minutes: git hands the answer to the
//! helpers configured after ours, and `store` writes it down in plain text
//! (`setup-git` warns of such a helper). `setup-git` can run again
//! (same result); `--remove` takes all of it out.

use super::credentials;
use super::{CliError, CliResult};
use gren_registry_core::identity::IdentityName;
use std::io::BufRead;
use std::process::Command;

const GITHUB: &str = "https://github.com/";
/// `GITHUB` as a value pattern of `git config`: only our own entry is
/// replaced or removed, never another the user keeps under the same key.
const GITHUB_EXACTLY: &str = r"^https://github\.com/$";

/// The registry's tree for `https://github.com/` (linked identities only).
fn github_tree(registry: &str) -> String {
    format!("{registry}/github/")
}

/// The registry's own tree, where every identity is served.
fn registry_tree(registry: &str) -> String {
    format!("{registry}/git/")
}

pub fn set_up(registry: &str, identities: &[String]) -> CliResult<()> {
    let trusted = identities
        .iter()
        .map(|name| IdentityName::parse(name).map_err(|err| CliError(format!("--identity: {err}"))))
        .collect::<CliResult<Vec<_>>>()?;
    // Public packages need no login; the credential helper answers nothing
    // until there is one (so git asks no one else for this host's private
    // packages either), hence only a word here, not a refusal.
    let logged_in = credentials::optional_token(registry)?.is_some();
    let base = github_tree(registry);
    let insteadof = format!("url.{base}.insteadOf");
    let helper = format!("credential.{registry}.helper");
    git_config(&["--replace-all", &insteadof, GITHUB])?;
    remove_earlier_rewrite(registry)?;
    for name in &trusted {
        git_config(&[
            "--replace-all",
            &identity_rewrite(registry, name),
            &format!("{GITHUB}{name}/"),
        ])?;
    }
    let pushes_elsewhere = !other_rewrites(GITHUB, "pushinsteadof")?.is_empty();
    if !pushes_elsewhere {
        git_config(&["--replace-all", &push_rewrite(), GITHUB, GITHUB_EXACTLY])?;
    }
    unset_all(&helper)?;
    git_config(&["--add", &helper, ""])?;
    git_config(&["--add", &helper, &helper_command(registry)?])?;
    println!("Set up git (your global configuration, ~/.gitconfig or $GIT_CONFIG_GLOBAL):");
    println!("  {insteadof} = {GITHUB}: the Gren compiler fetches packages through {registry};");
    println!("    it answers for identities linked to the GitHub owner of their name and sends the rest to GitHub.");
    for name in &trusted {
        println!(
            "  {} = {GITHUB}{name}/: you trust the identity {name} of {registry} with every github.com/{name}/ URL,",
            identity_rewrite(registry, name)
        );
        println!("    whether or not it is that GitHub owner (undo with --remove).");
    }
    if !pushes_elsewhere {
        println!("  {} = {GITHUB}: pushes to GitHub still go to GitHub.", push_rewrite());
    }
    println!(
        "  {helper}: `gren-registry git-credential` gives git, for private packages, tokens made from {} or your login",
        credentials::TOKEN_ENV
    );
    println!("    that only fetch and expire in minutes; no token is written into the configuration.");
    println!("Undo with `gren-registry setup-git --remove`.");
    for other in other_github_rewrites(&base)? {
        println!("Note: git also sends {GITHUB} to {other}; remove that to use this registry.");
    }
    if !logged_in {
        println!(
            "You are not logged in to {registry}: public packages install without a login, private ones will need one.\n{}",
            credentials::log_in_step(registry)
        );
    }
    warn_of_storing_helpers();
    Ok(())
}

pub fn remove(registry: &str) -> CliResult<()> {
    let base = github_tree(registry);
    let helper = format!("credential.{registry}.helper");
    let ours = [
        format!("url.{base}.insteadOf"),
        format!("url.{}.insteadOf", registry_tree(registry)),
        helper,
    ];
    let had_any = !identity_rewrites(registry)?.is_empty() || ours.iter().any(|key| is_set(key));
    if !had_any {
        println!("Nothing to remove: your global git configuration has no entry of setup-git for {registry}.");
        return Ok(());
    }
    unset_all(&format!("url.{base}.insteadOf"))?;
    remove_earlier_rewrite(registry)?;
    for url in identity_rewrites(registry)? {
        unset_all(&format!("url.{url}.insteadOf"))?;
        remove_section_if_empty(&format!("url.{url}"))?;
    }
    git_config(&["--unset-all", &push_rewrite(), GITHUB_EXACTLY])?;
    unset_all(&format!("credential.{registry}.helper"))?;
    remove_section_if_empty(&format!("url.{base}"))?;
    remove_section_if_empty(&format!("url.{GITHUB}"))?;
    remove_section_if_empty(&format!("credential.{registry}"))?;
    println!(
        "Removed from your global git configuration: the {GITHUB} rewrites to {registry} and its credential helper."
    );
    Ok(())
}

/// Whether the global configuration has `key` (git's exit 1: it has not).
fn is_set(key: &str) -> bool {
    git_config(&["--get-all", key]).is_ok_and(|out| out.status.success() && !out.stdout.is_empty())
}

/// The key sending `https://github.com/<name>/` to the registry's `/git/<name>/`.
fn identity_rewrite(registry: &str, name: &IdentityName) -> String {
    format!("url.{}{name}/.insteadOf", registry_tree(registry))
}

/// The URLs below the registry's own tree that an `--identity` rewrite
/// sends a GitHub owner's URLs to.
fn identity_rewrites(registry: &str) -> CliResult<Vec<String>> {
    let tree = registry_tree(registry);
    let listed = git_config(&["--get-regexp", r"^url\..*\.insteadof$"])?;
    Ok(String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter_map(|(key, _)| key.strip_prefix("url.")?.strip_suffix(".insteadof"))
        .filter(|url| url.len() > tree.len() && url.starts_with(&tree))
        .map(str::to_string)
        .collect())
}

/// Takes out the rewrite of all of GitHub to `/git/` that `setup-git`
/// wrote before the `/github/` tree existed (it gave every identity
/// GitHub's names).
fn remove_earlier_rewrite(registry: &str) -> CliResult<()> {
    let tree = registry_tree(registry);
    git_config(&["--unset-all", &format!("url.{tree}.insteadOf"), GITHUB_EXACTLY])?;
    remove_section_if_empty(&format!("url.{tree}"))
}

/// git's credential-helper protocol: `get` reads `key=value` lines and
/// answers `username`, `password` (a git token, minutes long, for fetches
/// only: [`credentials::git_credentials`]) and `password_expiry_utc` (so
/// that git and the storing helpers that keep it drop it once expired)
/// when they name this registry's scheme
/// and host, and nothing otherwise; `store` and `erase` do nothing (the
/// token lives in the environment or `~/.gren/user`).
pub fn credential(registry: &str, operation: &str) -> CliResult<()> {
    let mut asked = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|err| CliError(format!("Cannot read git's question: {err}")))?;
        if line.is_empty() {
            break;
        }
        if let Some((key, value)) = line.split_once('=') {
            asked.push((key.to_string(), value.to_string()));
        }
    }
    if operation != "get" {
        return Ok(());
    }
    let field = |name: &str| {
        asked
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let Some((scheme, host)) = registry.split_once("://") else {
        return Ok(());
    };
    let host = host.split('/').next().unwrap_or_default();
    let ours = field("protocol") == Some(scheme) && field("host").is_some_and(|asked| asked.eq_ignore_ascii_case(host));
    if !ours {
        return Ok(());
    }
    if let Some(answer) = credentials::git_credentials(registry)? {
        println!(
            "username={}\npassword={}\npassword_expiry_utc={}",
            answer.username, answer.password, answer.expiry_utc
        );
    }
    Ok(())
}

/// `!'<this program>' git-credential --registry '<registry>'`, quoted for
/// the shell git runs it with.
fn helper_command(registry: &str) -> CliResult<String> {
    let program = std::env::current_exe().map_err(|err| CliError(format!("Cannot find this program: {err}")))?;
    let quote = |text: &str| format!("'{}'", text.replace('\'', r"'\''"));
    Ok(format!(
        "!{} git-credential --registry {}",
        quote(&program.to_string_lossy()),
        quote(registry)
    ))
}

/// `git config --global <args>`; its output.
fn git_config(args: &[&str]) -> CliResult<std::process::Output> {
    let output = Command::new("git")
        .arg("config")
        .arg("--global")
        .args(args)
        .output()
        .map_err(|err| CliError(format!("Cannot run git ({err}). Install git first.")))?;
    // 1: no such section or key; 5: nothing to unset. Both are fine here.
    match output.status.code() {
        Some(0 | 1 | 5) => Ok(output),
        _ => Err(CliError(format!(
            "git config {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))),
    }
}

fn unset_all(key: &str) -> CliResult<()> {
    git_config(&["--unset-all", key]).map(drop)
}

/// Removes `[section]` once no key is left in it (recent versions of git
/// drop an emptied section themselves).
fn remove_section_if_empty(section: &str) -> CliResult<()> {
    // Git cannot list a global file that does not exist (exit 128): then
    // there is no section to remove either.
    let Ok(listed) = git_config(&["--name-only", "--list"]) else {
        return Ok(());
    };
    let prefix = format!("{}.", section.to_ascii_lowercase());
    let used = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .any(|key| key.to_ascii_lowercase().starts_with(&prefix));
    if !used {
        // Fails only when there is no such section: nothing to remove.
        let _ = Command::new("git")
            .args(["config", "--global", "--remove-section", section])
            .output();
    }
    Ok(())
}

/// Other URLs that git sends https://github.com/ to.
fn other_github_rewrites(base: &str) -> CliResult<Vec<String>> {
    other_rewrites(base, "insteadof")
}

/// The URLs other than `base` whose rewrite `kind` (`insteadof`,
/// `pushinsteadof`) takes https://github.com/.
fn other_rewrites(base: &str, kind: &str) -> CliResult<Vec<String>> {
    let listed = git_config(&["--get-regexp", &format!(r"^url\..*\.{kind}$")])?;
    let suffix = format!(".{kind}");
    Ok(String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(_, value)| *value == GITHUB)
        .filter_map(|(key, _)| key.strip_prefix("url.")?.strip_suffix(&suffix).map(str::to_string))
        .filter(|url| url != base)
        .collect())
}

/// The key of the rewrite that keeps pushes to GitHub going to GitHub.
fn push_rewrite() -> String {
    format!("url.{GITHUB}.pushInsteadOf")
}

/// Warns of credential helpers that write what git gives them to a file in
/// plain text (git's `store`), which git hands our answer to when they come
/// after ours. What they keep of this registry is a git token that only
/// fetches and expires in minutes, but other sites' passwords are there too.
/// `cache` (memory only, 15 minutes by default) and the system keychains
/// (encrypted) are not warned of. Best effort, in every configuration file
/// git reads here: a warning that cannot be made must not undo the set-up.
fn warn_of_storing_helpers() {
    let Ok(listed) = Command::new("git")
        .args(["config", "--get-regexp", r"^credential\..*helper$"])
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&listed.stdout).lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        if writes_plain_text(value) {
            println!(
                "Warning: your git configuration has {key} = {value}, which writes the passwords git is given to a file in plain text (~/.git-credentials by default)."
            );
            println!(
                "  From this registry it gets only tokens that fetch and expire in minutes, never your login; other sites' passwords are kept there too."
            );
            println!("  `git config --global credential.helper cache` keeps them in memory instead.");
        }
    }
}

/// Whether the credential helper `value` is git's `store` (`store`,
/// `store --file …`, `git-credential-store` or a path to it, `!git
/// credential-store …`).
fn writes_plain_text(value: &str) -> bool {
    let mut words = value.trim_start_matches('!').split_whitespace();
    let program = words.next().unwrap_or_default();
    let program = program.rsplit('/').next().unwrap_or(program);
    matches!(program, "store" | "git-credential-store")
        || (program == "git" && words.next() == Some("credential-store"))
}

#[cfg(test)]
mod tests {
    use super::writes_plain_text;

    #[test]
    fn gits_store_helper_is_told_from_helpers_that_keep_nothing_in_plain_text() {
        for store in [
            "store",
            "store --file ~/.my-credentials",
            "/usr/lib/git-core/git-credential-store",
            "!git credential-store --file x",
        ] {
            assert!(writes_plain_text(store), "{store}");
        }
        for other in [
            "",
            "cache",
            "cache --timeout=900",
            "osxkeychain",
            "manager",
            "libsecret",
            "!gren-registry git-credential",
        ] {
            assert!(!writes_plain_text(other), "{other}");
        }
    }
}
