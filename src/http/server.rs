//! A small, defensive HTTP/1.1 server on `std::net`, with `httparse` for the
//! request head.
//!
//! It exists because tiny_http 0.12 cannot be made safe from the application
//! side (see README, "Why not tiny_http"): here every connection is bounded in
//! count, in time and in size before a byte reaches a handler.
//!
//! - at most `max_connections` connections are served at once, one thread each;
//!   beyond that a connection gets `503` with `Retry-After` and is closed;
//! - the request head must arrive within `request_timeout` of its first byte and
//!   fit in `max_header_bytes` (`431` otherwise); body reads time out after
//!   `request_timeout` without progress (`408`);
//! - a body larger than the route's limit is refused with `413` from its
//!   declared `Content-Length`, before it is read or anything is allocated;
//!   the application may refuse a request from its head alone, or hand back
//!   a permit (an upload's share of a memory budget) held until it is answered;
//! - a panicking handler costs one `500`, not a worker.

use super::{Request, Response, reason_phrase};
use crate::error::ApiError;
use crate::store::lock_ignoring_poison as lock;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What the server asks of the application.
pub trait Service: Send + Sync + 'static {
    /// What a request with this head is allowed, or the error that refuses
    /// it outright; consulted before any of the body is read.
    fn body_limit(&self, method: &str, path: &str, headers: &[(String, String)]) -> Result<Allowance, ApiError>;
    fn handle(&self, request: Request) -> Response;
}

/// What the application allows a request before its body is read.
pub struct Allowance {
    /// The largest body accepted.
    pub max_body: u64,
    /// Held while the body is read and handled, dropped once the response
    /// is written: an upload's share of a memory budget, say.
    pub permit: Option<Box<dyn std::any::Any + Send>>,
}

impl From<u64> for Allowance {
    fn from(max_body: u64) -> Allowance {
        Allowance { max_body, permit: None }
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// Deadline for a request head from its first byte, and the longest a body
    /// read may go without progress.
    pub request_timeout: Duration,
    /// How long an idle keep-alive connection is kept open.
    pub keep_alive: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 256,
            request_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(5),
            max_header_bytes: 16 * 1024,
            max_headers: 64,
        }
    }
}

/// How often an idle connection looks up from its socket to see whether the
/// server is shutting down.
const IDLE_POLL: Duration = Duration::from_millis(200);
const READ_CHUNK: usize = 16 * 1024;
/// How long, and how much, a refused request is drained before closing,
/// and the pause in its bytes that ends the draining early.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;
const LINGER_PAUSE: Duration = Duration::from_millis(200);
/// Bytes per second a request or response body must average (beyond the timeout).
const MIN_BODY_RATE: u64 = 16 * 1024;
const THREAD_STACK: usize = 512 * 1024;

pub struct Server {
    listener: TcpListener,
    limits: Limits,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    shutting_down: AtomicBool,
    active: Mutex<usize>,
    idle: Condvar,
}

/// Stops a running [`Server`] from another thread (a signal handler's).
#[derive(Clone)]
pub struct ShutdownHandle {
    state: Arc<State>,
    wake_address: SocketAddr,
}

impl ShutdownHandle {
    /// Stops accepting connections; in-flight requests finish, idle
    /// connections close.
    pub fn shut_down(&self) {
        self.state.shutting_down.store(true, Ordering::SeqCst);
        // `accept` cannot be interrupted portably: wake it with a connection.
        let _ = TcpStream::connect_timeout(&self.wake_address, Duration::from_secs(1));
    }

    pub fn is_shutting_down(&self) -> bool {
        self.state.shutting_down.load(Ordering::SeqCst)
    }
}

