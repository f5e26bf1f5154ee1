//! `admin migrate`: data directories written in format 1 and in format 2 by
//! the releases that wrote them (`tests/fixtures/format1/`,
//! `tests/fixtures/format2/`) are upgraded in place, answer every request
//! as those releases did, pass fsck, and deliver their pending outbox; a
//! migration stopped anywhere finishes when run again; servers and admin
//! commands refuse a directory in an older or newer format.

use crate::common::operator::*;
use crate::common::*;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture() -> PathBuf {
    fixture_of(1)
}

/// `tests/fixtures/format<format>`.
fn fixture_of(format: u32) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(format!("format{format}"))
}

/// A private copy of the format-1 data directory.
fn format1_copy() -> tempfile::TempDir {
    copy_of(1)
}

/// A private copy of the data directory in `format`.
fn copy_of(format: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture_of(format).join("data"), dir.path());
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// `lastUsed` moves with every use of a session: not part of what must match.
fn without_last_used(mut value: Value) -> Value {
    match &mut value {
        Value::Object(map) => {
            map.remove("lastUsed");
            for entry in map.values_mut() {
                *entry = without_last_used(entry.take());
            }
        }
        Value::Array(items) => {
            for item in items {
                *item = without_last_used(item.take());
            }
        }
        _ => {}
    }
    value
}

