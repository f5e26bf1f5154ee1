//! The route table: every method and path the registry answers, and the
//! handler that answers it, in [`ROUTES`], read top to bottom. Dispatch,
//! `404` for unknown paths, `405` with `Allow` for known paths (HEAD is
//! implied by GET), each route's body limit, what shared caches may keep of
//! its answers ([`Sharing`], applied by [`cache::apply`]) and the router's
//! fuzz target all come from it: adding a route is one line.
//!
//! A path pattern is literal segments and `:name` parameters; segments are
//! percent-decoded before they are matched, and a handler reads its
//! parameters with [`Request::param`]. Where two patterns match a path
//! (`…/:project/latest` and `…/:project/:version`), the literal segment wins
//! over the parameter, whatever the order of the table; the order only sets
//! the order of `Allow`.

use super::cache::{self, Sharing};
use super::handlers::{git, health, identity, invitation, package, session, token, user};
use super::server::{self, Allowance, Permit, Service};
use super::{Caller, Request, Response};
use crate::app::App;
use crate::http::errors::{ApiError, ApiResult};
use gren_registry_core::auth::session::Authenticated;
use gren_registry_core::budget::{self, Reservation};
use gren_registry_core::error::ErrorCode;
use std::borrow::Cow;
use std::sync::Arc;

/// JSON bodies are small; anything larger is refused before it is read.
pub const JSON_BODY_LIMIT: u64 = 64 * 1024;
/// A git fetch's request (wants, haves): git sends at most its
/// `http.postBuffer` (1 MiB by default) with a length, and larger ones
/// chunked, which the server refuses (`411`).
pub const GIT_BODY_LIMIT: u64 = 1024 * 1024;

const GET: &str = "GET";
const POST: &str = "POST";
const PUT: &str = "PUT";
const PATCH: &str = "PATCH";
const DELETE: &str = "DELETE";

/// Every route of the registry, one a line. `Allow` names a path's methods
/// in this order. `shared` routes answer about the package of their path,
/// `listing` routes about many; shared caches may keep their public answers.
#[rustfmt::skip]
pub static ROUTES: &[Route] = &[
    route(GET,    "/health",                                      health::get),
    route(POST,   "/session",                                     session::start),
    route(DELETE, "/session",                                     session::logout),
    // The upstream Gren registry's name for `/session`.
    route(POST,   "/users",                                       session::start),
    route(DELETE, "/users",                                       session::logout),
    route(GET,    "/session/confirm",                             session::confirm_page),
    route(POST,   "/session/confirm",                             session::confirm),
    route(POST,   "/session/fetch",                               session::fetch),
    route(GET,    "/user",                                        user::get),
    route(GET,    "/user/sessions",                               user::sessions),
    route(DELETE, "/user/sessions/:id",                           user::revoke_session),
    route(GET,    "/user/tokens",                                 token::list),
    route(POST,   "/user/tokens",                                 token::create),
    route(DELETE, "/user/tokens/:id",                             token::revoke),
    route(POST,   "/user/git-token",                              token::git_token),
    route(GET,    "/user/invitations",                            invitation::list),
    route(POST,   "/publishing-identity",                         identity::create),
    route(GET,    "/publishing-identity/:name",                   identity::show),
    route(PUT,    "/publishing-identity/:name/members/:email",    identity::set_member),
    route(DELETE, "/publishing-identity/:name/members/:email",    identity::remove_member),
    route(GET,    "/publishing-identity/:name/audit",             identity::audit),
    route(POST,   "/publishing-identity/:name/invitation",        invitation::accept),
    route(DELETE, "/publishing-identity/:name/invitation",        invitation::decline),
    listing(GET,  "/packages",                                    package::list),
    upload(POST,  "/packages",                                    package::publish),
    shared(GET,   "/packages/:author/:project",                   package::show),
    route(PATCH,  "/packages/:author/:project",                   package::settings),
    shared(GET,   "/packages/:author/:project/latest",            package::latest),
    route(POST,   "/packages/:author/:project/revoke",            package::revoke_package),
    shared(GET,   "/packages/:author/:project/:version",          package::show_version),
    shared(GET,   "/packages/:author/:project/:version/bundle",   package::bundle),
    shared(GET,   "/packages/:author/:project/:version/previous", package::previous),
    route(POST,   "/packages/:author/:project/:version/revoke",   package::revoke_version),
    listing(GET,  "/events",                                      package::events),
    // git's smart HTTP protocol, for fetching only (see handlers/git.rs).
    route(GET,    "/git/:author/:repository/info/refs",           git::info_refs),
    fetch(POST,   "/git/:author/:repository/git-upload-pack",     git::upload_pack),
    route(POST,   "/git/:author/:repository/git-receive-pack",    git::receive_pack),
    // The same for `https://github.com/`, which `setup-git` sends here:
    // only identities linked to that GitHub owner (see handlers/git.rs).
    route(GET,    "/github/:author/:repository/info/refs",        git::github_info_refs),
    fetch(POST,   "/github/:author/:repository/git-upload-pack",  git::github_upload_pack),
    route(POST,   "/github/:author/:repository/git-receive-pack", git::receive_pack),
];

