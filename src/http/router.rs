//! The routing table: which handler serves which method and path, with 404
//! for unknown paths and 405 (with `Allow`) for known paths.

use super::handlers::{health, identity, invitation, package, session as session_handlers, user};
use super::server::{self, Allowance, Service};
use super::{Request, Response};
use crate::app::App;
use crate::auth::session;
use crate::budget;
use crate::error::ErrorCode;
use crate::http::errors::{ApiError, ApiResult};
use std::sync::Arc;

/// JSON bodies are small; anything larger is refused before it is read.
pub const JSON_BODY_LIMIT: u64 = 64 * 1024;

/// Every resource the registry serves, with its path parameters decoded.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Health,
    Session,
    SessionConfirm,
    SessionFetch,
    User,
    UserSessions,
    UserSession(String),
    UserInvitations,
    Identities,
    Identity(String),
    IdentityMember(String, String),
    IdentityAudit(String),
    IdentityInvitation(String),
    Packages,
    Package(String, String),
    PackageLatest(String, String),
    PackageRevoke(String, String),
    Version(String, String, String),
    VersionBundle(String, String, String),
    VersionPrevious(String, String, String),
    VersionRevoke(String, String, String),
    Events,
}

impl Route {
    fn resolve(segments: &[String]) -> Option<Route> {
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        Some(match segments.as_slice() {
            ["health"] => Route::Health,
            ["session"] | ["users"] => Route::Session,
            ["session", "confirm"] => Route::SessionConfirm,
            ["session", "fetch"] => Route::SessionFetch,
            ["user"] => Route::User,
            ["user", "sessions"] => Route::UserSessions,
            ["user", "sessions", id] => Route::UserSession(id.to_string()),
            ["user", "invitations"] => Route::UserInvitations,
            ["publishing-identity"] => Route::Identities,
            ["publishing-identity", name] => Route::Identity(name.to_string()),
            ["publishing-identity", name, "members", email] => {
                Route::IdentityMember(name.to_string(), email.to_string())
            }
            ["publishing-identity", name, "audit"] => Route::IdentityAudit(name.to_string()),
            ["publishing-identity", name, "invitation"] => Route::IdentityInvitation(name.to_string()),
            ["packages"] => Route::Packages,
            ["packages", a, p] => Route::Package(a.to_string(), p.to_string()),
            ["packages", a, p, "latest"] => Route::PackageLatest(a.to_string(), p.to_string()),
            ["packages", a, p, "revoke"] => Route::PackageRevoke(a.to_string(), p.to_string()),
            ["packages", a, p, v] => Route::Version(a.to_string(), p.to_string(), v.to_string()),
            ["packages", a, p, v, "bundle"] => Route::VersionBundle(a.to_string(), p.to_string(), v.to_string()),
            ["packages", a, p, v, "previous"] => Route::VersionPrevious(a.to_string(), p.to_string(), v.to_string()),
            ["packages", a, p, v, "revoke"] => Route::VersionRevoke(a.to_string(), p.to_string(), v.to_string()),
            ["events"] => Route::Events,
            _ => return None,
        })
    }

    /// The methods this resource answers (HEAD is implied by GET).
    fn methods(&self) -> &'static [&'static str] {
        match self {
            Route::Health
            | Route::User
            | Route::UserSessions
            | Route::UserInvitations
            | Route::Identity(_)
            | Route::IdentityAudit(_) => &["GET"],
            Route::Identities | Route::PackageRevoke(..) | Route::VersionRevoke(..) => &["POST"],
            Route::Packages => &["GET", "POST"],
            Route::Package(..) => &["GET", "PATCH"],
            Route::PackageLatest(..)
            | Route::Version(..)
            | Route::VersionBundle(..)
            | Route::VersionPrevious(..)
            | Route::Events => &["GET"],
            Route::IdentityMember(..) => &["PUT", "DELETE"],
            Route::IdentityInvitation(_) => &["POST", "DELETE"],
            Route::Session => &["POST", "DELETE"],
            Route::SessionConfirm => &["GET", "POST"],
            Route::SessionFetch => &["POST"],
            Route::UserSession(_) => &["DELETE"],
        }
    }
}

/// Splits a path into percent-decoded segments; `None` when a segment does
/// not decode to UTF-8.
fn segments(path: &str) -> Option<Vec<String>> {
    path.trim_matches('/')
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        })
        .collect()
}

/// The methods a path answers, `None` for unknown paths (for fuzzing the
/// routing table without a running registry).
pub fn allowed_methods(path: &str) -> Option<&'static [&'static str]> {
    segments(path)
        .and_then(|segments| Route::resolve(&segments))
        .map(|route| route.methods())
}

