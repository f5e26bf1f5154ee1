//! The hazards that rule out tiny_http 0.12 for the registry (unbounded
//! `Content-Length`, a thread per connection without a cap, no timeouts, no
//! header limits), each provoked against the real binary and each followed by
//! a normal `GET /health` that must succeed. Plus the HTTP/1.1 details a
//! client may rely on: pipelining, chunked bodies, conflicting lengths and
//! `Expect: 100-continue`.

use crate::common::{HttpConn, Reply, Server};
use std::io::Write;
use std::net::{Ipv4Addr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The registry's bound on refused connections read before they close
/// (`http::server::LINGERING_REFUSALS`).
const LINGERING_REFUSALS: usize = 32;

/// A connection that has sent `bytes`.
fn open(server: &Server, bytes: &[u8]) -> HttpConn {
    let mut conn = server.conn();
    conn.write(bytes).expect("cannot send to the registry");
    conn
}

/// `GET /health` answers 200, retrying for up to `within` (connection slots
/// are released a moment after the peer closes).
#[track_caller]
fn assert_healthy_within(server: &Server, within: Duration) {
    assert!(server.is_alive(), "the process died; log:\n{}", server.log());
    let deadline = Instant::now() + within;
    loop {
        let reply = server.get("/health", None);
        if reply.status == 200 {
            assert_eq!(reply.json()["status"], "ok");
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "GET /health still answers {} after {within:?}: {}",
                reply.status,
                reply.text()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[track_caller]
fn assert_healthy(server: &Server) {
    assert_healthy_within(server, Duration::ZERO);
}

/// Reads one response, or `None` when the server closed or reset the
/// connection without a complete one.
fn response_or_closed(conn: &mut HttpConn) -> Option<Reply> {
    conn.read_response(false).ok()
}

/// `POST /session` head with the given extra header lines, no body.
fn session_head(extra: &str) -> Vec<u8> {
    format!("POST /session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}\r\n").into_bytes()
}

// ---------------------------------------------------------------------------
// (a) Content-Length: refused from the header, never waited for
// ---------------------------------------------------------------------------

#[test]
fn a_huge_content_length_is_413_at_once() {
    let server = Server::start();
    let began = Instant::now();
    let mut conn = open(&server, &session_head("Content-Length: 1000000000000000\r\n"));
    let reply = conn.read_response(false).expect("an answer, not a hang or a crash");
    reply.assert_error(413, "body_too_large");
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "answered without waiting for the body: {:?}",
        began.elapsed()
    );
    assert!(conn.closed_within(Duration::from_secs(2)), "the connection is closed");
    assert!(server.is_alive());
    assert_healthy(&server);
}

#[test]
fn many_max_u64_content_lengths_are_answered_while_they_stay_open() {
    let server = Server::start();
    let head = session_head("Content-Length: 18446744073709551615\r\n");
    let began = Instant::now();
    let mut conns: Vec<HttpConn> = (0..8).map(|_| open(&server, &head)).collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        let reply = conn
            .read_response(false)
            .unwrap_or_else(|err| panic!("connection {i}: {err}"));
        reply.assert_error(413, "body_too_large");
    }
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "all eight answered without waiting for a body: {:?}",
        began.elapsed()
    );
    // The clients keep their ends open and send nothing; the registry works.
    assert_healthy(&server);
    for conn in &mut conns {
        assert!(conn.closed_within(Duration::from_secs(1)), "the server closed its end");
    }
    assert_healthy(&server);
    drop(conns);
    assert_healthy(&server);
}

#[test]
fn content_lengths_that_are_not_numbers_are_400() {
    let server = Server::start();
    for value in [
        "18446744073709551616",
        "123456789012345678901",
        "-1",
        "+5",
        "1e3",
        "0x10",
        "",
    ] {
        let mut conn = open(&server, &session_head(&format!("Content-Length: {value}\r\n")));
        let reply = conn.read_response(false).unwrap();
        assert_eq!(reply.status, 400, "Content-Length: {value:?}: {}", reply.text());
        assert_eq!(reply.json()["error"], "malformed_request");
    }
    assert_healthy(&server);
}

// ---------------------------------------------------------------------------
// (b) Connections are capped; threads are bounded
// ---------------------------------------------------------------------------

#[test]
fn connections_beyond_the_cap_get_503_and_threads_stay_bounded() {
    const CAP: usize = 16;
    let server = Server::with_env(&[("GREN_REGISTRY_MAX_CONNECTIONS", "16")]);
    let idle_threads = server.threads();
    assert_healthy(&server);
    server.threads_down_to(idle_threads, Duration::from_secs(2));

    let conns: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();
    let mut most_threads = 0;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(50));
        most_threads = most_threads.max(server.threads());
    }
    assert!(
        most_threads <= CAP + 10,
        "{most_threads} threads with 100 idle connections and a cap of {CAP} (idle: {idle_threads})"
    );

    // Every connection either holds a slot (and has been sent nothing: the
    // server waits for its request) or was refused with a 503.
    let mut conns: Vec<HttpConn> = conns.into_iter().map(HttpConn::new).collect();
    let (mut held, mut refused) = (0, 0);
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.stream.set_nonblocking(true).unwrap();
        match conn.read_response(false) {
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => held += 1,
            Err(err) => panic!("connection {i}: {err}"),
            Ok(reply) => {
                reply.assert_error(503, "server_busy");
                reply.retry_after();
                conn.stream.set_nonblocking(false).unwrap();
                assert!(
                    conn.closed_within(Duration::from_secs(1)),
                    "connection {i} is closed after the 503"
                );
                refused += 1;
            }
        }
    }
    assert_eq!((held, refused), (CAP, 100 - CAP), "slots held and connections refused");
    // While the slots are taken, a new client is refused promptly, not queued.
    let busy = server.get("/health", None);
    busy.assert_error(503, "server_busy");
    assert!(server.threads() <= CAP + 10);

    drop(conns);
    assert_healthy_within(&server, Duration::from_secs(2));
    server.threads_down_to(idle_threads, Duration::from_secs(2));
    assert_eq!(server.threads(), idle_threads, "every connection thread ended");
}

