//! Packages against the real binary: publishing real compiler bundles,
//! downloading them, queries, immutability, the successor rule, validation,
//! paths, permissions, revocation, privacy, the event log, the packages-site
//! notifier, rate limits, the audit log and crash consistency.

use crate::common::bundles::*;
use crate::common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const ME: &str = "me@example.com";

/// Every real bundle, in publishing order (versions ascending per package).
const REAL: [(&str, &str); 12] = [
    ("gren-lang/core", "6.0.1"),
    ("gren-lang/core", "7.0.0"),
    ("gren-lang/url", "5.0.0"),
    ("gren-lang/url", "6.0.0"),
    ("gren-lang/node", "5.0.2"),
    ("gren-lang/node", "6.0.0"),
    ("gren-lang/node", "6.1.0"),
    ("gren-lang/test-runner-node", "6.0.0"),
    ("gren-lang/test-runner-node", "7.0.0"),
    ("blaix/gren-ws4sql", "2.0.0"),
    ("blaix/gren-ws4sql", "3.0.0"),
    ("blaix/gren-effectful-tests", "6.0.0"),
];

// ---------------------------------------------------------------------------
// Bundles
// ---------------------------------------------------------------------------

/// The bytes of a real bundle made by the compiler.
fn real(name: &str, version: &str) -> Vec<u8> {
    real_bundle(&bundle_file_name(name, version))
}

/// A real bundle's content: `{"outline": ..., "sources": ...}`.
fn content(name: &str, version: &str) -> Value {
    decode(&real(name, version))
}

/// A real bundle with its content changed by `change`, re-gzipped.
fn modified(name: &str, version: &str, change: impl FnOnce(&mut Value)) -> Vec<u8> {
    rewrite(&real(name, version), change)
}

/// A real bundle with outline fields replaced.
fn with_outline(name: &str, version: &str, fields: Value) -> Vec<u8> {
    modified(name, version, |content| {
        for (key, value) in fields.as_object().unwrap() {
            content["outline"][key] = value.clone();
        }
    })
}

// ---------------------------------------------------------------------------
// Registry helpers
// ---------------------------------------------------------------------------

/// Logs in as ME and creates the identities `gren-lang` and `blaix`.
fn prepare(server: &Server) -> String {
    let token = server.login(ME);
    create_identity(server, &token, "gren-lang");
    create_identity(server, &token, "blaix");
    token
}