type Handler = fn(&App, &Request, &Caller) -> ApiResult<Response>;
/// A path's parameters by name (see [`Request::param`]).
type Params = Vec<(&'static str, String)>;

/// One line of the route table.
#[derive(Debug)]
pub struct Route {
    pub method: &'static str,
    pub pattern: &'static str,
    handler: Handler,
    body: BodyKind,
    sharing: Sharing,
    /// How many segments the pattern has: most routes are passed over on
    /// this alone, without splitting the pattern for every request.
    depth: usize,
    /// Which segments are literal (see [`shape`]): between two patterns of
    /// one depth, the larger is the more specific.
    literals: u32,
}

/// What a route's body is, which sets how it is admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    /// Up to [`JSON_BODY_LIMIT`].
    Json,
    /// A bundle upload: admitted from its head ([`upload_allowance`]), with
    /// the bundle size limit.
    Bundle,
    /// A git fetch request, up to [`GIT_BODY_LIMIT`].
    GitFetch,
}

const fn route(method: &'static str, pattern: &'static str, handler: Handler) -> Route {
    let (depth, literals) = shape(pattern);
    Route {
        method,
        pattern,
        handler,
        body: BodyKind::Json,
        sharing: Sharing::None,
        depth,
        literals,
    }
}

/// A pattern's segment count, and which of its segments are literal, one
/// bit a segment with the first segment highest; counted at compile time
/// (patterns start with `/` and have no empty segment: the table's test
/// checks every one).
const fn shape(pattern: &str) -> (usize, u32) {
    let bytes = pattern.as_bytes();
    let (mut index, mut depth, mut literals) = (0, 0, 0);
    while index < bytes.len() {
        if bytes[index] == b'/' {
            depth += 1;
            let literal = index + 1 < bytes.len() && bytes[index + 1] != b':';
            literals = (literals << 1) | literal as u32;
        }
        index += 1;
    }
    (depth, literals)
}

const fn shared(method: &'static str, pattern: &'static str, handler: Handler) -> Route {
    Route {
        sharing: Sharing::Package,
        ..route(method, pattern, handler)
    }
}

const fn listing(method: &'static str, pattern: &'static str, handler: Handler) -> Route {
    Route {
        sharing: Sharing::Listing,
        ..route(method, pattern, handler)
    }
}

const fn upload(method: &'static str, pattern: &'static str, handler: Handler) -> Route {
    Route {
        body: BodyKind::Bundle,
        ..route(method, pattern, handler)
    }
}

const fn fetch(method: &'static str, pattern: &'static str, handler: Handler) -> Route {
    Route {
        body: BodyKind::GitFetch,
        ..route(method, pattern, handler)
    }
}

