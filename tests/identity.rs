//! Publishing identities, rule by rule, against the real binary: creation,
//! names, reservations, the rate limit, visibility, members and roles, the
//! last admin, `GET /user`, the audit log, concurrency, the records on disk
//! and the operator command.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `POST /publishing-identity {"name": name}` with a bearer token.
fn create(server: &Server, token: &str, name: &str) -> Reply {
    server.post_json("/publishing-identity", &json!({ "name": name }), Some(token))
}

/// Creates an identity, asserting 200 and the exact answer.
fn create_ok(server: &Server, token: &str, name: &str) {
    let reply = create(server, token, name);
    assert_eq!(reply.status, 200, "creating {name:?}: {}", reply.text());
    assert_eq!(reply.json(), json!({ "name": name, "role": "admin" }));
}

fn member_path(identity: &str, email: &str) -> String {
    format!("/publishing-identity/{identity}/members/{email}")
}

fn put_member(server: &Server, token: &str, identity: &str, email: &str, role: &str) -> Reply {
    server.put_json(&member_path(identity, email), &json!({ "role": role }), Some(token))
}

/// Adds (or changes) a member, asserting 200 and the member JSON.
#[track_caller]
fn put_member_ok(server: &Server, token: &str, identity: &str, email: &str, role: &str) -> Value {
    let reply = put_member(server, token, identity, email, role);
    assert_eq!(
        reply.status,
        200,
        "PUT {}: {}",
        member_path(identity, email),
        reply.text()
    );
    let member = reply.json();
    assert_member_shape(&member);
    let expected = email.replace("%40", "@").to_ascii_lowercase();
    assert_eq!(member["email"], expected, "{member}");
    assert_eq!(member["role"], role, "{member}");
    member
}

#[track_caller]
fn assert_member_shape(member: &Value) {
    let keys: BTreeSet<&str> = member
        .as_object()
        .unwrap_or_else(|| panic!("a member is an object: {member}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["email", "role", "added"]),
        "member keys: {member}"
    );
    assert!(
        member["added"].as_str().is_some_and(is_rfc3339),
        "added is an RFC 3339 time: {member}"
    );
}

fn is_rfc3339(text: &str) -> bool {
    text.len() >= 20 && text.ends_with('Z') && text.as_bytes()[4] == b'-' && text.contains('T')
}

fn show(server: &Server, identity: &str, token: Option<&str>) -> Reply {
    server.get(&format!("/publishing-identity/{identity}"), token)
}

#[track_caller]
fn show_ok(server: &Server, identity: &str, token: Option<&str>) -> Value {
    let reply = show(server, identity, token);
    assert_eq!(reply.status, 200, "GET {identity}: {}", reply.text());
    reply.json()
}

/// The members as `email → role`, from a member's view of the identity.
#[track_caller]
fn roles(view: &Value) -> BTreeMap<String, String> {
    view["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members list in {view}"))
        .iter()
        .map(|member| {
            assert_member_shape(member);
            (
                member["email"].as_str().unwrap().to_string(),
                member["role"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

/// `GET /user`'s `identities`.
#[track_caller]
fn user_identities(server: &Server, token: &str) -> Value {
    let reply = server.get("/user", Some(token));
    assert_eq!(reply.status, 200, "GET /user: {}", reply.text());
    reply.json()["identities"].clone()
}

#[track_caller]
fn audit_entries(server: &Server, identity: &str, token: &str) -> Vec<Value> {
    let reply = server.get(&format!("/publishing-identity/{identity}/audit"), Some(token));
    assert_eq!(reply.status, 200, "GET audit: {}", reply.text());
    reply.json()["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no entries in {}", reply.text()))
        .clone()
}

fn identity_dir(server: &Server, key: &str) -> PathBuf {
    server.data_dir.join("identities").join(key)
}

fn read_json_file(path: &Path) -> (String, Value) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    let json =
        serde_json::from_str(&text).unwrap_or_else(|err| panic!("{} is not JSON ({err}): {text}", path.display()));
    (text, json)
}

#[track_caller]
fn assert_pretty(path: &Path, text: &str) {
    assert!(
        text.starts_with("{\n  \""),
        "{} is not pretty-printed JSON: {text}",
        path.display()
    );
}

/// Runs `gren-registry admin --data-dir <dir> <args>` with a clean environment.
fn run_admin(data_dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gren-registry"));
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy().to_ascii_uppercase();
        if name.starts_with("GREN_REGISTRY_") || name.starts_with("POSTMARK_") {
            command.env_remove(&key);
        }
    }
    command
        .arg("admin")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("cannot run gren-registry admin")
}

// ---------------------------------------------------------------------------
// Creating
// ---------------------------------------------------------------------------

#[test]
fn creating_with_a_bearer_token_makes_the_caller_admin() {
    let server = Server::start();
    let token = server.login("me@example.com");
    let reply = create(&server, &token, "gren-lang");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json(), json!({ "name": "gren-lang", "role": "admin" }));
    let view = show_ok(&server, "gren-lang", Some(&token));
    assert_eq!(view["name"], "gren-lang");
    assert_eq!(roles(&view), map(&[("me@example.com", "admin")]));
    assert_eq!(
        user_identities(&server, &token),
        json!([{ "name": "gren-lang", "role": "admin" }])
    );
}

#[test]
fn creating_with_the_session_in_the_body_like_upstream() {
    let server = Server::start();
    let token = server.login("me@example.com");
    let reply = server.post_json(
        "/publishing-identity",
        &json!({ "session": token, "name": "gren-lang" }),
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({ "name": "gren-lang", "role": "admin" }));
    let view = show_ok(&server, "gren-lang", Some(&token));
    assert_eq!(roles(&view), map(&[("me@example.com", "admin")]));
}

#[test]
fn creating_without_a_valid_token_is_401_with_www_authenticate() {
    let server = Server::start();
    let reply = server.post_json("/publishing-identity", &json!({ "name": "gren-lang" }), None);
    reply.assert_error(401, "unauthorized");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));

    let reply = server.post_json(
        "/publishing-identity",
        &json!({ "name": "gren-lang" }),
        Some("gren_not-a-real-token"),
    );
    reply.assert_error(401, "unauthorized");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));

    let reply = server.post_json(
        "/publishing-identity",
        &json!({ "session": "gren_not-a-real-token", "name": "gren-lang" }),
        None,
    );
    reply.assert_error(401, "unauthorized");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));

    assert!(!identity_dir(&server, "gren-lang").exists(), "nothing was created");
    show(&server, "gren-lang", None).assert_error(404, "identity_not_found");
}

