//! `git http-backend`, run as a CGI program for one request: git speaks its
//! own smart HTTP protocol (v0 and v2, shallow clones, `ls-remote`); the
//! registry only says which repository, and turns git's CGI answer into a
//! [`Response`].
//!
//! The answer is kept in memory whole, up to [`MAX_ANSWER_BYTES`]: the
//! request is read whole already, the answer is one package's history
//! (every live version's sources, compressed: a few hundred kilobytes for
//! real packages), and git processes are bounded
//! (`GREN_REGISTRY_GIT_PROCESSES`, 4 by default, so at most 256 MiB at once).
//!
//! git is handed a plain request body: one sent with `Content-Encoding:
//! gzip` (git compresses its larger fetch requests) is inflated here, up to
//! [`MAX_INFLATED_REQUEST`], since git would inflate it without a bound
//! (a body of a few hundred KiB can hold millions of `have` lines, each
//! costing git a look-up).
//!
//! git's standard error goes to the log, one record per run (the logger
//! escapes its newlines: what a request made git say cannot pass for log
//! lines of its own).

use super::{Request, Response};
use crate::http::router::GIT_BODY_LIMIT;
use crate::http::{ApiError, ApiResult};
use flate2::bufread::GzDecoder;
use gren_registry_core::error::ErrorCode;
use gren_registry_core::git::{Git, Invocation, Stdin};
use std::borrow::Cow;
use std::ffi::OsString;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// The largest answer kept: past it, the git process is stopped and the
/// request fails (`500`, logged), since no package's history comes near.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// The most a gzip request body is inflated to (`413` past it): git
/// compresses a request only when it fits its `http.postBuffer` (1 MiB by
/// default; larger ones go chunked, which is `411`), so four times the body
/// limit leaves room for a raised one.
pub const MAX_INFLATED_REQUEST: u64 = 4 * GIT_BODY_LIMIT;

/// The CGI headers passed on to the client; git sets no others.
const PASSED_HEADERS: [&str; 4] = ["Content-Type", "Cache-Control", "Expires", "Pragma"];

/// Runs `git http-backend` for `request` on the bare repository `repository`,
/// which it reaches as `<repository>/<service>` (`info/refs`,
/// `git-upload-pack`).
pub fn http_backend(
    git: &Git,
    request: &Request,
    repository: &Path,
    service: &str,
    time_limit: Duration,
) -> ApiResult<Response> {
    let (root, dir) = match (repository.parent(), repository.file_name()) {
        (Some(root), Some(dir)) => (root, dir.to_string_lossy()),
        _ => {
            return Err(ApiError::internal(format!(
                "not a repository path: {}",
                repository.display()
            )));
        }
    };
    let body = plain_body(request)?;
    let mut invocation = Invocation::new([
        // No pushes, no dumb-protocol file reads: fetching only.
        "-c",
        "http.receivepack=false",
        "-c",
        "http.getanyfile=false",
        "http-backend",
    ]);
    invocation.env = vec![
        ("GIT_PROJECT_ROOT", root.into()),
        ("GIT_HTTP_EXPORT_ALL", "1".into()),
        ("PATH_INFO", format!("/{dir}/{service}").into()),
        ("REQUEST_METHOD", request.method.replace("HEAD", "GET").into()),
        ("QUERY_STRING", request.query.clone().into()),
        ("CONTENT_LENGTH", body.len().to_string().into()),
        ("GATEWAY_INTERFACE", "CGI/1.1".into()),
        ("SERVER_PROTOCOL", "HTTP/1.1".into()),
    ];
    invocation.env.extend(passed_request_headers(request));
    invocation.stdin = Stdin::Bytes(&body);
    invocation.time_limit = time_limit;
    invocation.max_stdout = MAX_ANSWER_BYTES;
    let finished = git.run(invocation)?;
    let stderr = finished.stderr_text();
    if !stderr.is_empty() {
        log::warn!("git http-backend ({dir}): {stderr}");
    }
    parse_answer(&finished.stdout)
}

/// The request body as git is to read it: as sent, or inflated here when it
/// is gzip (see the module's header); another encoding is no fetch request.
fn plain_body(request: &Request) -> ApiResult<Cow<'_, [u8]>> {
    let encoding = request.header("content-encoding").unwrap_or_default().trim();
    if encoding.is_empty() || encoding.eq_ignore_ascii_case("identity") {
        return Ok(Cow::Borrowed(&request.body));
    }
    if !encoding.eq_ignore_ascii_case("gzip") && !encoding.eq_ignore_ascii_case("x-gzip") {
        return Err(ApiError::new(
            415,
            ErrorCode::UnsupportedMediaType,
            "A git request body is sent as it is or with Content-Encoding: gzip.",
        ));
    }
    let malformed = || {
        ApiError::bad_request(
            ErrorCode::MalformedRequest,
            "The gzip request body is not one gzip stream.",
        )
    };
    let mut decoder = GzDecoder::new(&request.body[..]);
    let mut plain = Vec::new();
    (&mut decoder)
        .take(MAX_INFLATED_REQUEST + 1)
        .read_to_end(&mut plain)
        .map_err(|_| malformed())?;
    if plain.len() as u64 > MAX_INFLATED_REQUEST {
        return Err(ApiError::too_large(format!(
            "A gzip git request may inflate to at most {} MiB.",
            MAX_INFLATED_REQUEST >> 20
        )));
    }
    if !decoder.into_inner().is_empty() {
        return Err(malformed());
    }
    Ok(Cow::Owned(plain))
}