fn create_identity(server: &Server, token: &str, name: &str) {
    let reply = server.post_json("/publishing-identity", &json!({ "name": name }), Some(token));
    assert_eq!(reply.status, 200, "creating {name}: {}", reply.text());
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `POST <path>` with a raw gzip body, as `gren package publish` does.
fn publish_to(server: &Server, path: &str, token: Option<&str>, bytes: &[u8]) -> Reply {
    let auth = token.map(bearer);
    let mut headers = vec![("Content-Type", "application/gzip")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    server.send("POST", path, &headers, bytes)
}

/// A connection that has sent the head of an upload of `length` bytes by
/// `token`'s user, with `extra` header lines, and none of its body.
fn upload_head(server: &Server, token: &str, length: usize, extra: &str) -> HttpConn {
    let mut conn = server.conn();
    let head = format!(
        "POST /packages HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/gzip\r\nContent-Length: {length}\r\n{extra}\r\n",
        server.addr
    );
    conn.write(head.as_bytes()).unwrap();
    conn
}

/// Publishes a bundle and asserts the status.
#[track_caller]
fn publish_ok(server: &Server, token: &str, bytes: &[u8], status: u16) -> Value {
    let reply = server.publish(token, bytes);
    assert_eq!(reply.status, status, "publish: {}", reply.text());
    reply.json()
}

/// Publishes a real bundle and asserts 201.
#[track_caller]
fn publish_real(server: &Server, token: &str, name: &str, version: &str) -> Value {
    let reply = server.publish(token, &real(name, version));
    assert_eq!(reply.status, 201, "publish {name} {version}: {}", reply.text());
    reply.json()
}

/// Any request with an optional bearer token and no body.
/// Publishes a real bundle as the first version of a private package.
fn publish_private(server: &Server, token: &str, name: &str, version: &str) {
    let reply = publish_to(server, "/packages?private=true", Some(token), &real(name, version));
    assert_eq!(reply.status, 201, "{}", reply.text());
}

fn send_as(server: &Server, method: &str, path: &str, token: Option<&str>) -> Reply {
    let auth = token.map(bearer);
    let headers: Vec<(&str, &str)> = auth.iter().map(|auth| ("Authorization", auth.as_str())).collect();
    server.send(method, path, &headers, b"")
}

/// A GET with extra headers (and a bearer token).
fn get_with(server: &Server, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Reply {
    let auth = token.map(bearer);
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    server.send("GET", path, &headers, b"")
}

fn bundle_url(name: &str, version: &str) -> String {
    format!("/packages/{name}/{version}/bundle")
}

#[track_caller]
fn version_of(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["version"].as_str().expect("a version").to_string()
}

fn events(server: &Server, since: u64) -> Value {
    events_as(server, since, None)
}

fn events_as(server: &Server, since: u64, token: Option<&str>) -> Value {
    let reply = server.get(&format!("/events?since={since}"), token);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// `(seq, type, package, version)` of each event in a `GET /events` answer;
/// the version is empty for the package's own events (`private`, `public`),
/// which have none.
fn event_list(answer: &Value) -> Vec<(u64, String, String, String)> {
    answer["events"]
        .as_array()
        .expect("events is an array")
        .iter()
        .map(|event| {
            let kind = event["type"].as_str().expect("type").to_string();
            let version = match kind.as_str() {
                "publish" | "revoke" => event["version"].as_str().expect("version").to_string(),
                _ => {
                    assert!(
                        event.get("version").is_none(),
                        "a package event has no version: {event}"
                    );
                    String::new()
                }
            };
            (
                event["seq"].as_u64().expect("seq"),
                kind,
                event["package"].as_str().expect("package").to_string(),
                version,
            )
        })
        .collect()
}

/// `(seq, type, package, version)` tuples from string literals.
fn expected_events(list: &[(u64, &str, &str, &str)]) -> Vec<(u64, String, String, String)> {
    list.iter()
        .map(|(seq, kind, package, version)| (*seq, kind.to_string(), package.to_string(), version.to_string()))
        .collect()
}

/// What a mirror that replays `events` from the start serves: the live
/// versions of each public package that has any.
fn mirror_replay(events: &[(u64, String, String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut packages: BTreeMap<String, (bool, Vec<String>)> = BTreeMap::new();
    for (_, kind, package, version) in events {
        let (public, live) = packages.entry(package.clone()).or_insert((true, Vec::new()));
        match kind.as_str() {
            "publish" => live.push(version.clone()),
            "revoke" => live.retain(|live| live != version),
            "private" => *public = false,
            "public" => *public = true,
            other => panic!("unknown event type {other}"),
        }
    }
    packages
        .into_iter()
        .filter(|(_, (public, live))| *public && !live.is_empty())
        .map(|(package, (_, mut live))| {
            live.sort();
            (package, live)
        })
        .collect()
}

/// What the registry itself serves to everyone: the unrevoked versions of
/// each package it lists.
fn served_to_everyone(server: &Server) -> BTreeMap<String, Vec<String>> {
    let listing = server.get("/packages", None).json();
    listing["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let name = entry["name"].as_str().unwrap().to_string();
            let record = server.get(&format!("/packages/{name}"), None).json();
            let mut live: Vec<String> = record["versions"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|version| version["revoked"].is_null())
                .map(|version| version["version"].as_str().unwrap().to_string())
                .collect();
            live.sort();
            (name, live)
        })
        .collect()
}

fn set_private(server: &Server, token: &str, package: &str, private: bool) {
    let reply = server.patch_json(
        &format!("/packages/{package}"),
        &json!({ "private": private }),
        Some(token),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
}

fn revoke_version(server: &Server, token: &str, package: &str, version: &str) {
    let reply = server.post_json(
        &format!("/packages/{package}/{version}/revoke"),
        &json!({ "reason": "broken" }),
        Some(token),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[track_caller]
fn assert_gap_free(list: &[(u64, String, String, String)]) {
    let seqs: Vec<u64> = list.iter().map(|event| event.0).collect();
    let expected: Vec<u64> = (1..=list.len() as u64).collect();
    assert_eq!(seqs, expected, "events are numbered 1..N without gaps: {list:?}");
}

/// The bundle files (`*.pkg.gz`) in a directory.
fn bundle_files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| path.to_string_lossy().ends_with(".pkg.gz"))
                .collect()
        })
        .unwrap_or_default()
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("gren-registry-packages-")
        .tempdir()
        .unwrap()
}

// ---------------------------------------------------------------------------
// A packages-site stub
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct SiteRequest {
    received: Received,
    /// The status the stub answered.
    answered: u16,
}

impl SiteRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.received.header(name)
    }

    fn json(&self) -> Value {
        self.received.json()
    }

    fn package(&self) -> String {
        self.json()["packageName"].as_str().unwrap_or("").to_string()
    }
}

#[derive(Default)]
struct SiteState {
    requests: Mutex<Vec<SiteRequest>>,
    status: AtomicU16,
    delay_ms: AtomicU64,
}

/// The packages site: records every request, answers with a settable status.
struct SiteStub {
    stub: StubServer,
    state: Arc<SiteState>,
}

impl SiteStub {
    fn start(status: u16) -> SiteStub {
        let state = Arc::new(SiteState::default());
        state.status.store(status, Ordering::SeqCst);
        let stub = {
            let state = state.clone();
            StubServer::start("packages-site stub", move |received| {
                let answered = state.status.load(Ordering::SeqCst);
                state.requests.lock().unwrap().push(SiteRequest { received, answered });
                let delay = state.delay_ms.load(Ordering::SeqCst);
                if delay > 0 {
                    std::thread::sleep(Duration::from_millis(delay));
                }
                tiny_http::Response::from_string("{}").with_status_code(answered)
            })
        };
        SiteStub { stub, state }
    }

    fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    fn set_delay(&self, delay: Duration) {
        self.state.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    fn requests(&self) -> Vec<SiteRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for more than `count` requests; returns them all.
    fn wait_for_more_than(&self, count: usize, timeout: Duration) -> Vec<SiteRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.len() > count {
                return requests;
            }
            if Instant::now() >= deadline {
                panic!("the packages site got no request beyond the first {count} within {timeout:?}: {requests:#?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for SiteStub {
    // The stub's thread must not sleep through its stop (the field drops next).
    fn drop(&mut self) {
        self.state.delay_ms.store(0, Ordering::SeqCst);
    }
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

// ---------------------------------------------------------------------------
// 1. Publishing and downloading real bundles
// ---------------------------------------------------------------------------

#[test]
fn every_real_bundle_publishes_and_downloads_byte_identical() {
    let server = Server::start();
    let token = prepare(&server);
    for (name, version) in REAL {
        let bytes = real(name, version);
        let sha = sha256_hex(&bytes);
        let reply = server.publish(&token, &bytes);
        assert_eq!(reply.status, 201, "publish {name} {version}: {}", reply.text());
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let answer = reply.json();
        assert_eq!(answer["name"], name, "{answer}");
        assert_eq!(answer["version"], version, "{answer}");
        assert_eq!(answer["sha256"], sha.as_str(), "{answer}");
        assert_eq!(answer["size"], bytes.len() as u64, "{answer}");
        assert!(
            answer["published"].as_str().is_some_and(|at| !at.is_empty()),
            "{answer}"
        );
        let keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
        assert_eq!(
            keys.len(),
            5,
            "exactly name, version, sha256, size, published: {answer}"
        );
    }
    for (name, version) in REAL {
        let bytes = real(name, version);
        let sha = sha256_hex(&bytes);
        let etag = format!("\"{sha}\"");
        let url = bundle_url(name, version);

        let download = server.get(&url, None);
        assert_eq!(download.status, 200, "GET {url}: {}", download.text());
        assert!(download.body == bytes, "{url} is byte-identical to the upload");
        assert_eq!(download.header("content-type"), Some("application/gzip"), "{url}");
        assert_eq!(download.header("etag"), Some(etag.as_str()), "{url}");
        let disposition = download.header("content-disposition").unwrap_or_default();
        assert!(
            disposition.contains(&bundle_file_name(name, version)),
            "{url}: Content-Disposition {disposition:?} names {}",
            bundle_file_name(name, version)
        );
        let cache = download.header("cache-control").unwrap_or_default();
        // Public, for a minute (this registry purges no cache: see cdn.rs);
        // not immutable, as a revoked bundle must stop being served.
        assert_eq!(cache, "public, max-age=60", "{url}");

        let cached = get_with(&server, &url, None, &[("If-None-Match", &etag)]);
        assert_eq!(cached.status, 304, "{url} If-None-Match: {}", cached.text());
        assert!(cached.body.is_empty(), "a 304 has no body");
        assert_eq!(cached.header("etag"), Some(etag.as_str()));

        let other = get_with(&server, &url, None, &[("If-None-Match", "\"0000\"")]);
        assert_eq!(other.status, 200, "another ETag gets the bundle");

        let head = server.send("HEAD", &url, &[], b"");
        assert_eq!(head.status, 200, "HEAD {url}");
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("content-length"),
            Some(bytes.len().to_string().as_str()),
            "HEAD {url} gives the length"
        );
    }
    // The compiler's file name, as in `gren_packages/`.
    let reply = server.get("/packages/gren-lang/core/7.0.0/bundle", None);
    assert!(
        reply
            .header("content-disposition")
            .unwrap_or_default()
            .contains("gren_lang_core__7_0_0.pkg.gz")
    );
}

// ---------------------------------------------------------------------------
// 2. Queries
// ---------------------------------------------------------------------------

#[test]
fn latest_previous_and_listing_answer_by_compiler_and_platform() {
    let server = Server::start();
    let token = prepare(&server);
    for (name, version) in REAL {
        publish_real(&server, &token, name, version);
    }
    assert_latest_answers_by_compiler(&server);
    assert_latest_answers_by_platform(&server);
    assert_previous_answers_the_version_before(&server);
    assert_the_listing_answers_by_compiler(&server);
    assert_a_package_lists_every_version_ascending(&server);
    assert_a_version_shows_its_outline(&server);
}

/// `latest` by compiler version (`gren=`), ws4sql 2.0.0 being for 0.5 and
/// 3.0.0 for 0.6.
fn assert_latest_answers_by_compiler(server: &Server) {
    let ws = "/packages/blaix/gren-ws4sql";
    let get = |path: &str| server.get(path, None);
    assert_eq!(version_of(&get(&format!("{ws}/latest?gren=0.5.4"))), "2.0.0");
    assert_eq!(version_of(&get(&format!("{ws}/latest?gren=0.6.3"))), "3.0.0");
    get(&format!("{ws}/latest?gren=0.7.0")).assert_error(404, "no_compatible_version");
    assert_eq!(version_of(&get(&format!("{ws}/latest"))), "3.0.0");
    let latest = get(&format!("{ws}/latest")).json();
    assert_eq!(latest["name"], "blaix/gren-ws4sql");
    assert_eq!(latest["gren-version"], "0.6.0 <= v < 0.7.0");
    get(&format!("{ws}/latest?gren=0.6")).assert_error(400, "invalid_query");
}

/// `latest` by platform: ws4sql and node are `node`, core and url are `common`.
fn assert_latest_answers_by_platform(server: &Server) {
    let ws = "/packages/blaix/gren-ws4sql";
    let get = |path: &str| server.get(path, None);
    assert_eq!(version_of(&get(&format!("{ws}/latest?platform=node"))), "3.0.0");
    assert_eq!(
        version_of(&get(&format!("{ws}/latest?platform=node&gren=0.5.0"))),
        "2.0.0"
    );
    get(&format!("{ws}/latest?platform=browser")).assert_error(404, "no_compatible_version");
    get("/packages/gren-lang/node/latest?platform=browser").assert_error(404, "no_compatible_version");
    assert_eq!(
        version_of(&get("/packages/gren-lang/core/latest?platform=browser")),
        "7.0.0",
        "common matches every platform"
    );
    assert_eq!(
        version_of(&get("/packages/gren-lang/url/latest?platform=node&gren=0.5.1")),
        "5.0.0"
    );
    get(&format!("{ws}/latest?platform=wasm")).assert_error(400, "invalid_query");
}

/// `previous`: the newest version below the one given, which need not exist.
fn assert_previous_answers_the_version_before(server: &Server) {
    let ws = "/packages/blaix/gren-ws4sql";
    let get = |path: &str| server.get(path, None);
    assert_eq!(version_of(&get(&format!("{ws}/3.0.0/previous"))), "2.0.0");
    get(&format!("{ws}/2.0.0/previous")).assert_error(404, "no_previous_version");
    assert_eq!(version_of(&get(&format!("{ws}/2.5.0/previous"))), "2.0.0");
    assert_eq!(version_of(&get("/packages/gren-lang/node/6.1.0/previous")), "6.0.0");
    assert_eq!(version_of(&get("/packages/gren-lang/node/9.0.0/previous")), "6.1.0");
    get(&format!("{ws}/2.x/previous")).assert_error(400, "invalid_version");
    get("/packages/blaix/nothing-here/latest").assert_error(404, "package_not_found");
}

/// `GET /packages`, all of it and for an older compiler.
fn assert_the_listing_answers_by_compiler(server: &Server) {
    let get = |path: &str| server.get(path, None);
    let listing = |path: &str| server.listing(path, None);
    let expect = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    };
    assert_eq!(
        listing("/packages?gren=0.5.0"),
        expect(&[
            ("blaix/gren-ws4sql", "2.0.0"),
            ("gren-lang/core", "6.0.1"),
            ("gren-lang/node", "5.0.2"),
            ("gren-lang/test-runner-node", "6.0.0"),
            ("gren-lang/url", "5.0.0"),
        ])
    );
    assert_eq!(
        listing("/packages"),
        expect(&[
            ("blaix/gren-effectful-tests", "6.0.0"),
            ("blaix/gren-ws4sql", "3.0.0"),
            ("gren-lang/core", "7.0.0"),
            ("gren-lang/node", "6.1.0"),
            ("gren-lang/test-runner-node", "7.0.0"),
            ("gren-lang/url", "6.0.0"),
        ])
    );
    get("/packages?gren=x").assert_error(400, "invalid_query");
}

/// A package's record lists every version ascending, with its fields.
fn assert_a_package_lists_every_version_ascending(server: &Server) {
    let get = |path: &str| server.get(path, None);
    let node = get("/packages/gren-lang/node");
    assert_eq!(node.status, 200, "{}", node.text());
    let node = node.json();
    assert_eq!(node["name"], "gren-lang/node");
    assert_eq!(node["private"], false);
    let versions = node["versions"].as_array().unwrap();
    assert_eq!(version_numbers(&node), ["5.0.2", "6.0.0", "6.1.0"], "ascending");
    for (entry, version) in versions.iter().zip(["5.0.2", "6.0.0", "6.1.0"]) {
        let bytes = real("gren-lang/node", version);
        for field in [
            "version",
            "gren-version",
            "platform",
            "published",
            "sha256",
            "size",
            "revoked",
        ] {
            assert!(entry.get(field).is_some(), "{field} in {entry}");
        }
        assert_eq!(entry["platform"], "node");
        assert_eq!(entry["sha256"], sha256_hex(&bytes).as_str());
        assert_eq!(entry["size"], bytes.len() as u64);
        assert_eq!(entry["revoked"], Value::Null);
    }
    assert_eq!(versions[0]["gren-version"], "0.5.0 <= v < 0.6.0");
}

/// A version's record carries its outline; unknown versions are 404.
fn assert_a_version_shows_its_outline(server: &Server) {
    let get = |path: &str| server.get(path, None);
    let one = get("/packages/gren-lang/node/6.1.0");
    assert_eq!(one.status, 200, "{}", one.text());
    let one = one.json();
    assert_eq!(one["version"], "6.1.0");
    assert_eq!(one["outline"], content("gren-lang/node", "6.1.0")["outline"], "{one}");
    get("/packages/gren-lang/node/6.2.0").assert_error(404, "version_not_found");
    get("/packages/gren-lang/node/6.2.0/bundle").assert_error(404, "version_not_found");
}

// ---------------------------------------------------------------------------
// 3. Immutability
// ---------------------------------------------------------------------------

#[test]
fn versions_are_immutable() {
    let server = Server::start();
    let token = prepare(&server);
    let bytes = real("gren-lang/url", "5.0.0");
    let first = publish_ok(&server, &token, &bytes, 201);
    let again = publish_ok(&server, &token, &bytes, 200);
    assert_eq!(again, first, "a retry answers 200 with the same record");

    let changed = with_outline("gren-lang/url", "5.0.0", json!({ "summary": "Something else" }));
    assert_ne!(changed, bytes);
    server.publish(&token, &changed).assert_error(409, "version_exists");
    // The same content gzipped differently is different bytes, too.
    let regzipped = encode(&content("gren-lang/url", "5.0.0"));
    assert_ne!(regzipped, bytes);
    server.publish(&token, &regzipped).assert_error(409, "version_exists");
    let download = server.get(&bundle_url("gren-lang/url", "5.0.0"), None);
    assert!(download.body == bytes, "the first bytes stay");
    // Nothing of the refused bundles is left beside the record (a version
    // the catalog has is not even written; a new one that is refused after
    // the checks is written while they run, then removed).
    let mut files: Vec<String> = std::fs::read_dir(server.data_dir.join("packages/gren-lang/url"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["5.0.0.json", "gren_lang_url__5_0_0.pkg.gz", "package.json"]);

    let revoked = server.post_json(
        "/packages/gren-lang/url/5.0.0/revoke",
        &json!({ "reason": "broken" }),
        Some(&token),
    );
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    server.publish(&token, &bytes).assert_error(409, "version_exists");
    let record = server.get("/packages/gren-lang/url", None).json();
    assert_eq!(record["versions"].as_array().unwrap().len(), 1, "{record}");
}

// ---------------------------------------------------------------------------
// 4. The successor rule
// ---------------------------------------------------------------------------

#[test]
fn new_versions_must_follow_the_successor_rule() {
    let server = Server::start();
    let token = prepare(&server);
    publish_real(&server, &token, "gren-lang/core", "6.0.1");
    publish_real(&server, &token, "gren-lang/core", "7.0.0");

    let core = |version: &str| with_outline("gren-lang/core", "7.0.0", json!({ "version": version }));
    let refused = server.publish(&token, &core("7.0.2"));
    refused.assert_error(400, "invalid_version");
    let refusal = refused.json();
    assert_eq!(refusal["field"], "outline.version", "{refusal}");
    let message = refusal["message"].as_str().unwrap();
    assert!(
        message.contains("6.0.2, 6.1.0, 7.0.1, 7.1.0, 8.0.0"),
        "the message lists the allowed versions: {message}"
    );
    for skipped in ["9.0.0", "7.2.0", "6.0.3", "5.0.0", "6.0.0"] {
        server
            .publish(&token, &core(skipped))
            .assert_error(400, "invalid_version");
    }

    publish_ok(&server, &token, &core("8.0.0"), 201);
    let old_line = with_outline("gren-lang/core", "6.0.1", json!({ "version": "6.0.2" }));
    publish_ok(&server, &token, &old_line, 201);
    // After 8.0.0, 7.0.x may still get its patch.
    publish_ok(&server, &token, &core("7.0.1"), 201);
    let listed = server.get("/packages/gren-lang/core", None).json();
    assert_eq!(version_numbers(&listed), ["6.0.1", "6.0.2", "7.0.0", "7.0.1", "8.0.0"]);

    // The first version of a new package may be anything.
    let first = with_outline("blaix/gren-ws4sql", "3.0.0", json!({ "version": "3.4.5" }));
    let answer = publish_ok(&server, &token, &first, 201);
    assert_eq!(answer["version"], "3.4.5");
    // Revoked numbers still count as taken.
    let revoked = server.post_json(
        "/packages/blaix/gren-ws4sql/3.4.5/revoke",
        &json!({ "reason": "oops" }),
        Some(&token),
    );
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    let next = with_outline("blaix/gren-ws4sql", "3.0.0", json!({ "version": "3.4.6" }));
    publish_ok(&server, &token, &next, 201);
}

// ---------------------------------------------------------------------------
// 5. Validation
// ---------------------------------------------------------------------------

#[test]
fn invalid_outlines_and_sources_are_400_naming_the_field() {
    let server = Server::start();
    let token = prepare(&server);
    for (what, fields, field) in invalid_outline_fields() {
        let bytes = with_outline("blaix/gren-ws4sql", "3.0.0", fields);
        assert_refused_naming(&server, &token, what, &bytes, "invalid_outline", field);
    }
    for (what, bytes, field) in invalid_sources() {
        assert_refused_naming(&server, &token, what, &bytes, "invalid_bundle", field);
    }
    assert_kernel_code_in_gren_lang_and_exact_boundaries_pass(&server, &token);
    // None of the refusals took the version.
    publish_real(&server, &token, "blaix/gren-ws4sql", "3.0.0");
    let listed = server.get("/packages/blaix/gren-ws4sql", None).json();
    assert_eq!(listed["versions"].as_array().unwrap().len(), 1, "{listed}");
}

/// Outline fields that each make ws4sql 3.0.0 invalid: (what, the fields,
/// the field the refusal names).
fn invalid_outline_fields() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        ("type application", json!({ "type": "application" }), "outline.type"),
        ("platform wasm", json!({ "platform": "wasm" }), "outline.platform"),
        ("name case", json!({ "name": "Gren-lang/Core" }), "outline.name"),
        ("name without author", json!({ "name": "gren-ws4sql" }), "outline.name"),
        (
            "summary of 80 bytes",
            json!({ "summary": "x".repeat(80) }),
            "outline.summary",
        ),
        (
            "summary of 80 bytes in 40 characters",
            json!({ "summary": "é".repeat(40) }),
            "outline.summary",
        ),
        ("licence case", json!({ "license": "bsd-3-clause" }), "outline.license"),
        ("licence WTFPL", json!({ "license": "WTFPL" }), "outline.license"),
        ("version suffix", json!({ "version": "1.0.0-beta" }), "outline.version"),
        (
            "version leading zero",
            json!({ "version": "01.0.0" }),
            "outline.version",
        ),
        ("version too big", json!({ "version": "65536.0.0" }), "outline.version"),
        ("version number", json!({ "version": 3 }), "outline.version"),
        (
            "empty gren range",
            json!({ "gren-version": "0.6.0 <= v < 0.6.0" }),
            "outline.gren-version",
        ),
        (
            "gren range without spaces",
            json!({ "gren-version": "0.6.0<=v<0.7.0" }),
            "outline.gren-version",
        ),
        (
            "local dependency",
            json!({ "dependencies": { "gren-lang/core": "local:../x" } }),
            "outline.dependencies.gren-lang/core",
        ),
        (
            "self-dependency",
            json!({ "dependencies": { "blaix/gren-ws4sql": "1.0.0 <= v < 2.0.0" } }),
            "outline.dependencies.blaix/gren-ws4sql",
        ),
        (
            "invalid dependency name",
            json!({ "dependencies": { "gren-lang/Core": "7.0.0 <= v < 8.0.0" } }),
            "outline.dependencies.gren-lang/Core",
        ),
        (
            "no exposed modules",
            json!({ "exposed-modules": [] }),
            "outline.exposed-modules",
        ),
        (
            "no exposed categories",
            json!({ "exposed-modules": {} }),
            "outline.exposed-modules",
        ),
        (
            "exposed module not in sources",
            json!({ "exposed-modules": ["Db", "Db.Nope"] }),
            "outline.exposed-modules",
        ),
        (
            "category of 20 bytes",
            json!({ "exposed-modules": { "abcdefghijklmnopqrst": ["Db"] } }),
            "outline.exposed-modules",
        ),
        ("outline name escaping", json!({ "name": "../../x" }), "outline.name"),
        ("private not a boolean", json!({ "private": "yes" }), "outline.private"),
    ]
}

/// Sources that each make ws4sql 3.0.0 invalid: (what, the bundle, the
/// field the refusal names).
fn invalid_sources() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let with_source =
        |module: &str, text: &str| modified("blaix/gren-ws4sql", "3.0.0", |c| c["sources"][module] = json!(text));
    vec![
        (
            "lower-case source",
            with_source("lower.case", "module lower.case"),
            "sources.lower.case",
        ),
        (
            "kernel code outside gren-lang",
            with_source("Gren.Kernel.X", "var x = 1;"),
            "sources.Gren.Kernel.X",
        ),
    ]
}

/// Publishing `bytes` is a 400 with `code`, naming `field`, with a message.
#[track_caller]
fn assert_refused_naming(server: &Server, token: &str, what: &str, bytes: &[u8], code: &str, field: &str) {
    let reply = server.publish(token, bytes);
    assert_eq!(reply.status, 400, "{what}: {}", reply.text());
    let answer = reply.json();
    assert_eq!(answer["error"], code, "{what}: {answer}");
    assert_eq!(answer["field"], field, "{what}: {answer}");
    assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}");
}

/// Kernel code in a gren-lang package is fine (core has it), and the
/// boundaries are exact: 79-byte summaries and 19-byte categories pass.
fn assert_kernel_code_in_gren_lang_and_exact_boundaries_pass(server: &Server, token: &str) {
    publish_real(server, token, "gren-lang/core", "7.0.0");
    let boundary = with_outline(
        "blaix/gren-ws4sql",
        "3.0.0",
        json!({
            "name": "blaix/boundary",
            "summary": "y".repeat(79),
            "exposed-modules": { "abcdefghijklmnopqrs": ["Db"], "Other": ["Db.Encode"] },
        }),
    );
    publish_ok(server, token, &boundary, 201);
}

#[test]
fn broken_bundles_are_400_invalid_bundle() {
    let server = Server::start();
    let token = prepare(&server);
    let good = real("gren-lang/url", "6.0.0");
    let outline = content("gren-lang/url", "6.0.0")["outline"].clone();
    let json_without_sources = serde_json::to_vec(&json!({ "outline": outline })).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not gzip", b"this is not gzip at all".to_vec()),
        (
            "plain JSON",
            serde_json::to_vec(&content("gren-lang/url", "6.0.0")).unwrap(),
        ),
        ("empty body", Vec::new()),
        ("truncated gzip", good[..good.len() / 2].to_vec()),
        ("gzip without its trailer", good[..good.len() - 4].to_vec()),
        ("junk after the gzip stream", [good.clone(), b"junk".to_vec()].concat()),
        ("gzip of non-UTF-8", gzip(b"{\"outline\": \"\xff\xfe\"}")),
        ("gzip of JSON without sources", gzip(&json_without_sources)),
        ("gzip of a JSON array", gzip(b"[]")),
        (
            "gzip of sources that are not text",
            gzip(&serde_json::to_vec(&json!({ "outline": outline, "sources": { "Url": 1 } })).unwrap()),
        ),
        (
            "gzip of sources before the outline",
            gzip(format!(r#"{{"sources":{{}},"outline":{outline}}}"#).as_bytes()),
        ),
        (
            "gzip of a member besides outline and sources",
            modified("gren-lang/url", "6.0.0", |content| content["readme"] = json!("hi")),
        ),
    ];
    for (what, bytes) in &cases {
        let reply = server.publish(&token, bytes);
        assert_eq!(reply.status, 400, "{what}: {}", reply.text());
        assert_eq!(reply.json()["error"], "invalid_bundle", "{what}: {}", reply.text());
    }
    publish_ok(&server, &token, &good, 201);
}

#[test]
fn a_gzip_bomb_is_413_and_the_server_survives() {
    let server = Server::with_env(&[("GREN_REGISTRY_MAX_INFLATED_BYTES", "1048576")]);
    let token = prepare(&server);
    let bomb = gzip(&vec![b' '; 20 << 20]);
    assert!(bomb.len() < 40 << 10, "20 MiB of spaces gzip to {} bytes", bomb.len());
    let started = Instant::now();
    server.publish(&token, &bomb).assert_error(413, "bundle_too_large");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(server.is_alive());
    assert_eq!(server.get("/health", None).status, 200);
    // A real bundle below the cap (url 6.0.0 inflates to ~40 KB) still goes through.
    publish_real(&server, &token, "gren-lang/url", "6.0.0");
}

#[test]
fn an_oversized_upload_is_413_before_its_body_is_sent() {
    let server = Server::with_env(&[("GREN_REGISTRY_MAX_BUNDLE_BYTES", "50000")]);
    let token = prepare(&server);
    let core = real("gren-lang/core", "7.0.0");
    assert!(core.len() > 100_000);

    // Only the head: a server that waited for the body would never answer.
    let mut conn = upload_head(&server, &token, core.len(), "");
    conn.stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let started = Instant::now();
    let reply = conn.read_response(false).expect("an answer before the body");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    reply.assert_error(413, "body_too_large");

    // Smaller bundles pass the same limit.
    publish_real(&server, &token, "gren-lang/test-runner-node", "7.0.0");
    assert!(server.get("/packages/gren-lang/core", None).status == 404);

    // Without a token, even the limit is not consulted: 401 before the body.
    let mut conn = server.conn();
    let head = format!(
        "POST /packages HTTP/1.1\r\nHost: {}\r\nContent-Type: application/gzip\r\nContent-Length: 1000\r\n\r\n",
        server.addr
    );
    conn.write(head.as_bytes()).unwrap();
    conn.stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    conn.read_response(false)
        .expect("an answer before the body")
        .assert_error(401, "unauthorized");
}

#[test]
fn gren_lang_is_reserved_for_operators_by_default() {
    // The registry's own default list, not the test harness's.
    let server = Server::with_env(&[("GREN_REGISTRY_RESERVED_IDENTITIES", UNSET)]);
    let token = server.login(ME);
    for name in ["gren-lang", "Gren-Lang"] {
        server
            .post_json("/publishing-identity", &json!({ "name": name }), Some(&token))
            .assert_error(409, "name_reserved");
    }
    server
        .get("/publishing-identity/gren-lang", None)
        .assert_error(404, "identity_not_found");
}

#[test]
fn kernel_code_is_refused_to_a_gren_lang_the_operator_left_out_of_the_setting() {
    // The operator gave gren-lang away and took kernel code from it.
    let server = Server::with_env(&[("GREN_REGISTRY_KERNEL_CODE_AUTHORS", "blaix")]);
    let token = prepare(&server);
    let reply = server.publish(&token, &real("gren-lang/url", "5.0.0"));
    reply.assert_error(400, "invalid_bundle");
    assert_eq!(reply.json()["field"], "sources.Gren.Kernel.Url", "{}", reply.text());
    server
        .get("/packages/gren-lang/url", None)
        .assert_error(404, "package_not_found");
    // Packages without kernel code are still welcome.
    let plain = modified("gren-lang/url", "5.0.0", |content| {
        let sources = content["sources"].as_object_mut().unwrap();
        sources.retain(|module, _| !module.starts_with("Gren.Kernel."));
    });
    publish_ok(&server, &token, &plain, 201);
}

#[test]
fn identities_named_in_the_setting_may_publish_kernel_code() {
    let server = Server::with_env(&[("GREN_REGISTRY_KERNEL_CODE_AUTHORS", "gren-lang, Blaix")]);
    let token = prepare(&server);
    publish_real(&server, &token, "gren-lang/url", "5.0.0");
    let kernel = modified("blaix/gren-ws4sql", "3.0.0", |content| {
        content["sources"]["Gren.Kernel.Db"] = json!("var _Db_x = 1;");
    });
    publish_ok(&server, &token, &kernel, 201);
    // Everyone else still may not.
    create_identity(&server, &token, "someone");
    let stranger = with_outline("blaix/gren-ws4sql", "3.0.0", json!({ "name": "someone/db" }));
    let stranger = rewrite(&stranger, |content| {
        content["sources"]["Gren.Kernel.Db"] = json!("var _Db_x = 1;");
    });
    let reply = server.publish(&token, &stranger);
    reply.assert_error(400, "invalid_bundle");
    assert_eq!(reply.json()["field"], "sources.Gren.Kernel.Db");
}

// ---------------------------------------------------------------------------
// 6. Paths
// ---------------------------------------------------------------------------

#[test]
fn paths_cannot_escape_the_data_directory() {
    let outer = temp_dir();
    let data = outer.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let server = Server::start_in(&data, &[]);
    let token = prepare(&server);
    publish_real(&server, &token, "gren-lang/core", "7.0.0");
    std::fs::write(outer.path().join("secret.txt"), b"outside").unwrap();
    assert_escaping_paths_are_400_or_404(&server, &token);
    assert_escaping_outline_names_are_refused(&server, &token);
    assert_nothing_was_written_outside(outer.path(), &data);
    // The one real package is intact.
    let download = server.get(&bundle_url("gren-lang/core", "7.0.0"), None);
    assert!(download.status == 200 && download.body == real("gren-lang/core", "7.0.0"));
}

/// Paths that try to leave a package's directory (encoded, with NUL bytes,
/// upper-cased) are 400 or 404 to read, and cannot be revoked.
fn assert_escaping_paths_are_400_or_404(server: &Server, token: &str) {
    let attacks = [
        "/packages/..%2F..%2Fetc/passwd",
        "/packages/..%2F..%2F..%2F..%2Fetc/passwd",
        "/packages/gren-lang/core/..%2F..%2F..%2Fregistry.lock/bundle",
        "/packages/gren-lang/core/..%2F..%2F..%2F..%2Fsecret.txt/bundle",
        "/packages/gren-lang/core/7.0.0%2F..%2F..%2F..%2F..%2Fsecret.txt/bundle",
        "/packages/gren-lang/core/..%2F7.0.0/bundle",
        "/packages/gren-lang/..",
        "/packages/gren-lang/../latest",
        "/packages/../../registry.lock",
        "/packages/..%2F..%2F/registry.lock",
        "/packages/%2E%2E/%2E%2E/7.0.0/bundle",
        "/packages/gren-lang/core/../../../registry.lock",
        "/packages/gren-lang%2Fcore/7.0.0/bundle",
        "/packages/gren-lang/core%00/7.0.0/bundle",
        "/packages/gren-lang%00/core/7.0.0/bundle",
        "/packages/gren-lang/core/7.0.0%00/bundle",
        "/packages/gren-lang/core%00.json",
        "/packages/GREN-LANG%2F..%2F..%2Fidentities/gren-lang",
        "/packages/gren-lang/core/7.0.0%2Foutline.json/bundle",
    ];
    for path in attacks {
        for method in ["GET", "HEAD"] {
            let reply = server.send(method, path, &[], b"");
            assert!(
                matches!(reply.status, 400 | 404),
                "{method} {path} must be 400 or 404, not {}: {}",
                reply.status,
                reply.text()
            );
        }
        let revoke = server.post_json(&format!("{path}/revoke"), &json!({ "reason": "x" }), Some(token));
        assert!(
            matches!(revoke.status, 400 | 404 | 405),
            "POST {path}/revoke: {}",
            revoke.status
        );
    }
}

/// Outline names (and versions) that would make a path outside are refused.
fn assert_escaping_outline_names_are_refused(server: &Server, token: &str) {
    for outline_name in [
        "../../x",
        "gren-lang/../../x",
        "gren-lang/core/../../x",
        "..%2F..%2Fx/y",
    ] {
        let bytes = with_outline(
            "gren-lang/core",
            "7.0.0",
            json!({ "name": outline_name, "version": "7.0.1" }),
        );
        let reply = server.publish(token, &bytes);
        reply.assert_error(400, "invalid_outline");
        assert_eq!(reply.json()["field"], "outline.name", "{outline_name}");
    }
    let bytes = with_outline("gren-lang/core", "7.0.0", json!({ "version": "7.0.1/../../../x" }));
    server.publish(token, &bytes).assert_error(400, "invalid_outline");
}

/// Outside the data directory there is only what the test put there; inside
/// no file is named after an attack.
fn assert_nothing_was_written_outside(outer: &Path, data: &Path) {
    let mut outside: Vec<PathBuf> = files_under(outer)
        .into_iter()
        .filter(|path| !path.starts_with(data))
        .collect();
    outside.sort();
    assert_eq!(
        outside,
        vec![outer.join("secret.txt")],
        "nothing is written outside the data directory"
    );
    let top: Vec<String> = std::fs::read_dir(outer)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    let mut top = top;
    top.sort();
    assert_eq!(top, ["data", "secret.txt"]);
    let inside: Vec<PathBuf> = files_under(data)
        .into_iter()
        .map(|path| path.strip_prefix(data).unwrap().to_path_buf())
        .collect();
    assert!(
        inside
            .iter()
            .all(|path| path.file_name().is_some_and(|name| name != "x" && name != "passwd")),
        "{inside:#?}"
    );
}

// ---------------------------------------------------------------------------
// 7. Permissions
// ---------------------------------------------------------------------------

#[test]
fn publishing_revoking_and_settings_need_the_right_role() {
    let server = Server::start();
    let admin = prepare(&server);
    let stranger = server.login("stranger@example.com");
    let reader = server.add_member("gren-lang", &admin, "reader@example.com", "download");
    let writer = server.add_member("gren-lang", &admin, "writer@example.com", "publish");
    let url5 = real("gren-lang/url", "5.0.0");

    publish_to(&server, "/packages", None, &url5).assert_error(401, "unauthorized");
    publish_to(&server, "/packages", Some("gren_not-a-real-token"), &url5).assert_error(401, "unauthorized");
    server.publish(&stranger, &url5).assert_error(403, "forbidden");
    server.publish(&reader, &url5).assert_error(403, "forbidden");
    server
        .get("/packages/gren-lang/url", None)
        .assert_error(404, "package_not_found");

    let published = publish_ok(&server, &writer, &url5, 201);
    assert_eq!(published["version"], "5.0.0");
    publish_real(&server, &writer, "gren-lang/url", "6.0.0");

    let revoke = |token: Option<&str>, version: &str| {
        server.post_json(
            &format!("/packages/gren-lang/url/{version}/revoke"),
            &json!({ "reason": "security" }),
            token,
        )
    };
    revoke(None, "5.0.0").assert_error(401, "unauthorized");
    revoke(Some(&stranger), "5.0.0").assert_error(403, "forbidden");
    revoke(Some(&reader), "5.0.0").assert_error(403, "forbidden");
    server
        .post_json(
            "/packages/gren-lang/url/revoke",
            &json!({ "reason": "x" }),
            Some(&reader),
        )
        .assert_error(403, "forbidden");
    assert_eq!(server.get(&bundle_url("gren-lang/url", "5.0.0"), None).status, 200);
    let revoked = revoke(Some(&writer), "5.0.0");
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    assert_eq!(revoked.json()["revoked"]["reason"], "security");

    let settings =
        |token: Option<&str>| server.patch_json("/packages/gren-lang/url", &json!({ "private": true }), token);
    settings(None).assert_error(401, "unauthorized");
    settings(Some(&stranger)).assert_error(403, "forbidden");
    settings(Some(&reader)).assert_error(403, "forbidden");
    settings(Some(&writer)).assert_error(403, "forbidden");
    assert_eq!(server.get("/packages/gren-lang/url", None).json()["private"], false);
    let changed = settings(Some(&admin));
    assert_eq!(changed.status, 200, "{}", changed.text());
    assert_eq!(changed.json(), json!({ "name": "gren-lang/url", "private": true }));
    let back = server.patch_json("/packages/gren-lang/url", &json!({ "private": false }), Some(&admin));
    assert_eq!(back.status, 200, "{}", back.text());
    assert_eq!(back.json()["private"], false);

    // An author nobody has claimed.
    let someone = with_outline("blaix/gren-ws4sql", "3.0.0", json!({ "name": "someone/pkg" }));
    server.publish(&admin, &someone).assert_error(404, "identity_not_found");
    // An author longer than any identity name.
    let long = with_outline(
        "blaix/gren-ws4sql",
        "3.0.0",
        json!({ "name": format!("{}/pkg", "a".repeat(60)) }),
    );
    server.publish(&admin, &long).assert_error(404, "identity_not_found");
    // The identity spelled differently from its creation.
    let spelled = with_outline("blaix/gren-ws4sql", "3.0.0", json!({ "name": "Blaix/gren-ws4sql" }));
    let reply = server.publish(&admin, &spelled);
    reply.assert_error(400, "invalid_outline");
    assert_eq!(reply.json()["field"], "outline.name");
    server
        .get("/packages/blaix/gren-ws4sql", None)
        .assert_error(404, "package_not_found");
}

// ---------------------------------------------------------------------------
// 8. Revocation
// ---------------------------------------------------------------------------

#[test]
fn revocation_removes_the_bundle_and_shows_everywhere() {
    let server = Server::start();
    let token = prepare(&server);
    publish_real(&server, &token, "gren-lang/core", "6.0.1");
    publish_real(&server, &token, "gren-lang/core", "7.0.0");
    let package_dir = server.data_dir.join("packages/gren-lang/core");
    let bundle = package_dir.join("gren_lang_core__6_0_1.pkg.gz");
    assert!(
        bundle_files_in(&package_dir).contains(&bundle),
        "the bundle is stored beside its record under its compiler name"
    );
    let revoke_url = "/packages/gren-lang/core/6.0.1/revoke";
    assert_bad_revocations_are_refused(&server, &token, revoke_url);
    assert_eq!(server.get(&bundle_url("gren-lang/core", "6.0.1"), None).status, 200);

    let reply = server.post_json(revoke_url, &json!({ "reason": "security" }), Some(&token));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json();
    assert_eq!(answer["version"], "6.0.1");
    assert_eq!(answer["revoked"]["reason"], "security", "{answer}");
    assert!(
        answer["revoked"]["at"].as_str().is_some_and(|at| !at.is_empty()),
        "{answer}"
    );
    assert!(
        !bundle_files_in(&package_dir).contains(&bundle),
        "the bundle file is gone: {:?}",
        files_under(&package_dir)
    );
    assert_core_6_0_1_shows_revoked_everywhere(&server);

    // Idempotent: the first reason stays.
    let again = server.post_json(revoke_url, &json!({ "reason": "another" }), Some(&token));
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["revoked"], answer["revoked"]);
    revoke_all_of_url_and_see_it_gone(&server, &token);
}

/// A revocation without a reason, with a blank one, one holding invisible
/// or control characters, without JSON, or of a version that does not
/// exist is refused.
fn assert_bad_revocations_are_refused(server: &Server, token: &str, revoke_url: &str) {
    server
        .post_json(revoke_url, &json!({}), Some(token))
        .assert_error(400, "invalid_field");
    server
        .post_json(revoke_url, &json!({ "reason": "" }), Some(token))
        .assert_error(400, "invalid_reason");
    server
        .post_json(revoke_url, &json!({ "reason": "   " }), Some(token))
        .assert_error(400, "invalid_reason");
    for hidden in ["broken\u{202e}", "a\u{200b}b", "line one\nFAKE line"] {
        let refused = server.post_json(revoke_url, &json!({ "reason": hidden }), Some(token));
        refused.assert_error(400, "invalid_reason");
        assert_eq!(refused.json()["field"], "reason");
    }
    server
        .send("POST", revoke_url, &[("Authorization", &bearer(token))], b"")
        .assert_error(400, "invalid_json");
    server
        .post_json(
            "/packages/gren-lang/core/6.0.9/revoke",
            &json!({ "reason": "x" }),
            Some(token),
        )
        .assert_error(404, "version_not_found");
}

/// The revoked core 6.0.1 is 410 to download, still listed (with its
/// reason), and no longer an answer to version queries.
fn assert_core_6_0_1_shows_revoked_everywhere(server: &Server) {
    let gone = server.get(&bundle_url("gren-lang/core", "6.0.1"), None);
    gone.assert_error(410, "revoked");
    assert_eq!(gone.json()["reason"], "security");
    let head = server.send("HEAD", &bundle_url("gren-lang/core", "6.0.1"), &[], b"");
    assert_eq!(head.status, 410, "HEAD of a revoked bundle");
    let record = server.get("/packages/gren-lang/core", None).json();
    let versions = record["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "a revoked version is still listed");
    assert_eq!(versions[0]["revoked"]["reason"], "security");
    assert_eq!(versions[1]["revoked"], Value::Null);
    let one = server.get("/packages/gren-lang/core/6.0.1", None);
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["revoked"]["reason"], "security");

    server
        .get("/packages/gren-lang/core/latest?gren=0.5.0", None)
        .assert_error(404, "no_compatible_version");
    server
        .get("/packages/gren-lang/core/7.0.0/previous", None)
        .assert_error(404, "no_previous_version");
    assert_eq!(
        version_of(&server.get("/packages/gren-lang/core/latest", None)),
        "7.0.0"
    );
    let old_compilers = server.get("/packages?gren=0.5.0", None).json();
    assert_eq!(old_compilers["packages"], json!([]), "{old_compilers}");
}

/// Revoking a whole package revokes every version, removes their bundles,
/// and takes the package out of the listing.
fn revoke_all_of_url_and_see_it_gone(server: &Server, token: &str) {
    publish_real(server, token, "gren-lang/url", "5.0.0");
    publish_real(server, token, "gren-lang/url", "6.0.0");
    let all = server.post_json(
        "/packages/gren-lang/url/revoke",
        &json!({ "reason": "abandoned" }),
        Some(token),
    );
    assert_eq!(all.status, 200, "{}", all.text());
    let all = all.json();
    let versions = all["versions"].as_array().expect("the versions");
    assert_eq!(versions.len(), 2, "{all}");
    assert!(versions.iter().all(|v| v["revoked"]["reason"] == "abandoned"), "{all}");
    for version in ["5.0.0", "6.0.0"] {
        server
            .get(&bundle_url("gren-lang/url", version), None)
            .assert_error(410, "revoked");
        let dir = server.data_dir.join("packages/gren-lang/url").join(version);
        assert!(bundle_files_in(&dir).is_empty(), "{version}: {:?}", files_under(&dir));
    }
    server
        .get("/packages/gren-lang/url/latest", None)
        .assert_error(404, "no_compatible_version");
    let listing = server.get("/packages", None).json();
    let names: Vec<&str> = listing["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["gren-lang/core"],
        "a fully revoked package has no latest: {listing}"
    );
}

// ---------------------------------------------------------------------------
// 9. Privacy
// ---------------------------------------------------------------------------

/// `(status, error code)` of a reply, for comparing "absent" answers.
fn outcome(reply: &Reply) -> (u16, String) {
    let code = serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .and_then(|json| json["error"].as_str().map(str::to_string))
        .unwrap_or_default();
    (reply.status, code)
}

#[test]
fn private_packages_are_invisible_to_outsiders() {
    let server = Server::start();
    let admin = prepare(&server);
    let stranger = server.login("stranger@example.com");
    let reader = server.add_member("blaix", &admin, "reader@example.com", "download");
    publish_private_packages_beside_a_public_one(&server, &admin);
    for (who, token) in [("anonymous", None), ("stranger", Some(stranger.as_str()))] {
        assert_an_outsider_sees_no_private_package(&server, who, token);
    }
    assert_a_download_member_sees_everything(&server, &reader);
    assert_no_event_mentions_private_publishes(&server);
    make_ws4sql_public_and_see_it_announced(&server, &admin);
    // The other private package is still hidden.
    server
        .get("/packages/blaix/gren-effectful-tests", None)
        .assert_error(404, "package_not_found");
}

/// ws4sql 2.0.0 and 3.0.0 private (by query, then without asking),
/// effectful-tests private by its outline, url 5.0.0 public.
fn publish_private_packages_beside_a_public_one(server: &Server, admin: &str) {
    publish_private(server, admin, "blaix/gren-ws4sql", "2.0.0");
    // Later versions stay private without asking.
    publish_real(server, admin, "blaix/gren-ws4sql", "3.0.0");
    // `"private": true` in the outline works too.
    let outlined = with_outline("blaix/gren-effectful-tests", "6.0.0", json!({ "private": true }));
    publish_ok(server, admin, &outlined, 201);
    publish_to(
        server,
        "/packages?private=maybe",
        Some(admin),
        &real("gren-lang/url", "5.0.0"),
    )
    .assert_error(400, "invalid_query");
    // A public package cannot take a private version.
    publish_real(server, admin, "gren-lang/url", "5.0.0");
    publish_to(
        server,
        "/packages?private=true",
        Some(admin),
        &real("gren-lang/url", "6.0.0"),
    )
    .assert_error(409, "privacy_mismatch");
}

/// The paths of a package and of its versions 3.0.0, 2.0.0 and 9.9.9.
fn package_paths(package: &str) -> Vec<String> {
    vec![
        format!("/packages/{package}"),
        format!("/packages/{package}/latest"),
        format!("/packages/{package}/latest?gren=0.6.0"),
        format!("/packages/{package}/3.0.0"),
        format!("/packages/{package}/3.0.0/previous"),
        format!("/packages/{package}/3.0.0/bundle"),
        format!("/packages/{package}/2.0.0/bundle"),
        format!("/packages/{package}/9.9.9"),
        format!("/packages/{package}/9.9.9/bundle"),
    ]
}

/// The package names `GET /packages` lists to `token`.
fn listed_names(server: &Server, token: Option<&str>) -> Vec<String> {
    server.listing("/packages", token).into_keys().collect()
}

/// To `who`, a private package answers as one that does not exist, on
/// every path, by ETag, in listings and on its identity's page; it cannot
/// be revoked.
fn assert_an_outsider_sees_no_private_package(server: &Server, who: &str, token: Option<&str>) {
    for (private, absent) in package_paths("blaix/gren-ws4sql")
        .iter()
        .zip(package_paths("blaix/no-such-package"))
    {
        let seen = server.get(private, token);
        let missing = server.get(&absent, token);
        assert_eq!(seen.status, 404, "{who}: {private}: {}", seen.text());
        assert_eq!(
            outcome(&seen),
            outcome(&missing),
            "{who}: {private} answers as a package that does not exist"
        );
        let head = send_as(server, "HEAD", private, token);
        assert_eq!(head.status, 404, "{who}: HEAD {private}");
    }
    let cached = get_with(
        server,
        "/packages/blaix/gren-ws4sql/3.0.0/bundle",
        token,
        &[(
            "If-None-Match",
            &format!("\"{}\"", sha256_hex(real("blaix/gren-ws4sql", "3.0.0"))),
        )],
    );
    assert_eq!(cached.status, 404, "{who}: a known ETag reveals nothing");
    assert_eq!(
        listed_names(server, token),
        ["gren-lang/url"],
        "{who} sees only public packages"
    );
    let filtered = server.get("/packages?gren=0.5.0", token).json();
    assert!(!filtered.to_string().contains("ws4sql"), "{who}: {filtered}");
    let identity = server.get("/publishing-identity/blaix", token);
    assert_eq!(identity.status, 200, "{}", identity.text());
    assert!(
        !identity.text().contains("gren-ws4sql") && !identity.text().contains("effectful"),
        "{who}: the identity page hides private packages: {}",
        identity.text()
    );
    let revoke = server.post_json(
        "/packages/blaix/gren-ws4sql/3.0.0/revoke",
        &json!({ "reason": "x" }),
        token,
    );
    assert!(matches!(revoke.status, 401 | 404), "{who}: revoke {}", revoke.status);
}

/// A download member sees everything: the paths, the record, the bytes
/// (privately cacheable), and the private packages in the listing.
fn assert_a_download_member_sees_everything(server: &Server, reader: &str) {
    for path in package_paths("blaix/gren-ws4sql").iter().take(6) {
        let reply = server.get(path, Some(reader));
        assert_eq!(reply.status, 200, "reader: {path}: {}", reply.text());
    }
    let record = server.get("/packages/blaix/gren-ws4sql", Some(reader)).json();
    assert_eq!(record["private"], true);
    assert_eq!(record["versions"].as_array().unwrap().len(), 2);
    let download = server.get("/packages/blaix/gren-ws4sql/3.0.0/bundle", Some(reader));
    assert!(download.body == real("blaix/gren-ws4sql", "3.0.0"));
    let cache = download.header("cache-control").unwrap_or_default();
    assert!(cache.contains("private"), "{cache:?}");
    assert!(!cache.contains("public"), "{cache:?}");
    assert_eq!(
        listed_names(server, Some(reader)),
        ["blaix/gren-effectful-tests", "blaix/gren-ws4sql", "gren-lang/url"],
        "members list their private packages"
    );
    let entry = server.get("/packages", Some(reader)).json()["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["name"] == "blaix/gren-ws4sql")
        .cloned()
        .unwrap();
    assert_eq!(entry["private"], true);
    assert_eq!(entry["latest"], "3.0.0");
}

/// The event log names the public publish only.
fn assert_no_event_mentions_private_publishes(server: &Server) {
    let before = events(server, 0);
    assert_eq!(
        event_list(&before),
        vec![(
            1,
            "publish".to_string(),
            "gren-lang/url".to_string(),
            "5.0.0".to_string()
        )],
        "{before}"
    );
}

/// An admin makes ws4sql public: everyone sees it, and it is announced
/// (`public`, then a publish event per version).
fn make_ws4sql_public_and_see_it_announced(server: &Server, admin: &str) {
    let public = server.patch_json("/packages/blaix/gren-ws4sql", &json!({ "private": false }), Some(admin));
    assert_eq!(public.status, 200, "{}", public.text());
    assert_eq!(public.json(), json!({ "name": "blaix/gren-ws4sql", "private": false }));
    assert_eq!(
        version_of(&server.get("/packages/blaix/gren-ws4sql/latest", None)),
        "3.0.0"
    );
    let download = server.get("/packages/blaix/gren-ws4sql/3.0.0/bundle", None);
    assert_eq!(download.status, 200);
    assert!(download.header("cache-control").unwrap_or_default().contains("public"));
    let after = event_list(&events(server, 0));
    assert_gap_free(&after);
    let announced: Vec<(String, String, String)> = after[1..]
        .iter()
        .map(|e| (e.1.clone(), e.2.clone(), e.3.clone()))
        .collect();
    assert_eq!(
        announced,
        [
            ("public".to_string(), "blaix/gren-ws4sql".to_string(), String::new()),
            (
                "publish".to_string(),
                "blaix/gren-ws4sql".to_string(),
                "2.0.0".to_string()
            ),
            (
                "publish".to_string(),
                "blaix/gren-ws4sql".to_string(),
                "3.0.0".to_string()
            ),
        ]
    );
}

// ---------------------------------------------------------------------------
// 10. Events
// ---------------------------------------------------------------------------

#[test]
fn events_are_numbered_without_gaps() {
    let server = Server::start();
    let token = prepare(&server);
    let empty = events(&server, 0);
    assert_eq!(empty["events"], json!([]));
    assert_eq!(empty["head"], 0);
    publish_real(&server, &token, "gren-lang/url", "5.0.0");
    publish_real(&server, &token, "gren-lang/url", "6.0.0");
    publish_real(&server, &token, "gren-lang/core", "6.0.1");
    // Refused and repeated publishes are not events.
    publish_ok(&server, &token, &real("gren-lang/core", "6.0.1"), 200);
    publish_ok(&server, &token, &real("gren-lang/url", "5.0.0"), 200);
    let revoked = server.post_json(
        "/packages/gren-lang/url/5.0.0/revoke",
        &json!({ "reason": "security" }),
        Some(&token),
    );
    assert_eq!(revoked.status, 200);
    let all = events(&server, 0);
    let list = event_list(&all);
    let expected: Vec<(u64, String, String, String)> = [
        (1, "publish", "gren-lang/url", "5.0.0"),
        (2, "publish", "gren-lang/url", "6.0.0"),
        (3, "publish", "gren-lang/core", "6.0.1"),
        (4, "revoke", "gren-lang/url", "5.0.0"),
    ]
    .iter()
    .map(|(s, t, p, v)| (*s, t.to_string(), p.to_string(), v.to_string()))
    .collect();
    assert_eq!(list, expected, "{all}");
    assert_eq!(all["head"], 4);
    for event in all["events"].as_array().unwrap() {
        let mut keys: Vec<&str> = event.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["at", "package", "seq", "sha256", "type", "version"], "{event}");
        assert_eq!(event["sha256"].as_str().map(str::len), Some(64), "{event}");
        assert!(event["at"].as_str().is_some_and(|at| !at.is_empty()));
    }
    assert_eq!(event_list(&events(&server, 2)), expected[2..].to_vec());
    assert_eq!(event_list(&events(&server, 4)), vec![]);
    assert_eq!(event_list(&events(&server, 99)), vec![]);
    let no_since = server.get("/events", None);
    assert_eq!(event_list(&no_since.json()), expected);
    for bad in ["abc", "-1", "1.5", ""] {
        server
            .get(&format!("/events?since={bad}"), None)
            .assert_error(400, "invalid_query");
    }
    // Revoking a whole package: one event per version revoked.
    let all = server.post_json(
        "/packages/gren-lang/url/revoke",
        &json!({ "reason": "gone" }),
        Some(&token),
    );
    assert_eq!(all.status, 200);
    let list = event_list(&events(&server, 4));
    assert_eq!(
        list,
        vec![(
            5,
            "revoke".to_string(),
            "gren-lang/url".to_string(),
            "6.0.0".to_string()
        )],
        "5.0.0 was revoked already"
    );
}

/// The sequence numbers in a `GET /events` answer.
fn seqs(answer: &Value) -> Vec<u64> {
    event_list(answer).iter().map(|event| event.0).collect()
}

#[test]
fn events_come_in_pages_with_a_cursor_to_the_next() {
    let server = Server::with_env(&[("GREN_REGISTRY_PUBLISH_LIMIT_PER_HOUR", "1000")]);
    let token = prepare(&server);
    for patch in 0..=100 {
        let bytes = synthetic("blaix/paged", &format!("1.0.{patch}"), "paging");
        publish_ok(&server, &token, &bytes, 201);
    }
    // By default 100 events a page, and where the next page starts.
    let first = events(&server, 0);
    assert_eq!(seqs(&first), (1..=100).collect::<Vec<_>>());
    assert_eq!(first["next"], 100);
    assert!(
        first.get("head").is_none(),
        "a full page never changes, so it does not carry the moving head: {first}"
    );
    let tail = events(&server, 100);
    assert_eq!(seqs(&tail), [101]);
    assert_eq!((&tail["next"], &tail["head"]), (&json!(101), &json!(101)));
    let caught_up = events(&server, 101);
    assert_eq!(seqs(&caught_up), Vec::<u64>::new());
    assert_eq!((&caught_up["next"], &caught_up["head"]), (&json!(101), &json!(101)));

    let page = server.get("/events?since=10&limit=5", None).json();
    assert_eq!(seqs(&page), [11, 12, 13, 14, 15]);
    assert_eq!(page["next"], 15);
    let most = server.get("/events?limit=1000", None).json();
    assert_eq!(seqs(&most), (1..=101).collect::<Vec<_>>());
    assert_eq!(most["head"], 101);
    for bad in ["0", "1001", "-1", "ten", "", "99999999999999999999"] {
        let reply = server.get(&format!("/events?limit={bad}"), None);
        reply.assert_error(400, "invalid_query");
        assert!(
            reply.json()["message"].as_str().unwrap().contains("1000"),
            "{}",
            reply.text()
        );
    }

    // A mirror following `next` sees every event once, in order.
    let (mut since, mut seen) = (0, Vec::new());
    loop {
        let page = server.get(&format!("/events?since={since}&limit=7"), None).json();
        seen.extend(seqs(&page));
        if page.get("head").is_some() {
            break;
        }
        since = page["next"].as_u64().unwrap();
    }
    assert_eq!(seen, (1..=101).collect::<Vec<_>>());
}

#[test]
fn full_event_pages_are_cacheable_and_the_last_page_is_revalidated() {
    let server = Server::start();
    let token = prepare(&server);
    publish_real(&server, &token, "gren-lang/url", "5.0.0");
    publish_real(&server, &token, "gren-lang/url", "6.0.0");
    publish_real(&server, &token, "gren-lang/core", "6.0.1");

    let full = server.get("/events?since=0&limit=2", None);
    assert_eq!(full.status, 200);
    assert_eq!(
        full.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let etag = full.header("etag").expect("an ETag").to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 10,
        "a strong ETag: {etag}"
    );
    let again = get_with(&server, "/events?since=0&limit=2", None, &[("If-None-Match", &etag)]);
    assert_eq!(again.status, 304, "{}", again.text());
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert_eq!(
        again.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let other = get_with(
        &server,
        "/events?since=0&limit=2",
        None,
        &[("If-None-Match", "\"other\"")],
    );
    assert_eq!(other.status, 200);

    let last = server.get("/events?since=2&limit=2", None);
    assert_eq!(seqs(&last.json()), [3]);
    // Caches keep it a minute, or until the next event purges it when the
    // registry purges them (see cdn.rs).
    assert_eq!(last.header("cache-control"), Some("public, max-age=60"));
    let last_tag = last.header("etag").expect("an ETag").to_string();
    let unchanged = get_with(
        &server,
        "/events?since=2&limit=2",
        None,
        &[("If-None-Match", &last_tag)],
    );
    assert_eq!(unchanged.status, 304);

    // The log grows: the full page is byte for byte the same, the last page is not.
    publish_real(&server, &token, "gren-lang/core", "7.0.0");
    let later = server.get("/events?since=0&limit=2", None);
    assert!(later.body == full.body, "a full page never changes");
    assert_eq!(later.header("etag"), Some(etag.as_str()));
    let grown = get_with(
        &server,
        "/events?since=2&limit=2",
        None,
        &[("If-None-Match", &last_tag)],
    );
    assert_eq!(grown.status, 200);
    assert_eq!(seqs(&grown.json()), [3, 4]);
    assert_eq!(
        grown.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_ne!(grown.header("etag"), Some(last_tag.as_str()));
}

#[test]
fn unauthenticated_uploads_are_refused_before_their_body_whatever_the_path_spelling() {
    let server = Server::start();
    for path in ["/packages", "//packages", "/%70ackages", "/packages/"] {
        let mut conn = server.conn();
        conn.write(format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n").as_bytes())
            .unwrap();
        let reply = conn.read_response(false).unwrap();
        reply.assert_error(401, "unauthorized");
    }
}

#[test]
fn an_upload_is_authenticated_once_from_its_head_so_a_logout_during_its_body_does_not_undo_it() {
    let server = Server::start();
    let token = prepare(&server);
    let bundle = real("gren-lang/core", "7.0.0");
    let mut conn = upload_head(&server, &token, bundle.len(), "Expect: 100-continue\r\n");
    // `100 Continue` comes once the upload is admitted from its head.
    assert_eq!(conn.read_response(false).unwrap().status, 100);
    assert_eq!(server.delete("/session", Some(&token)).status, 204);
    conn.write(&bundle).unwrap();
    let reply = conn.read_response(false).unwrap();
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(server.get("/packages/gren-lang/core", None).status, 200);
}

#[test]
fn events_stay_gap_free_when_a_package_goes_private_and_the_server_restarts() {
    let dir = temp_dir();
    let server = Server::start_in(dir.path(), &[]);
    let token = prepare(&server);
    publish_real(&server, &token, "gren-lang/core", "6.0.1");
    publish_real(&server, &token, "gren-lang/url", "5.0.0");
    set_private(&server, &token, "gren-lang/url", true);
    let before = event_list(&events_as(&server, 0, Some(&token)));
    assert_eq!(before.len(), 3);
    let outsiders = event_list(&events(&server, 0));
    assert_eq!(
        outsiders, before,
        "the log is public history, the same for everyone; its `private` event tells mirrors to drop the package"
    );
    server.stop();

    let server = Server::start_in(dir.path(), &[]);
    let token = server.login(ME);
    let after = event_list(&events_as(&server, 0, Some(&token)));
    assert_eq!(after, before, "a restart keeps every committed event");
    publish_real(&server, &token, "gren-lang/core", "7.0.0");
    let list = event_list(&events_as(&server, 0, Some(&token)));
    assert_gap_free(&list);
    assert_eq!(list.len(), 4, "{list:?}");
    assert_eq!(list[3].2, "gren-lang/core");
    assert_eq!(list[1].2, "gren-lang/url", "event 2 is not reused: {list:?}");
}

#[test]
fn a_revocation_while_private_reaches_mirrors_when_the_package_is_public_again() {
    let server = Server::start();
    let token = prepare(&server);
    publish_real(&server, &token, "gren-lang/url", "5.0.0");
    publish_real(&server, &token, "gren-lang/url", "6.0.0");
    set_private(&server, &token, "gren-lang/url", true);
    let going_private = expected_events(&[
        (1, "publish", "gren-lang/url", "5.0.0"),
        (2, "publish", "gren-lang/url", "6.0.0"),
        (3, "private", "gren-lang/url", ""),
    ]);
    assert_eq!(event_list(&events(&server, 0)), going_private);
    assert_eq!(
        mirror_replay(&going_private),
        BTreeMap::new(),
        "mirrors stop serving it"
    );

    revoke_version(&server, &token, "gren-lang/url", "5.0.0");
    let quiet = events(&server, 0);
    assert_eq!(event_list(&quiet), going_private, "nothing is said while it is private");
    assert_eq!(quiet["head"], 3);

    set_private(&server, &token, "gren-lang/url", false);
    let all = events(&server, 0);
    let list = event_list(&all);
    assert_eq!(
        list,
        expected_events(&[
            (1, "publish", "gren-lang/url", "5.0.0"),
            (2, "publish", "gren-lang/url", "6.0.0"),
            (3, "private", "gren-lang/url", ""),
            (4, "public", "gren-lang/url", ""),
            (5, "revoke", "gren-lang/url", "5.0.0"),
        ]),
        "{all}"
    );
    let revoke = &all["events"][4];
    assert_eq!(revoke["sha256"], sha256_hex(real("gren-lang/url", "5.0.0")), "{revoke}");
    assert_eq!(
        mirror_replay(&list),
        BTreeMap::from([("gren-lang/url".to_string(), vec!["6.0.0".to_string()])])
    );
    assert_eq!(mirror_replay(&list), served_to_everyone(&server));
    // Members see the same log as everyone else.
    assert_eq!(event_list(&events_as(&server, 0, Some(&token))), list);
}

#[test]
fn going_public_announces_exactly_what_mirrors_have_not_seen() {
    let server = Server::start();
    let token = prepare(&server);
    // Private from the start: 2.0.0 stays, 3.0.0 is revoked before anyone saw it.
    publish_private(&server, &token, "blaix/gren-ws4sql", "2.0.0");
    publish_real(&server, &token, "blaix/gren-ws4sql", "3.0.0");
    revoke_version(&server, &token, "blaix/gren-ws4sql", "3.0.0");
    // Public, then private again with a new version published meanwhile.
    publish_real(&server, &token, "gren-lang/url", "5.0.0");
    set_private(&server, &token, "gren-lang/url", true);
    publish_real(&server, &token, "gren-lang/url", "6.0.0");
    assert_eq!(
        event_list(&events(&server, 0)),
        expected_events(&[
            (1, "publish", "gren-lang/url", "5.0.0"),
            (2, "private", "gren-lang/url", ""),
        ]),
        "a private package's publishes and revocations are not public events"
    );

    set_private(&server, &token, "blaix/gren-ws4sql", false);
    set_private(&server, &token, "gren-lang/url", false);
    // Asking for what already is changes nothing.
    set_private(&server, &token, "gren-lang/url", false);
    let list = event_list(&events(&server, 0));
    assert_eq!(
        list[2..],
        expected_events(&[
            (3, "public", "blaix/gren-ws4sql", ""),
            (4, "publish", "blaix/gren-ws4sql", "2.0.0"),
            (5, "public", "gren-lang/url", ""),
            (6, "publish", "gren-lang/url", "6.0.0"),
        ])[..],
        "no revocation of a version nobody saw, no second publish of 5.0.0"
    );
    assert_eq!(mirror_replay(&list), served_to_everyone(&server));
    // Revoking the whole package while public: one event per live version.
    let all = server.post_json(
        "/packages/gren-lang/url/revoke",
        &json!({ "reason": "gone" }),
        Some(&token),
    );
    assert_eq!(all.status, 200, "{}", all.text());
    let list = event_list(&events(&server, 0));
    assert_eq!(list.len(), 8, "{list:?}");
    assert_eq!(mirror_replay(&list), served_to_everyone(&server));
}

// ---------------------------------------------------------------------------
// 11. The packages site
// ---------------------------------------------------------------------------

fn site_env(site: &SiteStub) -> Vec<(&'static str, String)> {
    vec![
        ("GREN_REGISTRY_PACKAGE_SITE_URL", site.stub.url()),
        ("GREN_REGISTRY_PACKAGE_SITE_SECRET", "s3cret".to_string()),
    ]
}

fn as_env<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(key, value)| (*key, value.as_str())).collect()
}

#[track_caller]
fn assert_signed_import(request: &SiteRequest, package: &str) {
    assert_eq!(request.received.method, "POST", "{request:?}");
    assert_eq!(request.received.path, "/import/init", "{request:?}");
    assert_eq!(request.json(), json!({ "packageName": package }), "{request:?}");
    let expected = format!("sha256={}", hmac_hex("s3cret", &request.received.body));
    assert_eq!(
        request.header("X-Gren-Registry-Signature"),
        Some(expected.as_str()),
        "the deprecated signature is the HMAC-SHA256 of the exact body"
    );
    let signature = request.header("Gren-Registry-Signature").unwrap_or_default();
    let event = request.header("X-Gren-Registry-Event").unwrap_or_default();
    let verified = verify_site_call("s3cret", signature, event, &request.received.body, unix_now(), 300);
    assert_eq!(verified, Ok(()), "{request:?}");
    assert!(
        request
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{request:?}"
    );
}

/// Why a packages-site call fails verification, as docs/API.md ("The
/// packages site") tells the site to verify it.
#[derive(Debug, PartialEq)]
enum Unverified {
    Malformed,
    TooOld,
    WrongSignature,
}

/// What the site does with a call: `Gren-Registry-Signature: t=<unix>,v1=<hex>`
/// must be the HMAC-SHA256, under the shared secret, of `<t>.<event>.<body>`
/// (`<event>` the `X-Gren-Registry-Event` header), and `t` within
/// `tolerance` of the site's clock `now`.
fn verify_site_call(
    secret: &str,
    signature: &str,
    event: &str,
    body: &[u8],
    now: u64,
    tolerance: u64,
) -> Result<(), Unverified> {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in signature.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<u64>().ok(),
            Some(("v1", value)) => v1.push(value),
            _ => {}
        }
    }
    let t = t.ok_or(Unverified::Malformed)?;
    if v1.is_empty() {
        return Err(Unverified::Malformed);
    }
    if now.abs_diff(t) > tolerance {
        return Err(Unverified::TooOld);
    }
    let mut signed = format!("{t}.{event}.").into_bytes();
    signed.extend_from_slice(body);
    let expected = hmac_hex(secret, &signed);
    if v1.contains(&expected.as_str()) {
        Ok(())
    } else {
        Err(Unverified::WrongSignature)
    }
}

