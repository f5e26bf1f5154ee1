//! Packages over git's smart HTTP protocol (`/git/<author>/<project>.git`, and `/github/…` for linked identities),
//! as the unmodified Gren compiler fetches them once `setup-git` sent
//! https://github.com/ to the registry: installs with the real compiler,
//! private packages through the credential helper, revocations and fresh
//! publishes as the next `ls-remote` sees them, the fallback for authors the
//! registry does not have (a second registry here), refusals, and
//! `admin fsck` on the repositories. Every git run has its own HOME and
//! global configuration; nothing reaches the network.

use crate::client::gren_compiler;
use crate::common::bundles::{gunzip, real_bundle, synthetic};
use crate::common::operator::admin;
use crate::common::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Whether git is here; without it the registry does not start. Under CI
/// its absence fails the test instead.
pub(crate) fn git_installed() -> bool {
    let found = Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "git is required under CI");
        eprintln!("note: git is not installed; skipping this test");
    }
    found
}

/// Someone with git and the Gren compiler: their own HOME (`~/.gren/user`)
/// and global git configuration.
struct Developer {
    home: tempfile::TempDir,
    registry: String,
}

impl Developer {
    fn new(server: &Server) -> Developer {
        Developer {
            home: tempfile::tempdir().unwrap(),
            registry: server.base.clone(),
        }
    }

    fn gitconfig(&self) -> PathBuf {
        self.home.path().join(".gitconfig")
    }

    /// `command` with this person's HOME and git configuration only.
    fn env(&self, command: &mut Command) {
        clear_registry_env(command);
        command
            .env("HOME", self.home.path())
            .env("GIT_CONFIG_GLOBAL", self.gitconfig())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GREN_REGISTRY_URL", &self.registry)
            .stdin(Stdio::null());
    }

    fn git(&self, args: &[&str]) -> Output {
        let mut command = Command::new("git");
        self.env(&mut command);
        command.args(args).current_dir(self.home.path()).output().unwrap()
    }

    fn registry_command(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gren-registry"));
        self.env(&mut command);
        command.args(args).output().unwrap()
    }

    /// Logged in as `email` with `token` (what `login` stores).
    fn logged_in(&self, email: &str, token: &str) {
        let dir = self.home.path().join(".gren");
        std::fs::create_dir_all(&dir).unwrap();
        let entries = json!([{ "registry": self.registry, "email": email, "token": token }]);
        write_json(&dir.join("user"), &entries);
    }