#[test]
fn names_follow_the_gren_author_rule() {
    let server = Server::start();
    let token = server.login("me@example.com");
    let forty = "a".repeat(40);
    for bad in ["-a", "a-", "a--b", "a_b", "a.b", "../x", &forty, "", "a b", "é", "a/b"] {
        create(&server, &token, bad).assert_error(400, "invalid_name");
    }
    let thirty_nine = format!("{}9", "b".repeat(38));
    assert_eq!(thirty_nine.len(), 39);
    create_ok(&server, &token, &thirty_nine);
    create_ok(&server, &token, "A1-b2-C3");
    let dirs: BTreeSet<String> = std::fs::read_dir(server.data_dir.join("identities"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        dirs,
        BTreeSet::from([thirty_nine.clone(), "a1-b2-c3".to_string()]),
        "only the valid names made directories"
    );
}

#[test]
fn names_are_unique_regardless_of_case_and_keep_their_spelling() {
    let server = Server::start();
    let first = server.login("first@example.com");
    let second = server.login("second@example.com");
    create_ok(&server, &first, "Gren-Lang");
    create(&server, &second, "gren-lang").assert_error(409, "name_taken");
    create(&server, &first, "GREN-LANG").assert_error(409, "name_taken");
    create(&server, &first, "Gren-Lang").assert_error(409, "name_taken");

    for spelling in ["gren-lang", "GREN-LANG", "Gren-Lang"] {
        let view = show_ok(&server, spelling, Some(&first));
        assert_eq!(view["name"], "Gren-Lang", "GET {spelling}");
        assert_eq!(roles(&view), map(&[("first@example.com", "admin")]));
    }
    assert_eq!(
        show_ok(&server, "gren-lang", None),
        json!({ "name": "Gren-Lang", "packages": [] })
    );
    assert_eq!(user_identities(&server, &second), json!([]));
}

#[test]
fn reserved_names_are_refused_to_users() {
    let server = Server::start();
    let token = server.login("me@example.com");
    for reserved in ["admin", "API", "con", "nul", "registry", "www", "root"] {
        create(&server, &token, reserved).assert_error(409, "name_reserved");
        assert!(
            !identity_dir(&server, &reserved.to_ascii_lowercase()).exists(),
            "{reserved} was not created"
        );
    }
    create_ok(&server, &token, "admins");
}

#[test]
fn reserved_names_come_from_the_environment() {
    let server = Server::with_env(&[("GREN_REGISTRY_RESERVED_IDENTITIES", "foo,bar")]);
    let token = server.login("me@example.com");
    create(&server, &token, "foo").assert_error(409, "name_reserved");
    create(&server, &token, "BAR").assert_error(409, "name_reserved");
    create_ok(&server, &token, "admin");
    create_ok(&server, &token, "www");
}

#[test]
fn operators_create_reserved_identities_with_the_server_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_admin(
        dir.path(),
        &["identity", "create", "admin", "--admin", "ops@example.com"],
    );
    assert!(output.status.success(), "admin identity create failed: {output:?}");
    let (text, record) = read_json_file(&dir.path().join("identities/admin/identity.json"));
    assert_pretty(Path::new("identity.json"), &text);
    assert_eq!(record["name"], "admin");
    assert_eq!(record["members"][0]["email"], "ops@example.com");
    assert_eq!(record["members"][0]["role"], "admin");

    let server = Server::start_in(dir.path(), &[]);
    let token = server.login("ops@example.com");
    assert_eq!(
        user_identities(&server, &token),
        json!([{ "name": "admin", "role": "admin" }])
    );
    let entries = audit_entries(&server, "admin", &token);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["seq"], 1);
    assert_eq!(entries[0]["action"], "created");
    assert_eq!(entries[0]["actor"], "operator");
    assert_eq!(entries[0]["admin"], "ops@example.com");

    // While the server holds the data directory, the command refuses.
    let output = run_admin(
        dir.path(),
        &["identity", "create", "other", "--admin", "ops@example.com"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "ran beside a server: {output:?}");
    assert!(
        stderr.contains("lock") && stderr.contains("Stop the server"),
        "stderr mentions the lock and stopping the server: {stderr}"
    );
    assert!(!dir.path().join("identities/other").exists());
    show(&server, "other", None).assert_error(404, "identity_not_found");
    server.stop();
}