#[test]
fn the_packages_site_call_signs_its_time_and_event_with_the_body_so_a_replay_or_a_changed_event_fails() {
    let site = SiteStub::start(200);
    let env = site_env(&site);
    let server = Server::with_env(&as_env(&env));
    let token = prepare(&server);
    let before = unix_now();
    publish_real(&server, &token, "gren-lang/url", "5.0.0");
    let call = site.wait_for_more_than(0, Duration::from_secs(5))[0].clone();
    let after = unix_now();
    let signature = call
        .header("Gren-Registry-Signature")
        .expect("the call carries Gren-Registry-Signature")
        .to_string();
    let event = call.header("X-Gren-Registry-Event").unwrap().to_string();
    assert_eq!(event, "1");
    let body = &call.received.body;
    let t: u64 = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .and_then(|(t, _)| t.parse().ok())
        .unwrap_or_else(|| panic!("t=<unix>,v1=<hex>: {signature}"));
    assert!((before..=after).contains(&t), "t={t} is when it was sent");
    let tolerance = 300;
    let verify =
        |signature: &str, event: &str, now: u64| verify_site_call("s3cret", signature, event, body, now, tolerance);
    assert_eq!(verify(&signature, &event, after), Ok(()));
    // Another event number, the same signature: refused.
    assert_eq!(verify(&signature, "2", after), Err(Unverified::WrongSignature));
    // Another time under the same signature: refused.
    let moved = signature.replacen(&format!("t={t}"), &format!("t={}", t + 1), 1);
    assert_eq!(verify(&moved, &event, after), Err(Unverified::WrongSignature));
    // The captured call replayed past the tolerance: refused.
    assert_eq!(verify(&signature, &event, t + tolerance + 1), Err(Unverified::TooOld));
    // Another secret, another body: refused.
    assert_eq!(
        verify_site_call("other", &signature, &event, body, after, tolerance),
        Err(Unverified::WrongSignature)
    );
    let other_body = br#"{"packageName":"gren-lang/core"}"#;
    assert_eq!(
        verify_site_call("s3cret", &signature, &event, other_body, after, tolerance),
        Err(Unverified::WrongSignature)
    );
}

