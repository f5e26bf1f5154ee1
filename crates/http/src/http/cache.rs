//! What caches may keep of each answer: the registry's side of serving reads
//! through a CDN or Varnish (docs/API.md, "Caching"; the edge's side is
//! docs/deploy/varnish.vcl).
//!
//! The route table says which reads a shared cache may keep ([`Sharing`]);
//! [`apply`] then settles every answer's headers in one place, after its
//! handler:
//! - a public answer (to a request without `Authorization`, on a shared
//!   route, `200`, `404` or `410`) gets `Cache-Control` with a shared
//!   lifetime ([`public`], unless its handler chose one), a strong `ETag`,
//!   `Vary: Authorization`, a `Surrogate-Key` naming its package (or
//!   `listings`), and `304` when `If-None-Match` names its tag;
//! - an answer to anyone who sent credentials, or one its handler marked
//!   private, is `private, no-store` ([`PRIVATE`]), whatever else it said;
//! - everything else is `no-store` unless its handler said otherwise
//!   (git's own headers).
//!
//! Shared lifetimes are long only where the registry purges: after every
//! change of a package, `crate::purge` tells each cache of
//! `GREN_REGISTRY_CACHE_PURGE_URLS` to drop the objects tagged with
//! [`purge_keys`], and those answers say `s-maxage` of a day
//! ([`PUBLIC_PURGED`]). `s-maxage` speaks to every shared cache on the way,
//! purged or not (a CDN in front of the purged one, a company's proxy), so
//! the purged cache keeps it for itself and takes it out of what it passes
//! on (docs/deploy/varnish.vcl does). Without purge URLs no cache is ever
//! told of a change, and every cache, shared or not, gets the lifetime
//! clients get: a minute ([`PUBLIC_UNPURGED`]).

use super::{HeaderText, Request, Response};
use gren_registry_core::auth::secret::sha256_hex;
use gren_registry_core::package::PackageName;

/// A day in shared caches (which are purged on change), a minute in clients
/// (which are not): for a registry that purges its caches.
pub(crate) const PUBLIC_PURGED: &str = "public, max-age=60, s-maxage=86400";
/// A minute in every cache: for a registry that purges none, where a minute
/// is as stale as an answer gets anywhere.
pub(crate) const PUBLIC_UNPURGED: &str = "public, max-age=60";
/// What never changes: full pages of the event log.
pub(crate) const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Depends on who asks: no cache may store it.
pub(crate) const PRIVATE: &str = "private, no-store";
const NOT_STORED: &str = "no-store";
/// The tag of answers that list many packages (`/packages`, `/events`).
pub(crate) const LISTINGS_KEY: &str = "listings";
pub(crate) const SURROGATE_KEY: &str = "Surrogate-Key";
/// Statuses a shared cache may keep: the answer, and "there is none" (a
/// purge drops them when that changes).
const SHAREABLE_STATUSES: [u16; 3] = [200, 404, 410];

/// What a shared cache may keep of a route's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sharing {
    /// Nothing: changes, sessions, git, `/user…`, identities.
    None,
    /// Public answers about the package of the path's `:author/:project`.
    Package,
    /// Public answers about many packages.
    Listing,
}

/// The tag of every cached answer about `name`: `p:<author>/<project>`, in
/// lower case (authors compare without case), of the characters names allow.
pub(crate) fn package_key(name: &PackageName) -> String {
    name.key_after("p:")
}

/// The `Cache-Control` of public answers, for a registry that purges shared
/// caches or not (see the module's header).
pub(crate) fn public(purged: bool) -> &'static str {
    if purged { PUBLIC_PURGED } else { PUBLIC_UNPURGED }
}

/// What a change of `name` makes stale: its answers and the listings.
pub(crate) fn purge_keys(name: &PackageName) -> [String; 2] {
    [package_key(name), LISTINGS_KEY.to_string()]
}

/// Whether the request's `If-None-Match` names `etag`. The comparison is
/// weak (RFC 9110, 13.1.2): a cache or proxy that compressed an answer
/// revalidates with `W/"…"`, and still gets its `304`.
pub(crate) fn not_modified(request: &Request, etag: &str) -> bool {
    fn opaque(tag: &str) -> &str {
        tag.trim().trim_start_matches("W/")
    }
    request.header("if-none-match").is_some_and(|tags| {
        let etag = opaque(etag);
        tags.split(',').any(|tag| opaque(tag) == etag || tag.trim() == "*")
    })
}

