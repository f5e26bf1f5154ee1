//! What serving git costs the registry, held to its bounds at the HTTP level
//! through the real binary: building a package's repository holds one
//! version in memory at a time.

use crate::common::bundles::inflating_at;
use crate::common::*;
use crate::git::git_installed;
use serde_json::json;
use std::time::Duration;

/// The token of a new user who created `identity`.
fn identity_owner(server: &Server, identity: &str) -> String {
    let token = server.login(&format!("owner@{identity}.example"));
    let created = server.post_json("/publishing-identity", &json!({ "name": identity }), Some(&token));
    assert_eq!(created.status, 200, "{}", created.text());
    token
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