#[test]
fn publishing_notifies_the_packages_site_with_a_signature() {
    let site = SiteStub::start(200);
    let env = site_env(&site);
    let server = Server::with_env(&as_env(&env));
    let token = prepare(&server);

    // Private first: it must never be announced.
    publish_private(&server, &token, "blaix/gren-ws4sql", "2.0.0");

    site.set_delay(Duration::from_secs(2));
    let started = Instant::now();
    publish_real(&server, &token, "gren-lang/url", "5.0.0");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "the publish waited for the site: {took:?}"
    );
    let requests = site.wait_for_more_than(0, Duration::from_secs(5));
    assert_eq!(requests.len(), 1, "only the public publish is announced: {requests:#?}");
    assert_signed_import(&requests[0], "gren-lang/url");
    assert_eq!(
        requests[0].received.body,
        br#"{"packageName":"gren-lang/url"}"#.to_vec(),
        "{:?}",
        String::from_utf8_lossy(&requests[0].received.body)
    );
    site.set_delay(Duration::ZERO);

    // A revocation is announced too.
    let revoked = server.post_json(
        "/packages/gren-lang/url/5.0.0/revoke",
        &json!({ "reason": "x" }),
        Some(&token),
    );
    assert_eq!(revoked.status, 200);
    let requests = site.wait_for_more_than(1, Duration::from_secs(5));
    assert_signed_import(&requests[1], "gren-lang/url");
    // Private revocations and private versions are not.
    publish_real(&server, &token, "blaix/gren-ws4sql", "3.0.0");
    let quiet = server.post_json(
        "/packages/blaix/gren-ws4sql/2.0.0/revoke",
        &json!({ "reason": "x" }),
        Some(&token),
    );
    assert_eq!(quiet.status, 200);
    publish_real(&server, &token, "gren-lang/core", "6.0.1");
    let requests = site.wait_for_more_than(2, Duration::from_secs(5));
    assert_signed_import(&requests[2], "gren-lang/core");
    assert!(
        requests.iter().all(|request| !request.package().contains("ws4sql")),
        "{requests:#?}"
    );
}

