//! Many connections that send their request head one byte at a time, or stop
//! in the middle of a body, do not stop other clients from being served: the
//! slow ones are cut off after `GREN_REGISTRY_REQUEST_TIMEOUT` (with a `408`
//! or by closing; a slow connection costs a socket, never a thread), and when they fill every connection
//! slot newcomers get a prompt `503` with `Retry-After` instead of hanging.

use crate::common::{HttpConn, Reply, Server};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `GREN_REGISTRY_REQUEST_TIMEOUT` in these tests.
const TIMEOUT: Duration = Duration::from_secs(2);
const TIMEOUT_ENV: &str = "2";
/// How long after it opened a slow connection may still be open.
const CUT_OFF_WITHIN: Duration = Duration::from_secs(4); // TIMEOUT + 2 s
/// The pause between the bytes of a trickled head.
const TRICKLE_PAUSE: Duration = Duration::from_millis(100);
/// A normal request must be answered well within this.
const PROMPT: Duration = Duration::from_secs(1);

/// A request head far longer than the bytes a trickle can send before the
/// timeout (20 in 2 s), so it never completes.
fn trickle_head() -> Vec<u8> {
    format!(
        "GET /health HTTP/1.1\r\nHost: slow\r\nX-Slow: {}\r\n\r\n",
        "a".repeat(400)
    )
    .into_bytes()
}

/// A head announcing a 1000-byte JSON body, and the first 10 bytes of it.
fn stalled_body_start() -> Vec<u8> {
    let mut bytes =
        b"POST /session HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            .to_vec();
    bytes.extend_from_slice(b"{\"email\":\"");
    assert_eq!(
        bytes.len() - bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4,
        10
    );
    bytes
}

// ---------------------------------------------------------------------------
// Slow connections
// ---------------------------------------------------------------------------

/// How a slow connection ended, as its client saw it.
#[derive(Debug)]
struct Ending {
    what: &'static str,
    /// What the server sent, if anything.
    received: Vec<u8>,
    /// When the server closed (or reset) it, after it was opened; `None`: still
    /// open at the deadline.
    closed_after: Option<Duration>,
    /// When the server closed it.
    closed_at: Option<Instant>,
}

impl Ending {
    fn status(&self) -> Option<u16> {
        let text = String::from_utf8_lossy(&self.received);
        text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }
}

/// Slow connections: trickled heads (one byte every 100 ms from a single
/// writer thread) and stalled bodies, each watched by a reader thread until
/// the server closes it or the deadline passes.
struct SlowClients {
    stop: Arc<AtomicBool>,
    trickler: Option<JoinHandle<()>>,
    readers: Vec<JoinHandle<Ending>>,
}

impl SlowClients {
    fn open(server: &Server, trickling: usize, stalled: usize) -> SlowClients {
        let head = trickle_head();
        let mut trickled = Vec::new();
        let mut readers = Vec::new();
        for _ in 0..trickling {
            let mut stream = TcpStream::connect(server.addr).expect("connect");
            let opened = Instant::now();
            stream.set_nodelay(true).unwrap();
            stream.write_all(&head[..1]).expect("first byte");
            trickled.push((stream.try_clone().unwrap(), 1usize));
            readers.push(watch(stream, opened, "trickled head"));
        }
        for _ in 0..stalled {
            let mut stream = TcpStream::connect(server.addr).expect("connect");
            let opened = Instant::now();
            stream.set_nodelay(true).unwrap();
            stream.write_all(&stalled_body_start()).expect("head and 10 body bytes");
            readers.push(watch(stream, opened, "stalled body"));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let trickler = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) && !trickled.is_empty() {
                    std::thread::sleep(TRICKLE_PAUSE);
                    // Drop a stream once the server has closed it (write fails).
                    trickled.retain_mut(|(stream, sent)| {
                        if *sent >= head.len() - 1 {
                            // Never complete the head.
                            return true;
                        }
                        let ok = stream.write_all(&head[*sent..*sent + 1]).is_ok();
                        *sent += 1;
                        ok
                    });
                }
            })
        };
        SlowClients {
            stop,
            trickler: Some(trickler),
            readers,
        }
    }

    /// Waits for every slow connection to end (or its deadline).
    fn endings(mut self) -> Vec<Ending> {
        let endings = self.readers.drain(..).map(|reader| reader.join().unwrap()).collect();
        self.stop.store(true, Ordering::SeqCst);
        if let Some(trickler) = self.trickler.take() {
            trickler.join().unwrap();
        }
        endings
    }
}

impl Drop for SlowClients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Reads from `stream` until the server closes it or `CUT_OFF_WITHIN` after
/// `opened` passes.
fn watch(mut stream: TcpStream, opened: Instant, what: &'static str) -> JoinHandle<Ending> {
    std::thread::spawn(move || {
        let deadline = opened + CUT_OFF_WITHIN;
        let mut received = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ending {
                    what,
                    received,
                    closed_after: None,
                    closed_at: None,
                };
            }
            stream.set_read_timeout(Some(left)).unwrap();
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break, // reset: closed too
            }
        }
        Ending {
            what,
            received,
            closed_after: Some(opened.elapsed()),
            closed_at: Some(Instant::now()),
        }
    })
}

