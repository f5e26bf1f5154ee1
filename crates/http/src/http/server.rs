//! The connection layer: HTTP/1.1 by hyper on tokio, in front of a
//! synchronous application (the [`Service`] trait) whose handlers run on a
//! bounded pool of blocking threads.
//!
//! A connection costs a socket, a task and a few KB, never a thread: ten
//! thousand idle keep-alive connections or half-sent heads are cheap. What
//! bounds them:
//!
//! - at most `max_connections` connections are open at once, and at most
//!   `max_connections_per_client` from one client network (an IPv4 address,
//!   an IPv6 /64; trusted proxies are exempt, they carry many clients);
//!   beyond that a connection gets `503` with `Retry-After` and is closed
//!   once what the client sent is read, so that no reset destroys the
//!   answer (at most [`LINGERING_REFUSALS`] at once, each for a second at
//!   most; beyond them a refusal closes at once);
//! - every request head passes the [`gate`] before hyper sees a byte of it:
//!   it must arrive within `request_timeout` of its first byte (`408`) and
//!   fit in `max_header_bytes` (`431`), and the shapes hyper would take but
//!   a proxy in front might read differently (`Content-Length` with
//!   `Transfer-Encoding`, two different lengths, obs-folded lines) are `400`;
//!   each refusal carries the registry's JSON error body;
//! - a body must keep arriving (`request_timeout` without progress) and
//!   average a minimum rate (`408`); a response must leave the same way;
//! - a body larger than the route's limit is refused with `413` from its
//!   declared `Content-Length`, before it is read or anything is allocated
//!   (see [`exchange`]); a refused body up to `max_drain_bytes` is then read
//!   and dropped, so that a proxy still sending it gets the answer rather
//!   than a reset (`502`); chunked bodies are refused (`411`), from the
//!   head alone, without a handler;
//! - at most `max_handlers` requests are in the application's handlers at
//!   once; more wait up to `handler_wait`, then get `503` with
//!   `Retry-After` (requests the service says are answered at once, such as
//!   anonymous reads, run on the connection's task instead);
//! - a panicking handler costs one `500`;
//! - on shutdown, idle connections close, in-flight requests get
//!   `shutdown_grace` to finish, then are abandoned
//!   ([`Server::serve_until_shut_down`] returns).
//!
//! Every request that reaches a handler is one `info` line of the log; what
//! the connection layer decides on its own (refusals, bad or slow heads,
//! responses the client did not take in full) is a rate-limited warning
//! ([`super::warnings`]). Every response says `X-Content-Type-Options: nosniff`.

mod exchange;
mod gate;

use super::warnings::Warnings;
use super::{Request, Response};
use crate::http::errors::ApiError;
use gren_registry_core::error::ErrorCode;
use gren_registry_core::ratelimit::client_network;
use gren_registry_core::store::lock_ignoring_poison as lock;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server asks of the application.
pub trait Service: Send + Sync + 'static {
    /// What a request with this head is allowed, or the error that refuses
    /// it outright; consulted before any of the body is read.
    fn body_limit(&self, method: &str, path: &str, headers: &[(String, String)]) -> Result<Allowance, ApiError>;
    /// Answers a request, with the permit of its [`Allowance`]: what was
    /// decided from the head reaches the answer.
    fn handle(&self, request: Request, permit: Option<&Permit>) -> Response;
    /// Whether a request with this head (and no body) is answered at once,
    /// from memory or a short file read: nothing it does waits (no network,
    /// no fsync, no sleep, no lock held long). Such a request is answered on
    /// the connection's task rather than a handler thread, which spares two
    /// thread switches per request; anything else runs on the pool. It is
    /// handled without [`Service::body_limit`], and without a permit.
    fn answers_at_once(&self, _method: &str, _path: &str, _headers: &[(String, String)]) -> bool {
        false
    }
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
    /// Connections open at once, idle ones included.
    pub max_connections: usize,
    /// Connections from one client network (see [`client_network`]).
    pub max_connections_per_client: usize,
    /// Peers exempt from the per-client cap: proxies carry many clients.
    pub trusted_proxies: Vec<IpAddr>,
    /// Requests in the application's handlers at once.
    pub max_handlers: usize,
    /// How long a request waits for a handler before it is answered `503`.
    pub handler_wait: Duration,
    /// Deadline for a request head from its first byte, and the longest a body
    /// read or a response write may go without progress.
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
            max_connections: 10_000,
            max_connections_per_client: 32,
            trusted_proxies: Vec::new(),
            max_handlers: 64,
            handler_wait: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(5),
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            max_drain_bytes: 10 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Bytes per second a request or response body must average (beyond the timeout).
const MIN_BODY_RATE: u64 = 16 * 1024;
/// Connections waiting in the kernel to be accepted: a thousand clients
/// connecting at once must not be dropped and retried a second later.
const LISTEN_BACKLOG: u32 = 4096;
/// How long an idle handler thread is kept for the next request.
const HANDLER_THREAD_IDLE: Duration = Duration::from_secs(1);
/// Refused connections read to their end at once before they close (see
/// [`refuse`]): each holds its socket for up to a second, so a flood of
/// connections beyond the cap holds at most these few more files.
pub const LINGERING_REFUSALS: usize = 32;

