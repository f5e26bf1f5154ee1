//! What serving git costs the registry, held to its bounds at the HTTP level
//! through the real binary: a gzip fetch request is inflated by the
//! registry up to a cap (git never inflates one itself); requests waiting
//! for a git process do not take the handlers the API needs; building a
//! package's repository holds one version in memory at a time; and git's
//! standard error is one escaped log record per run, whatever a request
//! made git say.

use crate::common::bundles::{gzip, inflating_at, real_bundle};
use crate::common::*;
use crate::git::git_installed;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CORE: &str = "gren_lang_core__7_0_0.pkg.gz";
const UPLOAD_PACK: &str = "/git/gren-lang/core.git/git-upload-pack";
const INFO_REFS: &str = "/git/gren-lang/core.git/info/refs?service=git-upload-pack";

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

/// The commit id `main` points at, from a v0 ref advertisement.
fn main_commit(server: &Server) -> String {
    let advertised = server.get(INFO_REFS, None);
    assert_eq!(advertised.status, 200, "{}", advertised.text());
    let text = advertised.text();
    let (_, refs) = text.split_once("0000").expect("the service line, then the refs");
    refs[4..44].to_string()
}

/// A pkt-line: its length in four hex digits (itself included), then `data`.
fn pkt_line(data: &str) -> String {
    format!("{:04x}{data}", data.len() + 4)
}

/// A v0 fetch request for `want`, with `haves` times a `have` line of an
/// object the registry does not have.
fn fetch_request(want: &str, haves: usize) -> Vec<u8> {
    let mut request = format!("{}0000", pkt_line(&format!("want {want}\n")));
    let have = pkt_line(&format!("have {}\n", "1".repeat(40)));
    request.reserve(have.len() * haves + 16);
    for _ in 0..haves {
        request.push_str(&have);
    }
    request.push_str(&pkt_line("done\n"));
    request.into_bytes()
}

fn upload_pack(server: &Server, body: &[u8], encoding: Option<&str>) -> Reply {
    let mut headers = vec![("Content-Type", "application/x-git-upload-pack-request")];
    headers.extend(encoding.map(|encoding| ("Content-Encoding", encoding)));
    server.send("POST", UPLOAD_PACK, &headers, body)
}

#[test]
fn a_gzip_fetch_request_is_inflated_by_the_registry_and_refused_past_its_cap() {
    let Some(server) = core_registry(&[]) else { return };
    let main = main_commit(&server);
    // As git sends a larger request: compressed; it gets git's answer.
    let small = upload_pack(&server, &gzip(&fetch_request(&main, 100)), Some("gzip"));
    assert_eq!(small.status, 200, "{}", small.text());
    assert!(small.body.starts_with(b"0008NAK\n"), "{:?}", &small.text()[..40]);
    // Two million `have` lines (100 MB) in a body of a few hundred KiB.
    let bomb = gzip(&fetch_request(&main, 2_000_000));
    assert!(bomb.len() < 1024 * 1024, "{} bytes", bomb.len());
    let started = Instant::now();
    let refused = upload_pack(&server, &bomb, Some("gzip"));
    refused.assert_error(413, "body_too_large");
    assert!(refused.text().contains("4 MiB"), "{}", refused.text());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused after {:?}",
        started.elapsed()
    );
    // An encoding git does not send is no fetch request.
    upload_pack(&server, &bomb, Some("br")).assert_error(415, "unsupported_media_type");
    upload_pack(&server, b"not gzip at all", Some("gzip")).assert_error(400, "malformed_request");
}

/// A directory holding a `git` that, for `http-backend`, first sleeps
/// `seconds`, then runs the real git: a git process that holds its slot.
fn slow_http_backend(seconds: u32) -> tempfile::TempDir {
    slow_git("http-backend", seconds)
}

/// A directory holding a `git` that, for the git command `slow`, first
/// sleeps `seconds`, then runs the real git.
fn slow_git(slow: &str, seconds: u32) -> tempfile::TempDir {
    let real = std::process::Command::new("sh")
        .args(["-c", "command -v git"])
        .output()
        .unwrap();
    let real = String::from_utf8(real.stdout).unwrap().trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    let script = format!("#!/bin/sh\nfor arg; do [ \"$arg\" = {slow} ] && sleep {seconds}; done\nexec {real} \"$@\"\n");
    let path = dir.path().join("git");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn the_api_is_answered_at_once_while_every_git_process_is_busy() {
    let slow = slow_http_backend(4);
    let path = format!("{}:{}", slow.path().display(), std::env::var("PATH").unwrap());
    let Some(server) = core_registry(&[
        ("PATH", &path),
        ("GREN_REGISTRY_GIT_PROCESSES", "2"),
        ("GREN_REGISTRY_MAX_HANDLERS", "8"),
    ]) else {
        return;
    };
    let server = Arc::new(server);
    // Far more fetches than git processes and handlers.
    let fetches: Vec<_> = (0..14)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || server.get(INFO_REFS, None))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let login = server.post_json("/session", &json!({ "email": "someone@example.com" }), None);
    let waited = started.elapsed();
    assert_eq!(login.status, 200, "{}", login.text());
    assert!(waited < Duration::from_secs(1), "POST /session took {waited:?}");
    let replies: Vec<Reply> = fetches.into_iter().map(|fetch| fetch.join().unwrap()).collect();
    let served = replies.iter().filter(|reply| reply.status == 200).count();
    assert!(served >= 2, "the git processes served their requests");
    for busy in replies.iter().filter(|reply| reply.status != 200) {
        busy.assert_error(503, "server_busy");
        assert!(busy.retry_after() > 0);
    }
}

