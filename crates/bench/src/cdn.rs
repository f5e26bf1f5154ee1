//! The CDN rows of the benchmark: docs/deploy/varnish.vcl in front of the
//! registry. Bundle and metadata throughput through Varnish (hits) against
//! nginx serving the same bytes; how many requests per second still reach
//! the registry meanwhile (Varnish's `MAIN.backend_req`); and the purge
//! latency, from a revoke's answer to the edge's `410`. Runs on a registry
//! directory of its own, the only one its `purge-bench` package is
//! published to, so removing that package before a run leaves the event
//! log without a gap.

use super::{
    Load, Nginx, RunningRegistry, TOKEN, compare, free_port, http, http_get, median, synthetic_bundle, wrk_pair,
};
use gren_registry_core::package::{PackageName, Version};
use gren_registry_core::store::layout;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "bench-purge-secret-0123456789";
const PURGE_BENCH: &str = "author-000/purge-bench";

/// varnishd with the documented VCL, stopped when dropped.
struct Varnish {
    child: Child,
    port: u16,
    workdir: std::path::PathBuf,
}

impl Varnish {
    fn start(work: &Path, backend_port: u16, port: u16) -> Varnish {
        let dir = work.join("varnish");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deploy/varnish.vcl");
        let vcl = std::fs::read_to_string(root)
            .unwrap()
            .replace(".port = \"3000\";", &format!(".port = \"{backend_port}\";"))
            .replace("CHANGE-ME-to-GREN_REGISTRY_CACHE_PURGE_SECRET", SECRET);
        std::fs::write(dir.join("registry.vcl"), vcl).unwrap();
        let workdir = dir.join("work");
        let child = Command::new("/usr/sbin/varnishd")
            .args(["-F", "-j", "none", "-s", "malloc,256m", "-a"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-n")
            .arg(&workdir)
            .arg("-f")
            .arg(dir.join("registry.vcl"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("varnishd runs (apt-get install varnish)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "varnishd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Varnish { child, port, workdir }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Requests Varnish has sent to the registry so far.
    fn backend_requests(&self) -> u64 {
        let output = Command::new("varnishstat")
            .arg("-n")
            .arg(&self.workdir)
            .args(["-1", "-f", "MAIN.backend_req"])
            .output()
            .expect("varnishstat runs");
        let text = String::from_utf8_lossy(&output.stdout);
        text.split_whitespace()
            .nth(1)
            .and_then(|count| count.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Varnish {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CDN rows, with `data` (a registry directory of its own) behind
/// Varnish and `nginx` serving the same bytes; `bundles` is where the real
/// bundles are.
pub(crate) fn rows(
    work: &Path,
    binary: &Path,
    data: &Path,
    postmark: &str,
    nginx: &Nginx,
    seconds: u64,
    purges: usize,
) -> Vec<[String; 4]> {
    let purge_bench = PackageName::parse(PURGE_BENCH).unwrap();
    let _ = std::fs::remove_dir_all(data.join(layout::package_dir(&purge_bench).as_path()));
    let _ = std::fs::remove_dir_all(data.join(layout::purge_cursors_dir().as_path()));
    let edge_port = free_port();
    let purge_url = format!("http://127.0.0.1:{edge_port}/.gren-registry/purge");
    let env = [
        ("GREN_REGISTRY_CACHE_PURGE_URLS", purge_url.as_str()),
        ("GREN_REGISTRY_CACHE_PURGE_SECRET", SECRET),
        ("GREN_REGISTRY_TRUSTED_PROXIES", "127.0.0.1"),
    ];
    let server = RunningRegistry::start_with(binary, data, postmark, &work.join("server-cdn.log"), &env).settle();
    let varnish = Varnish::start(work, server.port, edge_port);
    let mut rows = Vec::new();
    let before = (varnish.backend_requests(), Instant::now());

    let bundle = "/packages/gren-lang/core/7.0.0/bundle";
    http_get(varnish.port, bundle);
    let (hits, theirs) = wrk_pair(
        &varnish.url(bundle),
        &nginx.url("/gren_lang_core__7_0_0.pkg.gz"),
        16,
        seconds,
    );
    rows.push(through(
        "Bundle download through Varnish (hits), 16 connections",
        &hits,
        &theirs,
    ));

    let page = "/packages/author-000/pkg-00000";
    let body = http_get(varnish.port, page);
    std::fs::write(nginx.root.join("static-cdn.json"), &body).unwrap();
    let (hits, theirs) = wrk_pair(&varnish.url(page), &nginx.url("/static-cdn.json"), 16, seconds);
    let label = format!(
        "GET /packages/<a>/<p> through Varnish (hits, {} bytes), 16 connections",
        body.len()
    );
    rows.push(through(&label, &hits, &theirs));

    let reached = varnish.backend_requests() - before.0;
    let rate = reached as f64 / before.1.elapsed().as_secs_f64();
    rows.push([
        "Requests reaching the registry while Varnish serves 16 clients (the two rows above)".into(),
        format!("{rate:.2} req/s ({reached} in all)"),
        "—".into(),
        format!("target ≈ 0: {}", if rate < 1.0 { "met" } else { "missed" }),
    ]);
    rows.push(purge_latency(&server, &varnish, &purge_bench, purges));
    rows
}

fn through(label: &str, hits: &Load, nginx: &Load) -> [String; 4] {
    compare(label, hits, nginx, 0.7)
}

/// Median time from a revoke's answer to the edge's first `410` for a
/// bundle it held, over `count` revocations.
fn purge_latency(server: &RunningRegistry, varnish: &Varnish, name: &PackageName, count: usize) -> [String; 4] {
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let mut samples = Vec::new();
    for patch in 0..count {
        let version = Version::new(1, 0, patch as u16);
        let (_, bytes) = synthetic_bundle(name, version, "0.6.0 <= v < 0.7.0", patch);
        let headers = format!("{auth}Content-Type: application/gzip\r\n");
        let (status, _) = http(server.port, "POST", "/packages", &headers, &bytes);
        assert_eq!(status, 201, "publish {name} {version}");
        let bundle = format!("/packages/{name}/{version}/bundle");
        // Let the publish's purge pass, then put the bundle at the edge.
        std::thread::sleep(Duration::from_millis(100));
        http_get(varnish.port, &bundle);
        http_get(varnish.port, &bundle);
        let headers = format!("{auth}Content-Type: application/json\r\n");
        let revoke = format!("/packages/{name}/{version}/revoke");
        let (status, _) = http(server.port, "POST", &revoke, &headers, br#"{"reason": "bench"}"#);
        assert_eq!(status, 200, "revoke {name} {version}");
        let answered = Instant::now();
        while http(varnish.port, "GET", &bundle, "", b"").0 != 410 {
            assert!(answered.elapsed() < Duration::from_secs(10), "the edge was not purged");
        }
        samples.push(answered.elapsed().as_secs_f64() * 1000.0);
    }
    let worst = samples.iter().copied().fold(0.0, f64::max);
    let typical = median(samples);
    [
        format!("Purge latency, revoke's answer → Varnish's 410 ({count} revocations)"),
        format!("median {typical:.1} ms, worst {worst:.1} ms"),
        "—".into(),
        format!("target < 1 s: {}", if worst < 1000.0 { "met" } else { "missed" }),
    ]
}