pub struct Server {
    runtime: tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    limits: Limits,
    state: Arc<State>,
}

/// What every connection shares.
struct State {
    /// Tells the accept loop and idle connections that a shutdown began.
    stop: tokio::sync::watch::Sender<bool>,
    open: Mutex<Open>,
    /// Refused connections being read before they close.
    lingering: AtomicUsize,
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
}

impl ShutdownHandle {
    /// Stops accepting connections; in-flight requests get the grace period
    /// to finish, idle connections close.
    pub fn shut_down(&self) {
        self.state.stop.send_replace(true);
    }
}

impl Server {
    /// Binds `address`, and starts the runtime the connections will run on
    /// (its blocking pool sized for `limits.max_handlers`).
    pub fn bind(address: &str, limits: Limits) -> io::Result<Server> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("connections")
            // Handlers, the head checks of requests with a body, and a few
            // spare for the moments a finished handler's thread is not back yet.
            .max_blocking_threads(limits.max_handlers.max(1) + 4)
            .thread_keep_alive(HANDLER_THREAD_IDLE)
            .build()?;
        let address = address
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on"))?;
        let listener = runtime.block_on(async { listen(address) })?;
        let (stop, _) = tokio::sync::watch::channel(false);
        Ok(Server {
            runtime,
            listener,
            limits,
            state: Arc::new(State {
                stop,
                open: Mutex::default(),
                lingering: AtomicUsize::new(0),
                warnings: Warnings::default(),
            }),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn shutdown_handle(&self) -> io::Result<ShutdownHandle> {
        Ok(ShutdownHandle {
            state: self.state.clone(),
        })
    }

    /// Serves until shut down, then waits for in-flight requests to finish,
    /// for at most the grace period.
    pub fn serve_until_shut_down(self, service: Arc<dyn Service>) {
        let Server {
            runtime,
            listener,
            limits,
            state,
        } = self;
        let limits = Arc::new(limits);
        let shared = Arc::new(exchange::Shared::new(service, limits.clone(), state.clone()));
        runtime.block_on(async {
            accept_until_shut_down(listener, &shared).await;
            wait_for_connections(&state, limits.shutdown_grace).await;
        });
        // Connections still open after the grace period, and handlers still
        // running, are abandoned: the process is about to end, and the
        // store's writes are atomic, so they leave nothing half-written.
        runtime.shutdown_background();
        state.warnings.flush();
    }
}

fn listen(address: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As std's listener does: a restart must not wait for old connections'
    // TIME_WAIT to pass.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn accept_until_shut_down(listener: tokio::net::TcpListener, shared: &Arc<exchange::Shared>) {
    let mut stop = shared.state.stop.subscribe();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopping| *stopping) => break,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, typically: breathe instead of spinning.
                log::error!("accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match Slot::take(&shared.state, &shared.limits, remote.ip()) {
            Ok(slot) => {
                tokio::spawn(exchange::serve_connection(stream, remote, shared.clone(), slot));
            }
            Err(error) => refuse(stream, remote, &error, &shared.state),
        }
    }
    // Close the listening socket first: new connections are refused at once
    // instead of waiting, unanswered, for in-flight requests.
    drop(listener);
}

/// Waits until no connection is open, or `grace` has passed.
async fn wait_for_connections(state: &State, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        let open = lock(&state.open).total;
        if open == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            log::warn!(
                "shutdown: {open} connection(s) still open after the {:.0} s grace period are abandoned",
                grace.as_secs_f64()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A connection's share of the limits, given back when the connection's
/// task ends, however it ends.
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
    }
}

fn busy(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(503, code, message).with_header("Retry-After", "1")
}