#[test]
fn the_daily_creation_limit_answers_429_with_retry_after() {
    let server = Server::with_env(&[("GREN_REGISTRY_IDENTITY_LIMIT_PER_DAY", "2")]);
    let token = server.login("me@example.com");
    create_ok(&server, &token, "one");
    create_ok(&server, &token, "two");
    let refused = create(&server, &token, "three");
    refused.assert_error(429, "rate_limited");
    let retry: u64 = refused
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {refused:?}"))
        .parse()
        .expect("Retry-After is a number of seconds");
    assert!((86_000..=86_400).contains(&retry), "Retry-After {retry} is about a day");
    show(&server, "three", None).assert_error(404, "identity_not_found");
    // Another user has their own allowance.
    let other = server.login("other@example.com");
    create_ok(&server, &other, "three");
}

#[test]
fn refused_creations_do_not_use_up_the_daily_limit() {
    let server = Server::with_env(&[("GREN_REGISTRY_IDENTITY_LIMIT_PER_DAY", "1")]);
    let token = server.login("me@example.com");
    create(&server, &token, "admin").assert_error(409, "name_reserved");
    create(&server, &token, "bad_name").assert_error(400, "invalid_name");
    create_ok(&server, &token, "mine");
    create(&server, &token, "another").assert_error(429, "rate_limited");
}

#[test]
fn a_request_without_any_token_is_401_even_without_a_body() {
    let server = Server::start();
    let reply = server.send("POST", "/publishing-identity", &[], b"");
    reply.assert_error(401, "unauthorized");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
}

#[test]
fn setting_an_unchanged_role_sends_no_email() {
    let server = Server::start();
    let admin = server.login("admin@example.com");
    create_ok(&server, &admin, "gren-lang");
    put_member_ok(&server, &admin, "gren-lang", "pub@example.com", "publish");
    server.postmark.wait_for_message_to("pub@example.com");
    let before = server.postmark.messages().len();
    put_member_ok(&server, &admin, "gren-lang", "pub@example.com", "publish");
    put_member_ok(&server, &admin, "gren-lang", "pub@example.com", "download");
    let mail = server
        .postmark
        .wait_for_message(|mail| mail.json["TextBody"].as_str().unwrap_or("").contains("download"));
    assert_eq!(mail.json["To"], "pub@example.com");
    assert_eq!(
        server.postmark.messages().len(),
        before + 1,
        "only the real change was announced"
    );
}

// ---------------------------------------------------------------------------
// Showing
// ---------------------------------------------------------------------------

/// Tokens of the identity gren-lang's admin, a publish and a download
/// member, and someone outside it.
struct Team {
    admin: String,
    publisher: String,
    downloader: String,
    stranger: String,
}

fn team(server: &Server) -> Team {
    let team = Team {
        admin: server.login("admin@example.com"),
        publisher: server.login("pub@example.com"),
        downloader: server.login("down@example.com"),
        stranger: server.login("stranger@example.com"),
    };
    create_ok(server, &team.admin, "gren-lang");
    put_member_ok(server, &team.admin, "gren-lang", "pub@example.com", "publish");
    put_member_ok(server, &team.admin, "gren-lang", "down@example.com", "download");
    team
}

