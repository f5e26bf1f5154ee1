//! A small, defensive HTTP/1.1 server on `std::net`, with `httparse` for the
//! request head.
//!
//! It exists because tiny_http 0.12 cannot be made safe from the application
//! side (see README, "Why not tiny_http"): here every connection is bounded in
//! count, in time and in size before a byte reaches a handler.
//!
//! - at most `max_connections` connections are served at once, one thread each,
//!   and at most `max_connections_per_client` from one client network (an IPv4
//!   address, an IPv6 /64; trusted proxies are exempt, they carry many
//!   clients); beyond that a connection gets `503` with `Retry-After` and is
//!   closed;
//! - the request head must arrive within `request_timeout` of its first byte and
//!   fit in `max_header_bytes` (`431` otherwise); body reads time out after
//!   `request_timeout` without progress (`408`);
//! - a body larger than the route's limit is refused with `413` from its
//!   declared `Content-Length`, before it is read or anything is allocated;
//!   a refused body up to `max_drain_bytes` is then read and dropped, so that
//!   a proxy still sending it gets the answer rather than a reset (`502`);
//!   the application may refuse a request from its head alone, or hand back
//!   a permit (an upload's share of a memory budget, who was admitted) that
//!   its handler gets and that is held until it is answered;
//! - a panicking handler costs one `500`, not a worker;
//! - on shutdown, in-flight connections get `shutdown_grace` to finish, then
//!   are abandoned ([`Server::serve_until_shut_down`] returns).
//!
//! Every request that reaches a handler is one `info` line of the log; what
//! the connection layer decides on its own (refusals, bad or slow heads,
//! responses the client did not take in full) is a rate-limited warning
//! ([`super::warnings`]). Every response says `X-Content-Type-Options: nosniff`.

use super::warnings::Warnings;
use super::{Request, Response, reason_phrase};
use crate::http::errors::ApiError;
use gren_registry_core::error::ErrorCode;
use gren_registry_core::ratelimit::client_network;
use gren_registry_core::store::lock_ignoring_poison as lock;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What the server asks of the application.
pub trait Service: Send + Sync + 'static {
    /// What a request with this head is allowed, or the error that refuses
    /// it outright; consulted before any of the body is read.
    fn body_limit(&self, method: &str, path: &str, headers: &[(String, String)]) -> Result<Allowance, ApiError>;
    /// Answers a request, with the permit of its [`Allowance`]: what was
    /// decided from the head reaches the answer.
    fn handle(&self, request: Request, permit: Option<&Permit>) -> Response;
}

/// Whatever the application keeps from a request's head to its answer.
pub type Permit = dyn std::any::Any + Send;

/// What the application allows a request before its body is read.
pub struct Allowance {
    /// The largest body accepted.
    pub max_body: u64,
    /// Held while the body is read and handled, handed to the handler,
    /// dropped once the response is written: an upload's share of a memory
    /// budget, say, and who was admitted.
    pub permit: Option<Box<Permit>>,
}

impl From<u64> for Allowance {
    fn from(max_body: u64) -> Allowance {
        Allowance { max_body, permit: None }
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// Connections from one client network (see [`client_network`]).
    pub max_connections_per_client: usize,
    /// Peers exempt from the per-client cap: proxies carry many clients.
    pub trusted_proxies: Vec<IpAddr>,
    /// Deadline for a request head from its first byte, and the longest a body
    /// read may go without progress.
    pub request_timeout: Duration,
    /// How long an idle keep-alive connection is kept open.
    pub keep_alive: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// The largest refused body read to its end before the connection closes
    /// (the largest body a proxy in front would pass on).
    pub max_drain_bytes: u64,
    /// How long in-flight connections may go on after a shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 256,
            max_connections_per_client: 32,
            trusted_proxies: Vec::new(),
            request_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(5),
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            max_drain_bytes: 10 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// How often an idle connection looks up from its socket to see whether the
/// server is shutting down.
const IDLE_POLL: Duration = Duration::from_millis(200);
const READ_CHUNK: usize = 16 * 1024;
/// How long, and how much, a refused request of unknown length is drained
/// before closing, and the pause in its bytes that ends the draining early.
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
    open: Mutex<Open>,
    idle: Condvar,
    warnings: Warnings,
}

/// The connections being served: in all, and per client network.
#[derive(Default)]
struct Open {
    total: usize,
    per_client: HashMap<String, usize>,
}

/// Stops a running [`Server`] from another thread (a signal handler's).
#[derive(Clone)]
pub struct ShutdownHandle {
    state: Arc<State>,
    wake_address: SocketAddr,
}

impl ShutdownHandle {
    /// Stops accepting connections; in-flight requests get the grace period
    /// to finish, idle connections close.
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

