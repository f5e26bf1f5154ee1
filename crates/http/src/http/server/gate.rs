//! The gate: the socket as hyper sees it. Every request head is read and
//! checked here before hyper gets a byte of it, so that a bad head is
//! answered with the registry's JSON error (hyper's own refusals are bare),
//! and every read and write is paced:
//!
//! - an idle connection waits `request_timeout` for its first request and
//!   `keep_alive` for each next one, then closes quietly;
//! - a head must be complete within `request_timeout` of its first byte
//!   (`408`) and fit in `max_header_bytes` (`431`); `Content-Length` with
//!   `Transfer-Encoding`, differing lengths, obs-folded lines and anything
//!   httparse refuses are `400`;
//! - a body is passed on only as far as its `Content-Length` (the next head
//!   is checked in turn) and must keep coming: `request_timeout` without a
//!   byte, or a pace below the minimum rate, ends it with `408`;
//! - a response must leave the same way, or the connection is dropped.
//!
//! A refused head is never shown to hyper: hyper sees the connection end,
//! and the connection's task writes the refusal ([`Gate::finish`]), then
//! reads and drops what the client still sends, within bounds, so that the
//! kernel does not reset the connection under the answer.

use super::{Head, Limits, State, content_length, expects_continue, header_too_large, header_value, parse_head};
use super::{Response, transfer_allowance};
use crate::http::errors::ApiError;
use crate::http::reason_phrase;
use gren_registry_core::error::ErrorCode;
use gren_registry_core::store::lock_ignoring_poison as lock;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The largest `Content-Length` hyper takes.
const MAX_BODY_LENGTH: u64 = u64::MAX - 2;
/// How much of a head is read at a time.
const HEAD_CHUNK: usize = 4096;
/// How long, and how much, a refused request of unknown length is drained
/// before closing, and the pause in its bytes that ends the draining early.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;
const LINGER_PAUSE: Duration = Duration::from_millis(200);

/// What the gate and the requests of one connection share.
pub(super) struct Link {
    pub(super) remote: SocketAddr,
    /// Heads passed to hyper and not yet taken by their exchange, in order.
    heads: Mutex<VecDeque<Head>>,
    /// Why the gate cut a body short: the exchange answers with it.
    body_fault: Mutex<Option<ApiError>>,
    /// The response being written, for its log line.
    outgoing: Mutex<Option<Outgoing>>,
    /// Bytes written to the socket so far.
    written: AtomicU64,
}

/// A response on its way out.
pub(super) struct Outgoing {
    /// The log line's start (`GET /path`), the status, the client and the
    /// start time.
    pub(super) line: String,
    pub(super) status: u16,
    pub(super) client: std::net::IpAddr,
    pub(super) started: std::time::Instant,
    /// Bytes of the body.
    pub(super) length: usize,
    /// The connection's bytes written when the response began.
    pub(super) written_before: u64,
    /// hyper has taken the whole body.
    pub(super) complete: bool,
    /// Logged as a warning already (a refusal): no `info` line.
    pub(super) warned: bool,
}

impl Outgoing {
    /// Milliseconds since the head was taken.
    fn took(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }
}

impl Link {
    pub(super) fn new(remote: SocketAddr) -> Link {
        Link {
            remote,
            heads: Mutex::default(),
            body_fault: Mutex::default(),
            outgoing: Mutex::default(),
            written: AtomicU64::new(0),
        }
    }

    pub(super) fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// The head of the request hyper just handed over.
    pub(super) fn take_head(&self) -> Option<Head> {
        lock(&self.heads).pop_front()
    }

    pub(super) fn take_body_fault(&self) -> Option<ApiError> {
        lock(&self.body_fault).take()
    }

    pub(super) fn start_response(&self, outgoing: Outgoing) {
        *lock(&self.outgoing) = Some(outgoing);
    }

    /// Records that hyper took the whole body.
    pub(super) fn body_taken(&self) {
        if let Some(outgoing) = lock(&self.outgoing).as_mut() {
            outgoing.complete = true;
        }
    }