#[test]
fn members_see_members_and_others_see_only_name_and_packages() {
    let server = Server::start();
    let Team {
        admin,
        publisher,
        downloader,
        stranger,
    } = team(&server);

    let expected = map(&[
        ("admin@example.com", "admin"),
        ("pub@example.com", "publish"),
        ("down@example.com", "download"),
    ]);
    for token in [&admin, &publisher, &downloader] {
        let view = show_ok(&server, "gren-lang", Some(token));
        assert_eq!(view["name"], "gren-lang");
        assert_eq!(roles(&view), expected);
        assert_eq!(view["packages"], json!([]), "{view}");
    }

    for token in [Some(stranger.as_str()), None] {
        let reply = show(&server, "gren-lang", token);
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            reply.json(),
            json!({ "name": "gren-lang", "packages": [] }),
            "token {token:?}"
        );
        assert!(
            !reply.text().contains('@'),
            "no e-mail address for outsiders: {}",
            reply.text()
        );
    }

    show(&server, "nope", Some(&admin)).assert_error(404, "identity_not_found");
    show(&server, "nope", None).assert_error(404, "identity_not_found");
    show(&server, "a_b", None).assert_error(404, "identity_not_found");
    let reply = show(&server, "gren-lang", Some("gren_not-a-real-token"));
    reply.assert_error(401, "unauthorized");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
}

// ---------------------------------------------------------------------------
// Members
// ---------------------------------------------------------------------------

#[test]
fn an_admin_adds_a_member_who_is_told_by_email() {
    let server = Server::start();
    let admin = server.login("admin@example.com");
    create_ok(&server, &admin, "gren-lang");
    let before = server.postmark.messages().len();
    let member = put_member_ok(&server, &admin, "gren-lang", "pub@example.com", "publish");
    assert_eq!(member["email"], "pub@example.com");
    assert_eq!(member["role"], "publish");

    let mail = server.postmark.wait_for_message_to("pub@example.com");
    assert_eq!(mail.json["To"], "pub@example.com");
    let subject = mail.json["Subject"].as_str().unwrap_or("");
    assert!(
        subject.contains("gren-lang"),
        "the subject names the identity: {subject:?}"
    );
    assert!(
        mail.text_body().contains("admin@example.com") && mail.text_body().contains("publish"),
        "the text says who and which role: {}",
        mail.text_body()
    );
    assert_eq!(server.postmark.messages().len(), before + 1);

    let view = show_ok(&server, "gren-lang", Some(&admin));
    assert_eq!(
        roles(&view),
        map(&[("admin@example.com", "admin"), ("pub@example.com", "publish")])
    );
}

#[test]
fn roles_change_and_bad_input_is_refused() {
    let server = Server::start();
    let admin = server.login("admin@example.com");
    create_ok(&server, &admin, "gren-lang");
    put_member_ok(&server, &admin, "gren-lang", "m@example.com", "publish");
    put_member_ok(&server, &admin, "gren-lang", "m@example.com", "download");
    put_member_ok(&server, &admin, "gren-lang", "m@example.com", "admin");
    assert_eq!(
        roles(&show_ok(&server, "gren-lang", Some(&admin))),
        map(&[("admin@example.com", "admin"), ("m@example.com", "admin")])
    );

    // The address may be percent-encoded, and is lower-cased.
    put_member_ok(&server, &admin, "gren-lang", "me%40example.com", "publish");
    put_member_ok(&server, &admin, "gren-lang", "Me@Example.com", "download");
    assert_eq!(
        roles(&show_ok(&server, "gren-lang", Some(&admin))),
        map(&[
            ("admin@example.com", "admin"),
            ("m@example.com", "admin"),
            ("me@example.com", "download"),
        ])
    );

    put_member(&server, &admin, "gren-lang", "x@example.com", "owner").assert_error(400, "invalid_role");
    put_member(&server, &admin, "gren-lang", "x@example.com", "Admin").assert_error(400, "invalid_role");
    put_member(&server, &admin, "gren-lang", "x@example.com", "").assert_error(400, "invalid_role");
    put_member(&server, &admin, "gren-lang", "not-an-email", "publish").assert_error(400, "invalid_email");
    put_member(&server, &admin, "gren-lang", "me@localhost", "publish").assert_error(400, "invalid_email");
    assert_eq!(
        roles(&show_ok(&server, "gren-lang", Some(&admin))).len(),
        3,
        "refused changes changed nothing"
    );
}

