//! A real full disk, not an injected fault: the data directory on a small
//! tmpfs (mounted by the test, which needs root; it says it skipped
//! otherwise, and fails under CI), filled to the last page. Every write
//! route answers `507 storage_full`, leaves nothing half written (`fsck`
//! clean), every read is still served, and the same request succeeds once
//! space is freed.

use crate::common::bundles::{real_bundle, synthetic};
use crate::common::disk::small_disk_or_skip;
use crate::common::operator::admin;
use crate::common::*;
use serde_json::{Value, json};

const ADMIN: &str = "admin@example.com";
const INVITEE: &str = "invitee@example.com";

/// What exists before the disk fills: a user with a session, identities
/// `team` (with a pending invitation for INVITEE) and `gren-lang`,
/// gren-lang/url 5.0.0 published, and a login waiting for its code.
struct Before {
    token: String,
    invitee_token: String,
    pending_fetch: String,
    pending_code: String,
}

fn prepare(server: &Server) -> Before {
    let token = server.login(ADMIN);
    for name in ["team", "gren-lang"] {
        let created = server.post_json("/publishing-identity", &json!({ "name": name }), Some(&token));
        assert_eq!(created.status, 200, "{}", created.text());
    }
    let invited = server.put_json(
        &format!("/publishing-identity/team/members/{INVITEE}"),
        &json!({ "role": "publish" }),
        Some(&token),
    );
    assert_eq!(invited.status, 202, "{}", invited.text());
    let invitee_token = server.login(INVITEE);
    let published = server.publish(&token, &real_bundle("gren_lang_url__5_0_0.pkg.gz"));
    assert_eq!(published.status, 201, "{}", published.text());
    let started = server.post_json("/session", &json!({ "email": "late@example.com" }), None);
    assert_eq!(started.status, 200, "{}", started.text());
    let started = started.json();
    let phrase = started["verification"].as_str().unwrap().to_string();
    let mail = server
        .postmark
        .wait_for_message(|mail| mail.text_body().contains(&format!("\"{phrase}\"")));
    Before {
        token,
        invitee_token,
        pending_fetch: started["fetchSessionToken"].as_str().unwrap().to_string(),
        pending_code: mail.code(),
    }
}

/// One write, as a client sends it: its name, and how to send it.
struct WriteRoute<'a> {
    name: &'static str,
    send: Box<dyn Fn() -> Reply + 'a>,
    /// The status once the disk has room again.
    then: u16,
}

fn writes<'a>(server: &'a Server, before: &'a Before) -> Vec<WriteRoute<'a>> {
    let token = before.token.as_str();
    let write = |name, then, send: Box<dyn Fn() -> Reply + 'a>| WriteRoute { name, send, then };
    vec![
        write(
            "login",
            200,
            Box::new(move || server.post_json("/session", &json!({ "email": "new@example.com" }), None)),
        ),
        write(
            "login confirmation",
            200,
            Box::new(move || {
                server.post_json(
                    "/session/fetch",
                    &json!({ "fetchSessionToken": before.pending_fetch, "emailConfirmationCode": before.pending_code }),
                    None,
                )
            }),
        ),
        write(
            "identity creation",
            200,
            Box::new(move || server.post_json("/publishing-identity", &json!({ "name": "newteam" }), Some(token))),
        ),
        write(
            "invitation",
            202,
            Box::new(move || {
                let path = "/publishing-identity/team/members/other@example.com";
                server.put_json(path, &json!({ "role": "download" }), Some(token))
            }),
        ),
        write(
            "accepting an invitation",
            200,
            Box::new(move || {
                let headers = [("Authorization", format!("Bearer {}", before.invitee_token))];
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                server.send("POST", "/publishing-identity/team/invitation", &headers, b"")
            }),
        ),
        write(
            "token creation",
            201,
            Box::new(move || {
                let body = json!({ "name": "ci", "scopes": ["publish:gren-lang/*"], "expiresInDays": 1 });
                server.post_json("/user/tokens", &body, Some(token))
            }),
        ),
        write(
            "first publish of a package",
            201,
            Box::new(move || server.publish(token, &synthetic("team/fresh", "1.0.0", "a"))),
        ),
        write(
            "later publish",
            201,
            Box::new(move || server.publish(token, &real_bundle("gren_lang_url__6_0_0.pkg.gz"))),
        ),
        write(
            "privacy",
            200,
            Box::new(move || server.patch_json("/packages/gren-lang/url", &json!({ "private": true }), Some(token))),
        ),
        write(
            "revocation",
            200,
            Box::new(move || {
                server.post_json(
                    "/packages/gren-lang/url/5.0.0/revoke",
                    &json!({ "reason": "test" }),
                    Some(token),
                )
            }),
        ),
    ]
}

#[test]
fn every_write_route_on_a_full_disk_answers_507_loses_nothing_and_succeeds_once_freed() {
    let Some(disk) = small_disk_or_skip(16) else { return };
    let data = disk.path().join("data");
    let server = Server::start_in(&data, &[]);
    let before = prepare(&server);
    let bundle = "/packages/gren-lang/url/5.0.0/bundle";
    let writes = writes(&server, &before);

    let filler = disk.fill();
    for write in &writes {
        let reply = (write.send)();
        assert_eq!(
            (reply.status, reply.json()["error"].clone()),
            (507, Value::from("storage_full")),
            "{} on a full disk: {}",
            write.name,
            reply.text()
        );
        // Reads are served all the same.
        let read = server.get(bundle, None);
        assert!(
            read.body == real_bundle("gren_lang_url__5_0_0.pkg.gz"),
            "after {}",
            write.name
        );
        assert_eq!(server.get("/packages", None).status, 200);
    }
    assert!(server.is_alive(), "a full disk does not stop the registry");
    // Nothing half written: what fsck would find (it only reads).
    admin(&data, &["fsck"]).success();

    filler.free();
    for write in &writes {
        let reply = (write.send)();
        assert_eq!(reply.status, write.then, "{} once freed: {}", write.name, reply.text());
    }
    assert_eq!(server.get(bundle, None).status, 404, "private now, to strangers");
    admin(&data, &["fsck"]).success();
}
#[test]
fn a_repository_build_on_a_full_disk_answers_507_and_builds_once_freed() {
    let Some(disk) = small_disk_or_skip(16) else { return };
    let data = disk.path().join("data");
    let server = Server::start_in(&data, &[("GREN_REGISTRY_GIT_FALLBACK", "")]);
    prepare(&server);
    let refs = "/git/gren-lang/url.git/info/refs?service=git-upload-pack";
    let filler = disk.fill();
    let reply = server.get(refs, None);
    assert_eq!(
        (reply.status, reply.json()["error"].clone()),
        (507, Value::from("storage_full")),
        "{}",
        reply.text()
    );
    filler.free();
    let reply = server.get(refs, None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("refs/tags/5.0.0"));
    admin(&data, &["fsck"]).success();
}
