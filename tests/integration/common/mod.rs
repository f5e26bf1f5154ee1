//! Test harness: runs the real `gren-registry serve` binary in a child process
//! against a temporary data directory and a local Postmark stub, and talks
//! HTTP/1.1 to it over raw TCP (so every header and byte is under the test's
//! control).

pub mod bundles;
pub mod disk;
pub mod operator;
pub mod proofs;

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a started server may take to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `stop` waits for the process after SIGTERM before killing it.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Read timeout of the test's HTTP client (long polls in tests wait ≤ 10 s).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
pub const USER_AGENT: &str = "gren-registry-tests/1";
/// An environment value meaning "leave the variable unset", so that a test can
/// run the registry with its built-in default where the harness sets one.
pub const UNSET: &str = "\0unset";

/// The identity names test servers reserve unless a test says otherwise: the
/// registry's default without `gren-lang`. The registry reserves that one for
/// operators, but the tests play the Gren team publishing the real fixture
/// bundles (`gren-lang/core`, …) through the API, with a fresh server each.
/// `packages.rs` checks the real default with [`UNSET`].
pub fn test_reserved_identities() -> String {
    gren_registry_http::config::DEFAULT_RESERVED
        .split(',')
        .map(str::trim)
        .filter(|name| *name != "gren-lang")
        .collect::<Vec<_>>()
        .join(",")
}

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub postmark: PostmarkStub,
    child: Option<Child>,
    log: ChildLog,
    _dir: Option<tempfile::TempDir>,
}

/// Why a server did not come up.
#[derive(Debug)]
pub struct StartFailure {
    /// The exit status, when the process ended.
    pub status: Option<ExitStatus>,
    pub log: String,
}

impl Server {
    pub fn start() -> Server {
        Server::with_env(&[])
    }

