//! The benchmark driver (`bench/run`): builds synthetic registries, starts
//! the release binary, loads it with wrk on loopback against nginx serving
//! the same bytes in the same run, and writes docs/PERFORMANCE.md. The git
//! rows ([`git`]) run git and the Gren compiler from npm; the CDN rows
//! ([`cdn`]) run Varnish in front of the registry.

mod cdn;
mod git;

use flate2::Compression;
use flate2::write::GzEncoder;
use gren_registry_core::auth::email::Email;
use gren_registry_core::auth::secret::sha256_hex;
use gren_registry_core::auth::user::User;
use gren_registry_core::identity::{Action, Identity, IdentityName, Member, Role};
use gren_registry_core::package::events::{Event, EventKind};
use gren_registry_core::package::{PackageChange, PackageName, PackageRecord, Range, Version, VersionRecord, records};
use gren_registry_core::store::{RecordPath, Store, layout};
use gren_registry_core::time::Timestamp;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "gren_0123456789abcdef0123456789abcdef0123456789abcdef";
const EMAIL: &str = "bench@example.com";
const AUTHORS: usize = 100;
const VERSIONS_PER_PACKAGE: usize = 20;
/// The start of the name of the package each run of the publish benchmark
/// publishes: a new package a run, since removing a package's directory
/// would leave a gap in the event log, which the registry refuses.
const PUBLISH_BENCH: &str = "author-000/publish-bench";
/// The packages of the CDN rows' own registry directory.
const CDN_PACKAGES: usize = 6;