/// A refusal at the cap closes a connection whose request the registry never
/// read. Unless the registry reads what was sent before it closes, the
/// kernel answers those bytes with a reset: the client's next write fails
/// (and a client that fails to send never reads the answer), and a reset
/// that overtakes the `503` on its way destroys it.
#[test]
fn a_client_over_the_connection_cap_that_sent_its_request_reads_the_503_every_time() {
    let server = Server::with_env(&[("GREN_REGISTRY_MAX_CONNECTIONS", "1")]);
    let _held = server.hold_connection(None);
    let body = [b'x'; 4096];
    let head = format!(
        "POST /session HTTP/1.1\r\nHost: registry\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    for round in 0..50 {
        let mut conn = server.conn();
        // The head, then the body a moment later, as clients write them:
        // the registry has refused the connection in between.
        conn.write(head.as_bytes())
            .unwrap_or_else(|err| panic!("round {round}: the head: {err}"));
        std::thread::sleep(Duration::from_millis(20));
        conn.write(&body)
            .unwrap_or_else(|err| panic!("round {round}: the body: {err}"));
        let reply = conn
            .read_response(false)
            .unwrap_or_else(|err| panic!("round {round}: no answer: {err}"));
        reply.assert_error(503, "server_busy");
        assert!(reply.retry_after() >= 1, "round {round}");
        assert!(
            conn.closed_within(Duration::from_secs(2)),
            "round {round}: closed after the 503"
        );
    }
    // A flood of refused clients that keep sending holds only a few more
    // sockets, and only for a moment.
    let idle_files = server.open_files();
    let mut flood: Vec<HttpConn> = (0..100).map(|_| server.conn()).collect();
    let mut most = 0;
    for _ in 0..5 {
        for conn in &mut flood {
            let _ = conn.write(b"x");
        }
        most = most.max(server.open_files());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        most <= idle_files + LINGERING_REFUSALS + 8,
        "{most} files open during the flood, {idle_files} before"
    );
    let files = server.open_files_down_to(idle_files, Duration::from_secs(3));
    assert!(
        files <= idle_files,
        "the refused sockets are closed within the linger: {files} files open, {idle_files} before"
    );
    drop(flood);
    assert!(server.is_alive());
}