/// A build of a repository takes as long as git does; a snapshot that
/// waits for every writer must not wait for it, nor must the writers queued
/// behind the snapshot.
#[test]
fn a_slow_repository_build_holds_up_neither_a_snapshot_nor_the_writes_behind_it() {
    let slow = slow_git("fast-import", 4);
    let path = format!("{}:{}", slow.path().display(), std::env::var("PATH").unwrap());
    let Some(server) = core_registry(&[("PATH", &path)]) else {
        return;
    };
    let token = identity_owner(&server, "team");
    let server = Arc::new(server);
    let building = {
        let server = server.clone();
        std::thread::spawn(move || server.get(INFO_REFS, None).status)
    };
    // The build is under way (its fast-import sleeps), then a snapshot.
    std::thread::sleep(Duration::from_millis(800));
    let started = Instant::now();
    let destination = tempfile::tempdir().unwrap().path().join("snap");
    let snapshot = crate::common::operator::admin(&server.data_dir, &["snapshot", destination.to_str().unwrap()]);
    assert!(snapshot.succeeded(), "{}", snapshot.all());
    let snapshot_took = started.elapsed();
    let published = server.publish(&token, &crate::common::bundles::synthetic("team/quick", "1.0.0", "a"));
    assert_eq!(published.status, 201, "{}", published.text());
    let both_took = started.elapsed();
    assert!(
        both_took < Duration::from_secs(2),
        "the snapshot ({snapshot_took:?}) and a publish after it ({both_took:?}) waited for the build"
    );
    assert_eq!(building.join().unwrap(), 200, "the build itself finished");
}

/// `admin fsck` beside a server looks again with the writers held off when
/// it finds a problem; its fresh builds of every repository (as slow as
/// git) must not be part of that held look.
#[test]
fn fsck_beside_a_server_holds_writers_off_only_for_the_records_not_for_the_repositories() {
    let Some(server) = core_registry(&[]) else {
        return;
    };
    let token = identity_owner(&server, "team");
    assert_eq!(server.get(INFO_REFS, None).status, 200, "built once");
    // A problem, so that fsck looks again with the writers held off.
    std::fs::write(server.data_dir.join("users/broken@example.com.json"), b"{ not json").unwrap();
    let slow = slow_git("fast-import", 3);
    let path = format!("{}:{}", slow.path().display(), std::env::var("PATH").unwrap());
    let fsck = {
        let mut command = crate::common::operator::admin_command(&server.data_dir);
        command.arg("fsck").env("PATH", &path);
        std::thread::spawn(move || command.output().unwrap())
    };
    let mut slowest = Duration::ZERO;
    let mut patch = 0;
    while !fsck.is_finished() {
        let started = Instant::now();
        let bundle = crate::common::bundles::synthetic("team/busy", &format!("1.0.{patch}"), "a");
        assert_eq!(server.publish(&token, &bundle).status, 201);
        slowest = slowest.max(started.elapsed());
        patch += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = fsck.join().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("broken@example.com"), "fsck found the problem: {said}");
    assert!(
        said.contains("checked 2 repositories"),
        "and checked the repositories: {said}"
    );
    assert!(patch > 10, "publishes went on all through fsck ({patch})");
    assert!(
        slowest < Duration::from_secs(2),
        "a publish waited {slowest:?} for fsck"
    );
}

#[test]
fn a_git_process_past_its_time_limit_is_stopped_and_answered_503() {
    let slow = slow_http_backend(30);
    let path = format!("{}:{}", slow.path().display(), std::env::var("PATH").unwrap());
    let Some(server) = core_registry(&[("PATH", &path), ("GREN_REGISTRY_GIT_TIMEOUT", "1")]) else {
        return;
    };
    let started = Instant::now();
    let reply = server.get(INFO_REFS, None);
    reply.assert_error(503, "server_busy");
    assert!(reply.retry_after() > 0);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped at its limit, not after its 30 s: {:?}",
        started.elapsed()
    );
    assert!(
        server.wait_for_log("ran longer than 1 s and was stopped", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    // The next request, within the limit, is served.
    drop(slow);
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
    // Each publish checks 16 MiB of source: in a debug build on a busy
    // machine (the whole suite runs at once), longer than a client's usual
    // 20 s.
    let bearer = format!("Bearer {token}");
    for patch in 0..VERSIONS {
        let bundle = inflating_at("acme/huge", &format!("1.0.{patch}"), MODULE);
        let conn = server.conn();
        conn.stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/gzip")];
        let published = send_request(conn, &server.addr.to_string(), "POST", "/packages", &headers, &bundle);
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
