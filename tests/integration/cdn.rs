//! The registry's side of serving through a shared cache, without one:
//! the cache headers of every read (docs/API.md, "Caching") and the purges
//! each cache of GREN_REGISTRY_CACHE_PURGE_URLS gets, checked against local
//! stub caches. varnish.rs runs the real Varnish in front.

use crate::common::bundles::{bundle_file_name, real_bundle, sha256_hex};
use crate::common::*;
use serde_json::json;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const PURGE_SECRET: &str = "purge-secret-0123456789";

/// Publishes the real bundle of `name` `version`.
#[track_caller]
pub fn publish_real(server: &Server, token: &str, name: &str, version: &str) {
    let reply = server.publish(token, &real_bundle(&bundle_file_name(name, version)));
    assert_eq!(reply.status, 201, "publish {name} {version}: {}", reply.text());
}

/// A user with the identity `gren-lang`; returns their token.
pub fn gren_lang_admin(server: &Server) -> String {
    let token = server.login("me@example.com");
    let created = server.post_json("/publishing-identity", &json!({ "name": "gren-lang" }), Some(&token));
    assert_eq!(created.status, 200, "{}", created.text());
    token
}

/// Publishes gren-lang/url 5.0.0 as a private package.
pub fn publish_private_url(server: &Server, token: &str) {
    let private = server.send(
        "POST",
        "/packages?private=true",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/gzip"),
        ],
        &real_bundle("gren_lang_url__5_0_0.pkg.gz"),
    );
    assert_eq!(private.status, 201, "{}", private.text());
}

/// Revokes a version, with `token`.
#[track_caller]
pub fn revoke(server: &Server, token: &str, name: &str, version: &str) {
    let path = format!("/packages/{name}/{version}/revoke");
    let reply = server.post_json(&path, &json!({ "reason": "broken" }), Some(token));
    assert_eq!(reply.status, 200, "revoke {name} {version}: {}", reply.text());
}