/// Whether each connection holds a slot (no answer within `wait`: the server
/// waits for its request) or was refused with a 503 of `code`; returns how
/// many were held and how many refused.
fn held_and_refused(conns: &mut [HttpConn], code: &str, wait: Duration) -> (usize, usize) {
    let (mut held, mut refused) = (0, 0);
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.stream.set_read_timeout(Some(wait)).unwrap();
        match conn.read_response(false) {
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                held += 1
            }
            Err(err) => panic!("connection {i}: {err}"),
            Ok(reply) => {
                reply.assert_error(503, code);
                let retry = reply.retry_after();
                assert!(retry >= 1, "Retry-After: {retry}");
                refused += 1;
            }
        }
    }
    (held, refused)
}

#[test]
fn one_client_over_its_connection_cap_cannot_stop_another_client_from_being_served() {
    const PER_CLIENT: usize = 4;
    let server = Server::with_env(&[
        ("GREN_REGISTRY_MAX_CONNECTIONS", "16"),
        ("GREN_REGISTRY_MAX_CONNECTIONS_PER_CLIENT", "4"),
    ]);
    // One client opens more connections than the whole registry serves, and
    // sends nothing on them: only its own share is held.
    let mut hog: Vec<HttpConn> = (0..20).map(|_| server.conn()).collect();
    let (held, refused) = held_and_refused(&mut hog, "too_many_connections", Duration::from_millis(300));
    assert_eq!(
        (held, refused),
        (PER_CLIENT, 20 - PER_CLIENT),
        "slots held and connections refused"
    );
    server.get("/health", None).assert_error(503, "too_many_connections");

    // Another client (127.0.0.2: all of 127/8 is loopback) is served.
    let other = server.send_from(Ipv4Addr::new(127, 0, 0, 2), "GET", "/health", &[], b"");
    assert_eq!(other.status, 200, "{}", other.text());

    drop(hog);
    assert_healthy_within(&server, Duration::from_secs(2));
}

#[test]
fn connections_from_a_trusted_proxy_are_not_capped_per_client() {
    let server = Server::with_env(&[
        ("GREN_REGISTRY_MAX_CONNECTIONS_PER_CLIENT", "2"),
        ("GREN_REGISTRY_TRUSTED_PROXIES", "127.0.0.1"),
    ]);
    // A proxy carries many clients over its connections.
    let mut proxied: Vec<HttpConn> = (0..6).map(|_| server.conn()).collect();
    let (held, refused) = held_and_refused(&mut proxied, "too_many_connections", Duration::from_millis(200));
    assert_eq!((held, refused), (6, 0));
    assert_healthy(&server);
    // Other peers still are.
    let from = Ipv4Addr::new(127, 0, 0, 2);
    let mut direct: Vec<HttpConn> = (0..3).map(|_| HttpConn::new(server.connect_from(from))).collect();
    assert_eq!(
        held_and_refused(&mut direct, "too_many_connections", Duration::from_millis(200)),
        (2, 1)
    );
}

// ---------------------------------------------------------------------------
// (c) Timeouts: stalled heads and bodies, slowloris
// ---------------------------------------------------------------------------

fn timeout_server() -> Server {
    Server::with_env(&[
        ("GREN_REGISTRY_REQUEST_TIMEOUT", "1"),
        ("GREN_REGISTRY_MAX_CONNECTIONS", "8"),
    ])
}

/// Every connection gets a 408 (or is closed) within `within` of `began`.
#[track_caller]
fn assert_all_timed_out(conns: &mut [HttpConn], began: Instant, within: Duration, what: &str) {
    for (i, conn) in conns.iter_mut().enumerate() {
        let left = within.saturating_sub(began.elapsed()).max(Duration::from_millis(1));
        conn.stream.set_read_timeout(Some(left)).unwrap();
        match conn.read_response(false) {
            Ok(reply) => reply.assert_error(408, "request_timeout"),
            Err(err) => assert!(
                !matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{what} {i}: neither answered nor closed after {:?}",
                began.elapsed()
            ),
        }
        assert!(
            conn.closed_within(Duration::from_millis(500)),
            "{what} {i}: still open after the 408"
        );
    }
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(800),
        "{what}: cut off before the timeout: {took:?}"
    );
    assert!(took <= within, "{what}: {took:?}");
}