fn dispatch(app: &App, request: &Request) -> ApiResult<Response> {
    let route = segments(&request.path)
        .and_then(|segments| Route::resolve(&segments))
        // The path is not echoed: error messages carry no raw request input.
        .ok_or_else(|| ApiError::not_found(ErrorCode::NotFound, "There is nothing at this path."))?;
    let method = if request.method == "HEAD" {
        "GET"
    } else {
        request.method.as_str()
    };
    if !route.methods().contains(&method) {
        let mut allow: Vec<&str> = route.methods().to_vec();
        if allow.contains(&"GET") {
            allow.push("HEAD");
        }
        return Err(ApiError::new(
            405,
            ErrorCode::MethodNotAllowed,
            format!("This method is not allowed here; use {}.", allow.join(" or ")),
        )
        .with_header("Allow", allow.join(", ")));
    }
    match (route, method) {
        (Route::Health, _) => Ok(health::get()),
        (Route::Session, "POST") => session_handlers::start(app, request),
        (Route::Session, _) => session_handlers::logout(app, request),
        (Route::SessionConfirm, "GET") => Ok(session_handlers::confirm_page(app, request)),
        (Route::SessionConfirm, _) => Ok(session_handlers::confirm(app, request)),
        (Route::SessionFetch, _) => session_handlers::fetch(app, request),
        (Route::User, _) => user::get(app, request),
        (Route::UserSessions, _) => user::sessions(app, request),
        (Route::UserSession(id), _) => user::revoke_session(app, request, &id),
        (Route::UserInvitations, _) => invitation::list(app, request),
        (Route::Identities, _) => identity::create(app, request),
        (Route::Identity(name), _) => identity::show(app, request, &name),
        (Route::IdentityMember(name, email), "PUT") => identity::set_member(app, request, &name, &email),
        (Route::IdentityMember(name, email), _) => identity::remove_member(app, request, &name, &email),
        (Route::IdentityAudit(name), _) => identity::audit(app, request, &name),
        (Route::IdentityInvitation(name), "POST") => invitation::accept(app, request, &name),
        (Route::IdentityInvitation(name), _) => invitation::decline(app, request, &name),
        (Route::Packages, "POST") => package::publish(app, request),
        (Route::Packages, _) => package::list(app, request),
        (Route::Package(a, p), "PATCH") => package::settings(app, request, &a, &p),
        (Route::Package(a, p), _) => package::show(app, request, &a, &p),
        (Route::PackageLatest(a, p), _) => package::latest(app, request, &a, &p),
        (Route::PackageRevoke(a, p), _) => package::revoke(app, request, &a, &p, None),
        (Route::Version(a, p, v), _) => package::show_version(app, request, &a, &p, &v),
        (Route::VersionBundle(a, p, v), _) => package::bundle(app, request, &a, &p, &v),
        (Route::VersionPrevious(a, p, v), _) => package::previous(app, request, &a, &p, &v),
        (Route::VersionRevoke(a, p, v), _) => package::revoke(app, request, &a, &p, Some(&v)),
        (Route::Events, _) => package::events(app, request),
    }
}

/// A bundle upload, decided before its body is read, since bodies are large:
/// only from a signed-in user, within the size limit and the user's publish
/// limit, and with a share of the budget of upload bytes in flight, held
/// until the upload is answered. A refusal here uses up no publish.
fn upload_allowance(app: &App, headers: &[(String, String)]) -> ApiResult<Allowance> {
    let caller = session::authenticate(&app.store, super::bearer_token(headers))?;
    let length = server::declared_length(headers, app.config.max_bundle_bytes)?;
    let email = caller.email.as_str();
    app.publishes_per_user.hit(email)?;
    let share = app
        .upload_bodies
        .reserve(length, budget::WAIT)
        .inspect_err(|_| app.publishes_per_user.give_back(email))?;
    Ok(Allowance {
        max_body: app.config.max_bundle_bytes,
        permit: Some(Box::new(share)),
    })
}

/// The registry as the HTTP server sees it.
pub struct Registry(pub Arc<App>);

impl Service for Registry {
    fn body_limit(&self, method: &str, path: &str, headers: &[(String, String)]) -> ApiResult<Allowance> {
        let route = segments(path).and_then(|segments| Route::resolve(&segments));
        if method == "POST" && route == Some(Route::Packages) {
            upload_allowance(&self.0, headers)
        } else {
            Ok(JSON_BODY_LIMIT.into())
        }
    }

    fn handle(&self, request: Request) -> Response {
        dispatch(&self.0, &request).unwrap_or_else(Response::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_paths_with_decoding() {
        let resolve = |path: &str| segments(path).and_then(|s| Route::resolve(&s));
        assert_eq!(resolve("/health"), Some(Route::Health));
        assert_eq!(resolve("/health/"), Some(Route::Health));
        assert_eq!(
            resolve("/user/sessions/ab%2Fcd"),
            Some(Route::UserSession("ab/cd".into()))
        );
        assert_eq!(resolve("/user/invitations"), Some(Route::UserInvitations));
        assert_eq!(
            resolve("/publishing-identity/gren-lang/invitation"),
            Some(Route::IdentityInvitation("gren-lang".into()))
        );
        assert_eq!(resolve("/nope"), None);
        assert_eq!(resolve("/user/sessions/%FF"), None);
    }
}