/// Waits until the purge cursor of the cache at `purge_url` names event
/// `seq`: the cache answered the purge of every event up to it.
#[track_caller]
pub fn wait_for_purges_up_to(server: &Server, purge_url: &str, seq: u64) {
    let cursor = server
        .data_dir
        .join(format!("outbox/purge/{}.json", sha256_hex(purge_url)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while read_json(&cursor)["delivered"] != seq {
        assert!(Instant::now() < deadline, "the cache took no purge of event {seq}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every read of the package `gren-lang/core` (6.0.1 and 7.0.0 published),
/// and the listings.
const READS: [&str; 8] = [
    "/packages",
    "/packages?gren=0.6.3",
    "/events",
    "/packages/gren-lang/core",
    "/packages/gren-lang/core/latest",
    "/packages/gren-lang/core/7.0.0",
    "/packages/gren-lang/core/7.0.0/bundle",
    "/packages/gren-lang/core/7.0.0/previous",
];

fn get_with(server: &Server, path: &str, headers: &[(&str, &str)]) -> Reply {
    server.send("GET", path, headers, b"")
}

/// A day in shared caches, which the registry purges; a minute in clients.
const PURGED: &str = "public, max-age=60, s-maxage=86400";
/// A minute everywhere: no cache is purged.
const UNPURGED: &str = "public, max-age=60";

#[test]
fn without_purge_urls_public_answers_live_a_minute_in_every_cache_with_a_strong_etag_and_their_package_key() {
    assert_public_answers(&Server::start(), UNPURGED);
}

#[test]
fn with_purge_urls_public_answers_live_a_day_in_shared_caches_and_a_minute_in_clients() {
    let cache = CacheStub::start(200);
    let url = cache.url();
    let server = Server::with_env(&[
        ("GREN_REGISTRY_CACHE_PURGE_URLS", url.as_str()),
        ("GREN_REGISTRY_CACHE_PURGE_SECRET", PURGE_SECRET),
    ]);
    assert_public_answers(&server, PURGED);
}

/// Every public read of `server` (which this publishes to) says
/// `Cache-Control: <public>`, carries its package's key and a strong
/// `ETag`, and revalidates; what is not public is not shared.
fn assert_public_answers(server: &Server, public: &str) {
    let token = gren_lang_admin(server);
    publish_real(server, &token, "gren-lang/core", "6.0.1");
    publish_real(server, &token, "gren-lang/core", "7.0.0");
    publish_real(server, &token, "gren-lang/url", "5.0.0");
    revoke(server, &token, "gren-lang/url", "5.0.0");
    let missing = ["/packages/gren-lang/nothing", "/packages/gren-lang/url/5.0.0/bundle"];
    for path in READS.iter().chain(&missing) {
        let reply = server.get(path, None);
        let key = if path.starts_with("/packages/") {
            format!("p:{}", path.split('/').skip(2).take(2).collect::<Vec<_>>().join("/"))
        } else {
            "listings".to_string()
        };
        assert_eq!(reply.header("cache-control"), Some(public), "{path}");
        assert_eq!(reply.header("surrogate-key"), Some(key.as_str()), "{path}");
        assert_eq!(reply.header("vary"), Some("Authorization"), "{path}");
        let etag = reply.header("etag").unwrap_or_else(|| panic!("{path} has no ETag"));
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "{path}: a strong ETag, not {etag}"
        );
        if missing.contains(path) {
            assert!([404, 410].contains(&reply.status), "{path}: {}", reply.status);
            continue;
        }
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_eq!(
            etag,
            format!("\"{}\"", sha256_hex(&reply.body)),
            "{path}: the body's SHA-256"
        );
        let again = get_with(server, path, &[("If-None-Match", etag)]);
        assert_eq!((again.status, again.body.len()), (304, 0), "{path}");
        for header in ["etag", "cache-control", "surrogate-key", "vary"] {
            assert_eq!(
                again.header(header),
                reply.header(header),
                "{path}: {header} of the 304"
            );
        }
        let other = get_with(server, path, &[("If-None-Match", "\"0000\"")]);
        assert_eq!(other.status, 200, "{path}: another tag gets the answer");
    }
    // A full page of the log never changes; git and sessions are not shared.
    let full = server.get("/events?since=0&limit=2", None);
    assert_eq!(
        full.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    for path in ["/health", "/user", "/session/confirm?token=x"] {
        let cache = server.get(path, None).header("cache-control").map(str::to_string);
        assert!(
            cache.as_deref().is_some_and(|cache| cache.contains("no-store")),
            "{path}: {cache:?}"
        );
    }
    let refs = server.get("/git/gren-lang/core.git/info/refs?service=git-upload-pack", None);
    assert!(
        refs.header("surrogate-key").is_none() && refs.header("cache-control").is_some_and(|c| !c.contains("public"))
    );
}

#[test]
fn answers_that_depend_on_who_asks_are_private_no_store_and_untagged() {
    let server = Server::start();
    let token = gren_lang_admin(&server);
    publish_real(&server, &token, "gren-lang/core", "6.0.1");
    publish_real(&server, &token, "gren-lang/core", "7.0.0");
    publish_private_url(&server, &token);
    let private_reads = [
        "/packages/gren-lang/url",
        "/packages/gren-lang/url/5.0.0/bundle",
        "/packages/gren-lang/url/latest",
    ];
    let bearer = format!("Bearer {token}");
    let mut asked: Vec<(&str, &str)> = READS
        .iter()
        .chain(&private_reads)
        .map(|path| (*path, bearer.as_str()))
        .collect();
    asked.push(("/user", &bearer));
    // Even a token the registry refuses: the 401 is not everyone's answer.
    asked.push((
        "/packages",
        "Bearer gren_0000000000000000000000000000000000000000000000",
    ));
    for (path, auth) in asked {
        let reply = get_with(&server, path, &[("Authorization", auth)]);
        assert!([200, 401].contains(&reply.status), "{path}: {}", reply.text());
        assert_eq!(
            reply.header("cache-control"),
            Some("private, no-store"),
            "{path} with {auth:.12}…"
        );
        assert!(
            reply.header("surrogate-key").is_none(),
            "{path}: no key on a private answer"
        );
    }
    // Anonymous: the private package is not there, the same for everyone.
    for path in private_reads {
        let reply = server.get(path, None);
        assert_eq!(reply.status, 404, "{path}");
        assert!(
            reply.header("cache-control").unwrap_or_default().starts_with("public"),
            "{path}"
        );
    }
}

/// A stub cache's purge endpoint: records each purge, answers `status`.
struct CacheStub {
    stub: StubServer,
    purges: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

impl CacheStub {
    fn start(status: u16) -> CacheStub {
        let purges: Arc<Mutex<Vec<Received>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(status));
        let stub = {
            let (purges, status) = (purges.clone(), status.clone());
            StubServer::start("cache stub", move |received| {
                let answer = status.load(Ordering::SeqCst);
                if answer == 200 {
                    purges.lock().unwrap().push(received);
                }
                tiny_http::Response::from_string("").with_status_code(answer)
            })
        };
        CacheStub { stub, purges, status }
    }

    fn url(&self) -> String {
        format!("{}/.gren-registry/purge", self.stub.url())
    }

    /// The keys of each purge taken, waiting up to 10 s for `count` of them.
    fn keys(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let purges = self.purges.lock().unwrap().clone();
            if purges.len() >= count || Instant::now() > deadline {
                for purge in &purges {
                    assert_eq!(
                        (purge.method.as_str(), purge.path.as_str()),
                        ("POST", "/.gren-registry/purge")
                    );
                    assert_eq!(purge.header("x-purge-secret"), Some(PURGE_SECRET));
                }
                return purges
                    .iter()
                    .map(|purge| purge.header("surrogate-key").unwrap_or("").to_string())
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn each_cache_gets_every_purge_in_order_and_one_that_was_down_gets_them_when_it_is_back() {
    let (up, down) = (CacheStub::start(200), CacheStub::start(503));
    let urls = format!("{},{}", up.url(), down.url());
    // Each purge once: this counts them (repeats are tested below).
    let env = [
        ("GREN_REGISTRY_CACHE_PURGE_URLS", urls.as_str()),
        ("GREN_REGISTRY_CACHE_PURGE_SECRET", PURGE_SECRET),
        ("GREN_REGISTRY_CACHE_PURGE_REPEAT", "0"),
    ];
    let server = Server::with_env(&env);
    let token = gren_lang_admin(&server);
    publish_real(&server, &token, "gren-lang/core", "7.0.0");
    let core = "listings p:gren-lang/core";
    assert_eq!(up.keys(1), [core], "one purge for the publish");
    publish_real(&server, &token, "gren-lang/url", "5.0.0");
    assert_eq!(up.keys(2), [core, "listings p:gren-lang/url"]);
    let private = server.patch_json("/packages/gren-lang/core", &json!({ "private": true }), Some(&token));
    assert_eq!(private.status, 200, "{}", private.text());
    assert_eq!(
        up.keys(3).last().map(String::as_str),
        Some(core),
        "a privacy change purges"
    );
    assert!(down.keys(0).is_empty());
    assert!(
        server.log().contains("retrying"),
        "the refusals are logged: {}",
        server.log()
    );

    // While down, the cache keeps its own cursor; when back, it gets what
    // it missed, in order, in one batch (3 events, 2 packages).
    let cursor_of = |url: &str| server.data_dir.join(format!("outbox/purge/{}.json", sha256_hex(url)));
    assert_eq!(
        read_json(&cursor_of(&down.url())),
        json!({ "delivered": 0, "url": down.url() })
    );
    down.status.store(200, Ordering::SeqCst);
    assert_eq!(down.keys(1), ["listings p:gren-lang/core p:gren-lang/url"]);
    // The cursor moves once the cache took the purge.
    wait_for_purges_up_to(&server, &down.url(), 3);
    assert_eq!(
        read_json(&cursor_of(&up.url())),
        json!({ "delivered": 3, "url": up.url() })
    );
    let outbox = crate::common::operator::admin_json(&server.data_dir, &["outbox"])
        .success()
        .json();
    assert_eq!(outbox["caches"].as_array().map(Vec::len), Some(2), "{outbox}");
    let (_, log) = server.stop_with_log();
    assert!(!log.contains(PURGE_SECRET), "the secret is never logged");
}

/// A cache's cursor says which purges it still needs: one that cannot be
/// read or written at start-up would have the cache start over from event
/// 1 (every purge of the log again) or lose its place; start-up refuses
/// instead, naming the file, as it does for every unreadable record.
#[test]
fn a_purge_cursor_that_cannot_be_read_or_written_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let server = Server::start_in(dir.path(), &[]);
        let token = gren_lang_admin(&server);
        publish_real(&server, &token, "gren-lang/core", "6.0.1");
        publish_real(&server, &token, "gren-lang/core", "7.0.0");
        server.stop();
    }
    let cache = CacheStub::start(200);
    let url = cache.url();
    let cursor = format!("outbox/purge/{}.json", sha256_hex(&url));
    let env = [
        ("GREN_REGISTRY_CACHE_PURGE_URLS", url.as_str()),
        ("GREN_REGISTRY_CACHE_PURGE_SECRET", PURGE_SECRET),
        ("GREN_REGISTRY_CACHE_PURGE_REPEAT", "0"),
    ];
    let refused = |extra: &[(&str, &str)], what: &str| {
        let env: Vec<(&str, &str)> = env.iter().chain(extra).copied().collect();
        let failure = Server::try_start_in(dir.path(), &env)
            .err()
            .unwrap_or_else(|| panic!("the registry started with {what}"));
        assert!(
            failure.log.contains(&cursor),
            "{what}: the log names {cursor}: {}",
            failure.log
        );
    };

    // The cache is new: its cursor, at the log's head, cannot be written.
    refused(
        &[("GREN_REGISTRY_TEST_FAULTS", "write:EIO@outbox/purge")],
        "an unwritable cursor",
    );
    assert!(cache.keys(0).is_empty(), "no purge of the log's old events");

    // A cursor that cannot be read.
    std::fs::create_dir_all(dir.path().join("outbox/purge")).unwrap();
    std::fs::write(dir.path().join(&cursor), "{\"delivered\": ").unwrap();
    refused(&[], "a corrupt cursor");
    crate::common::operator::admin(dir.path(), &["fsck"])
        .failure()
        .assert_stdout_has(&format!("the purge cursor {cursor} cannot be read"));

    // Once it reads, the cache is told only of what comes next.
    std::fs::write(
        dir.path().join(&cursor),
        serde_json::to_vec(&json!({ "delivered": 2, "url": url })).unwrap(),
    )
    .unwrap();
    let server = Server::start_in(dir.path(), &env);
    let token = server.login("me@example.com");
    publish_real(&server, &token, "gren-lang/url", "5.0.0");
    assert_eq!(cache.keys(1), ["listings p:gren-lang/url"]);
}

/// Each purge goes again GREN_REGISTRY_CACHE_PURGE_REPEAT seconds later
/// (an answer that crossed it on its way to the cache is dropped then:
/// varnish.rs shows the race), and only once with 0.
#[test]
fn each_purge_is_sent_again_after_the_repeat_delay_and_only_once_without_one() {
    for (repeat, purges) in [("1", 2), ("0", 1)] {
        let cache = CacheStub::start(200);
        let url = cache.url();
        let server = Server::with_env(&[
            ("GREN_REGISTRY_CACHE_PURGE_URLS", url.as_str()),
            ("GREN_REGISTRY_CACHE_PURGE_SECRET", PURGE_SECRET),
            ("GREN_REGISTRY_CACHE_PURGE_REPEAT", repeat),
        ]);
        let token = gren_lang_admin(&server);
        publish_real(&server, &token, "gren-lang/core", "7.0.0");
        let core = "listings p:gren-lang/core";
        assert_eq!(cache.keys(1), [core], "the purge");
        let first = Instant::now();
        if purges == 2 {
            assert_eq!(cache.keys(2), [core, core], "and its repeat");
            let after = first.elapsed();
            assert!(after >= Duration::from_millis(800), "repeated {after:?} after it");
        } else {
            std::thread::sleep(Duration::from_millis(1500));
            assert_eq!(cache.keys(1), [core], "no repeat");
        }
    }
}