    /// The response, once hyper has taken all of it.
    fn take_if_complete(&self) -> Option<Outgoing> {
        let mut outgoing = lock(&self.outgoing);
        if outgoing.as_ref().is_some_and(|outgoing| outgoing.complete) {
            outgoing.take()
        } else {
            None
        }
    }

    /// Logs a response that did not get out whole (the connection broke or
    /// stalled): about how much of it left (its head included).
    pub(super) fn log_cut(&self, state: &State, why: &str) {
        if let Some(outgoing) = lock(&self.outgoing).take() {
            let sent = self.written().saturating_sub(outgoing.written_before);
            state.warnings.warn("aborted", || {
                format!(
                    "{} {} aborted after about {} of {} bytes ({why}), {:.1}ms, from {}",
                    outgoing.line,
                    outgoing.status,
                    sent.min(outgoing.length as u64),
                    outgoing.length,
                    outgoing.took(),
                    outgoing.client
                )
            });
        }
    }
}

enum Phase {
    /// Waiting for, or reading, a request head.
    Head,
    /// Passing on the `left` bytes of the current request: its head, then
    /// the last `body` of them, its body.
    Pass {
        left: u64,
        body: u64,
        /// Whether the rest of the body is worth reading to its end if the
        /// request is refused: not when its client waits for `100 Continue`.
        drainable: bool,
    },
    /// Passing on everything: a chunked body, which the exchange refuses;
    /// no head after it is taken.
    Rest,
    Closed,
}

pub(super) struct Gate {
    stream: TcpStream,
    link: Arc<Link>,
    limits: Arc<Limits>,
    state: Arc<State>,
    phase: Phase,
    /// Bytes read and not passed on yet: a head being checked, and what
    /// came after it.
    held: Vec<u8>,
    /// How much of `held` was there when it was last parsed: it is parsed
    /// again only once a new line has arrived, so a client sending a byte
    /// at a time costs a parse a line, not a parse a byte.
    parsed_upto: usize,
    /// The refusal of a head, written by [`Gate::finish`].
    refusal: Option<ApiError>,
    /// A request was passed on and its response is not out yet.
    awaiting_response: bool,
    /// Since when the connection waits for a head, and whether it has served one.
    idle_since: Instant,
    served: bool,
    head_started: Option<Instant>,
    /// When the body being read must be complete, and when its last byte came.
    body_deadline: Option<Instant>,
    body_progress: Instant,
    /// When the response being written must be out (with the start of the
    /// response it was set for), and when a byte last left.
    write_deadline: Option<(std::time::Instant, Instant)>,
    write_progress: Instant,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
}

/// Polls `timer`, set to `deadline`: ready once the deadline has passed.
fn expired(timer: &mut Option<Pin<Box<Sleep>>>, deadline: Instant, cx: &mut Context<'_>) -> bool {
    if Instant::now() >= deadline {
        return true;
    }
    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    if timer.deadline() != deadline {
        timer.as_mut().reset(deadline);
    }
    timer.as_mut().poll(cx).is_ready()
}

impl Gate {
    pub(super) fn new(stream: TcpStream, link: Arc<Link>, limits: Arc<Limits>, state: Arc<State>) -> Gate {
        let now = Instant::now();
        Gate {
            stream,
            link,
            limits,
            state,
            phase: Phase::Head,
            held: Vec::new(),
            parsed_upto: 0,
            refusal: None,
            awaiting_response: false,
            idle_since: now,
            served: false,
            head_started: None,
            body_deadline: None,
            body_progress: now,
            write_deadline: None,
            write_progress: now,
            read_timer: None,
            write_timer: None,
        }
    }