impl Server {
    pub fn bind(address: &str, limits: Limits) -> io::Result<Server> {
        let listener = TcpListener::bind(address)?;
        Ok(Server {
            listener,
            limits,
            state: Arc::default(),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn shutdown_handle(&self) -> io::Result<ShutdownHandle> {
        let mut wake_address = self.local_addr()?;
        if wake_address.ip().is_unspecified() {
            wake_address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Ok(ShutdownHandle {
            state: self.state.clone(),
            wake_address,
        })
    }

    /// Serves until shut down, then waits for in-flight requests to finish.
    pub fn run(self, service: Arc<dyn Service>) {
        let limits = Arc::new(self.limits.clone());
        for stream in self.listener.incoming() {
            if self.state.shutting_down.load(Ordering::SeqCst) {
                break;
            }
            let stream = match stream {
                Ok(stream) => stream,
                Err(err) => {
                    // Out of file descriptors, typically: breathe instead of spinning.
                    log::error!("accept failed: {err}");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            let Ok(remote) = stream.peer_addr() else {
                continue;
            };
            {
                let mut active = lock(&self.state.active);
                if *active >= limits.max_connections {
                    drop(active);
                    refuse_busy(stream);
                    continue;
                }
                *active += 1;
            }
            let (service, limits, state) = (service.clone(), limits.clone(), self.state.clone());
            let spawned = std::thread::Builder::new()
                .name("connection".into())
                .stack_size(THREAD_STACK)
                .spawn(move || {
                    let _slot = Slot(&state);
                    Connection::new(stream, remote, &limits, &state).serve(service.as_ref());
                });
            if spawned.is_err() {
                // The closure (and its slot) never ran: give the slot back.
                *lock(&self.state.active) -= 1;
            }
        }
        // Close the listening socket first: new connections are refused at
        // once instead of waiting, unanswered, for in-flight requests.
        drop(self.listener);
        let mut active = lock(&self.state.active);
        while *active > 0 {
            active = self.state.idle.wait(active).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Releases a connection slot when the connection's thread ends, however it ends.
struct Slot<'a>(&'a State);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *lock(&self.0.active) -= 1;
        self.0.idle.notify_all();
    }
}

fn refuse_busy(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let error = ApiError::new(
        503,
        "server_busy",
        "The registry is serving as many connections as it can; try again shortly.",
    )
    .with_header("Retry-After", "1");
    let _ = write_response(&mut stream, &Response::from_error(&error), false, true);
    let _ = stream.shutdown(Shutdown::Both);
}

enum ReadOutcome {
    /// The peer closed, went idle past the keep-alive, or the server is stopping.
    Closed,
    Fault(ApiError),
}

#[derive(Debug)]
pub struct Head {
    pub method: String,
    pub target: String,
    pub keep_alive: bool,
    pub headers: Vec<(String, String)>,
    /// Bytes of the head, including the blank line.
    pub length: usize,
}

struct Connection<'a> {
    stream: TcpStream,
    remote: SocketAddr,
    limits: &'a Limits,
    state: &'a State,
    /// Bytes read but not consumed yet (the start of the next request).
    buffer: Vec<u8>,
}

impl<'a> Connection<'a> {
    fn new(stream: TcpStream, remote: SocketAddr, limits: &'a Limits, state: &'a State) -> Connection<'a> {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(limits.request_timeout));
        Connection {
            stream,
            remote,
            limits,
            state,
            buffer: Vec::new(),
        }
    }

    fn serve(mut self, service: &dyn Service) {
        let mut idle_limit = self.limits.request_timeout;
        loop {
            let head = match self.read_head(idle_limit) {
                Ok(head) => head,
                Err(ReadOutcome::Closed) => break,
                Err(ReadOutcome::Fault(error)) => {
                    self.fail(&error);
                    break;
                }
            };
            let started = Instant::now();
            let (path, query) = match head.target.split_once('?') {
                Some((path, query)) => (path.to_string(), query.to_string()),
                None => (head.target.clone(), String::new()),
            };
            let allowance = service.body_limit(&head.method, &path, &head.headers);
            let (body, _permit) = match allowance
                .map_err(ReadOutcome::Fault)
                .and_then(|allowance| Ok((self.read_body(&head, allowance.max_body)?, allowance.permit)))
            {
                Ok(body) => body,
                Err(ReadOutcome::Closed) => break,
                Err(ReadOutcome::Fault(error)) => {
                    log_request(&head.method, &path, error.status, started);
                    self.fail(&error);
                    break;
                }
            };
            let keep_alive = head.keep_alive && !self.state.shutting_down.load(Ordering::SeqCst);
            let method = head.method.clone();
            let request = Request {
                method: head.method,
                path: path.clone(),
                query,
                headers: head.headers,
                body,
                remote: self.remote,
            };
            let response = catch_unwind(AssertUnwindSafe(|| service.handle(request))).unwrap_or_else(|_| {
                Response::from_error(&ApiError::internal(format!("handler panicked on {method} {path}")))
            });
            let written = write_response(&mut self.stream, &response, method == "HEAD", !keep_alive);
            log_request(&method, &path, response.status, started);
            if written.is_err() || !keep_alive {
                break;
            }
            idle_limit = self.limits.keep_alive;
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Answers a request that could not be read, then the connection closes.
    /// Unread request bytes would make the kernel reset the connection and
    /// destroy the answer before the client reads it, so the rest of the
    /// request is read and dropped first, within bounds ("lingering close").
    fn fail(&mut self, error: &ApiError) {
        if write_response(&mut self.stream, &Response::from_error(error), false, true).is_err() || error.status == 408 {
            // A client too slow to be served has nothing worth draining.
            return;
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        let deadline = Instant::now() + LINGER;
        let mut drained = 0;
        let mut sink = [0u8; READ_CHUNK];
        while drained < LINGER_BYTES && Instant::now() < deadline {
            // A client still sending keeps the bytes coming; one that pauses is done.
            let wait = deadline.saturating_duration_since(Instant::now()).min(LINGER_PAUSE);
            if self
                .stream
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
                .is_err()
            {
                return;
            }
            match self.stream.read(&mut sink) {
                Ok(0) | Err(_) => return,
                Ok(read) => drained += read,
            }
        }
    }

    fn read_head(&mut self, idle_limit: Duration) -> Result<Head, ReadOutcome> {
        let idle_until = Instant::now() + idle_limit;
        // Set once the head has started: it must be complete by then, however
        // its bytes trickle in.
        let mut head_deadline = (!self.buffer.is_empty()).then(|| Instant::now() + self.limits.request_timeout);
        loop {
            if !self.buffer.is_empty() {
                if let Some(head) = parse_head(&self.buffer, self.limits).map_err(ReadOutcome::Fault)? {
                    return Ok(head);
                }
                if self.buffer.len() >= self.limits.max_header_bytes {
                    return Err(ReadOutcome::Fault(header_too_large(self.limits)));
                }
            }
            let now = Instant::now();
            let wait_until = match head_deadline {
                Some(deadline) if now >= deadline => {
                    return Err(ReadOutcome::Fault(ApiError::new(
                        408,
                        "request_timeout",
                        "The request head did not arrive in time.",
                    )));
                }
                Some(deadline) => deadline,
                None if self.state.shutting_down.load(Ordering::SeqCst) || now >= idle_until => {
                    return Err(ReadOutcome::Closed);
                }
                // Idle: wake regularly to notice a shutdown.
                None => idle_until.min(now + IDLE_POLL),
            };
            match self.read_more(wait_until) {
                Ok(0) => return Err(ReadOutcome::Closed),
                Ok(_) => {
                    head_deadline.get_or_insert(Instant::now() + self.limits.request_timeout);
                }
                Err(err) if is_timeout(&err) => {}
                Err(_) => return Err(ReadOutcome::Closed),
            }
        }
    }

    fn read_body(&mut self, head: &Head, limit: u64) -> Result<Vec<u8>, ReadOutcome> {
        self.buffer.drain(..head.length);
        let length = declared_length(&head.headers, limit).map_err(ReadOutcome::Fault)? as usize; // bounded by `limit`, which fits in memory
        let expects_continue =
            header_value(&head.headers, "expect").is_some_and(|value| value.eq_ignore_ascii_case("100-continue"));
        if expects_continue && self.buffer.len() < length {
            let _ = self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        // Each read must make progress within the timeout, and the whole body
        // must come at a minimum average rate, so a drip cannot hold a slot.
        let body_deadline =
            Instant::now() + self.limits.request_timeout + Duration::from_secs((length as u64).div_ceil(MIN_BODY_RATE));
        while self.buffer.len() < length {
            let deadline = (Instant::now() + self.limits.request_timeout).min(body_deadline);
            let slow = |message: &str| ReadOutcome::Fault(ApiError::new(408, "request_timeout", message.to_string()));
            match self.read_more(deadline) {
                Ok(0) => return Err(ReadOutcome::Closed),
                Ok(_) if self.buffer.len() >= length => {}
                Err(err) if !is_timeout(&err) => return Err(ReadOutcome::Closed),
                _ if Instant::now() >= body_deadline => return Err(slow("The request body arrived too slowly.")),
                Ok(_) => {}
                Err(_) => return Err(slow("The request body stopped arriving.")),
            }
        }
        let rest = self.buffer.split_off(length);
        Ok(std::mem::replace(&mut self.buffer, rest))
    }

    /// One `read` into the buffer, giving up at `deadline`.
    fn read_more(&mut self, deadline: Instant) -> io::Result<usize> {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(wait))?;
        let start = self.buffer.len();
        self.buffer.resize(start + READ_CHUNK, 0);
        let result = self.stream.read(&mut self.buffer[start..]);
        self.buffer.truncate(start + *result.as_ref().unwrap_or(&0));
        result
    }
}

/// Parses a request head from the start of `buffer`: `None` while it is
/// incomplete, an error (400 or 431) when it can never be a valid head.
pub fn parse_head(buffer: &[u8], limits: &Limits) -> Result<Option<Head>, ApiError> {
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut parsed = httparse::Request::new(&mut slots);
    let length = match parsed.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(header_too_large(limits));
        }
        Err(err) => {
            return Err(ApiError::bad_request(
                "malformed_request",
                format!("The request could not be parsed as HTTP/1.1: {err}."),
            ));
        }
    };
    if length > limits.max_header_bytes {
        return Err(header_too_large(limits));
    }
    let method = parsed.method.unwrap_or_default().to_string();
    let mut target = parsed.path.unwrap_or_default().to_string();
    // HTTP/1.1 servers must accept the absolute form (`http://host/path`).
    if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        target = match rest.find('/') {
            Some(start) => rest[start..].to_string(),
            None => "/".to_string(),
        };
    }
    if !target.starts_with('/') {
        return Err(ApiError::bad_request(
            "malformed_request",
            "The request target must be a path starting with '/'.",
        ));
    }
    let mut headers = Vec::with_capacity(parsed.headers.len());
    for header in parsed.headers.iter() {
        let Ok(value) = std::str::from_utf8(header.value) else {
            return Err(ApiError::bad_request(
                "malformed_request",
                format!("The header {} is not valid UTF-8.", header.name),
            ));
        };
        headers.push((header.name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let connection = header_value(&headers, "connection").unwrap_or("").to_ascii_lowercase();
    let keep_alive = match parsed.version {
        Some(1) => !connection.split(',').any(|token| token.trim() == "close"),
        _ => connection.split(',').any(|token| token.trim() == "keep-alive"),
    };
    Ok(Some(Head {
        method,
        target,
        keep_alive,
        headers,
        length,
    }))
}
fn header_value<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// The body length a request head declares, within `limit`: `411` for a
/// chunked body, `400` for a malformed length, `413` over the limit.
pub fn declared_length(headers: &[(String, String)], limit: u64) -> Result<u64, ApiError> {
    if header_value(headers, "transfer-encoding").is_some() {
        return Err(ApiError::new(
            411,
            "length_required",
            "Send the body with a Content-Length; chunked transfer encoding is not accepted.",
        ));
    }
    let length = content_length(headers)?;
    if length > limit {
        return Err(ApiError::too_large(format!(
            "The body is {length} bytes; the limit for this request is {limit} bytes."
        )));
    }
    Ok(length)
}

/// The declared body length: absent means none; several must agree.
fn content_length(headers: &[(String, String)]) -> Result<u64, ApiError> {
    let mut length = None;
    for (_, value) in headers.iter().filter(|(key, _)| key == "content-length") {
        let parsed = (!value.is_empty() && value.len() <= 20 && value.bytes().all(|b| b.is_ascii_digit()))
            .then(|| value.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| {
                ApiError::bad_request("malformed_request", "The Content-Length header is not a valid length.")
            })?;
        if length.is_some_and(|previous| previous != parsed) {
            return Err(ApiError::bad_request(
                "malformed_request",
                "The request has conflicting Content-Length headers.",
            ));
        }
        length = Some(parsed);
    }
    Ok(length.unwrap_or(0))
}

fn header_too_large(limits: &Limits) -> ApiError {
    ApiError::new(
        431,
        "headers_too_large",
        format!(
            "The request head is larger than {} bytes or has more than {} headers.",
            limits.max_header_bytes, limits.max_headers
        ),
    )
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// Bodies up to this size go out in one write with the head; larger ones
/// (bundles) are written after it, not copied next to it.
const INLINE_BODY: usize = 16 * 1024;

fn write_response(stream: &mut TcpStream, response: &Response, head_only: bool, close: bool) -> io::Result<()> {
    let inline = !head_only && response.body.len() <= INLINE_BODY;
    let mut out = Vec::with_capacity(256 + if inline { response.body.len() } else { 0 });
    write!(
        out,
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason_phrase(response.status)
    )?;
    for (name, value) in &response.headers {
        write!(out, "{name}: {value}\r\n")?;
    }
    // 204 and 304 carry no body and no length.
    if !matches!(response.status, 204 | 304) {
        write!(out, "Content-Length: {}\r\n", response.body.len())?;
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if inline {
        out.extend_from_slice(&response.body);
    }
    if inline || head_only {
        stream.write_all(&out)?;
    } else {
        write_both(stream, &out, &response.body)?;
    }
    stream.flush()
}

/// Writes `head` then `body` with vectored writes: one system call for both
/// in the usual case, and no copy of the body next to the head.
fn write_both(stream: &mut TcpStream, head: &[u8], body: &[u8]) -> io::Result<()> {
    let timeout = stream.write_timeout()?.unwrap_or(Duration::from_secs(10));
    let result = write_both_within(stream, head, body, timeout);
    stream.set_write_timeout(Some(timeout))?;
    result
}

fn write_both_within(stream: &mut TcpStream, head: &[u8], body: &[u8], timeout: Duration) -> io::Result<()> {
    // Like request bodies, responses must leave at a minimum average rate:
    // a client reading a bundle a byte at a time must not keep its slot.
    let deadline = Instant::now() + timeout + Duration::from_secs((body.len() as u64).div_ceil(MIN_BODY_RATE));
    let (mut head, mut body) = (head, body);
    while !head.is_empty() || !body.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left.min(timeout)))?;
        let written = stream.write_vectored(&[io::IoSlice::new(head), io::IoSlice::new(body)])?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_head = written.min(head.len());
        head = &head[from_head..];
        body = &body[written - from_head..];
    }
    Ok(())
}

fn log_request(method: &str, path: &str, status: u16, started: Instant) {
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    log::info!("{method} {path} {status} {millis:.1}ms");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Panics on `/panic`, answers 200 elsewhere.
    struct Fragile;

    impl Service for Fragile {
        fn body_limit(&self, _: &str, _: &str, _: &[(String, String)]) -> Result<Allowance, ApiError> {
            Ok(1024.into())
        }

        fn handle(&self, request: Request) -> Response {
            if request.path == "/panic" {
                panic!("a handler bug");
            }
            Response::no_content_with(200)
        }
    }

    fn status_of(address: SocketAddr, path: &str) -> u16 {
        let mut stream = TcpStream::connect(address).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer[9..12].parse().unwrap()
    }

    #[test]
    fn a_panicking_handler_costs_one_500_and_no_capacity() {
        let limits = Limits {
            max_connections: 2,
            ..Limits::default()
        };
        let server = Server::bind("127.0.0.1:0", limits).unwrap();
        let address = server.local_addr().unwrap();
        let shutdown = server.shutdown_handle().unwrap();
        let running = std::thread::spawn(move || server.run(Arc::new(Fragile)));
        // More panics than connection slots: each must give its slot back.
        for _ in 0..5 {
            assert_eq!(status_of(address, "/panic"), 500);
        }
        assert_eq!(status_of(address, "/fine"), 200);
        shutdown.shut_down();
        running.join().unwrap();
    }
}