/// The request headers git reads, as CGI variables, when they hold what
/// they should: `Content-Type` and `Git-Protocol` (`version=2`). Not
/// `Content-Encoding`: git gets the body inflated ([`plain_body`]).
fn passed_request_headers(request: &Request) -> Vec<(&'static str, OsString)> {
    let mut env = Vec::new();
    let plain = |value: &str| {
        !value.is_empty()
            && value.len() <= 256
            && value
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"=:._-/;+ ".contains(&byte))
    };
    for (header, variable) in [("content-type", "CONTENT_TYPE"), ("git-protocol", "GIT_PROTOCOL")] {
        if let Some(value) = request.header(header).filter(|value| plain(value)) {
            env.push((variable, value.into()));
        }
    }
    env
}

/// A CGI answer: header lines (`Status: 403 Forbidden` sets the status),
/// a blank line, the body.
fn parse_answer(output: &[u8]) -> ApiResult<Response> {
    let malformed = || ApiError::internal("git http-backend gave no CGI header");
    let (head, body) = split_head(output).ok_or_else(malformed)?;
    let head = std::str::from_utf8(head).map_err(|_| malformed())?;
    let mut response = Response::no_content_with(200);
    for line in head.lines() {
        let (name, value) = line.split_once(':').ok_or_else(malformed)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            response.status = value
                .split(' ')
                .next()
                .and_then(|code| code.parse().ok())
                .filter(|code| (200..600).contains(code))
                .ok_or_else(malformed)?;
        } else if let Some(passed) = PASSED_HEADERS.iter().find(|passed| passed.eq_ignore_ascii_case(name)) {
            response.headers.push((passed, value.to_string().into()));
        }
    }
    response.body = body.to_vec().into();
    Ok(response)
}

/// The header block and the body, split at the first blank line (`\r\n` or
/// `\n` line ends).
fn split_head(output: &[u8]) -> Option<(&[u8], &[u8])> {
    let crlf = output
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| (at, 4));
    let lf = output.windows(2).position(|window| window == b"\n\n").map(|at| (at, 2));
    let (at, skip) = match (crlf, lf) {
        (Some(crlf), Some(lf)) => crlf.min(lf),
        (found, None) | (None, found) => found?,
    };
    Some((&output[..at], &output[at + skip..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn post(encoding: Option<&str>, body: Vec<u8>) -> Request {
        Request {
            method: "POST".into(),
            path: "/git/a/b.git/git-upload-pack".into(),
            query: String::new(),
            headers: encoding
                .map(|value| ("content-encoding".into(), value.into()))
                .into_iter()
                .collect(),
            body,
            remote: "127.0.0.1:1".parse().unwrap(),
            params: Vec::new(),
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn a_gzip_body_reaches_git_inflated_up_to_the_cap_and_no_further() {
        let plain = b"0032want 1111111111111111111111111111111111111111\n00000009done\n".to_vec();
        for encoding in [None, Some("identity")] {
            assert_eq!(&*plain_body(&post(encoding, plain.clone())).unwrap(), &plain[..]);
        }
        for encoding in ["gzip", "x-gzip", "GZIP"] {
            assert_eq!(&*plain_body(&post(Some(encoding), gzip(&plain))).unwrap(), &plain[..]);
        }
        let at_cap = vec![b'0'; MAX_INFLATED_REQUEST as usize];
        assert_eq!(
            plain_body(&post(Some("gzip"), gzip(&at_cap))).unwrap().len(),
            at_cap.len()
        );
        let past_cap = vec![b'0'; MAX_INFLATED_REQUEST as usize + 1];
        assert_eq!(
            plain_body(&post(Some("gzip"), gzip(&past_cap))).unwrap_err().status,
            413
        );
        let mut trailing = gzip(&plain);
        trailing.extend(b"more");
        for bad in [b"not gzip".to_vec(), trailing] {
            assert_eq!(plain_body(&post(Some("gzip"), bad)).unwrap_err().status, 400);
        }
        assert_eq!(plain_body(&post(Some("br"), plain)).unwrap_err().status, 415);
    }

    #[test]
    fn a_cgi_answer_gives_its_status_known_headers_and_body() {
        let answer =
            parse_answer(b"Status: 403 Forbidden\r\nContent-Type: text/plain\r\nX-Other: 1\r\n\r\nno\n\nmore").unwrap();
        assert_eq!(answer.status, 403);
        assert_eq!(answer.headers, vec![("Content-Type", "text/plain".into())]);
        assert_eq!(&*answer.body, b"no\n\nmore");
        let plain = parse_answer(b"Expires: Fri, 01 Jan 1980 00:00:00 GMT\n\nbody").unwrap();
        assert_eq!(plain.status, 200);
        assert_eq!(&*plain.body, b"body");
        for bad in [
            &b"no blank line"[..],
            b"Status: banana\n\n",
            b"Status: 99 Low\n\n",
            b"no colon\n\n",
        ] {
            assert_eq!(
                parse_answer(bad).unwrap_err().status,
                500,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