impl Route {
    fn pattern_segments(&self) -> impl Iterator<Item = &'static str> {
        self.pattern.split('/').filter(|segment| !segment.is_empty())
    }

    /// Whether this route's pattern matches `segments`.
    fn matches(&self, segments: &[Cow<str>]) -> bool {
        self.depth == segments.len()
            && self
                .pattern_segments()
                .zip(segments)
                .all(|(pattern, segment)| pattern.starts_with(':') || pattern == segment)
    }

    /// The parameters of `segments`, which this route's pattern matches.
    fn params(&self, segments: &[Cow<str>]) -> Params {
        self.pattern_segments()
            .zip(segments)
            .filter_map(|(pattern, segment)| Some((pattern.strip_prefix(':')?, segment.to_string())))
            .collect()
    }
}

/// Splits a path into percent-decoded segments (borrowed from the path
/// unless one is encoded); `None` when a segment does not decode to UTF-8.
fn segments(path: &str) -> Option<Vec<Cow<'_, str>>> {
    path.trim_matches('/')
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| percent_encoding::percent_decode_str(segment).decode_utf8().ok())
        .collect()
}

/// The resource a path names: the most specific pattern that matches it,
/// with the path's parameters.
fn resource(path: &str) -> Option<(&'static str, Params)> {
    most_specific(ROUTES.iter(), &segments(path)?)
}

/// The most specific pattern of `routes` that matches `segments`, with their
/// parameters. Routing runs before every request: nothing is allocated for
/// the patterns that do not match.
fn most_specific<'r>(routes: impl Iterator<Item = &'r Route>, segments: &[Cow<str>]) -> Option<(&'static str, Params)> {
    routes
        .filter(|route| route.matches(segments))
        .max_by_key(|route| route.literals)
        .map(|route| (route.pattern, route.params(segments)))
}

/// The methods of the resource `pattern`, in table order, HEAD after them
/// when it has GET.
fn methods_of(pattern: &str) -> Vec<&'static str> {
    let mut methods: Vec<&'static str> = ROUTES
        .iter()
        .filter(|route| route.pattern == pattern)
        .map(|route| route.method)
        .collect();
    if methods.contains(&GET) {
        methods.push("HEAD");
    }
    methods
}

/// The methods a path answers, `None` for unknown paths (for fuzzing the
/// routing table without a running registry).
pub fn allowed_methods(path: &str) -> Option<Vec<&'static str>> {
    resource(path).map(|(pattern, _)| methods_of(pattern))
}

/// The route that answers `method` on `path`, with the path's parameters:
/// `404` for an unknown path, `405` with `Allow` for a known path and
/// another method.
pub fn find(method: &str, path: &str) -> ApiResult<(&'static Route, Params)> {
    // The path is not echoed: error messages carry no raw request input.
    let (pattern, params) =
        resource(path).ok_or_else(|| ApiError::not_found(ErrorCode::NotFound, "There is nothing at this path."))?;
    let method = if method == "HEAD" { GET } else { method };
    match ROUTES
        .iter()
        .find(|route| route.pattern == pattern && route.method == method)
    {
        Some(route) => Ok((route, params)),
        None => {
            let allow = methods_of(pattern);
            Err(ApiError::new(
                405,
                ErrorCode::MethodNotAllowed,
                format!("This method is not allowed here; use {}.", allow.join(" or ")),
            )
            .with_header("Allow", allow.join(", ")))
        }
    }
}

/// Answers a request, with the cache headers its route allows; `admitted`
/// is the caller of an upload, authenticated from its head.
fn dispatch(app: &App, mut request: Request, admitted: Option<Authenticated>) -> Response {
    let public = cache::public(!app.config.cache_purge_urls.is_empty());
    let (route, params) = match find(&request.method, &request.path) {
        Ok(found) => found,
        Err(refused) => return cache::apply(&request, Sharing::None, public, refused.into()),
    };
    request.params = params;
    let caller = match admitted {
        Some(user) => Caller::signed_in(&app.store, user),
        None => Caller::new(&app.store, request.bearer_token()),
    };
    let answer = (route.handler)(app, &request, &caller).unwrap_or_else(Response::from);
    cache::apply(&request, route.sharing, public, answer)
}