/// Asserts that the server answers every request of the `answers.json` of
/// `fixture` as the release that wrote it did.
#[track_caller]
fn assert_answers_as_before(server: &Server, fixture: &Path) {
    let tokens = read_json(&fixture.join("tokens.json"));
    let answers = read_json(&fixture.join("answers.json"));
    let mut differences = Vec::new();
    for expected in answers.as_array().unwrap() {
        let path = expected["path"].as_str().unwrap();
        let token = expected["as"].as_str().map(|who| tokens[who].as_str().unwrap());
        let reply = server.get(path, token);
        let body = if path.ends_with("/bundle") && reply.status == 200 {
            json!({ "sha256": crate::common::bundles::sha256_hex(&reply.body) })
        } else {
            serde_json::from_slice(&reply.body).unwrap_or(Value::String(reply.text()))
        };
        let (want, got) = (without_last_used(expected["body"].clone()), without_last_used(body));
        if reply.status != expected["status"] || want != got {
            differences.push(format!(
                "GET {path} as {}: {} {got}\n  {} answered {} {want}",
                expected["as"],
                reply.status,
                fixture.display(),
                expected["status"]
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} answer(s) differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// Checks fsck on a migrated copy of the format-1 fixture, then serves and
/// compares every answer; the pending outbox reaches the packages site.
fn assert_migrated_and_answering_as_before(dir: &Path) {
    assert_answering_as(dir, 1, 15);
}

/// Checks fsck on a migrated copy of the fixture in `format`, then serves
/// and compares every answer; the pending outbox reaches the packages site
/// (`delivered` events in all).
fn assert_answering_as(dir: &Path, format: u32, delivered: u64) {
    let site = StubServer::start("packages site", |_| tiny_http::Response::from_data(Vec::new()));
    admin(dir, &["fsck"]).success().assert_stdout_has("clean");
    let server = Server::start_in(dir, &[("GREN_REGISTRY_PACKAGE_SITE_URL", &site.url())]);
    assert_answers_as_before(&server, &fixture_of(format));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while admin_json(dir, &["outbox"]).success().json()["pending"]
        .as_array()
        .is_some_and(|p| !p.is_empty())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let outbox = admin_json(dir, &["outbox"]).success().json();
    assert_eq!(
        outbox["delivered"], delivered,
        "the pending outbox was delivered after the migration: {outbox}"
    );
    server.stop();
}

#[test]
fn a_format1_directory_answers_every_request_the_same_after_migrate() {
    let dir = format1_copy();
    let refused = Server::try_start_in(dir.path(), &[])
        .err()
        .expect("a server refuses format 1");
    assert!(
        refused.log.contains("admin migrate"),
        "it says what to do: {}",
        refused.log
    );
    admin(dir.path(), &["stats"])
        .failure()
        .assert_stderr_has("admin migrate");

    admin(dir.path(), &["migrate"])
        .success()
        .assert_stdout_has("from data format 1 to 3: 5 package record(s) rewritten, holding 15 event(s)");
    assert_eq!(read_json(&dir.path().join("format.json")), json!({ "format": 3 }));
    assert!(
        !dir.path().join("events").exists(),
        "the event log lives in the records now"
    );
    assert!(
        !dir.path().join("packages/acme/widgets/1.1.0").exists(),
        "version directories are gone"
    );
    assert_migrated_and_answering_as_before(dir.path());
    admin(dir.path(), &["migrate"])
        .success()
        .assert_stdout_has("nothing to do");
}

#[test]
fn a_migration_stopped_anywhere_finishes_when_run_again() {
    let faults = [
        // Before the first record is rewritten, with a bundle moved.
        "write:EIO@packages/acme/gadgets/package.json",
        // Moving a bundle of a later package.
        "write:EIO@packages/acme/tools/acme_tools__1_0_0.pkg.gz",
        // Removing version directories after a record was rewritten.
        "remove:EIO@packages/acme/secret/1.0.1",
        // Removing the old event log, every record rewritten.
        "remove:EIO@events",
        // The commit of the migration.
        "write:EIO@format.json",
        // A rename whose fsync fails: the process stops there (exit 75).
        "commit-sync:EIO@packages/acme/widgets/package.json",
    ];
    for fault in faults {
        let dir = format1_copy();
        let out = run_with_faults(dir.path(), fault);
        assert!(!out.status.success(), "{fault}: the first run fails: {out:?}");
        assert!(
            Server::try_start_in(dir.path(), &[]).is_err(),
            "{fault}: a half-migrated directory is refused"
        );
        admin(dir.path(), &["migrate"]).success().assert_stdout_has("to 3");
        assert_migrated_and_answering_as_before(dir.path());
    }
}

#[test]
fn a_migration_stopped_halfway_through_removing_the_old_event_log_finishes_when_run_again() {
    let dir = format1_copy();
    let out = run_with_faults(dir.path(), "remove:EIO@events");
    assert!(!out.status.success(), "{out:?}");
    // What a kill part-way through the removal leaves: some event files,
    // in no particular order, every record already rewritten.
    let events = dir.path().join("events");
    let mut removed = 0;
    for entry in std::fs::read_dir(&events).unwrap() {
        let path = entry.unwrap().path();
        let number: u64 = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        if number % 2 == 1 {
            std::fs::remove_file(path).unwrap();
            removed += 1;
        }
    }
    assert!(removed > 1);
    admin(dir.path(), &["migrate"]).success().assert_stdout_has("to 3");
    assert_migrated_and_answering_as_before(dir.path());
}

fn run_with_faults(dir: &Path, faults: &str) -> std::process::Output {
    let mut command: Command = admin_command(dir);
    command.arg("migrate").env("GREN_REGISTRY_TEST_FAULTS", faults);
    command.output().unwrap()
}

#[test]
fn a_directory_of_a_newer_format_is_refused_by_servers_and_admin_commands() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("registry.lock"), b"").unwrap();
    std::fs::write(dir.path().join("format.json"), b"{\"format\": 4}").unwrap();
    let refused = Server::try_start_in(dir.path(), &[])
        .err()
        .expect("a server refuses format 4");
    assert!(
        refused.log.contains("newer gren-registry (data format 4)"),
        "{}",
        refused.log
    );
    for args in [
        &["migrate"][..],
        &["fsck"],
        &["identity", "create", "x", "--admin", "a@example.com"],
    ] {
        admin(dir.path(), args)
            .failure()
            .assert_stderr_has("newer gren-registry");
    }
}

#[test]
fn a_new_directory_is_stamped_with_the_current_format() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    server.stop();
    assert_eq!(read_json(&dir.path().join("format.json")), json!({ "format": 3 }));
}

#[test]
fn migrate_refuses_and_changes_nothing_when_it_would_lose_events_or_a_package() {
    // A gap in the old event log, and a package directory that lost its record.
    let dir = format1_copy();
    std::fs::remove_file(dir.path().join("events/000000000005.json")).unwrap();
    std::fs::remove_file(dir.path().join("packages/acme/tools/package.json")).unwrap();
    let before = files_under(dir.path());
    let out = admin(dir.path(), &["migrate"]).failure();
    out.assert_stderr_has("nothing was changed")
        .assert_stderr_has("events/ lacks event 5")
        .assert_stderr_has("packages/acme/tools has no package.json");
    assert_eq!(
        files_under(dir.path()),
        before,
        "not a file was added, moved or removed"
    );

    // Restored from the fixture, it migrates.
    std::fs::copy(
        fixture().join("data/events/000000000005.json"),
        dir.path().join("events/000000000005.json"),
    )
    .unwrap();
    std::fs::copy(
        fixture().join("data/packages/acme/tools/package.json"),
        dir.path().join("packages/acme/tools/package.json"),
    )
    .unwrap();
    admin(dir.path(), &["migrate"]).success();
    assert_migrated_and_answering_as_before(dir.path());
}

#[test]
fn migrate_refuses_a_record_that_lost_events_other_records_do_not_hold() {
    let dir = format1_copy();
    // gadgets' record counts its events up to 10; at 4, events 5 to 10 are
    // held by no record.
    let path = dir.path().join("packages/acme/gadgets/package.json");
    let mut record = read_json(&path);
    record["last_event"] = json!(4);
    write_json(&path, &record);
    let out = admin(dir.path(), &["migrate"]).failure();
    out.assert_stderr_has("the package records do not hold event 5");
    assert!(dir.path().join("events").exists() && !dir.path().join("format.json").exists());
}

#[test]
fn migrate_announces_what_format1_lost_after_a_commit_and_restores_lost_audit_entries_as_unknown() {
    // As format 1 left a publish whose event was rolled back after its
    // commit, and a publish whose audit entry was never written.
    let dir = format1_copy();
    std::fs::remove_file(dir.path().join("events/000000000015.json")).unwrap();
    let path = dir.path().join("packages/acme/tools/package.json");
    let mut record = read_json(&path);
    record["last_event"] = json!(14);
    write_json(&path, &record);
    // Its audit entry was never written either: the identity counts 23.
    std::fs::remove_file(dir.path().join("identities/acme/audit/000000000024.json")).unwrap();
    let identity = dir.path().join("identities/acme/identity.json");
    let mut counted = read_json(&identity);
    counted["audit_seq"] = json!(23);
    write_json(&identity, &counted);

    admin(dir.path(), &["migrate"]).success();
    admin(dir.path(), &["fsck"]).success().assert_stdout_has("clean");
    let server = Server::start_in(dir.path(), &[]);
    let events = server.get("/events?since=14", None).json();
    let announced = &events["events"][0];
    assert_eq!(
        (
            &announced["seq"],
            &announced["type"],
            &announced["package"],
            &announced["version"]
        ),
        (&json!(15), &json!("publish"), &json!("acme/tools"), &json!("1.0.0")),
        "{events}"
    );
    let tokens = read_json(&fixture().join("tokens.json"));
    let audit = server
        .get(
            "/publishing-identity/acme/audit",
            Some(tokens["alice"].as_str().unwrap()),
        )
        .json();
    let restored: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "published" && entry["package"] == "acme/tools")
        .collect();
    assert_eq!(restored.len(), 1, "{audit}");
    assert_eq!(restored[0]["actor"], "unknown (lost before format 2)");
    server.stop();
}