    pub fn with_env(env: &[(&str, &str)]) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("gren-registry-test-")
            .tempdir()
            .expect("cannot create a temporary data directory");
        let mut server = Server::start_in(dir.path(), env);
        server._dir = Some(dir);
        server
    }

    /// Like [`Server::with_env`], on a new data directory that `setup`
    /// prepares first (operator commands, say) and that the server owns.
    pub fn with_setup(env: &[(&str, &str)], setup: impl FnOnce(&Path)) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("gren-registry-test-")
            .tempdir()
            .expect("cannot create a temporary data directory");
        setup(dir.path());
        let mut server = Server::start_in(dir.path(), env);
        server._dir = Some(dir);
        server
    }

    /// Starts a server on an existing data directory, which it does not own.
    pub fn start_in(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        match Server::try_start_in(data_dir, env) {
            Ok(server) => server,
            Err(failure) => panic!(
                "the registry did not start (exit status {:?}); its log:\n{}",
                failure.status, failure.log
            ),
        }
    }

    /// Like [`Server::start_in`], but a server that exits or never listens is
    /// an `Err` rather than a panic.
    pub fn try_start_in(data_dir: &Path, env: &[(&str, &str)]) -> Result<Server, StartFailure> {
        Server::try_start_with_umask(data_dir, env, None)
    }

    /// Like [`Server::try_start_in`], the process running under `umask`
    /// (`"000"`, say) when one is given.
    pub fn try_start_with_umask(
        data_dir: &Path,
        env: &[(&str, &str)],
        umask: Option<&str>,
    ) -> Result<Server, StartFailure> {
        let postmark = PostmarkStub::start();
        let mut command = serve_command(umask);
        clear_registry_env(&mut command);
        command
            .env("GREN_REGISTRY_DATA_DIR", data_dir)
            .env("GREN_REGISTRY_LISTEN", "127.0.0.1:0")
            .env("POSTMARK_SERVER_TOKEN", "test-server-token")
            .env("GREN_REGISTRY_POSTMARK_URL", postmark.url())
            .env("GREN_REGISTRY_RESERVED_IDENTITIES", test_reserved_identities())
            .env("NO_PROXY", "*");
        for (key, value) in env {
            if *value == UNSET {
                command.env_remove(key);
            } else {
                command.env(key, value);
            }
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("cannot run the gren-registry binary");
        let log = ChildLog::collect(child.stderr.take().expect("stderr is piped"));
        let addr = wait_until_listening(&mut child, &log)?;
        Ok(Server {
            base: format!("http://{addr}"),
            addr,
            data_dir: data_dir.to_path_buf(),
            postmark,
            child: Some(child),
            log,
            _dir: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the child is running").id()
    }

    /// SIGTERM, then wait (killing after 10 s); returns the exit status.
    pub fn stop(self) -> ExitStatus {
        self.stop_with_log().0
    }

    /// Like [`Server::stop`], also returning the complete log.
    pub fn stop_with_log(self) -> (ExitStatus, String) {
        self.signal("TERM");
        self.wait_with_log(STOP_TIMEOUT)
    }

    /// Sends a signal (`"TERM"`, `"INT"`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    /// Waits up to `timeout` for the process to exit by itself (then kills it);
    /// returns the exit status and the complete log.
    pub fn wait_with_log(mut self, timeout: Duration) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("the child is running");
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = child.kill();
                    break child.wait().expect("cannot wait for the registry");
                }
            }
        };
        self.log.wait_for_the_end();
        (status, self.log())
    }

    /// SIGKILL.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything the child wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// Waits up to `timeout` for the log to contain `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the process is still running (not exited, not a zombie).
    pub fn is_alive(&self) -> bool {
        match proc_stat_state(self.pid()) {
            Some(state) => state != 'Z' && state != 'X',
            None => false,
        }
    }

    /// The `Threads:` count of the process.
    pub fn threads(&self) -> usize {
        proc_status_number(self.pid(), "Threads:").expect("cannot read Threads from /proc") as usize
    }

    /// Waits up to `within` for the thread count to fall to `threads` (threads
    /// of closed connections end a moment later); returns the last count seen.
    pub fn threads_down_to(&self, threads: usize, within: Duration) -> usize {
        self.wait_for_threads(within, |now| now <= threads)
    }

    fn wait_for_threads(&self, within: Duration, enough: impl Fn(usize) -> bool) -> usize {
        self.wait_for_count(within, Server::threads, enough)
    }

    /// The number of files (sockets included) the process has open.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("cannot read the process's open files from /proc")
            .count()
    }

    /// Waits up to `within` for the open files to reach `files` (connections
    /// are accepted a moment after the client connects); returns the last
    /// count seen.
    pub fn open_files_up_to(&self, files: usize, within: Duration) -> usize {
        self.wait_for_count(within, Server::open_files, |now| now >= files)
    }

    /// Waits up to `within` for the open files to fall to `files` (a
    /// connection's slot and socket go a moment after its client closed
    /// it); returns the last count seen.
    pub fn open_files_down_to(&self, files: usize, within: Duration) -> usize {
        self.wait_for_count(within, Server::open_files, |now| now <= files)
    }

    fn wait_for_count(&self, within: Duration, count: fn(&Server) -> usize, enough: impl Fn(usize) -> bool) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let now = count(self);
            if enough(now) || Instant::now() >= deadline {
                return now;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The resident set size in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_number(self.pid(), "VmRSS:").expect("cannot read VmRSS from /proc")
    }

    /// The peak resident set size so far (the kernel's high-water mark), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_number(self.pid(), "VmHWM:").expect("cannot read VmHWM from /proc")
    }

    // ---- HTTP -------------------------------------------------------------

    /// A fresh TCP connection to the server, with a read timeout.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("cannot connect to the registry");
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        let _ = stream.set_nodelay(true);
        stream
    }

    pub fn conn(&self) -> HttpConn {
        HttpConn::new(self.connect())
    }

    /// A fresh TCP connection from the loopback address `from` (any address
    /// of 127/8 reaches the server), so that a test can be another client.
    pub fn connect_from(&self, from: Ipv4Addr) -> TcpStream {
        let options = SocketOptions {
            from: Some(from),
            ..SocketOptions::default()
        };
        let stream = connect_with(self.addr, options).unwrap_or_else(|err| panic!("cannot connect from {from}: {err}"));
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        let _ = stream.set_nodelay(true);
        stream
    }

    /// An idle connection the server holds a slot for (from `from`, or
    /// 127.0.0.1): one that is refused at once, because earlier connections
    /// have not given their slots back yet, is retried for up to 3 s.
    pub fn hold_connection(&self, from: Option<Ipv4Addr>) -> HttpConn {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let stream = match from {
                Some(from) => self.connect_from(from),
                None => self.connect(),
            };
            let mut conn = HttpConn::new(stream);
            conn.stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            match conn.read_response(false) {
                Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    conn.stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
                    return conn;
                }
                answered => assert!(
                    Instant::now() < deadline,
                    "the server does not hold a new connection: {answered:?}"
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.request("GET", path, None, token)
    }

    pub fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.request("DELETE", path, None, token)
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value, token: Option<&str>) -> Reply {
        self.request("POST", path, Some(body), token)
    }

    pub fn put_json(&self, path: &str, body: &serde_json::Value, token: Option<&str>) -> Reply {
        self.request("PUT", path, Some(body), token)
    }

    pub fn patch_json(&self, path: &str, body: &serde_json::Value, token: Option<&str>) -> Reply {
        self.request("PATCH", path, Some(body), token)
    }

    /// `POST /packages` with a bundle, as `gren package publish` sends it.
    pub fn publish(&self, token: &str, bundle: &[u8]) -> Reply {
        let bearer = format!("Bearer {token}");
        let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/gzip")];
        self.send("POST", "/packages", &headers, bundle)
    }

    /// A form POST (`application/x-www-form-urlencoded`), as a browser sends it.
    pub fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send(
            "POST",
            path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
    }

    fn request(&self, method: &str, path: &str, body: Option<&serde_json::Value>, token: Option<&str>) -> Reply {
        let bearer = token.map(|token| format!("Bearer {token}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(bearer) = &bearer {
            headers.push(("Authorization", bearer));
        }
        let bytes = match body {
            Some(body) => {
                headers.push(("Content-Type", "application/json"));
                serde_json::to_vec(body).unwrap()
            }
            None => Vec::new(),
        };
        self.send(method, path, &headers, &bytes)
    }

    /// One request on a fresh connection. `Host`, `User-Agent`, `Connection:
    /// close` and `Content-Length` are added unless given in `headers`
    /// (Content-Length only for a body or a method that carries one).
    /// Interim (1xx) responses are skipped.
    pub fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        self.send_on(self.conn(), method, path, headers, body)
    }

    /// Like [`Server::send`], from the loopback address `from`.
    pub fn send_from(&self, from: Ipv4Addr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        self.send_on(HttpConn::new(self.connect_from(from)), method, path, headers, body)
    }

    fn send_on(&self, conn: HttpConn, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        send_request(conn, &self.addr.to_string(), method, path, headers, body)
    }

    /// The package listing at `path` (`/packages`, or a query of it) as
    /// package name → latest version.
    #[track_caller]
    pub fn listing(&self, path: &str, token: Option<&str>) -> BTreeMap<String, String> {
        let reply = self.get(path, token);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        reply.json()["packages"]
            .as_array()
            .expect("packages is an array")
            .iter()
            .map(|entry| {
                (
                    entry["name"].as_str().unwrap().to_string(),
                    entry["latest"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// A full code login via the Postmark stub; returns the `gren_` token.
    pub fn login(&self, email: &str) -> String {
        let started = self.post_json("/session", &serde_json::json!({ "email": email }), None);
        assert_eq!(started.status, 200, "POST /session: {}", started.text());
        let started = started.json();
        let fetch = started["fetchSessionToken"].as_str().unwrap().to_string();
        let phrase = started["verification"].as_str().unwrap().to_string();
        let mail = self
            .postmark
            .wait_for_message(|mail| mail.text_body().contains(&format!("\"{phrase}\"")));
        let fetched = self.post_json(
            "/session/fetch",
            &serde_json::json!({
                "fetchSessionToken": fetch,
                "emailConfirmationCode": mail.code(),
            }),
            None,
        );
        assert_eq!(fetched.status, 200, "POST /session/fetch: {}", fetched.text());
        fetched.json()["sessionToken"].as_str().unwrap().to_string()
    }

    /// Makes `email` a member of `identity` with `role` the way people join:
    /// an admin invites them, they log in and accept. Returns their token.
    #[track_caller]
    pub fn add_member(&self, identity: &str, admin_token: &str, email: &str, role: &str) -> String {
        let path = format!("/publishing-identity/{identity}/members/{email}");
        let invited = self.put_json(&path, &serde_json::json!({ "role": role }), Some(admin_token));
        assert_eq!(
            invited.status,
            202,
            "inviting {email} to {identity}: {}",
            invited.text()
        );
        let token = self.login(email);
        let accepted = self.request(
            "POST",
            &format!("/publishing-identity/{identity}/invitation"),
            None,
            Some(&token),
        );
        assert_eq!(
            accepted.status,
            200,
            "{email} accepting {identity}: {}",
            accepted.text()
        );
        assert_eq!(accepted.json()["role"], role, "{}", accepted.text());
        token
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One request on `conn` to the server known as `host` (see [`Server::send`]
/// for the headers added): for the registry and for proxies in front of it.
pub fn send_request(
    mut conn: HttpConn,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let given = |name: &str| headers.iter().any(|(key, _)| key.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !given("host") {
        head.push_str(&format!("Host: {host}\r\n"));
    }
    if !given("user-agent") {
        head.push_str(&format!("User-Agent: {USER_AGENT}\r\n"));
    }
    if !given("connection") {
        head.push_str("Connection: close\r\n");
    }
    if !given("content-length")
        && !given("transfer-encoding")
        && (!body.is_empty() || !matches!(method, "GET" | "HEAD"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (key, value) in headers {
        head.push_str(&format!("{key}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut message = head.into_bytes();
    message.extend_from_slice(body);
    conn.stream
        .write_all(&message)
        .unwrap_or_else(|err| panic!("cannot send {method} {path}: {err}"));
    loop {
        let reply = conn
            .read_response(method == "HEAD")
            .unwrap_or_else(|err| panic!("no response to {method} {path}: {err}"));
        if !(100..200).contains(&reply.status) {
            return reply;
        }
    }
}

/// A loopback port nobody listens on (for a proxy a test starts).
/// Seconds since 1970, as signatures and credential expiries count them.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `gren-registry serve`, under `umask` when one is given.
fn serve_command(umask: Option<&str>) -> Command {
    let binary = env!("CARGO_BIN_EXE_gren-registry");
    match umask {
        // `exec` keeps the process id, so signals reach the registry.
        Some(umask) => {
            let mut shell = Command::new("sh");
            shell.args(["-c", "umask \"$1\" && exec \"$2\" serve", "sh", umask, binary]);
            shell
        }
        None => {
            let mut command = Command::new(binary);
            command.arg("serve");
            command
        }
    }
}

/// Waits for the `listening on` line; a process that exits first, or does
/// not listen within [`START_TIMEOUT`], is a [`StartFailure`].
fn wait_until_listening(child: &mut Child, log: &ChildLog) -> Result<SocketAddr, StartFailure> {
    let started = Instant::now();
    loop {
        if let Some(addr) = listening_address(&log.text()) {
            return Ok(addr);
        }
        if let Ok(Some(status)) = child.try_wait() {
            log.wait_for_the_end();
            return Err(StartFailure {
                status: Some(status),
                log: log.text(),
            });
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(StartFailure {
                status: None,
                log: log.text(),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a child writes to standard error, collected line by line by a thread.
struct ChildLog {
    text: Arc<Mutex<String>>,
    ended: Arc<AtomicBool>,
}

impl ChildLog {
    fn collect(stderr: std::process::ChildStderr) -> ChildLog {
        let log = ChildLog {
            text: Arc::default(),
            ended: Arc::default(),
        };
        let (text, ended) = (log.text.clone(), log.ended.clone());
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => text.lock().unwrap().push_str(&String::from_utf8_lossy(&line)),
                }
            }
            ended.store(true, Ordering::SeqCst);
        });
        log
    }

    fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Lets the reader take in what an ended process wrote (at most 2 s).
    fn wait_for_the_end(&self) {
        let drained = Instant::now();
        while !self.ended.load(Ordering::SeqCst) && drained.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn listening_address(log: &str) -> Option<SocketAddr> {
    let start = log.find("listening on http://")? + "listening on http://".len();
    let rest = &log[start..];
    let end = rest.find(|c: char| c.is_whitespace())?;
    rest[..end].parse().ok()
}

/// The binary where any user can run it, for tests that run it as another
/// user than the one running the tests: the build's own may lie below a
/// directory only its owner can enter (a clone under `/root`, or in a
/// `mktemp -d`). A hard link (a copy on another file system) in a new
/// temporary directory opened to all, removed when this is dropped.
pub struct BinaryForOthers {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl BinaryForOthers {
    #[track_caller]
    pub fn new() -> BinaryForOthers {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("gren-registry-bin-")
            .tempdir()
            .expect("cannot create a temporary directory");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        if let Some(closed) = dir
            .path()
            .ancestors()
            .find(|ancestor| std::fs::metadata(ancestor).is_ok_and(|meta| meta.permissions().mode() & 0o001 == 0))
        {
            panic!(
                "{} cannot be entered by other users, so the binary cannot be given to one: \
                 set TMPDIR to a directory every user can reach",
                closed.display()
            );
        }
        let built = Path::new(env!("CARGO_BIN_EXE_gren-registry"));
        let path = dir.path().join("gren-registry");
        if std::fs::hard_link(built, &path).is_err() {
            std::fs::copy(built, &path).expect("cannot copy the binary");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        BinaryForOthers { path, _dir: dir }
    }
}

/// Gives `path` and everything below it to `uid`.
pub fn chown_tree(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid);
        }
    }
}

/// Takes the registry's variables (and proxies) out of a child's environment,
/// so that the developer's shell cannot change what a test sees; and `CI`,
/// with which the client's advice is for a CI job rather than a person,
/// and `SSL_CERT_FILE`, which changes whom the client trusts.
pub fn clear_registry_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy().to_ascii_uppercase();
        if name.starts_with("GREN_REGISTRY_")
            || name.starts_with("POSTMARK_")
            || name.ends_with("_PROXY")
            || name == "CI"
            || name == "SSL_CERT_FILE"
        {
            command.env_remove(&key);
        }
    }
}

pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// What [`connect_with`] sets on a client socket before it connects.
#[derive(Debug, Clone, Copy, Default)]
pub struct SocketOptions {
    /// The local address (any of 127/8 reaches a loopback server).
    pub from: Option<Ipv4Addr>,
    /// `SO_RCVBUF`: a small one makes a client that stops reading push back
    /// on the server at once, instead of the kernel taking megabytes for it.
    pub receive_buffer: Option<usize>,
}

/// A TCP connection to `to` with `options`, which std cannot set before
/// connecting, so this goes through libc.
pub fn connect_with(to: SocketAddr, options: SocketOptions) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(to) = to else {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "IPv4 only"));
    };
    let address = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let remote = address(*to.ip(), to.port());
    let length = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let failed = |result: libc::c_int| {
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // SAFETY: plain socket calls on a descriptor this function owns (the
    // `TcpStream` closes it on every path), with arguments that outlive them.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        if let Some(bytes) = options.receive_buffer {
            let bytes = bytes as libc::c_int;
            let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            failed(libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&raw const bytes).cast(),
                size,
            ))?;
        }
        if let Some(from) = options.from {
            let local = address(from, 0);
            failed(libc::bind(fd, (&raw const local).cast(), length))?;
        }
        failed(libc::connect(fd, (&raw const remote).cast(), length))?;
        Ok(stream)
    }
}

fn proc_status_number(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

fn proc_stat_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": the state follows the last ')'.
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1 client
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("the {} response is not JSON ({err}): {:?}", self.status, self.text()))
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `Retry-After` header, which must be there, as whole seconds.
    #[track_caller]
    pub fn retry_after(&self) -> u64 {
        let value = self
            .header("retry-after")
            .unwrap_or_else(|| panic!("no Retry-After in {self:?}"));
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("Retry-After is not whole seconds: {value:?}"))
    }

    /// Asserts a JSON error response: status, `error` code, a message and
    /// `Content-Type: application/json`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "status; body: {}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "an error is JSON: {self:?}"
        );
        let json = self.json();
        assert_eq!(json["error"], code, "error code in {json}");
        assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "an error has a message: {json}"
        );
    }
}

/// A connection that can carry several requests (keep-alive, pipelining).
pub struct HttpConn {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

impl HttpConn {
    pub fn new(stream: TcpStream) -> HttpConn {
        HttpConn {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Bytes received but not yet part of a returned response.
    pub fn leftover(&self) -> &[u8] {
        &self.buffer
    }

    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        // A signal delivered to the test process (a child's end, say) can
        // interrupt a long read: that is no answer, so read again.
        let n = loop {
            match self.stream.read(&mut chunk) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                read => break read?,
            }
        };
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one response (a 1xx included). A body without `Content-Length`
    /// runs to the end of the stream. If the connection breaks after a complete
    /// head, the bytes received so far are the body.
    pub fn read_response(&mut self, head_only: bool) -> io::Result<Reply> {
        let (status, headers, head_length) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut slots);
            match parsed.parse(&self.buffer) {
                Ok(httparse::Status::Complete(length)) => {
                    let headers = parsed
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect::<Vec<_>>();
                    break (parsed.code.unwrap_or(0), headers, length);
                }
                Ok(httparse::Status::Partial) => {}
                Err(err) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "not an HTTP response ({err}): {:?}",
                            String::from_utf8_lossy(&self.buffer)
                        ),
                    ));
                }
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before a complete response head: {:?}",
                        String::from_utf8_lossy(&self.buffer)
                    ),
                ));
            }
        };
        self.buffer.drain(..head_length);
        let length = headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.trim().parse::<usize>().ok());
        let no_body = head_only || (100..200).contains(&status) || status == 204 || status == 304;
        let body = if no_body {
            Vec::new()
        } else if let Some(length) = length {
            while self.buffer.len() < length {
                match self.fill() {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let rest = self.buffer.split_off(length.min(self.buffer.len()));
            std::mem::replace(&mut self.buffer, rest)
        } else {
            loop {
                match self.fill() {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            std::mem::take(&mut self.buffer)
        };
        Ok(Reply { status, headers, body })
    }

    /// Whether the peer has closed the connection (EOF or reset) within
    /// `timeout`, after any pending bytes.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let _ = self.stream.set_read_timeout(Some(left));
            match self.fill() {
                Ok(0) => return true,
                Ok(_) => {}
                Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Stub servers: Postmark here, the packages site in packages.rs
// ---------------------------------------------------------------------------

/// What a stub server received: method, path, headers and body.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// The value of the first header called `name` (case-insensitive).
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// What a stub answers.
pub type StubResponse = tiny_http::Response<io::Cursor<Vec<u8>>>;

/// A local HTTP server on 127.0.0.1 whose one thread hands each request,
/// read whole, to `answer`; it stops when dropped.
pub struct StubServer {
    server: Arc<tiny_http::Server>,
    url: String,
    thread: Option<JoinHandle<()>>,
}

impl StubServer {
    pub fn start(what: &str, answer: impl Fn(Received) -> StubResponse + Send + 'static) -> StubServer {
        let server =
            tiny_http::Server::http("127.0.0.1:0").unwrap_or_else(|err| panic!("cannot start the {what}: {err}"));
        let server = Arc::new(server);
        let addr = server.server_addr().to_ip().expect("the stub listens on IP");
        let thread = {
            let server = server.clone();
            std::thread::spawn(move || {
                for mut request in server.incoming_requests() {
                    let response = answer(receive(&mut request));
                    let _ = request.respond(response);
                }
            })
        };
        StubServer {
            server,
            url: format!("http://{addr}"),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads a request a `tiny_http` stub received, body included.
fn receive(request: &mut tiny_http::Request) -> Received {
    let mut body = Vec::new();
    let _ = request.as_reader().read_to_end(&mut body);
    Received {
        method: request.method().as_str().to_string(),
        path: request.url().to_string(),
        headers: request
            .headers()
            .iter()
            .map(|h| (h.field.as_str().to_string(), h.value.as_str().to_string()))
            .collect(),
        body,
    }
}

/// One request the Postmark stub received.
#[derive(Debug, Clone)]
pub struct CapturedMail {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` if it was not JSON).
    pub json: serde_json::Value,
}

impl CapturedMail {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    pub fn text_body(&self) -> &str {
        self.json["TextBody"].as_str().unwrap_or("")
    }

    pub fn html_body(&self) -> &str {
        self.json["HtmlBody"].as_str().unwrap_or("")
    }

    /// The code as shown, `XXXX-XXXX`.
    pub fn code(&self) -> String {
        self.text_line_after("Your confirmation code is: ")
    }

    /// The magic link URL.
    pub fn link(&self) -> String {
        self.text_line_after("Or confirm in your browser: ")
    }

    /// The `token` parameter of the magic link.
    pub fn link_token(&self) -> String {
        let link = self.link();
        let start = link.find("token=").expect("the link has a token") + "token=".len();
        link[start..].to_string()
    }

    fn text_line_after(&self, prefix: &str) -> String {
        self.text_body()
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in {:?}", self.text_body()))
            .trim()
            .to_string()
    }
}

#[derive(Default)]
struct StubState {
    requests: Mutex<Vec<CapturedMail>>,
    failing: AtomicBool,
    /// The `Message` of the failing answers, when not the usual one.
    failure_message: Mutex<Option<String>>,
}

/// A Postmark `POST /email` endpoint on 127.0.0.1 that records everything.
pub struct PostmarkStub {
    stub: StubServer,
    state: Arc<StubState>,
}

impl PostmarkStub {
    pub fn start() -> PostmarkStub {
        let state = Arc::new(StubState::default());
        let stub = {
            let state = state.clone();
            StubServer::start("Postmark stub", move |received| state.answer(received))
        };
        PostmarkStub { stub, state }
    }

    pub fn url(&self) -> String {
        self.stub.url()
    }

    /// Every request received so far, whatever its method and path.
    pub fn requests(&self) -> Vec<CapturedMail> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Every `POST /email` received so far (answered 200 or, when failing, 422).
    pub fn messages(&self) -> Vec<CapturedMail> {
        self.requests()
            .into_iter()
            .filter(|mail| mail.method == "POST" && mail.path == "/email")
            .collect()
    }

    /// The newest message to `to`, waiting up to 5 s.
    pub fn wait_for_message_to(&self, to: &str) -> CapturedMail {
        self.wait_for_message(|mail| mail.json["To"] == to)
    }

    /// The newest message matching `matches`, waiting up to 5 s.
    pub fn wait_for_message(&self, matches: impl Fn(&CapturedMail) -> bool) -> CapturedMail {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(mail) = self.messages().into_iter().rev().find(|m| matches(m)) {
                return mail;
            }
            if Instant::now() >= deadline {
                panic!("no matching e-mail within 5 s; received: {:#?}", self.messages());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// When failing, `POST /email` answers 422 with Postmark's error shape.
    pub fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    /// Fails like [`PostmarkStub::set_failing`], with `message` as Postmark's reason.
    pub fn fail_with(&self, message: &str) {
        *self.state.failure_message.lock().unwrap() = Some(message.to_string());
        self.set_failing(true);
    }
}

impl StubState {
    /// Records a request and answers as Postmark does.
    fn answer(&self, received: Received) -> StubResponse {
        let captured = CapturedMail {
            json: received.json(),
            method: received.method,
            path: received.path,
            headers: received.headers,
        };
        let is_email = captured.method == "POST" && captured.path == "/email";
        let to = captured.json["To"].clone();
        self.requests.lock().unwrap().push(captured);
        let (status, answer) = if !is_email {
            (404, serde_json::json!({"ErrorCode": 404, "Message": "Not found"}))
        } else if self.failing.load(Ordering::SeqCst) {
            let message = self.failure_message.lock().unwrap().clone();
            let message = message.unwrap_or_else(|| "Invalid email request".to_string());
            (422, serde_json::json!({"ErrorCode": 300, "Message": message}))
        } else {
            (
                200,
                serde_json::json!({
                    "To": to,
                    "SubmittedAt": "2024-01-01T00:00:00.0000000Z",
                    "MessageID": "b7bc2f4a-e38e-4336-af7d-e6c392c2f817",
                    "ErrorCode": 0,
                    "Message": "OK",
                }),
            )
        };
        let json_header = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]).unwrap();
        tiny_http::Response::from_string(answer.to_string())
            .with_status_code(status)
            .with_header(json_header)
    }
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

/// Every regular file below `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(path),
                Ok(kind) if kind.is_file() => files.push(path),
                _ => {}
            }
        }
    }
    files.sort();
    files
}

/// The files below `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|path| {
            std::fs::read(path).is_ok_and(|bytes| {
                bytes
                    .windows(needle.len().max(1))
                    .any(|window| window == needle.as_bytes())
            })
        })
        .collect()
}

/// The version numbers a package's record lists, in its order.
pub fn version_numbers(record: &serde_json::Value) -> Vec<&str> {
    record["versions"]
        .as_array()
        .unwrap_or_else(|| panic!("no versions in {record}"))
        .iter()
        .map(|entry| entry["version"].as_str().unwrap())
        .collect()
}

/// Marks a directory a test fills by hand as being in this release's data
/// format (`format.json`), as the registry does when it first opens one;
/// records planted without it look like an older format's. It gets the
/// `registry.lock` every data directory has too: without it, files in a
/// directory make it a partial copy, which the registry refuses.
pub fn stamp_current_format(dir: &Path) {
    std::fs::write(dir.join("registry.lock"), b"").unwrap();
    std::fs::write(dir.join("format.json"), b"{\"format\": 3}\n").unwrap();
}

/// A JSON file's contents.
#[track_caller]
pub fn read_json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|err| panic!("{} is not JSON: {err}", path.display()))
}

/// Writes `value` pretty-printed, as the registry writes its records.
pub fn write_json(path: &Path, value: &serde_json::Value) {
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

/// A plain recursive copy of a data directory or a snapshot (new inodes, as
/// a backup restored elsewhere has), which holds only files and directories.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).unwrap();
        } else {
            panic!(
                "a data directory holds only files and directories: {}",
                entry.path().display()
            );
        }
    }
}

/// Replaces a file's contents atomically (temp file + rename), so a server
/// reading it concurrently never sees half a file.
pub fn replace_file(path: &Path, bytes: &[u8]) {
    let temp = path.with_file_name(format!(".edit-{}", path.file_name().unwrap().to_string_lossy()));
    std::fs::write(&temp, bytes).unwrap();
    std::fs::rename(&temp, path).unwrap();
}