struct Settings {
    packages: usize,
    seconds: u64,
    publishes: usize,
    /// Publishes of each size in the publish-growth row.
    growth_publishes: usize,
    quick: bool,
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    // Only the upload-memory row, e.g. against a debug build:
    // GREN_BENCH_BINARY=target/debug/gren-registry target/debug/bench --uploads-only
    let uploads_only = std::env::args().any(|arg| arg == "--uploads-only");
    let settings = if quick {
        Settings {
            packages: 500,
            seconds: 3,
            publishes: 20,
            growth_publishes: 15,
            quick,
        }
    } else {
        Settings {
            packages: 5000,
            seconds: 10,
            publishes: 100,
            growth_publishes: 40,
            quick,
        }
    };
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let work = root.join("target/bench");
    std::fs::create_dir_all(&work).unwrap();
    let binary = std::env::var_os("GREN_BENCH_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release/gren-registry"));
    let real_bundles = root.join("tests/fixtures/bundles");
    // Only the git rows, e.g. against a debug build:
    // GREN_BENCH_BINARY=target/debug/gren-registry target/debug/bench --git-only
    if std::env::args().any(|arg| arg == "--git-only") {
        for row in git_rows(&work, &binary, &real_bundles, &root) {
            println!("| {} | {} | {} | {} |", row[0], row[1], row[2], row[3]);
        }
        return;
    }
    // Only the storage rows (start-up, memory, publish), e.g. while changing
    // the store: target/release/bench --store-only
    if std::env::args().any(|arg| arg == "--store-only") {
        let big = prepare(&work, &binary, &real_bundles, settings.packages);
        for row in store_rows(&binary, &big, &work, &settings) {
            println!("| {} | {} | {} | {} |", row[0], row[1], row[2], row[3]);
        }
        return;
    }
    // Only the rows against nginx (downloads and metadata), on the full-size
    // registry: target/release/bench --nginx-only
    if std::env::args().any(|arg| arg == "--nginx-only") {
        let big = prepare(&work, &binary, &real_bundles, settings.packages);
        let mailer = MailStub::start();
        let server = RunningRegistry::start(&binary, &big, &mailer.url(), &work.join("server.log")).settle();
        let nginx = Nginx::start(&work, &real_bundles);
        for row in nginx_rows(&server, &nginx, &settings) {
            println!("| {} | {} | {} | {} |", row[0], row[1], row[2], row[3]);
        }
        return;
    }
    // Only the publish row, on the small registry (quick to start, e.g.
    // under strace): target/release/bench --publish-only
    if std::env::args().any(|arg| arg == "--publish-only") {
        let small = prepare(&work, &binary, &real_bundles, 5);
        let mailer = MailStub::start();
        let log = work.join("server-publish.log");
        let server = RunningRegistry::start(&binary, &small, &mailer.url(), &log).settle();
        let (ours_ms, baseline_ms) = publish_vs_baseline(&server, &work, settings.publishes);
        let row = publish_row(settings.publishes, ours_ms, baseline_ms);
        println!("| {} | {} | {} | {} |", row[0], row[1], row[2], row[3]);
        return;
    }
    // Only the row of a publish's cost against the package's versions:
    // target/release/bench --growth-only (with --quick: fewer publishes)
    if std::env::args().any(|arg| arg == "--growth-only") {
        let row = publish_growth_row(&work, &binary, settings.growth_publishes);
        println!("| {} | {} | {} | {} |", row[0], row[1], row[2], row[3]);
        return;
    }
    // Only the CDN rows, e.g. against a debug build:
    // GREN_BENCH_BINARY=target/debug/gren-registry target/debug/bench --cdn-only
    if std::env::args().any(|arg| arg == "--cdn-only") {
        let own = prepare(&work, &binary, &real_bundles, CDN_PACKAGES);
        let nginx = Nginx::start(&work, &real_bundles);
        let mailer = MailStub::start();
        for row in cdn::rows(&work, &binary, &own, &mailer.url(), &nginx, settings.seconds, 5) {
            println!("| {} | {} | {} | {} |", row[0], row[1], row[2], row[3]);
        }
        return;
    }
    if uploads_only {
        let small = prepare(&work, &binary, &real_bundles, 5);
        let row = upload_burst(
            &binary,
            &small,
            &MailStub::start().url(),
            &work.join("server-uploads.log"),
        );
        println!("| {} | {} | {} | {} |", row[0], row[1], row[2], row[3]);
        return;
    }

    let big = prepare(&work, &binary, &real_bundles, settings.packages);
    let small = prepare(&work, &binary, &real_bundles, 5);
    let versions = settings.packages * VERSIONS_PER_PACKAGE;
    let mut rows: Vec<[String; 4]> = Vec::new();

    let mailer = MailStub::start();
    warm_up(&binary, &big, &mailer, &work);
    let started = Instant::now();
    let server = RunningRegistry::start(&binary, &big, &mailer.url(), &work.join("server.log"));
    let startup = started.elapsed();
    let rss_after_start = server.rss_kib("VmRSS");
    let server = server.settle();
    let nginx = Nginx::start(&work, &real_bundles);

    rows.extend(nginx_rows(&server, &nginx, &settings));

    // 3. The same query at 100 versions and at the full size, one connection.
    let query = format!("/packages/{}/latest?gren=0.6.3", "author-000/pkg-00000");
    let at_full = wrk(&server.url(&query), 1, settings.seconds, None);
    let small_server = RunningRegistry::start(&binary, &small, &mailer.url(), &work.join("server-small.log")).settle();
    let at_small = wrk(&small_server.url(&query), 1, settings.seconds, None);
    drop(small_server);
    let ratio = at_full.mean_ms / at_small.mean_ms;
    rows.push([
        format!("latest?gren at {versions} vs 100 versions, 1 connection: mean latency"),
        format!("{:.3} ms", at_full.mean_ms),
        format!("{:.3} ms", at_small.mean_ms),
        format!(
            "ratio {ratio:.2} (target ≤ 1.2: {})",
            if ratio <= 1.2 { "met" } else { "missed" }
        ),
    ]);

    // 4. Publish, against write + fsync + rename + fsync(dir) of the same bytes.
    let (ours_ms, baseline_ms) = publish_vs_baseline(&server, &work, settings.publishes);
    rows.push(publish_row(settings.publishes, ours_ms, baseline_ms));
    rows.push(publish_growth_row(&work, &binary, settings.growth_publishes));

    // 6. Logins (stub Postmark, limits raised).
    let login = wrk(
        &server.url("/session"),
        16,
        settings.seconds,
        Some(&work.join("login.lua")),
    );
    rows.push([
        "Login (POST /session), 16 connections".into(),
        format!("{:.0} req/s, p99 {:.2} ms", login.requests_per_second, login.p99_ms),
        "—".into(),
        format!("{} e-mails sent to the stub", mailer.count()),
    ]);

    // 5. Start-up and memory at full size.
    let peak = server.rss_kib("VmHWM");
    rows.push(startup_row(versions, startup));
    rows.push(memory_row(versions, rss_after_start, peak));
    drop(server);

    // 9. Through Varnish, on a directory of its own (it publishes and revokes).
    let own = prepare(&work, &binary, &real_bundles, CDN_PACKAGES);
    let purges = if quick { 5 } else { 20 };
    rows.extend(cdn::rows(
        &work,
        &binary,
        &own,
        &mailer.url(),
        &nginx,
        settings.seconds,
        purges,
    ));

    // 10. The compiler's way in: git over HTTP.
    rows.extend(git_rows(&work, &binary, &real_bundles, &root));

    // 7. Memory under a burst of worst-case uploads, on a fresh process.
    rows.push(upload_burst(
        &binary,
        &small,
        &mailer.url(),
        &work.join("server-uploads.log"),
    ));

    let report = render(&settings, versions, &rows);
    println!("{report}");
    if !settings.quick {
        let path = root.join("docs/PERFORMANCE.md");
        std::fs::write(
            &path,
            splice(&std::fs::read_to_string(&path).unwrap_or_default(), &report),
        )
        .unwrap();
        println!("written to docs/PERFORMANCE.md");
    }
}

