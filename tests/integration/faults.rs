//! The registry on a failing disk, with faults injected by the store's test
//! hook (`GREN_REGISTRY_TEST_FAULTS`, see `crates/core/src/store/faults.rs`):
//! a full disk answers `507 storage_full`, a read-only or failing one `503
//! storage_unavailable` with `Retry-After`, the log names the path and the
//! answer does not; reads keep working; a failed publish leaves nothing for
//! `fsck` to find; a login survives a session that could not be written; and
//! an fsync failure after a rename stops the process instead of rolling back.

use crate::common::bundles::*;
use crate::common::operator::*;
use crate::common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const ME: &str = "me@example.com";
const FAULTS: &str = "GREN_REGISTRY_TEST_FAULTS";

/// Logs in as ME and creates the identity `blaix`.
fn prepare(server: &Server) -> String {
    let token = server.login(ME);
    let reply = server.post_json("/publishing-identity", &json!({ "name": "blaix" }), Some(&token));
    assert_eq!(reply.status, 200, "creating blaix: {}", reply.text());
    token
}

#[track_caller]
fn assert_fsck_clean(dir: &Path) {
    let out = admin_json(dir, &["fsck"]);
    assert!(out.succeeded(), "fsck is clean: {}", out.all());
}

fn published_events(server: &Server) -> Vec<(String, String, String)> {
    let reply = server.get("/events?since=0", None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["events"]
        .as_array()
        .expect("events is an array")
        .iter()
        .map(|event| {
            let text = |key: &str| event[key].as_str().unwrap_or_default().to_string();
            (text("type"), text("package"), text("version"))
        })
        .collect()
}

#[test]
fn a_full_disk_answers_507_storage_full_and_names_the_path_only_in_the_log() {
    let server = Server::with_env(&[(
        FAULTS,
        "write:ENOSPC@packages/blaix/full,write:EDQUOT@packages/blaix/quota",
    )]);
    let token = prepare(&server);
    for name in ["blaix/full", "blaix/quota"] {
        let reply = server.publish(&token, &synthetic(name, "1.0.0", "a"));
        assert_eq!(reply.status, 507, "{}", reply.text());
        assert_eq!(reply.json()["error"], "storage_full");
        assert!(
            !reply.text().contains("packages/"),
            "no path in the answer: {}",
            reply.text()
        );
    }
    let named = server.wait_for_log("packages/blaix/full/", std::time::Duration::from_secs(5));
    let log = server.log();
    assert!(named, "the log names the path:\n{log}");
    assert!(log.contains("No space left on device"), "and the cause:\n{log}");
}

#[test]
fn a_read_only_or_failing_disk_answers_503_storage_unavailable_with_retry_after() {
    let server = Server::with_env(&[(FAULTS, "write:EROFS@packages/blaix/ro,write:EIO@packages/blaix/eio")]);
    let token = prepare(&server);
    for name in ["blaix/ro", "blaix/eio"] {
        let reply = server.publish(&token, &synthetic(name, "1.0.0", "a"));
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert_eq!(reply.json()["error"], "storage_unavailable");
        assert!(reply.retry_after() > 0, "Retry-After is set");
    }
    // The log line may follow the answer by a moment under load.
    assert!(
        server.wait_for_log("packages/blaix/eio/", std::time::Duration::from_secs(5)),
        "{}",
        server.log()
    );
}

/// The fault struck where the system would: creating the temporary file,
/// inside `tempfile`, whose own calls hide the errno in an error of theirs.
#[test]
fn a_temporary_file_that_cannot_be_created_answers_503_for_eio_and_507_for_enospc() {
    let server = Server::with_env(&[(FAULTS, "temp-file:EIO@identities/eio,temp-file:ENOSPC@tokens/")]);
    let token = prepare(&server);
    let created = server.post_json("/publishing-identity", &json!({ "name": "eio" }), Some(&token));
    assert_eq!(
        (created.status, created.json()["error"].as_str()),
        (503, Some("storage_unavailable")),
        "{}",
        created.text()
    );
    assert!(created.retry_after() > 0);
    let body = json!({ "name": "ci", "scopes": ["publish:blaix/*"], "expiresInDays": 1 });
    let minted = server.post_json("/user/tokens", &body, Some(&token));
    assert_eq!(
        (minted.status, minted.json()["error"].as_str()),
        (507, Some("storage_full")),
        "{}",
        minted.text()
    );
}

#[test]
fn a_failed_publish_removes_its_own_debris_so_fsck_is_clean_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let token = prepare(&server);
    let reply = server.publish(&token, &synthetic("blaix/second", "1.0.0", "a"));
    assert_eq!(reply.status, 201, "{}", reply.text());
    server.stop();
    // A record's write fails after the bundle was staged: on a first
    // publish, package.json (`first`) or the version's record, its commit,
    // after package.json (`third`); on a later version, its record (`second`).
    let faults = "write:ENOSPC@packages/blaix/first/package.json,write:ENOSPC@packages/blaix/second/1.0.1.json,\
                  write:ENOSPC@packages/blaix/third/1.0.0.json";
    let server = Server::start_in(dir.path(), &[(FAULTS, faults)]);
    for (name, version) in [
        ("blaix/first", "1.0.0"),
        ("blaix/second", "1.0.1"),
        ("blaix/third", "1.0.0"),
    ] {
        let reply = server.publish(&token, &synthetic(name, version, "a"));
        assert_eq!(reply.status, 507, "{name}: {}", reply.text());
    }
    for first in ["first", "third"] {
        assert!(
            !dir.path().join("packages/blaix").join(first).exists(),
            "the first publish's package directory is gone ({first})"
        );
    }
    assert!(
        !dir.path()
            .join("packages/blaix/second/blaix_second__1_0_1.pkg.gz")
            .exists(),
        "the staged bundle is gone"
    );
    assert_fsck_clean(dir.path());
    let again = server.publish(&token, &synthetic("blaix/other", "1.0.0", "a"));
    assert_eq!(again.status, 201, "{}", again.text());
}

