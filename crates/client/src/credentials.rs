//! `$HOME/.gren/user`: the session tokens the client holds, one entry per
//! registry, readable only by the user (mode 0600). A token in
//! `GREN_REGISTRY_TOKEN` (an automation token, in CI) wins over it, so a
//! machine needs no login and no file.

use super::{CliError, CliResult};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;

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

/// What git's credential helper answers for `registry`, as a user name and
/// a password: `GREN_REGISTRY_TOKEN` (a CI job's; the registry takes any
/// user name) without reading the login file, else the login.
pub fn git_credentials(registry: &str) -> CliResult<Option<(String, String)>> {
    if let Some(token) = token_from_env() {
        return Ok(Some(("gren-registry".to_string(), token)));
    }
    Ok(stored(registry)?.map(|entry| (entry.email, entry.token)))
}

/// The token for `registry`, or an error telling how to get one.
pub fn token_for(registry: &str) -> CliResult<String> {
    optional_token(registry)?.ok_or_else(|| {
        CliError(format!(
            "You are not logged in to {registry}.\nLog in with `gren-registry login`, or set {TOKEN_ENV}."
        ))
    })
}

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
