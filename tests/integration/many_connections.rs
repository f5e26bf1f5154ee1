//! Thousands of connections at once: half-sent request heads and idle
//! keep-alive connections cost the registry a socket and a few KB each,
//! never a thread, and while they are held open a health check and a bundle
//! download are still answered within a second.

use crate::common::bundles::synthetic;
use crate::common::{HttpConn, Server};
use serde_json::json;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const HALF_SENT: usize = 3_000;
const IDLE: usize = 5_000;
/// How long a normal request may take beside them.
const PROMPT: Duration = Duration::from_secs(1);
const MAX_RSS_KIB: u64 = 300 * 1024;

/// The test process's open-files limit: it holds every client socket.
fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only `limit`.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    limit.rlim_cur
}

/// `GET path` on a fresh connection: the status, the body's length, and how
/// long it took.
fn timed_get(server: &Server, path: &str) -> (u16, usize, Duration) {
    let began = Instant::now();
    let mut conn = server.conn();
    conn.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let reply = conn
        .read_response(false)
        .unwrap_or_else(|err| panic!("GET {path} after {:?}: {err}", began.elapsed()));
    (reply.status, reply.body.len(), began.elapsed())
}

/// Connections that each sent the start of a head and nothing more.
fn half_sent_heads(server: &Server, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut stream = TcpStream::connect(server.addr).expect("connect");
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: a")
                .unwrap();
            stream
        })
        .collect()
}

/// Connections that were each answered one request and stay open, idle.
fn idle_keep_alive(server: &Server, count: usize) -> Vec<HttpConn> {
    let mut conns: Vec<HttpConn> = (0..count).map(|_| server.conn()).collect();
    // All requests first, then all answers: the registry serves them at once.
    for conn in &mut conns {
        conn.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    }
    for (i, conn) in conns.iter_mut().enumerate() {
        let reply = conn
            .read_response(false)
            .unwrap_or_else(|err| panic!("keep-alive connection {i}: {err}"));
        assert_eq!(reply.status, 200, "keep-alive connection {i}: {}", reply.text());
        assert_eq!(reply.header("connection"), None, "connection {i} is kept alive");
    }
    conns
}

#[test]
fn thousands_of_half_sent_heads_and_idle_connections_leave_the_registry_answering_promptly() {
    let needed = (HALF_SENT + IDLE + 500) as u64;
    let limit = open_files_limit();
    assert!(
        limit >= needed,
        "this test holds {needed} sockets; the open-files limit is {limit} (raise it with ulimit -n)"
    );
    let server = Server::with_env(&[
        // All from 127.0.0.1: this is about the total, not the per-client cap.
        ("GREN_REGISTRY_MAX_CONNECTIONS_PER_CLIENT", "20000"),
        // Long enough that none of them is cut off during the test.
        ("GREN_REGISTRY_REQUEST_TIMEOUT", "60"),
        ("GREN_REGISTRY_KEEP_ALIVE", "60"),
    ]);
    let token = server.login("me@example.com");
    let created = server.post_json("/publishing-identity", &json!({"name": "gren-lang"}), Some(&token));
    assert_eq!(created.status, 200, "{}", created.text());
    let bundle = synthetic("gren-lang/demo", "1.0.0", "x");
    let published = server.publish(&token, &bundle);
    assert_eq!(published.status, 201, "{}", published.text());
    let download = "/packages/gren-lang/demo/1.0.0/bundle";
    assert_eq!(timed_get(&server, download).0, 200);
    // The fewest files over a moment: one the publish's background work
    // (the packages-site notice, say) still holds would otherwise be
    // counted as the registry's for good.
    let idle_files = (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            server.open_files()
        })
        .min()
        .unwrap();
    let idle_threads = server.threads();

    let half_sent = half_sent_heads(&server, HALF_SENT);
    let idle = idle_keep_alive(&server, IDLE);
    let open = server.open_files_up_to(idle_files + HALF_SENT + IDLE, Duration::from_secs(10));
    assert!(
        open >= idle_files + HALF_SENT + IDLE,
        "the registry holds the {HALF_SENT} half-sent heads and {IDLE} idle connections: {open} files open, {idle_files} before"
    );

    for _ in 0..5 {
        let (status, _, took) = timed_get(&server, "/health");
        assert_eq!(status, 200);
        assert!(took < PROMPT, "GET /health took {took:?}");
        let (status, length, took) = timed_get(&server, download);
        assert_eq!((status, length), (200, bundle.len()));
        assert!(took < PROMPT, "the bundle download took {took:?}");
    }
    let rss = server.rss_kib();
    assert!(
        rss < MAX_RSS_KIB,
        "RSS {rss} KiB with {} connections open",
        HALF_SENT + IDLE
    );
    // Handler threads come and go with requests; once those are answered,
    // none is left for the connections that wait.
    let threads = server.threads_down_to(idle_threads + 2, Duration::from_secs(5));
    assert!(
        threads <= idle_threads + 2,
        "{threads} threads with {} connections open ({idle_threads} before)",
        HALF_SENT + IDLE
    );
    eprintln!(
        "{} connections held: RSS {} MiB, {threads} threads, {} files open",
        HALF_SENT + IDLE,
        rss / 1024,
        server.open_files()
    );
    assert!(server.open_files() >= open, "none was closed meanwhile");
    drop((half_sent, idle));
}