    /// Serves until shut down, then waits for in-flight requests to finish,
    /// for at most the grace period.
    pub fn serve_until_shut_down(self, service: Arc<dyn Service>) {
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
            let slot = match Slot::take(&self.state, &limits, remote.ip()) {
                Ok(slot) => slot,
                Err(error) => {
                    refuse(stream, remote, &error, &self.state.warnings);
                    continue;
                }
            };
            let (service, limits) = (service.clone(), limits.clone());
            // If the thread cannot start, the closure is dropped with the slot,
            // which gives the slot back.
            let _ = std::thread::Builder::new()
                .name("connection".into())
                .stack_size(THREAD_STACK)
                .spawn(move || {
                    Connection::new(stream, remote, &limits, &slot.state).serve(service.as_ref());
                    drop(slot);
                });
        }
        // Close the listening socket first: new connections are refused at
        // once instead of waiting, unanswered, for in-flight requests.
        drop(self.listener);
        self.state.wait_for_connections(limits.shutdown_grace);
        self.state.warnings.flush();
    }
}

impl State {
    /// Waits until no connection is open, or `grace` has passed. Connections
    /// still open then are abandoned: the process is about to end, and the
    /// store's writes are atomic, so they leave nothing half-written.
    fn wait_for_connections(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let mut open = lock(&self.open);
        while open.total > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!(
                    "shutdown: {} connection(s) still open after the {:.0} s grace period are abandoned",
                    open.total,
                    grace.as_secs_f64()
                );
                return;
            }
            open = self.idle.wait_timeout(open, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

/// A connection's share of the limits, given back when the connection's
/// thread ends, however it ends.
struct Slot {
    state: Arc<State>,
    /// The client network counted, unless the peer is a trusted proxy.
    client: Option<String>,
}

impl Slot {
    /// Takes a slot for a connection from `peer`, or the `503` refusing it.
    fn take(state: &Arc<State>, limits: &Limits, peer: IpAddr) -> Result<Slot, ApiError> {
        let client = (!limits.trusted_proxies.contains(&peer)).then(|| client_network(peer));
        let mut open = lock(&state.open);
        if open.total >= limits.max_connections {
            return Err(busy(
                ErrorCode::ServerBusy,
                "The registry is serving as many connections as it can; try again shortly.",
            ));
        }
        if let Some(client) = &client {
            let count = open.per_client.entry(client.clone()).or_default();
            if *count >= limits.max_connections_per_client {
                return Err(busy(
                    ErrorCode::TooManyConnections,
                    format!(
                        "This client has {} connections open, as many as the registry serves to one client; \
                         close some or try again shortly.",
                        limits.max_connections_per_client
                    ),
                ));
            }
            *count += 1;
        }
        open.total += 1;
        Ok(Slot {
            state: state.clone(),
            client,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = lock(&self.state.open);
        open.total -= 1;
        if let Some(client) = &self.client
            && let Some(count) = open.per_client.get_mut(client)
        {
            *count -= 1;
            if *count == 0 {
                open.per_client.remove(client);
            }
        }
        drop(open);
        self.state.idle.notify_all();
    }
}

fn busy(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(503, code, message).with_header("Retry-After", "1")
}

/// Answers a connection that gets no slot, from the accepting thread: the
/// short answer fits in the socket's buffer, so the write does not wait.
fn refuse(mut stream: TcpStream, remote: SocketAddr, error: &ApiError, warnings: &Warnings) {
    warnings.warn(error.code.as_str(), || connection_line(remote, error));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = write_response(&mut stream, &Response::from_error(error), false, true);
    let _ = stream.shutdown(Shutdown::Both);
}

/// The log line of a connection refused before it had a request line.
fn connection_line(remote: SocketAddr, error: &ApiError) -> String {
    format!("connection from {}: {} {}", remote.ip(), error.status, error.code)
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
                    self.warn(&error, || connection_line(self.remote, &error));
                    self.fail(&error, None);
                    break;
                }
            };
            if !self.exchange(service, head) {
                break;
            }
            idle_limit = self.limits.keep_alive;
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Reads the body of the request `head` starts, has `service` answer it
    /// and writes the answer; whether the connection may carry another request.
    fn exchange(&mut self, service: &dyn Service, head: Head) -> bool {
        let started = Instant::now();
        let (path, query) = match head.target.split_once('?') {
            Some((path, query)) => (path.to_string(), query.to_string()),
            None => (head.target.clone(), String::new()),
        };
        let seen = Seen {
            line: format!("{} {path}", head.method),
            client: super::client_ip(self.remote, &head.headers, &self.limits.trusted_proxies),
            started,
        };
        // The permit (if any) is held until the response is written.
        let (body, permit) = match service.body_limit(&head.method, &path, &head.headers) {
            Ok(allowance) => (self.read_body(&head, allowance.max_body), allowance.permit),
            Err(error) => {
                // What follows the head is (the start of) the refused body.
                self.buffer.drain(..head.length);
                (Err(ReadOutcome::Fault(error)), None)
            }
        };
        let body = match body {
            Ok(body) => body,
            Err(ReadOutcome::Closed) => return false,
            Err(ReadOutcome::Fault(error)) => {
                self.warn(&error, || {
                    format!(
                        "{} {} {} {}, from {}",
                        seen.line,
                        error.status,
                        seen.took(),
                        error.code,
                        seen.client
                    )
                });
                self.fail(&error, drainable_length(&head));
                return false;
            }
        };
        let keep_alive = head.keep_alive && !self.state.shutting_down.load(Ordering::SeqCst);
        let head_only = head.method == "HEAD";
        let request = Request {
            method: head.method,
            path,
            query,
            headers: head.headers,
            body,
            remote: self.remote,
            params: Vec::new(),
        };
        let response =
            catch_unwind(AssertUnwindSafe(|| service.handle(request, permit.as_deref()))).unwrap_or_else(|_| {
                Response::from_error(&ApiError::internal(format!("handler panicked on {}", seen.line)))
            });
        self.respond(&seen, &response, head_only, keep_alive)
    }

    /// Writes a handler's response and logs it: one `info` line when it got
    /// out whole, a warning saying how much did when not. Whether the
    /// connection may carry another request.
    fn respond(&mut self, seen: &Seen, response: &Response, head_only: bool, keep_alive: bool) -> bool {
        let status = response.status;
        match write_response(&mut self.stream, response, head_only, !keep_alive) {
            Ok(()) => {
                log::info!("{} {status} {}", seen.line, seen.took());
                keep_alive
            }
            Err(cut) => {
                let length = if head_only { 0 } else { response.body.len() };
                self.state.warnings.warn("aborted", || {
                    format!(
                        "{} {status} aborted after {} of {length} bytes ({}), {}, from {}",
                        seen.line,
                        cut.body_sent,
                        cut.error.kind(),
                        seen.took(),
                        seen.client
                    )
                });
                false
            }
        }
    }

    /// Logs a refusal of the connection layer, at a bounded rate.
    fn warn(&self, error: &ApiError, line: impl FnOnce() -> String) {
        self.state.warnings.warn(error.code.as_str(), line);
    }

    /// Answers a request that could not be read, then the connection closes.
    /// Unread request bytes would make the kernel reset the connection and
    /// destroy the answer before the client reads it, so the rest of the
    /// request is read and dropped first, within bounds ("lingering close"):
    /// all of a body of known length up to `max_drain_bytes`, for a proxy
    /// that sends what it buffered whatever the answer; otherwise what
    /// arrives within [`LINGER`].
    fn fail(&mut self, error: &ApiError, declared: Option<u64>) {
        if write_response(&mut self.stream, &Response::from_error(error), false, true).is_err() || error.status == 408 {
            // A client too slow to be served has nothing worth draining.
            return;
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        match declared {
            Some(length) if length <= self.limits.max_drain_bytes => self.drain(length),
            _ => self.linger(),
        }
    }

    /// Reads and drops the rest of a body of `length` bytes, at the pace
    /// asked of bodies that are accepted.
    fn drain(&mut self, length: u64) {
        let mut left = length.saturating_sub(self.buffer.len() as u64);
        self.buffer = Vec::new();
        let deadline = transfer_deadline(self.limits.request_timeout, left);
        let mut sink = [0u8; READ_CHUNK];
        while left > 0 {
            let wait = (Instant::now() + self.limits.request_timeout)
                .min(deadline)
                .saturating_duration_since(Instant::now());
            if wait.is_zero() || self.stream.set_read_timeout(Some(wait)).is_err() {
                return;
            }
            let chunk = left.min(READ_CHUNK as u64) as usize;
            match self.stream.read(&mut sink[..chunk]) {
                Ok(0) | Err(_) => return,
                Ok(read) => left -= read as u64,
            }
        }
    }

    fn linger(&mut self) {
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
                        ErrorCode::RequestTimeout,
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
        if expects_continue(&head.headers) && self.buffer.len() < length {
            let _ = self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        // Each read must make progress within the timeout, and the whole body
        // must come at a minimum average rate, so a drip cannot hold a slot.
        let body_deadline = transfer_deadline(self.limits.request_timeout, length as u64);
        while self.buffer.len() < length {
            let deadline = (Instant::now() + self.limits.request_timeout).min(body_deadline);
            let slow =
                |message: &str| ReadOutcome::Fault(ApiError::new(408, ErrorCode::RequestTimeout, message.to_string()));
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
                ErrorCode::MalformedRequest,
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
            ErrorCode::MalformedRequest,
            "The request target must be a path starting with '/'.",
        ));
    }
    let mut headers = Vec::with_capacity(parsed.headers.len());
    for header in parsed.headers.iter() {
        let Ok(value) = std::str::from_utf8(header.value) else {
            return Err(ApiError::bad_request(
                ErrorCode::MalformedRequest,
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
            ErrorCode::LengthRequired,
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
                ApiError::bad_request(
                    ErrorCode::MalformedRequest,
                    "The Content-Length header is not a valid length.",
                )
            })?;
        if length.is_some_and(|previous| previous != parsed) {
            return Err(ApiError::bad_request(
                ErrorCode::MalformedRequest,
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
        ErrorCode::HeadersTooLarge,
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

/// A response that did not get out whole.
struct Cut {
    error: io::Error,
    /// Bytes of the body that did.
    body_sent: usize,
}

fn write_response(stream: &mut TcpStream, response: &Response, head_only: bool, close: bool) -> Result<(), Cut> {
    let inline = !head_only && response.body.len() <= INLINE_BODY;
    let mut out = Vec::with_capacity(256 + if inline { response.body.len() } else { 0 });
    out.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", response.status, reason_phrase(response.status)).as_bytes());
    for (name, value) in &response.headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    // Browsers must not guess a type (say, HTML) for what is JSON or a bundle.
    out.extend_from_slice(b"X-Content-Type-Options: nosniff\r\n");
    // 204 and 304 carry no body and no length.
    if !matches!(response.status, 204 | 304) {
        out.extend_from_slice(format!("Content-Length: {}\r\n", response.body.len()).as_bytes());
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let head_length = out.len();
    let body: &[u8] = if inline || head_only { &[] } else { &response.body };
    if inline {
        out.extend_from_slice(&response.body);
    }
    let mut sent = 0;
    let result = write_both(stream, &out, body, &mut sent).and_then(|()| stream.flush());
    result.map_err(|error| Cut {
        error,
        body_sent: sent.saturating_sub(head_length),
    })
}

/// Writes `head` then `body` with vectored writes: one system call for both
/// in the usual case, and no copy of the body next to the head. `sent`
/// counts the bytes written, also when it fails.
fn write_both(stream: &mut TcpStream, head: &[u8], body: &[u8], sent: &mut usize) -> io::Result<()> {
    let timeout = stream.write_timeout()?.unwrap_or(Duration::from_secs(10));
    let result = write_both_within(stream, head, body, timeout, sent);
    stream.set_write_timeout(Some(timeout))?;
    result
}

fn write_both_within(
    stream: &mut TcpStream,
    head: &[u8],
    body: &[u8],
    timeout: Duration,
    sent: &mut usize,
) -> io::Result<()> {
    // Like request bodies, responses must leave at a minimum average rate:
    // a client reading a bundle a byte at a time must not keep its slot.
    let deadline = transfer_deadline(timeout, body.len() as u64);
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
        *sent += written;
        let from_head = written.min(head.len());
        head = &head[from_head..];
        body = &body[written - from_head..];
    }
    Ok(())
}

/// When a transfer of `bytes` must be done: the progress timeout plus the
/// time the bytes take at [`MIN_BODY_RATE`], so a drip cannot hold a slot.
fn transfer_deadline(timeout: Duration, bytes: u64) -> Instant {
    Instant::now() + timeout + Duration::from_secs(bytes.div_ceil(MIN_BODY_RATE))
}

/// The declared length of a body that is worth reading to its end after
/// refusing it: not one that is chunked (its length is unknown), nor one
/// whose client waits for `100 Continue` before sending it.
fn drainable_length(head: &Head) -> Option<u64> {
    if expects_continue(&head.headers) || header_value(&head.headers, "transfer-encoding").is_some() {
        return None;
    }
    content_length(&head.headers).ok()
}

fn expects_continue(headers: &[(String, String)]) -> bool {
    header_value(headers, "expect").is_some_and(|value| value.eq_ignore_ascii_case("100-continue"))
}

/// What the log says about a request: its method and path (no query: it
/// may hold secrets), the client, and when its head was read.
struct Seen {
    line: String,
    client: IpAddr,
    started: Instant,
}

impl Seen {
    fn took(&self) -> String {
        format!("{:.1}ms", self.started.elapsed().as_secs_f64() * 1000.0)
    }
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

        fn handle(&self, request: Request, _: Option<&Permit>) -> Response {
            if request.path == "/panic" {
                panic!("a handler bug");
            }
            Response::no_content_with(200)
        }
    }

    /// The status of a request, `None` when the connection was refused
    /// before the request got through.
    fn try_status_of(address: SocketAddr, path: &str) -> Option<u16> {
        let mut stream = TcpStream::connect(address).ok()?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        answer.get(9..12)?.parse().ok()
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
        let running = std::thread::spawn(move || server.serve_until_shut_down(Arc::new(Fragile)));
        // More panics than connection slots: each must give its slot back.
        // A connection's slot is given back when its thread ends, a moment
        // after its answer: wait for the slots, each panic must not keep one.
        let mut panics = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while panics < 5 && Instant::now() < deadline {
            match try_status_of(address, "/panic") {
                Some(500) => panics += 1,
                Some(503) | None => std::thread::sleep(Duration::from_millis(10)),
                Some(other) => panic!("a panicking handler answered {other}"),
            }
        }
        assert_eq!(panics, 5, "the slots of panicked handlers came back");
        while try_status_of(address, "/fine") != Some(200) {
            assert!(Instant::now() < deadline, "no slot came back after the panics");
            std::thread::sleep(Duration::from_millis(10));
        }
        shutdown.shut_down();
        running.join().unwrap();
    }
}
