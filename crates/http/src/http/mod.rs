//! HTTP: the connection layer ([`server`]: hyper on tokio, handlers on a
//! bounded thread pool), the request and response types
//! handlers see, git's CGI program behind `/git/…` ([`cgi`]), who is asking ([`Caller`]), the routing table ([`router`]),
//! what caches may keep of each answer ([`cache`]),
//! and the mapping of the domain's errors to statuses, codes and messages
//! ([`errors`]).

pub(crate) mod cache;
pub mod caller;
pub mod cgi;
pub mod errors;
pub mod handlers;
pub mod router;
pub mod server;
pub mod warnings;

pub use caller::Caller;
pub use errors::{ApiError, ApiResult};

use gren_registry_core::error::ErrorCode;
use gren_registry_core::json::{self, StrictError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;

/// A fully read request: head plus body, already bounded by the server.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path without the query string, percent-decoding not applied.
    pub path: String,
    pub query: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub remote: SocketAddr,
    /// The parameters of the route's path pattern (`:author` and so on),
    /// percent-decoded: set by the router.
    pub params: Vec<(&'static str, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The path parameter `name` of the route (`author` for
    /// `/packages/:author/:project`). A handler asks only for parameters of
    /// its own routes' patterns: any other name is a bug, and panics.
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or_else(|| panic!("the route has no path parameter {name:?}"))
    }

    /// A decoded query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// The bearer token of the `Authorization` header, if any.
    pub fn bearer_token(&self) -> Option<&str> {
        bearer_token(&self.headers)
    }

    /// The client's address: the connection's peer, or, when the peer is a
    /// trusted reverse proxy, the first address from the right of
    /// `X-Forwarded-For` that is not a trusted proxy (see [`client_ip`]).
    pub fn client_ip(&self, trusted_proxies: &[std::net::IpAddr]) -> std::net::IpAddr {
        client_ip(self.remote, &self.headers, trusted_proxies)
    }

    pub fn user_agent(&self) -> Option<&str> {
        self.header("user-agent")
    }

    /// Parses a JSON body into `T`, with errors a person can act on. A key
    /// repeated anywhere is refused ([`json`]): serde would take the last.
    ///
    /// Only `Content-Type: application/json` is read: a web page can make a
    /// visitor's browser post `text/plain`, form encodings or an untyped body
    /// to any site without asking first (no CORS preflight), and must not be
    /// able to start logins or changes that way.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let media_type = self
            .header("content-type")
            .map(|value| value.split(';').next().unwrap_or("").trim());
        match media_type {
            Some(media_type) if media_type.eq_ignore_ascii_case("application/json") => {}
            None if self.body.is_empty() => {}
            _ => {
                return Err(ApiError::new(
                    415,
                    ErrorCode::UnsupportedMediaType,
                    "This route takes a JSON body with `Content-Type: application/json`.",
                ));
            }
        }
        if self.body.is_empty() {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidJson,
                "The request needs a JSON body.",
            ));
        }
        let value = json::from_slice(&self.body).map_err(|err| match err {
            StrictError::RepeatedKey { path } => ApiError::bad_request(
                ErrorCode::InvalidJson,
                format!("The body repeats the key {path:?}; give each key once."),
            )
            .with_field(path),
            StrictError::Syntax(err) => {
                ApiError::bad_request(ErrorCode::InvalidJson, format!("The body is not valid JSON: {err}."))
            }
        })?;
        if !value.is_object() {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidJson,
                "The body must be a JSON object.",
            ));
        }
        serde_json::from_value(value).map_err(|err| {
            ApiError::bad_request(ErrorCode::InvalidField, format!("The JSON body does not fit: {err}."))
        })
    }

    /// A decoded `application/x-www-form-urlencoded` field.
    pub fn form_field(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(&self.body)
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }
}

