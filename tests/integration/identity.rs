//! Publishing identities, rule by rule, against the real binary: creation,
//! names, reservations, the rate limit, visibility, invitations, members and
//! roles, the last admin, `GET /user`, the audit log, concurrency, the
//! records on disk and the operator commands.

use crate::common::operator;
use crate::common::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

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

/// Invites someone who is not a member, asserting 202 and the invitation JSON.
#[track_caller]
fn invite_ok(server: &Server, token: &str, identity: &str, email: &str, role: &str) -> Value {
    let reply = put_member(server, token, identity, email, role);
    assert_eq!(
        reply.status,
        202,
        "PUT {}: {}",
        member_path(identity, email),
        reply.text()
    );
    let invitation = reply.json();
    assert_invitation_shape(&invitation);
    assert_eq!(invitation["email"], email.replace("%40", "@").to_ascii_lowercase());
    assert_eq!(invitation["role"], role, "{invitation}");
    invitation
}

#[track_caller]
fn assert_invitation_shape(invitation: &Value) {
    assert_keys(invitation, &["email", "role", "invited_by", "invited", "expires"]);
    for time in ["invited", "expires"] {
        assert!(
            invitation[time].as_str().is_some_and(is_rfc3339),
            "{time} is an RFC 3339 time: {invitation}"
        );
    }
}

/// An object with exactly these keys.
#[track_caller]
fn assert_keys(object: &Value, expected: &[&str]) {
    let keys: BTreeSet<&str> = object
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {object}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, expected.iter().copied().collect(), "keys of {object}");
}

fn invitation_path(identity: &str) -> String {
    format!("/publishing-identity/{identity}/invitation")
}

fn accept(server: &Server, identity: &str, token: Option<&str>) -> Reply {
    server.post_json(&invitation_path(identity), &json!({}), token)
}

/// `GET /user/invitations`' list.
#[track_caller]
fn received_invitations(server: &Server, token: &str) -> Vec<Value> {
    let reply = server.get("/user/invitations", Some(token));
    assert_eq!(reply.status, 200, "GET /user/invitations: {}", reply.text());
    reply.json()["invitations"]
        .as_array()
        .unwrap_or_else(|| panic!("no invitations list in {}", reply.text()))
        .clone()
}

/// The pending invitations as `email → role`, from an admin's view.
#[track_caller]
fn invited(view: &Value) -> BTreeMap<String, String> {
    people(view, "invitations", assert_invitation_shape)
}

