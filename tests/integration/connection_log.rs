//! What the connection layer tells operators: every outcome decided before or
//! after a handler (refused connections, bad or slow heads, bodies refused
//! from their head, responses the client did not take in full) is a `WARN`
//! line of the log, and a flood of them is logged at a bounded rate.

use crate::common::bundles::{decode, gzip, synthetic};
use crate::common::{HttpConn, Server, SocketOptions, connect_with};
use serde_json::json;
use std::io::Read;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Waits up to 3 s for a log line containing every one of `parts`.
#[track_caller]
fn assert_logged(server: &Server, parts: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if server
            .log()
            .lines()
            .any(|line| parts.iter().all(|part| line.contains(part)))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no log line with {parts:?}; the log:\n{}", server.log());
}

/// Sends `bytes` on a fresh connection from 127.0.0.`from` and reads the answer.
fn answer_to(server: &Server, from: u8, bytes: &[u8]) -> u16 {
    let mut conn = HttpConn::new(server.connect_from(Ipv4Addr::new(127, 0, 0, from)));
    conn.write(bytes).unwrap();
    conn.read_response(false).map(|reply| reply.status).unwrap_or(0)
}

#[test]
fn refusals_of_the_connection_layer_are_logged_as_warnings() {
    let server = Server::with_env(&[
        ("GREN_REGISTRY_MAX_CONNECTIONS", "3"),
        ("GREN_REGISTRY_MAX_CONNECTIONS_PER_CLIENT", "2"),
        ("GREN_REGISTRY_REQUEST_TIMEOUT", "1"),
    ]);
    // Each from its own address: a refused connection's slot may take a
    // moment to come back, and these clients may hold only two.
    assert_eq!(answer_to(&server, 10, b"NOT HTTP\r\n\r\n"), 400);
    assert_logged(&server, &["WARN", "400 malformed_request", "from 127.0.0.10"]);
    let big_head = format!("GET /health HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    assert_eq!(answer_to(&server, 11, big_head.as_bytes()), 431);
    assert_logged(&server, &["WARN", "431 headers_too_large"]);
    assert_eq!(answer_to(&server, 12, b"GET /health HTTP/1.1\r\nHost: x\r\n"), 408);
    assert_logged(&server, &["WARN", "408 request_timeout"]);
    let chunked = b"POST /session HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(answer_to(&server, 13, chunked), 411);
    assert_logged(&server, &["WARN", "POST /session 411", "length_required"]);
    let huge = b"POST /session HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n";
    assert_eq!(answer_to(&server, 14, huge), 413);
    assert_logged(
        &server,
        &["WARN", "POST /session 413", "body_too_large", "from 127.0.0.14"],
    );

    // Two idle connections are this client's share; a third from it is refused...
    let _mine: Vec<HttpConn> = (0..2).map(|_| server.hold_connection(None)).collect();
    assert_eq!(server.get("/health", None).status, 503);
    assert_logged(&server, &["WARN", "503 too_many_connections", "from 127.0.0.1"]);
    // ...and once another client takes the last slot, everyone is.
    let _theirs = server.hold_connection(Some(Ipv4Addr::new(127, 0, 0, 2)));
    let status = server
        .send_from(Ipv4Addr::new(127, 0, 0, 3), "GET", "/health", &[], b"")
        .status;
    assert_eq!(status, 503);
    assert_logged(&server, &["WARN", "503 server_busy", "from 127.0.0.3"]);
}

#[test]
fn a_flood_of_bad_requests_is_logged_at_a_bounded_rate() {
    let server = Server::start();
    for _ in 0..100 {
        assert_eq!(answer_to(&server, 1, b"NOT HTTP\r\n\r\n"), 400);
    }
    // One more after the flood's second: it brings the count of the rest.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(answer_to(&server, 1, b"NOT HTTP\r\n\r\n"), 400);
    assert_logged(&server, &["WARN", "similar lines (malformed_request) suppressed"]);
    // The summary and the line it comes with are two records: the second
    // may reach the log a moment after the first.
    let deadline = Instant::now() + Duration::from_secs(3);
    let (log, lines, suppressed) = loop {
        let log = server.log();
        let (lines, suppressed) = malformed_request_lines(&log);
        if lines + suppressed >= 101 || Instant::now() >= deadline {
            break (log, lines, suppressed);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        (2..=30).contains(&lines),
        "101 bad requests in about a second, {lines} lines:\n{log}"
    );
    assert_eq!(
        lines + suppressed,
        101,
        "every bad request is a line or counted:\n{log}"
    );
}

/// The `400 malformed_request` lines of `log`, and the sum of the counts of
/// the summaries of those left out.
fn malformed_request_lines(log: &str) -> (usize, usize) {
    let lines = log
        .lines()
        .filter(|line| line.contains("400 malformed_request"))
        .count();
    let suppressed = log
        .lines()
        .filter_map(|line| {
            line.split_once("WARN ")?
                .1
                .split_once(" similar lines (malformed_request)")
        })
        .map(|(count, _)| count.trim().parse::<usize>().unwrap())
        .sum();
    (lines, suppressed)
}

/// A pseudo-random text of `length` characters that gzip cannot shrink much.
fn noise(length: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ALPHABET[(state % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

#[test]
fn a_download_the_client_stops_reading_is_logged_as_aborted() {
    let server = Server::with_env(&[("GREN_REGISTRY_REQUEST_TIMEOUT", "1")]);
    let token = server.login("me@example.com");
    let created = server.post_json("/publishing-identity", &json!({"name": "gren-lang"}), Some(&token));
    assert_eq!(created.status, 200, "{}", created.text());
    // A bundle larger than what the socket buffers of both ends hold.
    let mut bundle = decode(&synthetic("gren-lang/big", "1.0.0", "x"));
    bundle["sources"]["Synthetic"] =
        format!("module Synthetic exposing (salt)\n\nsalt = \"{}\"\n", noise(9 << 20)).into();
    let bytes = gzip(&serde_json::to_vec(&bundle).unwrap());
    assert!(bytes.len() > 6 << 20, "{} bytes", bytes.len());
    let published = server.publish(&token, &bytes);
    assert_eq!(published.status, 201, "{}", published.text());

    // The client reads the start of the answer, then hangs up.
    let path = "/packages/gren-lang/big/1.0.0/bundle";
    let options = SocketOptions {
        receive_buffer: Some(4096),
        ..SocketOptions::default()
    };
    let mut stream = connect_with(server.addr, options).unwrap();
    std::io::Write::write_all(
        &mut stream,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut start = [0u8; 1024];
    stream.read_exact(&mut start).unwrap();
    assert!(start.starts_with(b"HTTP/1.1 200"));
    drop(stream);
    assert_logged(
        &server,
        &[
            "WARN",
            &format!("GET {path} 200 aborted after"),
            &format!(" of {} bytes", bytes.len()),
        ],
    );
    assert!(
        !server
            .log()
            .lines()
            .any(|line| line.ends_with("ms") && line.contains(&format!("GET {path} 200 "))),
        "no line says it was served:\n{}",
        server.log()
    );
}

#[test]
fn request_lines_reach_the_log_in_batches_in_order_and_all_by_the_stop() {
    let server = Server::start();
    for _ in 0..3 {
        assert_eq!(server.get("/health", None).status, 200);
    }
    // Gathered, then written within a moment.
    assert_logged(&server, &["GET /health 200"]);
    assert_eq!(server.get("/packages/nobody/nothing", None).status, 404);
    // The request line is logged once its answer is out: let it be.
    std::thread::sleep(Duration::from_millis(20));
    // A warning is written at once, after the request lines before it.
    assert_eq!(answer_to(&server, 10, b"NOT HTTP\r\n\r\n"), 400);
    assert_logged(&server, &["WARN", "400 malformed_request"]);
    let log = server.log();
    let request = log.find("GET /packages/nobody/nothing 404").expect("the request line");
    let warning = log.find("400 malformed_request").unwrap();
    assert!(request < warning, "the log keeps its order:\n{log}");
    // Nothing gathered is lost when the registry stops.
    assert_eq!(server.get("/health", None).status, 200);
    let (status, log) = server.stop_with_log();
    assert!(status.success(), "{log}");
    assert_eq!(log.matches("GET /health 200").count(), 4, "{log}");
}
