//! Automation tokens against the real server: each scope allowed and
//! refused, expiry, revocation, the owner demoted or removed while a token
//! lives, what a token may never do, the audit log and events naming the
//! token, and the owner's e-mail.

use crate::common::bundles::synthetic;
use crate::common::*;
use serde_json::{Value, json};

const OWNER: &str = "owner@example.com";

/// A server where `owner@example.com` is admin of `team`; their session.
fn team() -> (Server, String) {
    let server = Server::start();
    let session = server.login(OWNER);
    let created = server.post_json("/publishing-identity", &json!({ "name": "team" }), Some(&session));
    assert_eq!(created.status, 200, "{}", created.text());
    (server, session)
}

/// `POST /user/tokens` by `session`; the whole answer.
fn create_token(server: &Server, session: &str, name: &str, scopes: &[&str]) -> Reply {
    let body = json!({ "name": name, "scopes": scopes, "expiresInDays": 30 });
    server.post_json("/user/tokens", &body, Some(session))
}

/// A new token's secret and id.
#[track_caller]
fn mint(server: &Server, session: &str, name: &str, scopes: &[&str]) -> (String, String) {
    let reply = create_token(server, session, name, scopes);
    assert_eq!(reply.status, 201, "{}", reply.text());
    let answer = reply.json();
    let secret = answer["token"].as_str().unwrap().to_string();
    (secret, answer["id"].as_str().unwrap().to_string())
}

fn publish(server: &Server, token: &str, name: &str, version: &str) -> Reply {
    server.publish(token, &synthetic(name, version, "salt"))
}

fn revoke(server: &Server, token: &str, name: &str, version: &str) -> Reply {
    let path = format!("/packages/{name}/{version}/revoke");
    server.post_json(&path, &json!({ "reason": "broken" }), Some(token))
}

#[track_caller]
fn assert_missing_scope(reply: &Reply, scope: &str) {
    reply.assert_error(403, "missing_scope");
    assert_eq!(reply.json()["scope"], scope, "{}", reply.text());
    assert!(
        reply.json()["message"].as_str().unwrap().contains(scope),
        "{}",
        reply.text()
    );
}

fn audit(server: &Server, session: &str) -> Vec<Value> {
    let reply = server.get("/publishing-identity/team/audit", Some(session));
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["entries"].as_array().unwrap().clone()
}

fn events(server: &Server) -> Vec<Value> {
    server.get("/events", None).json()["events"].as_array().unwrap().clone()
}

#[test]
fn a_publish_scope_publishes_the_packages_it_names_and_nothing_else() {
    let (server, session) = team();
    let (token, id) = mint(&server, &session, "ci", &["publish:team/web-*"]);
    assert!(token.starts_with("gren_token_"), "{token}");
    assert_eq!(publish(&server, &token, "team/web-server", "1.0.0").status, 201);
    assert_missing_scope(&publish(&server, &token, "team/core", "1.0.0"), "publish:team/core");
    assert_missing_scope(
        &revoke(&server, &token, "team/web-server", "1.0.0"),
        "revoke:team/web-server",
    );
    let listed = server.get("/user/tokens", Some(&session)).json();
    assert_eq!(listed["tokens"][0]["id"], id.as_str());
    assert!(listed["tokens"][0]["lastUsed"].is_string(), "{listed}");
    assert!(
        listed.to_string().find(&token).is_none(),
        "a listing never shows the secret"
    );
}

#[test]
fn a_revoke_scope_revokes_the_packages_it_names_and_nothing_else() {
    let (server, session) = team();
    for name in ["team/core", "team/url"] {
        assert_eq!(publish(&server, &session, name, "1.0.0").status, 201);
    }
    let (token, _) = mint(&server, &session, "janitor", &["revoke:team/core"]);
    assert_missing_scope(&publish(&server, &token, "team/core", "1.0.1"), "publish:team/core");
    assert_missing_scope(&revoke(&server, &token, "team/url", "1.0.0"), "revoke:team/url");
    let revoked = revoke(&server, &token, "team/core", "1.0.0");
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    assert!(revoked.json()["revoked"].is_object(), "{}", revoked.text());
}