#[test]
fn only_admins_manage_members() {
    let server = Server::start();
    let Team {
        admin,
        publisher,
        downloader,
        stranger,
    } = team(&server);

    for token in [&publisher, &downloader, &stranger] {
        put_member(&server, token, "gren-lang", "new@example.com", "download").assert_error(403, "forbidden");
        put_member(&server, token, "gren-lang", "pub@example.com", "admin").assert_error(403, "forbidden");
    }
    // Nobody raises their own role either.
    put_member(&server, &publisher, "gren-lang", "pub@example.com", "admin").assert_error(403, "forbidden");
    put_member(&server, &downloader, "gren-lang", "down@example.com", "publish").assert_error(403, "forbidden");

    put_member(&server, &admin, "nope", "new@example.com", "publish").assert_error(404, "identity_not_found");
    let reply = server.put_json(
        &member_path("gren-lang", "new@example.com"),
        &json!({ "role": "publish" }),
        None,
    );
    reply.assert_error(401, "unauthorized");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));

    assert_eq!(
        roles(&show_ok(&server, "gren-lang", Some(&admin))),
        map(&[
            ("admin@example.com", "admin"),
            ("pub@example.com", "publish"),
            ("down@example.com", "download"),
        ])
    );
    assert!(
        !server.data_dir.join("users/new@example.com.json").exists(),
        "a refused add leaves no user record"
    );
}

#[test]
fn removing_members() {
    let server = Server::start();
    let admin = server.login("admin@example.com");
    let publisher = server.login("pub@example.com");
    let leaver = server.login("leaver@example.com");
    create_ok(&server, &admin, "gren-lang");
    put_member_ok(&server, &admin, "gren-lang", "pub@example.com", "publish");
    put_member_ok(&server, &admin, "gren-lang", "leaver@example.com", "download");
    put_member_ok(&server, &admin, "gren-lang", "gone@example.com", "download");
    put_member_ok(&server, &admin, "gren-lang", "kept@example.com", "download");

    // A publish member may not remove someone else.
    server
        .delete(&member_path("gren-lang", "kept@example.com"), Some(&publisher))
        .assert_error(403, "forbidden");

    // An admin removes anyone.
    let reply = server.delete(&member_path("gren-lang", "gone@example.com"), Some(&admin));
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert!(reply.body.is_empty());

    // A member removes themself (percent-encoded path).
    let reply = server.delete(&member_path("gren-lang", "leaver%40example.com"), Some(&leaver));
    assert_eq!(reply.status, 204, "{}", reply.text());

    // Not a member (any more).
    server
        .delete(&member_path("gren-lang", "gone@example.com"), Some(&admin))
        .assert_error(404, "member_not_found");
    server
        .delete(&member_path("gren-lang", "never@example.com"), Some(&admin))
        .assert_error(404, "member_not_found");
    server
        .delete(&member_path("nope", "pub@example.com"), Some(&admin))
        .assert_error(404, "identity_not_found");
    server
        .delete(&member_path("gren-lang", "not-an-email"), Some(&admin))
        .assert_error(400, "invalid_email");
    server
        .delete(&member_path("gren-lang", "pub@example.com"), None)
        .assert_error(401, "unauthorized");

    assert_eq!(
        roles(&show_ok(&server, "gren-lang", Some(&admin))),
        map(&[
            ("admin@example.com", "admin"),
            ("pub@example.com", "publish"),
            ("kept@example.com", "download"),
        ])
    );
    // The one who left is now an outsider.
    assert_eq!(
        show_ok(&server, "gren-lang", Some(&leaver)),
        json!({ "name": "gren-lang", "packages": [] })
    );
    assert_eq!(user_identities(&server, &leaver), json!([]));
}

#[test]
fn the_last_admin_can_neither_be_demoted_nor_leave() {
    let server = Server::start();
    let first = server.login("first@example.com");
    let second = server.login("second@example.com");
    create_ok(&server, &first, "gren-lang");

    put_member(&server, &first, "gren-lang", "first@example.com", "publish").assert_error(409, "last_admin");
    put_member(&server, &first, "gren-lang", "first@example.com", "download").assert_error(409, "last_admin");
    server
        .delete(&member_path("gren-lang", "first@example.com"), Some(&first))
        .assert_error(409, "last_admin");
    assert_eq!(
        roles(&show_ok(&server, "gren-lang", Some(&first))),
        map(&[("first@example.com", "admin")])
    );

    put_member_ok(&server, &first, "gren-lang", "second@example.com", "admin");
    let reply = server.delete(&member_path("gren-lang", "first@example.com"), Some(&first));
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert_eq!(
        roles(&show_ok(&server, "gren-lang", Some(&second))),
        map(&[("second@example.com", "admin")])
    );
    assert_eq!(user_identities(&server, &first), json!([]));
    assert_eq!(
        user_identities(&server, &second),
        json!([{ "name": "gren-lang", "role": "admin" }])
    );
    // Now the second is the last admin.
    put_member(&server, &second, "gren-lang", "second@example.com", "publish").assert_error(409, "last_admin");
    server
        .delete(&member_path("gren-lang", "second@example.com"), Some(&second))
        .assert_error(409, "last_admin");
}