/// Sets `last_used` of every session in `dir` to long ago, so the next
/// authenticated request wants to refresh it (a write).
fn age_sessions(dir: &Path) {
    for entry in std::fs::read_dir(dir.join("sessions")).unwrap() {
        let path = entry.unwrap().path();
        let mut session: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        session["last_used"] = json!("2020-01-01T00:00:00.000Z");
        std::fs::write(&path, serde_json::to_vec_pretty(&session).unwrap()).unwrap();
    }
}

#[test]
fn reads_anonymous_and_authenticated_keep_working_on_a_read_only_or_full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let token = prepare(&server);
    let reply = server.publish(&token, &synthetic("blaix/read", "1.0.0", "a"));
    assert_eq!(reply.status, 201, "{}", reply.text());
    server.stop();
    for errno in ["EROFS", "ENOSPC"] {
        age_sessions(dir.path());
        let faults = format!("write:{errno}@,remove:{errno}@");
        let server = Server::start_in(dir.path(), &[(FAULTS, &faults)]);
        for token in [None, Some(token.as_str())] {
            let reply = server.get("/packages/blaix/read/1.0.0", token);
            assert_eq!(
                reply.status,
                200,
                "{errno}, token {}: {}",
                token.is_some(),
                reply.text()
            );
        }
        let whoami = server.get("/user/sessions", Some(&token));
        assert_eq!(whoami.status, 200, "{errno}: {}", whoami.text());
        server.stop();
    }
}

#[test]
fn a_login_whose_session_cannot_be_written_stays_usable_and_gives_one_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[(FAULTS, "write:ENOSPC@sessions/")]);
    let started = server.post_json("/session", &json!({ "email": ME }), None).json();
    let fetch_token = started["fetchSessionToken"].as_str().unwrap().to_string();
    let mail = server.postmark.wait_for_message_to(ME);
    let exchange = json!({ "fetchSessionToken": fetch_token, "emailConfirmationCode": mail.code() });
    let failed = server.post_json("/session/fetch", &exchange, None);
    assert_eq!(failed.status, 507, "{}", failed.text());
    server.stop();
    let server = Server::start_in(dir.path(), &[]);
    let fetched = server.post_json("/session/fetch", &exchange, None);
    assert_eq!(fetched.status, 200, "the login was not burned: {}", fetched.text());
    let token = fetched.json()["sessionToken"].as_str().unwrap().to_string();
    let again = server.post_json("/session/fetch", &exchange, None);
    assert_eq!(again.json()["error"], "login_used", "{}", again.text());
    let sessions = server.get("/user/sessions", Some(&token)).json();
    assert_eq!(sessions["sessions"].as_array().map(Vec::len), Some(1), "{sessions}");
}