    /// Reads and checks a head; ready once the phase has changed.
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.awaiting_response {
            // hyper looks for the end of the connection while a request is
            // being answered; a next head waits until the answer is out
            // (and a client that closed its sending side still gets it).
            // The write that finishes the answer wakes this task.
            return Poll::Pending;
        }
        loop {
            if !self.held.is_empty() && self.line_arrived() {
                match parse_head(&self.held, &self.limits) {
                    Ok(Some(head)) => return self.pass_on(head),
                    Ok(None) if self.held.len() >= self.limits.max_header_bytes => {
                        return self.refuse(header_too_large(&self.limits));
                    }
                    Ok(None) => {}
                    Err(error) => return self.refuse(error),
                }
            } else if self.held.len() >= self.limits.max_header_bytes {
                return self.refuse(header_too_large(&self.limits));
            } else if self.held.is_empty() && *self.state.stop.borrow() {
                return self.close();
            }
            match self.poll_read_held(cx) {
                Poll::Ready(Ok(0) | Err(_)) => return self.close(),
                Poll::Ready(Ok(_)) => {
                    self.head_started.get_or_insert_with(Instant::now);
                }
                Poll::Pending => return self.wait_for_head(cx),
            }
        }
    }

    /// Whether a line end arrived in `held` since it was last parsed (after
    /// a head was passed on, what is left is looked at afresh).
    fn line_arrived(&mut self) -> bool {
        let from = if self.parsed_upto > self.held.len() {
            0
        } else {
            self.parsed_upto
        };
        self.parsed_upto = self.held.len();
        self.held[from..].contains(&b'\n')
    }

    /// Pending until the head's deadline (`408`) or the idle limit (a quiet close).
    fn wait_for_head(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let idle_limit = if self.served {
            self.limits.keep_alive
        } else {
            self.limits.request_timeout
        };
        let deadline = match self.head_started {
            Some(started) => started + self.limits.request_timeout,
            None => self.idle_since + idle_limit,
        };
        if !expired(&mut self.read_timer, deadline, cx) {
            return Poll::Pending;
        }
        if self.head_started.is_some() {
            let late = ApiError::new(
                408,
                ErrorCode::RequestTimeout,
                "The request head did not arrive in time.",
            );
            return self.refuse(late);
        }
        self.close()
    }

    /// One read into `held`, never past what a head may take.
    fn poll_read_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let room = (self.limits.max_header_bytes + HEAD_CHUNK).saturating_sub(self.held.len());
        self.held.reserve(HEAD_CHUNK.min(room));
        let spare = self.held.spare_capacity_mut();
        let spare_len = spare.len().min(room);
        let mut buf = ReadBuf::uninit(&mut spare[..spare_len]);
        ready!(Pin::new(&mut self.stream).poll_read(cx, &mut buf))?;
        let read = buf.filled().len();
        // SAFETY: `poll_read` initialized the first `read` spare bytes.
        unsafe { self.held.set_len(self.held.len() + read) };
        Poll::Ready(Ok(read))
    }

    /// Checks what hyper would take but a proxy might read differently, and
    /// passes the head on.
    fn pass_on(&mut self, head: Head) -> Poll<()> {
        let chunked = header_value(&head.headers, "transfer-encoding").is_some();
        let length = match content_length(&head.headers) {
            Ok(_) if chunked && header_value(&head.headers, "content-length").is_some() => Err(ApiError::bad_request(
                ErrorCode::MalformedRequest,
                "The request has both a Content-Length and a Transfer-Encoding; send a Content-Length only.",
            )),
            other => other,
        };
        let body = match length {
            // hyper takes no length this close to u64::MAX; no route takes one either.
            Ok(body) if body > MAX_BODY_LENGTH => {
                let message = format!("The body is {body} bytes; no request may be that large.");
                return self.refuse(ApiError::too_large(message));
            }
            Ok(body) => body,
            Err(error) => return self.refuse(error),
        };
        self.parsed_upto = 0;
        let head_length = encode_target(&mut self.held, head.length);
        self.phase = if chunked {
            Phase::Rest
        } else {
            Phase::Pass {
                left: head_length as u64 + body,
                body,
                drainable: !expects_continue(&head.headers),
            }
        };
        self.head_started = None;
        self.body_deadline = None;
        self.awaiting_response = true;
        lock(&self.link.heads).push_back(head);
        Poll::Ready(())
    }

    /// Ends the connection quietly: hyper sees it end.
    fn close(&mut self) -> Poll<()> {
        self.phase = Phase::Closed;
        Poll::Ready(())
    }

    /// Ends the connection with `error`, which [`Gate::finish`] writes.
    fn refuse(&mut self, error: ApiError) -> Poll<()> {
        let remote = self.link.remote;
        self.state
            .warnings
            .warn(error.code.as_str(), || super::connection_line(remote, &error));
        self.refusal = Some(error);
        self.close()
    }

    /// Passes on held bytes, then the socket's, up to the end of the request.
    fn poll_pass(&mut self, cx: &mut Context<'_>, mut buf: hyper::rt::ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        let (left, body) = match self.phase {
            Phase::Pass { left, body, .. } => (left, body),
            _ => (u64::MAX, u64::MAX),
        };
        let room = buf.remaining().min(usize::try_from(left).unwrap_or(usize::MAX));
        let passed = if !self.held.is_empty() {
            let count = room.min(self.held.len());
            buf.put_slice(&self.held[..count]);
            self.held.drain(..count);
            if self.held.capacity() > HEAD_CHUNK {
                // Waiting connections keep no more than one chunk's buffer.
                self.held.shrink_to(HEAD_CHUNK);
            }
            count
        } else {
            if left <= body && self.body_stalled(cx, body) {
                return Poll::Ready(Err(self.cut_body()));
            }
            // SAFETY: the bytes are only written to, as a `ReadBuf` of
            // uninitialized memory, and `advance` counts those filled.
            let read = unsafe {
                let spare = &mut buf.as_mut()[..room];
                let mut read_buf = ReadBuf::uninit(spare);
                ready!(Pin::new(&mut self.stream).poll_read(cx, &mut read_buf))?;
                let read = read_buf.filled().len();
                buf.advance(read);
                read
            };
            if read == 0 {
                self.phase = Phase::Closed;
                return Poll::Ready(Ok(()));
            }
            self.body_progress = Instant::now();
            read
        };
        if let Phase::Pass { left, .. } = &mut self.phase {
            *left -= passed as u64;
            if *left == 0 {
                self.phase = Phase::Head;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Whether the body being read has gone `request_timeout` without a byte
    /// or fallen below the minimum rate; arms the timer otherwise.
    fn body_stalled(&mut self, cx: &mut Context<'_>, body: u64) -> bool {
        let now = Instant::now();
        let timeout = self.limits.request_timeout;
        let deadline = *self.body_deadline.get_or_insert_with(|| {
            self.body_progress = now;
            now + transfer_allowance(timeout, body)
        });
        expired(&mut self.read_timer, deadline.min(self.body_progress + timeout), cx)
    }

    /// Ends a body read that stalled: the exchange answers `408`.
    fn cut_body(&mut self) -> io::Error {
        let message = if self.body_deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            "The request body arrived too slowly."
        } else {
            "The request body stopped arriving."
        };
        *lock(&self.link.body_fault) = Some(ApiError::new(408, ErrorCode::RequestTimeout, message));
        // A client too slow to be served has nothing worth draining.
        self.phase = Phase::Closed;
        io::ErrorKind::TimedOut.into()
    }

    /// Fails a write that made no progress within `request_timeout`, or that
    /// keeps the response below the minimum rate.
    fn poll_write_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
        progress: impl Fn(&T) -> usize,
    ) -> Poll<io::Result<T>> {
        let now = Instant::now();
        let timeout = self.limits.request_timeout;
        // A `100 Continue` goes out before the response is known: it is
        // timed as a response without a body.
        let (started, length) = lock(&self.link.outgoing)
            .as_ref()
            .map_or((None, 0), |outgoing| (Some(outgoing.started), outgoing.length));
        let deadline = match self.write_deadline {
            Some((key, deadline)) if Some(key) == started => deadline,
            _ => {
                self.write_progress = now;
                let deadline = now + transfer_allowance(timeout, length as u64);
                self.write_deadline = started.map(|started| (started, deadline));
                deadline
            }
        };
        match write(Pin::new(&mut self.stream), cx) {
            Poll::Ready(Ok(done)) => {
                let written = progress(&done);
                if written > 0 {
                    self.write_progress = now;
                    self.link.written.fetch_add(written as u64, Ordering::Relaxed);
                }
                Poll::Ready(Ok(done))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending if expired(&mut self.write_timer, deadline.min(self.write_progress + timeout), cx) => {
                Poll::Ready(Err(io::ErrorKind::TimedOut.into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// After hyper is done with the connection: writes a refused head's
    /// answer, then reads and drops what the client still sends, within
    /// bounds, before the connection closes: unread bytes would make the
    /// kernel reset the connection and destroy the answer before the client
    /// reads it ("lingering close"). All of a body of known length up to
    /// `max_drain_bytes` is read, for a proxy that sends what it buffered
    /// whatever the answer; otherwise what arrives within [`LINGER`].
    pub(super) async fn finish(mut self) {
        if let Some(refusal) = self.refusal.take() {
            let answer = serialize(&Response::from_error(&refusal));
            let sent = tokio::time::timeout(self.limits.request_timeout, self.stream.write_all(&answer)).await;
            if !matches!(sent, Ok(Ok(()))) || refusal.status == 408 {
                return;
            }
        }
        let unread = match self.phase {
            Phase::Pass { left, body, drainable } if left <= body && body > 0 => {
                Some(Some(left).filter(|left| drainable && *left <= self.limits.max_drain_bytes))
            }
            Phase::Rest => Some(None),
            Phase::Closed if !self.held.is_empty() => Some(None),
            _ => None,
        };
        let Some(drain) = unread else { return };
        let _ = self.stream.shutdown().await;
        match drain {
            Some(left) => self.drain(left).await,
            None => linger(&mut self.stream).await,
        }
    }

    /// Reads and drops the rest of a body of `left` bytes, at the pace asked
    /// of bodies that are accepted.
    async fn drain(&mut self, mut left: u64) {
        let timeout = self.limits.request_timeout;
        let deadline = Instant::now() + transfer_allowance(timeout, left);
        let mut sink = vec![0u8; 16 * 1024];
        while left > 0 {
            let wait = (Instant::now() + timeout).min(deadline);
            let chunk = left.min(sink.len() as u64) as usize;
            match tokio::time::timeout_at(wait, self.stream.read(&mut sink[..chunk])).await {
                Ok(Ok(read)) if read > 0 => left -= read as u64,
                _ => return,
            }
        }
    }
}

/// Reads and drops what the client of `stream` still sends, for up to
/// [`LINGER`] and [`LINGER_BYTES`], until it pauses for [`LINGER_PAUSE`] or
/// closes: the lingering close of a connection whose answer was written
/// (and whose writing side, shut down, has sent its FIN).
pub(super) async fn linger(stream: &mut TcpStream) {
    let deadline = Instant::now() + LINGER;
    let mut drained = 0;
    let mut sink = vec![0u8; 16 * 1024];
    while drained < LINGER_BYTES {
        // A client still sending keeps the bytes coming; one that pauses is done.
        let wait = deadline.min(Instant::now() + LINGER_PAUSE);
        match tokio::time::timeout_at(wait, stream.read(&mut sink)).await {
            Ok(Ok(read)) if read > 0 => drained += read,
            _ => return,
        }
    }
}

impl hyper::rt::Read for Gate {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.phase {
                Phase::Closed => return Poll::Ready(Ok(())),
                Phase::Head => ready!(this.poll_head(cx)),
                Phase::Pass { .. } | Phase::Rest => return this.poll_pass(cx, buf),
            }
        }
    }
}

impl hyper::rt::Write for Gate {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |stream, cx| stream.poll_write(cx, bytes), |written| *written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_with(
            cx,
            |stream, cx| stream.poll_write_vectored(cx, bufs),
            |written| *written,
        )
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    /// hyper flushes once its buffer is out: when the response is complete
    /// too, it has left, and the connection is idle again.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.stream).poll_flush(cx))?;
        if let Some(outgoing) = this.link.take_if_complete() {
            if !outgoing.warned {
                log::info!(
                    target: gren_registry_core::logging::ACCESS,
                    "{} {} {:.1}ms",
                    outgoing.line,
                    outgoing.status,
                    outgoing.took()
                );
            }
            this.awaiting_response = false;
            this.served = true;
            this.idle_since = Instant::now();
            // A head read was left pending while the answer went out.
            cx.waker().wake_by_ref();
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The characters of a URI path and query besides letters and digits
/// (RFC 3986's unreserved, sub-delims, `:`, `@`, `/`, `?` and `%`): hyper
/// takes an origin-form target made of them.
const USUAL_TARGET_BYTES: &[u8] = b"-._~!$&'()*+,;=:@/?%";

fn usual_target_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || USUAL_TARGET_BYTES.contains(&byte)
}

/// hyper (through the `http` crate) takes fewer characters in a request
/// target than httparse does (`<`, `"`, `{`, …): such a target is passed to
/// hyper percent-encoded, so that hyper takes the request and the handler
/// answers it as before (it sees the target as sent). The new length of
/// the head at the start of `held`.
fn encode_target(held: &mut Vec<u8>, head_length: usize) -> usize {
    let line = &held[..head_length];
    let Some(start) = line.iter().position(|&byte| byte == b' ').map(|space| space + 1) else {
        return head_length;
    };
    let end = start + line[start..].iter().position(|&byte| byte == b' ').unwrap_or(0);
    let target = &held[start..end];
    // A path of the usual characters is taken as it is, without parsing it
    // a second time to find out.
    if (target.starts_with(b"/") && target.iter().all(|&byte| usual_target_byte(byte)))
        || hyper::Uri::try_from(target).is_ok()
    {
        return head_length;
    }
    let mut encoded = Vec::with_capacity(target.len() * 3);
    for &byte in target {
        if usual_target_byte(byte) {
            encoded.push(byte);
        } else {
            encoded.extend_from_slice(format!("%{byte:02X}").as_bytes());
        }
    }
    let grown = encoded.len() - target.len();
    held.splice(start..end, encoded);
    head_length + grown
}

/// A response as bytes on the wire, for answers hyper does not write: to
/// refused connections and refused heads. Always closes the connection.
pub(super) fn serialize(response: &Response) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", response.status, reason_phrase(response.status)).into_bytes();
    for (name, value) in &response.headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "X-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            response.body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&response.body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_takes_every_path_of_the_usual_characters_unchanged() {
        // The fast path of `encode_target` trusts this without asking hyper.
        let mut usual: Vec<u8> = b"/".to_vec();
        usual.extend(USUAL_TARGET_BYTES);
        usual.extend(b"azAZ09");
        // Every usual byte in the query too.
        let in_query = [b"/p?".as_slice(), USUAL_TARGET_BYTES, b"azAZ09"].concat();
        for target in [
            &usual[..],
            &in_query,
            b"/%",
            b"/?%%??",
            b"//",
            b"/packages/a/p/latest?gren=0.6.3",
        ] {
            assert!(
                hyper::Uri::try_from(target).is_ok(),
                "{}",
                String::from_utf8_lossy(target)
            );
            let mut held = [b"GET ", target, b" HTTP/1.1\r\n\r\n"].concat();
            let length = held.len();
            assert_eq!(encode_target(&mut held, length), length);
        }
        // Others are encoded until hyper takes them.
        let mut held = b"GET /a<b>\"{} HTTP/1.1\r\n\r\n".to_vec();
        let length = held.len();
        let grown = encode_target(&mut held, length);
        assert_eq!(&held[..grown], b"GET /a%3Cb%3E%22%7B%7D HTTP/1.1\r\n\r\n");
    }
}
