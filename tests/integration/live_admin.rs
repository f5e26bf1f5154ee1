//! Operators never stop the registry: every `admin` command that changes
//! records runs while `serve` serves the same directory (the server carries
//! it out, through its control socket), and the server's next answer shows
//! the change; API writes made meanwhile are not lost.

use crate::common::bundles::{bundle_file_name, real_bundle, real_bundles_dir, synthetic};
use crate::common::operator::{admin, admin_json};
use crate::common::*;
use serde_json::json;
use std::os::unix::process::CommandExt;
use std::path::Path;

const OPERATOR: &str = "ops@example.com";

/// What the operator did before the server started: created `gren-lang`
/// and imported url 5.0.0 and 6.0.0 into `dir`.
fn gren_lang_dir(dir: &Path) {
    admin(dir, &["identity", "create", "gren-lang", "--admin", OPERATOR]).success();
    let files = ["gren_lang_url__5_0_0.pkg.gz", "gren_lang_url__6_0_0.pkg.gz"];
    let paths: Vec<String> = files
        .iter()
        .map(|file| real_bundles_dir().join(file).display().to_string())
        .collect();
    let mut args = vec!["import"];
    args.extend(paths.iter().map(String::as_str));
    admin(dir, &args).success();
}

/// A server on a [`gren_lang_dir`].
fn serving_gren_lang() -> Server {
    Server::with_setup(&[], gren_lang_dir)
}

#[test]
fn an_identity_created_by_the_operator_beside_the_server_is_at_once_usable_by_its_admin() {
    let server = serving_gren_lang();
    let out = admin_json(
        &server.data_dir,
        &["identity", "create", "newcomer", "--admin", "new@example.com"],
    )
    .success();
    assert_eq!(out.json(), json!({ "name": "newcomer", "admin": "new@example.com" }));
    assert_eq!(server.get("/publishing-identity/newcomer", None).status, 200);
    let token = server.login("new@example.com");
    let published = server.publish(&token, &synthetic("newcomer/tool", "1.0.0", "a"));
    assert_eq!(published.status, 201, "{}", published.text());

    admin(
        &server.data_dir,
        &[
            "identity",
            "set-member",
            "newcomer",
            "colleague@example.com",
            "--role",
            "publish",
        ],
    )
    .success()
    .assert_stdout_has("added colleague@example.com in newcomer: publish");
    let colleague = server.login("colleague@example.com");
    let published = server.publish(&colleague, &synthetic("newcomer/tool", "1.0.1", "b"));
    assert_eq!(published.status, 201, "{}", published.text());

    let audit = server.get("/publishing-identity/newcomer/audit", Some(&token)).json();
    let actors: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| (entry["action"].as_str().unwrap(), entry["actor"].as_str().unwrap()))
        .collect();
    for expected in [
        ("created", "operator"),
        ("member_added", "operator"),
        ("published", "colleague@example.com"),
    ] {
        assert!(actors.contains(&expected), "{expected:?} in {actors:?}");
    }
    assert!(
        server.log().contains("admin identity create (over the control socket)"),
        "{}",
        server.log()
    );
    // The reserved names, which only operators may take.
    admin(&server.data_dir, &["identity", "create", "admin", "--admin", OPERATOR]).success();
    admin(&server.data_dir, &["fsck"]).success();
}