/// A view's `members` or `invitations` as `email → role`, each checked by `shape`.
#[track_caller]
fn people(view: &Value, key: &str, shape: fn(&Value)) -> BTreeMap<String, String> {
    view[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} list in {view}"))
        .iter()
        .map(|person| {
            shape(person);
            (
                person["email"].as_str().unwrap().to_string(),
                person["role"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn user_record_exists(server: &Server, email: &str) -> bool {
    server.data_dir.join("users").join(format!("{email}.json")).exists()
}

#[track_caller]
fn assert_member_shape(member: &Value) {
    assert_keys(member, &["email", "role", "added"]);
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
    people(view, "members", assert_member_shape)
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
fn operators_create_reserved_identities_with_the_server_stopped_or_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    operator::admin(
        dir.path(),
        &["identity", "create", "admin", "--admin", "ops@example.com"],
    )
    .success();
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

    // While the server holds the data directory, the server carries the
    // command out, and shows its result at once.
    operator::admin(
        dir.path(),
        &["identity", "create", "other", "--admin", "ops@example.com"],
    )
    .success();
    assert_eq!(show(&server, "other", None).status, 200);
    server.stop();
}

#[test]
fn look_alike_names_are_refused_naming_the_identity_they_imitate() {
    let server = Server::with_env(&[("GREN_REGISTRY_IDENTITY_LIMIT_PER_DAY", "3")]);
    let first = server.login("first@example.com");
    let squatter = server.login("squatter@example.com");
    create_ok(&server, &first, "gren-lang");
    for look_alike in [
        "gren-Iang",
        "gren-1ang",
        "GREN-1ANG",
        "grenlang",
        "gren-la-ng",
        "gren-l4ng-x",
    ] {
        let reply = create(&server, &squatter, look_alike);
        if look_alike == "gren-l4ng-x" {
            assert_eq!(reply.status, 200, "{look_alike} is a different name: {}", reply.text());
            continue;
        }
        reply.assert_error(409, "identity_name_confusable");
        let message = reply.json()["message"].as_str().unwrap().to_string();
        assert!(
            message.contains("gren-lang"),
            "the message names the original: {message}"
        );
        assert!(
            !identity_dir(&server, &look_alike.to_ascii_lowercase()).exists(),
            "{look_alike} was not created"
        );
    }
    // Refusals used none of the day's allowance.
    create_ok(&server, &squatter, "gren-long");
    create_ok(&server, &squatter, "blaix");
    // And the original's own owner gets no exception.
    create(&server, &first, "gren-1ang").assert_error(409, "identity_name_confusable");
}

#[test]
fn look_alikes_of_reserved_names_are_refused() {
    let server = Server::start();
    let token = server.login("me@example.com");
    for (look_alike, reserved) in [
        ("adm1n", "admin"),
        ("ADMlN", "admin"),
        ("adrnin", "admin"),
        ("r00t", "root"),
        ("vvvvvv", "www"),
        ("c0n", "con"),
        ("no-rep1y", "noreply"),
    ] {
        let reply = create(&server, &token, look_alike);
        reply.assert_error(409, "identity_name_confusable");
        let message = reply.json()["message"].as_str().unwrap().to_string();
        assert!(
            message.contains(&format!("reserved name {reserved}")) || message.contains("reserved name no-reply"),
            "{look_alike}: {message}"
        );
    }
    create_ok(&server, &token, "admins");
}

#[test]
fn names_one_letter_or_one_look_alike_from_gren_lang_are_refused() {
    // The registry's own default list, gren-lang included.
    let server = Server::with_env(&[("GREN_REGISTRY_RESERVED_IDENTITIES", UNSET)]);
    let token = server.login("me@example.com");
    for look_alike in [
        "gren-lanq",
        "qren-lang",
        "9ren-lang",
        "gren-l4ng",
        "gren-langs",
        "gren-lnag",
    ] {
        let reply = create(&server, &token, look_alike);
        reply.assert_error(409, "identity_name_confusable");
        let message = reply.json()["message"].as_str().unwrap().to_string();
        assert!(message.contains("reserved name gren-lang"), "{look_alike}: {message}");
        assert!(
            !identity_dir(&server, look_alike).exists(),
            "{look_alike} was not created"
        );
    }
    // Longer names that contain it, and names near short reserved ones, are names of their own.
    create_ok(&server, &token, "gren-lang-community");
    create_ok(&server, &token, "green");
    create_ok(&server, &token, "logan");
}

#[test]
fn operators_are_refused_look_alikes_unless_they_insist() {
    let dir = tempfile::tempdir().unwrap();
    fn create(name: &str) -> Vec<&str> {
        vec!["identity", "create", name, "--admin", "ops@example.com"]
    }
    operator::admin(dir.path(), &create("gren-lang")).success();
    let stderr = operator::admin(dir.path(), &create("gren-1ang")).failure().stderr;
    assert!(
        stderr.contains("gren-lang") && stderr.contains("--allow-confusable"),
        "stderr names the original and the way out: {stderr}"
    );
    assert!(!dir.path().join("identities/gren-1ang").exists());
    operator::admin(dir.path(), &[create("gren-1ang"), vec!["--allow-confusable"]].concat()).success();
    assert!(dir.path().join("identities/gren-1ang/identity.json").exists());
    // Reserved names (and their look-alikes) are the operators' to create.
    operator::admin(dir.path(), &create("adm1n")).success();
}

#[test]
fn concurrent_creations_of_look_alike_names_have_one_winner() {
    let server = Server::start();
    let spellings = [
        "gren-lang",
        "gren-1ang",
        "gren-Iang",
        "grenlang",
        "gren-lan-g",
        "GREN-LANG",
    ];
    let tokens: Vec<String> = (0..spellings.len())
        .map(|i| server.login(&format!("u{i}@example.com")))
        .collect();
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = spellings
            .iter()
            .zip(&tokens)
            .map(|(name, token)| {
                let server = &server;
                scope.spawn(move || {
                    let reply = create(server, token, name);
                    if reply.status != 200 {
                        let code = reply.json()["error"].as_str().unwrap().to_string();
                        assert!(
                            reply.status == 409 && ["name_taken", "identity_name_confusable"].contains(&code.as_str()),
                            "{name}: {}",
                            reply.text()
                        );
                    }
                    reply.status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|status| **status == 200).count(),
        1,
        "exactly one creation wins: {statuses:?}"
    );
    let dirs = std::fs::read_dir(server.data_dir.join("identities")).unwrap().count();
    assert_eq!(dirs, 1, "one identity directory");
}

#[test]
fn the_daily_creation_limit_answers_429_with_retry_after() {
    let server = Server::with_env(&[("GREN_REGISTRY_IDENTITY_LIMIT_PER_DAY", "2")]);
    let token = server.login("me@example.com");
    create_ok(&server, &token, "one");
    create_ok(&server, &token, "two");
    let refused = create(&server, &token, "three");
    refused.assert_error(429, "rate_limited");
    let retry = refused.retry_after();
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
    server.add_member("gren-lang", &admin, "pub@example.com", "publish");
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
    let admin = server.login("admin@example.com");
    create_ok(server, &admin, "gren-lang");
    Team {
        publisher: server.add_member("gren-lang", &admin, "pub@example.com", "publish"),
        downloader: server.add_member("gren-lang", &admin, "down@example.com", "download"),
        stranger: server.login("stranger@example.com"),
        admin,
    }
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
fn adding_someone_invites_them_by_email_and_makes_no_member_nor_user_record() {
    let server = Server::start();
    let admin = server.login("admin@example.com");
    create_ok(&server, &admin, "gren-lang");
    let before = server.postmark.messages().len();
    let invitation = invite_ok(&server, &admin, "gren-lang", "pub@example.com", "publish");
    assert_eq!(invitation["invited_by"], "admin@example.com");
    let (invited_at, expires) = (
        humantime::parse_rfc3339(invitation["invited"].as_str().unwrap()).unwrap(),
        humantime::parse_rfc3339(invitation["expires"].as_str().unwrap()).unwrap(),
    );
    assert_eq!(
        expires.duration_since(invited_at).unwrap().as_secs(),
        14 * 24 * 3600,
        "invitations last 14 days: {invitation}"
    );

    let mail = server.postmark.wait_for_message_to("pub@example.com");
    let subject = mail.json["Subject"].as_str().unwrap_or("");
    assert!(
        subject.contains("gren-lang"),
        "the subject names the identity: {subject:?}"
    );
    for needle in [
        "admin@example.com",
        "publish",
        "gren-registry identity accept gren-lang",
    ] {
        assert!(
            mail.text_body().contains(needle),
            "the text says {needle:?}: {}",
            mail.text_body()
        );
    }
    assert_eq!(server.postmark.messages().len(), before + 1);

    let view = show_ok(&server, "gren-lang", Some(&admin));
    assert_eq!(roles(&view), map(&[("admin@example.com", "admin")]), "not a member yet");
    assert_eq!(invited(&view), map(&[("pub@example.com", "publish")]));
    assert_eq!(
        view["invitations"][0], invitation,
        "admins see the invitation as answered"
    );
    assert!(
        !user_record_exists(&server, "pub@example.com"),
        "an invitation makes no user record"
    );
}

#[test]
fn roles_change_and_bad_input_is_refused() {
    let server = Server::start();
    let admin = server.login("admin@example.com");
    create_ok(&server, &admin, "gren-lang");
    server.add_member("gren-lang", &admin, "m@example.com", "publish");
    put_member_ok(&server, &admin, "gren-lang", "m@example.com", "download");
    put_member_ok(&server, &admin, "gren-lang", "m@example.com", "admin");
    assert_eq!(
        roles(&show_ok(&server, "gren-lang", Some(&admin))),
        map(&[("admin@example.com", "admin"), ("m@example.com", "admin")])
    );

    // The address may be percent-encoded, and is lower-cased.
    invite_ok(&server, &admin, "gren-lang", "me%40example.com", "publish");
    invite_ok(&server, &admin, "gren-lang", "Me@Example.com", "download");
    let view = show_ok(&server, "gren-lang", Some(&admin));
    assert_eq!(invited(&view), map(&[("me@example.com", "download")]));

    put_member(&server, &admin, "gren-lang", "x@example.com", "owner").assert_error(400, "invalid_role");
    put_member(&server, &admin, "gren-lang", "x@example.com", "Admin").assert_error(400, "invalid_role");
    put_member(&server, &admin, "gren-lang", "x@example.com", "").assert_error(400, "invalid_role");
    put_member(&server, &admin, "gren-lang", "not-an-email", "publish").assert_error(400, "invalid_email");
    put_member(&server, &admin, "gren-lang", "me@localhost", "publish").assert_error(400, "invalid_email");
    let view = show_ok(&server, "gren-lang", Some(&admin));
    assert_eq!(roles(&view).len(), 2, "refused changes changed nothing");
    assert_eq!(invited(&view).len(), 1, "refused changes invited nobody");
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
    create_ok(&server, &admin, "gren-lang");
    let publisher = server.add_member("gren-lang", &admin, "pub@example.com", "publish");
    let leaver = server.add_member("gren-lang", &admin, "leaver@example.com", "download");
    server.add_member("gren-lang", &admin, "gone@example.com", "download");
    server.add_member("gren-lang", &admin, "kept@example.com", "download");

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
fn the_last_admin_cannot_be_demoted_but_may_leave() {
    let server = Server::start();
    let first = server.login("first@example.com");
    create_ok(&server, &first, "gren-lang");

    put_member(&server, &first, "gren-lang", "first@example.com", "publish").assert_error(409, "last_admin");
    put_member(&server, &first, "gren-lang", "first@example.com", "download").assert_error(409, "last_admin");
    assert_eq!(
        roles(&show_ok(&server, "gren-lang", Some(&first))),
        map(&[("first@example.com", "admin")])
    );

    let second = server.add_member("gren-lang", &first, "second@example.com", "admin");
    let reply = server.delete(&member_path("gren-lang", "first@example.com"), Some(&first));
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert_eq!(
        roles(&show_ok(&server, "gren-lang", Some(&second))),
        map(&[("second@example.com", "admin")])
    );
    assert_eq!(user_identities(&server, &first), json!([]));
    // Now the second is the last admin: no demotion, but they may leave.
    put_member(&server, &second, "gren-lang", "second@example.com", "publish").assert_error(409, "last_admin");
    let reply = server.delete(&member_path("gren-lang", "second@example.com"), Some(&second));
    assert_eq!(reply.status, 204, "the last admin may leave: {}", reply.text());
    assert_eq!(user_identities(&server, &second), json!([]));
    assert_eq!(
        show_ok(&server, "gren-lang", Some(&second)),
        json!({ "name": "gren-lang", "packages": [] }),
        "the identity stays, without members"
    );
    let (_, record) = read_json_file(&identity_dir(&server, "gren-lang").join("identity.json"));
    assert_eq!(record["members"], json!([]), "{record}");
}

#[test]
fn a_stranger_cannot_make_someone_the_admin_of_an_identity_without_consent() {
    let server = Server::start();
    let mallory = server.login("mallory@example.com");
    create_ok(&server, &mallory, "trouble");
    invite_ok(&server, &mallory, "trouble", "victim@example.com", "admin");
    let reply = server.delete(&member_path("trouble", "mallory@example.com"), Some(&mallory));
    assert_eq!(reply.status, 204, "{}", reply.text());

    let victim = server.login("victim@example.com");
    assert_eq!(
        user_identities(&server, &victim),
        json!([]),
        "the victim belongs to nothing"
    );
    assert_eq!(
        show_ok(&server, "trouble", Some(&victim)),
        json!({ "name": "trouble", "packages": [] })
    );
    let reply = server.delete(&invitation_path("trouble"), Some(&victim));
    assert_eq!(reply.status, 204, "the victim declines: {}", reply.text());
    assert!(received_invitations(&server, &victim).is_empty());
    accept(&server, "trouble", Some(&victim)).assert_error(404, "invitation_not_found");

    // Had they accepted, they could still leave, as the last admin.
    let mallory_two = server.login("mallory2@example.com");
    create_ok(&server, &mallory_two, "trouble-two");
    let victim = server.add_member("trouble-two", &mallory_two, "victim@example.com", "admin");
    let reply = server.delete(&member_path("trouble-two", "mallory2@example.com"), Some(&mallory_two));
    assert_eq!(reply.status, 204, "{}", reply.text());
    let reply = server.delete(&member_path("trouble-two", "victim@example.com"), Some(&victim));
    assert_eq!(reply.status, 204, "the sole admin may leave: {}", reply.text());
    assert_eq!(user_identities(&server, &victim), json!([]));
}

#[test]
fn an_admin_among_two_may_be_demoted() {
    let server = Server::start();
    let first = server.login("first@example.com");
    create_ok(&server, &first, "gren-lang");
    server.add_member("gren-lang", &first, "second@example.com", "admin");
    put_member_ok(&server, &first, "gren-lang", "first@example.com", "publish");
    assert_eq!(
        roles(&show_ok(&server, "gren-lang", Some(&first))),
        map(&[("first@example.com", "publish"), ("second@example.com", "admin")])
    );
    // Demoted, the first is no longer allowed to manage members.
    put_member(&server, &first, "gren-lang", "x@example.com", "download").assert_error(403, "forbidden");
}

// ---------------------------------------------------------------------------
// Abuse limits
// ---------------------------------------------------------------------------

/// The membership e-mails (invitations, role changes) sent to `to`.
fn membership_mails(server: &Server, to: &str) -> usize {
    server
        .postmark
        .messages()
        .iter()
        .filter(|mail| mail.json["To"] == to && !mail.json["Subject"].as_str().unwrap_or("").contains("Confirm"))
        .count()
}

#[test]
fn a_role_toggle_storm_sends_at_most_five_emails_and_is_then_refused_429() {
    let server = Server::start();
    let admin = server.login("admin@example.com");
    create_ok(&server, &admin, "gren-lang");
    let second = server.add_member("gren-lang", &admin, "second@example.com", "admin");
    server.add_member("gren-lang", &admin, "victim@example.com", "publish");

    let mut answers = Vec::new();
    for toggle in 0..100 {
        let role = if toggle % 2 == 0 { "download" } else { "publish" };
        let reply = put_member(&server, &admin, "gren-lang", "victim@example.com", role);
        if reply.status == 429 {
            reply.assert_error(429, "rate_limited");
            let retry = reply.retry_after();
            assert!((3500..=3600).contains(&retry), "about an hour: {retry}");
        }
        answers.push((reply.status, role));
    }
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    // 30 changes an hour per admin, two of which were the invitations.
    let allowed = statuses.iter().take_while(|status| **status == 200).count();
    assert_eq!(allowed, 28, "{statuses:?}");
    assert!(statuses[allowed..].iter().all(|status| *status == 429), "{statuses:?}");
    assert_eq!(
        membership_mails(&server, "victim@example.com"),
        5,
        "the invitation and four role changes are e-mailed, no more"
    );

    // The changes went on without e-mail; the limit is per admin.
    let last_role = answers[allowed - 1].1;
    let view = show_ok(&server, "gren-lang", Some(&admin));
    assert_eq!(roles(&view)["victim@example.com"], last_role);
    put_member_ok(&server, &second, "gren-lang", "victim@example.com", "admin");
    assert_eq!(membership_mails(&server, "victim@example.com"), 5);
    let other = invite_ok(&server, &second, "gren-lang", "other@example.com", "download");
    assert_eq!(other["invited_by"], "second@example.com");
    assert_eq!(
        membership_mails(&server, "other@example.com"),
        1,
        "other addresses have their own allowance"
    );
}

#[test]
fn invitations_to_tag_variants_of_one_mailbox_share_its_five_emails_an_hour() {
    let server = Server::start();
    let admin = server.login("admin@example.com");
    create_ok(&server, &admin, "gren-lang");
    for n in 0..8 {
        invite_ok(
            &server,
            &admin,
            "gren-lang",
            &format!("victim+{n}@example.com"),
            "download",
        );
    }
    invite_ok(&server, &admin, "gren-lang", "victim@example.com", "download");
    let to_victim = |server: &Server| {
        let to: Vec<String> = (0..8).map(|n| format!("victim+{n}@example.com")).collect();
        let to: Vec<&str> = to.iter().map(String::as_str).chain(["victim@example.com"]).collect();
        to.iter()
            .map(|address| membership_mails(server, address))
            .sum::<usize>()
    };
    assert_eq!(to_victim(&server), 5, "one inbox, five e-mails");
    assert_eq!(membership_mails(&server, "victim+4@example.com"), 1);
    assert_eq!(
        membership_mails(&server, "victim+5@example.com"),
        0,
        "past the mailbox's limit"
    );
    assert!(
        server.wait_for_log(
            "its recipient's hourly limit is reached",
            std::time::Duration::from_secs(2)
        ),
        "{}",
        server.log()
    );
    // The invitations were made all the same (as for a role toggle storm).
    assert_eq!(invited(&show_ok(&server, "gren-lang", Some(&admin))).len(), 9);
    invite_ok(&server, &admin, "gren-lang", "other+1@example.com", "download");
    assert_eq!(
        membership_mails(&server, "other+1@example.com"),
        1,
        "other mailboxes have their own"
    );
    assert_eq!(to_victim(&server), 5);
}

#[test]
fn inviting_a_thousand_addresses_creates_no_user_records_and_stops_at_the_pending_bound() {
    let server = Server::start();
    let admin = server.login("admin@example.com");
    create_ok(&server, &admin, "gren-lang");
    let mut statuses = BTreeMap::new();
    for n in 0..1000 {
        let reply = put_member(
            &server,
            &admin,
            "gren-lang",
            &format!("spam{n}@example.com"),
            "download",
        );
        if reply.status == 409 {
            reply.assert_error(409, "too_many_invitations");
        }
        *statuses.entry(reply.status).or_insert(0) += 1;
    }
    assert_eq!(
        statuses,
        BTreeMap::from([(202, 20), (409, 980)]),
        "refusals cost no allowance"
    );
    let users: Vec<PathBuf> = files_under(&server.data_dir.join("users"));
    assert_eq!(
        users,
        [server.data_dir.join("users/admin@example.com.json")],
        "only people who logged in have user records"
    );
    assert_eq!(invited(&show_ok(&server, "gren-lang", Some(&admin))).len(), 20);

    // A cancelled invitation frees its place.
    let reply = server.delete(&member_path("gren-lang", "spam0@example.com"), Some(&admin));
    assert_eq!(reply.status, 204, "{}", reply.text());
    invite_ok(&server, &admin, "gren-lang", "wanted@example.com", "publish");
}

#[test]
fn member_change_limits_come_from_the_environment() {
    let server = Server::with_env(&[
        ("GREN_REGISTRY_MEMBER_CHANGE_LIMIT_PER_HOUR", "3"),
        ("GREN_REGISTRY_MEMBER_MAIL_LIMIT_PER_EMAIL", "1"),
        ("GREN_REGISTRY_PENDING_INVITATIONS_PER_IDENTITY", "2"),
    ]);
    let admin = server.login("admin@example.com");
    create_ok(&server, &admin, "gren-lang");
    invite_ok(&server, &admin, "gren-lang", "a@example.com", "download");
    invite_ok(&server, &admin, "gren-lang", "b@example.com", "download");
    put_member(&server, &admin, "gren-lang", "c@example.com", "download").assert_error(409, "too_many_invitations");
    invite_ok(&server, &admin, "gren-lang", "a@example.com", "publish");
    assert_eq!(membership_mails(&server, "a@example.com"), 1, "one e-mail per address");
    let reply = server.delete(&member_path("gren-lang", "b@example.com"), Some(&admin));
    reply.assert_error(429, "rate_limited");
    assert_eq!(
        invited(&show_ok(&server, "gren-lang", Some(&admin))).len(),
        2,
        "refused: nothing changed"
    );
}

// ---------------------------------------------------------------------------
// GET /user
// ---------------------------------------------------------------------------

#[test]
fn get_user_lists_identities_and_follows_changes() {
    let server = Server::start();
    let admin = server.login("admin@example.com");
    create_ok(&server, &admin, "Gren-Lang");
    create_ok(&server, &admin, "blaix");
    assert_eq!(
        user_identities(&server, &admin),
        json!([
            { "name": "blaix", "role": "admin" },
            { "name": "Gren-Lang", "role": "admin" },
        ])
    );

    let member = server.add_member("gren-lang", &admin, "member@example.com", "publish");
    assert_eq!(
        user_identities(&server, &member),
        json!([{ "name": "Gren-Lang", "role": "publish" }])
    );
    invite_ok(&server, &admin, "blaix", "member@example.com", "admin");
    assert_eq!(
        user_identities(&server, &member),
        json!([{ "name": "Gren-Lang", "role": "publish" }]),
        "an invitation is not a membership"
    );
    let reply = accept(&server, "blaix", Some(&member));
    assert_eq!(reply.status, 200, "{}", reply.text());
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
fn people_who_never_logged_in_are_invited_and_accept_after_logging_in() {
    let server = Server::start();
    let admin = server.login("admin@example.com");
    create_ok(&server, &admin, "gren-lang");
    create_ok(&server, &admin, "blaix");
    let invitation = invite_ok(&server, &admin, "gren-lang", "new@example.com", "publish");
    invite_ok(&server, &admin, "blaix", "new@example.com", "download");
    assert!(!user_record_exists(&server, "new@example.com"));

    let token = server.login("new@example.com");
    assert_eq!(user_identities(&server, &token), json!([]));
    let mut received = received_invitations(&server, &token);
    received.sort_by_key(|invitation| invitation["identity"].as_str().unwrap().to_string());
    let mut expected = invitation.clone();
    expected["identity"] = json!("gren-lang");
    assert_eq!(received.len(), 2, "{received:?}");
    assert_eq!(received[0]["identity"], "blaix");
    assert_eq!(received[0]["role"], "download");
    assert_eq!(received[1], expected, "the invitation, with the identity it is to");
    // Others see none of them.
    assert!(received_invitations(&server, &admin).is_empty());
    server.get("/user/invitations", None).assert_error(401, "unauthorized");

    let reply = accept(&server, "GREN-LANG", Some(&token));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let member = reply.json();
    assert_member_shape(&member);
    assert_eq!(
        (member["email"].as_str(), member["role"].as_str()),
        (Some("new@example.com"), Some("publish"))
    );
    assert_eq!(
        user_identities(&server, &token),
        json!([{ "name": "gren-lang", "role": "publish" }])
    );
    let view = show_ok(&server, "gren-lang", Some(&admin));
    assert_eq!(
        roles(&view),
        map(&[("admin@example.com", "admin"), ("new@example.com", "publish")])
    );
    assert_eq!(invited(&view), map(&[]), "an accepted invitation is gone");
    let left: Vec<Value> = received_invitations(&server, &token)
        .iter()
        .map(|invitation| invitation["identity"].clone())
        .collect();
    assert_eq!(left, ["blaix"]);
    let (_, record) = read_json_file(&server.data_dir.join("users/new@example.com.json"));
    assert_eq!(record["identities"], json!(["gren-lang"]), "{record}");
    accept(&server, "gren-lang", Some(&token)).assert_error(404, "invitation_not_found");

    // Invitations made after the first listing are listed too.
    create_ok(&server, &admin, "third");
    invite_ok(&server, &admin, "third", "new@example.com", "admin");
    let identities: Vec<Value> = received_invitations(&server, &token)
        .iter()
        .map(|invitation| invitation["identity"].clone())
        .collect();
    assert_eq!(identities, ["blaix", "third"]);
}

#[test]
fn an_invitee_may_decline_and_an_admin_may_cancel() {
    let server = Server::start();
    let admin = server.login("admin@example.com");
    create_ok(&server, &admin, "gren-lang");
    invite_ok(&server, &admin, "gren-lang", "no@example.com", "publish");
    invite_ok(&server, &admin, "gren-lang", "later@example.com", "download");

    let no = server.login("no@example.com");
    let reply = server.delete(&invitation_path("gren-lang"), Some(&no));
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert!(received_invitations(&server, &no).is_empty());
    server
        .delete(&invitation_path("gren-lang"), Some(&no))
        .assert_error(404, "invitation_not_found");

    let reply = server.delete(&member_path("gren-lang", "later@example.com"), Some(&admin));
    assert_eq!(reply.status, 204, "an admin cancels: {}", reply.text());
    let later = server.login("later@example.com");
    assert!(received_invitations(&server, &later).is_empty());
    accept(&server, "gren-lang", Some(&later)).assert_error(404, "invitation_not_found");

    let view = show_ok(&server, "gren-lang", Some(&admin));
    assert_eq!(roles(&view), map(&[("admin@example.com", "admin")]));
    assert_eq!(invited(&view), map(&[]));
    let actions: Vec<(String, String)> = audit_entries(&server, "gren-lang", &admin)
        .iter()
        .map(|entry| {
            (
                entry["action"].as_str().unwrap().to_string(),
                entry["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let pair = |action: &str, actor: &str| (action.to_string(), actor.to_string());
    assert_eq!(
        actions,
        [
            pair("created", "admin@example.com"),
            pair("invited", "admin@example.com"),
            pair("invited", "admin@example.com"),
            pair("invitation_declined", "no@example.com"),
            pair("invitation_cancelled", "admin@example.com"),
        ]
    );
}

#[test]
fn accepting_needs_a_pending_invitation_of_ones_own() {
    let server = Server::start();
    let admin = server.login("admin@example.com");
    let stranger = server.login("stranger@example.com");
    create_ok(&server, &admin, "gren-lang");
    invite_ok(&server, &admin, "gren-lang", "invited@example.com", "publish");

    accept(&server, "gren-lang", Some(&stranger)).assert_error(404, "invitation_not_found");
    server
        .delete(&invitation_path("gren-lang"), Some(&stranger))
        .assert_error(404, "invitation_not_found");
    accept(&server, "gren-lang", Some(&admin)).assert_error(404, "invitation_not_found");
    accept(&server, "nope", Some(&stranger)).assert_error(404, "identity_not_found");
    accept(&server, "a_b", Some(&stranger)).assert_error(404, "identity_not_found");
    let reply = accept(&server, "gren-lang", None);
    reply.assert_error(401, "unauthorized");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    let reply = server.get(&invitation_path("gren-lang"), Some(&stranger));
    reply.assert_error(405, "method_not_allowed");
    assert_eq!(reply.header("allow"), Some("POST, DELETE"));

    // An expired invitation is neither shown nor accepted.
    let path = identity_dir(&server, "gren-lang").join("identity.json");
    let (_, mut record) = read_json_file(&path);
    record["invitations"][0]["expires"] = json!("2001-01-01T00:00:00.000Z");
    replace_file(&path, serde_json::to_string_pretty(&record).unwrap().as_bytes());
    let invitee = server.login("invited@example.com");
    assert!(received_invitations(&server, &invitee).is_empty());
    accept(&server, "gren-lang", Some(&invitee)).assert_error(404, "invitation_not_found");
    assert_eq!(invited(&show_ok(&server, "gren-lang", Some(&admin))), map(&[]));
    assert_eq!(user_identities(&server, &invitee), json!([]));
}

#[test]
fn only_admins_see_invitations_and_a_repeated_invitation_sends_no_second_email() {
    let server = Server::start();
    let Team {
        admin,
        publisher,
        downloader,
        ..
    } = team(&server);
    invite_ok(&server, &admin, "gren-lang", "new@example.com", "download");
    server.postmark.wait_for_message_to("new@example.com");
    let before = server.postmark.messages().len();
    invite_ok(&server, &admin, "gren-lang", "new@example.com", "download");
    invite_ok(&server, &admin, "gren-lang", "new@example.com", "publish");
    let mail = server
        .postmark
        .wait_for_message(|mail| mail.json["To"] == "new@example.com" && mail.text_body().contains("role publish"));
    assert!(mail.text_body().contains("gren-registry identity accept gren-lang"));
    assert_eq!(
        server.postmark.messages().len(),
        before + 1,
        "only the changed invitation was announced"
    );
    assert_eq!(
        invited(&show_ok(&server, "gren-lang", Some(&admin))),
        map(&[("new@example.com", "publish")])
    );
    for token in [&publisher, &downloader] {
        let view = show_ok(&server, "gren-lang", Some(token));
        assert!(
            view.get("invitations").is_none(),
            "members who are not admins see no invitations: {view}"
        );
    }
    put_member(&server, &publisher, "gren-lang", "other@example.com", "download").assert_error(403, "forbidden");
    server
        .delete(&member_path("gren-lang", "new@example.com"), Some(&publisher))
        .assert_error(403, "forbidden");
}

#[test]
fn operators_name_a_new_admin_for_an_identity_whose_last_admin_left() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let admin = server.login("admin@example.com");
    create_ok(&server, &admin, "gren-lang");
    let reply = server.delete(&member_path("gren-lang", "admin@example.com"), Some(&admin));
    assert_eq!(reply.status, 204, "{}", reply.text());
    server.stop();

    let out = operator::admin(dir.path(), &["fsck"]).success().stdout;
    assert!(
        out.contains("note: identity gren-lang has no admin") && out.contains("admin identity set-member"),
        "an identity without admin is no fault, and fsck says how to fix it: {out}"
    );
    fn set_member<'a>(email: &'a str, role: &'a str) -> Vec<&'a str> {
        vec!["identity", "set-member", "gren-lang", email, "--role", role]
    }
    let out = operator::admin(dir.path(), &set_member("Heir@example.com", "admin"))
        .success()
        .stdout;
    assert!(out.contains("added heir@example.com"), "{out}");
    operator::admin(dir.path(), &set_member("heir@example.com", "owner")).failure();

    let server = Server::start_in(dir.path(), &[]);
    let heir = server.login("heir@example.com");
    assert_eq!(
        user_identities(&server, &heir),
        json!([{ "name": "gren-lang", "role": "admin" }])
    );
    let entries = audit_entries(&server, "gren-lang", &heir);
    let last = entries.last().unwrap();
    assert_eq!(
        (last["action"].as_str(), last["actor"].as_str(), last["member"].as_str()),
        (Some("member_added"), Some("operator"), Some("heir@example.com"))
    );
    server.stop();
    let out = operator::admin(dir.path(), &["fsck"]).success().stdout;
    assert!(!out.contains("has no admin"), "{out}");
}

#[test]
fn an_identity_record_from_before_invitations_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    operator::admin(
        dir.path(),
        &["identity", "create", "old", "--admin", "admin@example.com"],
    )
    .success();
    let path = dir.path().join("identities/old/identity.json");
    let (_, mut record) = read_json_file(&path);
    record.as_object_mut().unwrap().remove("invitations");
    replace_file(&path, serde_json::to_string_pretty(&record).unwrap().as_bytes());

    let server = Server::start_in(dir.path(), &[]);
    let admin = server.login("admin@example.com");
    let view = show_ok(&server, "old", Some(&admin));
    assert_eq!(roles(&view), map(&[("admin@example.com", "admin")]));
    assert_eq!(invited(&view), map(&[]));
    invite_ok(&server, &admin, "old", "new@example.com", "publish");
    let (_, record) = read_json_file(&path);
    assert_eq!(record["invitations"][0]["email"], "new@example.com", "{record}");
}

// ---------------------------------------------------------------------------
// Audit log
// ---------------------------------------------------------------------------

#[test]
fn the_audit_log_lists_every_change_in_order() {
    let server = Server::start();
    let admin = server.login("admin@example.com");
    let stranger = server.login("stranger@example.com");
    create_ok(&server, &admin, "Gren-Lang");
    let publisher = server.add_member("gren-lang", &admin, "pub@example.com", "publish");
    server.add_member("gren-lang", &admin, "m@example.com", "download");
    put_member_ok(&server, &admin, "gren-lang", "m@example.com", "admin");
    let reply = server.delete(&member_path("gren-lang", "m@example.com"), Some(&admin));
    assert_eq!(reply.status, 204, "{}", reply.text());
    invite_ok(&server, &admin, "gren-lang", "x@example.com", "publish");
    let reply = server.delete(&member_path("gren-lang", "x@example.com"), Some(&admin));
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
            json!({ "seq": 2, "actor": actor, "action": "invited", "member": "pub@example.com", "role": "publish" }),
            json!({ "seq": 3, "actor": "pub@example.com", "action": "member_added", "member": "pub@example.com", "role": "publish" }),
            json!({ "seq": 4, "actor": actor, "action": "invited", "member": "m@example.com", "role": "download" }),
            json!({ "seq": 5, "actor": "m@example.com", "action": "member_added", "member": "m@example.com", "role": "download" }),
            json!({ "seq": 6, "actor": actor, "action": "role_changed", "member": "m@example.com", "from": "download", "to": "admin" }),
            json!({ "seq": 7, "actor": actor, "action": "member_removed", "member": "m@example.com", "role": "admin" }),
            json!({ "seq": 8, "actor": actor, "action": "invited", "member": "x@example.com", "role": "publish" }),
            json!({ "seq": 9, "actor": actor, "action": "invitation_cancelled", "member": "x@example.com", "role": "publish" }),
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
fn concurrent_invitations_lose_nothing_and_make_no_user_records() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 10;
    let server = Server::with_env(&[
        ("GREN_REGISTRY_PENDING_INVITATIONS_PER_IDENTITY", "1000"),
        ("GREN_REGISTRY_MEMBER_CHANGE_LIMIT_PER_HOUR", "1000"),
    ]);
    let admin = server.login("admin@example.com");
    create_ok(&server, &admin, "gren-lang");

    let email = |t: usize, i: usize| format!("t{t}-m{i}@example.com");
    // Each thread invites its ten as `publish`, then changes every other
    // invitation to `download` while the other threads are still inviting.
    let changed = |i: usize| i.is_multiple_of(2);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (server, admin) = (&server, &admin);
                scope.spawn(move || {
                    for i in 0..PER_THREAD {
                        let reply = put_member(server, admin, "gren-lang", &email(t, i), "publish");
                        assert_eq!(reply.status, 202, "invite {}: {}", email(t, i), reply.text());
                        if i >= 1 && changed(i - 1) {
                            let reply = put_member(server, admin, "gren-lang", &email(t, i - 1), "download");
                            assert_eq!(reply.status, 202, "change {}: {}", email(t, i - 1), reply.text());
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("a client thread failed");
        }
    });

    let mut expected = BTreeMap::new();
    let mut role_changes = 0;
    for t in 0..THREADS {
        for i in 0..PER_THREAD {
            let role = if changed(i) { "download" } else { "publish" };
            role_changes += usize::from(changed(i));
            expected.insert(email(t, i), role.to_string());
        }
    }
    let view = show_ok(&server, "gren-lang", Some(&admin));
    assert_eq!(roles(&view), map(&[("admin@example.com", "admin")]));
    assert_eq!(view["invitations"].as_array().unwrap().len(), THREADS * PER_THREAD);
    assert_eq!(invited(&view), expected);

    let entries = audit_entries(&server, "gren-lang", &admin);
    assert_eq!(entries.len(), 1 + THREADS * PER_THREAD + role_changes);
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let want: Vec<u64> = (1..=entries.len() as u64).collect();
    assert_eq!(seqs, want, "seq runs 1..N without gaps");
    let count = |action: &str| entries.iter().filter(|e| e["action"] == action).count();
    assert_eq!(count("created"), 1);
    assert_eq!(count("invited"), THREADS * PER_THREAD + role_changes);
    assert_eq!(
        files_under(&identity_dir(&server, "gren-lang").join("audit")).len(),
        entries.len()
    );
    let users: Vec<PathBuf> = files_under(&server.data_dir.join("users"));
    assert_eq!(
        users,
        [server.data_dir.join("users/admin@example.com.json")],
        "invitations make no user records"
    );
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
    server.add_member("gren-lang", &admin, "pub@example.com", "publish");
    invite_ok(&server, &admin, "gren-lang", "invited@example.com", "download");

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
    let invitations = record["invitations"].as_array().expect("invitations in the record");
    assert_eq!(invitations.len(), 1, "{record}");
    assert_invitation_shape(&invitations[0]);
    assert_eq!(invitations[0]["email"], "invited@example.com");
    assert!(!user_record_exists(&server, "invited@example.com"));
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