/// What an admitted upload holds until it is answered: its share of the
/// upload budget, and the user it was admitted for, whom its handler takes
/// as the caller instead of authenticating again.
struct Admission {
    user: Authenticated,
    _share: Reservation,
}

/// A bundle upload, decided before its body is read, since bodies are large:
/// only from a signed-in user (by session or automation token, whose scopes
/// are checked once the bundle names its package), within the size limit and the user's publish
/// limit, and with a share of the budget of upload bytes in flight, held
/// until the upload is answered. A refusal here uses up no publish.
fn upload_allowance(app: &App, headers: &[(String, String)]) -> ApiResult<Allowance> {
    let user = gren_registry_core::auth::authenticate(&app.store, super::bearer_token(headers))?;
    let length = server::declared_length(headers, app.config.max_bundle_bytes)?;
    let email = user.email.as_str();
    app.publishes_per_user.hit(email)?;
    let share = app
        .upload_bodies
        .reserve(length, budget::WAIT)
        .inspect_err(|_| app.publishes_per_user.give_back(email))?;
    Ok(Allowance {
        max_body: app.config.max_bundle_bytes,
        permit: Some(Box::new(Admission { user, _share: share })),
    })
}

/// The registry as the HTTP server sees it.
pub struct RegistryService(pub Arc<App>);

impl Service for RegistryService {
    fn body_limit(&self, method: &str, path: &str, headers: &[(String, String)]) -> ApiResult<Allowance> {
        match find(method, path).map(|(route, _)| route.body) {
            Ok(BodyKind::Bundle) => upload_allowance(&self.0, headers),
            Ok(BodyKind::GitFetch) => Ok(GIT_BODY_LIMIT.into()),
            Ok(BodyKind::Json) | Err(_) => Ok(JSON_BODY_LIMIT.into()),
        }
    }

    fn handle(&self, request: Request, permit: Option<&Permit>) -> Response {
        let admitted = permit
            .and_then(|permit| permit.downcast_ref::<Admission>())
            .map(|admission| admission.user.clone());
        dispatch(&self.0, request, admitted)
    }

    /// Anonymous reads answered from memory or one file read: the health
    /// check, a package's page, `latest`, `previous` (kept serialized) and a
    /// bundle (cached, or one read). Not the listing (the whole catalog
    /// serialized and hashed) nor a version's page (its outline inflated
    /// from the bundle): they go to the pool, as does anything with a token
    /// (a session is looked up and its last use written) and the long polls
    /// (`/events`, `/session/fetch`). A string test, not a route lookup:
    /// this runs before every request, and a path it misses (`/%70ackages`)
    /// is only answered on the pool. Such a request has no body and no
    /// credentials, so it is handled without `body_limit`, and without a
    /// permit.
    fn answers_at_once(&self, method: &str, path: &str, headers: &[(String, String)]) -> bool {
        matches!(method, GET | "HEAD") && answered_from_memory(path) && super::bearer_token(headers).is_none()
    }
}