#[test]
fn a_download_scope_shows_the_identitys_private_packages_and_nothing_else_does() {
    let (server, session) = team();
    let bytes = synthetic("team/secret", "1.0.0", "salt");
    let headers = [
        ("Authorization", format!("Bearer {session}")),
        ("Content-Type", "application/gzip".to_string()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        server.send("POST", "/packages?private=true", &headers, &bytes).status,
        201
    );
    let (reader, _) = mint(&server, &session, "reader", &["download:team"]);
    let (publisher, _) = mint(&server, &session, "publisher", &["publish:team/*"]);
    let bundle = "/packages/team/secret/1.0.0/bundle";
    assert_eq!(server.get(bundle, Some(&reader)).status, 200);
    assert!(server.listing("/packages", Some(&reader)).contains_key("team/secret"));
    assert_missing_scope(&server.get(bundle, Some(&publisher)), "download:team");
    assert!(
        !server
            .listing("/packages", Some(&publisher))
            .contains_key("team/secret")
    );
    server.get(bundle, None).assert_error(404, "package_not_found");
}

#[test]
fn a_scope_naming_an_identity_its_owner_is_not_in_is_refused_and_nothing_is_minted() {
    let (server, _) = team();
    let stranger = server.login("stranger@example.com");
    for scopes in [&["download:team"][..], &["publish:team/*"], &["revoke:nobody-here/x"]] {
        let refused = create_token(&server, &stranger, "outsider", scopes);
        refused.assert_error(400, "invalid_scope");
        let identity = scopes[0].split([':', '/']).nth(1).unwrap();
        assert!(
            refused.text().contains(&format!("not a member of {identity}")),
            "{}",
            refused.text()
        );
    }
    // An identity that does not exist gets the same words as one that does.
    assert!(listed_tokens(&server, &stranger).is_empty(), "nothing was minted");
}

#[test]
fn an_expired_token_is_refused_with_401_saying_so() {
    let (server, session) = team();
    let (token, id) = mint(&server, &session, "ci", &["publish:team/*"]);
    let record = files_under(&server.data_dir.join("tokens"))
        .into_iter()
        .find(|path| path.file_name().unwrap().to_string_lossy().starts_with(&id))
        .expect("the token's record");
    let mut stored = read_json(&record);
    stored["expires"] = json!("2001-01-01T00:00:00.000Z");
    write_json(&record, &stored);
    let refused = publish(&server, &token, "team/core", "1.0.0");
    refused.assert_error(401, "unauthorized");
    assert!(
        refused.json()["message"].as_str().unwrap().contains("expired"),
        "{}",
        refused.text()
    );
    server.get("/packages", Some(&token)).assert_error(401, "unauthorized");
}

#[test]
fn a_revoked_token_is_refused_at_once_and_is_gone_from_the_list() {
    let (server, session) = team();
    let (token, id) = mint(&server, &session, "ci", &["publish:team/*"]);
    assert_eq!(publish(&server, &token, "team/core", "1.0.0").status, 201);
    assert_eq!(server.delete(&format!("/user/tokens/{id}"), Some(&session)).status, 204);
    publish(&server, &token, "team/core", "1.0.1").assert_error(401, "unauthorized");
    assert_eq!(server.get("/user/tokens", Some(&session)).json()["tokens"], json!([]));
    server
        .delete(&format!("/user/tokens/{id}"), Some(&session))
        .assert_error(404, "token_not_found");
}

#[test]
fn demoting_or_removing_the_owner_takes_the_power_from_their_tokens_at_once() {
    let (server, admin) = team();
    let member = server.add_member("team", &admin, "member@example.com", "publish");
    let (token, _) = mint(&server, &member, "ci", &["publish:team/*", "revoke:team/*"]);
    assert_eq!(publish(&server, &token, "team/core", "1.0.0").status, 201);
    let role = |role: &str| {
        let path = "/publishing-identity/team/members/member@example.com";
        let reply = server.put_json(path, &json!({ "role": role }), Some(&admin));
        assert_eq!(reply.status, 200, "{}", reply.text());
    };
    role("download");
    publish(&server, &token, "team/core", "1.0.1").assert_error(403, "forbidden");
    revoke(&server, &token, "team/core", "1.0.0").assert_error(403, "forbidden");
    role("publish");
    assert_eq!(publish(&server, &token, "team/core", "1.0.1").status, 201);
    let removed = server.delete("/publishing-identity/team/members/member@example.com", Some(&admin));
    assert_eq!(removed.status, 204, "{}", removed.text());
    publish(&server, &token, "team/core", "1.0.2").assert_error(403, "forbidden");
    revoke(&server, &token, "team/core", "1.0.0").assert_error(403, "forbidden");
}

#[test]
fn a_token_can_never_mint_tokens_or_manage_members_identities_privacy_or_sessions() {
    let (server, session) = team();
    assert_eq!(publish(&server, &session, "team/core", "1.0.0").status, 201);
    let (token, id) = mint(
        &server,
        &session,
        "ci",
        &["publish:team/*", "revoke:team/*", "download:team"],
    );
    let member = "/publishing-identity/team/members/friend@example.com";
    let refused = [
        create_token(&server, &token, "more", &["publish:team/*"]),
        server.get("/user/tokens", Some(&token)),
        server.delete(&format!("/user/tokens/{id}"), Some(&token)),
        server.put_json(member, &json!({ "role": "admin" }), Some(&token)),
        server.delete("/publishing-identity/team/members/owner@example.com", Some(&token)),
        server.post_json("/publishing-identity", &json!({ "name": "other" }), Some(&token)),
        server.get("/publishing-identity/team/audit", Some(&token)),
        server.patch_json("/packages/team/core", &json!({ "private": true }), Some(&token)),
        server.get("/user", Some(&token)),
        server.get("/user/sessions", Some(&token)),
        server.delete("/session", Some(&token)),
    ];
    for reply in refused {
        reply.assert_error(403, "session_required");
    }
    let page = server.get("/publishing-identity/team", Some(&token)).json();
    assert!(page["members"].is_null(), "a token sees what anyone sees: {page}");
    assert_eq!(
        server.get("/user/tokens", Some(&session)).json()["tokens"][0]["id"],
        id.as_str()
    );
}

#[test]
fn the_audit_log_and_the_events_name_the_token_never_its_secret() {
    let (server, session) = team();
    let (token, id) = mint(&server, &session, "release-bot", &["publish:team/*", "revoke:team/*"]);
    assert_eq!(publish(&server, &token, "team/core", "1.0.0").status, 201);
    assert_eq!(revoke(&server, &token, "team/core", "1.0.0").status, 200);
    assert_eq!(publish(&server, &session, "team/url", "1.0.0").status, 201);
    let named = json!({ "id": id, "name": "release-bot" });
    let entries = audit(&server, &session);
    let by_kind = |kind: &str, package: &str| {
        entries
            .iter()
            .find(|entry| entry["action"] == kind && entry["package"] == package)
            .unwrap_or_else(|| panic!("no {kind} of {package}: {entries:?}"))
            .clone()
    };
    assert_eq!(by_kind("published", "team/core")["token"], named);
    assert_eq!(by_kind("published", "team/core")["actor"], OWNER);
    assert_eq!(by_kind("revoked", "team/core")["token"], named);
    assert!(
        by_kind("published", "team/url").get("token").is_none(),
        "a session's entry names none"
    );
    let events = events(&server);
    let kinds: Vec<(&str, &Value)> = events
        .iter()
        .map(|event| (event["type"].as_str().unwrap(), &event["token"]))
        .collect();
    assert_eq!(
        kinds,
        [("publish", &named), ("revoke", &named), ("publish", &Value::Null)],
        "{events:?}"
    );
    assert!(
        files_containing(&server.data_dir, &token).is_empty(),
        "the secret is stored nowhere"
    );
    assert!(!server.log().contains(&token), "nor logged");
}

#[test]
fn creating_a_token_checks_its_request_and_e_mails_the_owner() {
    let (server, session) = team();
    let refusals = [
        (
            json!({ "name": "ci", "scopes": ["admin:team/*"], "expiresInDays": 30 }),
            "invalid_scope",
        ),
        (
            json!({ "name": "ci", "scopes": [], "expiresInDays": 30 }),
            "invalid_scope",
        ),
        (
            json!({ "name": "ci", "scopes": ["publish:team/*"], "expiresInDays": 366 }),
            "invalid_expiry",
        ),
        (
            json!({ "name": "ci", "scopes": ["publish:team/*"], "expiresInDays": 0 }),
            "invalid_expiry",
        ),
        (
            json!({ "name": "", "scopes": ["publish:team/*"], "expiresInDays": 30 }),
            "invalid_name",
        ),
    ];
    for (body, code) in refusals {
        server
            .post_json("/user/tokens", &body, Some(&session))
            .assert_error(400, code);
    }
    let without_expiry = json!({ "name": "ci", "scopes": ["publish:team/*"] });
    assert_eq!(
        server.post_json("/user/tokens", &without_expiry, Some(&session)).status,
        400
    );
    let (token, id) = mint(&server, &session, "nightly", &["publish:team/*"]);
    create_token(&server, &session, "nightly", &["download:team"]).assert_error(409, "name_taken");
    let mail = server
        .postmark
        .wait_for_message(|mail| mail.json["To"] == OWNER && mail.text_body().contains("nightly"));
    assert!(mail.text_body().contains(&id), "{}", mail.text_body());
    assert!(!mail.text_body().contains(&token), "the e-mail never holds the secret");
}

fn listed_tokens(server: &Server, session: &str) -> Vec<Value> {
    server.get("/user/tokens", Some(session)).json()["tokens"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_token_name_with_a_bidi_override_or_an_invisible_character_is_refused() {
    let (server, session) = team();
    for name in [
        "ci\u{202e}gnp.exe",
        "ci\u{200b}",
        "c\u{ad}i",
        "\u{2066}ci\u{2069}",
        "ci\u{feff}x",
        "c\u{7}i",
    ] {
        let reply = create_token(&server, &session, name, &["publish:team/*"]);
        reply.assert_error(400, "invalid_name");
        assert!(reply.text().contains("invisible formatting"), "{}", reply.text());
    }
    assert!(listed_tokens(&server, &session).is_empty(), "nothing was minted");
    mint(&server, &session, "déploiement 🚀 nightly", &["publish:team/*"]);
    assert_eq!(
        listed_tokens(&server, &session).len(),
        1,
        "visible text in any script is a name"
    );
}

#[test]
fn a_token_request_that_repeats_a_key_is_refused_naming_it_and_mints_nothing() {
    let (server, session) = team();
    let bearer = format!("Bearer {session}");
    let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
    let body = br#"{"name":"ci","scopes":["download:team"],"expiresInDays":30,"scopes":["publish:team/*"]}"#;
    let reply = server.send("POST", "/user/tokens", &headers, body);
    reply.assert_error(400, "invalid_json");
    assert_eq!(reply.json()["field"], "scopes", "{}", reply.text());
    assert!(
        reply.text().contains(r#"\"scopes\""#),
        "the message names the key: {}",
        reply.text()
    );
    assert!(listed_tokens(&server, &session).is_empty(), "nothing was minted");
}

#[test]
fn fsck_checks_token_records_against_their_owners_lists_and_repair_drops_strays() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let session = server.login(OWNER);
    let created = server.post_json("/publishing-identity", &json!({ "name": "team" }), Some(&session));
    assert_eq!(created.status, 200, "{}", created.text());
    let (_, id) = mint(&server, &session, "ci", &["download:team"]);
    server.stop();
    let tokens = dir.path().join("tokens");
    let record = files_under(&tokens).into_iter().next().expect("the token's record");
    // A record its owner does not list: planted, or left by a restore.
    let stray = tokens.join(format!("{}.json", "f".repeat(64)));
    std::fs::copy(&record, &stray).unwrap();
    let (clean, text) = proofs::fsck_text(dir.path());
    assert!(!clean, "{text}");
    assert!(
        text.contains("token ffffffffffffffff of owner@example.com is not listed by its user"),
        "{text}"
    );
    assert!(text.contains("checked 2 tokens"), "{text}");
    operator::admin(dir.path(), &["fsck", "--repair"]).success();
    assert!(!stray.exists() && record.exists(), "only the stray is removed");
    // A listed token whose record is gone is dropped from the list.
    std::fs::remove_file(&record).unwrap();
    operator::admin(dir.path(), &["fsck", "--repair"]).success();
    let user = read_json(&dir.path().join("users").join(format!("{OWNER}.json")));
    assert!(user.get("tokens").is_none(), "{user} (token {id} is gone)");
    proofs::assert_fsck_clean(dir.path(), "after the repairs");
}