#[test]
fn an_admin_among_two_may_be_demoted() {
    let server = Server::start();
    let first = server.login("first@example.com");
    create_ok(&server, &first, "gren-lang");
    put_member_ok(&server, &first, "gren-lang", "second@example.com", "admin");
    put_member_ok(&server, &first, "gren-lang", "first@example.com", "publish");
    assert_eq!(
        roles(&show_ok(&server, "gren-lang", Some(&first))),
        map(&[("first@example.com", "publish"), ("second@example.com", "admin")])
    );
    // Demoted, the first is no longer allowed to manage members.
    put_member(&server, &first, "gren-lang", "x@example.com", "download").assert_error(403, "forbidden");
}

// ---------------------------------------------------------------------------
// GET /user
// ---------------------------------------------------------------------------

#[test]
fn get_user_lists_identities_and_follows_changes() {
    let server = Server::start();
    let admin = server.login("admin@example.com");
    let member = server.login("member@example.com");
    create_ok(&server, &admin, "Gren-Lang");
    create_ok(&server, &admin, "blaix");
    assert_eq!(
        user_identities(&server, &admin),
        json!([
            { "name": "blaix", "role": "admin" },
            { "name": "Gren-Lang", "role": "admin" },
        ])
    );
    assert_eq!(user_identities(&server, &member), json!([]));

    put_member_ok(&server, &admin, "gren-lang", "member@example.com", "publish");
    assert_eq!(
        user_identities(&server, &member),
        json!([{ "name": "Gren-Lang", "role": "publish" }])
    );
    put_member_ok(&server, &admin, "blaix", "member@example.com", "admin");
    assert_eq!(
        user_identities(&server, &member),
        json!([
            { "name": "blaix", "role": "admin" },
            { "name": "Gren-Lang", "role": "publish" },
        ])
    );
    put_member_ok(&server, &admin, "Gren-Lang", "member@example.com", "download");
    assert_eq!(
        user_identities(&server, &member),
        json!([
            { "name": "blaix", "role": "admin" },
            { "name": "Gren-Lang", "role": "download" },
        ])
    );
    let reply = server.delete(&member_path("blaix", "member@example.com"), Some(&admin));
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert_eq!(
        user_identities(&server, &member),
        json!([{ "name": "Gren-Lang", "role": "download" }])
    );
    let reply = server.delete(&member_path("GREN-LANG", "member@example.com"), Some(&member));
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert_eq!(user_identities(&server, &member), json!([]));
}

#[test]
fn people_who_never_logged_in_can_be_added_and_see_it_after_login() {
    let server = Server::start();
    let admin = server.login("admin@example.com");
    create_ok(&server, &admin, "gren-lang");
    assert!(!server.data_dir.join("users/new@example.com.json").exists());
    put_member_ok(&server, &admin, "gren-lang", "new@example.com", "publish");
    let mail = server.postmark.wait_for_message_to("new@example.com");
    assert!(mail.json["Subject"].as_str().unwrap_or("").contains("gren-lang"));

    let (_, record) = read_json_file(&server.data_dir.join("users/new@example.com.json"));
    assert_eq!(record["identities"], json!(["gren-lang"]), "{record}");

    let token = server.login("new@example.com");
    assert_eq!(
        user_identities(&server, &token),
        json!([{ "name": "gren-lang", "role": "publish" }])
    );
    let view = show_ok(&server, "gren-lang", Some(&token));
    assert_eq!(
        roles(&view),
        map(&[("admin@example.com", "admin"), ("new@example.com", "publish")])
    );
    let (_, record) = read_json_file(&server.data_dir.join("users/new@example.com.json"));
    assert_eq!(
        record["identities"],
        json!(["gren-lang"]),
        "logging in keeps the index: {record}"
    );
}

// ---------------------------------------------------------------------------
// Audit log
// ---------------------------------------------------------------------------