/// Whether `path` is one of the reads [`RegistryService::answers_at_once`]
/// takes, by its segments alone.
fn answered_from_memory(path: &str) -> bool {
    let mut parts = path.split('/');
    let segments = [(); 6].map(|()| parts.next());
    matches!(
        segments,
        [Some(""), Some("health"), None, ..]
            | [Some(""), Some("packages"), Some(_), Some(_), None, _]
            | [Some(""), Some("packages"), Some(_), Some(_), Some("latest"), None]
            | [
                Some(""),
                Some("packages"),
                Some(_),
                Some(_),
                Some(_),
                Some("previous" | "bundle")
            ]
    ) && parts.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_from_memory_are_answered_on_the_connection() {
        for path in [
            "/health",
            "/packages/a/p",
            "/packages/a/p/latest",
            "/packages/a/p/1.0.0/previous",
            "/packages/a/p/1.0.0/bundle",
        ] {
            assert!(answered_from_memory(path), "{path}");
        }
        for path in [
            "/packages",
            "/packages/",
            "/packages/a/p/1.0.0",
            "/packages/a/p/1.0.0/bundle/x",
            "/packages/a/p/1.0.0/revoke",
            "/events",
            "/healthz",
            "/health/x",
        ] {
            assert!(!answered_from_memory(path), "{path}");
        }
    }

    fn found(method: &str, path: &str) -> Option<(&'static str, Params)> {
        find(method, path).ok().map(|(route, params)| (route.pattern, params))
    }

    #[test]
    fn paths_are_matched_percent_decoded_with_their_parameters() {
        assert_eq!(found("GET", "/health"), Some(("/health", vec![])));
        assert_eq!(found("GET", "//health/"), Some(("/health", vec![])));
        assert_eq!(
            found("DELETE", "/user/sessions/ab%2Fcd"),
            Some(("/user/sessions/:id", vec![("id", "ab/cd".into())]))
        );
        assert_eq!(found("GET", "/user/invitations"), Some(("/user/invitations", vec![])));
        assert_eq!(
            found("POST", "/publishing-identity/gren-lang/invitation"),
            Some((
                "/publishing-identity/:name/invitation",
                vec![("name", "gren-lang".into())]
            ))
        );
        assert_eq!(find("GET", "/nope").unwrap_err().status, 404);
        assert_eq!(find("DELETE", "/user/sessions/%FF").unwrap_err().status, 404);
    }

    #[test]
    fn a_literal_segment_wins_over_a_parameter_whatever_the_table_order() {
        for path in ["/packages/a/p/latest", "/packages/a/p/revoke"] {
            let segments = segments(path).unwrap();
            let forward = most_specific(ROUTES.iter(), &segments).unwrap().0;
            assert_eq!(forward, most_specific(ROUTES.iter().rev(), &segments).unwrap().0);
            assert_eq!(forward, path.replace("/a/p/", "/:author/:project/"));
        }
        assert_eq!(allowed_methods("/packages/a/p/revoke"), Some(vec!["POST"]));
        let version = found("GET", "/packages/a/p/1.0.0").unwrap();
        assert_eq!(version.0, "/packages/:author/:project/:version");
        assert_eq!(
            version.1,
            vec![
                ("author", "a".into()),
                ("project", "p".into()),
                ("version", "1.0.0".into())
            ]
        );
    }

    #[test]
    fn head_is_answered_by_get_and_named_last_in_allow() {
        assert_eq!(
            found("HEAD", "/packages").map(|(pattern, _)| pattern),
            Some("/packages")
        );
        assert_eq!(allowed_methods("/packages"), Some(vec!["GET", "POST", "HEAD"]));
        let refused = find("HEAD", "/session/fetch").unwrap_err();
        assert_eq!(refused.status, 405);
        assert_eq!(refused.headers, vec![("Allow", "POST".into())]);
    }

    #[test]
    fn every_route_is_reachable_and_alone_with_its_method_and_pattern() {
        for (index, route) in ROUTES.iter().enumerate() {
            assert!(route.pattern.starts_with('/'), "{}", route.pattern);
            assert_eq!(
                route.depth,
                route.pattern_segments().count(),
                "{}: no empty segment",
                route.pattern
            );
            let literals = route
                .pattern_segments()
                .fold(0, |bits, segment| (bits << 1) | u32::from(!segment.starts_with(':')));
            assert_eq!(route.literals, literals, "{}", route.pattern);
            let duplicate = ROUTES[..index]
                .iter()
                .any(|earlier| earlier.method == route.method && earlier.pattern == route.pattern);
            assert!(!duplicate, "{} {} twice", route.method, route.pattern);
            // The pattern itself, parameters taken literally, reaches it.
            let (reached, _) = find(route.method, route.pattern).unwrap();
            assert!(std::ptr::eq(reached, route), "{} {}", route.method, route.pattern);
        }
    }
}