/// `response` marked as depending on who asks, when `private` says so.
pub(crate) fn private_if(private: bool, response: Response) -> Response {
    if private {
        set(response, "Cache-Control", PRIVATE)
    } else {
        response
    }
}

/// Settles the cache headers of the answer to `request` on a route with
/// `sharing` (see the module's header); `public` is the `Cache-Control` of
/// a public answer whose handler chose none ([`public`]).
pub(crate) fn apply(request: &Request, sharing: Sharing, public: &'static str, response: Response) -> Response {
    if request.header("authorization").is_some() {
        return set(response, "Cache-Control", PRIVATE);
    }
    // The handler's own `private` or `no-store` stands (the login page's).
    if header(&response, "Cache-Control").is_some_and(is_private) {
        return response;
    }
    let key = match sharing {
        Sharing::None => None,
        Sharing::Listing => Some(Some(LISTINGS_KEY.to_string())),
        Sharing::Package => Some(package_of(request).map(|name| package_key(&name))),
    };
    let read = matches!(request.method.as_str(), "GET" | "HEAD");
    let shared = read && key.is_some() && (SHAREABLE_STATUSES.contains(&response.status) || response.status == 304);
    if !shared {
        return if header(&response, "Cache-Control").is_some() {
            response
        } else {
            set(response, "Cache-Control", NOT_STORED)
        };
    }
    let mut response = response;
    if header(&response, "Cache-Control").is_none() {
        response = set(response, "Cache-Control", public);
    }
    if header(&response, "ETag").is_none() && response.status != 304 {
        let etag = format!("\"{}\"", sha256_hex(&response.body));
        response = set(response, "ETag", etag);
    }
    // A path that names no package can never name one: nothing to purge.
    // An immutable answer (a full page of events) never goes stale either:
    // tagging it would have every purge drop it for nothing.
    let immutable = header(&response, "Cache-Control").is_some_and(|value| value.contains("immutable"));
    if let Some(Some(key)) = key.filter(|_| !immutable) {
        response = set(response, SURROGATE_KEY, key);
    }
    let response = set(response, "Vary", "Authorization");
    match header(&response, "ETag") {
        Some(etag) if response.status == 200 && not_modified(request, etag) => not_modified_answer(response),
        _ => response,
    }
}

/// The package of the path, when its parameters name a valid one.
fn package_of(request: &Request) -> Option<PackageName> {
    let param = |name: &str| {
        request
            .params
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    };
    PackageName::from_parts(param("author")?, param("project")?)
}

/// `304` with the validators and cache headers of the `200` it stands for.
fn not_modified_answer(full: Response) -> Response {
    let mut answer = Response::no_content_with(304);
    answer.headers = full
        .headers
        .into_iter()
        .filter(|(name, _)| !matches!(*name, "Content-Type" | "Content-Disposition"))
        .collect();
    answer
}

fn is_private(cache_control: &str) -> bool {
    cache_control.contains("private") || cache_control.contains("no-store")
}

fn header<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    response
        .headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| &**value)
}

