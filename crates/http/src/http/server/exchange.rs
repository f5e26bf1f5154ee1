//! One connection's life, and each request's: hyper reads the requests the
//! [`gate`](super::gate) passes on; each is checked from its head, its body
//! read, and answered on the pool of handler threads, at most
//! `max_handlers` at once.
//!
//! A request with a body takes two trips to the pool: one for
//! [`Service::body_limit`] (which may wait for an upload budget), then,
//! once the body is in, one for [`Service::handle`]; no thread waits for a
//! body. A request without one takes a single trip (none when the service
//! answers it at once), and a chunked one none: it is refused (`411`) from
//! its head.

use super::gate::{Gate, Link, Outgoing};
use super::{Limits, Permit, Service, Slot, State, busy, content_length, declared_length, header_value};
use crate::http::errors::ApiError;
use crate::http::{Body, HeaderText, Request, Response};
use bytes::Bytes;
use gren_registry_core::error::ErrorCode;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// What every connection's requests share.
pub(super) struct Shared {
    pub(super) service: Arc<dyn Service>,
    pub(super) limits: Arc<Limits>,
    pub(super) state: Arc<State>,
    handlers: Arc<Semaphore>,
}

impl Shared {
    pub(super) fn new(service: Arc<dyn Service>, limits: Arc<Limits>, state: Arc<State>) -> Shared {
        Shared {
            handlers: Arc::new(Semaphore::new(limits.max_handlers.max(1))),
            service,
            limits,
            state,
        }
    }

    /// Runs `work` on a handler thread once one of the `max_handlers` is
    /// free: `503` when none is within `handler_wait`, `500` when it panics.
    async fn run<T: Send + 'static>(
        &self,
        line: &str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = tokio::time::timeout(self.limits.handler_wait, self.handlers.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                busy(
                    ErrorCode::ServerBusy,
                    "The registry is answering as many requests as it can; try again shortly.",
                )
            })?;
        tokio::task::spawn_blocking(move || {
            let done = work();
            drop(permit);
            done
        })
        .await
        .map_err(|_| ApiError::internal(format!("handler panicked on {line}")))
    }
}

/// Serves one connection until it ends, then gives its slot back.
pub(super) async fn serve_connection(stream: TcpStream, remote: SocketAddr, shared: Arc<Shared>, slot: Slot) {
    let _ = stream.set_nodelay(true);
    let link = Arc::new(Link::new(remote));
    let gate = Gate::new(stream, link.clone(), shared.limits.clone(), shared.state.clone());
    let service = {
        let (shared, link) = (shared.clone(), link.clone());
        hyper::service::service_fn(move |request| {
            let (shared, link) = (shared.clone(), link.clone());
            // Boxed: hyper polls the connection without shutting it down
            // (see below) only when the service's future is `Unpin`.
            Box::pin(async move { Ok::<_, Infallible>(exchange(&shared, &link, request).await) })
                as Pin<Box<dyn Future<Output = Result<hyper::Response<Outbound>, Infallible>> + Send>>
        })
    };
    let mut connection = hyper::server::conn::http1::Builder::new()
        // The gate already allows no more, and answers with JSON.
        .max_headers(shared.limits.max_headers.max(1))
        .serve_connection(gate, service);
    let mut stop = shared.state.stop.subscribe();
    let mut stopping = Box::pin(stop.wait_for(|stopping| *stopping));
    let mut stopped = false;
    let ended = std::future::poll_fn(|cx| {
        if !stopped && stopping.as_mut().poll(cx).is_ready() {
            // Idle: close now; mid-request: close after the answer.
            stopped = true;
            Pin::new(&mut connection).graceful_shutdown();
        }
        connection.poll_without_shutdown(cx)
    })
    .await;
    drop(stopping);
    match ended {
        Ok(()) => connection.into_parts().io.finish().await,
        Err(err) => link.log_cut(&shared.state, &error_kind(&err)),
    }
    link.log_cut(&shared.state, "connection closed");
    drop(slot);
}

/// What a hyper error amounts to, for the log (never the request's data).
fn error_kind(err: &hyper::Error) -> String {
    let io = std::error::Error::source(err).and_then(|source| source.downcast_ref::<std::io::Error>());
    match io {
        Some(io) => io.kind().to_string(),
        None if err.is_incomplete_message() => "connection closed".to_string(),
        None => "connection error".to_string(),
    }
}