#[test]
fn stalled_heads_and_bodies_are_cut_off_after_the_request_timeout() {
    let server = timeout_server();
    let idle_threads = server.threads();
    let idle_files = server.open_files();

    // Eight heads that never end: every slot is taken...
    let began = Instant::now();
    let mut heads: Vec<HttpConn> = (0..8)
        .map(|_| open(&server, b"POST /session HTTP/1.1\r\nHost: x\r\n"))
        .collect();
    assert_all_timed_out(&mut heads, began, Duration::from_secs(3), "stalled head");
    drop(heads);
    assert_healthy_within(&server, Duration::from_secs(1));
    // Every slot is free again before the next eight.
    server.threads_down_to(idle_threads, Duration::from_secs(2));
    assert_eq!(
        server.threads(),
        idle_threads,
        "the timed-out connections' threads ended"
    );
    // A slot is given back once the server has seen its connection end.
    let files = server.open_files_down_to(idle_files, Duration::from_secs(2));
    assert!(
        files <= idle_files,
        "the timed-out connections closed: {files} files, {idle_files} before"
    );

    // ...and eight bodies that stop after 10 of 100 bytes.
    let began = Instant::now();
    let mut bodies: Vec<HttpConn> = (0..8)
        .map(|_| {
            let mut request = session_head("Content-Length: 100\r\n");
            request.extend_from_slice(b"{\"email\":");
            request.push(b' ');
            open(&server, &request)
        })
        .collect();
    assert_all_timed_out(&mut bodies, began, Duration::from_secs(3), "stalled body");
    drop(bodies);
    assert_healthy_within(&server, Duration::from_secs(1));
}

#[test]
fn all_slots_stalled_recover_without_help() {
    // Sixteen stalled clients against eight slots: the first eight time out,
    // the rest are refused at once; nobody has to close anything.
    let server = timeout_server();
    let began = Instant::now();
    let mut conns: Vec<HttpConn> = (0..16)
        .map(|_| open(&server, b"POST /session HTTP/1.1\r\nHost: x\r\n"))
        .collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let reply = conn.read_response(false);
        let status = reply.as_ref().map(|r| r.status).ok();
        assert!(
            matches!(status, Some(408 | 503)) || reply.is_err(),
            "connection {i}: {reply:?}"
        );
    }
    assert!(began.elapsed() < Duration::from_secs(3), "{:?}", began.elapsed());
    // The clients never closed: the server did.
    assert_healthy_within(&server, Duration::from_secs(1));
}

/// Trickles a `GET /health` head whose `X-Slow` value is `value_length`
/// bytes: the start at once, then the value one byte at a time from `writers`
/// threads (each pausing `pause` between bytes, so that the bytes keep coming
/// even when one thread is descheduled), then the end of the head. Stops early
/// when the connection breaks or `stop` is set; returns the bytes sent.
fn trickle_head(
    stream: TcpStream,
    value_length: usize,
    writers: usize,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let _ = stream.set_nodelay(true);
        let start = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: a";
        if (&stream).write_all(start).is_err() {
            return 0;
        }
        let broken = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..writers)
            .map(|_| {
                let (stream, stop, broken) = (stream.try_clone().unwrap(), stop.clone(), broken.clone());
                std::thread::spawn(move || {
                    let mut sent = 0;
                    while sent < value_length / writers {
                        if stop.load(Ordering::SeqCst) || broken.load(Ordering::SeqCst) {
                            break;
                        }
                        if (&stream).write_all(b"a").is_err() {
                            broken.store(true, Ordering::SeqCst);
                            break;
                        }
                        sent += 1;
                        std::thread::sleep(pause);
                    }
                    sent
                })
            })
            .collect();
        let mut sent = start.len() + threads.into_iter().map(|t| t.join().unwrap()).sum::<usize>();
        if !stop.load(Ordering::SeqCst) && !broken.load(Ordering::SeqCst) && (&stream).write_all(b"\r\n\r\n").is_ok() {
            sent += 4;
        }
        sent
    })
}

