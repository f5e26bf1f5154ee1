//! What serving git costs the registry, held to its bounds at the HTTP level
//! through the real binary: building a package's repository holds one
//! version in memory at a time; and git's standard error is one escaped
//! log record per run, whatever a request made git say.

use crate::common::bundles::{inflating_at, real_bundle};
use crate::common::*;
use crate::git::git_installed;
use serde_json::json;
use std::time::Duration;

const CORE: &str = "gren_lang_core__7_0_0.pkg.gz";
const UPLOAD_PACK: &str = "/git/gren-lang/core.git/git-upload-pack";

/// A registry (started with `env`) where gren-lang/core 7.0.0 is public;
/// `None` without git.
fn core_registry(env: &[(&str, &str)]) -> Option<Server> {
    if !git_installed() {
        return None;
    }
    let mut env = env.to_vec();
    env.push(("GREN_REGISTRY_GIT_FALLBACK", ""));
    let server = Server::with_env(&env);
    let token = identity_owner(&server, "gren-lang");
    assert_eq!(server.publish(&token, &real_bundle(CORE)).status, 201);
    Some(server)
}

/// The token of a new user who created `identity`.
fn identity_owner(server: &Server, identity: &str) -> String {
    let token = server.login(&format!("owner@{identity}.example"));
    let created = server.post_json("/publishing-identity", &json!({ "name": identity }), Some(&token));
    assert_eq!(created.status, 200, "{}", created.text());
    token
}

/// A pkt-line: its length in four hex digits (itself included), then `data`.
fn pkt_line(data: &str) -> String {
    format!("{:04x}{data}", data.len() + 4)
}

fn upload_pack(server: &Server, body: &[u8], encoding: Option<&str>) -> Reply {
    let mut headers = vec![("Content-Type", "application/x-git-upload-pack-request")];
    headers.extend(encoding.map(|encoding| ("Content-Encoding", encoding)));
    server.send("POST", UPLOAD_PACK, &headers, body)
}

#[test]
fn building_a_repository_holds_one_version_in_memory_at_a_time() {
    if !git_installed() {
        return;
    }
    let server = Server::with_env(&[("GREN_REGISTRY_GIT_FALLBACK", "")]);
    let token = identity_owner(&server, "acme");
    // Ten versions of a 16 MiB module: 160 MiB in all, a few KiB each on the wire.
    const MODULE: usize = 16 << 20;
    const VERSIONS: usize = 10;
    for patch in 0..VERSIONS {
        let bundle = inflating_at("acme/huge", &format!("1.0.{patch}"), MODULE);
        let published = server.publish(&token, &bundle);
        assert_eq!(published.status, 201, "{}", published.text());
    }
    let before = server.peak_rss_kib();
    // Inflating 160 MiB takes a debug build a while.
    let conn = server.conn();
    conn.stream.set_read_timeout(Some(Duration::from_secs(180))).unwrap();
    let path = "/git/acme/huge.git/info/refs?service=git-upload-pack";
    let refs = send_request(conn, &server.addr.to_string(), "GET", path, &[], b"");
    assert_eq!(refs.status, 200, "{}", refs.text());
    assert!(refs.text().contains("refs/tags/1.0.9"), "{}", refs.text());
    let peak = server.peak_rss_kib();
    let all_versions = (MODULE * VERSIONS / 1024) as u64;
    println!(
        "peak RSS {} MiB before the build, {} MiB after",
        before / 1024,
        peak / 1024
    );
    assert!(
        peak < before + all_versions / 2,
        "peak RSS {} MiB after {} MiB, the versions {} MiB",
        peak / 1024,
        before / 1024,
        all_versions / 1024
    );
}

#[test]
fn git_standard_error_is_one_escaped_log_record_per_run() {
    let Some(server) = core_registry(&[]) else { return };
    // git quotes a bad `want` line in its error, embedded newline and all.
    let forged = "2026-01-01T00:00:00.000Z ERROR forged line";
    let body = format!("{}0000", pkt_line(&format!("want \n{forged}\n")));
    let answered = upload_pack(&server, body.as_bytes(), None);
    assert!(
        server.wait_for_log("forged line", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let log = server.log();
    let records: Vec<&str> = log.lines().filter(|line| line.contains("git http-backend")).collect();
    assert_eq!(records.len(), 1, "status {}; {records:#?}", answered.status);
    assert!(records[0].contains(&format!("\\n{forged}")), "{}", records[0]);
    assert!(
        !log.lines().any(|line| line.starts_with(forged)),
        "a forged line in the log:\n{log}"
    );
}