#[test]
fn the_audit_log_lists_every_change_in_order() {
    let server = Server::start();
    let admin = server.login("admin@example.com");
    let publisher = server.login("pub@example.com");
    let stranger = server.login("stranger@example.com");
    create_ok(&server, &admin, "Gren-Lang");
    put_member_ok(&server, &admin, "gren-lang", "pub@example.com", "publish");
    put_member_ok(&server, &admin, "gren-lang", "m@example.com", "download");
    put_member_ok(&server, &admin, "gren-lang", "m@example.com", "admin");
    let reply = server.delete(&member_path("gren-lang", "m@example.com"), Some(&admin));
    assert_eq!(reply.status, 204, "{}", reply.text());
    // A no-op and refused changes are not changes.
    put_member_ok(&server, &admin, "gren-lang", "pub@example.com", "publish");
    put_member(&server, &admin, "gren-lang", "admin@example.com", "publish").assert_error(409, "last_admin");

    let reply = server.get("/publishing-identity/gren-lang/audit", Some(&admin));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json()["name"], "Gren-Lang");
    let entries = audit_entries(&server, "gren-lang", &admin);
    let without_times: Vec<Value> = entries
        .iter()
        .map(|entry| {
            assert!(
                entry["at"].as_str().is_some_and(is_rfc3339),
                "at is an RFC 3339 time: {entry}"
            );
            let mut entry = entry.clone();
            entry.as_object_mut().unwrap().remove("at");
            entry
        })
        .collect();
    let actor = "admin@example.com";
    assert_eq!(
        without_times,
        vec![
            json!({ "seq": 1, "actor": actor, "action": "created", "admin": actor }),
            json!({ "seq": 2, "actor": actor, "action": "member_added", "member": "pub@example.com", "role": "publish" }),
            json!({ "seq": 3, "actor": actor, "action": "member_added", "member": "m@example.com", "role": "download" }),
            json!({ "seq": 4, "actor": actor, "action": "role_changed", "member": "m@example.com", "from": "download", "to": "admin" }),
            json!({ "seq": 5, "actor": actor, "action": "member_removed", "member": "m@example.com", "role": "admin" }),
        ]
    );
    let times: Vec<&str> = entries.iter().map(|e| e["at"].as_str().unwrap()).collect();
    assert!(
        times.windows(2).all(|pair| pair[0] <= pair[1]),
        "times do not go backwards: {times:?}"
    );

    // Only admins read it.
    server
        .get("/publishing-identity/gren-lang/audit", Some(&publisher))
        .assert_error(403, "forbidden");
    server
        .get("/publishing-identity/gren-lang/audit", Some(&stranger))
        .assert_error(403, "forbidden");
    server
        .get("/publishing-identity/gren-lang/audit", None)
        .assert_error(401, "unauthorized");
    server
        .get("/publishing-identity/nope/audit", Some(&admin))
        .assert_error(404, "identity_not_found");

    // On disk: one pretty JSON file per entry, under the lower-case name.
    let audit_dir = identity_dir(&server, "gren-lang").join("audit");
    let files = files_under(&audit_dir);
    assert_eq!(files.len(), entries.len(), "{files:?}");
    let mut on_disk: Vec<Value> = files
        .iter()
        .map(|path| {
            assert_eq!(path.extension().and_then(|e| e.to_str()), Some("json"));
            let (text, json) = read_json_file(path);
            assert_pretty(path, &text);
            json
        })
        .collect();
    on_disk.sort_by_key(|entry| entry["seq"].as_u64());
    assert_eq!(on_disk, entries, "the files are the entries");
}

// ---------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------

#[test]
fn concurrent_member_changes_lose_nothing() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 10;
    let server = Server::start();
    let admin = server.login("admin@example.com");
    create_ok(&server, &admin, "gren-lang");

    let email = |t: usize, i: usize| format!("t{t}-m{i}@example.com");
    // Each thread adds its ten as `publish`, then makes every other one
    // `download` while the other threads are still adding.
    let changed = |i: usize| i.is_multiple_of(2);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (server, admin) = (&server, &admin);
                scope.spawn(move || {
                    for i in 0..PER_THREAD {
                        let reply = put_member(server, admin, "gren-lang", &email(t, i), "publish");
                        assert_eq!(reply.status, 200, "add {}: {}", email(t, i), reply.text());
                        if i >= 1 && changed(i - 1) {
                            let reply = put_member(server, admin, "gren-lang", &email(t, i - 1), "download");
                            assert_eq!(reply.status, 200, "change {}: {}", email(t, i - 1), reply.text());
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("a client thread failed");
        }
    });

    let mut expected = map(&[("admin@example.com", "admin")]);
    let mut role_changes = 0;
    for t in 0..THREADS {
        for i in 0..PER_THREAD {
            let role = if changed(i) { "download" } else { "publish" };
            role_changes += usize::from(changed(i));
            expected.insert(email(t, i), role.to_string());
        }
    }
    let view = show_ok(&server, "gren-lang", Some(&admin));
    assert_eq!(view["members"].as_array().unwrap().len(), 1 + THREADS * PER_THREAD);
    assert_eq!(roles(&view), expected);

    let entries = audit_entries(&server, "gren-lang", &admin);
    assert_eq!(entries.len(), 1 + THREADS * PER_THREAD + role_changes);
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let want: Vec<u64> = (1..=entries.len() as u64).collect();
    assert_eq!(seqs, want, "seq runs 1..N without gaps");
    let count = |action: &str| entries.iter().filter(|e| e["action"] == action).count();
    assert_eq!(count("created"), 1);
    assert_eq!(count("member_added"), THREADS * PER_THREAD);
    assert_eq!(count("role_changed"), role_changes);
    assert_eq!(
        files_under(&identity_dir(&server, "gren-lang").join("audit")).len(),
        entries.len()
    );

    // The identity record and every user's index agree.
    let (_, record) = read_json_file(&identity_dir(&server, "gren-lang").join("identity.json"));
    assert_eq!(record["members"].as_array().unwrap().len(), expected.len());
    for t in 0..THREADS {
        for i in 0..PER_THREAD {
            let path = server.data_dir.join("users").join(format!("{}.json", email(t, i)));
            let (_, user) = read_json_file(&path);
            assert_eq!(user["identities"], json!(["gren-lang"]), "{}", path.display());
        }
    }
}

