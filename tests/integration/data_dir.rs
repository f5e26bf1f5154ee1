//! The data directory against local users: private modes whatever the
//! umask, and no planted symbolic link is ever followed.

use crate::common::bundles::{sha256_hex, synthetic};
use crate::common::{Reply, Server, files_under, read_json, stamp_current_format};
use serde_json::json;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The local mail sink (`<data>/mail/`) instead of the Postmark stub.
const LOCAL_SINK: (&str, &str) = ("POSTMARK_SERVER_TOKEN", "");

/// The newest file in `<data>/mail/` that mentions `needle`, waiting up to 5 s.
fn local_mail(data_dir: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = files_under(&data_dir.join("mail"))
            .into_iter()
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .find(|text| text.contains(needle));
        if let Some(text) = found {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no e-mail mentioning {needle:?} in the mail directory"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A code login through the local mail sink; returns the session token.
fn login_with_local_mail(server: &Server, email: &str) -> String {
    let started = server.post_json("/session", &json!({ "email": email }), None);
    assert_eq!(started.status, 200, "{}", started.text());
    let started = started.json();
    let mail = local_mail(&server.data_dir, started["verification"].as_str().unwrap());
    let code = mail
        .lines()
        .find_map(|line| line.strip_prefix("Your confirmation code is: "))
        .expect("the e-mail has a code")
        .to_string();
    let body = json!({ "fetchSessionToken": started["fetchSessionToken"], "emailConfirmationCode": code });
    let fetched = server.post_json("/session/fetch", &body, None);
    assert_eq!(fetched.status, 200, "{}", fetched.text());
    fetched.json()["sessionToken"].as_str().unwrap().to_string()
}

/// Starts a login for `email` and answers its code (from the Postmark
/// stub): the reply of `POST /session/fetch`, which makes the session.
fn confirm_login(server: &Server, email: &str) -> Reply {
    let started = server.post_json("/session", &json!({ "email": email }), None);
    assert_eq!(started.status, 200, "{}", started.text());
    let phrase = started.json()["verification"].as_str().unwrap().to_string();
    let mail = server
        .postmark
        .wait_for_message(|mail| mail.text_body().contains(&phrase));
    let body =
        json!({ "fetchSessionToken": started.json()["fetchSessionToken"], "emailConfirmationCode": mail.code() });
    server.post_json("/session/fetch", &body, None)
}

/// Every entry below `dir` (not following links) with its mode bits.
fn modes_under(dir: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                pending.push(path.clone());
            }
            found.push((path, meta.permissions().mode() & 0o7777, meta.is_dir()));
        }
    }
    found
}

/// Asserts the log refused a symbolic link and names it by `path_end`.
#[track_caller]
fn assert_logged_refusal(server: &Server, path_end: &str) {
    assert!(
        server.wait_for_log("refusing to follow the symbolic link", Duration::from_secs(2))
            && server.log().contains(path_end),
        "the log names the link {path_end}: {}",
        server.log()
    );
}

#[test]
fn every_file_and_directory_the_registry_writes_is_private_whatever_the_umask() {
    let parent = tempfile::tempdir().unwrap();
    let data_dir = parent.path().join("data");
    let server = Server::try_start_with_umask(&data_dir, &[LOCAL_SINK], Some("000")).expect("the registry starts");
    let token = login_with_local_mail(&server, "me@example.com");
    let identity = server.post_json(
        "/publishing-identity",
        &json!({ "name": "private-modes" }),
        Some(&token),
    );
    assert_eq!(identity.status, 200, "{}", identity.text());
    let published = server.publish(&token, &synthetic("private-modes/thing", "1.0.0", "x"));
    assert_eq!(published.status, 201, "{}", published.text());
    let stopped = server.stop();
    assert!(stopped.success(), "{stopped:?}");

    let root_mode = std::fs::metadata(&data_dir).unwrap().permissions().mode() & 0o7777;
    assert_eq!(root_mode, 0o700, "the data directory the registry created");
    let entries = modes_under(&data_dir);
    for kind in ["mail", "users", "sessions", "logins", "identities", "packages"] {
        assert!(
            entries.iter().any(|(path, _, is_dir)| *is_dir && path.ends_with(kind)),
            "{kind}/ was written: {entries:#?}"
        );
    }
    let wrong: Vec<_> = entries
        .iter()
        .filter(|(_, mode, is_dir)| *mode != if *is_dir { 0o700 } else { 0o600 })
        .map(|(path, mode, _)| format!("{} {mode:o}", path.display()))
        .collect();
    assert!(wrong.is_empty(), "not private: {wrong:#?}");
}

#[test]
fn a_planted_mail_directory_symlink_is_not_followed() {
    let data_dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    stamp_current_format(data_dir.path());
    symlink(elsewhere.path(), data_dir.path().join("mail")).unwrap();
    let server = Server::start_in(data_dir.path(), &[LOCAL_SINK]);
    server
        .post_json("/session", &json!({ "email": "me@example.com" }), None)
        .assert_error(500, "internal_error");
    let written: Vec<_> = std::fs::read_dir(elsewhere.path()).unwrap().collect();
    assert!(written.is_empty(), "nothing was written through the link: {written:?}");
    assert_logged_refusal(&server, "/mail ");
}