/// A head trickled in must be answered 408 between 0.8 s and `within` after
/// its first byte (the request timeout is 1 s).
fn assert_trickled_head_is_cut_off(value_length: usize, writers: usize, pause: Duration, within: Duration) {
    let server = timeout_server();
    let mut conn = server.conn();
    let stop = Arc::new(AtomicBool::new(false));
    let began = Instant::now();
    let writer = trickle_head(
        conn.stream.try_clone().unwrap(),
        value_length,
        writers,
        pause,
        stop.clone(),
    );
    conn.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let reply = conn.read_response(false);
    let took = began.elapsed();
    stop.store(true, Ordering::SeqCst);
    let sent = writer.join().unwrap();
    match reply {
        Ok(reply) if reply.status == 408 => reply.assert_error(408, "request_timeout"),
        Ok(reply) => panic!(
            "the head, trickled by {writers} writer(s) at one byte per {pause:?} each, was still read \
             after {took:?} ({sent} bytes, the whole head) and answered {} instead of 408; \
             the request timeout is 1 s from the first byte",
            reply.status
        ),
        Err(err) => panic!("no 408 after {took:?} ({sent} bytes sent): {err}"),
    }
    assert!(
        took >= Duration::from_millis(800) && took <= within,
        "the head was cut off after {took:?} ({sent} bytes sent); \
         the request timeout is 1 s from the first byte"
    );
    assert_healthy(&server);
}

#[test]
fn a_slowloris_head_is_cut_off_after_the_request_timeout() {
    // One byte every 300 ms: each read makes progress, the head never ends.
    assert_trickled_head_is_cut_off(200, 1, Duration::from_millis(300), Duration::from_millis(2000));
}

#[test]
fn a_fast_trickle_head_is_cut_off_after_the_request_timeout_too() {
    // The same attack, only with the bytes coming faster than the server's
    // 1 ms minimum read wait: three writers at one byte per 0.7 ms each, so
    // about one byte per 0.25 ms for over 3 s. 13 500 bytes stay under the
    // 16 KiB head limit, so only the deadline can end it.
    assert_trickled_head_is_cut_off(13_500, 3, Duration::from_micros(700), Duration::from_millis(1800));
}

// ---------------------------------------------------------------------------
// (d) Header limits
// ---------------------------------------------------------------------------

/// Sends `request` from a separate thread (ignoring write errors: the server
/// may close early), and returns the response if one arrives before the
/// connection ends, plus how many bytes were written and how long that took.
fn send_oversized(server: &Server, request: Vec<u8>) -> (Option<Reply>, usize, Duration) {
    let mut conn = server.conn();
    let mut writer_stream = conn.stream.try_clone().unwrap();
    writer_stream.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let writer = std::thread::spawn(move || {
        let began = Instant::now();
        let mut sent = 0;
        for chunk in request.chunks(64 * 1024) {
            match writer_stream.write(chunk) {
                Ok(n) => {
                    sent += n;
                    if n < chunk.len() {
                        // A short write: finish the chunk or give up.
                        if writer_stream.write_all(&chunk[n..]).is_err() {
                            break;
                        }
                        sent += chunk.len() - n;
                    }
                }
                Err(_) => break,
            }
        }
        (sent, began.elapsed())
    });
    let reply = response_or_closed(&mut conn);
    let (sent, took) = writer.join().unwrap();
    (reply, sent, took)
}

#[track_caller]
fn assert_431_or_closed(reply: Option<Reply>, what: &str) {
    if let Some(reply) = reply {
        assert_eq!(reply.status, 431, "{what}: {}", reply.text());
        reply.assert_error(431, "headers_too_large");
    }
}

#[test]
fn a_one_mib_header_value_is_431_and_costs_no_memory() {
    let server = Server::start();
    assert_healthy(&server);
    let rss_before = server.rss_kib();
    for _ in 0..3 {
        let mut request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        request.resize(request.len() + 1024 * 1024, b'a');
        request.extend_from_slice(b"\r\n\r\n");
        let (reply, _, _) = send_oversized(&server, request);
        assert_431_or_closed(reply, "1 MiB header");
    }
    assert!(server.is_alive());
    let grown = server.rss_kib().saturating_sub(rss_before);
    assert!(grown < 4 * 1024, "RSS grew by {grown} KiB");
    assert_healthy(&server);
}

#[test]
fn five_hundred_headers_are_431() {
    let server = Server::start();
    let mut request = b"GET /health HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..500 {
        request.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let mut conn = open(&server, &request);
    let reply = conn.read_response(false).expect("a 431 for a head that was read whole");
    reply.assert_error(431, "headers_too_large");
    assert_healthy(&server);
}