/// Rows 1 and 2: downloads and metadata against nginx serving the same bytes.
fn nginx_rows(server: &RunningRegistry, nginx: &Nginx, settings: &Settings) -> Vec<[String; 4]> {
    let mut rows: Vec<[String; 4]> = Vec::new();
    // 1. Bundle download.
    let bundle = "/packages/gren-lang/core/7.0.0/bundle";
    let (ours, theirs) = wrk_pair(
        &server.url(bundle),
        &nginx.url("/gren_lang_core__7_0_0.pkg.gz"),
        16,
        settings.seconds,
    );
    rows.push(compare(
        "Bundle download (gren-lang/core 7.0.0, 103 KB), 16 connections",
        &ours,
        &theirs,
        0.9,
    ));
    // Thousands of clients at once (a CI fleet): every answer a 2xx.
    for connections in [256, 1000] {
        let (ours, theirs) = wrk_pair(
            &server.url(bundle),
            &nginx.url("/gren_lang_core__7_0_0.pkg.gz"),
            connections,
            settings.seconds,
        );
        rows.push(compare(
            &format!("Bundle download (gren-lang/core 7.0.0, 103 KB), {connections} connections"),
            &ours,
            &theirs,
            0.8,
        ));
    }

    // 2. Metadata, against nginx serving a static file of the same bytes.
    let index = settings.packages * 2 / 5 + 42;
    let sample = format!("author-{:03}/pkg-{index:05}", index % AUTHORS);
    for (label, path) in [
        ("GET /packages/<a>/<p>", format!("/packages/{sample}")),
        (
            "GET …/latest?gren=0.6.3",
            format!("/packages/{sample}/latest?gren=0.6.3"),
        ),
        ("GET …/<v>/previous", format!("/packages/{sample}/3.2.0/previous")),
    ] {
        let body = http_get(server.port, &path);
        let file = format!("/static-{}.json", rows.len());
        std::fs::write(nginx.root.join(&file[1..]), &body).unwrap();
        let (ours, theirs) = wrk_pair(&server.url(&path), &nginx.url(&file), 16, settings.seconds);
        let mut row = compare(
            &format!("{label} ({} bytes), 16 connections", body.len()),
            &ours,
            &theirs,
            0.9,
        );
        row[3] = format!(
            "{}, p99 < 2 ms: {}",
            row[3],
            if ours.p99_ms < 2.0 { "met" } else { "missed" }
        );
        rows.push(row);
        if label == "GET /packages/<a>/<p>" {
            let (ours, theirs) = wrk_pair(&server.url(&path), &nginx.url(&file), 1000, settings.seconds);
            let label = format!("{label} ({} bytes), 1000 connections", body.len());
            rows.push(compare(&label, &ours, &theirs, 0.8));
        }
    }

    rows
}

// ---------------------------------------------------------------------------
// Synthetic registries
// ---------------------------------------------------------------------------

/// A data directory with `packages` synthetic packages of 20 versions each
/// plus the real bundles; made once and reused (it is never written to
/// except by the publish benchmark, which adds a package of its own a run).
fn prepare(work: &Path, binary: &Path, real: &Path, packages: usize) -> PathBuf {
    let dir = work.join(format!("registry-{packages}"));
    let done = dir.join(".bench-ready");
    if done.exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "generating {packages} packages × {VERSIONS_PER_PACKAGE} versions in {}",
        dir.display()
    );
    let started = Instant::now();
    {
        let store = Store::open(&dir).unwrap();
        generate(&store, packages);
    }
    for author in ["gren-lang", "blaix"] {
        run_admin(binary, &dir, &["identity", "create", author, "--admin", EMAIL]);
    }
    let mut bundles: Vec<String> = std::fs::read_dir(real)
        .unwrap()
        .map(|entry| entry.unwrap().path().display().to_string())
        .collect();
    bundles.sort();
    let mut args = vec!["import"];
    args.extend(bundles.iter().map(String::as_str));
    run_admin(binary, &dir, &args);
    std::fs::write(&done, b"").unwrap();
    eprintln!("generated in {:.1} s", started.elapsed().as_secs_f64());
    dir
}

fn run_admin(binary: &Path, dir: &Path, args: &[&str]) {
    let status = Command::new(binary)
        .arg("admin")
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "admin {args:?} failed");
}

fn write_file(store: &Store, path: &RecordPath, bytes: &[u8]) {
    let full = store.full_path(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, bytes).unwrap();
}