/// Answers a connection that gets no slot, from the accepting task: the
/// short answer fits in the socket's buffer, so the write does not wait
/// (and a peer whose buffer is full gets nothing, rather than a task).
///
/// The client may have sent its request already, and more may be on its
/// way: closing a socket with unread bytes, or receiving bytes after the
/// close, makes the kernel send a reset, which breaks the client's next
/// write and can overtake the answer and destroy it. So the answer is
/// followed by a FIN, and what the client still sends is read and dropped
/// ([`gate::linger`]) on a task of its own before the socket closes; at
/// most [`LINGERING_REFUSALS`] at once, so that a flood of refusals costs a
/// bounded number of files and tasks (beyond them the socket closes at once).
fn refuse(stream: tokio::net::TcpStream, remote: SocketAddr, error: &ApiError, state: &Arc<State>) {
    state
        .warnings
        .warn(error.code.as_str(), || connection_line(remote, error));
    let answer = gate::serialize(&Response::from_error(error));
    let written = stream.try_write(&answer).is_ok_and(|written| written == answer.len());
    let lingering = written
        && state
            .lingering
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now < LINGERING_REFUSALS).then_some(now + 1)
            })
            .is_ok();
    if !lingering {
        if let Ok(stream) = stream.into_std() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        let mut stream = stream;
        if tokio::io::AsyncWriteExt::shutdown(&mut stream).await.is_ok() {
            gate::linger(&mut stream).await;
        }
        drop(stream);
        state.lingering.fetch_sub(1, Ordering::AcqRel);
    });
}

/// The log line of a connection refused before it had a request line.
fn connection_line(remote: SocketAddr, error: &ApiError) -> String {
    format!("connection from {}: {} {}", remote.ip(), error.status, error.code)
}

/// Header slots a head is parsed into without an allocation: the default
/// `max_headers`.
const STACK_HEADER_SLOTS: usize = 64;

#[derive(Debug)]
pub struct Head {
    pub method: String,
    pub target: String,
    pub keep_alive: bool,
    pub headers: Vec<(String, String)>,
    /// Bytes of the head, including the blank line.
    pub length: usize,
}

/// Parses a request head from the start of `buffer`: `None` while it is
/// incomplete, an error (400 or 431) when it can never be a valid head.
/// Obs-folded lines (a header continued on the next line) are refused here:
/// httparse does not take them in requests.
pub fn parse_head(buffer: &[u8], limits: &Limits) -> Result<Option<Head>, ApiError> {
    // Every request is parsed here: its header slots are on the stack
    // unless the limit is raised beyond the usual.
    let mut on_stack = [httparse::EMPTY_HEADER; STACK_HEADER_SLOTS];
    let mut on_heap;
    let slots = if limits.max_headers <= STACK_HEADER_SLOTS {
        &mut on_stack[..limits.max_headers]
    } else {
        on_heap = vec![httparse::EMPTY_HEADER; limits.max_headers];
        &mut on_heap[..]
    };
    let mut parsed = httparse::Request::new(slots);
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
        return Err(length_required());
    }
    let length = content_length(headers)?;
    if length > limit {
        return Err(ApiError::too_large(format!(
            "The body is {length} bytes; the limit for this request is {limit} bytes."
        )));
    }
    Ok(length)
}

/// The refusal of a chunked body.
fn length_required() -> ApiError {
    ApiError::new(
        411,
        ErrorCode::LengthRequired,
        "Send the body with a Content-Length; chunked transfer encoding is not accepted.",
    )
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

fn expects_continue(headers: &[(String, String)]) -> bool {
    header_value(headers, "expect").is_some_and(|value| value.eq_ignore_ascii_case("100-continue"))
}

/// When a transfer of `bytes` must be done, counted from its start: the
/// progress timeout plus the time the bytes take at [`MIN_BODY_RATE`], so a
/// drip cannot hold a connection.
fn transfer_allowance(timeout: Duration, bytes: u64) -> Duration {
    timeout + Duration::from_secs(bytes.div_ceil(MIN_BODY_RATE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

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
            max_handlers: 2,
            ..Limits::default()
        };
        let server = Server::bind("127.0.0.1:0", limits).unwrap();
        let address = server.local_addr().unwrap();
        let shutdown = server.shutdown_handle().unwrap();
        let running = std::thread::spawn(move || server.serve_until_shut_down(Arc::new(Fragile)));
        // More panics than connection slots and handlers: each must give its
        // slot and its handler back. A connection's slot is given back a
        // moment after its answer: wait for the slots.
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

    #[test]
    fn the_gate_refuses_what_a_proxy_might_frame_differently() {
        let limits = Limits::default();
        let head = |extra: &str| format!("POST / HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        // Obs-folded lines never parse.
        let folded = head("X-A: one\r\n two\r\nContent-Length: 1\r\n");
        let error = parse_head(folded.as_bytes(), &limits).unwrap_err();
        assert_eq!((error.status, error.code), (400, ErrorCode::MalformedRequest));
        // Differing lengths are refused; equal ones are one length.
        let parsed = parse_head(head("Content-Length: 1\r\nContent-Length: 2\r\n").as_bytes(), &limits);
        let error = content_length(&parsed.unwrap().unwrap().headers).unwrap_err();
        assert_eq!(error.status, 400);
        let parsed = parse_head(head("Content-Length: 2\r\nContent-Length: 2\r\n").as_bytes(), &limits);
        assert_eq!(content_length(&parsed.unwrap().unwrap().headers).unwrap(), 2);
    }
}