#[test]
fn an_endless_header_stream_is_cut_off_early() {
    let server = Server::start();
    assert_healthy(&server);
    let rss_before = server.rss_kib();
    let mut request = b"GET /health HTTP/1.1\r\nHost: x\r\n".to_vec();
    let line = format!("X-A: {}\r\n", "a".repeat(100));
    while request.len() < 20 * 1024 * 1024 {
        request.extend_from_slice(line.as_bytes());
    }
    let total = request.len();
    let (reply, sent, took) = send_oversized(&server, request);
    assert_431_or_closed(reply, "endless headers");
    assert!(sent < total, "the server read all {total} bytes of headers");
    assert!(took < Duration::from_secs(5), "cut off only after {took:?}");
    assert!(server.is_alive());
    let grown = server.rss_kib().saturating_sub(rss_before);
    assert!(grown < 4 * 1024, "RSS grew by {grown} KiB");
    assert_healthy(&server);
}

/// `POST path` with a `Content-Length` body of `length` zero bytes, sent in
/// full before the answer is read (as a proxy that buffered it does); the
/// reply, and whether every byte could be sent.
fn post_whole_body(server: &Server, path: &str, length: usize) -> (Reply, std::io::Result<()>) {
    let mut conn = server.conn();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    let sent = conn
        .write(head.as_bytes())
        .and_then(|()| conn.write(&vec![0u8; length]));
    let reply = conn.read_response(false).expect("an answer");
    assert!(conn.closed_within(Duration::from_secs(2)), "closed after the answer");
    (reply, sent)
}

#[test]
fn a_refused_body_within_the_bundle_limit_is_read_to_its_end_so_the_answer_arrives() {
    let server = Server::start();
    // An upload without a token, and a JSON body over its 64 KiB limit: both
    // refused from the head, both far beyond what a lingering close reads.
    for (path, length, status, code) in [
        ("/packages", 8 << 20, 401, "unauthorized"),
        ("/session", 3 << 20, 413, "body_too_large"),
    ] {
        let (reply, sent) = post_whole_body(&server, path, length);
        assert!(
            sent.is_ok(),
            "POST {path}: the registry reset the connection instead of reading the refused body: {sent:?}"
        );
        reply.assert_error(status, code);
    }
    assert_healthy(&server);
}

// ---------------------------------------------------------------------------
// What every response carries
// ---------------------------------------------------------------------------

#[test]
fn every_response_says_nosniff_including_those_of_the_connection_layer() {
    let server = Server::with_env(&[("GREN_REGISTRY_MAX_CONNECTIONS_PER_CLIENT", "2")]);
    // Each from its own client, so that none waits for another's slot.
    let from = |n| Ipv4Addr::new(127, 0, 0, n);
    let big_header = "a".repeat(20_000);
    let mut replies = vec![
        server.send_from(from(2), "GET", "/health", &[], b""),
        server.send_from(from(3), "GET", "/nope", &[], b""),
        server.send_from(from(4), "POST", "/session", &[("Content-Length", "100000000")], b""),
        server.send_from(from(5), "GET", "/health", &[("X-Big", &big_header)], b""),
    ];
    let _held: Vec<HttpConn> = (0..2).map(|_| server.hold_connection(None)).collect();
    replies.push(server.get("/health", None));
    let statuses: Vec<u16> = replies.iter().map(|reply| reply.status).collect();
    assert_eq!(statuses, [200, 404, 413, 431, 503]);
    for reply in &replies {
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{} {}",
            reply.status,
            reply.text()
        );
    }
}

#[test]
fn error_messages_do_not_echo_the_request_path() {
    let server = Server::start();
    for path in [
        "/%3Cscript%3Ealert(1)%3C/script%3E",
        "/<img-src=x>/%1b%5b31m",
        "/packages/%0aforged/x/1.0.0/bundle/extra",
    ] {
        let reply = server.get(path, None);
        reply.assert_error(404, "not_found");
        let message = reply.json()["message"].as_str().unwrap().to_string();
        for fragment in ["script", "img", "31m", "forged", "%"] {
            assert!(!message.contains(fragment), "GET {path}: {message}");
        }
    }
    // Nor does a name that is not a package name.
    let reply = server.get("/packages/%1b%5b31m/x%0ay", None);
    reply.assert_error(404, "package_not_found");
    let message = reply.json()["message"].as_str().unwrap().to_string();
    assert!(!message.chars().any(char::is_control), "{message:?}");
}