#[test]
fn a_format2_directory_gets_a_record_a_version_and_answers_every_request_the_same() {
    let dir = copy_of(2);
    let refused = Server::try_start_in(dir.path(), &[])
        .err()
        .expect("a server refuses format 2");
    assert!(refused.log.contains("admin migrate"), "{}", refused.log);

    admin(dir.path(), &["migrate"])
        .success()
        .assert_stdout_has("from data format 2 to 3: 5 package record(s) rewritten, holding 21 event(s)");
    assert_eq!(read_json(&dir.path().join("format.json")), json!({ "format": 3 }));
    let gadgets = dir.path().join("packages/acme/gadgets");
    let package = read_json(&gadgets.join("package.json"));
    assert!(package.get("versions").is_none(), "{package}");
    let kinds: Vec<&str> = package["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["private", "public", "private", "public"],
        "its own events stay: {package}"
    );
    let revoked_while_private = read_json(&gadgets.join("1.0.1.json"));
    let seqs: Vec<u64> = revoked_while_private["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [6, 20], "its publish, and its revocation told on going public");
    assert_eq!(revoked_while_private["version"]["revoked"]["reason"], "while private");
    assert_eq!(revoked_while_private["changes"].as_array().unwrap().len(), 2);
    let by_ci = read_json(&dir.path().join("packages/acme/tools/1.0.1.json"));
    assert_eq!(by_ci["events"][1]["token"]["name"], "ci", "{by_ci}");
    assert_eq!(by_ci["outline"]["version"], "1.0.1", "the revoked outline: {by_ci}");

    assert_answering_as(dir.path(), 2, 21);
    admin(dir.path(), &["migrate"])
        .success()
        .assert_stdout_has("nothing to do");
}

#[test]
fn a_migration_from_format2_stopped_anywhere_finishes_when_run_again() {
    let faults = [
        // A version's record of the first package.
        "write:EIO@packages/acme/gadgets/1.1.0.json",
        // The commit of a later package, its versions' records written.
        "write:EIO@packages/acme/tools/package.json",
        // A rename whose fsync fails: the process stops there (exit 75).
        "commit-sync:EIO@packages/acme/widgets/package.json",
        // The commit of the migration.
        "write:EIO@format.json",
    ];
    for fault in faults {
        let dir = copy_of(2);
        let out = run_with_faults(dir.path(), fault);
        assert!(!out.status.success(), "{fault}: the first run fails: {out:?}");
        assert!(
            Server::try_start_in(dir.path(), &[]).is_err(),
            "{fault}: a half-migrated directory is refused"
        );
        admin(dir.path(), &["migrate"]).success().assert_stdout_has("to 3");
        assert_answering_as(dir.path(), 2, 21);
    }
}