/// `response` with `name` set to `value`, in place of any earlier value.
fn set(mut response: Response, name: &'static str, value: impl Into<HeaderText>) -> Response {
    response.headers.retain(|(key, _)| !key.eq_ignore_ascii_case(name));
    response.with_header(name, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(headers: &[(&str, &str)], params: &[(&'static str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: "/".into(),
            query: String::new(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: Vec::new(),
            remote: "127.0.0.1:1".parse().unwrap(),
            params: params.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        }
    }

    fn answered(request: &Request, sharing: Sharing, response: Response) -> Vec<(&'static str, String)> {
        let mut headers: Vec<_> = apply(request, sharing, PUBLIC_PURGED, response)
            .headers
            .into_iter()
            .filter(|(name, _)| *name != "Content-Type")
            .map(|(name, value)| (name, value.into_owned()))
            .collect();
        headers.sort();
        headers
    }

    #[test]
    fn a_public_answer_about_a_package_is_shared_tagged_and_validated() {
        let request = get(&[], &[("author", "Gren-Lang"), ("project", "core")]);
        let body = b"{}".to_vec();
        let etag = format!("\"{}\"", sha256_hex(&body));
        let headers = answered(&request, Sharing::Package, Response::json_bytes(200, body.clone()));
        assert_eq!(
            headers,
            vec![
                ("Cache-Control", PUBLIC_PURGED.to_string()),
                ("ETag", etag.clone()),
                ("Surrogate-Key", "p:gren-lang/core".to_string()),
                ("Vary", "Authorization".to_string()),
            ]
        );
        let again = get(
            &[("If-None-Match", &etag)],
            &[("author", "gren-lang"), ("project", "core")],
        );
        let revalidated = apply(&again, Sharing::Package, PUBLIC_PURGED, Response::json_bytes(200, body));
        assert_eq!((revalidated.status, revalidated.body.len()), (304, 0));
        assert!(
            revalidated
                .headers
                .iter()
                .any(|(name, value)| *name == "ETag" && *value == etag)
        );
    }

    #[test]
    fn only_a_registry_that_purges_gives_shared_caches_more_than_a_minute() {
        let request = get(&[], &[("author", "a"), ("project", "b")]);
        let lifetime = |purged| {
            let answer = apply(
                &request,
                Sharing::Package,
                public(purged),
                Response::json_bytes(200, b"{}".to_vec()),
            );
            header(&answer, "Cache-Control").map(str::to_string)
        };
        assert_eq!(lifetime(true).as_deref(), Some("public, max-age=60, s-maxage=86400"));
        assert_eq!(lifetime(false).as_deref(), Some("public, max-age=60"));
    }

    #[test]
    fn a_weak_validator_from_a_compressing_proxy_still_revalidates() {
        let body = b"{}".to_vec();
        let etag = format!("\"{}\"", sha256_hex(&body));
        let weak = format!("W/{etag}");
        let again = get(
            &[("If-None-Match", weak.as_str())],
            &[("author", "a"), ("project", "b")],
        );
        let answer = apply(
            &again,
            Sharing::Package,
            PUBLIC_PURGED,
            Response::json_bytes(200, body.clone()),
        );
        assert_eq!(answer.status, 304);
        let other = get(
            &[("If-None-Match", "W/\"other\"")],
            &[("author", "a"), ("project", "b")],
        );
        assert_eq!(
            apply(&other, Sharing::Package, PUBLIC_PURGED, Response::json_bytes(200, body)).status,
            200
        );
    }

    #[test]
    fn an_immutable_answer_is_shared_but_carries_no_key_to_purge() {
        let immutable = Response::json_bytes(200, b"{}".to_vec()).with_header("Cache-Control", IMMUTABLE);
        let headers = answered(&get(&[], &[]), Sharing::Listing, immutable);
        assert!(headers.iter().all(|(name, _)| *name != SURROGATE_KEY), "{headers:?}");
        assert!(
            headers.contains(&("Cache-Control", IMMUTABLE.to_string())),
            "{headers:?}"
        );
    }

    #[test]
    fn credentials_or_a_private_mark_make_any_answer_private_no_store() {
        let signed = get(&[("Authorization", "Bearer x")], &[("author", "a"), ("project", "b")]);
        let immutable = Response::json_bytes(200, b"{}".to_vec()).with_header("Cache-Control", IMMUTABLE);
        assert_eq!(
            answered(&signed, Sharing::Listing, immutable),
            vec![("Cache-Control", PRIVATE.to_string())]
        );
        let marked = private_if(true, Response::json_bytes(200, b"{}".to_vec()));
        assert_eq!(
            answered(&get(&[], &[]), Sharing::Listing, marked),
            vec![("Cache-Control", PRIVATE.to_string())]
        );
    }

    #[test]
    fn refusals_and_unshared_routes_are_not_stored() {
        let anonymous = get(&[], &[("author", "a"), ("project", "b")]);
        for (sharing, status) in [(Sharing::Package, 429), (Sharing::Package, 503), (Sharing::None, 200)] {
            assert_eq!(
                answered(&anonymous, sharing, Response::no_content_with(status)),
                vec![("Cache-Control", NOT_STORED.to_string())],
                "{sharing:?} {status}"
            );
        }
    }
}
