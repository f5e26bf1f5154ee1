//! What the client says when something goes wrong, through the real binary:
//! what happened and one thing to do. A registry URL that cannot be one is
//! refused before any request; a connection lost during an upload leaves
//! the publish unknown and says that running it again is safe; a refused
//! token says once what to do; arguments of the wrong shape are named.

use crate::client::{Cli, project_of, text};
use crate::common::*;
use std::io::Read;
use std::net::TcpListener;
use std::process::{Output, Stdio};
use std::time::Duration;

/// `args` with `GREN_REGISTRY_URL` set to `url` and `token` as the
/// automation token, nothing typed.
fn run_at(cli: &Cli, url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = cli.command(args);
    command.env("GREN_REGISTRY_URL", url).stdin(Stdio::null());
    if let Some(token) = token {
        command.env("GREN_REGISTRY_TOKEN", token);
    }
    command.output().unwrap()
}

fn failed(output: &Output) -> String {
    assert!(!output.status.success(), "should fail:\n{}", text(&output.stdout));
    text(&output.stderr)
}

#[test]
fn a_connection_lost_during_an_upload_says_the_publish_may_have_happened_and_running_it_again_is_safe() {
    // A "registry" that reads the request's head and a little of the
    // bundle, then hangs up.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let cutter = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut some = vec![0u8; 2048];
        let read = stream.read(&mut some).unwrap();
        assert!(
            text(&some[..read]).starts_with("POST /packages"),
            "{}",
            text(&some[..read])
        );
    });
    let server = Server::start();
    let cli = Cli::new(&server);
    let project = project_of("gren_lang_core__7_0_0.pkg.gz");
    let publish = ["publish", project.path().to_str().unwrap()];
    let stderr = failed(&run_at(&cli, &url, Some("gren_token_x"), &publish));
    cutter.join().unwrap();
    assert!(
        stderr.contains(&format!("The connection to the registry at {url} was lost"))
            && stderr.contains("The publish may or may not have happened; running it again is safe"),
        "{stderr}"
    );

    // Nothing listening: nothing was sent, and it says so instead.
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let stderr = failed(&run_at(&cli, &nobody, Some("gren_token_x"), &publish));
    assert!(
        stderr.contains(&format!("Cannot reach the registry at {nobody}")) && !stderr.contains("may or may not"),
        "{stderr}"
    );
}

#[test]
fn a_registry_url_that_cannot_be_one_is_refused_before_any_request_as_a_url_problem() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = Server::start();
    let cli = Cli::new(&server);
    let cases = [
        (
            address.clone(),
            format!("it has no scheme. Give it with one, such as https://{address}"),
        ),
        (
            format!("ftp://{address}"),
            "ftp:// is not a way to reach a registry".to_string(),
        ),
        (
            format!("http://{address}/packages/gren-lang/core"),
            format!(
                "it names something under the registry at http://{address}. Give the registry's own URL: --registry http://{address}."
            ),
        ),
    ];
    for (url, says) in &cases {
        for args in [vec!["whoami"], vec!["whoami", "--registry", url.as_str()]] {
            let stderr = failed(&run_at(&cli, url, None, &args));
            assert!(
                stderr.contains(&format!("{url:?} is not a registry URL: {says}")),
                "{url} {args:?}: {stderr}"
            );
        }
    }
    assert!(listener.accept().is_err(), "no request was made");

    // https:// to a registry that serves plain HTTP.
    let https = server.base.replacen("http://", "https://", 1);
    let stderr = failed(&run_at(&cli, &https, Some("gren_token_x"), &["whoami"]));
    assert!(
        stderr.contains(&format!(
            "{https:?} is not a registry URL for this server: it does not speak TLS there."
        )) && stderr.contains(&format!("Use {} if it serves plain HTTP.", server.base)),
        "{stderr}"
    );
}

#[test]
fn a_refused_token_says_what_to_do_once() {
    let server = Server::start();
    let cli = Cli::new(&server);
    cli.login(&server, "me@example.com");
    let stored = read_json(&cli.credentials());
    let session = stored[0]["token"].as_str().unwrap();
    cli.ok(&["identity", "create", "gren-lang"]);
    let args = [
        "token",
        "create",
        "--name",
        "ci",
        "--scope",
        "publish:gren-lang/*",
        "--expires-in-days",
        "30",
    ];
    let automation = cli.ok(&args).trim().to_string();
    let id = cli
        .ok(&["token", "list"])
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    cli.ok(&["token", "revoke", &id]);
    assert_eq!(
        server.delete("/session", Some(session)).status,
        204,
        "the session is revoked"
    );

    let stderr = cli.fails(&["whoami"]);
    assert_eq!(stderr.to_lowercase().matches("log in again").count(), 1, "{stderr}");
    assert!(stderr.contains("log in again with `gren-registry login`"), "{stderr}");

    let project = project_of("gren_lang_url__6_0_0.pkg.gz");
    let publish = ["publish", project.path().to_str().unwrap()];
    let stderr = failed(&run_at(&cli, &server.base, Some(&automation), &publish));
    assert!(
        stderr.contains("create a new one with `gren-registry token create`"),
        "{stderr}"
    );
    assert!(!stderr.to_lowercase().contains("log in"), "{stderr}");
}

#[test]
fn publish_and_revoke_name_arguments_of_the_wrong_shape_and_an_identical_republish() {
    let server = Server::start();
    let cli = Cli::gren_lang_admin(&server);
    let project = project_of("gren_lang_url__6_0_0.pkg.gz");
    let dir = project.path().to_str().unwrap();

    let manifest = project.path().join("gren.json");
    let stderr = cli.fails(&["publish", manifest.to_str().unwrap()]);
    assert!(
        stderr.contains(&format!(
            "{} is a project's gren.json: pass the project directory, `gren-registry publish {dir}`.",
            manifest.display()
        )),
        "{stderr}"
    );

    assert!(cli.ok(&["publish", dir]).contains("Published gren-lang/url 6.0.0"));
    let again = cli.ok(&["publish", dir]);
    assert!(
        again.contains("gren-lang/url 6.0.0 is already published (identical, sha256 ") && !again.contains("Published"),
        "{again}"
    );

    for args in [
        &["revoke", "url", "6.0.0", "--reason", "x"][..],
        &["private", "url", "on"],
        &["revoke", "gren-lang/url/6.0.0", "6.0.0", "--reason", "x"],
    ] {
        let stderr = cli.fails(args);
        assert!(
            stderr.contains("is not a package name: expected author/project, such as gren-lang/core."),
            "{args:?}: {stderr}"
        );
    }
    let stderr = cli.fails(&["revoke", "gren-lang/url", "six", "--reason", "x"]);
    assert!(
        stderr.contains("\"six\" is not a version: expected major.minor.patch"),
        "{stderr}"
    );
    assert_eq!(
        server.get("/packages/gren-lang/url/6.0.0", None).json()["revoked"],
        serde_json::Value::Null
    );
}
