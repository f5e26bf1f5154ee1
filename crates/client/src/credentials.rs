//! `$HOME/.gren/user`: the session tokens the client holds, one entry per
//! registry, readable only by the user (mode 0600): a JSON array of
//! `{"registry", "email", "token"}`, in the order of the logins, rewritten
//! whole (temporary file, fsync, rename) at each login and logout. The last
//! entry, the most recent login, is the default: the registry a command
//! talks to when neither `--registry` nor `GREN_REGISTRY_URL` names one
//! (`crate::registry`). A token in
//! `GREN_REGISTRY_TOKEN` (an automation token, in CI) wins over it, so a
//! machine needs no login and no file. git is given neither: only git
//! tokens made from them ([`git_credentials`]).

use super::remote::RemoteRegistry;
use super::{CliError, CliResult};
use gren_registry_core::api::GitTokenAnswer;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub registry: String,
    pub email: String,
    pub token: String,
}

fn path() -> CliResult<PathBuf> {
    let home = std::env::var_os("HOME")
        .ok_or_else(|| CliError("HOME is not set, so there is nowhere to keep the login.".into()))?;
    Ok(PathBuf::from(home).join(".gren").join("user"))
}

/// Every stored login, the oldest first: the last is the default.
pub fn logins() -> CliResult<Vec<Entry>> {
    load()
}

/// The registry of the most recent login, if there is one.
pub fn default_registry() -> CliResult<Option<String>> {
    Ok(load()?.pop().map(|entry| entry.registry))
}

fn load() -> CliResult<Vec<Entry>> {
    let path = path()?;
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| {
            CliError(format!(
                "{} is damaged ({err}); delete it and log in again.",
                path.display()
            ))
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(CliError(format!("Cannot read {}: {err}", path.display()))),
    }
}

/// Writes the entries atomically, creating the file with mode 0600.
fn save(entries: &[Entry]) -> CliResult<()> {
    let path = path()?;
    let dir = path.parent().expect("the file is in ~/.gren");
    let failed = |err: std::io::Error| CliError(format!("Cannot write {}: {err}", path.display()));
    create_private_dir(dir).map_err(failed)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-user")
        .tempfile_in(dir)
        .map_err(failed)?;
    set_private(temp.as_file()).map_err(failed)?;
    let mut bytes = serde_json::to_vec_pretty(entries).map_err(|err| CliError(err.to_string()))?;
    bytes.push(b'\n');
    temp.write_all(&bytes).map_err(failed)?;
    temp.as_file().sync_all().map_err(failed)?;
    temp.persist(&path).map_err(|err| failed(err.error))?;
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn set_private(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_private(_file: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

pub fn stored(registry: &str) -> CliResult<Option<Entry>> {
    Ok(load()?.into_iter().find(|entry| entry.registry == registry))
}

/// The environment variable holding a token (a CI secret) that the client
/// uses instead of the stored login.
pub const TOKEN_ENV: &str = "GREN_REGISTRY_TOKEN";

/// `GREN_REGISTRY_TOKEN`, when set and not empty.
fn token_from_env() -> Option<String> {
    std::env::var(TOKEN_ENV)
        .ok()
        .map(|token| token.trim().to_string())
        .filter(|token| !token.is_empty())
}

/// The token for `registry`: `GREN_REGISTRY_TOKEN`, else the stored login.
pub fn optional_token(registry: &str) -> CliResult<Option<String>> {
    match token_from_env() {
        Some(token) => Ok(Some(token)),
        None => Ok(stored(registry)?.map(|entry| entry.token)),
    }
}

/// What git's credential helper answers.
#[derive(Debug, Clone, PartialEq)]
pub struct GitCredentials {
    /// The login's address, or `gren-registry` for `GREN_REGISTRY_TOKEN`
    /// (the registry takes any user name).
    pub username: String,
    /// A git token (`gren_git_…`).
    pub password: String,
    /// When it expires, in seconds since 1970 by this machine's clock
    /// (git's `password_expiry_utc`).
    pub expiry_utc: u64,
}

/// What git's credential helper answers for `registry`: a git token
/// (`POST /user/git-token`: minutes long, good for git's fetches only, with
/// the rights of what made it) made from `GREN_REGISTRY_TOKEN` (a CI job's,
/// without reading the login file), else from the login; `None` with
/// neither. Never the login or the automation token itself: git hands what
/// a helper answers to every helper configured after it, and
/// `credential.helper store` writes it to `~/.git-credentials` in plain
/// text. One is minted for each question (the registry bounds how many a
/// user holds), so no secret is kept beyond the login.
pub fn git_credentials(registry: &str) -> CliResult<Option<GitCredentials>> {
    let (username, token) = match token_from_env() {
        Some(token) => ("gren-registry".to_string(), token),
        None => match stored(registry)? {
            Some(entry) => (entry.email, entry.token),
            None => return Ok(None),
        },
    };
    // The expiry by this machine's clock, from when it was asked: git
    // compares it with this clock, which may not be the registry's.
    let asked = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let answer: GitTokenAnswer =
        RemoteRegistry::new(registry).post("/user/git-token", &serde_json::json!({}), Some(&token))?;
    Ok(Some(GitCredentials {
        username,
        password: answer.token,
        expiry_utc: asked + answer.expires_in,
    }))
}

/// The token for `registry`, or an error telling how to get one.
pub fn token_for(registry: &str) -> CliResult<String> {
    optional_token(registry)?.ok_or_else(|| {
        CliError(format!(
            "You are not logged in to {registry}.\n{}",
            log_in_step(registry)
        ))
    })
}

/// What to do without a token: in CI (`CI` set, as every CI service
/// does), set the automation token; elsewhere, log in.
pub fn log_in_step(registry: &str) -> String {
    if std::env::var_os("CI").is_some_and(|ci| !ci.is_empty()) {
        format!(
            "Set {TOKEN_ENV} to an automation token (made with `{}`).",
            crate::registry::command(registry, "token create")
        )
    } else {
        format!("Log in with `{}`.", crate::registry::command(registry, "login"))
    }
}

/// Stores a login as the most recent, hence the default.
pub fn remember(entry: Entry) -> CliResult<()> {
    let mut entries = load()?;
    entries.retain(|existing| existing.registry != entry.registry);
    entries.push(entry);
    save(&entries)
}

pub fn forget(registry: &str) -> CliResult<()> {
    let mut entries = load()?;
    entries.retain(|existing| existing.registry != registry);
    save(&entries)
}
