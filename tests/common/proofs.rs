//! Shared by the durability proofs (crash, concurrency, backup).

use super::Server;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The environment of the proofs' servers: they publish far more than people
/// do, and all their client threads (more than 32 at larger scales) connect
/// from 127.0.0.1.
pub const PROOF_ENV: [(&str, &str); 2] = [
    ("GREN_REGISTRY_PUBLISH_LIMIT_PER_HOUR", "1000000"),
    ("GREN_REGISTRY_MAX_CONNECTIONS_PER_CLIENT", "1024"),
];

pub fn scale() -> usize {
    std::env::var("GREN_PROOF_SCALE")
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok())
        .unwrap_or(1)
        .max(1)
}

pub fn version(patch: u64) -> String {
    format!("1.0.{patch}")
}

pub fn patch_of(version: &str) -> u64 {
    let parts: Vec<&str> = version.split('.').collect();
    assert_eq!(parts.len(), 3, "version {version:?}");
    assert_eq!(
        (parts[0], parts[1]),
        ("1", "0"),
        "only 1.0.x versions are published: {version}"
    );
    parts[2].parse().expect("a patch number")
}

/// Every event, paging through `GET /events` as a mirror does (following
/// `next` until the last page, the one with the head); checks the numbering.
pub fn all_events(server: &Server) -> Vec<Value> {
    let mut events: Vec<Value> = Vec::new();
    loop {
        let since = events.len();
        let reply = server.get(&format!("/events?since={since}"), None);
        assert_eq!(reply.status, 200, "GET /events: {}", reply.text());
        let page = reply.json();
        for event in page["events"].as_array().expect("events").clone() {
            let expected = events.len() as u64 + 1;
            assert_eq!(
                event["seq"].as_u64(),
                Some(expected),
                "events are numbered without gaps: {event}"
            );
            events.push(event);
        }
        assert_eq!(
            page["next"].as_u64(),
            Some(events.len() as u64),
            "next follows the page: {page}"
        );
        if let Some(head) = page["head"].as_u64() {
            assert_eq!(events.len() as u64, head, "the event log ends before its head");
            return events;
        }
    }
}

/// Runs the text form of fsck: exit status and output.
pub fn fsck_text(dir: &Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gren-registry"))
        .args(["admin", "--data-dir"])
        .arg(dir)
        .arg("fsck")
        .env_remove("GREN_REGISTRY_DATA_DIR")
        .output()
        .expect("cannot run gren-registry admin fsck");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// xorshift64*: small, seedable, good enough to pick moments and victims.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}
