//! The documented nginx front (docs/deploy/nginx.conf), run for real with a
//! self-signed certificate in front of the real binary: TLS, uploads and
//! downloads, the body cap, long-polls, and client addresses passed through
//! X-Forwarded-For. Needs nginx, openssl and curl (.ci/run installs nginx).

use crate::common::bundles::{real_bundle, real_bundles_dir};
use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOST: &str = "registry.gren-lang.org";

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

pub(crate) struct Nginx {
    child: Child,
    pub(crate) port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// The certificate of the CA that signed nginx's certificate.
    pub(crate) fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

fn openssl(args: &[&str], dir: &Path) {
    let made = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success(), "openssl {args:?} failed");
}

/// A certificate authority, as an organisation's internal one: `ca.pem` and
/// `ca.key` in `dir`; returns the certificate's path.
pub(crate) fn make_ca(dir: &Path) -> PathBuf {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=Test internal CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        dir,
    );
    dir.join("ca.pem")
}

/// A CA, and nginx's certificate (`cert.pem`, `key.pem`) signed by it, for
/// the documented host name and for 127.0.0.1 (which needs no resolver).
fn make_certificates(dir: &Path) {
    make_ca(dir);
    let extensions = format!(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n\
         subjectAltName=DNS:{HOST},DNS:localhost,IP:127.0.0.1\n"
    );
    std::fs::write(dir.join("leaf.ext"), extensions).unwrap();
    let subject = format!("/CN={HOST}");
    openssl(
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", &subject, "-keyout", "key.pem", "-out", "leaf.csr",
        ],
        dir,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "leaf.ext",
            "-out",
            "cert.pem",
        ],
        dir,
    );
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs docs/deploy/nginx.conf with only its ports, upstream and certificate
/// paths replaced; its certificate is signed by a CA of the test's
/// ([`Nginx::ca`]), as behind an organisation's internal CA.
pub(crate) fn start_nginx(binary: &Path, upstream: &str) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    make_certificates(dir.path());
    let (port, plain_port) = (free_port(), free_port());
    let documented = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploy/nginx.conf")).unwrap();
    let site = documented
        .replace("server 127.0.0.1:3000;", &format!("server {upstream};"))
        .replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"))
        .replace("listen 80;", &format!("listen 127.0.0.1:{plain_port};"))
        .replace(
            &format!("/etc/letsencrypt/live/{HOST}/fullchain.pem"),
            cert.to_str().unwrap(),
        )
        .replace(
            &format!("/etc/letsencrypt/live/{HOST}/privkey.pem"),
            key.to_str().unwrap(),
        );
    assert!(
        site.contains(&format!("listen 127.0.0.1:{port} ssl;")) && site.contains(cert.to_str().unwrap()),
        "the documented config changed shape"
    );
    let temp = dir.path().display();
    let config = format!(
        "worker_processes 1;\npid {temp}/nginx.pid;\nerror_log {temp}/error.log;\nevents {{}}\nhttp {{\n\
         access_log {temp}/access.log;\nclient_body_temp_path {temp}/body;\nproxy_temp_path {temp}/proxy;\n\
         fastcgi_temp_path {temp}/fastcgi;\nuwsgi_temp_path {temp}/uwsgi;\nscgi_temp_path {temp}/scgi;\n{site}\n}}\n"
    );
    let config_path = dir.path().join("nginx.conf");
    std::fs::write(&config_path, config).unwrap();
    let child = Command::new(binary)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&config_path)
        .args(["-g", "daemon off; master_process off;"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: {}",
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Nginx { child, port, dir }
}

/// `curl` over TLS through nginx, from the loopback address `from`.
fn curl(nginx: &Nginx, from: &str, args: &[&str]) -> (u16, Vec<u8>) {
    let out = nginx.dir.path().join(format!("body-{}", free_port()));
    let output = Command::new("curl")
        .args([
            "-s",
            "--noproxy",
            "*",
            "--max-time",
            "30",
            "--interface",
            from,
            "--cacert",
        ])
        .arg(nginx.ca())
        .arg("--resolve")
        .arg(format!("{HOST}:{}:127.0.0.1", nginx.port))
        .arg("-o")
        .arg(&out)
        .args(["-w", "%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(0);
    (status, std::fs::read(&out).unwrap_or_default())
}

fn url(nginx: &Nginx, path: &str) -> String {
    format!("https://{HOST}:{}{path}", nginx.port)
}

pub(crate) fn nginx_or_skip() -> Option<PathBuf> {
    let found = nginx_binary();
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have nginx: .ci/run installs it"
        );
        eprintln!("SKIPPED: nginx is not installed (apt-get install nginx-light, as .ci/run does)");
    }
    found
}

#[test]
fn the_documented_nginx_config_fronts_the_registry() {
    let Some(binary) = nginx_or_skip() else { return };
    let server = Server::with_env(&[
        ("GREN_REGISTRY_TRUSTED_PROXIES", "127.0.0.1"),
        ("GREN_REGISTRY_LOGIN_LIMIT_PER_IP", "1"),
    ]);
    let nginx = start_nginx(&binary, &server.addr.to_string());
    let (status, body) = curl(&nginx, "127.0.0.1", &[&url(&nginx, "/health")]);
    assert_eq!(
        (
            status,
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()["status"].clone()
        ),
        (200, "ok".into())
    );
    let token = server.login("me@example.com");
    assert_eq!(
        server
            .post_json(
                "/publishing-identity",
                &serde_json::json!({"name": "gren-lang"}),
                Some(&token)
            )
            .status,
        200
    );
    let auth = format!("Authorization: Bearer {token}");
    assert_a_bundle_goes_up_and_comes_back_byte_identical(&nginx, &auth);
    assert_nginx_refuses_bodies_over_the_bundle_cap(&nginx, &auth);
    assert_login_limits_see_the_real_client(&nginx);
    assert_long_polls_wait_behind_the_proxy(&nginx);
}

/// `POST <path>` of a JSON body through nginx, from `from`.
fn post_json_through(nginx: &Nginx, from: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
    curl(
        nginx,
        from,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            body,
            &url(nginx, path),
        ],
    )
}