/// Checks that every slow connection was answered 408 or closed, not before
/// the timeout and within `CUT_OFF_WITHIN`; returns how many got a 408.
#[track_caller]
fn assert_cut_off(endings: &[Ending]) -> usize {
    let mut answered = 0;
    for (i, ending) in endings.iter().enumerate() {
        let closed = ending.closed_after.unwrap_or_else(|| {
            panic!(
                "slow connection {i} ({}) is still open {CUT_OFF_WITHIN:?} after it opened (timeout {TIMEOUT:?}); received {:?}",
                ending.what,
                String::from_utf8_lossy(&ending.received)
            )
        });
        assert!(
            closed >= TIMEOUT - Duration::from_millis(300),
            "slow connection {i} ({}) was cut off after {closed:?}, before the {TIMEOUT:?} timeout",
            ending.what
        );
        match ending.status() {
            Some(408) => answered += 1,
            None if ending.received.is_empty() => {}
            _ => panic!(
                "slow connection {i} ({}) should get 408 or be closed, got {:?}",
                ending.what,
                String::from_utf8_lossy(&ending.received)
            ),
        }
    }
    answered
}

// ---------------------------------------------------------------------------
// Normal clients
// ---------------------------------------------------------------------------

/// One `GET` on a fresh connection with a short read timeout, so a hang shows
/// as an error instead of stalling the test: the reply and how long it took.
fn timed_get(server: &Server, path: &str) -> (Result<Reply, String>, Duration) {
    let started = Instant::now();
    let result = (|| {
        let stream = TcpStream::connect(server.addr).map_err(|err| format!("connect: {err}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut conn = HttpConn::new(stream);
        conn.write(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                server.addr
            )
            .as_bytes(),
        )
        .map_err(|err| format!("send: {err}"))?;
        conn.read_response(false).map_err(|err| format!("no response: {err}"))
    })();
    (result, started.elapsed())
}

/// A `GET` that must answer `status` within [`PROMPT`].
#[track_caller]
fn assert_prompt(server: &Server, path: &str, status: u16) -> Reply {
    let (result, took) = timed_get(server, path);
    let reply = result.unwrap_or_else(|err| panic!("GET {path} after {took:?}: {err}"));
    assert_eq!(reply.status, status, "GET {path}: {}", reply.text());
    assert!(took < PROMPT, "GET {path} took {took:?}");
    reply
}

fn idle_threads(server: &Server) -> usize {
    assert_prompt(server, "/health", 200);
    std::thread::sleep(Duration::from_millis(100));
    server.threads()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn many_slow_connections_do_not_stop_other_clients_from_being_served() {
    // All 150 slow connections come from 127.0.0.1: this is about the
    // threads and timeouts, not the per-client cap (see http_hazards.rs).
    let server = Server::with_env(&[
        ("GREN_REGISTRY_REQUEST_TIMEOUT", TIMEOUT_ENV),
        ("GREN_REGISTRY_MAX_CONNECTIONS_PER_CLIENT", "256"),
        ("GREN_REGISTRY_MAX_HANDLERS", "8"),
    ]);
    let idle = idle_threads(&server);
    let idle_files = server.open_files();

    let slow = SlowClients::open(&server, 100, 50);
    let opened = Instant::now();
    // The server has taken them all in, and a connection costs no thread.
    let open_files = server.open_files_up_to(idle_files + 150, Duration::from_secs(1));
    assert!(
        open_files >= idle_files + 150,
        "the 150 slow connections should be open on the server ({open_files} files, {idle_files} idle)"
    );
    // Threads come from the handlers' pool alone (8, plus 4 spare), however
    // many connections wait: the stalled bodies' heads were checked there.
    assert!(
        server.threads() <= idle + 8 + 4,
        "slow connections cost no thread: {} threads, {idle} idle",
        server.threads()
    );

    // Meanwhile a normal client is served promptly, request after request.
    let mut slowest = Duration::ZERO;
    for i in 0..50 {
        let (result, took) = timed_get(&server, "/health");
        let reply = result.unwrap_or_else(|err| panic!("GET /health #{i} after {took:?}: {err}"));
        assert_eq!(reply.status, 200, "GET /health #{i}: {}", reply.text());
        assert_eq!(reply.json()["status"], "ok");
        assert!(
            took < PROMPT,
            "GET /health #{i} took {took:?} beside 150 slow connections"
        );
        slowest = slowest.max(took);
        if i % 5 == 0 {
            let (result, took) = timed_get(&server, "/packages");
            let reply = result.unwrap_or_else(|err| panic!("GET /packages after {took:?}: {err}"));
            assert_eq!(reply.status, 200, "GET /packages: {}", reply.text());
            assert!(reply.json()["packages"].is_array());
            assert!(took < PROMPT, "GET /packages took {took:?} beside 150 slow connections");
            slowest = slowest.max(took);
        }
    }
    let served_by = Instant::now();
    assert!(
        server.open_files() >= idle_files + 100,
        "the slow connections were still open while the normal client was served ({} files)",
        server.open_files()
    );

    let endings = slow.endings();
    let answered = assert_cut_off(&endings);
    let first_cut = endings
        .iter()
        .filter_map(|ending| ending.closed_at)
        .min()
        .unwrap_or(opened);
    assert!(
        served_by < first_cut,
        "the normal requests (done {:?} after the slow connections opened) should all be served before the first slow connection is cut off ({:?})",
        served_by - opened,
        first_cut.saturating_duration_since(opened)
    );
    eprintln!("slowest normal request {slowest:?}; {answered} of 150 slow connections got a 408, the rest were closed");

    let threads = server.threads_down_to(idle, Duration::from_secs(3));
    assert!(
        threads <= idle + 2,
        "threads return to a small number after the slow connections end: {threads} (idle: {idle})"
    );
    assert_prompt(&server, "/health", 200);
    assert!(server.is_alive());
    server.stop();
}

#[test]
fn slow_clients_filling_every_slot_make_newcomers_get_503_promptly_until_they_time_out() {
    const CAP: usize = 20;
    let server = Server::with_env(&[
        ("GREN_REGISTRY_REQUEST_TIMEOUT", TIMEOUT_ENV),
        ("GREN_REGISTRY_MAX_CONNECTIONS", "20"),
    ]);
    let idle = idle_threads(&server);
    let idle_files = server.open_files();

    let slow = SlowClients::open(&server, CAP, 0);
    let opened = Instant::now();
    server.open_files_up_to(idle_files + CAP, Duration::from_secs(1));

    // Every slot is taken: newcomers are refused at once, not queued.
    for i in 0..10 {
        let (result, took) = timed_get(&server, "/health");
        let reply = result.unwrap_or_else(|err| panic!("newcomer {i} after {took:?}: {err}"));
        reply.assert_error(503, "server_busy");
        let retry = reply.retry_after();
        assert!(retry >= 1, "Retry-After: {retry}");
        assert!(took < PROMPT, "newcomer {i} waited {took:?} for its 503");
    }
    let refused_by = Instant::now();
    assert!(
        server.threads() <= idle + CAP + 2,
        "refused connections cost no thread: {} threads (idle {idle}, cap {CAP})",
        server.threads()
    );

    // Once the slow clients time out, normal requests succeed again.
    let mut recovered = None;
    while opened.elapsed() < CUT_OFF_WITHIN + Duration::from_secs(1) {
        let (result, _) = timed_get(&server, "/health");
        if result.as_ref().is_ok_and(|reply| reply.status == 200) {
            recovered = Some(opened.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let recovered = recovered.unwrap_or_else(|| {
        panic!(
            "GET /health is still refused {:?} after the slow clients opened",
            opened.elapsed()
        )
    });
    assert!(
        recovered <= CUT_OFF_WITHIN,
        "normal requests should succeed within {CUT_OFF_WITHIN:?} of the slow clients opening, took {recovered:?}"
    );
    let endings = slow.endings();
    assert_cut_off(&endings);
    let first_cut = endings
        .iter()
        .filter_map(|ending| ending.closed_at)
        .min()
        .unwrap_or(opened);
    assert!(refused_by < first_cut, "the 503s came while every slot was held");
    for _ in 0..10 {
        assert_prompt(&server, "/health", 200);
    }
    assert_prompt(&server, "/packages", 200);
    let threads = server.threads_down_to(idle, Duration::from_secs(2));
    assert!(threads <= idle + 2, "{threads} threads (idle {idle})");
    server.stop();
}

#[test]
fn a_slow_upload_does_not_keep_the_process_alive_past_the_shutdown_grace() {
    const GRACE: Duration = Duration::from_secs(2);
    let server = Server::with_env(&[
        ("GREN_REGISTRY_REQUEST_TIMEOUT", "30"),
        ("GREN_REGISTRY_SHUTDOWN_GRACE", "2"),
    ]);
    // A JSON body of 60 000 bytes dripping a byte every 50 ms: within the
    // request timeout for every read, so only the grace period can end it.
    let mut stream = server.connect();
    stream
        .write_all(
            b"POST /session HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{",
        )
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let dripper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) && stream.write_all(b" ").is_ok() {
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    server.signal("TERM");
    let (status, log) = server.wait_with_log(Duration::from_secs(10));
    let took = signalled.elapsed();
    stop.store(true, Ordering::SeqCst);
    dripper.join().unwrap();
    assert!(
        took < GRACE + Duration::from_secs(2),
        "the process stopped {took:?} after SIGTERM, grace {GRACE:?}; log:\n{log}"
    );
    assert!(
        took >= GRACE - Duration::from_millis(200),
        "the upload had its grace: {took:?}"
    );
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("1 connection(s) still open"), "{log}");
    assert!(log.trim_end().ends_with("stopped"), "{log}");
}