#[test]
fn the_local_mail_sink_on_a_full_disk_answers_507_not_a_502_try_again() {
    let server = Server::with_env(&[(FAULTS, "write:ENOSPC@mail/"), ("POSTMARK_SERVER_TOKEN", UNSET)]);
    let reply = server.post_json("/session", &json!({ "email": ME }), None);
    assert_eq!(reply.status, 507, "{}", reply.text());
    assert_eq!(reply.json()["error"], "storage_full");
}

#[test]
fn a_publish_whose_directory_fsync_fails_after_the_rename_stops_the_server_and_is_live_with_its_event_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(
        dir.path(),
        &[(FAULTS, "commit-sync:EIO@packages/blaix/synced/1.0.0.json")],
    );
    let token = prepare(&server);
    let bytes = synthetic("blaix/synced", "1.0.0", "a");
    // No answer, or not a success: the process stops mid-request.
    let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.publish(&token, &bytes)));
    assert!(reply.is_err() || reply.unwrap().status != 201);
    let (status, log) = server.wait_with_log(Duration::from_secs(10));
    assert_eq!(status.code(), Some(75), "a distinct exit status:\n{log}");
    assert!(
        log.contains("packages/blaix/synced/1.0.0.json"),
        "the log names the path:\n{log}"
    );
    let server = Server::start_in(dir.path(), &[]);
    let served = server.get("/packages/blaix/synced/1.0.0", None);
    assert_eq!(served.status, 200, "the committed version is live: {}", served.text());
    // Its event is written before the record (the record counts it), so a
    // committed record always has its event.
    assert!(
        published_events(&server).contains(&("publish".into(), "blaix/synced".into(), "1.0.0".into())),
        "{:?}",
        published_events(&server)
    );
    server.stop();
    assert_fsck_clean(dir.path());
}

#[test]
fn a_logout_whose_directory_fsync_fails_after_the_removal_stops_the_server_and_the_token_stays_revoked() {
    let dir = tempfile::tempdir().unwrap();
    // Logging in writes the session (a rename): on a server without the fault.
    let server = Server::start_in(dir.path(), &[]);
    let token = server.login(ME);
    server.stop();
    let server = Server::start_in(dir.path(), &[(FAULTS, "commit-sync:EIO@sessions/")]);
    let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.delete("/session", Some(&token))));
    assert!(reply.is_err() || reply.unwrap().status != 204, "not acknowledged");
    let (status, log) = server.wait_with_log(Duration::from_secs(10));
    assert_eq!(status.code(), Some(75), "a distinct exit status:\n{log}");
    assert!(log.contains("sessions/"), "the log names the path:\n{log}");
    let server = Server::start_in(dir.path(), &[]);
    let refused = server.get("/user/sessions", Some(&token));
    assert_eq!(refused.status, 401, "the removal was committed: {}", refused.text());
}

#[test]
fn start_up_cleaning_is_best_effort_a_disk_refusing_it_still_lets_the_registry_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let token = prepare(&server);
    let reply = server.publish(&token, &synthetic("blaix/kept", "1.0.0", "a"));
    assert_eq!(reply.status, 201, "{}", reply.text());
    server.stop();
    // What a publish killed before its commit leaves: a bundle no record lists.
    let debris = dir.path().join("packages/blaix/kept/blaix_kept__1_0_1.pkg.gz");
    std::fs::write(&debris, synthetic("blaix/kept", "1.0.1", "b")).unwrap();

    let server = Server::start_in(
        dir.path(),
        &[(FAULTS, "remove:EIO@packages/blaix/kept/blaix_kept__1_0_1.pkg.gz")],
    );
    assert!(
        server.wait_for_log(
            "cannot clear what an interrupted change left",
            std::time::Duration::from_secs(5)
        ),
        "{}",
        server.log()
    );
    assert!(debris.exists(), "the refused removal left it");
    assert_eq!(
        server.get("/packages/blaix/kept/1.0.0/bundle", None).status,
        200,
        "the registry serves"
    );
    server
        .get("/packages/blaix/kept/1.0.1", None)
        .assert_error(404, "version_not_found");
    server.stop();
    let fsck = admin(dir.path(), &["fsck"]).success();
    fsck.assert_stdout_has("note: packages/blaix/kept/blaix_kept__1_0_1.pkg.gz: the bundle of an interrupted publish");

    // The next start, on a working disk, removes it.
    let server = Server::start_in(dir.path(), &[]);
    assert!(!debris.exists());
    server.stop();
    assert_fsck_clean(dir.path());
}