#[test]
fn the_packages_site_is_told_when_a_package_goes_private_and_public() {
    let site = SiteStub::start(200);
    let env = site_env(&site);
    let server = Server::with_env(&as_env(&env));
    let token = prepare(&server);
    publish_real(&server, &token, "gren-lang/url", "5.0.0");
    site.wait_for_more_than(0, Duration::from_secs(5));
    set_private(&server, &token, "gren-lang/url", true);
    let requests = site.wait_for_more_than(1, Duration::from_secs(5));
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_signed_import(&requests[1], "gren-lang/url");
    assert_eq!(
        requests[1].header("X-Gren-Registry-Event"),
        Some("2"),
        "the `private` event"
    );
    set_private(&server, &token, "gren-lang/url", false);
    let requests = site.wait_for_more_than(2, Duration::from_secs(5));
    assert_signed_import(&requests[2], "gren-lang/url");
    assert_eq!(
        requests[2].header("X-Gren-Registry-Event"),
        Some("3"),
        "the `public` event"
    );
}

#[test]
fn notifications_survive_a_site_outage_and_a_restart() {
    let site = SiteStub::start(503);
    let env = site_env(&site);
    let dir = temp_dir();
    let server = Server::start_in(dir.path(), &as_env(&env));
    let token = prepare(&server);
    publish_real(&server, &token, "gren-lang/url", "5.0.0");
    let requests = site.wait_for_more_than(0, Duration::from_secs(5));
    assert_eq!(requests[0].answered, 503);
    assert_signed_import(&requests[0], "gren-lang/url");
    let status = server.stop();
    assert!(status.success(), "{status:?}");
    let seen = site.requests().len();

    // The site is back (and redirects), the registry restarts: the pending
    // notification goes out.
    site.set_status(303);
    let server = Server::start_in(dir.path(), &as_env(&env));
    let requests = site.wait_for_more_than(seen, Duration::from_secs(5));
    let delivered = &requests[seen];
    assert_eq!(delivered.answered, 303);
    assert_signed_import(delivered, "gren-lang/url");

    // A 303 counts as delivered (the next call is the next event, not a
    // retry), and so does a 409 (the import exists already).
    site.set_status(409);
    let token = server.login(ME);
    let seen = site.requests().len();
    publish_real(&server, &token, "gren-lang/core", "6.0.1");
    let requests = site.wait_for_more_than(seen, Duration::from_secs(5));
    assert_signed_import(&requests[seen], "gren-lang/core");
    site.set_status(200);
    let seen = requests.len();
    publish_real(&server, &token, "gren-lang/test-runner-node", "7.0.0");
    let requests = site.wait_for_more_than(seen, Duration::from_secs(5));
    assert_signed_import(&requests[seen], "gren-lang/test-runner-node");
    let url_delivered = requests
        .iter()
        .filter(|request| request.package() == "gren-lang/url" && request.answered != 503)
        .count();
    assert_eq!(
        url_delivered, 1,
        "url is delivered once, after the outage: {requests:#?}"
    );
}

