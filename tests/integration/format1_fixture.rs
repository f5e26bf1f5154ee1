//! One-off generator of `tests/fixtures/format1/`: a data directory written
//! by the release that used data format 1, and the API's answers over it.
//! Run with `FORMAT1_OUT=dir cargo test --test integration format1_fixture -- --ignored`.

use crate::common::bundles::synthetic;
use crate::common::*;
use serde_json::{Value, json};

#[test]
#[ignore]
fn write_the_format1_fixture() {
    let out = std::path::PathBuf::from(std::env::var("FORMAT1_OUT").unwrap());
    let data = tempfile::tempdir().unwrap();
    let env = [
        ("GREN_REGISTRY_SESSION_DAYS", "36500"),
        ("GREN_REGISTRY_PACKAGE_SITE_URL", "http://127.0.0.1:9"),
    ];
    let server = Server::start_in(data.path(), &env);
    let alice = server.login("alice@example.com");
    let reply = server.post_json("/publishing-identity", &json!({ "name": "acme" }), Some(&alice));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let bob = server.add_member("acme", &alice, "bob@example.com", "publish");
    let carol = server.add_member("acme", &alice, "carol@example.com", "download");
    let dave = server.login("dave@example.com");
    let invited = server.put_json("/publishing-identity/acme/members/erin@example.com", &json!({ "role": "publish" }), Some(&alice));
    assert_eq!(invited.status, 202);
    let publish = |token: &str, path: &str, name: &str, version: &str| {
        let bearer = format!("Bearer {token}");
        let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/gzip")];
        let reply = server.send("POST", path, &headers, &synthetic(name, version, "format1"));
        assert!(reply.status == 200 || reply.status == 201, "{name} {version}: {}", reply.text());
    };
    let revoke = |token: &str, package: &str, version: &str| {
        let reply = server.post_json(&format!("/packages/{package}/{version}/revoke"), &json!({ "reason": "broken" }), Some(token));
        assert_eq!(reply.status, 200, "{}", reply.text());
    };
    let privacy = |private: bool, package: &str| {
        let reply = server.patch_json(&format!("/packages/{package}"), &json!({ "private": private }), Some(&alice));
        assert_eq!(reply.status, 200, "{}", reply.text());
    };
    for version in ["1.0.0", "1.0.1", "1.1.0"] {
        publish(&alice, "/packages", "acme/widgets", version);
    }
    revoke(&bob, "acme/widgets", "1.0.1");
    publish(&bob, "/packages?private=true", "acme/secret", "1.0.0");
    publish(&bob, "/packages?private=true", "acme/secret", "1.0.1");
    revoke(&alice, "acme/secret", "1.0.0");
    publish(&alice, "/packages", "acme/gadgets", "1.0.0");
    publish(&alice, "/packages", "acme/gadgets", "1.0.1");
    privacy(true, "acme/gadgets");
    publish(&bob, "/packages", "acme/gadgets", "1.1.0");
    revoke(&alice, "acme/gadgets", "1.0.0");
    privacy(false, "acme/gadgets");
    publish(&alice, "/packages", "acme/gizmos", "2.0.0");
    privacy(true, "acme/gizmos");
    let all = server.post_json("/packages/acme/widgets/revoke", &json!({ "reason": "superseded" }), Some(&alice));
    assert_eq!(all.status, 200, "{}", all.text());
    publish(&alice, "/packages", "acme/tools", "1.0.0");

    let tokens = json!({ "alice": alice, "bob": bob, "carol": carol, "dave": dave });
    let mut answers = Vec::new();
    let mut paths: Vec<String> = vec![
        "/packages".into(),
        "/events?since=0".into(),
        "/events?since=3".into(),
        "/publishing-identity/acme".into(),
        "/publishing-identity/acme/audit".into(),
        "/user".into(),
        "/user/invitations".into(),
    ];
    for package in ["widgets", "secret", "gadgets", "gizmos", "tools", "nothing"] {
        paths.push(format!("/packages/acme/{package}"));
        paths.push(format!("/packages/acme/{package}/latest"));
        for version in ["1.0.0", "1.0.1", "1.1.0", "2.0.0"] {
            paths.push(format!("/packages/acme/{package}/{version}"));
            paths.push(format!("/packages/acme/{package}/{version}/bundle"));
            paths.push(format!("/packages/acme/{package}/{version}/previous"));
        }
    }
    for path in &paths {
        for who in [None, Some("alice"), Some("carol"), Some("dave")] {
            let token = who.map(|who| tokens[who].as_str().unwrap());
            let reply = server.get(path, token);
            let body = if path.ends_with("/bundle") && reply.status == 200 {
                json!({ "sha256": crate::common::bundles::sha256_hex(&reply.body) })
            } else {
                serde_json::from_slice(&reply.body).unwrap_or(Value::String(reply.text()))
            };
            answers.push(json!({ "path": path, "as": who, "status": reply.status, "body": body }));
        }
    }
    server.stop();
    let status = std::process::Command::new("cp").arg("-a").arg(data.path()).arg(out.join("data")).status().unwrap();
    assert!(status.success());
    std::fs::write(out.join("tokens.json"), serde_json::to_vec_pretty(&tokens).unwrap()).unwrap();
    std::fs::write(out.join("answers.json"), serde_json::to_vec_pretty(&answers).unwrap()).unwrap();
}