/// What a request's log line says: its method and path (no query: it may
/// hold secrets), the client, and when its head was taken.
struct Seen {
    line: String,
    client: std::net::IpAddr,
    started: Instant,
}

/// Answers one request whose head the gate passed on.
async fn exchange(shared: &Shared, link: &Arc<Link>, incoming: hyper::Request<Incoming>) -> hyper::Response<Outbound> {
    let Some(head) = link.take_head() else {
        // hyper read a request the gate did not pass on: cannot happen.
        let error = ApiError::internal("a request reached hyper without passing the gate");
        return refusal(shared, link, seen_of(shared, link, "? ?".into(), &[]), &error);
    };
    let mut path = head.target;
    let query = match path.split_once('?') {
        Some((_, query)) => {
            let query = query.to_string();
            path.truncate(path.len() - query.len() - 1);
            query
        }
        None => String::new(),
    };
    let seen = seen_of(shared, link, format!("{} {path}", head.method), &head.headers);
    let head_only = head.method == "HEAD";
    let keep_alive = head.keep_alive;
    let request = Request {
        method: head.method,
        path,
        query,
        headers: head.headers,
        body: Vec::new(),
        remote: link.remote,
        params: Vec::new(),
    };
    match answer(shared, link, &seen, request, incoming.into_body()).await {
        Ok((response, permit)) => {
            // Checked now, not at the head: a shutdown during a long poll
            // closes the connection after its answer.
            let close = !keep_alive || *shared.state.stop.borrow();
            let response = if close {
                response.with_header("Connection", "close")
            } else {
                response
            };
            outbound(link, seen, response, permit, head_only, false)
        }
        Err(error) => refusal(shared, link, seen, &error),
    }
}

fn seen_of(shared: &Shared, link: &Link, line: String, headers: &[(String, String)]) -> Seen {
    Seen {
        line,
        client: crate::http::client_ip(link.remote, headers, &shared.limits.trusted_proxies),
        started: Instant::now(),
    }
}

/// The handler's response and the permit it was given; an error refuses
/// the request before the handler (its body may be unread).
async fn answer(
    shared: &Shared,
    link: &Link,
    seen: &Seen,
    mut request: Request,
    body: Incoming,
) -> Result<(Response, Option<Box<Permit>>), ApiError> {
    if header_value(&request.headers, "transfer-encoding").is_some() {
        // Refused whatever the route, so without a trip to the handlers.
        return Err(super::length_required());
    }
    let service = shared.service.clone();
    let bodiless = content_length(&request.headers)? == 0;
    if bodiless && service.answers_at_once(&request.method, &request.path, &request.headers) {
        // No body and no token: nothing to admit, so no permit and no
        // second route lookup (`answers_at_once` promises as much).
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Ok((service.handle(request, None), None))
        }))
        .unwrap_or_else(|_| Err(ApiError::internal(format!("handler panicked on {}", seen.line))));
    }
    if bodiless {
        // One trip to the pool: the head's check and the answer.
        return shared
            .run(&seen.line, move || {
                let allowance = service.body_limit(&request.method, &request.path, &request.headers)?;
                let response = service.handle(request, allowance.permit.as_deref());
                Ok((response, allowance.permit))
            })
            .await?;
    }
    let (allowance, headless) = shared
        .run(&seen.line, move || {
            let allowance = service.body_limit(&request.method, &request.path, &request.headers);
            (allowance, request)
        })
        .await?;
    request = headless;
    let allowance = allowance?;
    // `413` from the declared length, before a byte of the body is read.
    let length = declared_length(&request.headers, allowance.max_body)?;
    request.body = read_body(body, length, link).await?;
    let service = shared.service.clone();
    shared
        .run(&seen.line, move || {
            let response = service.handle(request, allowance.permit.as_deref());
            (response, allowance.permit)
        })
        .await
}

/// Reads a body of `length` bytes (bounded by the route's limit); the gate
/// paces it, and says why when it cut it short.
async fn read_body(mut body: Incoming, length: u64, link: &Link) -> Result<Vec<u8>, ApiError> {
    // Bounded by the route's limit, which fits in memory.
    let mut bytes = Vec::with_capacity(length as usize);
    loop {
        match std::future::poll_fn(|cx| http_body::Body::poll_frame(Pin::new(&mut body), cx)).await {
            None => return Ok(bytes),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            Some(Err(_)) => {
                return Err(link.take_body_fault().unwrap_or_else(|| {
                    ApiError::bad_request(
                        ErrorCode::MalformedRequest,
                        "The request body ended before its Content-Length.",
                    )
                }));
            }
        }
    }
}

