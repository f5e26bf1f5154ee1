//! `/git/<author>/<project>.git/…`: packages served over git's smart HTTP
//! protocol, so that the Gren compiler, told by one `insteadOf` line to
//! fetch `https://github.com/` from here, installs from the registry
//! unchanged. Fetching only; git itself answers (`git http-backend`, see
//! [`crate::http::cgi`]) from the package's repository, brought up to date
//! with the records first ([`gren_registry_core::repository`]).
//!
//! Two trees of the same repositories:
//! - `/git/<author>/…`, the registry's own URLs: every identity's packages;
//! - `/github/<author>/…`, where `setup-git` sends `https://github.com/`:
//!   only identities linked to the GitHub owner of their name
//!   ([`identity::GitHubLink`]). Identity names are first come, first
//!   served, GitHub's belong to someone: an identity that merely took the
//!   name `blaix` must not answer for `github.com/blaix/…`. Every other
//!   author there is sent on as if unknown. (A person who trusts an
//!   unlinked identity sends its GitHub names to `/git/<name>/` themself:
//!   `setup-git --identity <name>`.)
//!
//! Who may fetch what:
//! - an author this tree does not serve: `302` to `GREN_REGISTRY_GIT_FALLBACK`
//!   with the same path below the tree (GitHub by default), `404` when that
//!   is empty;
//! - a public package: anyone;
//! - a private package: members of its identity, with any role, by HTTP
//!   Basic with a token as the password (any user name): a git token, which
//!   `gren-registry git-credential` mints for git from the login or from
//!   `GREN_REGISTRY_TOKEN` (a CI job's) and which only these routes take;
//!   or, as older clients send them, a session or an automation token. An
//!   automation token, or a git token made from one, needs the identity's
//!   `download` scope (without it: `403 missing_scope`, as from the API:
//!   the rule is the API's, [`package::readable`]). git sends
//!   credentials only after a `401`; an anonymous request for a private
//!   package and for a project that does not exist get the same `401`, so
//!   strangers cannot tell which private packages exist; a signed-in
//!   non-member gets `404` for both.
//! - pushes: `403`.

use crate::app::App;
use crate::http::cgi;
use crate::http::errors::{ApiError, ApiResult};
use crate::http::handlers::package;
use crate::http::{Caller, Request, Response};
use base64::Engine;
use gren_registry_core::auth::session::Authenticated;
use gren_registry_core::budget;
use gren_registry_core::error::ErrorCode;
use gren_registry_core::identity::{self, IdentityName};
use gren_registry_core::package::PackageName;
use std::time::Duration;

const UPLOAD_PACK: &str = "git-upload-pack";

/// Which authors a tree of git URLs serves (see the module's header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tree {
    /// `/git/`: every identity.
    Registry,
    /// `/github/`: identities linked to the GitHub owner of their name.
    GitHub,
}

/// `GET /git/…/info/refs?service=git-upload-pack`: the refs (v0), or the
/// capabilities (v2).
pub fn info_refs(app: &App, request: &Request, _caller: &Caller) -> ApiResult<Response> {
    info_refs_in(Tree::Registry, app, request)
}

/// `POST /git/…/git-upload-pack`: what git fetches (refs in v2, then packs).
pub fn upload_pack(app: &App, request: &Request, _caller: &Caller) -> ApiResult<Response> {
    fetch(Tree::Registry, app, request, UPLOAD_PACK)
}

/// `GET /github/…/info/refs`: as [`info_refs`], for linked identities.
pub fn github_info_refs(app: &App, request: &Request, _caller: &Caller) -> ApiResult<Response> {
    info_refs_in(Tree::GitHub, app, request)
}

/// `POST /github/…/git-upload-pack`: as [`upload_pack`], for linked identities.
pub fn github_upload_pack(app: &App, request: &Request, _caller: &Caller) -> ApiResult<Response> {
    fetch(Tree::GitHub, app, request, UPLOAD_PACK)
}

fn info_refs_in(tree: Tree, app: &App, request: &Request) -> ApiResult<Response> {
    match request.query_param("service").as_deref() {
        Some(UPLOAD_PACK) => fetch(tree, app, request, "info/refs"),
        Some("git-receive-pack") => Err(push_refused()),
        _ => Err(ApiError::new(
            403,
            ErrorCode::Forbidden,
            "Only git's smart HTTP protocol is served here (git 1.6.6 or newer).",
        )),
    }
}

/// `POST …/git-receive-pack`, in either tree: never.
pub fn receive_pack(_app: &App, _request: &Request, _caller: &Caller) -> ApiResult<Response> {
    Err(push_refused())
}

fn push_refused() -> ApiError {
    ApiError::new(
        403,
        ErrorCode::Forbidden,
        "The registry's repositories are made from published bundles and take no pushes; publish with `gren-registry publish`.",
    )
}