/// A bit flipped on the disk (the server stopped) in one version's bundle:
/// its downloads answer `503 storage_corrupt` with `Retry-After`, never the
/// wrong bytes, and the log names the file; the package's other version is
/// served; git builds no repository of other content (`503` too). Once the
/// file is restored from a copy, both are served again, without a restart.
#[test]
fn a_bundle_damaged_on_disk_is_never_served_and_the_log_names_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let token = prepare(&server);
    let (good, damaged) = (
        synthetic("blaix/flip", "1.0.0", "a"),
        synthetic("blaix/flip", "1.0.1", "b"),
    );
    for bytes in [&good, &damaged] {
        let reply = server.publish(&token, bytes);
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
    server.stop();
    let file = bundle_file_name("blaix/flip", "1.0.1");
    let path = dir.path().join("packages/blaix/flip").join(&file);
    let mut flipped = std::fs::read(&path).unwrap();
    assert_eq!(flipped, damaged);
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    std::fs::write(&path, &flipped).unwrap();

    let server = Server::start_in(dir.path(), &[]);
    for _ in 0..2 {
        let reply = server.get("/packages/blaix/flip/1.0.1/bundle", None);
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert_eq!(reply.json()["error"], "storage_corrupt", "{}", reply.text());
        assert!(reply.retry_after() > 0, "Retry-After is set");
        assert!(
            !reply.text().contains("packages/"),
            "no path in the answer: {}",
            reply.text()
        );
    }
    assert!(
        server.wait_for_log(
            &format!("packages/blaix/flip/{file} is damaged"),
            Duration::from_secs(5)
        ),
        "the log names the file:\n{}",
        server.log()
    );
    let other = server.get("/packages/blaix/flip/1.0.0/bundle", None);
    assert_eq!(other.status, 200, "{}", other.text());
    assert_eq!(other.body, good, "the other version is served as published");
    let refs = "/git/blaix/flip.git/info/refs?service=git-upload-pack";
    let git = server.get(refs, None);
    assert_eq!(
        git.status,
        503,
        "git builds no repository of the damaged bundle: {}",
        git.text()
    );

    std::fs::write(&path, &damaged).unwrap();
    let restored = server.get("/packages/blaix/flip/1.0.1/bundle", None);
    assert_eq!(restored.status, 200, "{}", restored.text());
    assert_eq!(restored.body, damaged);
    assert_eq!(server.get(refs, None).status, 200, "and git serves the package again");
}

/// The identity's record cannot be written (its audit entry was): the
/// creation answers `507`, and neither its admin's index nor an identity
/// directory is left to say it happened; the same request succeeds later.
#[test]
fn an_identity_creation_that_fails_at_its_record_leaves_no_index_entry_and_no_directory() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[(FAULTS, "write:ENOSPC@identities/late/identity.json")]);
    let token = prepare(&server);
    let created = server.post_json("/publishing-identity", &json!({ "name": "late" }), Some(&token));
    assert_eq!(created.status, 507, "{}", created.text());
    let user: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(format!("users/{ME}.json"))).unwrap()).unwrap();
    assert_eq!(user["identities"], json!(["blaix"]), "no stale index entry: {user}");
    assert!(!dir.path().join("identities/late").exists(), "nor its audit entry");
    server.stop();
    assert_fsck_clean(dir.path());
    let server = Server::start_in(dir.path(), &[]);
    let created = server.post_json("/publishing-identity", &json!({ "name": "late" }), Some(&token));
    assert_eq!(created.status, 200, "{}", created.text());
}