/// The client of a request from `remote` with `headers`.
///
/// Each proxy appends the address of the peer it saw to `X-Forwarded-For`
/// (behind nginx → Varnish: `<client>, <nginx>`), so the list is read from
/// the right: an entry appended by a trusted proxy is true, and the first
/// that is not itself a trusted proxy is the client; everything left of it
/// is that client's word. All trusted: the leftmost. Several header lines
/// are one list, in order (RFC 9110, 5.3), so a line the client sent
/// itself stays on the untrusted side. An entry that is not an address
/// (nginx's `unix:`) ends the walk at the last proxy that vouched for it.
pub fn client_ip(
    remote: SocketAddr,
    headers: &[(String, String)],
    trusted_proxies: &[std::net::IpAddr],
) -> std::net::IpAddr {
    let mut client = remote.ip();
    let entries = headers
        .iter()
        .rev()
        .filter(|(key, _)| key.eq_ignore_ascii_case("x-forwarded-for"))
        .flat_map(|(_, chain)| chain.rsplit(','));
    for entry in entries {
        if !trusted_proxies.contains(&client) {
            break;
        }
        match forwarded_address(entry.trim()) {
            Some(address) => client = address,
            None => break,
        }
    }
    client
}

/// An `X-Forwarded-For` entry's address: `192.0.2.1`, `2001:db8::1`, or one
/// with a port (`192.0.2.1:4711`, `[2001:db8::1]:4711`), as some proxies
/// write them.
fn forwarded_address(entry: &str) -> Option<std::net::IpAddr> {
    entry
        .parse()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
}

/// The token of an `Authorization: Bearer <token>` header, if any.
pub fn bearer_token(headers: &[(String, String)]) -> Option<&str> {
    let value = headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("authorization"))?
        .1
        .as_str();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, HeaderText)>,
    pub body: Body,
}

/// A header's value: most are fixed texts (`application/json`, the cache
/// policies), which an answer then carries without a copy.
pub type HeaderText = std::borrow::Cow<'static, str>;

/// Room for the headers of a typical answer (its type, the cache's four,
/// `Connection`), so that they are added without growing the list.
const TYPICAL_HEADERS: usize = 6;

/// A response body: bytes of this response, or bytes shared with a cache
/// (bundles, package pages) that are sent without being copied first.
#[derive(Debug, Clone)]
pub enum Body {
    Owned(Vec<u8>),
    Shared(std::sync::Arc<Vec<u8>>),
}

impl std::ops::Deref for Body {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Body::Owned(bytes) => bytes,
            Body::Shared(bytes) => bytes,
        }
    }
}

impl From<std::sync::Arc<Vec<u8>>> for Body {
    fn from(bytes: std::sync::Arc<Vec<u8>>) -> Body {
        Body::Shared(bytes)
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Body {
        Body::Owned(bytes)
    }
}

impl Response {
    pub fn json<T: Serialize>(status: u16, value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response::json_bytes(status, body),
            Err(err) => Response::from_error(&ApiError::internal(err)),
        }
    }

    /// Already serialized JSON.
    pub fn json_bytes(status: u16, body: impl Into<Body>) -> Response {
        Response::no_content_with(status)
            .with_header("Content-Type", "application/json")
            .with_body(body)
    }

    pub fn with_body(mut self, body: impl Into<Body>) -> Response {
        self.body = body.into();
        self
    }

    pub fn html(status: u16, page: String) -> Response {
        Response {
            status,
            headers: vec![
                ("Content-Type", "text/html; charset=utf-8".into()),
                // The confirmation page must not be framed (click-jacking) or cached.
                ("X-Frame-Options", "DENY".into()),
                (
                    "Content-Security-Policy",
                    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'".into(),
                ),
                ("Cache-Control", "no-store".into()),
            ],
            body: page.into_bytes().into(),
        }
    }

    pub fn no_content() -> Response {
        Response::no_content_with(204)
    }