#[test]
fn a_version_revoked_beside_the_server_is_gone_from_its_answers_and_from_git() {
    let server = serving_gren_lang();
    let refs = || {
        server
            .get("/git/gren-lang/url.git/info/refs?service=git-upload-pack", None)
            .text()
    };
    assert!(refs().contains("refs/tags/5.0.0"), "{}", refs());
    assert_eq!(server.get("/packages/gren-lang/url/5.0.0/bundle", None).status, 200);
    admin(
        &server.data_dir,
        &["revoke", "gren-lang/url", "5.0.0", "--reason", "leaked secret"],
    )
    .success()
    .assert_stdout_has("revoked gren-lang/url 5.0.0: leaked secret");
    let gone = server.get("/packages/gren-lang/url/5.0.0/bundle", None);
    gone.assert_error(410, "revoked");
    assert!(gone.text().contains("leaked secret"), "{}", gone.text());
    let listed = refs();
    assert!(
        !listed.contains("refs/tags/5.0.0") && listed.contains("refs/tags/6.0.0"),
        "{listed}"
    );
    let events = server.get("/events", None).json();
    let last = &events["events"][2];
    assert_eq!(
        (last["type"].as_str(), last["version"].as_str()),
        (Some("revoke"), Some("5.0.0")),
        "the revocation is an event, for the packages site and the caches: {events}"
    );
    admin(&server.data_dir, &["fsck"]).success();
}