// ---------------------------------------------------------------------------
// 12. Rate limit
// ---------------------------------------------------------------------------

#[test]
fn publishing_is_rate_limited_per_user() {
    let server = Server::with_env(&[("GREN_REGISTRY_PUBLISH_LIMIT_PER_HOUR", "2")]);
    let token = prepare(&server);
    publish_real(&server, &token, "gren-lang/url", "5.0.0");
    publish_real(&server, &token, "gren-lang/url", "6.0.0");
    let third = server.publish(&token, &real("gren-lang/core", "6.0.1"));
    third.assert_error(429, "rate_limited");
    let retry = third.retry_after();
    assert!((1..=3600).contains(&retry), "{retry}");
    server
        .get("/packages/gren-lang/core", None)
        .assert_error(404, "package_not_found");
    // Another user has their own budget.
    let other = server.add_member("gren-lang", &token, "other@example.com", "publish");
    publish_real(&server, &other, "gren-lang/core", "6.0.1");
}

// ---------------------------------------------------------------------------
// 13. Audit
// ---------------------------------------------------------------------------

#[test]
fn publishes_and_revocations_are_audited() {
    let server = Server::start();
    let token = prepare(&server);
    let writer = server.add_member("gren-lang", &token, "writer@example.com", "publish");
    publish_real(&server, &writer, "gren-lang/url", "5.0.0");
    let revoked = server.post_json(
        "/packages/gren-lang/url/5.0.0/revoke",
        &json!({ "reason": "security" }),
        Some(&writer),
    );
    assert_eq!(revoked.status, 200);
    server
        .get("/publishing-identity/gren-lang/audit", None)
        .assert_error(401, "unauthorized");
    server
        .get("/publishing-identity/gren-lang/audit", Some(&writer))
        .assert_error(403, "forbidden");
    let audit = server.get("/publishing-identity/gren-lang/audit", Some(&token));
    assert_eq!(audit.status, 200, "{}", audit.text());
    let entries = audit.json()["entries"].as_array().cloned().expect("entries");
    let published = entries
        .iter()
        .find(|entry| entry["action"] == "published")
        .unwrap_or_else(|| panic!("a published entry: {entries:#?}"));
    assert_eq!(published["package"], "gren-lang/url");
    assert_eq!(published["version"], "5.0.0");
    assert_eq!(published["actor"], "writer@example.com");
    let revoked = entries
        .iter()
        .find(|entry| entry["action"] == "revoked")
        .unwrap_or_else(|| panic!("a revoked entry: {entries:#?}"));
    assert_eq!(revoked["package"], "gren-lang/url");
    assert_eq!(revoked["version"], "5.0.0");
    assert_eq!(revoked["reason"], "security");
    assert_eq!(revoked["actor"], "writer@example.com");
    let seqs: Vec<u64> = entries.iter().map(|entry| entry["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=entries.len() as u64).collect::<Vec<_>>());
    let position = |action: &str| entries.iter().position(|entry| entry["action"] == action).unwrap();
    assert!(position("published") < position("revoked"));
    // The other identity's log has none of it.
    let blaix = server.get("/publishing-identity/blaix/audit", Some(&token)).json();
    assert!(!blaix.to_string().contains("gren-lang/url"), "{blaix}");
}

// ---------------------------------------------------------------------------
// 14. Crash consistency
// ---------------------------------------------------------------------------

#[test]
fn a_killed_server_keeps_what_it_published() {
    let dir = temp_dir();
    let server = Server::start_in(dir.path(), &[]);
    let token = prepare(&server);
    publish_real(&server, &token, "gren-lang/url", "5.0.0");
    publish_real(&server, &token, "gren-lang/url", "6.0.0");
    let revoked = server.post_json(
        "/packages/gren-lang/url/5.0.0/revoke",
        &json!({ "reason": "security" }),
        Some(&token),
    );
    assert_eq!(revoked.status, 200);
    publish_real(&server, &token, "gren-lang/core", "6.0.1");
    let before = event_list(&events(&server, 0));
    assert_eq!(before.len(), 4);
    server.kill();

    let server = Server::start_in(dir.path(), &[]);
    for (name, version) in [("gren-lang/url", "6.0.0"), ("gren-lang/core", "6.0.1")] {
        let download = server.get(&bundle_url(name, version), None);
        assert_eq!(download.status, 200, "{name} {version}: {}", download.text());
        assert!(
            download.body == real(name, version),
            "{name} {version} is byte-identical"
        );
        assert_eq!(
            download.header("etag"),
            Some(format!("\"{}\"", sha256_hex(real(name, version))).as_str())
        );
    }
    server
        .get(&bundle_url("gren-lang/url", "5.0.0"), None)
        .assert_error(410, "revoked");
    let after = event_list(&events(&server, 0));
    assert_eq!(after, before, "the events survive a SIGKILL");
    assert_gap_free(&after);

    // The token and identities survived too, and numbering continues.
    publish_real(&server, &token, "gren-lang/core", "7.0.0");
    publish_ok(&server, &token, &real("gren-lang/url", "6.0.0"), 200);
    let list = event_list(&events(&server, 0));
    assert_gap_free(&list);
    assert_eq!(list.len(), 5);
    assert_eq!(list[4], (5, "publish".into(), "gren-lang/core".into(), "7.0.0".into()));
}

// ---------------------------------------------------------------------------
// 15. Abuse resistance: duplicate keys, bombs, bursts of uploads
// ---------------------------------------------------------------------------

/// The registry's default cap on inflated bundles.
const DEFAULT_MAX_INFLATED: usize = 64 << 20;

#[test]
fn duplicate_keys_anywhere_in_a_bundle_are_refused() {
    let server = Server::start();
    let token = prepare(&server);
    let text = String::from_utf8(gunzip(&real("gren-lang/url", "6.0.0"))).unwrap();
    // Each variant's first value differs from its last: a reader keeping the
    // last validates one document while the registry would serve the other.
    let cases = [
        (
            "the top level",
            format!(
                "{},\"sources\":{{\"Url\":\"module Url exposing (evil)\"}}}}",
                &text[..text.len() - 1]
            ),
            "sources",
        ),
        (
            "the outline",
            text.replacen(r#"{"outline":{"#, r#"{"outline":{"name":"gren-lang/evil","#, 1),
            "outline.name",
        ),
        (
            "the sources",
            text.replacen(r#""sources":{"#, r#""sources":{"Url":"module Url exposing (evil)","#, 1),
            "sources.Url",
        ),
        (
            "the dependencies",
            text.replacen(
                r#""dependencies":{"#,
                r#""dependencies":{"gren-lang/core":"1.0.0 <= v < 2.0.0","#,
                1,
            ),
            "outline.dependencies.gren-lang/core",
        ),
    ];
    for (where_, bundle, path) in &cases {
        assert_ne!(bundle, &text, "{where_}: the variant differs");
        let reply = server.publish(&token, &gzip(bundle.as_bytes()));
        reply.assert_error(400, "invalid_bundle");
        let json = reply.json();
        assert_eq!(json["field"], *path, "{where_}: {json}");
        assert!(
            json["message"].as_str().unwrap().contains("more than once"),
            "{where_}: {json}"
        );
    }
    server
        .get("/packages/gren-lang/url", None)
        .assert_error(404, "package_not_found");
    publish_real(&server, &token, "gren-lang/url", "6.0.0");
}

#[test]
fn a_strangers_gzip_bomb_is_refused_from_its_outline_before_it_is_inflated() {
    let server = Server::start();
    prepare(&server);
    let stranger = server.login("stranger@example.com");
    let peak_before = server.peak_rss_kib();
    // Inflates to just under the cap: only the owner and role checks can stop it early.
    let not_theirs = inflating("gren-lang/bomb", DEFAULT_MAX_INFLATED - 1024);
    let nobodys = inflating("nobody-at-all/bomb", DEFAULT_MAX_INFLATED - 1024);
    assert!(not_theirs.len() < 100 << 10, "{} bytes", not_theirs.len());
    server.publish(&stranger, &not_theirs).assert_error(403, "forbidden");
    server
        .publish(&stranger, &nobodys)
        .assert_error(404, "identity_not_found");
    let grown = server.peak_rss_kib().saturating_sub(peak_before);
    assert!(
        grown < 16 * 1024,
        "the sources were inflated: the peak RSS grew by {grown} KiB"
    );
}

#[test]
fn a_user_at_the_publish_limit_is_refused_before_sending_the_body() {
    let server = Server::with_env(&[("GREN_REGISTRY_PUBLISH_LIMIT_PER_HOUR", "1")]);
    let token = prepare(&server);
    publish_real(&server, &token, "gren-lang/url", "6.0.0");
    let mut conn = server.conn();
    let head = format!(
        "POST /packages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/gzip\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n"
    );
    conn.write(head.as_bytes()).unwrap();
    conn.stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    // No `100 Continue` first: the answer comes before the body is asked for.
    let reply = conn.read_response(false).expect("an answer before the body");
    reply.assert_error(429, "rate_limited");
    assert!(reply.header("retry-after").is_some());
}

#[test]
fn uploads_over_the_body_budget_wait_then_get_503_and_use_up_no_publish() {
    let server = Server::with_env(&[
        ("GREN_REGISTRY_UPLOAD_BUDGET_BYTES", "145000"),
        ("GREN_REGISTRY_PUBLISH_LIMIT_PER_HOUR", "2"),
    ]);
    let token = prepare(&server);
    // A slow upload holds most of the budget while its body arrives.
    let mut slow = server.conn();
    let head = format!(
        "POST /packages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/gzip\r\nContent-Length: 140000\r\nExpect: 100-continue\r\n\r\n"
    );
    slow.write(head.as_bytes()).unwrap();
    assert_eq!(slow.read_response(false).unwrap().status, 100, "its share is reserved");

    let started = Instant::now();
    let busy = server.publish(&token, &real("gren-lang/url", "6.0.0"));
    busy.assert_error(503, "server_busy");
    assert!(busy.header("retry-after").is_some());
    assert!(started.elapsed() >= Duration::from_secs(2), "it waited briefly first");

    slow.write(&vec![b'x'; 140000]).unwrap();
    slow.read_response(false).unwrap().assert_error(400, "invalid_bundle");
    // The slow upload counted, the refused one did not: one publish is left.
    publish_real(&server, &token, "gren-lang/url", "6.0.0");
    server
        .publish(&token, &real("gren-lang/core", "7.0.0"))
        .assert_error(429, "rate_limited");
}

#[test]
fn thirty_two_concurrent_worst_case_uploads_keep_the_peak_memory_under_300_mb() {
    let server = Arc::new(Server::start());
    let token = prepare(&server);
    let bundle = Arc::new(inflating("gren-lang/bomb", DEFAULT_MAX_INFLATED + 1));
    let uploads: Vec<JoinHandle<u16>> = (0..32)
        .map(|_| {
            let (server, bundle, token) = (server.clone(), bundle.clone(), token.clone());
            std::thread::spawn(move || {
                // A debug build inflating 64 MiB on a machine running the
                // whole suite can take longer than a client's usual 20 s.
                let conn = server.conn();
                conn.stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
                let bearer = format!("Bearer {token}");
                let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/gzip")];
                send_request(conn, &server.addr.to_string(), "POST", "/packages", &headers, &bundle).status
            })
        })
        .collect();
    let statuses: Vec<u16> = uploads.into_iter().map(|upload| upload.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|status| [413, 503].contains(status)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&413),
        "some were inflated up to the cap: {statuses:?}"
    );
    let peak = server.peak_rss_kib();
    println!("peak RSS {} MB; answers {statuses:?}", peak / 1024);
    assert!(peak < 300 * 1024, "peak RSS {} MB", peak / 1024);
    assert!(server.is_alive());
    assert_eq!(server.get("/health", None).status, 200);
}

// ---------------------------------------------------------------------------
// 16. File-name collisions
// ---------------------------------------------------------------------------

#[test]
fn a_new_package_whose_file_name_another_has_is_refused() {
    let server = Server::start();
    let token = server.login(ME);
    for identity in ["acme", "acme-tools"] {
        create_identity(&server, &token, identity);
    }
    publish_ok(&server, &token, &synthetic("acme/tools-x", "1.0.0", "a"), 201);
    // acme/tools-x and acme-tools/x are both acme_tools_x__1_0_0.pkg.gz to the compiler.
    for version in ["1.0.0", "2.0.0"] {
        let reply = server.publish(&token, &synthetic("acme-tools/x", version, "b"));
        reply.assert_error(409, "package_name_collision");
        assert!(
            reply.text().contains("another package") && !reply.text().contains("acme/tools-x"),
            "the other package is not named, public or not: {}",
            reply.text()
        );
    }
    server
        .get("/packages/acme-tools/x", None)
        .assert_error(404, "package_not_found");
    // The package itself goes on publishing.
    publish_ok(&server, &token, &synthetic("acme/tools-x", "1.0.1", "a"), 201);

    // A private package is not named to someone who cannot see it.
    let private = rewrite(&synthetic("acme/tools-y", "1.0.0", "a"), |bundle| {
        bundle["outline"]["private"] = json!(true);
    });
    publish_ok(&server, &token, &private, 201);
    let other = server.add_member("acme-tools", &token, "other@example.com", "publish");
    let reply = server.publish(&other, &synthetic("acme-tools/y", "1.0.0", "b"));
    reply.assert_error(409, "package_name_collision");
    assert!(!reply.text().contains("tools-y"), "{}", reply.text());
}

/// A registry where `me@example.com` published `acme/tools-x` (private or
/// not) and `other@example.com` may publish in `acme-tools` only; other's token.
fn twin_of_acme_tools_x(private: bool, env: &[(&str, &str)]) -> (Server, String) {
    let server = Server::with_env(env);
    let token = server.login(ME);
    for identity in ["acme", "acme-tools"] {
        create_identity(&server, &token, identity);
    }
    let twin = rewrite(&synthetic("acme/tools-x", "1.0.0", "a"), |bundle| {
        bundle["outline"]["private"] = json!(private);
    });
    publish_ok(&server, &token, &twin, 201);
    let other = server.add_member("acme-tools", &token, "other@example.com", "publish");
    (server, other)
}

#[test]
fn a_private_twin_is_refused_exactly_as_a_public_twin_is() {
    let answers: Vec<Reply> = [false, true]
        .into_iter()
        .map(|private| {
            let (server, other) = twin_of_acme_tools_x(private, &[]);
            let reply = server.publish(&other, &synthetic("acme-tools/x", "1.0.0", "b"));
            reply.assert_error(409, "package_name_collision");
            reply
        })
        .collect();
    let (public, private) = (&answers[0], &answers[1]);
    assert_eq!(private.body, public.body, "{} / {}", private.text(), public.text());
    let without_date = |reply: &Reply| -> Vec<(String, String)> {
        reply
            .headers
            .iter()
            .filter(|(name, _)| name != "date")
            .cloned()
            .collect()
    };
    assert_eq!(without_date(private), without_date(public));
    assert_eq!(
        public.json().as_object().unwrap().keys().collect::<Vec<_>>(),
        ["error", "message"],
        "no member tells the two apart: {}",
        public.text()
    );
}

#[test]
fn file_name_refusals_are_limited_per_user_and_then_every_new_name_is_429() {
    let (server, other) = twin_of_acme_tools_x(true, &[("GREN_REGISTRY_IDENTITY_LIMIT_PER_DAY", "2")]);
    publish_ok(&server, &other, &synthetic("acme-tools/own", "1.0.0", "b"), 201);
    for _ in 0..2 {
        server
            .publish(&other, &synthetic("acme-tools/x", "1.0.0", "b"))
            .assert_error(409, "package_name_collision");
    }
    // Used up: a new name is refused whether it collides or not, so the
    // answer no longer tells.
    for name in ["acme-tools/x", "acme-tools/free"] {
        let reply = server.publish(&other, &synthetic(name, "1.0.0", "b"));
        reply.assert_error(429, "rate_limited");
        assert!(
            (86_000..=86_400).contains(&reply.retry_after()),
            "a day: {}",
            reply.retry_after()
        );
    }
    server
        .get("/packages/acme-tools/free", None)
        .assert_error(404, "package_not_found");
    // New versions of existing packages, and other users, go on.
    publish_ok(&server, &other, &synthetic("acme-tools/own", "1.0.1", "b"), 201);
    let me = server.login(ME);
    publish_ok(&server, &me, &synthetic("acme-tools/free", "1.0.0", "a"), 201);
}

// ---------------------------------------------------------------------------
// One record a version (data format 3)
// ---------------------------------------------------------------------------

/// Every answer about `names` a reader can ask for (as `token`'s user, and
/// anonymously): the listings, each package, each version, its bundle's
/// hash, latest and previous, the event log, and each identity's audit log.
fn everything_read(server: &Server, token: &str, names: &[&str]) -> BTreeMap<String, Value> {
    let mut answers = BTreeMap::new();
    let mut get = |path: String, as_member: bool| {
        let reply = server.get(&path, as_member.then_some(token));
        let body = if path.ends_with("/bundle") && reply.status == 200 {
            json!(sha256_hex(&reply.body))
        } else {
            reply.json()
        };
        answers.insert(format!("{path} (member: {as_member})"), json!([reply.status, body]));
    };
    for as_member in [false, true] {
        get("/packages".into(), as_member);
        get("/events?since=0&limit=1000".into(), as_member);
        for name in names {
            get(format!("/packages/{name}"), as_member);
            get(format!("/packages/{name}/latest"), as_member);
            for version in ["1.0.0", "1.0.1", "1.1.0", "1.1.1", "2.0.0"] {
                for below in ["", "/bundle", "/previous"] {
                    get(format!("/packages/{name}/{version}{below}"), as_member);
                }
            }
        }
    }
    get("/publishing-identity/blaix/audit".into(), true);
    answers
}

#[test]
fn publishes_revocations_and_privacy_changes_read_the_same_after_a_restart() {
    let dir = temp_dir();
    let server = Server::start_in(dir.path(), &[]);
    let token = prepare(&server);
    let (open, hidden) = ("blaix/open", "blaix/hidden");
    for version in ["1.0.0", "1.0.1", "1.1.0"] {
        publish_ok(&server, &token, &synthetic(open, version, "a"), 201);
    }
    revoke_version(&server, &token, open, "1.0.1");
    publish_private(&server, &token, "gren-lang/url", "5.0.0");
    publish_ok(&server, &token, &synthetic(hidden, "1.0.0", "b"), 201);
    set_private(&server, &token, hidden, true);
    // While private: a revocation and a publish, announced on going public.
    revoke_version(&server, &token, hidden, "1.0.0");
    publish_ok(&server, &token, &synthetic(hidden, "1.0.1", "b"), 201);
    set_private(&server, &token, hidden, false);
    set_private(&server, &token, open, true);
    let names = [open, hidden, "gren-lang/url"];
    let before = everything_read(&server, &token, &names);
    server.stop();

    // On disk: one record a version, package.json keeps no versions.
    let package = dir.path().join("packages/blaix/open");
    let mut files: Vec<String> = std::fs::read_dir(&package)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "1.0.0.json",
            "1.0.1.json",
            "1.1.0.json",
            "blaix_open__1_0_0.pkg.gz",
            "blaix_open__1_1_0.pkg.gz",
            "package.json"
        ]
    );
    let record = read_json(&package.join("package.json"));
    assert!(record.get("versions").is_none(), "{record}");
    assert_eq!(
        record["events"].as_array().unwrap().len(),
        1,
        "its privacy change: {record}"
    );
    let revoked = read_json(&package.join("1.0.1.json"));
    assert_eq!(revoked["version"]["revoked"]["reason"], "broken", "{revoked}");
    let kinds: Vec<&str> = revoked["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["publish", "revoke"], "{revoked}");
    assert_eq!(revoked["outline"]["version"], "1.0.1", "{revoked}");

    let server = Server::start_in(dir.path(), &[]);
    let after = everything_read(&server, &token, &names);
    for (request, answer) in &before {
        assert_eq!(Some(answer), after.get(request), "{request}");
    }
    assert_eq!(before.len(), after.len());
    server.stop();
    let fsck = crate::common::operator::admin(dir.path(), &["fsck"]).success();
    assert_eq!(fsck.stdout.lines().last(), Some("clean"), "{}", fsck.stdout);
}

#[test]
fn a_publish_writes_its_own_version_record_and_rewrites_no_other() {
    use std::os::unix::fs::MetadataExt;
    let dir = temp_dir();
    let server = Server::start_in(dir.path(), &[]);
    let token = prepare(&server);
    let name = "blaix/growing";
    for version in ["1.0.0", "1.0.1"] {
        publish_ok(&server, &token, &synthetic(name, version, "a"), 201);
    }
    let package = dir.path().join("packages/blaix/growing");
    // A rewrite is a rename of a new file over the old: a new inode.
    let inodes = |files: &[&str]| -> Vec<u64> {
        files
            .iter()
            .map(|file| std::fs::metadata(package.join(file)).unwrap().ino())
            .collect()
    };
    let untouched = ["package.json", "1.0.0.json", "1.0.1.json"];
    let before = inodes(&untouched);
    publish_ok(&server, &token, &synthetic(name, "1.0.2", "a"), 201);
    assert_eq!(inodes(&untouched), before, "no other record was written");
    assert!(package.join("1.0.2.json").exists());
    revoke_version(&server, &token, name, "1.0.0");
    let after_revoke = inodes(&untouched);
    assert_eq!(after_revoke[0], before[0], "package.json stays");
    assert_ne!(after_revoke[1], before[1], "the revoked version's record is rewritten");
    assert_eq!(after_revoke[2], before[2], "and no other");
    server.stop();
}