/// `POST <path>` of a file's bytes through nginx, with `headers`.
fn post_file_through(nginx: &Nginx, headers: &[&str], file: &Path, path: &str) -> (u16, Vec<u8>) {
    let upload = format!("@{}", file.display());
    let mut args = vec!["-X", "POST"];
    for header in headers {
        args.extend(["-H", header]);
    }
    let url = url(nginx, path);
    args.extend(["--data-binary", &upload, &url]);
    curl(nginx, "127.0.0.1", &args)
}

/// Publish and download through the proxy.
fn assert_a_bundle_goes_up_and_comes_back_byte_identical(nginx: &Nginx, auth: &str) {
    let bundle_file = real_bundles_dir().join("gren_lang_core__7_0_0.pkg.gz");
    let headers = [auth, "Content-Type: application/gzip"];
    let (status, _) = post_file_through(nginx, &headers, &bundle_file, "/packages");
    assert_eq!(status, 201);
    let (status, body) = curl(
        nginx,
        "127.0.0.1",
        &[&url(nginx, "/packages/gren-lang/core/7.0.0/bundle")],
    );
    assert_eq!(status, 200);
    assert!(
        body == real_bundle("gren_lang_core__7_0_0.pkg.gz"),
        "the bundle comes through byte-identical"
    );
}

/// nginx refuses bodies over the registry's bundle cap itself.
fn assert_nginx_refuses_bodies_over_the_bundle_cap(nginx: &Nginx, auth: &str) {
    let big = nginx.dir.path().join("big.bin");
    std::fs::write(&big, vec![0u8; 11 * 1024 * 1024]).unwrap();
    let (status, _) = post_file_through(nginx, &[auth], &big, "/packages");
    assert_eq!(status, 413);
}

/// Per-IP login limits see the real client, not the proxy: one login each
/// from two addresses passes a limit of one, a second from the first does not.
fn assert_login_limits_see_the_real_client(nginx: &Nginx) {
    let login =
        |from: &str, email: &str| post_json_through(nginx, from, "/session", &format!("{{\"email\":\"{email}\"}}")).0;
    assert_eq!(login("127.0.0.2", "a@example.com"), 200);
    assert_eq!(login("127.0.0.3", "b@example.com"), 200);
    assert_eq!(login("127.0.0.2", "c@example.com"), 429);
}

/// Long-polls (up to 30 s, below proxy_read_timeout) wait behind the proxy.
fn assert_long_polls_wait_behind_the_proxy(nginx: &Nginx) {
    let (status, body) = post_json_through(nginx, "127.0.0.4", "/session", "{\"email\":\"poll@example.com\"}");
    assert_eq!(status, 200);
    let started: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let fetch = serde_json::json!({ "fetchSessionToken": started["fetchSessionToken"] }).to_string();
    let begun = Instant::now();
    let (status, body) = post_json_through(nginx, "127.0.0.4", "/session/fetch?wait=2", &fetch);
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    assert!(
        begun.elapsed() >= Duration::from_secs(2),
        "the long-poll waited behind the proxy"
    );
}