fn write_json(store: &Store, path: &RecordPath, value: &impl serde::Serialize) {
    write_file(store, path, &serde_json::to_vec_pretty(value).unwrap());
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A bundle of the shape the compiler makes: an outline and a few modules
/// of ordinary Gren text.
fn synthetic_bundle(name: &PackageName, version: Version, gren: &str, salt: usize) -> (Value, Vec<u8>) {
    let outline = json!({
        "type": "package", "platform": "common", "name": name.to_string(),
        "summary": "A generated package for the benchmark", "license": "BSD-3-Clause",
        "version": version.to_string(), "exposed-modules": ["Bench", "Bench.Extra"],
        "gren-version": gren, "dependencies": { "gren-lang/core": "7.0.0 <= v < 8.0.0" }
    });
    let mut text = String::from("module Bench exposing (..)\n\n");
    for i in 0..60 {
        let _ = writeln!(text, "value{i} : Int -> Int\nvalue{i} n =\n    n * {i} + {salt}\n");
    }
    let bundle = json!({
        "outline": outline,
        "sources": { "Bench": text, "Bench.Extra": "module Bench.Extra exposing (x)\n\nx = 1\n" }
    });
    (outline, gzip(&serde_json::to_vec(&bundle).unwrap()))
}

fn generate(store: &Store, packages: usize) {
    generate_people(store, AUTHORS.min(packages));
    let mut seq = 0u64;
    for index in 0..packages {
        let name = PackageName::parse(&format!("author-{:03}/pkg-{index:05}", index % AUTHORS)).unwrap();
        let versions = (0..VERSIONS_PER_PACKAGE).map(|step| {
            let version = Version::new(1 + (step / 5) as u16, (step % 5) as u16, 0);
            // The older half is for Gren 0.5, the newer for 0.6.
            let gren = if step < VERSIONS_PER_PACKAGE / 2 {
                "0.5.0 <= v < 0.6.0"
            } else {
                "0.6.0 <= v < 0.7.0"
            };
            (version, gren, index * 100 + step)
        });
        generate_package(store, &name, versions, &mut seq);
    }
}

/// The format stamp, `authors` identities (`author-000`, …) and the
/// benchmark's user, admin of all of them, with its session token.
fn generate_people(store: &Store, authors: usize) {
    gren_registry_core::format::stamp(store).unwrap();
    let now = Timestamp::now();
    let email = Email::parse(EMAIL).unwrap();
    let mut identities = Vec::new();
    for author in 0..authors {
        let name = format!("author-{author:03}");
        let identity = Identity {
            name: name.clone(),
            created: now,
            members: vec![Member {
                email: email.clone(),
                role: Role::Admin,
                added: now,
            }],
            invitations: Vec::new(),
            audit_seq: 0,
            github: None,
        };
        write_json(
            store,
            &layout::identity(&IdentityName::parse(&name).unwrap()),
            &identity,
        );
        identities.push(name);
    }
    let token_hash = sha256_hex(TOKEN.as_bytes());
    let user = User {
        email: email.clone(),
        created: now,
        sessions: vec![token_hash.clone()],
        identities,
        tokens: Vec::new(),
        git_tokens: Vec::new(),
    };
    write_json(store, &layout::user(&email), &user);
    let session = json!({
        "email": EMAIL, "created": now, "expires": now.plus(Duration::from_secs(3650 * 86400)),
        "last_used": now, "user_agent": "bench", "ip": "127.0.0.1"
    });
    write_json(store, &layout::session(&token_hash).unwrap(), &session);
}

/// A public package `name` with `versions` (number, compiler range, the
/// salt of its bundle), as publishes would have left it: the bundles, and
/// the records (each version's with its event, numbered after `seq`, and
/// its audit entry).
fn generate_package(
    store: &Store,
    name: &PackageName,
    versions: impl Iterator<Item = (Version, &'static str, usize)>,
    seq: &mut u64,
) {
    let now = Timestamp::now();
    let mut record = PackageRecord {
        name: name.clone(),
        private: false,
        created: now,
        versions: Vec::new(),
        events: Vec::new(),
        changes: Vec::new(),
        revoked_outlines: Default::default(),
    };
    for (version, gren, salt) in versions {
        let (_, bytes) = synthetic_bundle(name, version, gren, salt);
        write_file(store, &layout::version_bundle(name, version), &bytes);
        *seq += 1;
        let sha256 = sha256_hex(&bytes);
        record.events.push(Event {
            seq: *seq,
            at: now,
            kind: EventKind::Publish,
            package: name.clone(),
            version: Some(version),
            sha256: sha256.clone(),
            token: None,
        });
        record.changes.push(PackageChange {
            at: now,
            actor: EMAIL.to_string(),
            token: None,
            action: Action::Published {
                package: name.to_string(),
                version: version.to_string(),
            },
        });
        record.versions.push(VersionRecord {
            version,
            gren_version: Range::parse(gren).unwrap(),
            platform: "common".into(),
            summary: "A generated package for the benchmark".into(),
            published: now,
            sha256,
            size: bytes.len() as u64,
            revoked: None,
        });
    }
    // Written as the registry writes them, without its fsyncs: generating
    // 100,000 versions would otherwise take minutes.
    let (package, versions) = records::split(record);
    for file in &versions {
        write_json(store, &layout::version_record(name, file.version.version), file);
    }
    write_json(store, &layout::package(name), &package);
}

// ---------------------------------------------------------------------------
// Processes under test
// ---------------------------------------------------------------------------

/// A `gren-registry serve` child process, stopped when dropped.
struct RunningRegistry {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl RunningRegistry {
    fn start(binary: &Path, data: &Path, postmark: &str, log: &Path) -> RunningRegistry {
        RunningRegistry::start_with(binary, data, postmark, log, &[])
    }

    /// Like [`RunningRegistry::start`], with more settings.
    fn start_with(binary: &Path, data: &Path, postmark: &str, log: &Path, env: &[(&str, &str)]) -> RunningRegistry {
        let port = free_port();
        // The registry writes its log straight into the file, as nginx
        // writes its access log: a pipe drained by this process would put
        // a third busy process on the machine's cores during every wrk run.
        let log_file = std::fs::File::create(log).unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GREN_REGISTRY_DATA_DIR", data)
            .env("GREN_REGISTRY_LISTEN", format!("127.0.0.1:{port}"))
            .env("POSTMARK_SERVER_TOKEN", "bench")
            .env("GREN_REGISTRY_POSTMARK_URL", postmark)
            .env("GREN_REGISTRY_LOGIN_LIMIT_PER_EMAIL", "100000000")
            .env("GREN_REGISTRY_LOGIN_LIMIT_PER_EMAIL_TOTAL", "100000000")
            .env("GREN_REGISTRY_LOGIN_LIMIT_PER_IP", "100000000")
            .env("GREN_REGISTRY_PUBLISH_LIMIT_PER_HOUR", "100000000")
            // wrk's connections all come from 127.0.0.1 and stand for as
            // many clients.
            .env("GREN_REGISTRY_MAX_CONNECTIONS_PER_CLIENT", "5000")
            .envs(env.iter().copied())
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap();
        let mut registry = RunningRegistry {
            child,
            port,
            log: log.to_path_buf(),
        };
        // Polled every millisecond: the start-up row times spawn → this line.
        registry.wait_for_log("listening on", Duration::from_secs(120), Duration::from_millis(1));
        registry
    }

    /// Waits for the background sweep of the data directory that follows
    /// start-up, so that measurements see the steady state.
    fn settle(mut self) -> RunningRegistry {
        self.wait_for_log(
            "temporary-file sweep done",
            Duration::from_secs(60),
            Duration::from_millis(50),
        );
        self
    }

    /// Waits until the log holds `line`, looking every `every`; panics when
    /// the registry ended or `within` passed first.
    fn wait_for_log(&mut self, line: &str, within: Duration, every: Duration) {
        let deadline = Instant::now() + within;
        while !std::fs::read_to_string(&self.log).unwrap_or_default().contains(line) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the registry ended ({status}) before {line:?}; see {}",
                    self.log.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {line:?} in the registry's log within {within:?}"
            );
            std::thread::sleep(every);
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn rss_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find(|line| line.starts_with(field))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for RunningRegistry {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

struct Nginx {
    child: Child,
    port: u16,
    root: PathBuf,
}

impl Nginx {
    fn start(work: &Path, real: &Path) -> Nginx {
        let dir = work.join("nginx");
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::copy(
            real.join("gren_lang_core__7_0_0.pkg.gz"),
            root.join("gren_lang_core__7_0_0.pkg.gz"),
        )
        .unwrap();
        let port = free_port();
        let d = dir.display();
        // Two workers for two cores, sendfile and keep-alive: nginx at its usual
        // best; its access log in batches within 50 ms, as the registry's.
        let config = format!(
            "worker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log {d}/access.log combined buffer=16k flush=50ms;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n\
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             server {{\n    listen 127.0.0.1:{port};\n    root {root};\n    default_type application/json;\n  }}\n}}\n",
            root = root.display()
        );
        let config_path = dir.join("nginx.conf");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&config_path)
            .args(["-g", "daemon off;"])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx { child, port, root }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: a graceful stop that takes the workers along.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Postmark's stand-in: answers every `POST /email` with success.
struct MailStub {
    port: u16,
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl MailStub {
    fn start() -> MailStub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counter = counter.clone();
                std::thread::spawn(move || serve_mail(stream, &counter));
            }
        });
        MailStub { port, count }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn serve_mail(stream: TcpStream, counter: &std::sync::atomic::AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let answer = br#"{"ErrorCode":0,"Message":"OK"}"#;
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        );
        if writer
            .write_all(head.as_bytes())
            .and_then(|()| writer.write_all(answer))
            .is_err()
        {
            return;
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn http(port: u16, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|window| window == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&response[9..12]).parse().unwrap();
    (status, response[split + 4..].to_vec())
}

fn http_get(port: u16, path: &str) -> Vec<u8> {
    let (status, body) = http(port, "GET", path, "", b"");
    assert_eq!(status, 200, "GET {path}");
    body
}

// ---------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------

struct Load {
    requests_per_second: f64,
    mean_ms: f64,
    p99_ms: f64,
    /// Non-2xx answers and socket errors.
    failures: u64,
}

/// Rounds of a comparison with nginx: see [`wrk_pair`].
const ROUNDS: u64 = 5;

/// wrk against `ours` and `theirs` in turn, [`ROUNDS`] times, each side
/// for about `seconds` in all (whole seconds a round, at least one: with
/// `--quick`'s 3 s, five of 1 s), the side going first
/// alternating: a loaded
/// machine's drift (a noisy neighbour, a frequency change) then weighs on
/// both sides alike, where one long run of each put all of it on one.
/// Throughput and mean latency are the rounds' means, p99 their median.
/// Each side is first loaded for a second, unmeasured: the first round
/// after a pause ran up to a fifth slower on this shared machine, for both
/// servers, and would fall on whichever side went first.
fn wrk_pair(ours: &str, theirs: &str, connections: usize, seconds: u64) -> (Load, Load) {
    wrk(ours, connections, 1, None);
    wrk(theirs, connections, 1, None);
    let round = (seconds / ROUNDS).max(1);
    let (mut ours_runs, mut theirs_runs) = (Vec::new(), Vec::new());
    for index in 0..ROUNDS {
        if index % 2 == 0 {
            ours_runs.push(wrk(ours, connections, round, None));
            theirs_runs.push(wrk(theirs, connections, round, None));
        } else {
            theirs_runs.push(wrk(theirs, connections, round, None));
            ours_runs.push(wrk(ours, connections, round, None));
        }
    }
    (Load::merged(&ours_runs), Load::merged(&theirs_runs))
}

impl Load {
    fn merged(runs: &[Load]) -> Load {
        let mean = |field: fn(&Load) -> f64| runs.iter().map(field).sum::<f64>() / runs.len() as f64;
        Load {
            requests_per_second: mean(|run| run.requests_per_second),
            mean_ms: mean(|run| run.mean_ms),
            p99_ms: median(runs.iter().map(|run| run.p99_ms).collect()),
            failures: runs.iter().map(|run| run.failures).sum(),
        }
    }
}

/// Runs wrk (2 threads) and reads its summary.
fn wrk(url: &str, connections: usize, seconds: u64, script: Option<&Path>) -> Load {
    if let Some(script) = script {
        std::fs::write(
            script,
            "wrk.method = \"POST\"\nwrk.body = '{\"email\":\"bench@example.com\"}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
        )
        .unwrap();
    }
    let mut command = Command::new("wrk");
    let threads = connections.min(2);
    command.args([
        &format!("-t{threads}"),
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command.arg(url).output().expect("wrk runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.split_whitespace().nth(1))
    };
    Load {
        requests_per_second: field("Requests/sec:").and_then(|v| v.parse().ok()).unwrap_or(0.0),
        mean_ms: field("Latency").map(to_ms).unwrap_or(f64::NAN),
        p99_ms: field("99%").map(to_ms).unwrap_or(f64::NAN),
        failures: failures(&text),
    }
}

/// The non-2xx answers and socket errors (connect, read, write, timeout)
/// of a wrk summary.
fn failures(summary: &str) -> u64 {
    summary
        .lines()
        .map(str::trim)
        .filter_map(|line| {
            if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
                return count.trim().parse::<u64>().ok();
            }
            let errors = line.strip_prefix("Socket errors:")?;
            Some(
                errors
                    .split(',')
                    .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum(),
            )
        })
        .sum()
}

fn to_ms(text: &str) -> f64 {
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => f64::NAN,
    }
}

/// A row comparing the registry with nginx: the target is `min` times
/// nginx's throughput, and no answer but a 2xx (nor a socket error).
fn compare(label: &str, ours: &Load, theirs: &Load, min: f64) -> [String; 4] {
    let ratio = ours.requests_per_second / theirs.requests_per_second;
    let describe = |load: &Load| {
        let mut text = format!("{:.0} req/s, p99 {:.2} ms", load.requests_per_second, load.p99_ms);
        if load.failures > 0 {
            text.push_str(&format!(", {} non-2xx or socket errors", load.failures));
        }
        text
    };
    let met = ratio >= min && ours.failures == 0;
    [
        label.to_string(),
        describe(ours),
        describe(theirs),
        format!(
            "{ratio:.2}× (≥ {min}× nginx, no errors: {})",
            if met { "met" } else { "missed" }
        ),
    ]
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

/// Median latency of sequential publishes, and of the baseline: the same
/// bytes written to a temporary file, fsynced, renamed, directory fsynced.
fn publish_vs_baseline(server: &RunningRegistry, work: &Path, count: usize) -> (f64, f64) {
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let name = PackageName::parse(&format!("{PUBLISH_BENCH}-{run}")).unwrap();
    let bundles: Vec<Vec<u8>> = (0..count)
        .map(|patch| synthetic_bundle(&name, Version::new(1, 0, patch as u16), "0.6.0 <= v < 0.7.0", patch).1)
        .collect();
    let headers = format!("Authorization: Bearer {TOKEN}\r\nContent-Type: application/gzip\r\n");
    let mut ours = Vec::new();
    for bytes in &bundles {
        let started = Instant::now();
        let (status, body) = http(server.port, "POST", "/packages", &headers, bytes);
        ours.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 201, "publish: {}", String::from_utf8_lossy(&body));
    }
    let dir = work.join("baseline");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut baseline = Vec::new();
    for (index, bytes) in bundles.iter().enumerate() {
        let started = Instant::now();
        let temp = dir.join(format!(".tmp-{index}"));
        let mut file = std::fs::File::create(&temp).unwrap();
        file.write_all(bytes).unwrap();
        file.sync_all().unwrap();
        std::fs::rename(&temp, dir.join(format!("{index}.pkg.gz"))).unwrap();
        std::fs::File::open(&dir).unwrap().sync_all().unwrap();
        baseline.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    (median(ours), median(baseline))
}

/// The sizes of the one package the publish-growth row publishes into.
const GROWTH_SIZES: [usize; 3] = [10, 1_000, 10_000];
/// Publishes of each size before the measured ones (connections, caches).
const GROWTH_WARM_UP: usize = 3;

/// A publish's median latency into a package of 10, 1,000 and 10,000
/// versions, each on a registry of its own holding only that package,
/// regenerated every run (the row's publishes grow it). One publish on each
/// in turn, so that a drift of the machine weighs on all three alike.
fn publish_growth_row(work: &Path, binary: &Path, publishes: usize) -> [String; 4] {
    let mailer = MailStub::start();
    let name = PackageName::parse("author-000/growth").unwrap();
    let gren = "0.6.0 <= v < 0.7.0";
    let servers: Vec<RunningRegistry> = GROWTH_SIZES
        .iter()
        .map(|&versions| {
            let dir = work.join(format!("growth-{versions}"));
            let _ = std::fs::remove_dir_all(&dir);
            let store = Store::open(&dir).unwrap();
            generate_people(&store, 1);
            // 1.0.0 … 1.0.<n-1>: the next publish is 1.0.<n>, its successor.
            let existing = (0..versions).map(|patch| (Version::new(1, 0, patch as u16), gren, patch));
            generate_package(&store, &name, existing, &mut 0);
            drop(store);
            let log = work.join(format!("server-growth-{versions}.log"));
            RunningRegistry::start(binary, &dir, &mailer.url(), &log).settle()
        })
        .collect();
    let headers = format!("Authorization: Bearer {TOKEN}\r\nContent-Type: application/gzip\r\n");
    let mut latencies = vec![Vec::new(); servers.len()];
    for round in 0..GROWTH_WARM_UP + publishes {
        for (index, server) in servers.iter().enumerate() {
            let patch = GROWTH_SIZES[index] + round;
            let (_, bytes) = synthetic_bundle(&name, Version::new(1, 0, patch as u16), gren, patch);
            let started = Instant::now();
            let (status, body) = http(server.port, "POST", "/packages", &headers, &bytes);
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(status, 201, "publish: {}", String::from_utf8_lossy(&body));
            if round >= GROWTH_WARM_UP {
                latencies[index].push(elapsed);
            }
        }
    }
    let medians: Vec<f64> = latencies.into_iter().map(median).collect();
    let ratio = medians[2] / medians[0];
    let sizes: Vec<String> = GROWTH_SIZES.iter().map(|size| size.to_string()).collect();
    let times: Vec<String> = medians.iter().map(|ms| format!("{ms:.2} ms")).collect();
    [
        format!(
            "Publish into one package of {} versions ({publishes} each, in turn): median latency",
            sizes.join(" / ")
        ),
        times.join(" / "),
        "—".into(),
        format!(
            "{} vs {}: ratio {ratio:.2} (target < 2: {})",
            sizes[2],
            sizes[0],
            if ratio < 2.0 { "met" } else { "missed" }
        ),
    ]
}

/// Concurrent uploads of the burst, and the registry's default inflated cap.
const BURST_UPLOADS: usize = 32;
const DEFAULT_MAX_INFLATED: usize = 64 << 20;

/// A valid outline for a package of the benchmark user's, then one module
/// whose text inflates past the registry's cap: a publish that can only be
/// refused after inflating and parsing as much as the registry allows.
fn worst_case_bundle() -> Vec<u8> {
    let name = PackageName::parse("author-000/upload-burst").unwrap();
    let (outline, _) = synthetic_bundle(&name, Version::new(1, 0, 0), "0.6.0 <= v < 0.7.0", 0);
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    write!(encoder, r#"{{"outline":{outline},"sources":{{"Bench":""#).unwrap();
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..DEFAULT_MAX_INFLATED / chunk.len() {
        encoder.write_all(&chunk).unwrap();
    }
    encoder.write_all(br#""}}"#).unwrap();
    encoder.finish().unwrap()
}

/// Peak RSS of a fresh registry while 32 clients upload the worst-case
/// bundle at once, and what they were answered (413 after inflating to the
/// cap, or 503 when no inflation slot came free in time).
fn upload_burst(binary: &Path, data: &Path, postmark: &str, log: &Path) -> [String; 4] {
    let server = RunningRegistry::start(binary, data, postmark, log).settle();
    let bundle = std::sync::Arc::new(worst_case_bundle());
    let headers = format!("Authorization: Bearer {TOKEN}\r\nContent-Type: application/gzip\r\n");
    let uploads: Vec<_> = (0..BURST_UPLOADS)
        .map(|_| {
            let (bundle, headers, port) = (bundle.clone(), headers.clone(), server.port);
            std::thread::spawn(move || http(port, "POST", "/packages", &headers, &bundle).0)
        })
        .collect();
    let mut answers = std::collections::BTreeMap::new();
    for upload in uploads {
        *answers.entry(upload.join().unwrap()).or_insert(0) += 1;
    }
    let peak = server.rss_kib("VmHWM");
    let answers: Vec<String> = answers
        .iter()
        .map(|(status, count)| format!("{count}× {status}"))
        .collect();
    [
        format!(
            "Peak RSS, {BURST_UPLOADS} concurrent worst-case uploads ({} KB bundles inflating past the 64 MiB cap)",
            bundle.len() / 1000
        ),
        format!("{:.1} MB peak; answers: {}", peak as f64 / 1024.0, answers.join(", ")),
        "—".into(),
        format!("target < 300 MB: {}", if peak < 300 * 1024 { "met" } else { "missed" }),
    ]
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .map(|line| line.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .next()
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map(|kib| format!("{:.0} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let wrk = Command::new("wrk")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    let nginx = Command::new("/usr/sbin/nginx")
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {memory} RAM, Linux {}; {wrk}; {nginx}",
        kernel.trim()
    )
}

const START: &str = "<!-- bench/run writes from here -->";
const END: &str = "<!-- bench/run writes up to here -->";

/// Replaces the measured part of the document, keeping the analysis around it.
fn splice(document: &str, report: &str) -> String {
    match (document.find(START), document.find(END)) {
        (Some(start), Some(end)) if start < end => {
            format!("{}{START}\n{report}{}", &document[..start], &document[end..])
        }
        _ => format!("# Performance\n\n{START}\n{report}{END}\n"),
    }
}

fn render(settings: &Settings, versions: usize, rows: &[[String; 4]]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Measured by `bench/run` on {} ({} packages × {VERSIONS_PER_PACKAGE} versions = {versions} synthetic versions plus the 12 real bundles; wrk, 2 threads, on loopback; each comparison a 1 s warm-up a side, then {ROUNDS} alternating rounds of {} s a side, the other rows {} s; the registry's release build and nginx each writing a log line a request straight to a file, in batches within 50 ms).\n",
        Timestamp::now(),
        settings.packages,
        (settings.seconds / ROUNDS).max(1),
        settings.seconds
    );
    let _ = writeln!(out, "Machine: {}\n", machine());
    let _ = writeln!(
        out,
        "| measurement | gren-registry | baseline (same run) | ratio / target |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- |");
    for row in rows {
        let _ = writeln!(out, "| {} | {} | {} | {} |", row[0], row[1], row[2], row[3]);
    }
    out
}

/// `ls-remote` plus a shallow clone through the registry against the same
/// over `file://`, and an install by the real compiler, on a registry of
/// ten packages of their own.
fn git_rows(work: &Path, binary: &Path, real_bundles: &Path, root: &Path) -> Vec<[String; 4]> {
    let ten = prepare(work, binary, real_bundles, 10);
    let server = RunningRegistry::start(binary, &ten, &MailStub::start().url(), &work.join("server-git.log"));
    let compiler = root.join("target/gren-compiler/node_modules/gren-lang/bin/compiler");
    vec![
        git::fetch_row(work, &server.url(""), &ten, 5),
        git::install_row(work, &server.url(""), &compiler, 1),
    ]
}

/// Starts and stops a registry on `dir` once, so that the measured start
/// reads the records from the page cache as a restart does (a directory
/// generated long ago may have been evicted: the machine's, not the
/// registry's, cost).
fn warm_up(binary: &Path, dir: &Path, mailer: &MailStub, work: &Path) {
    drop(RunningRegistry::start(
        binary,
        dir,
        &mailer.url(),
        &work.join("server-warm-up.log"),
    ));
}

/// Start-up and memory at `dir`'s size, and publish against the durable
/// write baseline, on a server of their own; and a publish's cost against
/// the package's versions.
fn store_rows(binary: &Path, dir: &Path, work: &Path, settings: &Settings) -> Vec<[String; 4]> {
    let mailer = MailStub::start();
    warm_up(binary, dir, &mailer, work);
    let started = Instant::now();
    let server = RunningRegistry::start(binary, dir, &mailer.url(), &work.join("server-store.log"));
    let startup = started.elapsed();
    let rss_after_start = server.rss_kib("VmRSS");
    let server = server.settle();
    let versions = settings.packages * VERSIONS_PER_PACKAGE;
    let (ours_ms, baseline_ms) = publish_vs_baseline(&server, work, settings.publishes);
    let peak = server.rss_kib("VmHWM");
    drop(server);
    vec![
        publish_row(settings.publishes, ours_ms, baseline_ms),
        publish_growth_row(work, binary, settings.growth_publishes),
        startup_row(versions, startup),
        memory_row(versions, rss_after_start, peak),
    ]
}

fn publish_row(publishes: usize, ours_ms: f64, baseline_ms: f64) -> [String; 4] {
    let ratio = ours_ms / baseline_ms;
    [
        format!("Publish, {publishes} sequential versions: median latency"),
        format!("{ours_ms:.2} ms"),
        format!("{baseline_ms:.2} ms (write+fsync+rename+fsync dir)"),
        format!(
            "ratio {ratio:.2} (target ≤ 2: {})",
            if ratio <= 2.0 { "met" } else { "missed" }
        ),
    ]
}

fn startup_row(versions: usize, startup: Duration) -> [String; 4] {
    [
        format!("Start-up with {versions} versions (spawn → listening)"),
        format!("{:.0} ms", startup.as_secs_f64() * 1000.0),
        "—".into(),
        format!(
            "target < 1 s: {}",
            if startup < Duration::from_secs(1) {
                "met"
            } else {
                "missed"
            }
        ),
    ]
}

fn memory_row(versions: usize, rss_after_start: u64, peak: u64) -> [String; 4] {
    [
        format!("Resident memory with {versions} versions"),
        format!(
            "{:.1} MB after start, {:.1} MB peak",
            rss_after_start as f64 / 1024.0,
            peak as f64 / 1024.0
        ),
        "—".into(),
        format!("target < 150 MB: {}", if peak < 150 * 1024 { "met" } else { "missed" }),
    ]
}