/// Answers a fetch request for the path's package with git, once the
/// caller may read it.
fn fetch(tree: Tree, app: &App, request: &Request, service: &str) -> ApiResult<Response> {
    let author = request.param("author");
    let repository = request.param("repository");
    let project = repository.strip_suffix(".git").unwrap_or(repository);
    if !serves(tree, app, author)? {
        return fallback(app, request);
    }
    // A name that can never be a package is not worth a password prompt.
    let name = PackageName::from_parts(author, project).ok_or_else(not_found)?;
    let caller = basic_caller(app, request)?;
    match package::readable(app, &name, caller.as_ref()) {
        Ok(_) => {}
        // Hidden or absent: only a caller who gave no credentials may have
        // one that would show it. (A member's token without the download
        // scope is told which scope it lacks, as by the API.)
        Err(refused) if refused.code == ErrorCode::PackageNotFound => {
            return Err(if caller.is_none() {
                credentials_needed()
            } else {
                not_found()
            });
        }
        Err(refused) => return Err(refused),
    }
    let _slot = app.git_processes.reserve(1, budget::WAIT)?;
    let repository = app
        .repositories
        .current(&app.store, &app.packages.catalog, &name)?
        .ok_or_else(not_found)?;
    let time_limit = Duration::from_secs(app.config.git_timeout_secs);
    cgi::http_backend(&app.repositories.git, request, repository.path(), service, time_limit)
}

/// Whether `tree` serves `author`'s packages: an identity of this
/// registry, and for [`Tree::GitHub`] one linked to that GitHub owner.
fn serves(tree: Tree, app: &App, author: &str) -> ApiResult<bool> {
    let Ok(name) = IdentityName::parse(author) else {
        return Ok(false);
    };
    Ok(match identity::load(&app.store, &name)? {
        None => false,
        Some(found) => tree == Tree::Registry || found.github.is_some(),
    })
}

/// The signed-in user of HTTP Basic credentials (the password is a git
/// token, as `gren-registry git-credential` gives, or a session or
/// automation token) or a bearer token; `None` without credentials,
/// `401` with bad ones (git then asks its credential helpers again).
fn basic_caller(app: &App, request: &Request) -> ApiResult<Option<Authenticated>> {
    let token = match request.header("authorization") {
        None => return Ok(None),
        Some(value) => basic_password(value).or_else(|| request.bearer_token().map(str::to_string)),
    };
    gren_registry_core::auth::authenticate_for_git(&app.store, token.as_deref())
        .map(Some)
        .map_err(|err| credentials_needed().with_detail("reason", err.to_string()))
}

/// The password of an `Authorization: Basic` header.
fn basic_password(value: &str) -> Option<String> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':').map(|(_, password)| password.to_string())
}

fn credentials_needed() -> ApiError {
    ApiError::new(
        401,
        ErrorCode::Unauthorized,
        "This repository needs credentials: run `gren-registry setup-git` once you are logged in.",
    )
    .with_header("WWW-Authenticate", "Basic realm=\"gren-registry\"")
}

fn not_found() -> ApiError {
    ApiError::not_found(
        ErrorCode::PackageNotFound,
        "There is no such package, or it is private and you are not a member of its identity.",
    )
}

/// Bytes a `Location` cannot carry as they are (non-ASCII is always encoded).
const NOT_IN_A_LOCATION: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'`');

/// `302` to the same path below the tree (`/git` or `/github`) at
/// `GREN_REGISTRY_GIT_FALLBACK`, or `404`.
fn fallback(app: &App, request: &Request) -> ApiResult<Response> {
    let base = app.config.git_fallback.trim_end_matches('/');
    if base.is_empty() {
        return Err(not_found());
    }
    // The router matched `/<tree>/…`: what follows the first segment.
    let below_tree = request.path.trim_start_matches('/');
    let path = below_tree.find('/').map_or(below_tree, |slash| &below_tree[slash..]);
    let query = if request.query.is_empty() {
        String::new()
    } else {
        format!("?{}", request.query)
    };
    // The path is passed on as sent, but a header value must be visible
    // ASCII: what else the request line carried is percent-encoded.
    let path = percent_encoding::utf8_percent_encode(path, NOT_IN_A_LOCATION);
    let query = percent_encoding::utf8_percent_encode(&query, NOT_IN_A_LOCATION);
    Ok(Response::no_content_with(302).with_header("Location", format!("{base}{path}{query}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_basic_password_is_the_token_whatever_the_user_name() {
        let header = |credentials: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            )
        };
        assert_eq!(basic_password(&header("me:gren_abc")), Some("gren_abc".into()));
        assert_eq!(basic_password(&header(":gren_abc:d")), Some("gren_abc:d".into()));
        assert_eq!(basic_password(&header("no password")), None);
        assert_eq!(basic_password("Bearer gren_abc"), None);
        assert_eq!(basic_password("Basic !!!"), None);
    }
}