/// An fsync failure after a file written before its change's commit point
/// (an identity's first audit entry, a first publish's marker) stops the
/// server, whose last line does not claim the change was committed: it was
/// not, and after the restart it is not there.
#[test]
fn an_fsync_failure_before_the_commit_point_stops_the_server_without_claiming_the_change_was_made() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let token = prepare(&server);
    server.stop();
    let faults = "commit-sync:EIO@identities/synced/audit/,commit-sync:EIO@packages/blaix/marked/first-publish.pending";
    type Attempt<'a> = (&'a str, &'a dyn Fn(&Server) -> Reply);
    let attempts: [Attempt; 2] = [
        ("identities/synced/audit/", &|server| {
            server.post_json("/publishing-identity", &json!({ "name": "synced" }), Some(&token))
        }),
        ("packages/blaix/marked/first-publish.pending", &|server| {
            server.publish(&token, &synthetic("blaix/marked", "1.0.0", "a"))
        }),
    ];
    for (file, attempt) in attempts {
        let server = Server::start_in(dir.path(), &[(FAULTS, faults)]);
        let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| attempt(&server)));
        assert!(
            reply.is_err() || reply.unwrap().status >= 500,
            "{file}: not acknowledged"
        );
        let (status, log) = server.wait_with_log(Duration::from_secs(10));
        assert_eq!(status.code(), Some(75), "{file}:\n{log}");
        assert!(log.contains(file), "the log names the file:\n{log}");
        assert!(
            !log.contains("the change is committed"),
            "nothing claims a commit:\n{log}"
        );
        assert!(log.contains("if it comes before one"), "{log}");
    }
    let server = Server::start_in(dir.path(), &[]);
    server
        .get("/publishing-identity/synced", Some(&token))
        .assert_error(404, "identity_not_found");
    server
        .get("/packages/blaix/marked", None)
        .assert_error(404, "package_not_found");
    assert!(
        !dir.path().join("packages/blaix/marked").exists(),
        "start-up removed the interrupted first publish"
    );
}

/// Without Postmark, a login e-mail whose directory's fsync fails after its
/// rename costs at most that e-mail: a warning, not a stop; the login goes on.
#[test]
fn the_local_mail_sinks_fsync_failure_is_a_warning_and_the_registry_serves_on() {
    let server = Server::with_env(&[(FAULTS, "commit-sync:EIO@mail/"), ("POSTMARK_SERVER_TOKEN", UNSET)]);
    let reply = server.post_json("/session", &json!({ "email": ME }), None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        server.wait_for_log("may not survive a power loss", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    assert!(
        server.log().contains("/mail/"),
        "the warning names the file:\n{}",
        server.log()
    );
    assert!(server.is_alive(), "the registry serves on");
    assert_eq!(server.get("/health", None).status, 200);
}

/// A directory's fsync that fails when a first publish creates its
/// package's directory is logged as that: the directory is named, not the
/// marker or bundle being written in it.
#[test]
fn a_failed_directory_fsync_is_logged_naming_the_directory_not_the_file_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[(FAULTS, "dir-sync:EIO@packages/blaix/newdir")]);
    let token = prepare(&server);
    let reply = server.publish(&token, &synthetic("blaix/newdir", "1.0.0", "a"));
    assert_eq!(reply.status, 503, "{}", reply.text());
    let parent = format!(
        "cannot fsync the directory {}",
        dir.path().join("packages/blaix").display()
    );
    assert!(server.wait_for_log(&parent, Duration::from_secs(5)), "{}", server.log());
    assert!(!server.log().contains("cannot write"), "{}", server.log());
    server.stop();
    assert_fsck_clean(dir.path());
}

/// A first publish's marker left after its commit (its removal failed) is
/// called a marker, not a bundle, by `fsck` and by the start-up that
/// removes it.
#[test]
fn a_first_publish_marker_left_after_its_commit_is_called_a_marker_by_fsck_and_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let marker = "packages/blaix/kept/first-publish.pending";
    let server = Server::start_in(dir.path(), &[(FAULTS, &format!("remove:EIO@{marker}"))]);
    let token = prepare(&server);
    let reply = server.publish(&token, &synthetic("blaix/kept", "1.0.0", "a"));
    assert_eq!(reply.status, 201, "{}", reply.text());
    server.stop();
    assert!(dir.path().join(marker).exists(), "its removal failed");
    admin(dir.path(), &["fsck"])
        .success()
        .assert_stdout_has(&format!("note: {marker}: the marker of a first publish that committed"));
    let server = Server::start_in(dir.path(), &[]);
    let removing = format!("removing {}: the marker", dir.path().join(marker).display());
    assert!(
        server.wait_for_log(&removing, Duration::from_secs(5)),
        "{}",
        server.log()
    );
    assert!(!dir.path().join(marker).exists());
}