/// A request refused before or instead of its handler: a warning in the
/// log, and the connection closes after the answer (its body may be unread).
fn refusal(shared: &Shared, link: &Arc<Link>, seen: Seen, error: &ApiError) -> hyper::Response<Outbound> {
    if error.status != 500 {
        shared.state.warnings.warn(error.code.as_str(), || {
            format!(
                "{} {} {:.1}ms {}, from {}",
                seen.line,
                error.status,
                seen.started.elapsed().as_secs_f64() * 1000.0,
                error.code,
                seen.client
            )
        });
    }
    let mut response = Response::from_error(error);
    response.headers.push(("Connection", "close".into()));
    outbound(link, seen, response, None, false, true)
}

/// The hyper response of `response`; its log line is written once it is
/// out, unless it was `warned` about already.
fn outbound(
    link: &Arc<Link>,
    seen: Seen,
    response: Response,
    permit: Option<Box<Permit>>,
    head_only: bool,
    warned: bool,
) -> hyper::Response<Outbound> {
    let Response { status, headers, body } = response;
    let bytes = match body {
        Body::Owned(bytes) => Bytes::from(bytes),
        Body::Shared(bytes) => Bytes::from_owner(Cached(bytes)),
    };
    // hyper sends no body in answer to HEAD, and takes its length from it.
    let mut answer = hyper::Response::new(Outbound {
        bytes: bytes.clone(),
        link: link.clone(),
        _permit: permit,
    });
    *answer.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let mut map = hyper::HeaderMap::with_capacity(headers.len() + 1);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper_header_value(value),
        ) {
            map.append(name, value);
        }
    }
    // Browsers must not guess a type (say, HTML) for what is JSON or a bundle.
    map.insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        hyper::header::HeaderValue::from_static("nosniff"),
    );
    *answer.headers_mut() = map;
    link.start_response(Outgoing {
        line: seen.line,
        status,
        client: seen.client,
        started: seen.started,
        length: if head_only { 0 } else { bytes.len() },
        written_before: link.written(),
        complete: head_only || bytes.is_empty(),
        warned,
    });
    answer
}

/// A header value as hyper takes it, without copying its text: a fixed
/// text is borrowed, a made one handed over.
fn hyper_header_value(text: HeaderText) -> Result<hyper::header::HeaderValue, hyper::header::InvalidHeaderValue> {
    use hyper::header::HeaderValue;
    match text {
        Cow::Borrowed(text) => HeaderValue::from_maybe_shared(Bytes::from_static(text.as_bytes())),
        Cow::Owned(text) => HeaderValue::from_maybe_shared(Bytes::from(text)),
    }
}

/// A response body as hyper takes it: in one frame, so that hyper writes it
/// with the head in one vectored write. Holds the request's permit until
/// hyper is done with it.
pub(super) struct Outbound {
    bytes: Bytes,
    link: Arc<Link>,
    _permit: Option<Box<Permit>>,
}

impl http_body::Body for Outbound {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.bytes.is_empty() {
            return Poll::Ready(None);
        }
        this.link.body_taken();
        Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut this.bytes)))))
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.bytes.len() as u64)
    }
}

/// Cached bytes (a bundle, a package page) sent without a copy.
struct Cached(Arc<Vec<u8>>);

impl AsRef<[u8]> for Cached {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_taken_or_refused_as_hyper_takes_them_from_a_copy() {
        let texts = [
            "application/json",
            "\"etag\"",
            "caf\u{e9}",
            "a\r\nSet-Cookie: x",
            "a\u{7f}",
            "a\tb",
        ];
        for text in texts {
            let copied = hyper::header::HeaderValue::from_str(text);
            for handed in [Cow::Borrowed(text), Cow::Owned(text.to_string())] {
                let value = hyper_header_value(handed);
                assert_eq!(value.is_ok(), copied.is_ok(), "{text:?}");
                if let (Ok(value), Ok(copied)) = (value, &copied) {
                    assert_eq!(value, copied);
                }
            }
        }
        assert!(hyper_header_value(Cow::Borrowed("a\r\nSet-Cookie: x")).is_err());
    }
}