    /// A status that carries no body (204, 304).
    pub fn no_content_with(status: u16) -> Response {
        Response {
            status,
            headers: Vec::with_capacity(TYPICAL_HEADERS),
            body: Vec::new().into(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<HeaderText>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The one place where an error becomes a response, and so where an
    /// internal error is logged, once.
    pub fn from_error(error: &ApiError) -> Response {
        error.log_if_internal();
        let body = gren_registry_core::api::ErrorBody {
            error: error.code.to_string(),
            message: error.message.clone(),
            details: error
                .details
                .iter()
                .map(|(key, value)| (key.to_string(), value.clone()))
                .collect(),
        };
        let mut response = Response::json(error.status, &gren_registry_core::api::SortedKeys(body));
        response.headers.extend(error.headers.iter().cloned());
        response
    }
}

impl From<ApiError> for Response {
    fn from(error: ApiError) -> Response {
        Response::from_error(&error)
    }
}

/// The text of a status code, for the status line.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, forwarded: &[&str]) -> Request {
        Request {
            method: "GET".into(),
            path: "/".into(),
            query: String::new(),
            headers: forwarded
                .iter()
                .map(|value| ("x-forwarded-for".to_string(), value.to_string()))
                .collect(),
            body: Vec::new(),
            remote: format!("{peer}:1234").parse().unwrap(),
            params: Vec::new(),
        }
    }

    #[test]
    fn the_client_ip_is_the_first_untrusted_address_from_the_right() {
        let proxies: Vec<std::net::IpAddr> = ["127.0.0.1", "10.0.0.2"].iter().map(|ip| ip.parse().unwrap()).collect();
        let ip = |peer, forwarded: &[&str]| request(peer, forwarded).client_ip(&proxies).to_string();
        assert_eq!(
            ip("127.0.0.1", &["6.6.6.6, 1.2.3.4"]),
            "1.2.3.4",
            "the proxy appends the address it saw"
        );
        assert_eq!(
            ip("127.0.0.1", &["6.6.6.6", "1.2.3.4"]),
            "1.2.3.4",
            "the client's own line does not win"
        );
        assert_eq!(
            ip("127.0.0.1", &["6.6.6.6, 1.2.3.4, 127.0.0.1"]),
            "1.2.3.4",
            "behind nginx and then Varnish, nginx's entry is skipped"
        );
        assert_eq!(
            ip("127.0.0.1", &["6.6.6.6, 1.2.3.4", "10.0.0.2, 127.0.0.1"]),
            "1.2.3.4",
            "two header lines are one list"
        );
        assert_eq!(
            ip("127.0.0.1", &["10.0.0.2, 127.0.0.1"]),
            "10.0.0.2",
            "all trusted: the leftmost"
        );
        assert_eq!(
            ip("127.0.0.1", &["[2001:db8::1]:4711, 10.0.0.2:80"]),
            "2001:db8::1",
            "ports are not part of the address"
        );
        assert_eq!(
            ip("10.0.0.9", &["1.2.3.4"]),
            "10.0.0.9",
            "untrusted peers cannot claim an address"
        );
        assert_eq!(ip("127.0.0.1", &["not an address"]), "127.0.0.1");
        assert_eq!(
            ip("127.0.0.1", &["1.2.3.4, unix:, 10.0.0.2"]),
            "10.0.0.2",
            "an entry that is no address ends the walk at the proxy that wrote it"
        );
        assert_eq!(ip("127.0.0.1", &[]), "127.0.0.1");
    }

    fn json_body(body: &str) -> Request {
        Request {
            method: "POST".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
            ..request("127.0.0.1", &[])
        }
    }

    #[test]
    fn a_json_body_that_repeats_a_key_anywhere_is_refused_naming_the_key() {
        #[derive(serde::Deserialize, Debug)]
        struct Body {
            #[allow(dead_code)]
            scopes: Vec<String>,
        }
        for (body, path) in [
            (r#"{"scopes":["download:a"],"scopes":["publish:a/*"]}"#, "scopes"),
            (r#"{"scopes":[],"x":{"y":1,"y":1}}"#, "x.y"),
        ] {
            let err = json_body(body).json::<Body>().unwrap_err();
            assert_eq!((err.status, err.code), (400, ErrorCode::InvalidJson), "{body}");
            assert_eq!(err.field(), Some(path));
            assert!(err.message.contains(&format!("{path:?}")), "{}", err.message);
        }
        assert_eq!(json_body(r#"{"scopes":["a"]}"#).json::<Body>().unwrap().scopes, ["a"]);
        let err = json_body("{").json::<Body>().unwrap_err();
        assert_eq!((err.status, err.field()), (400, None), "{}", err.message);
    }
}