#[test]
fn concurrent_creations_of_one_name_have_one_winner() {
    let server = Server::start();
    let spellings = [
        "gren-lang",
        "Gren-Lang",
        "GREN-LANG",
        "gren-Lang",
        "Gren-lang",
        "GREN-lang",
        "gren-LANG",
        "GrEn-LaNg",
    ];
    let tokens: Vec<String> = (0..spellings.len())
        .map(|i| server.login(&format!("u{i}@example.com")))
        .collect();
    let statuses: Vec<(usize, u16)> = std::thread::scope(|scope| {
        let handles: Vec<_> = spellings
            .iter()
            .zip(&tokens)
            .enumerate()
            .map(|(i, (name, token))| {
                let server = &server;
                scope.spawn(move || {
                    let reply = create(server, token, name);
                    if reply.status != 200 {
                        reply.assert_error(409, "name_taken");
                    }
                    (i, reply.status)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<usize> = statuses
        .iter()
        .filter(|(_, status)| *status == 200)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one creation wins: {statuses:?}");
    let winner = winners[0];
    let view = show_ok(&server, "gren-lang", Some(&tokens[winner]));
    assert_eq!(view["name"], spellings[winner]);
    assert_eq!(roles(&view), map(&[(&format!("u{winner}@example.com"), "admin")]));
    for (i, token) in tokens.iter().enumerate() {
        let expected = if i == winner {
            json!([{ "name": spellings[winner], "role": "admin" }])
        } else {
            json!([])
        };
        assert_eq!(user_identities(&server, token), expected, "user {i}");
    }
    let entries = audit_entries(&server, "gren-lang", &tokens[winner]);
    assert_eq!(entries.len(), 1, "{entries:?}");
}

// ---------------------------------------------------------------------------
// On disk
// ---------------------------------------------------------------------------

#[test]
fn identity_and_user_records_on_disk() {
    let server = Server::start();
    let admin = server.login("admin@example.com");
    create_ok(&server, &admin, "Gren-Lang");
    put_member_ok(&server, &admin, "gren-lang", "pub@example.com", "publish");

    let path = identity_dir(&server, "gren-lang").join("identity.json");
    let (text, record) = read_json_file(&path);
    assert_pretty(&path, &text);
    assert_eq!(record["name"], "Gren-Lang");
    assert!(record["created"].as_str().is_some_and(is_rfc3339), "{record}");
    let members = record["members"].as_array().expect("members in the record");
    assert_eq!(members.len(), 2, "{record}");
    for member in members {
        assert_member_shape(member);
    }
    assert_eq!(members[0]["email"], "admin@example.com");
    assert_eq!(members[0]["role"], "admin");
    assert_eq!(members[1]["email"], "pub@example.com");
    assert_eq!(members[1]["role"], "publish");
    assert!(
        !server.data_dir.join("identities/Gren-Lang").exists(),
        "the directory is the lower-case key"
    );

    for email in ["admin@example.com", "pub@example.com"] {
        let path = server.data_dir.join("users").join(format!("{email}.json"));
        let (text, user) = read_json_file(&path);
        assert_pretty(&path, &text);
        assert_eq!(user["email"], email);
        assert_eq!(user["identities"], json!(["gren-lang"]), "{user}");
    }

    let reply = server.delete(&member_path("gren-lang", "pub@example.com"), Some(&admin));
    assert_eq!(reply.status, 204, "{}", reply.text());
    let (_, user) = read_json_file(&server.data_dir.join("users/pub@example.com.json"));
    assert_eq!(user["identities"], json!([]), "{user}");
    let (_, record) = read_json_file(&path);
    assert_eq!(record["members"].as_array().unwrap().len(), 1, "{record}");
}