#[test]
fn an_import_beside_the_server_is_listed_at_once_and_users_it_logs_out_are_logged_out() {
    let server = serving_gren_lang();
    let token = server.login(OPERATOR);
    let core = real_bundles_dir().join("gren_lang_core__7_0_0.pkg.gz");
    // A relative path, as an operator types it: the server reads it from
    // the command's directory, not its own.
    let mut command = crate::common::operator::admin_command(&server.data_dir);
    let out = command
        .args(["import", "gren_lang_core__7_0_0.pkg.gz"])
        .current_dir(core.parent().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported: gren-lang/core 7.0.0"));
    let listing = server.listing("/packages", None);
    assert_eq!(listing.get("gren-lang/core").map(String::as_str), Some("7.0.0"));
    let bundle = server.get("/packages/gren-lang/core/7.0.0/bundle", None);
    assert!(bundle.body == real_bundle("gren_lang_core__7_0_0.pkg.gz"));
    let missing = admin(&server.data_dir, &["import", "/nonexistent.pkg.gz"]).failure();
    assert!(
        missing.stdout.contains("cannot read /nonexistent.pkg.gz"),
        "{missing:?}"
    );

    assert_eq!(server.get("/user", Some(&token)).status, 200);
    admin(&server.data_dir, &["user", "revoke-sessions", OPERATOR])
        .success()
        .assert_stdout_has("revoked 1 session(s)");
    assert_eq!(server.get("/user", Some(&token)).status, 401);
    admin(&server.data_dir, &["fsck"]).success();
}

#[test]
fn repair_still_needs_the_server_stopped_and_migrate_beside_it_has_nothing_to_do() {
    let server = serving_gren_lang();
    let out = admin(&server.data_dir, &["fsck", "--repair"]).failure();
    assert!(
        out.stderr.contains("in use") && out.stderr.contains("Stop the server"),
        "`admin fsck --repair`: {}",
        out.stderr
    );
    // A running server of this release runs only on its format.
    admin(&server.data_dir, &["migrate"])
        .success()
        .assert_stdout_has("already (a server is running on it): nothing to do");
    // One that runs on an older format (the binary upgraded, the server
    // not restarted) must be stopped first.
    let format = server.data_dir.join("format.json");
    let current = std::fs::read(&format).unwrap();
    std::fs::write(&format, b"{\"format\": 2}").unwrap();
    let out = admin(&server.data_dir, &["migrate"]).failure();
    assert!(out.stderr.contains("Stop the server"), "{}", out.stderr);
    std::fs::write(&format, current).unwrap();
    // A refusal of the domain comes back as the command's own error.
    let out = admin(
        &server.data_dir,
        &["identity", "create", "gren-lang", "--admin", OPERATOR],
    )
    .failure();
    assert!(out.stderr.contains("taken"), "{}", out.stderr);
    assert_eq!(server.get("/health", None).status, 200);
}

#[test]
fn a_killed_server_leaves_its_socket_which_commands_pass_over_and_the_next_start_replaces() {
    let kept = tempfile::tempdir().unwrap();
    let data_dir = kept.path().join("data");
    gren_lang_dir(&data_dir);
    let server = Server::start_in(&data_dir, &[]);
    server.kill();
    assert!(data_dir.join("control.sock").exists(), "kill -9 leaves the socket");
    // No server holds the lock: the command runs on the directory itself.
    admin(&data_dir, &["identity", "create", "after-kill", "--admin", OPERATOR]).success();
    let server = Server::start_in(&data_dir, &[]);
    admin(&data_dir, &["identity", "create", "beside-new", "--admin", OPERATOR]).success();
    assert_eq!(server.get("/publishing-identity/after-kill", None).status, 200);
    assert_eq!(server.get("/publishing-identity/beside-new", None).status, 200);
    assert!(server.log().contains("admin identity create (over the control socket)"));
}

#[test]
fn admin_commands_beside_api_writes_lose_nothing() {
    let kept = tempfile::tempdir().unwrap();
    let data_dir = kept.path().join("data");
    gren_lang_dir(&data_dir);
    let server = Server::start_in(&data_dir, &[]);
    let token = server.login(OPERATOR);
    std::thread::scope(|scope| {
        let api = scope.spawn(|| {
            for patch in 0..20 {
                let bundle = synthetic("gren-lang/busy", &format!("1.0.{patch}"), "x");
                let published = server.publish(&token, &bundle);
                assert_eq!(published.status, 201, "{}", published.text());
            }
        });
        for n in 0..10 {
            let name = format!("team-{n}");
            admin(&server.data_dir, &["identity", "create", &name, "--admin", OPERATOR]).success();
            admin(
                &server.data_dir,
                &["revoke", "gren-lang/url", "5.0.0", "--reason", "again"],
            )
            .success();
        }
        api.join().unwrap();
    });
    let page = server.get("/packages/gren-lang/busy", None).json();
    assert_eq!(page["versions"].as_array().unwrap().len(), 20, "{page}");
    for n in 0..10 {
        assert_eq!(server.get(&format!("/publishing-identity/team-{n}"), None).status, 200);
    }
    let file = bundle_file_name("gren-lang/busy", "1.0.19");
    assert!(server.data_dir.join("packages/gren-lang/busy").join(file).exists());
    admin(&server.data_dir, &["fsck"]).success();
    server.stop();
    admin(&data_dir, &["fsck"]).success();
    assert!(
        !data_dir.join("control.sock").exists(),
        "a clean stop removes the socket"
    );
}

#[test]
fn the_control_socket_answers_nobody_but_the_data_directorys_owner() {
    if effective_uid() != 0 {
        eprintln!("SKIPPED: needs root, to open the directory to another user");
        return;
    }
    let server = serving_gren_lang();
    let socket = server.data_dir.join("control.sock");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // Open the way for nobody (uid 65534), as a careless operator might.
    open_to_all(&server.data_dir);
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let request = json!({ "Identity": { "Create": {
        "name": "intruder", "admin": "x@example.com", "allow_confusable": false, "github_owner_id": null
    } } });
    let script = "use IO::Socket::UNIX; my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die \"connect: $!\"; \
                  print $s $ARGV[1]; shutdown($s, 1); local $/; my $a = <$s>; print defined $a ? $a : '';";
    let out = std::process::Command::new("/usr/bin/perl")
        .args(["-e", script])
        .arg(&socket)
        .arg(request.to_string())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Ok"), "{out:?}");
    assert!(
        !server.data_dir.join("identities/intruder").exists(),
        "nothing was created"
    );
    assert!(
        server.wait_for_log("refused a connection from uid 65534", std::time::Duration::from_secs(5)),
        "{}",
        server.log()
    );
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// `dir` and every directory above it traversable by all.
fn open_to_all(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for ancestor in dir.ancestors() {
        let Ok(meta) = std::fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o005 != 0o005 {
            std::fs::set_permissions(ancestor, std::fs::Permissions::from_mode(mode | 0o005)).unwrap();
        }
    }
}