#[test]
fn a_planted_symlink_in_place_of_a_record_directory_is_not_followed() {
    let data_dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    // Someone else's directory, made to look like an identity the attacker runs.
    let forged = json!({
        "name": "planted",
        "created": "2026-01-01T00:00:00.000Z",
        "members": [{ "email": "attacker@example.com", "role": "admin", "added": "2026-01-01T00:00:00.000Z" }],
        "audit_seq": 0
    });
    std::fs::write(elsewhere.path().join("identity.json"), forged.to_string()).unwrap();
    stamp_current_format(data_dir.path());
    std::fs::create_dir(data_dir.path().join("identities")).unwrap();
    symlink(elsewhere.path(), data_dir.path().join("identities/planted")).unwrap();
    let server = Server::start_in(data_dir.path(), &[]);
    let token = server.login("attacker@example.com");

    server
        .get("/publishing-identity/planted", None)
        .assert_error(500, "internal_error");
    let change = server.put_json(
        "/publishing-identity/planted/members/friend@example.com",
        &json!({ "role": "admin" }),
        Some(&token),
    );
    change.assert_error(500, "internal_error");
    let after = read_json(&elsewhere.path().join("identity.json"));
    assert_eq!(after, forged, "the linked directory is neither read nor changed");
    let names: Vec<_> = std::fs::read_dir(elsewhere.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["identity.json"], "nothing new through the link");
    assert_logged_refusal(&server, "identities/planted ");
}

#[test]
fn a_planted_symlink_in_place_of_a_record_file_is_not_followed() {
    let data_dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let secret = elsewhere.path().join("not-a-record.json");
    std::fs::write(
        &secret,
        r#"{"email": "victim@example.com", "created": "2026-01-01T00:00:00.000Z"}"#,
    )
    .unwrap();
    stamp_current_format(data_dir.path());
    std::fs::create_dir(data_dir.path().join("users")).unwrap();
    symlink(&secret, data_dir.path().join("users/victim@example.com.json")).unwrap();
    let server = Server::start_in(data_dir.path(), &[]);
    // A login starts without the user record; its session needs it.
    confirm_login(&server, "victim@example.com").assert_error(500, "internal_error");
    assert!(
        files_under(&server.data_dir.join("sessions")).is_empty(),
        "no session was made"
    );
    assert_logged_refusal(&server, "users/victim@example.com.json ");
}

#[test]
fn a_storage_failure_is_logged_once_with_the_record_and_its_cause() {
    let data_dir = tempfile::tempdir().unwrap();
    // A directory where a user record belongs: reading it fails as a
    // damaged disk would make it fail (permissions would not stop root).
    let record = data_dir.path().join("users/victim@example.com.json");
    std::fs::create_dir_all(&record).unwrap();
    stamp_current_format(data_dir.path());
    let server = Server::start_in(data_dir.path(), &[]);
    confirm_login(&server, "victim@example.com").assert_error(500, "internal_error");
    assert!(
        server.wait_for_log("internal error", Duration::from_secs(2)),
        "{}",
        server.log()
    );
    let log = server.log();
    let lines: Vec<&str> = log.lines().filter(|line| line.contains("internal error")).collect();
    assert_eq!(lines.len(), 1, "logged once: {log}");
    assert!(
        lines[0].contains(record.to_str().unwrap()) && lines[0].contains("Is a directory"),
        "the log names the record and what the system said: {}",
        lines[0]
    );
}

#[test]
fn a_planted_session_file_its_user_does_not_list_is_refused() {
    let server = Server::start();
    let token = server.login("victim@example.com");
    assert_eq!(server.get("/user", Some(&token)).status, 200);
    let sessions = server.data_dir.join("sessions");
    let real = sessions.join(format!("{}.json", sha256_hex(&token)));
    // A token of the right shape the victim never held, with a copy of the
    // victim's session record planted under its hash.
    let last = if token.ends_with('0') { "1" } else { "0" };
    let planted = format!("{}{last}", &token[..token.len() - 1]);
    std::fs::copy(&real, sessions.join(format!("{}.json", sha256_hex(&planted)))).unwrap();
    let refused = server.get("/user", Some(&planted));
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(server.get("/user", Some(&token)).status, 200);
    assert!(
        server.wait_for_log("its user does not list it", Duration::from_secs(2)),
        "{}",
        server.log()
    );
}

#[test]
fn serve_warns_when_the_data_directory_is_open_to_others_or_owned_by_another_user() {
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (_, log) = Server::start_in(&data, &[]).stop_with_log();
    assert!(
        !log.contains("accessible to other users") && !log.contains("not by this process's uid"),
        "{log}"
    );

    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_, log) = Server::start_in(&data, &[]).stop_with_log();
    assert!(log.contains("is accessible to other users (mode 755)"), "{log}");

    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&data, Some(65534), None).unwrap();
    let (_, log) = Server::start_in(&data, &[]).stop_with_log();
    assert!(log.contains("is owned by uid 65534"), "{log}");
    assert!(log.contains("WARN"), "{log}");
}
