//! The documented edge (docs/deploy/varnish.vcl), run for real: varnishd in
//! front of the real binary on loopback ports, with a temporary working
//! directory, the registry purging it. Needs varnishd and a C compiler for
//! the VCL (.ci/run installs the Debian package `varnish`).

use crate::cdn::{PURGE_SECRET, gren_lang_admin, publish_private_url, publish_real, revoke, wait_for_purges_up_to};
use crate::common::bundles::real_bundle;
use crate::common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const PURGE_PATH: &str = "/.gren-registry/purge";

pub(crate) fn varnishd_or_skip() -> Option<PathBuf> {
    let found = ["/usr/sbin/varnishd", "/usr/bin/varnishd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have varnishd: .ci/run installs it"
        );
        eprintln!("SKIPPED: varnishd is not installed (apt-get install varnish, as .ci/run does)");
    }
    found
}

pub(crate) struct Varnish {
    child: Child,
    pub(crate) addr: SocketAddr,
    /// The VCL and varnishd's working directory, removed with it.
    _dir: tempfile::TempDir,
}

impl Drop for Varnish {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs docs/deploy/varnish.vcl on `port` with only the backend's port and
/// the secret replaced, unjailed (the temporary directory is the test's).
pub(crate) fn start_varnish(binary: &Path, port: u16, backend: SocketAddr) -> Varnish {
    let dir = tempfile::tempdir().unwrap();
    let documented = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploy/varnish.vcl")).unwrap();
    let vcl = documented
        .replace(".port = \"3000\";", &format!(".port = \"{}\";", backend.port()))
        .replace("CHANGE-ME-to-GREN_REGISTRY_CACHE_PURGE_SECRET", PURGE_SECRET);
    assert!(
        vcl.contains(PURGE_SECRET) && !vcl.contains("3000"),
        "the documented VCL changed shape"
    );
    let vcl_path = dir.path().join("registry.vcl");
    std::fs::write(&vcl_path, vcl).unwrap();
    let child = Command::new(binary)
        .args(["-F", "-j", "none", "-s", "malloc,64m", "-a"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-n")
        .arg(dir.path().join("work"))
        .arg("-f")
        .arg(&vcl_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let varnish = Varnish {
        child,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(varnish.addr).is_err() {
        assert!(Instant::now() < deadline, "varnishd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    varnish
}

/// A request to the edge at `edge`.
fn send_to(edge: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let stream = TcpStream::connect(edge).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    send_request(
        HttpConn::new(stream),
        "registry.example.org",
        method,
        path,
        headers,
        body,
    )
}

impl Varnish {
    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        send_to(self.addr, method, path, headers, body)
    }

    fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let bearer = token.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = bearer.iter().map(|bearer| ("Authorization", bearer.as_str())).collect();
        self.send("GET", path, &headers, b"")
    }

    /// Asks for `path` until the answer's status is `status`; how long that took.
    #[track_caller]
    fn time_until(&self, path: &str, status: u16, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let reply = self.get(path, None);
            if reply.status == status {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "{path} still answers {} after {within:?}",
                reply.status
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn x_cache(reply: &Reply) -> &str {
    reply.header("x-cache").unwrap_or("none")
}

/// A registry purging `purge_port` (where the edge, or the way to it, will
/// listen), and varnishd in front of it on `edge_port`.
fn registry_behind_varnish(binary: &Path, edge_port: u16, purge_port: u16) -> (Server, Varnish) {
    let purge_url = format!("http://127.0.0.1:{purge_port}{PURGE_PATH}");
    // Each purge once: these tests count hits, and a repeat would drop
    // objects at moments they do not choose (the repeat's own test is
    // an_answer_that_reaches_varnish_after_its_purge_...).
    let server = Server::with_env(&[
        ("GREN_REGISTRY_TRUSTED_PROXIES", "127.0.0.1"),
        ("GREN_REGISTRY_CACHE_PURGE_URLS", &purge_url),
        ("GREN_REGISTRY_CACHE_PURGE_SECRET", PURGE_SECRET),
        ("GREN_REGISTRY_CACHE_PURGE_REPEAT", "0"),
    ]);
    let varnish = start_varnish(binary, edge_port, server.addr);
    (server, varnish)
}

#[test]
fn through_varnish_a_second_download_is_a_hit_and_changes_reach_the_edge_within_a_second() {
    let Some(binary) = varnishd_or_skip() else { return };
    let port = free_port();
    let (server, edge) = registry_behind_varnish(&binary, port, port);
    let token = gren_lang_admin(&server);
    publish_real(&server, &token, "gren-lang/core", "6.0.1");
    publish_real(&server, &token, "gren-lang/core", "7.0.0");
    let bundle = "/packages/gren-lang/core/7.0.0/bundle";
    // The publishes' purges reach the edge before it holds anything.
    std::thread::sleep(Duration::from_millis(300));
    let first = edge.get(bundle, None);
    assert_eq!((first.status, x_cache(&first)), (200, "MISS"), "{}", first.text());
    let second = edge.get(bundle, None);
    assert_eq!((second.status, x_cache(&second)), (200, "HIT"));
    assert!(
        second.body == real_bundle("gren_lang_core__7_0_0.pkg.gz"),
        "the bundle, byte-identical"
    );
    assert!(
        second.header("surrogate-key").is_none(),
        "the edge keeps its tags to itself"
    );
    assert_the_edge_keeps_its_lifetime_to_itself(&server, &edge, bundle);
    let latest = "/packages/gren-lang/core/latest";
    assert_eq!(edge.get(latest, None).json()["version"], "7.0.0");
    assert_eq!(x_cache(&edge.get(latest, None)), "HIT");

    // A revoke, sent through the edge (passed, with its token): the edge
    // answers 410 within a second of the revoke's answer.
    let bearer = format!("Bearer {token}");
    let revoked = edge.send(
        "POST",
        "/packages/gren-lang/core/7.0.0/revoke",
        &[("Authorization", &bearer), ("Content-Type", "application/json")],
        br#"{"reason": "broken"}"#,
    );
    assert_eq!((revoked.status, x_cache(&revoked)), (200, "PASS"), "{}", revoked.text());
    let took = edge.time_until(bundle, 410, Duration::from_secs(1));
    eprintln!("from the revoke's answer to the edge's 410: {took:?}");
    assert_eq!(edge.get(latest, None).json()["version"], "6.0.1");
    assert_eq!(x_cache(&edge.get(bundle, None)), "HIT", "the 410 is cached too");

    // A new version shows in `latest` through the edge within a second.
    let node = "/packages/gren-lang/node/latest";
    publish_real(&server, &token, "gren-lang/node", "6.0.0");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(edge.get(node, None).json()["version"], "6.0.0");
    assert_eq!(x_cache(&edge.get(node, None)), "HIT");
    publish_real(&server, &token, "gren-lang/node", "6.1.0");
    let started = Instant::now();
    while edge.get(node, None).json()["version"] != "6.1.0" {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "6.1.0 is not latest at the edge after a second"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_the_edge_takes_purges_only_with_the_secret(&edge);
    assert_git_and_posts_pass(&edge, &token);
}

/// The registry gives the edge, which it purges, a day (`s-maxage`); the
/// edge passes on only the minute clients get: a cache behind it (a CDN,
/// a company's proxy) is purged by nobody. Checked on a miss, a hit, a
/// listing and a `304`.
fn assert_the_edge_keeps_its_lifetime_to_itself(server: &Server, edge: &Varnish, bundle: &str) {
    let purged = "public, max-age=60, s-maxage=86400";
    assert_eq!(server.get(bundle, None).header("cache-control"), Some(purged));
    let listing = "/packages?gren=0.6.3";
    let fresh = edge.get(listing, None);
    let cached = edge.get(listing, None);
    let hit = edge.get(bundle, None);
    let etag = hit.header("etag").unwrap_or_default().to_string();
    let revalidated = edge.send("GET", bundle, &[("If-None-Match", &etag)], b"");
    assert_eq!(revalidated.status, 304);
    for (what, reply) in [
        ("miss", &fresh),
        ("hit", &cached),
        ("bundle hit", &hit),
        ("304", &revalidated),
    ] {
        assert_eq!(
            reply.header("cache-control"),
            Some("public, max-age=60"),
            "{what} ({})",
            x_cache(reply)
        );
    }
    assert_eq!((x_cache(&fresh), x_cache(&cached)), ("MISS", "HIT"));
}

/// Purges and bans without the secret are refused, and change nothing.
fn assert_the_edge_takes_purges_only_with_the_secret(edge: &Varnish) {
    let latest = "/packages/gren-lang/node/latest";
    assert_eq!(x_cache(&edge.get(latest, None)), "HIT");
    let keys = ("Surrogate-Key", "p:gren-lang/node listings");
    for secret in [None, Some("wrong")] {
        let mut headers = vec![keys];
        headers.extend(secret.map(|secret| ("X-Purge-Secret", secret)));
        assert_eq!(edge.send("POST", PURGE_PATH, &headers, b"").status, 403);
        assert_eq!(edge.send("PURGE", latest, &headers[1..], b"").status, 403);
        assert_eq!(edge.send("BAN", latest, &headers[1..], b"").status, 403);
    }
    assert_eq!(x_cache(&edge.get(latest, None)), "HIT", "nothing was purged");
    let secret = ("X-Purge-Secret", PURGE_SECRET);
    let injected = edge.send("POST", PURGE_PATH, &[secret, ("Surrogate-Key", ".*")], b"");
    assert_eq!(injected.status, 400, "keys are the registry's, never a pattern");
    assert_eq!(edge.send("PURGE", latest, &[secret], b"").status, 200);
    assert_eq!(
        x_cache(&edge.get(latest, None)),
        "MISS",
        "an operator's purge of one URL"
    );
}

/// git and changes go to the registry every time.
fn assert_git_and_posts_pass(edge: &Varnish, token: &str) {
    let refs = "/git/gren-lang/core.git/info/refs?service=git-upload-pack";
    for _ in 0..2 {
        let reply = edge.get(refs, None);
        assert_eq!((reply.status, x_cache(&reply)), (200, "PASS"), "{}", reply.text());
    }
    let login = edge.send(
        "POST",
        "/session",
        &[("Content-Type", "application/json")],
        br#"{"email": "edge@example.com"}"#,
    );
    assert_eq!((login.status, x_cache(&login)), (200, "PASS"), "{}", login.text());
    let user = edge.get("/user", Some(token));
    assert_eq!((user.status, x_cache(&user)), (200, "PASS"));
}

#[test]
fn a_private_package_fetched_with_a_token_through_varnish_is_not_served_to_anonymous_requests() {
    let Some(binary) = varnishd_or_skip() else { return };
    let port = free_port();
    let (server, edge) = registry_behind_varnish(&binary, port, port);
    let token = gren_lang_admin(&server);
    publish_private_url(&server, &token);
    publish_real(&server, &token, "gren-lang/core", "7.0.0");
    std::thread::sleep(Duration::from_millis(300));
    let reads = [
        "/packages/gren-lang/url",
        "/packages/gren-lang/url/latest",
        "/packages/gren-lang/url/5.0.0",
        "/packages/gren-lang/url/5.0.0/bundle",
    ];
    for path in reads {
        for _ in 0..2 {
            let signed_in = edge.get(path, Some(&token));
            assert_eq!((signed_in.status, x_cache(&signed_in)), (200, "PASS"), "{path}");
        }
        for _ in 0..2 {
            assert_eq!(
                edge.get(path, None).status,
                404,
                "{path} is not served to an anonymous request"
            );
        }
        // The anonymous 404 at the edge is not served to the member either.
        assert_eq!(edge.get(path, Some(&token)).status, 200, "{path}");
    }
    let listed = |token: Option<&str>| edge.get("/packages", token).text().contains("gren-lang/url");
    assert!(listed(Some(&token)) && !listed(None) && !listed(None) && listed(Some(&token)));
}

/// A way to the edge for purges that can be cut: while down, every
/// connection is closed at once, as a cache that is down or unreachable
/// would; the edge itself keeps serving (and keeps what it holds, which a
/// restarted varnishd would not).
struct PurgeLine {
    port: u16,
    up: Arc<AtomicBool>,
}

impl PurgeLine {
    fn to(edge: SocketAddr) -> PurgeLine {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let line = up.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if line.load(Ordering::SeqCst) {
                    std::thread::spawn(move || forward(client, edge, None));
                }
            }
        });
        PurgeLine { port, up }
    }
}

/// Copies bytes both ways between `client` and `to` until either closes;
/// what comes back from `to` waits while `hold` says so ([`BackendLine`]).
fn forward(mut client: TcpStream, to: SocketAddr, hold: Option<Arc<(Mutex<Hold>, Condvar)>>) {
    let Ok(mut server) = TcpStream::connect(to) else { return };
    let (mut client_back, mut server_back) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let upstream = std::thread::spawn(move || copy_until_closed(&mut client, &mut server, None));
    copy_until_closed(&mut server_back, &mut client_back, hold.as_deref());
    let _ = upstream.join();
}

fn copy_until_closed(from: &mut TcpStream, to: &mut TcpStream, hold: Option<&(Mutex<Hold>, Condvar)>) {
    let mut buffer = [0u8; 16 * 1024];
    while let Ok(read) = from.read(&mut buffer) {
        if read == 0 {
            break;
        }
        if let Some((hold, changed)) = hold {
            let mut state = hold.lock().unwrap();
            if state.holding {
                state.held = true;
                changed.notify_all();
                state = changed.wait_while(state, |state| state.holding).unwrap();
            }
            drop(state);
        }
        if to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

#[test]
fn a_cache_that_was_down_during_a_revoke_is_purged_when_it_comes_back() {
    let Some(binary) = varnishd_or_skip() else { return };
    let edge_port = free_port();
    let line = PurgeLine::to(format!("127.0.0.1:{edge_port}").parse().unwrap());
    let (server, edge) = registry_behind_varnish(&binary, edge_port, line.port);
    let token = gren_lang_admin(&server);
    publish_real(&server, &token, "gren-lang/core", "6.0.1");
    publish_real(&server, &token, "gren-lang/core", "7.0.0");
    std::thread::sleep(Duration::from_millis(300));
    let bundle = "/packages/gren-lang/core/7.0.0/bundle";
    edge.get(bundle, None);
    assert_eq!(x_cache(&edge.get(bundle, None)), "HIT");

    line.up.store(false, Ordering::SeqCst);
    revoke(&server, &token, "gren-lang/core", "7.0.0");
    assert!(
        server.wait_for_log("retrying", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let stale = edge.get(bundle, None);
    assert_eq!(
        (stale.status, x_cache(&stale)),
        (200, "HIT"),
        "the edge was not told yet"
    );

    line.up.store(true, Ordering::SeqCst);
    // The next try comes within the purger's backoff (1 s, then 2 s, ...).
    let took = edge.time_until(bundle, 410, Duration::from_secs(10));
    eprintln!("purged {took:?} after the cache came back");
    assert_eq!(
        edge.get("/packages/gren-lang/core/latest", None).json()["version"],
        "6.0.1"
    );
}

/// The way from the edge to the registry, able to hold the registry's
/// answers: while held, what the registry sends waits on its way (the
/// request was answered, from what the registry held then) until released.
struct BackendLine {
    addr: SocketAddr,
    hold: Arc<(Mutex<Hold>, Condvar)>,
}

#[derive(Default)]
struct Hold {
    /// Answers wait while this is set.
    holding: bool,
    /// An answer is waiting.
    held: bool,
}

impl BackendLine {
    fn to(registry: SocketAddr) -> BackendLine {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hold: Arc<(Mutex<Hold>, Condvar)> = Arc::default();
        let line = hold.clone();
        std::thread::spawn(move || {
            for edge in listener.incoming().flatten() {
                let hold = Some(line.clone());
                std::thread::spawn(move || forward(edge, registry, hold));
            }
        });
        BackendLine { addr, hold }
    }

    /// The next answers wait until [`BackendLine::release`].
    fn hold(&self) {
        *self.hold.0.lock().unwrap() = Hold {
            holding: true,
            held: false,
        };
    }

    /// Waits until an answer is held.
    #[track_caller]
    fn wait_held(&self, within: Duration) {
        let (hold, changed) = &*self.hold;
        let (hold, waited) = changed
            .wait_timeout_while(hold.lock().unwrap(), within, |hold| !hold.held)
            .unwrap();
        assert!(hold.held && !waited.timed_out(), "no answer reached the line");
    }

    fn release(&self) {
        self.hold.0.lock().unwrap().holding = false;
        self.hold.1.notify_all();
    }
}

/// The race a single purge loses: a request reaches the registry before a
/// change, the change's purge reaches the edge, then the answer does, and
/// the edge keeps it (its ban dropped only what it held). The purge sent
/// again GREN_REGISTRY_CACHE_PURGE_REPEAT seconds later drops it.
#[test]
fn an_answer_that_reaches_varnish_after_its_purge_is_dropped_by_the_repeated_purge() {
    let Some(binary) = varnishd_or_skip() else { return };
    const REPEAT: Duration = Duration::from_secs(2);
    let edge_port = free_port();
    let purge_url = format!("http://127.0.0.1:{edge_port}{PURGE_PATH}");
    let server = Server::with_env(&[
        ("GREN_REGISTRY_TRUSTED_PROXIES", "127.0.0.1"),
        ("GREN_REGISTRY_CACHE_PURGE_URLS", &purge_url),
        ("GREN_REGISTRY_CACHE_PURGE_SECRET", PURGE_SECRET),
        ("GREN_REGISTRY_CACHE_PURGE_REPEAT", "2"),
    ]);
    let line = BackendLine::to(server.addr);
    let edge = start_varnish(&binary, edge_port, line.addr);
    let token = gren_lang_admin(&server);
    publish_real(&server, &token, "gren-lang/core", "6.0.1");
    publish_real(&server, &token, "gren-lang/core", "7.0.0");
    wait_for_purges_up_to(&server, &purge_url, 2);
    // The publishes' own repeats pass before the race begins.
    std::thread::sleep(REPEAT + Duration::from_millis(500));

    let latest = "/packages/gren-lang/core/latest";
    line.hold();
    let edge_addr = edge.addr;
    let asked = std::thread::spawn(move || send_to(edge_addr, "GET", latest, &[], b""));
    line.wait_held(Duration::from_secs(10));
    revoke(&server, &token, "gren-lang/core", "7.0.0");
    wait_for_purges_up_to(&server, &purge_url, 3);
    let purged = Instant::now();
    line.release();
    let crossed = asked.join().unwrap();
    assert_eq!(
        (crossed.status, crossed.json()["version"].as_str(), x_cache(&crossed)),
        (200, Some("7.0.0"), "MISS"),
        "the answer given before the revoke"
    );
    let kept = edge.get(latest, None);
    assert_eq!(
        (kept.json()["version"].as_str(), x_cache(&kept)),
        (Some("7.0.0"), "HIT"),
        "the edge keeps what reached it after the purge"
    );

    loop {
        let reply = edge.get(latest, None);
        if reply.json()["version"] == "6.0.1" {
            break;
        }
        assert!(
            purged.elapsed() < REPEAT + Duration::from_secs(3),
            "{latest} still says {} ({}) {:?} after the purge",
            reply.json()["version"],
            x_cache(&reply),
            purged.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "the stale answer was dropped {:?} after the first purge",
        purged.elapsed()
    );
    assert_eq!(x_cache(&edge.get(latest, None)), "HIT", "and the fresh one is kept");
}