#[test]
fn every_known_path_answers_a_wrong_method_with_405_and_its_methods_in_allow() {
    let server = Server::start();
    // Every resource of the registry and the methods it answers, in the
    // order `Allow` names them (HEAD comes with GET, last).
    let resources = [
        ("/health", "GET, HEAD"),
        ("/session", "POST, DELETE"),
        ("/users", "POST, DELETE"),
        ("/session/confirm", "GET, POST, HEAD"),
        ("/session/fetch", "POST"),
        ("/user", "GET, HEAD"),
        ("/user/sessions", "GET, HEAD"),
        ("/user/sessions/0123abcd", "DELETE"),
        ("/user/invitations", "GET, HEAD"),
        ("/publishing-identity", "POST"),
        ("/publishing-identity/gren-lang", "GET, HEAD"),
        ("/publishing-identity/gren-lang/members/me@example.com", "PUT, DELETE"),
        ("/publishing-identity/gren-lang/audit", "GET, HEAD"),
        ("/publishing-identity/gren-lang/invitation", "POST, DELETE"),
        ("/packages", "GET, POST, HEAD"),
        ("/packages/gren-lang/core", "GET, PATCH, HEAD"),
        ("/packages/gren-lang/core/latest", "GET, HEAD"),
        // A literal segment wins over a version: not `GET` of version "revoke".
        ("/packages/gren-lang/core/revoke", "POST"),
        ("/packages/gren-lang/core/1.0.0", "GET, HEAD"),
        ("/packages/gren-lang/core/1.0.0/bundle", "GET, HEAD"),
        ("/packages/gren-lang/core/1.0.0/previous", "GET, HEAD"),
        ("/packages/gren-lang/core/1.0.0/revoke", "POST"),
        ("/events", "GET, HEAD"),
        // Segments are percent-decoded before they are matched.
        ("/%73ession/fetch", "POST"),
    ];
    for (path, allow) in resources {
        let method = ["PUT", "PATCH", "GET"]
            .into_iter()
            .find(|method| !allow.split(", ").any(|allowed| allowed == *method))
            .unwrap();
        let reply = server.send(method, path, &[], b"");
        reply.assert_error(405, "method_not_allowed");
        assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
        let message = format!("This method is not allowed here; use {}.", allow.replace(", ", " or "));
        assert_eq!(reply.json()["message"], message.as_str(), "{method} {path}");
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.1 details
// ---------------------------------------------------------------------------

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start();
    let mut conn = open(
        &server,
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let first = conn.read_response(false).unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()["status"], "ok");
    assert_eq!(
        first.header("connection"),
        None,
        "the first response keeps the connection"
    );
    let second = conn.read_response(false).unwrap();
    second.assert_error(404, "not_found");
    assert_eq!(second.header("connection"), Some("close"));
    assert!(conn.closed_within(Duration::from_secs(2)));

    // A keep-alive connection serves request after request.
    let mut conn = server.conn();
    for _ in 0..3 {
        conn.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(conn.read_response(false).unwrap().status, 200);
    }
    // Including POST bodies followed directly by the next request.
    let body = br#"{"fetchSessionToken": "x"}"#;
    let mut pipelined = format!(
        "POST /session/fetch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    pipelined.extend_from_slice(body);
    pipelined.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    conn.write(&pipelined).unwrap();
    conn.read_response(false).unwrap().assert_error(400, "invalid_token");
    assert_eq!(conn.read_response(false).unwrap().status, 200);
    assert_healthy(&server);
}

#[test]
fn chunked_bodies_are_411() {
    let server = Server::start();
    let body = br#"{"email": "me@example.com"}"#;
    let mut request = session_head("Transfer-Encoding: chunked\r\n");
    request.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
    request.extend_from_slice(body);
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut conn = open(&server, &request);
    let reply = conn.read_response(false).unwrap();
    reply.assert_error(411, "length_required");
    // Also when the chunks come after the answer was sent: they are read
    // and dropped for a moment, then the connection closes.
    let mut conn = open(&server, &session_head("Transfer-Encoding: chunked\r\n"));
    let reply = conn.read_response(false).unwrap();
    reply.assert_error(411, "length_required");
    let _ = conn.write(format!("{:x}\r\n", body.len()).as_bytes());
    assert!(conn.closed_within(Duration::from_secs(3)), "closed after the 411");
    assert!(!server.log().contains("panicked"), "{}", server.log());
    // Alongside a Content-Length (the request-smuggling shape: a proxy in
    // front may frame the body by the other header) it is malformed.
    let both = format!("Content-Length: {}\r\nTransfer-Encoding: chunked\r\n", body.len());
    assert_login_is_malformed(&server, &both, body);
    assert_healthy(&server);
}

/// A login with the `extra` header lines and `body` is refused `400
/// malformed_request` with the JSON body, and starts no login.
#[track_caller]
fn assert_login_is_malformed(server: &Server, extra: &str, body: &[u8]) {
    let mut request = session_head(extra);
    request.extend_from_slice(body);
    let mut conn = open(server, &request);
    conn.read_response(false)
        .unwrap()
        .assert_error(400, "malformed_request");
    assert!(server.postmark.requests().is_empty(), "no login was started");
}

#[test]
fn conflicting_content_lengths_are_400() {
    let server = Server::start();
    let body = br#"{"email": "me@example.com"}"#;
    let two = format!(
        "Content-Length: {}\r\nContent-Length: {}\r\n",
        body.len(),
        body.len() + 1
    );
    assert_login_is_malformed(&server, &two, &[&body[..], b" "].concat());

    // Repeating the same length is harmless.
    let mut request = session_head(&format!(
        "Content-Length: {}\r\nContent-Length: {}\r\n",
        body.len(),
        body.len()
    ));
    request.extend_from_slice(body);
    let mut conn = open(&server, &request);
    let reply = conn.read_response(false).unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_healthy(&server);
}

#[test]
fn expect_100_continue_gets_100_then_the_answer() {
    let server = Server::start();
    let body = br#"{"email": "me@example.com"}"#;
    let mut conn = open(
        &server,
        &session_head(&format!("Content-Length: {}\r\nExpect: 100-continue\r\n", body.len())),
    );
    let interim = conn.read_response(false).expect("an interim response");
    assert_eq!(interim.status, 100, "{interim:?}");
    conn.write(body).unwrap();
    let reply = conn.read_response(false).unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.json()["fetchSessionToken"].is_string());

    // Too large: refused at once, no 100.
    let mut conn = open(
        &server,
        &session_head("Content-Length: 100000\r\nExpect: 100-continue\r\n"),
    );
    conn.read_response(false).unwrap().assert_error(413, "body_too_large");
    assert_healthy(&server);
}

#[test]
fn obs_folded_headers_are_400() {
    let server = Server::start();
    let body = br#"{"email": "me@example.com"}"#;
    // A header continued on the next line: a proxy may join it to the line
    // before or take it as a header of its own.
    let folded = format!("X-Note: one\r\n two\r\nContent-Length: {}\r\n", body.len());
    assert_login_is_malformed(&server, &folded, body);
    assert_healthy(&server);
}

// ---------------------------------------------------------------------------
// Handlers are bounded
// ---------------------------------------------------------------------------

#[test]
fn requests_beyond_the_handlers_wait_briefly_then_get_503() {
    // One handler, held by a long poll of 4 s: the next request waits for it
    // (2 s), then is refused.
    let server = Server::with_env(&[("GREN_REGISTRY_MAX_HANDLERS", "1")]);
    let started = server.post_json("/session", &serde_json::json!({"email": "me@example.com"}), None);
    assert_eq!(started.status, 200, "{}", started.text());
    let token = started.json()["fetchSessionToken"].as_str().unwrap().to_string();
    std::thread::scope(|scope| {
        let poll = scope.spawn(|| {
            let body = serde_json::json!({ "fetchSessionToken": token });
            server.post_json("/session/fetch?wait=4", &body, None).status
        });
        std::thread::sleep(Duration::from_millis(300));
        // A chunked body is refused from its head, without waiting for a handler.
        let began = Instant::now();
        let mut conn = open(&server, &session_head("Transfer-Encoding: chunked\r\n"));
        conn.read_response(false).unwrap().assert_error(411, "length_required");
        assert!(began.elapsed() < Duration::from_secs(1), "waited {:?}", began.elapsed());
        let began = Instant::now();
        // (Not `/health`: anonymous reads are answered without a handler.)
        let busy = server.get("/user", None);
        let took = began.elapsed();
        busy.assert_error(503, "server_busy");
        assert!(busy.retry_after() >= 1);
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(3),
            "waited {took:?} for a handler"
        );
        assert_eq!(poll.join().unwrap(), 202, "the long poll was answered");
    });
    assert_healthy(&server);
}