    fn setup_git(&self) -> String {
        let out = self.registry_command(&["setup-git"]);
        assert!(out.status.success(), "setup-git: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// Only the rewrite, without the credential helper.
    fn rewrite_github_only(&self) {
        let key = format!("url.{}/github/.insteadOf", self.registry);
        assert!(
            self.git(&["config", "--global", &key, "https://github.com/"])
                .status
                .success()
        );
    }

    /// The tags `ls-remote` lists for `author/project`, as GitHub's URL.
    fn remote_tags(&self, package: &str) -> Vec<String> {
        let url = format!("https://github.com/{package}.git");
        let out = self.git(&["ls-remote", "--tags", &url]);
        assert!(out.status.success(), "ls-remote {package}: {}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .filter_map(|line| line.split_once("\trefs/tags/").map(|(_, tag)| tag.to_string()))
            .collect()
    }

    /// `git clone --branch <version> --depth 1`, as the compiler runs it.
    fn clone(&self, package: &str, version: &str) -> (Output, PathBuf) {
        let dir = self
            .home
            .path()
            .join(format!("clone-{}-{version}", package.replace('/', "_")));
        let url = format!("https://github.com/{package}.git");
        let out = self.git(&[
            "clone",
            "--quiet",
            "--branch",
            version,
            "--depth",
            "1",
            &url,
            dir.to_str().unwrap(),
        ]);
        (out, dir)
    }

    /// `gren package install` in `app`, with git as this person set it up.
    fn compiler_install(&self, app: &Path) -> Output {
        let mut command = Command::new("node");
        self.env(&mut command);
        command
            .arg(gren_compiler())
            .args(["package", "install"])
            .current_dir(app)
            // The backend binary is not needed to install: nothing is downloaded.
            .env("GREN_BIN", "/bin/true")
            .output()
            .unwrap()
    }
}

/// The bundle the compiler would make of `bundle`'s project: the published
/// bytes an install must give back.
fn compiler_made(bundle: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    gren_registry_client::project::unpack(bundle, dir.path()).unwrap();
    gren_registry_client::project::build_bundle(dir.path()).unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A registry whose unknown authors are nobody's (no fallback).
fn registry() -> Server {
    Server::with_env(&[("GREN_REGISTRY_GIT_FALLBACK", "")])
}

/// Creates `identity` for a new user and returns their token.
fn publisher(server: &Server, email: &str, identity: &str) -> String {
    let token = server.login(email);
    let created = server.post_json("/publishing-identity", &json!({ "name": identity }), Some(&token));
    assert_eq!(created.status, 200, "{}", created.text());
    token
}

/// The GitHub owner id an operator links `gren-lang` to in these tests.
const GREN_LANG_OWNER_ID: &str = "12345";

/// A registry with `env` whose `gren-lang` an operator created before it
/// started, linked to the GitHub owner of that name (so that `setup-git`
/// users get it for github.com/gren-lang/), with team@gren-lang.org its
/// admin; and the admin's token.
fn with_linked_gren_lang(env: &[(&str, &str)]) -> (Server, String) {
    let server = Server::with_setup(env, |dir| {
        admin(
            dir,
            &[
                "identity",
                "create",
                "gren-lang",
                "--admin",
                "team@gren-lang.org",
                "--github-owner-id",
                GREN_LANG_OWNER_ID,
            ],
        )
        .success();
    });
    let token = server.login("team@gren-lang.org");
    (server, token)
}

/// A registry (without fallback) where the Gren team published `files`
/// (`true`: privately), and the team's token; `None` without git.
fn gren_lang_registry(files: &[(&str, bool)]) -> Option<(Server, String)> {
    if !git_installed() {
        return None;
    }
    let (server, token) = with_linked_gren_lang(&[("GREN_REGISTRY_GIT_FALLBACK", "")]);
    for (file, private) in files {
        publish(&server, &token, file, *private);
    }
    Some((server, token))
}

fn publish(server: &Server, token: &str, file: &str, private: bool) {
    let path = if private { "/packages?private=true" } else { "/packages" };
    publish_to(server, token, path, &real_bundle(file));
}

#[track_caller]
fn publish_to(server: &Server, token: &str, path: &str, bundle: &[u8]) {
    let headers = [
        ("Authorization", &format!("Bearer {token}")[..]),
        ("Content-Type", "application/gzip"),
    ];
    let published = server.send("POST", path, &headers, bundle);
    assert_eq!(published.status, 201, "{path}: {}", published.text());
}

/// A node application on compiler 0.6.3 needing `direct` and `indirect`.
fn application(direct: serde_json::Value, indirect: serde_json::Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    let outline = json!({
        "type": "application",
        "platform": "node",
        "source-directories": ["src"],
        "gren-version": "0.6.3",
        "dependencies": { "direct": direct, "indirect": indirect }
    });
    write_json(&dir.path().join("gren.json"), &outline);
    dir
}

#[track_caller]
fn assert_installed_as_published(app: &Path, expected: &[(&str, Vec<u8>)]) {
    for (file, published) in expected {
        let installed = std::fs::read(app.join("gren_packages").join(file))
            .unwrap_or_else(|err| panic!("gren_packages/{file}: {err}"));
        assert!(
            gunzip(&installed) == gunzip(published),
            "{file} differs from the published bundle"
        );
    }
}

const CORE: &str = "gren_lang_core__7_0_0.pkg.gz";
const URL: &str = "gren_lang_url__6_0_0.pkg.gz";
const NODE: &str = "gren_lang_node__6_1_0.pkg.gz";

fn core_node_and_url() -> tempfile::TempDir {
    application(
        json!({ "gren-lang/core": "7.0.0", "gren-lang/node": "6.1.0" }),
        json!({ "gren-lang/url": "6.0.0" }),
    )
}

#[test]
fn the_compiler_installs_an_application_whose_dependencies_all_come_from_the_registry() {
    let Some((server, token)) = gren_lang_registry(&[(CORE, false), (URL, false), (NODE, false)]) else {
        return;
    };
    let developer = Developer::new(&server);
    developer.logged_in("team@gren-lang.org", &token);
    developer.setup_git();
    let app = core_node_and_url();
    let out = developer.compiler_install(app.path());
    assert!(
        out.status.success(),
        "gren package install:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let expected: Vec<(&str, Vec<u8>)> = [CORE, URL, NODE].map(|file| (file, real_bundle(file))).into();
    assert_installed_as_published(app.path(), &expected);
}

#[test]
fn a_private_dependency_installs_after_setup_git_and_fails_without_it() {
    let Some((server, token)) = gren_lang_registry(&[(CORE, false), (URL, true), (NODE, false)]) else {
        return;
    };
    let developer = Developer::new(&server);
    developer.logged_in("team@gren-lang.org", &token);
    developer.rewrite_github_only();
    let app = core_node_and_url();
    let refused = developer.compiler_install(app.path());
    assert!(!refused.status.success(), "a private package needs credentials");
    // The rewrite works (the public packages came through the registry);
    // only the private one failed.
    let said = format!("{}{}", text(&refused.stdout), text(&refused.stderr));
    assert!(
        said.contains("gren-lang/core") && said.contains("gren-lang/node"),
        "{said}"
    );
    assert!(said.contains("I was trying to install gren-lang/url"), "{said}");
    assert!(!app.path().join("gren_packages").join(URL).exists());

    let said = developer.setup_git();
    assert!(said.contains("credential"), "{said}");
    assert!(
        !std::fs::read_to_string(developer.gitconfig()).unwrap().contains(&token),
        "no token in .gitconfig"
    );
    let out = developer.compiler_install(app.path());
    assert!(
        out.status.success(),
        "after setup-git:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_installed_as_published(app.path(), &[(URL, real_bundle(URL))]);

    // Someone logged in who is no member of gren-lang: as if it did not exist.
    let stranger = Developer::new(&server);
    stranger.logged_in("stranger@example.com", &server.login("stranger@example.com"));
    stranger.setup_git();
    let out = stranger.git(&["ls-remote", "https://github.com/gren-lang/url.git"]);
    assert!(
        !out.status.success() && text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_revoked_version_is_neither_listed_nor_clonable() {
    let Some((server, token)) = gren_lang_registry(&[("gren_lang_core__6_0_1.pkg.gz", false), (CORE, false)]) else {
        return;
    };
    let developer = Developer::new(&server);
    developer.rewrite_github_only();
    assert_eq!(developer.remote_tags("gren-lang/core"), ["6.0.1", "7.0.0"]);
    let (cloned, old_clone) = developer.clone("gren-lang/core", "6.0.1");
    assert!(cloned.status.success(), "{}", text(&cloned.stderr));
    let head = developer.git(&["-C", old_clone.to_str().unwrap(), "rev-parse", "HEAD"]);
    let old_commit = text(&head.stdout).trim().to_string();

    let revoked = server.post_json(
        "/packages/gren-lang/core/6.0.1/revoke",
        &json!({ "reason": "test" }),
        Some(&token),
    );
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    assert_eq!(developer.remote_tags("gren-lang/core"), ["7.0.0"]);
    let (refused, _) = developer.clone("gren-lang/core", "6.0.1");
    assert!(!refused.status.success(), "a revoked version cannot be cloned");
    // Nor fetched by its commit id, which is in no repository any more.
    let (cloned, clone) = developer.clone("gren-lang/core", "7.0.0");
    assert!(cloned.status.success(), "{}", text(&cloned.stderr));
    let fetch = developer.git(&[
        "-C",
        clone.to_str().unwrap(),
        "fetch",
        "--depth",
        "1",
        "origin",
        &old_commit,
    ]);
    assert!(!fetch.status.success(), "the revoked commit {old_commit} was fetched");
}

#[test]
fn a_version_published_a_moment_ago_is_listed_and_clones_to_the_files_of_its_bundle() {
    let Some((server, token)) = gren_lang_registry(&[("gren_lang_url__5_0_0.pkg.gz", false)]) else {
        return;
    };
    let developer = Developer::new(&server);
    developer.rewrite_github_only();
    assert_eq!(developer.remote_tags("gren-lang/url"), ["5.0.0"]);
    publish(&server, &token, URL, false);
    assert_eq!(developer.remote_tags("gren-lang/url"), ["5.0.0", "6.0.0"]);
    // The protocol before v2 (git's default since 2.26) is served too.
    let v0 = developer.git(&[
        "-c",
        "protocol.version=0",
        "ls-remote",
        "--tags",
        "https://github.com/gren-lang/url.git",
    ]);
    assert_eq!(text(&v0.stdout).lines().count(), 2, "{}", text(&v0.stderr));

    let (cloned, dir) = developer.clone("gren-lang/url", "6.0.0");
    assert!(cloned.status.success(), "{}", text(&cloned.stderr));
    let rebuilt = gren_registry_client::project::bundle_json(&dir).unwrap();
    assert!(
        rebuilt == gunzip(&real_bundle(URL)),
        "the clone rebuilds the bundle byte for byte"
    );
    let files = developer.git(&["-C", dir.to_str().unwrap(), "ls-files"]);
    let files = text(&files.stdout);
    assert!(
        files
            .lines()
            .all(|file| file == "gren.json" || file.starts_with("src/")),
        "{files}"
    );
    let parents = developer.git(&["-C", dir.to_str().unwrap(), "log", "-1", "--format=%an %at %s"]);
    assert!(
        text(&parents.stdout).starts_with("gren-lang "),
        "{}",
        text(&parents.stdout)
    );
}

#[test]
fn a_package_of_an_unknown_author_is_fetched_through_the_fallback() {
    if !git_installed() {
        return;
    }
    // The "GitHub" of this test: a second registry holding blaix's package.
    let elsewhere = registry();
    let blaix = publisher(&elsewhere, "blaix@example.com", "blaix");
    let tiny = compiler_made(&synthetic("blaix/tiny", "1.0.0", "x"));
    publish_to(&elsewhere, &blaix, "/packages", &tiny);
    let (server, token) = with_linked_gren_lang(&[("GREN_REGISTRY_GIT_FALLBACK", &format!("{}/git", elsewhere.base))]);
    for file in [CORE, URL, NODE] {
        publish(&server, &token, file, false);
    }
    let developer = Developer::new(&server);
    developer.logged_in("team@gren-lang.org", &token);
    developer.setup_git();
    assert_eq!(developer.remote_tags("blaix/tiny"), ["1.0.0"]);
    let app = application(
        json!({ "gren-lang/core": "7.0.0", "gren-lang/node": "6.1.0", "blaix/tiny": "1.0.0" }),
        json!({ "gren-lang/url": "6.0.0" }),
    );
    let out = developer.compiler_install(app.path());
    assert!(
        out.status.success(),
        "gren package install:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_installed_as_published(
        app.path(),
        &[("blaix_tiny__1_0_0.pkg.gz", tiny), (CORE, real_bundle(CORE))],
    );
    let redirected = server.get("/git/blaix/tiny.git/info/refs?service=git-upload-pack", None);
    assert_eq!(redirected.status, 302);
    assert_eq!(
        redirected.header("location"),
        Some(
            &format!(
                "{}/git/blaix/tiny.git/info/refs?service=git-upload-pack",
                elsewhere.base
            )[..]
        )
    );
    // What a request line carries beyond visible ASCII is passed on
    // percent-encoded: a header cannot hold it as it is.
    let odd = server.get("/git/blaix/tïny.git/info/refs?service=git-upload-pack", None);
    assert_eq!(odd.status, 302, "{}", odd.text());
    let expected = format!(
        "{}/git/blaix/t%C3%AFny.git/info/refs?service=git-upload-pack",
        elsewhere.base
    );
    assert_eq!(odd.header("location"), Some(expected.as_str()));
}

#[test]
fn an_identity_that_only_took_a_github_name_is_not_served_for_it_unless_trusted_by_name() {
    if !git_installed() {
        return;
    }
    // The "GitHub" of this test: a second registry, where the real blaix
    // published blaix/tiny.
    let github = registry();
    let blaix = publisher(&github, "blaix@example.com", "blaix");
    publish_to(
        &github,
        &blaix,
        "/packages",
        &compiler_made(&synthetic("blaix/tiny", "1.0.0", "x")),
    );
    // Here someone else took the names blaix and torvalds first.
    let (server, team) = with_linked_gren_lang(&[("GREN_REGISTRY_GIT_FALLBACK", &format!("{}/git", github.base))]);
    publish(&server, &team, CORE, false);
    let squatter = publisher(&server, "squatter@example.com", "blaix");
    let forged = compiler_made(&synthetic("blaix/tiny", "2.0.0", "y"));
    publish_to(&server, &squatter, "/packages", &forged);
    let created = server.post_json("/publishing-identity", &json!({ "name": "torvalds" }), Some(&squatter));
    assert_eq!(created.status, 200, "{}", created.text());

    let developer = Developer::new(&server);
    developer.logged_in("team@gren-lang.org", &team);
    let said = developer.setup_git();
    assert!(said.contains("linked to the GitHub owner"), "{said}");
    assert_eq!(
        developer.remote_tags("blaix/tiny"),
        ["1.0.0"],
        "the real blaix's package, from GitHub"
    );
    assert_eq!(
        developer.remote_tags("gren-lang/core"),
        ["7.0.0"],
        "a linked identity is served"
    );
    let refs = |tree: &str, package: &str| {
        server.get(
            &format!("/{tree}/{package}.git/info/refs?service=git-upload-pack"),
            None,
        )
    };
    let redirected = refs("github", "torvalds/linux");
    assert_eq!(
        redirected.status, 302,
        "no password prompt for someone else's GitHub name"
    );
    assert_eq!(
        redirected.header("location"),
        Some(
            &format!(
                "{}/git/torvalds/linux.git/info/refs?service=git-upload-pack",
                github.base
            )[..]
        )
    );
    assert_eq!(refs("github", "blaix/tiny").status, 302);
    assert_eq!(
        refs("git", "blaix/tiny").status,
        200,
        "the registry's own URLs are unchanged"
    );
    assert_eq!(refs("git", "torvalds/linux").status, 401);

    // Trusting this registry's blaix, by name: its GitHub URLs come from here.
    let trusted = developer.registry_command(&["setup-git", "--identity", "blaix"]);
    assert!(trusted.status.success(), "{}", text(&trusted.stderr));
    assert!(
        text(&trusted.stdout).contains("you trust the identity blaix"),
        "{}",
        text(&trusted.stdout)
    );
    assert_eq!(developer.remote_tags("blaix/tiny"), ["2.0.0"]);
    assert_eq!(developer.remote_tags("gren-lang/core"), ["7.0.0"]);
    let refused = developer.registry_command(&["setup-git", "--identity", "not/a name"]);
    assert!(!refused.status.success() && text(&refused.stderr).contains("--identity"));
    let removed = developer.registry_command(&["setup-git", "--remove"]);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    let left = std::fs::read_to_string(developer.gitconfig()).unwrap();
    assert!(!left.contains(&server.base), "--remove takes the trust out too: {left}");
}

#[test]
fn strangers_cannot_tell_private_packages_from_missing_ones_and_pushes_are_refused() {
    let Some((server, token)) = gren_lang_registry(&[(URL, true)]) else {
        return;
    };
    let refs = |project: &str, token: Option<&str>| {
        let path = format!("/git/gren-lang/{project}.git/info/refs?service=git-upload-pack");
        let basic = token.map(|token| format!("Basic {}", base64_of(&format!("anyone:{token}"))));
        let headers: Vec<(&str, &str)> = basic.iter().map(|value| ("Authorization", value.as_str())).collect();
        server.send("GET", &path, &headers, b"")
    };
    let private = refs("url", None);
    let missing = refs("nope", None);
    assert_eq!(private.status, 401);
    assert_eq!(
        private.header("www-authenticate"),
        Some("Basic realm=\"gren-registry\"")
    );
    assert_eq!((missing.status, missing.text()), (private.status, private.text()));
    assert_eq!(refs("url", Some("gren_not-a-token")).status, 401);
    // A name no package can have asks for no password.
    let impossible = refs("no_such_name!", None);
    impossible.assert_error(404, "package_not_found");
    assert_eq!(impossible.header("www-authenticate"), None);

    let stranger = server.login("stranger@example.com");
    let private = refs("url", Some(&stranger));
    let missing = refs("nope", Some(&stranger));
    private.assert_error(404, "package_not_found");
    assert_eq!((missing.status, missing.text()), (private.status, private.text()));
    let member = refs("url", Some(&token));
    assert_eq!(member.status, 200, "{}", member.text());
    assert_eq!(
        member.header("content-type"),
        Some("application/x-git-upload-pack-advertisement")
    );

    let push = server.get("/git/gren-lang/url.git/info/refs?service=git-receive-pack", None);
    push.assert_error(403, "forbidden");
    server
        .send("POST", "/git/gren-lang/url.git/git-receive-pack", &[], b"0000")
        .assert_error(403, "forbidden");
    // No fallback configured: an author the registry does not have is absent.
    server
        .get("/git/somebody/else.git/info/refs?service=git-upload-pack", None)
        .assert_error(404, "package_not_found");
}

#[test]
fn a_ci_job_fetches_a_private_package_with_an_automation_token_that_has_its_download_scope() {
    let Some((server, session)) = gren_lang_registry(&[(URL, true)]) else {
        return;
    };
    let mint = |name: &str, scopes: &[&str]| {
        let body = json!({ "name": name, "scopes": scopes, "expiresInDays": 1 });
        let reply = server.post_json("/user/tokens", &body, Some(&session));
        assert_eq!(reply.status, 201, "{}", reply.text());
        reply.json()["token"].as_str().unwrap().to_string()
    };
    // A CI machine: no login, the token in its environment only.
    let ci_job = |token: &str| {
        let ci = Developer::new(&server);
        let mut command = Command::new(env!("CARGO_BIN_EXE_gren-registry"));
        ci.env(&mut command);
        let out = command
            .arg("setup-git")
            .env("GREN_REGISTRY_TOKEN", token)
            .output()
            .unwrap();
        assert!(out.status.success(), "setup-git with a token: {}", text(&out.stderr));
        let mut command = Command::new("git");
        ci.env(&mut command);
        command
            .env("GREN_REGISTRY_TOKEN", token)
            .args(["ls-remote", "--tags", "https://github.com/gren-lang/url.git"])
            .output()
            .unwrap()
    };
    let allowed = ci_job(&mint("installs", &["download:gren-lang"]));
    assert!(allowed.status.success(), "{}", text(&allowed.stderr));
    assert!(
        text(&allowed.stdout).contains("refs/tags/"),
        "{}",
        text(&allowed.stdout)
    );
    // Its owner's membership is not enough: the token must have the scope,
    // and is told which, as by the API.
    let unscoped_token = mint("publishes", &["publish:gren-lang/*"]);
    let unscoped = ci_job(&unscoped_token);
    assert!(
        !unscoped.status.success() && text(&unscoped.stderr).contains("403"),
        "{}",
        text(&unscoped.stderr)
    );
    let basic = format!("Basic {}", base64_of(&format!("ci:{unscoped_token}")));
    let refused = server.send(
        "GET",
        "/git/gren-lang/url.git/info/refs?service=git-upload-pack",
        &[("Authorization", &basic)],
        b"",
    );
    refused.assert_error(403, "missing_scope");
    assert!(refused.text().contains("download:gren-lang"), "{}", refused.text());
}

/// `~/.git-credentials` of `developer`, as `credential.helper store` keeps
/// it: one `<scheme>://<user>:<password>@<host>` a line (percent-encoded).
fn stored_credentials(developer: &Developer) -> String {
    std::fs::read_to_string(developer.home.path().join(".git-credentials")).unwrap_or_default()
}

/// The passwords of `stored_credentials` (as kept: tokens need no
/// percent-encoding).
fn stored_passwords(developer: &Developer) -> Vec<String> {
    stored_credentials(developer)
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("://")?;
            let (user_and_password, _) = rest.rsplit_once('@')?;
            let (_, password) = user_and_password.split_once(':')?;
            Some(password.to_string())
        })
        .collect()
}

#[test]
fn a_storing_credential_helper_after_setup_git_keeps_only_a_short_lived_git_token_that_cannot_use_the_api() {
    let Some((server, session)) = gren_lang_registry(&[(URL, true)]) else {
        return;
    };
    let developer = Developer::new(&server);
    developer.logged_in("team@gren-lang.org", &session);
    let said = developer.setup_git();
    assert!(!said.contains("plain text"), "no storing helper yet: {said}");
    // Configured after setup-git: git runs it after ours, and hands it what
    // ours answered, to keep in ~/.git-credentials in plain text.
    let store = developer.git(&["config", "--global", "credential.helper", "store"]);
    assert!(store.status.success(), "{}", text(&store.stderr));
    let before = unix_now();
    let fetched = developer.git(&["ls-remote", "--tags", "https://github.com/gren-lang/url.git"]);
    assert!(fetched.status.success(), "{}", text(&fetched.stderr));
    assert!(
        text(&fetched.stdout).contains("refs/tags/6.0.0"),
        "{}",
        text(&fetched.stdout)
    );
    let kept = stored_credentials(&developer);
    assert!(
        !kept.contains(&session),
        "the login token is in ~/.git-credentials: {kept}"
    );
    let passwords = stored_passwords(&developer);
    assert_eq!(passwords.len(), 1, "{kept}");
    let git_token = &passwords[0];
    assert!(git_token.starts_with("gren_git_"), "{kept}");

    // The helper says when it expires, minutes from now, so storing
    // helpers that keep the expiry drop it.
    let host = server.base.strip_prefix("http://").unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_gren-registry"));
    developer.env(&mut command);
    let mut child = command
        .args(["git-credential", "get"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let question = format!("protocol=http\nhost={host}\n\n");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), question.as_bytes()).unwrap();
    let answer = text(&child.wait_with_output().unwrap().stdout);
    let expiry: u64 = answer
        .lines()
        .find_map(|line| line.strip_prefix("password_expiry_utc="))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no password_expiry_utc: {answer}"));
    assert!(
        (before + 60..=unix_now() + 15 * 60).contains(&expiry),
        "{expiry} is minutes from {before}"
    );
    assert!(!answer.contains(&session), "{answer}");

    // What the file holds fetches (until it expires), and nothing else.
    let basic = format!("Basic {}", base64_of(&format!("x:{git_token}")));
    let refs = server.send(
        "GET",
        "/git/gren-lang/url.git/info/refs?service=git-upload-pack",
        &[("Authorization", &basic)],
        b"",
    );
    assert_eq!(refs.status, 200, "{}", refs.text());
    server
        .post_json("/publishing-identity", &json!({ "name": "stolen" }), Some(git_token))
        .assert_error(401, "unauthorized");
    server.get("/user", Some(git_token)).assert_error(401, "unauthorized");
    let mint = json!({ "name": "stolen", "scopes": ["download:gren-lang"], "expiresInDays": 1 });
    server
        .post_json("/user/tokens", &mint, Some(git_token))
        .assert_error(401, "unauthorized");
    server
        .post_json("/user/git-token", &json!({}), Some(git_token))
        .assert_error(401, "unauthorized");
    server
        .publish(git_token, &real_bundle(CORE))
        .assert_error(401, "unauthorized");

    // setup-git, run again, warns of the storing helper.
    let said = developer.setup_git();
    assert!(
        said.contains("credential.helper") && said.contains("store") && said.contains("plain text"),
        "{said}"
    );
}

#[test]
fn a_git_token_fetches_what_its_owner_may_read_until_it_expires_or_its_login_ends() {
    if !git_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("GREN_REGISTRY_GIT_FALLBACK", ""),
        ("GREN_REGISTRY_GIT_TOKEN_SECONDS", "3"),
    ];
    let server = Server::start_in(dir.path(), &env);
    let session = publisher(&server, "team@gren-lang.org", "gren-lang");
    publish(&server, &session, URL, true);
    let git_token = |bearer: &str| {
        let minted = server.post_json("/user/git-token", &json!({}), Some(bearer));
        assert_eq!(minted.status, 201, "{}", minted.text());
        let answer = minted.json();
        assert_eq!(answer["expiresIn"], 3, "{answer}");
        assert!(answer["expires"].is_string(), "{answer}");
        answer["token"].as_str().unwrap().to_string()
    };
    let refs = |token: &str| {
        let basic = format!("Basic {}", base64_of(&format!("x:{token}")));
        let path = "/git/gren-lang/url.git/info/refs?service=git-upload-pack";
        server.send("GET", path, &[("Authorization", &basic)], b"")
    };
    let from_session = git_token(&session);
    assert!(from_session.starts_with("gren_git_"), "{from_session}");
    assert_eq!(refs(&from_session).status, 200);
    // Stored hashed, as every token: the secret is in no file.
    assert!(files_containing(dir.path(), &from_session).is_empty());
    // A stranger's shows what the stranger may see.
    let stranger = server.login("stranger@example.com");
    refs(&git_token(&stranger)).assert_error(404, "package_not_found");
    // One made from an automation token can do no more than it.
    let make = |scopes: &[&str]| {
        let body = json!({ "name": scopes[0], "scopes": scopes, "expiresInDays": 1 });
        let reply = server.post_json("/user/tokens", &body, Some(&session));
        assert_eq!(reply.status, 201, "{}", reply.text());
        reply.json()["token"].as_str().unwrap().to_string()
    };
    assert_eq!(refs(&git_token(&make(&["download:gren-lang"]))).status, 200);
    refs(&git_token(&make(&["publish:gren-lang/*"]))).assert_error(403, "missing_scope");
    // Its login ended, it stops at once.
    let other_session = server.login("team@gren-lang.org");
    let from_other = git_token(&other_session);
    assert_eq!(refs(&from_other).status, 200);
    assert_eq!(server.delete("/session", Some(&other_session)).status, 204);
    refs(&from_other).assert_error(401, "unauthorized");
    // And it expires.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let expired = refs(&from_session);
    expired.assert_error(401, "unauthorized");
    assert!(expired.text().contains("expired"), "{}", expired.text());
    // Minting one per fetch accumulates none: expired ones are pruned, and
    // a user holds a bounded number of live ones.
    for _ in 0..30 {
        git_token(&session);
    }
    let user = read_json(&dir.path().join("users/team@gren-lang.org.json"));
    let listed = user["git_tokens"].as_array().unwrap().len();
    assert_eq!(listed, 20, "{user}");
    let records = files_under(&dir.path().join("git-tokens")).len();
    assert_eq!(records, listed + 1, "the team's and the stranger's one");
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn setup_git_without_a_login_fetches_public_packages_of_a_linked_identity() {
    let Some((server, _token)) = gren_lang_registry(&[(URL, false)]) else {
        return;
    };
    let developer = Developer::new(&server);
    let said = developer.setup_git();
    assert!(said.contains("private ones will need one"), "{said}");
    let config = std::fs::read_to_string(developer.gitconfig()).unwrap();
    assert!(config.contains(&format!("{}/github/", server.base)), "{config}");
    assert!(config.contains("git-credential"), "the helper is set up too: {config}");
    let out = developer.git(&["ls-remote", "https://github.com/gren-lang/url.git"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("refs/tags/6.0.0"), "{}", text(&out.stdout));
}

#[test]
fn setup_git_is_idempotent_never_writes_the_token_and_remove_undoes_it() {
    if !git_installed() {
        return;
    }
    let server = registry();
    let developer = Developer::new(&server);
    let removed = developer.registry_command(&["setup-git", "--remove"]);
    assert!(
        removed.status.success(),
        "removing from a machine with no global git configuration: {}",
        text(&removed.stderr)
    );
    // Not logged in: set up all the same, for public packages.
    let said = developer.setup_git();
    assert!(
        said.contains("private ones will need one.\nLog in with `gren-registry login`."),
        "{said}"
    );
    let removed = developer.registry_command(&["setup-git", "--remove"]);
    assert!(
        text(&removed.stdout).starts_with("Removed"),
        "{}",
        text(&removed.stdout)
    );
    let token = server.login("me@example.com");
    developer.logged_in("me@example.com", &token);
    // What setup-git wrote before the /github/ tree (every identity for
    // GitHub's names) is replaced.
    let earlier = format!("url.{}/git/.insteadOf", server.base);
    assert!(
        developer
            .git(&["config", "--global", &earlier, "https://github.com/"])
            .status
            .success()
    );
    developer.setup_git();
    let once = std::fs::read_to_string(developer.gitconfig()).unwrap();
    assert!(!once.contains(&format!("{}/git/", server.base)), "{once}");
    developer.setup_git();
    assert_eq!(
        std::fs::read_to_string(developer.gitconfig()).unwrap(),
        once,
        "a second run changes nothing"
    );
    assert!(!once.contains(&token), "{once}");
    let rewrite = developer.git(&[
        "config",
        "--global",
        "--get-all",
        &format!("url.{}/github/.insteadof", server.base),
    ]);
    assert_eq!(text(&rewrite.stdout), "https://github.com/\n");

    let run_helper = |env: &[(&str, &str)], operation: &str, question: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gren-registry"));
        developer.env(&mut command);
        let mut child = command
            .envs(env.iter().copied())
            .args(["git-credential", operation])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), question.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let ask_with = |env: &[(&str, &str)], operation: &str, question: &str| {
        let out = run_helper(env, operation, question);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let ask = |operation: &str, question: &str| ask_with(&[], operation, question);
    // The answer's user name, and its password: a git token, never the
    // token it was made from, with its expiry.
    let git_answer = |answer: &str, made_from: &str| {
        let lines: Vec<&str> = answer.lines().collect();
        assert_eq!(lines.len(), 3, "{answer}");
        assert!(lines[1].starts_with("password=gren_git_"), "{answer}");
        assert!(lines[2].starts_with("password_expiry_utc="), "{answer}");
        assert!(!answer.contains(made_from), "{answer}");
        lines[0].strip_prefix("username=").unwrap().to_string()
    };
    let host = server.base.strip_prefix("http://").unwrap();
    let answer = ask("get", &format!("protocol=http\nhost={host}\npath=git/a/b.git\n\n"));
    assert_eq!(git_answer(&answer, &token), "me@example.com");
    // A CI secret beside the login wins, and a login file that cannot be
    // read does not stand in its way.
    let created = server.post_json("/publishing-identity", &json!({ "name": "me" }), Some(&token));
    assert_eq!(created.status, 200, "{}", created.text());
    let body = json!({ "name": "ci", "scopes": ["download:me"], "expiresInDays": 1 });
    let minted = server.post_json("/user/tokens", &body, Some(&token));
    assert_eq!(minted.status, 201, "{}", minted.text());
    let ci_token = minted.json()["token"].as_str().unwrap().to_string();
    let ci = [("GREN_REGISTRY_TOKEN", ci_token.as_str())];
    let question = format!("protocol=http\nhost={host}\n\n");
    assert_eq!(git_answer(&ask_with(&ci, "get", &question), &ci_token), "gren-registry");
    let login_file = developer.home.path().join(".gren/user");
    let login = std::fs::read(&login_file).unwrap();
    std::fs::write(&login_file, b"not json").unwrap();
    assert_eq!(git_answer(&ask_with(&ci, "get", &question), &ci_token), "gren-registry");
    std::fs::write(&login_file, login).unwrap();
    // A CI secret the registry refuses: no answer (git asks the next
    // helper, or fails), and why on standard error, which git shows.
    let refused = run_helper(&[("GREN_REGISTRY_TOKEN", "gren_token_ci")], "get", &question);
    assert_eq!(text(&refused.stdout), "");
    assert!(
        text(&refused.stderr).contains("not a Gren registry token"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(
        ask("get", "protocol=https\nhost=github.com\n\n"),
        "",
        "nothing for another host"
    );
    assert_eq!(
        ask("get", &format!("protocol=https\nhost={host}\n\n")),
        "",
        "nor another scheme"
    );
    assert_eq!(
        ask(
            "store",
            &format!("protocol=http\nhost={host}\nusername=x\npassword=y\n\n")
        ),
        ""
    );
    assert_eq!(ask("erase", &format!("protocol=http\nhost={host}\n\n")), "");

    // Fetches from GitHub go to the registry; pushes still go to GitHub.
    let repository = developer.home.path().join("pushing");
    assert!(
        developer
            .git(&["init", "--quiet", repository.to_str().unwrap()])
            .status
            .success()
    );
    let in_repository = |args: &[&str]| {
        let mut all = vec!["-C", repository.to_str().unwrap()];
        all.extend_from_slice(args);
        text(&developer.git(&all).stdout)
    };
    in_repository(&["remote", "add", "origin", "https://github.com/a/b.git"]);
    let fetch_url = in_repository(&["remote", "get-url", "origin"]);
    assert_eq!(fetch_url, format!("{}/github/a/b.git\n", server.base));
    let push_url = in_repository(&["remote", "get-url", "--push", "origin"]);
    assert_eq!(push_url, "https://github.com/a/b.git\n");

    let removed = developer.registry_command(&["setup-git", "--remove"]);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    assert!(
        text(&removed.stdout).starts_with("Removed"),
        "{}",
        text(&removed.stdout)
    );
    let left = std::fs::read_to_string(developer.gitconfig()).unwrap();
    assert!(!left.contains(&server.base), "{left}");
    assert!(!left.to_ascii_lowercase().contains("pushinsteadof"), "{left}");
    let again = developer.registry_command(&["setup-git", "--remove"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stdout).starts_with("Nothing to remove"),
        "a second --remove says nothing was there: {}",
        text(&again.stdout)
    );

    // Someone who pushes to GitHub over SSH keeps doing so: no rule of ours
    // is added beside theirs, and removing ours leaves theirs.
    let theirs = "url.git@github.com:.pushInsteadOf";
    assert!(
        developer
            .git(&["config", "--global", theirs, "https://github.com/"])
            .status
            .success()
    );
    developer.setup_git();
    let push_url = in_repository(&["remote", "get-url", "--push", "origin"]);
    assert_eq!(push_url, "git@github.com:a/b.git\n");
    let removed = developer.registry_command(&["setup-git", "--remove"]);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    let kept = developer.git(&["config", "--global", "--get-all", theirs]);
    assert_eq!(text(&kept.stdout), "https://github.com/\n");
}

#[test]
fn fsck_checks_the_repositories_against_the_records_and_repair_rebuilds_them() {
    if !git_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_in(&data, &[("GREN_REGISTRY_GIT_FALLBACK", "")]);
    let token = publisher(&server, "team@gren-lang.org", "gren-lang");
    publish(&server, &token, CORE, false);
    // The registry's own URLs serve every identity, linked or not.
    let developer = Developer::new(&server);
    let url = format!("{}/git/gren-lang/core.git", server.base);
    let listed = developer.git(&["ls-remote", "--tags", &url]);
    assert!(
        text(&listed.stdout).contains("refs/tags/7.0.0"),
        "{}",
        text(&listed.stderr)
    );
    server.stop();
    admin(
        &data,
        &["identity", "link-github", "gren-lang", "--owner-id", GREN_LANG_OWNER_ID],
    )
    .success();
    let server = Server::start_in(&data, &[("GREN_REGISTRY_GIT_FALLBACK", "")]);
    let developer = Developer::new(&server);
    developer.rewrite_github_only();
    assert_eq!(developer.remote_tags("gren-lang/core"), ["7.0.0"]);
    server.stop();

    let repositories = data.join("repositories/gren-lang/core");
    let current = std::fs::read_dir(&repositories)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    admin(&data, &["fsck"]).success();
    // A tag moved by hand, and a generation the records moved past.
    let tag = Command::new("git")
        .args(["update-ref", "refs/tags/7.0.0", "HEAD~0^{tree}"])
        .current_dir(&current)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(tag.status.success(), "{}", text(&tag.stderr));
    std::fs::create_dir(repositories.join("0123.git")).unwrap();
    let found = admin(&data, &["fsck"]).failure();
    found
        .assert_stdout_has("repositories/gren-lang/core: the repository differs from its records")
        .assert_stdout_has("repositories/gren-lang/core/0123.git: a repository the records moved past");
    let repaired = admin(&data, &["fsck", "--repair"]).success();
    repaired.assert_stdout_has("repaired");
    admin(&data, &["fsck"]).success();
    assert!(!repositories.join("0123.git").exists());
}
