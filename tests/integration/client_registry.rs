//! Which registry the client talks to and whether it trusts it, through the
//! real binary: a login remembers its registry, later commands use it
//! without `--registry` or `GREN_REGISTRY_URL`, several logins have one
//! default; e-mails name the registry in the commands they give; TLS is
//! checked against the machine's trust store (`SSL_CERT_FILE`), through the
//! documented nginx with a CA the test makes.

use crate::client::{Cli, project_of, text};
use crate::common::*;
use std::process::{Command, Output, Stdio};

/// `args` as a person runs them with nothing in the environment naming a
/// registry: the login file alone decides.
fn bare(cli: &Cli, args: &[&str]) -> Output {
    let mut command = cli.command(args);
    command.env_remove("GREN_REGISTRY_URL").stdin(Stdio::null());
    command.output().unwrap()
}

fn bare_ok(cli: &Cli, args: &[&str]) -> String {
    let output = bare(cli, args);
    assert!(
        output.status.success(),
        "gren-registry {args:?} failed:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// `login --registry <server> --email <email>`, with no GREN_REGISTRY_URL.
fn bare_login(cli: &Cli, server: &Server, email: &str) {
    let mut command = cli.command(&["login", "--registry", &server.base, "--email", email]);
    command.env_remove("GREN_REGISTRY_URL");
    cli.login_with(command, server, email);
}

#[test]
fn a_login_is_remembered_and_later_commands_use_its_registry_without_being_told() {
    let server = Server::start();
    assert_ne!(
        server.base,
        gren_registry_client::DEFAULT_REGISTRY,
        "a non-default port"
    );
    let cli = Cli::new(&server);
    bare_login(&cli, &server, "me@example.com");

    let whoami = bare_ok(&cli, &["whoami"]);
    assert!(
        whoami.starts_with(&format!("me@example.com on {}\n", server.base)),
        "{whoami}"
    );
    bare_ok(&cli, &["identity", "create", "gren-lang"]);
    let project = project_of("gren_lang_url__6_0_0.pkg.gz");
    let published = bare_ok(&cli, &["publish", project.path().to_str().unwrap()]);
    assert!(
        published.contains(&format!("to {}", server.base)) && published.contains("Published gren-lang/url 6.0.0"),
        "{published}"
    );
    assert_eq!(server.get("/packages/gren-lang/url/6.0.0", None).status, 200);
}

#[test]
fn of_several_logins_the_most_recent_is_the_default_and_whoami_lists_them_all() {
    let (first, second) = (Server::start(), Server::start());
    let cli = Cli::new(&first);
    bare_login(&cli, &first, "me@example.com");
    bare_login(&cli, &second, "other@example.com");

    let whoami = bare_ok(&cli, &["whoami"]);
    let listed = [
        format!("other@example.com on {}\n", second.base),
        format!("  {} me@example.com\n", first.base),
        format!("* {} other@example.com\n", second.base),
    ];
    for line in &listed {
        assert!(whoami.contains(line.as_str()), "{line:?} in:\n{whoami}");
    }
    // Named, the other login is used; GREN_REGISTRY_URL names one too.
    let named = bare_ok(&cli, &["whoami", "--registry", &first.base]);
    assert!(named.starts_with("me@example.com on "), "{named}");
    let from_env = cli.ok(&["whoami"]);
    assert!(from_env.starts_with("me@example.com on "), "{from_env}");

    // Logging out of the default makes the one before it the default.
    let out = bare_ok(&cli, &["logout"]);
    assert!(out.contains(&format!("Logged out of {}", second.base)), "{out}");
    let whoami = bare_ok(&cli, &["whoami"]);
    assert!(
        whoami.starts_with(&format!("me@example.com on {}\n", first.base)) && !whoami.contains("Logins"),
        "{whoami}"
    );
}

#[test]
fn commands_the_client_and_the_e_mails_suggest_name_a_registry_that_is_not_the_default() {
    let server = Server::start();
    let admin = Cli::new(&server);
    admin.login(&server, "admin@example.com");
    admin.ok(&["identity", "create", "gren-lang"]);
    let out = admin.ok(&["identity", "add", "gren-lang", "friend@example.com"]);
    let accept = format!("`gren-registry identity accept gren-lang --registry {}`", server.base);
    assert!(out.contains(&accept), "{out}");
    let mail = server.postmark.wait_for_message_to("friend@example.com");
    for command in [
        format!("`gren-registry login --registry {}`", server.base),
        accept.clone(),
        format!("`gren-registry identity decline gren-lang --registry {}`", server.base),
    ] {
        assert!(
            mail.text_body().contains(&command),
            "{command} in:\n{}",
            mail.text_body()
        );
    }

    // Someone logged in elsewhere too is told the registry; without
    // GREN_REGISTRY_URL and with this registry their default, they are not.
    let friend = Cli::new(&server);
    let elsewhere = Server::start();
    bare_login(&friend, &server, "friend@example.com");
    bare_login(&friend, &elsewhere, "friend@example.com");
    let listed = bare_ok(&friend, &["identity", "invitations", "--registry", &server.base]);
    assert!(listed.contains(&accept), "{listed}");
    bare_login(&friend, &server, "friend@example.com");
    let listed = bare_ok(&friend, &["identity", "invitations"]);
    assert!(listed.contains("`gren-registry identity accept gren-lang`"), "{listed}");

    // Not logged in to a registry: the login to run names it.
    let stranger = Cli::new(&server);
    let refused = bare(&stranger, &["whoami", "--registry", &elsewhere.base]);
    assert!(
        text(&refused.stderr).contains(&format!(
            "Log in with `gren-registry login --registry {}`.",
            elsewhere.base
        )),
        "{}",
        text(&refused.stderr)
    );
}

fn other_absent() -> std::path::PathBuf {
    std::path::PathBuf::from("/nonexistent/gren-registry-test-ca.pem")
}

/// A client command of `cli` run against `url` with `SSL_CERT_FILE` as given.
fn over_tls(cli: &Cli, url: &str, ca: Option<&std::path::Path>, args: &[&str]) -> Output {
    let mut command: Command = cli.command(args);
    command.env("GREN_REGISTRY_URL", url).stdin(Stdio::null());
    if let Some(ca) = ca {
        command.env("SSL_CERT_FILE", ca);
    }
    command.output().unwrap()
}

#[test]
fn the_client_trusts_an_internal_ca_through_ssl_cert_file_and_names_a_certificate_problem() {
    let Some(nginx) = crate::nginx_proxy::nginx_or_skip() else {
        return;
    };
    let server = Server::start();
    let front = crate::nginx_proxy::start_nginx(&nginx, &server.addr.to_string());
    let url = format!("https://127.0.0.1:{}", front.port);
    let cli = Cli::new(&server);
    cli.login(&server, "me@example.com");
    // The login was made over plain HTTP; the same token through nginx.
    let stored = std::fs::read_to_string(cli.credentials()).unwrap();
    std::fs::write(cli.credentials(), stored.replace(&server.base, &url)).unwrap();

    let trusted = over_tls(&cli, &url, Some(&front.ca()), &["whoami"]);
    assert!(
        trusted.status.success() && text(&trusted.stdout).starts_with(&format!("me@example.com on {url}")),
        "{}{}",
        text(&trusted.stdout),
        text(&trusted.stderr)
    );
    let project = project_of("gren_lang_url__6_0_0.pkg.gz");
    let created = over_tls(&cli, &url, Some(&front.ca()), &["identity", "create", "gren-lang"]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let published = over_tls(
        &cli,
        &url,
        Some(&front.ca()),
        &["publish", project.path().to_str().unwrap()],
    );
    assert!(published.status.success(), "{}", text(&published.stderr));

    // The machine's own store does not hold the test's CA.
    let refused = over_tls(&cli, &url, None, &["whoami"]);
    let stderr = text(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("TLS certificate this machine does not trust") && stderr.contains("certificate problem"),
        "{stderr}"
    );
    assert!(!stderr.contains("Check the address"), "{stderr}");
    assert!(stderr.contains("set SSL_CERT_FILE to its PEM file"), "{stderr}");
    // An SSL_CERT_FILE that is not there is named.
    let absent = other_absent();
    let refused = over_tls(&cli, &url, Some(&absent), &["whoami"]);
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains(&format!("SSL_CERT_FILE ({}) cannot be read", absent.display())),
        "{stderr}"
    );
    // Another CA in SSL_CERT_FILE: that file is named.
    let other = tempfile::tempdir().unwrap();
    let other_ca = crate::nginx_proxy::make_ca(other.path());
    let refused = over_tls(&cli, &url, Some(&other_ca), &["whoami"]);
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "SSL_CERT_FILE ({}) holds no authority that signed it",
            other_ca.display()
        )),
        "{stderr}"
    );
}