#[test]
fn uploads_the_registry_refuses_keep_their_status_through_nginx() {
    let Some(binary) = nginx_or_skip() else { return };
    let server = Server::with_env(&[("GREN_REGISTRY_TRUSTED_PROXIES", "127.0.0.1")]);
    let nginx = start_nginx(&binary, &server.addr.to_string());
    // Bodies over a megabyte, within nginx's cap: nginx buffers them, then
    // sends them on while the registry has already answered from the head.
    let big = nginx.dir.path().join("big.bin");
    std::fs::write(&big, vec![b' '; 9 << 20]).unwrap();
    let post = |path: &str, content_type: &str| {
        post_file_through(&nginx, &[&format!("Content-Type: {content_type}")], &big, path)
    };
    // Whether nginx is still sending when the registry closes depends on
    // timing: a few tries each.
    for attempt in 0..10 {
        for (path, content_type, status, code) in [
            ("/packages", "application/gzip", 401, "unauthorized"),
            ("/session", "application/json", 413, "body_too_large"),
        ] {
            let (answered, body) = post(path, content_type);
            let text = String::from_utf8_lossy(&body);
            let log = std::fs::read_to_string(nginx.dir.path().join("error.log")).unwrap_or_default();
            assert_eq!(
                answered, status,
                "POST {path} (try {attempt}): {text}\nnginx's log:\n{log}"
            );
            assert!(text.contains(code), "the registry's own answer: {text}");
        }
    }
}

/// The documented chain, client → nginx (TLS) → Varnish → registry, with
/// both proxies on 127.0.0.1 and trusted, and clients on other loopback
/// addresses: the registry sees each client (not nginx, whose address
/// Varnish appends last to `X-Forwarded-For`), and Varnish takes no purge
/// that came through nginx, although nginx's address is a purger's.
#[test]
fn behind_nginx_and_varnish_every_client_is_seen_and_only_the_registry_purges() {
    let Some(nginx_binary) = nginx_or_skip() else { return };
    let Some(varnish_binary) = crate::varnish::varnishd_or_skip() else {
        return;
    };
    let edge_port = free_port();
    let purge_url = format!("http://127.0.0.1:{edge_port}/.gren-registry/purge");
    let server = Server::with_env(&[
        ("GREN_REGISTRY_TRUSTED_PROXIES", "127.0.0.1"),
        ("GREN_REGISTRY_LOGIN_LIMIT_PER_EMAIL", "2"),
        ("GREN_REGISTRY_CACHE_PURGE_URLS", &purge_url),
        ("GREN_REGISTRY_CACHE_PURGE_SECRET", crate::cdn::PURGE_SECRET),
    ]);
    let varnish = crate::varnish::start_varnish(&varnish_binary, edge_port, server.addr);
    let nginx = start_nginx(&nginx_binary, &varnish.addr.to_string());
    let login =
        |from: &str, email: &str| post_json_through(&nginx, from, "/session", &format!("{{\"email\":\"{email}\"}}")).0;

    // Someone on 127.0.0.2 uses up the victim's logins from their network…
    assert_eq!(login("127.0.0.2", "victim@example.com"), 200);
    assert_eq!(login("127.0.0.2", "victim@example.com"), 200);
    assert_eq!(login("127.0.0.2", "victim@example.com"), 429);
    // …and the victim, on another network, still logs in.
    assert_eq!(
        login("127.0.0.3", "victim@example.com"),
        200,
        "one network locked out another"
    );
    let recorded = logins_recorded_from(&server);
    assert!(
        recorded.contains("127.0.0.3") && !recorded.contains("127.0.0.1"),
        "login records name the real clients: {recorded}"
    );

    // A purge with the secret from a client, through nginx: refused by Varnish.
    let purge = |from: &str| {
        curl(
            &nginx,
            from,
            &[
                "-X",
                "POST",
                "-H",
                "Surrogate-Key: listings",
                "-H",
                &format!("X-Purge-Secret: {}", crate::cdn::PURGE_SECRET),
                &url(&nginx, "/.gren-registry/purge"),
            ],
        )
    };
    let (status, body) = purge("127.0.0.2");
    assert_eq!(status, 403, "a purge through nginx: {}", String::from_utf8_lossy(&body));
    let (status, _) = purge("127.0.0.1");
    assert_eq!(status, 403, "even from nginx's own host");
    // The registry's own purges, straight to Varnish, still go through.
    let direct = std::process::Command::new("curl")
        .args([
            "-s",
            "--noproxy",
            "*",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
        ])
        .args(["-H", "Surrogate-Key: listings", "-H"])
        .arg(format!("X-Purge-Secret: {}", crate::cdn::PURGE_SECRET))
        .arg(&purge_url)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&direct.stdout), "200");
}

/// The client addresses of the logins in the server's data directory.
fn logins_recorded_from(server: &Server) -> String {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(server.data_dir.join("logins")).unwrap() {
        let record: serde_json::Value = serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        found.push(record["client_ip"].as_str().unwrap_or_default().to_string());
    }
    found.join(" ")
}
