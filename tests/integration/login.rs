//! The login API, rule by rule, against the real binary.

use crate::common::bundles::{sha256_hex, synthetic};
use crate::common::{CapturedMail, Reply, Server, USER_AGENT, files_containing, files_under, read_json, replace_file};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const CODE_ALPHABET: &str = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// `POST /session` for `email`, asserting 200; returns the JSON answer.
fn start_login(server: &Server, email: &str) -> Value {
    let reply = server.post_json("/session", &json!({ "email": email }), None);
    assert_eq!(reply.status, 200, "POST /session: {}", reply.text());
    reply.json()
}

fn fetch_token(started: &Value) -> String {
    started["fetchSessionToken"].as_str().unwrap().to_string()
}

/// The e-mail that answers this start (matched by its verification phrase).
fn mail_for(server: &Server, started: &Value) -> CapturedMail {
    let phrase = started["verification"].as_str().unwrap().to_string();
    server
        .postmark
        .wait_for_message(|mail| mail.text_body().contains(&format!("\"{phrase}\"")))
}

fn fetch(server: &Server, token: &str, code: Option<&str>) -> Reply {
    let mut body = json!({ "fetchSessionToken": token });
    if let Some(code) = code {
        body["emailConfirmationCode"] = json!(code);
    }
    server.post_json("/session/fetch", &body, None)
}

fn login_path(server: &Server, started: &Value) -> PathBuf {
    let token = fetch_token(started);
    let id = token.split('.').next().unwrap();
    server.data_dir.join("logins").join(format!("{id}.json"))
}

fn assert_html(reply: &Reply, status: u16) {
    assert_eq!(reply.status, status, "body: {}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{reply:?}"
    );
}

// ---------------------------------------------------------------------------
// Starting a login
// ---------------------------------------------------------------------------

#[test]
fn starting_a_login_answers_and_sends_the_email_through_postmark() {
    let server = Server::start();
    let reply = server.post_json("/session", &json!({ "email": " Me@Example.com " }), None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let started = reply.json();
    let token = fetch_token(&started);
    let (id, secret) = token.split_once('.').expect("fetch token is <id>.<secret>");
    assert_eq!(id.len(), 32, "{token}");
    assert!(!secret.is_empty());
    let phrase = started["verification"].as_str().unwrap();
    assert_eq!(phrase.split(' ').count(), 3, "{phrase:?}");
    assert!(
        phrase
            .split(' ')
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
    );
    assert_eq!(started["expiresIn"], 900);
    assert_eq!(
        started.as_object().unwrap().len(),
        3,
        "nothing else (no code, no link) in the answer: {started}"
    );

    let messages = server.postmark.messages();
    assert_eq!(messages.len(), 1, "exactly one e-mail: {messages:#?}");
    assert_eq!(server.postmark.requests().len(), 1);
    let mail = &messages[0];
    assert_eq!(mail.method, "POST");
    assert_eq!(mail.path, "/email");
    assert_eq!(mail.header_values("accept"), vec!["application/json"]);
    let content_type = mail.header("content-type").unwrap_or("");
    assert!(
        content_type == "application/json" || content_type.starts_with("application/json;"),
        "{content_type}"
    );
    assert_eq!(mail.header_values("x-postmark-server-token"), vec!["test-server-token"]);

    let body = &mail.json;
    assert_eq!(body["From"], "no-reply@gren-lang.org");
    assert_eq!(body["To"], "me@example.com");
    assert_eq!(body["Subject"], "Gren: Confirm your email address");
    assert_eq!(body["MessageStream"], "outbound");

    let code = mail.code();
    assert_eq!(code.len(), 9, "{code}");
    assert_eq!(&code[4..5], "-", "{code}");
    let bare = code.replace('-', "");
    assert_eq!(bare.len(), 8);
    assert!(
        bare.chars().all(|c| CODE_ALPHABET.contains(c)),
        "code {code} uses only {CODE_ALPHABET}"
    );
    let link = mail.link();
    let prefix = format!("{}/session/confirm?token=", server.base);
    assert!(link.starts_with(&prefix), "{link} should start with {prefix}");
    let link_token = mail.link_token();
    assert!(link_token.starts_with(&format!("{id}.")), "{link_token}");
    assert_ne!(link_token, token, "the link does not carry the fetch token");

    for (name, text) in [("TextBody", mail.text_body()), ("HtmlBody", mail.html_body())] {
        assert!(text.contains(&code), "{name} has the code: {text}");
        assert!(text.contains(&link), "{name} has the link: {text}");
        assert!(text.contains(phrase), "{name} has the phrase: {text}");
        assert!(text.contains("ignore this e-mail"), "{name} says to ignore it: {text}");
        assert!(text.contains("me@example.com"), "{name} names the address: {text}");
        assert!(!text.contains(secret), "{name} has no fetch secret");
    }
    assert!(mail.html_body().contains(&format!("href=\"{link}\"")));
}

#[test]
fn the_sender_address_can_be_configured() {
    let server = Server::with_env(&[("GREN_REGISTRY_MAIL_FROM", "Gren <login@example.org>")]);
    start_login(&server, "me@example.com");
    let mail = server.postmark.wait_for_message_to("me@example.com");
    assert_eq!(mail.json["From"], "Gren <login@example.org>");
}

#[test]
fn post_users_is_an_alias_of_post_session() {
    let server = Server::start();
    let reply = server.post_json("/users", &json!({ "email": "alias@example.com" }), None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let started = reply.json();
    assert_eq!(started["expiresIn"], 900);
    let mail = server.postmark.wait_for_message_to("alias@example.com");
    let token = fetch(&server, &fetch_token(&started), Some(&mail.code()));
    assert_eq!(token.status, 200, "{}", token.text());
    assert!(token.json()["sessionToken"].as_str().unwrap().starts_with("gren_"));
}

#[test]
fn invalid_start_requests_are_400_json_and_send_nothing() {
    let server = Server::start();
    for bad in [
        "",
        "plain",
        "me@localhost",
        "@example.com",
        "me@@example.com",
        "me@exa mple.com",
        "../x@example.com",
        "mé@example.com",
    ] {
        server
            .post_json("/session", &json!({ "email": bad }), None)
            .assert_error(400, "invalid_email");
    }
    let json_type = [("Content-Type", "application/json")];
    let cases: [(&str, &[u8]); 6] = [
        ("malformed JSON", b"{\"email\": "),
        ("not JSON at all", b"email=me@example.com"),
        ("missing field", b"{}"),
        ("wrong field", b"{\"mail\": \"me@example.com\"}"),
        ("wrong type", b"{\"email\": 42}"),
        ("empty body", b""),
    ];
    for (what, body) in cases {
        let reply = server.send("POST", "/session", &json_type, body);
        assert_eq!(reply.status, 400, "{what}: {}", reply.text());
        assert_eq!(reply.header("content-type"), Some("application/json"), "{what}");
        let json = reply.json();
        assert!(
            matches!(json["error"].as_str(), Some("invalid_json" | "invalid_field")),
            "{what}: {json}"
        );
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    server
        .send("POST", "/session", &json_type, b"")
        .assert_error(400, "invalid_json");
    server
        .send("POST", "/session", &json_type, b"{\"email\": 42}")
        .assert_error(400, "invalid_field");
    assert!(server.postmark.requests().is_empty(), "no e-mail for invalid requests");
    assert!(
        files_under(&server.data_dir.join("logins")).is_empty(),
        "no login records"
    );
}

#[test]
fn a_body_of_64_kib_is_read_and_a_larger_one_is_413() {
    let server = Server::start();
    // Exactly 64 KiB: valid JSON padded with spaces.
    let mut body = br#"{"email": "big@example.com"}"#.to_vec();
    body.resize(64 * 1024, b' ');
    let reply = server.send("POST", "/session", &[("Content-Type", "application/json")], &body);
    assert_eq!(reply.status, 200, "{}", reply.text());

    // One byte more, announced by Content-Length: refused from the header alone.
    let mut conn = server.conn();
    conn.write(
        b"POST /session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 65537\r\n\r\n{\"email\":",
    )
    .unwrap();
    let reply = conn.read_response(false).unwrap();
    reply.assert_error(413, "body_too_large");
    assert!(server.get("/health", None).status == 200);
}

#[test]
fn a_larger_body_sent_in_full_gets_413_not_a_reset() {
    // What a real client does: send the whole body, then read the answer.
    let server = Server::start();
    let mut body = br#"{"email": "big@example.com"}"#.to_vec();
    body.resize(64 * 1024 + 1, b' ');
    let reply = server.send("POST", "/session", &[("Content-Type", "application/json")], &body);
    reply.assert_error(413, "body_too_large");
    assert_eq!(server.get("/health", None).status, 200);
}

// ---------------------------------------------------------------------------
// The code flow
// ---------------------------------------------------------------------------

#[test]
fn the_code_gives_one_session_token_once() {
    let server = Server::start();
    let started = start_login(&server, "me@example.com");
    let token = fetch_token(&started);
    let code = mail_for(&server, &started).code();
    // Typed lower-case, with spaces and the dash.
    let typed = format!(" {} ", code.to_lowercase().replace('-', " - "));
    let reply = fetch(&server, &token, Some(&typed));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let session = reply.json()["sessionToken"].as_str().unwrap().to_string();
    assert!(session.starts_with("gren_"), "{session}");
    assert_eq!(server.get("/user", Some(&session)).status, 200);

    // Any later fetch fails: with the code, without it, with another code.
    fetch(&server, &token, Some(&code)).assert_error(400, "login_used");
    fetch(&server, &token, None).assert_error(400, "login_used");
    fetch(&server, &token, Some("AAAA-AAAA")).assert_error(400, "login_used");
}

#[test]
fn a_login_writes_no_user_record_until_its_address_is_confirmed() {
    let server = Server::start();
    let users = server.data_dir.join("users");
    // A new address, and a known one with a live session.
    server.login("known@example.com");
    let known = users.join("known@example.com.json");
    let known_before = std::fs::read(&known).unwrap();
    for email in ["new@example.com", "known@example.com"] {
        let started = start_login(&server, email);
        fetch(&server, &fetch_token(&started), None);
        let right = mail_for(&server, &started).code();
        let wrong = if right.starts_with('A') {
            "BBBB-BBBB"
        } else {
            "AAAA-AAAA"
        };
        fetch(&server, &fetch_token(&started), Some(wrong)).assert_error(400, "invalid_code");
    }
    assert_eq!(
        files_under(&users),
        std::slice::from_ref(&known),
        "a started login writes no user record"
    );
    assert_eq!(std::fs::read(&known).unwrap(), known_before, "nor changes one");

    // The code confirms the address: the record comes with the session.
    let started = start_login(&server, "new@example.com");
    let code = mail_for(&server, &started).code();
    let reply = fetch(&server, &fetch_token(&started), Some(&code));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let session = reply.json()["sessionToken"].as_str().unwrap().to_string();
    let record = read_json(&users.join("new@example.com.json"));
    assert_eq!(record["email"], "new@example.com");
    assert_eq!(record["sessions"], json!([sha256_hex(&session)]));
    assert_eq!(server.get("/user", Some(&session)).json()["email"], "new@example.com");

    // So does the link, once the confirmed login is fetched.
    let started = start_login(&server, "linked@example.com");
    let link_token = mail_for(&server, &started).link_token();
    assert_html(&server.post_form("/session/confirm", &[("token", &link_token)]), 200);
    let reply = fetch(&server, &fetch_token(&started), None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        read_json(&users.join("linked@example.com.json"))["sessions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn wrong_codes_are_refused_and_five_lock_the_login() {
    let server = Server::start();
    let started = start_login(&server, "me@example.com");
    let token = fetch_token(&started);
    let right = mail_for(&server, &started).code();
    let wrong = if right.starts_with('A') {
        "BBBB-BBBB"
    } else {
        "AAAA-AAAA"
    };
    for attempt in 1..=5 {
        let reply = fetch(&server, &token, Some(wrong));
        reply.assert_error(400, "invalid_code");
        if attempt < 5 {
            assert!(
                reply.json()["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("{} attempts left", 5 - attempt)),
                "{}",
                reply.text()
            );
        }
    }
    fetch(&server, &token, Some(&right)).assert_error(400, "login_locked");
    fetch(&server, &token, None).assert_error(400, "login_locked");
    // The link of a locked login is dead too.
    let link = mail_for(&server, &started).link_token();
    assert_html(&server.get(&format!("/session/confirm?token={link}"), None), 410);
}

#[test]
fn unknown_fetch_tokens_are_invalid_token() {
    let server = Server::start();
    let started = start_login(&server, "me@example.com");
    let real = fetch_token(&started);
    let (id, secret) = real.split_once('.').unwrap();
    let flipped = format!(
        "{id}.{}{}",
        if secret.starts_with('0') { "1" } else { "0" },
        &secret[1..]
    );
    let link = mail_for(&server, &started).link_token();
    for bad in [
        String::new(),
        "x".to_string(),
        "../../etc.passwd".to_string(),
        format!("{}.{}", "a".repeat(32), "b".repeat(48)),
        flipped,
        id.to_string(),
        link, // the link token is not a fetch token
        real.to_uppercase(),
    ] {
        fetch(&server, &bad, None).assert_error(400, "invalid_token");
    }
    fetch(&server, "nope", Some("AAAA-AAAA")).assert_error(400, "invalid_token");
    // The real login is untouched.
    assert_eq!(fetch(&server, &real, None).status, 202);
}

// ---------------------------------------------------------------------------
// The magic-link flow
// ---------------------------------------------------------------------------

#[test]
fn the_magic_link_confirms_only_through_its_form() {
    let server = Server::start();
    let started = start_login(&server, "Link@Example.com");
    let token = fetch_token(&started);
    let phrase = started["verification"].as_str().unwrap();
    let mail = mail_for(&server, &started);
    let link_token = mail.link_token();

    let pending = fetch(&server, &token, None);
    assert_eq!(pending.status, 202, "{}", pending.text());
    assert_eq!(pending.json(), json!({ "status": "pending" }));
    assert_eq!(
        pending.header("retry-after"),
        Some("2"),
        "a pending fetch has Retry-After: 2"
    );

    // Opening the link shows a page, and confirms nothing.
    let path = mail.link().replacen(&server.base, "", 1);
    assert!(path.starts_with("/session/confirm?token="), "{path}");
    let page = server.get(&path, None);
    assert_html(&page, 200);
    let html = page.text();
    assert!(html.contains("link@example.com"), "{html}");
    assert!(html.contains(phrase), "{html}");
    assert!(
        html.contains("<form method=\"post\" action=\"/session/confirm\">"),
        "{html}"
    );
    assert!(
        html.contains(&format!("name=\"token\" value=\"{link_token}\"")),
        "{html}"
    );
    assert!(html.contains(USER_AGENT), "the page shows the client: {html}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    // Opening it again (a mail scanner, a second click) still confirms nothing.
    assert_eq!(server.get(&path, None).status, 200);
    let still = fetch(&server, &token, None);
    assert_eq!(still.status, 202, "GET must not confirm: {}", still.text());

    // The fetch token does not confirm through the form.
    assert_html(&server.post_form("/session/confirm", &[("token", &token)]), 404);
    assert_eq!(fetch(&server, &token, None).status, 202);

    // The form's POST confirms.
    let confirmed = server.post_form("/session/confirm", &[("token", &link_token)]);
    assert_html(&confirmed, 200);
    assert!(confirmed.text().contains("link@example.com"));

    let reply = fetch(&server, &token, None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let session = reply.json()["sessionToken"].as_str().unwrap().to_string();
    assert!(session.starts_with("gren_"));
    assert_eq!(server.get("/user", Some(&session)).json()["email"], "link@example.com");
    fetch(&server, &token, None).assert_error(400, "login_used");

    // The link is spent.
    assert_html(&server.get(&path, None), 410);
    assert_html(&server.post_form("/session/confirm", &[("token", &link_token)]), 410);

    // Garbage link tokens.
    let (id, _) = link_token.split_once('.').unwrap();
    for garbage in [
        "garbage".to_string(),
        String::new(),
        format!("{id}.{}", "0".repeat(48)),
        format!("{}.{}", "a".repeat(32), "b".repeat(48)),
        "..%2F..%2Fetc%2Fpasswd".to_string(),
    ] {
        assert_html(&server.get(&format!("/session/confirm?token={garbage}"), None), 404);
    }
    assert_html(&server.get("/session/confirm", None), 404);
}

#[test]
fn a_code_login_spends_the_link() {
    let server = Server::start();
    let started = start_login(&server, "me@example.com");
    let mail = mail_for(&server, &started);
    assert_eq!(fetch(&server, &fetch_token(&started), Some(&mail.code())).status, 200);
    assert_html(
        &server.get(&format!("/session/confirm?token={}", mail.link_token()), None),
        410,
    );
}

#[test]
fn a_long_poll_returns_as_soon_as_the_link_is_confirmed() {
    let server = Server::start();
    let started = start_login(&server, "poll@example.com");
    let token = fetch_token(&started);
    let link_token = mail_for(&server, &started).link_token();
    let (reply, took) = std::thread::scope(|scope| {
        let poll = scope.spawn(|| {
            let began = Instant::now();
            let reply = server.post_json("/session/fetch?wait=10", &json!({ "fetchSessionToken": token }), None);
            (reply, began.elapsed())
        });
        std::thread::sleep(Duration::from_millis(300));
        let confirmed = server.post_form("/session/confirm", &[("token", &link_token)]);
        assert_eq!(confirmed.status, 200);
        poll.join().unwrap()
    });
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.json()["sessionToken"].as_str().unwrap().starts_with("gren_"));
    assert!(
        took >= Duration::from_millis(250),
        "the poll waited for the confirmation: {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "the poll answered right after the confirmation: {took:?}"
    );
}

#[test]
fn a_long_poll_without_confirmation_ends_pending_after_its_wait() {
    let server = Server::start();
    let started = start_login(&server, "poll@example.com");
    let began = Instant::now();
    let reply = server.post_json(
        "/session/fetch?wait=1",
        &json!({ "fetchSessionToken": fetch_token(&started) }),
        None,
    );
    let took = began.elapsed();
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[test]
fn at_most_a_quarter_of_the_handlers_may_long_poll() {
    // 8 handlers: 2 may wait (each holds a handler's thread); a third poll
    // is answered at once.
    let server = Server::with_env(&[("GREN_REGISTRY_MAX_HANDLERS", "8")]);
    let tokens: Vec<String> = (0..3)
        .map(|n| fetch_token(&start_login(&server, &format!("poll{n}@example.com"))))
        .collect();
    let poll = |token: &str| {
        let began = Instant::now();
        let reply = server.post_json("/session/fetch?wait=3", &json!({ "fetchSessionToken": token }), None);
        (reply.status, began.elapsed())
    };
    std::thread::scope(|scope| {
        let waiting: Vec<_> = tokens[..2].iter().map(|token| scope.spawn(|| poll(token))).collect();
        std::thread::sleep(Duration::from_millis(300));
        let (status, took) = poll(&tokens[2]);
        assert_eq!(status, 202);
        assert!(took < Duration::from_secs(1), "the third poll is not held: {took:?}");
        for waiter in waiting {
            let (status, took) = waiter.join().unwrap();
            assert_eq!(status, 202);
            assert!(took >= Duration::from_millis(2500), "{took:?}");
        }
    });
}

#[test]
fn concurrent_fetches_give_out_one_token() {
    let server = Server::start();
    let started = start_login(&server, "me@example.com");
    let token = fetch_token(&started);
    let code = mail_for(&server, &started).code();
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| fetch(&server, &token, Some(&code))))
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let granted = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(granted, 1, "{replies:#?}");
    for reply in replies.iter().filter(|r| r.status != 200) {
        reply.assert_error(400, "login_used");
    }
    let files = files_under(&server.data_dir.join("sessions"));
    assert_eq!(files.len(), 1, "one session record: {files:?}");
}

#[test]
fn wait_must_be_whole_seconds() {
    let server = Server::start();
    let started = start_login(&server, "me@example.com");
    let body = json!({ "fetchSessionToken": fetch_token(&started) });
    for wait in ["abc", "-1", "1.5", ""] {
        server
            .post_json(&format!("/session/fetch?wait={wait}"), &body, None)
            .assert_error(400, "invalid_wait");
    }
    assert_eq!(server.post_json("/session/fetch?wait=0", &body, None).status, 202);
}

#[test]
fn an_expired_login_is_refused() {
    let server = Server::start();
    let started = start_login(&server, "me@example.com");
    let mail = mail_for(&server, &started);
    let path = login_path(&server, &started);
    let mut record = read_json(&path);
    // `created` is a moment ago: an expiry there has just passed (and is far
    // from the purge an hour after expiry).
    record["expires"] = record["created"].clone();
    replace_file(&path, serde_json::to_string_pretty(&record).unwrap().as_bytes());

    fetch(&server, &fetch_token(&started), Some(&mail.code())).assert_error(400, "login_expired");
    fetch(&server, &fetch_token(&started), None).assert_error(400, "login_expired");
    assert_html(
        &server.get(&format!("/session/confirm?token={}", mail.link_token()), None),
        410,
    );
    assert_html(
        &server.post_form("/session/confirm", &[("token", &mail.link_token())]),
        410,
    );
}

#[test]
fn a_postmark_failure_is_502_and_leaves_no_usable_login() {
    let server = Server::start();
    server.postmark.set_failing(true);
    let reply = server.post_json("/session", &json!({ "email": "me@example.com" }), None);
    reply.assert_error(502, "email_failed");
    let messages = server.postmark.messages();
    assert_eq!(messages.len(), 1, "the registry tried Postmark once");
    let mail = &messages[0];
    let leftovers: Vec<_> = files_under(&server.data_dir.join("logins"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert!(leftovers.is_empty(), "no login record stays: {leftovers:?}");
    // What the failed e-mail would have carried is worthless.
    assert_html(
        &server.get(&format!("/session/confirm?token={}", mail.link_token()), None),
        404,
    );
    assert_html(
        &server.post_form("/session/confirm", &[("token", &mail.link_token())]),
        404,
    );
    let log = server.log();
    assert!(log.contains("login e-mail not sent"), "{log}");
    assert!(!log.contains(&mail.code()), "the log has no code: {log}");

    // Once Postmark works again, so does logging in.
    server.postmark.set_failing(false);
    let token = server.login("me@example.com");
    assert_eq!(server.get("/user", Some(&token)).status, 200);
}

// ---------------------------------------------------------------------------
// Session tokens
// ---------------------------------------------------------------------------

#[test]
fn secrets_are_stored_only_as_hashes_and_never_logged() {
    let server = Server::start();
    // A code login and a link login.
    let started = start_login(&server, "me@example.com");
    let mail = mail_for(&server, &started);
    let code = mail.code();
    let fetch_secret = fetch_token(&started).split_once('.').unwrap().1.to_string();
    let link_secret = mail.link_token().split_once('.').unwrap().1.to_string();
    let reply = fetch(&server, &fetch_token(&started), Some(&code));
    let token = reply.json()["sessionToken"].as_str().unwrap().to_string();

    let started2 = start_login(&server, "me@example.com");
    let mail2 = mail_for(&server, &started2);
    assert_eq!(
        server
            .post_form("/session/confirm", &[("token", &mail2.link_token())])
            .status,
        200
    );
    let token2 = fetch(&server, &fetch_token(&started2), None).json()["sessionToken"]
        .as_str()
        .unwrap()
        .to_string();

    let user = server.get("/user", Some(&token));
    assert_eq!(user.status, 200, "{}", user.text());
    let user = user.json();
    assert_eq!(user["email"], "me@example.com");
    assert!(user["created"].is_string(), "{user}");
    let sessions = user["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{user}");
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1, "{user}");

    for (i, token) in [&token, &token2].into_iter().enumerate() {
        let hash = sha256_hex(token);
        let file = server.data_dir.join("sessions").join(format!("{hash}.json"));
        assert!(file.is_file(), "session {i} is stored as {}", file.display());
        assert!(
            sessions.iter().any(|s| hash.starts_with(s["id"].as_str().unwrap())),
            "the session id is the start of the hash"
        );
    }
    let mut secrets = vec![
        token.clone(),
        token["gren_".len()..].to_string(),
        token2.clone(),
        token2["gren_".len()..].to_string(),
        code.clone(),
        code.replace('-', ""),
        fetch_secret,
        link_secret,
        mail2.code().replace('-', ""),
    ];
    secrets.retain(|s| !s.is_empty());
    assert!(!files_under(&server.data_dir).is_empty());
    let log = server.log();
    for secret in &secrets {
        let found = files_containing(&server.data_dir, secret);
        assert!(found.is_empty(), "{secret} is stored in {found:?}");
        assert!(!log.contains(secret.as_str()), "{secret} is in the log:\n{log}");
    }
    // Not even the whole hash is served.
    let served = server.get("/user/sessions", Some(&token)).text();
    assert!(!served.contains(&sha256_hex(&token)));
    assert!(!served.contains(&token));
}

#[test]
fn the_user_endpoints_need_a_valid_bearer_token() {
    let server = Server::start();
    let token = server.login("me@example.com");
    let unknown = format!("gren_{}", "ab".repeat(24));
    for (what, authorization) in [
        ("none", None),
        ("garbage", Some("Bearer garbage".to_string())),
        ("unknown", Some(format!("Bearer {unknown}"))),
        ("not bearer", Some(format!("Basic {token}"))),
        ("upper-case", Some(format!("Bearer {}", token.to_uppercase()))),
        ("empty", Some("Bearer ".to_string())),
    ] {
        for path in ["/user", "/user/sessions"] {
            let headers: Vec<(&str, &str)> = authorization
                .iter()
                .map(|value| ("Authorization", value.as_str()))
                .collect();
            let reply = server.send("GET", path, &headers, b"");
            reply.assert_error(401, "unauthorized");
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"), "{what} {path}");
        }
    }
    server
        .delete("/session", Some("garbage"))
        .assert_error(401, "unauthorized");
    server
        .delete("/user/sessions/abc", None)
        .assert_error(401, "unauthorized");
    // The scheme is case-insensitive.
    let reply = server.send("GET", "/user", &[("Authorization", &format!("bearer {token}"))], b"");
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[test]
fn sessions_can_be_listed_and_revoked_one_by_one() {
    let server = Server::start();
    let first = server.login("me@example.com");
    let second = server.login("me@example.com");
    let other_user = server.login("other@example.com");

    let listed = server.get("/user/sessions", Some(&first));
    assert_eq!(listed.status, 200, "{}", listed.text());
    let sessions = listed.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    for session in &sessions {
        for field in ["id", "created", "lastUsed", "expires", "current"] {
            assert!(!session[field].is_null(), "{field} in {session}");
        }
        assert_eq!(session["userAgent"], USER_AGENT);
        assert!(session.get("email").is_none() && session.get("ip").is_none());
    }
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], &sha256_hex(&first)[..16]);
    let second_id = sessions.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(second_id, &sha256_hex(&second)[..16]);

    // Another user's session id is unknown to this user.
    let other_id = &sha256_hex(&other_user)[..16];
    server
        .delete(&format!("/user/sessions/{other_id}"), Some(&first))
        .assert_error(404, "session_not_found");
    assert_eq!(server.get("/user", Some(&other_user)).status, 200);
    server
        .delete("/user/sessions/0000000000000000", Some(&first))
        .assert_error(404, "session_not_found");

    let revoked = server.delete(&format!("/user/sessions/{second_id}"), Some(&first));
    assert_eq!(revoked.status, 204, "{}", revoked.text());
    assert!(revoked.body.is_empty());
    server.get("/user", Some(&second)).assert_error(401, "unauthorized");
    assert!(
        !server
            .data_dir
            .join("sessions")
            .join(format!("{}.json", sha256_hex(&second)))
            .exists()
    );
    server
        .delete(&format!("/user/sessions/{second_id}"), Some(&first))
        .assert_error(404, "session_not_found");
    let left = server.get("/user/sessions", Some(&first)).json();
    assert_eq!(left["sessions"].as_array().unwrap().len(), 1, "{left}");
    assert_eq!(server.get("/user", Some(&first)).status, 200);
}

#[test]
fn logout_revokes_the_token() {
    let server = Server::start();
    let token = server.login("me@example.com");
    let other = server.login("me@example.com");
    assert_eq!(server.get("/user", Some(&token)).status, 200);
    let reply = server.delete("/session", Some(&token));
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert!(reply.body.is_empty());
    server.get("/user", Some(&token)).assert_error(401, "unauthorized");
    server
        .delete("/session", Some(&token))
        .assert_error(401, "unauthorized");
    assert!(
        !server
            .data_dir
            .join("sessions")
            .join(format!("{}.json", sha256_hex(&token)))
            .exists()
    );
    // Only that session.
    assert_eq!(server.get("/user", Some(&other)).status, 200);
}

#[test]
fn session_days_zero_gives_tokens_that_are_already_expired() {
    let server = Server::with_env(&[("GREN_REGISTRY_SESSION_DAYS", "0")]);
    let token = server.login("me@example.com");
    assert!(token.starts_with("gren_"));
    server.get("/user", Some(&token)).assert_error(401, "unauthorized");
    server
        .get("/user/sessions", Some(&token))
        .assert_error(401, "unauthorized");
}

#[test]
fn session_expiry_follows_session_days() {
    let server = Server::with_env(&[("GREN_REGISTRY_SESSION_DAYS", "2")]);
    let token = server.login("me@example.com");
    let session = &server.get("/user/sessions", Some(&token)).json()["sessions"][0];
    let created = humantime::parse_rfc3339(session["created"].as_str().unwrap()).unwrap();
    let expires = humantime::parse_rfc3339(session["expires"].as_str().unwrap()).unwrap();
    assert_eq!(
        expires.duration_since(created).unwrap(),
        Duration::from_secs(2 * 24 * 60 * 60)
    );
}

#[test]
fn a_session_lifetime_that_would_overflow_is_refused_at_start_with_a_message_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    match Server::try_start_in(dir.path(), &[("GREN_REGISTRY_SESSION_DAYS", "3000000")]) {
        Ok(server) => panic!("the registry started at {} with 3000000 session days", server.base),
        Err(failure) => {
            let status = failure.status.expect("the process exits by itself, at once");
            assert_eq!(status.code(), Some(1), "{status:?}\n{}", failure.log);
            assert!(
                failure.log.contains("GREN_REGISTRY_SESSION_DAYS") && failure.log.contains("3000000"),
                "the message names the variable and its value: {}",
                failure.log
            );
            assert!(!failure.log.contains("panicked"), "{}", failure.log);
        }
    }
    let touched: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(
        touched.is_empty(),
        "nothing is created in the data directory: {touched:?}"
    );
}

#[test]
fn every_invalid_setting_stops_the_start_with_a_message_naming_it() {
    for (variable, value) in [
        ("GREN_REGISTRY_LOGIN_LIMIT_PER_EMAIL", "0"),
        ("GREN_REGISTRY_REQUEST_TIMEOUT", "0"),
        ("GREN_REGISTRY_PUBLIC_URL", "registry.example.com"),
        (
            "GREN_REGISTRY_MAIL_FROM",
            "no-reply@gren-lang.org\r\nBcc: x@example.com",
        ),
        ("GREN_REGISTRY_LISTEN", "not an address"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let Err(failure) = Server::try_start_in(dir.path(), &[(variable, value)]) else {
            panic!("the registry started with {variable}={value:?}");
        };
        assert_eq!(
            failure.status.and_then(|s| s.code()),
            Some(1),
            "{variable}: {}",
            failure.log
        );
        assert!(failure.log.contains(variable), "{variable}: {}", failure.log);
    }
}

// ---------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------

#[test]
fn logins_per_address_are_rate_limited() {
    let server = Server::with_env(&[("GREN_REGISTRY_LOGIN_LIMIT_PER_EMAIL", "2")]);
    start_login(&server, "me@example.com");
    start_login(&server, "ME@example.com ");
    let reply = server.post_json("/session", &json!({ "email": "me@example.com" }), None);
    reply.assert_error(429, "rate_limited");
    let retry = reply.retry_after();
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_eq!(server.postmark.messages().len(), 2, "no e-mail when limited");
    start_login(&server, "other@example.com");
}

#[test]
fn a_login_refused_for_its_address_does_not_use_up_the_client_limit() {
    // The limits count logins *started* (README, config): a request refused
    // by the per-address limit started none.
    let server = Server::with_env(&[
        ("GREN_REGISTRY_LOGIN_LIMIT_PER_EMAIL", "1"),
        ("GREN_REGISTRY_LOGIN_LIMIT_PER_IP", "2"),
    ]);
    start_login(&server, "me@example.com");
    server
        .post_json("/session", &json!({ "email": "me@example.com" }), None)
        .assert_error(429, "rate_limited");
    // One login started from this client so far; the limit is two.
    let reply = server.post_json("/session", &json!({ "email": "other@example.com" }), None);
    assert_eq!(
        reply.status,
        200,
        "one login was started from 127.0.0.1 and the limit is 2: {}",
        reply.text()
    );
}

#[test]
fn logins_per_client_address_are_rate_limited() {
    let server = Server::with_env(&[("GREN_REGISTRY_LOGIN_LIMIT_PER_IP", "3")]);
    for n in 0..3 {
        start_login(&server, &format!("user{n}@example.com"));
    }
    let reply = server.post_json("/session", &json!({ "email": "user3@example.com" }), None);
    reply.assert_error(429, "rate_limited");
    reply.retry_after();
    assert_eq!(server.postmark.messages().len(), 3);
}

/// `POST /session` for `email` from `client`, as a trusted proxy on
/// 127.0.0.1 reports it in `X-Forwarded-For`.
fn start_from(server: &Server, client: &str, email: &str) -> Reply {
    let body = serde_json::to_vec(&json!({ "email": email })).unwrap();
    server.send(
        "POST",
        "/session",
        &[("Content-Type", "application/json"), ("X-Forwarded-For", client)],
        &body,
    )
}

/// A server behind a trusted proxy on 127.0.0.1, with these settings.
fn behind_proxy(env: &[(&str, &str)]) -> Server {
    let mut env = env.to_vec();
    env.push(("GREN_REGISTRY_TRUSTED_PROXIES", "127.0.0.1"));
    Server::with_env(&env)
}

#[test]
fn an_attacker_on_another_network_cannot_lock_the_owner_of_an_address_out() {
    let server = behind_proxy(&[("GREN_REGISTRY_LOGIN_LIMIT_PER_EMAIL", "2")]);
    for _ in 0..2 {
        assert_eq!(start_from(&server, "203.0.113.9", "victim@example.com").status, 200);
    }
    start_from(&server, "203.0.113.9", "victim@example.com").assert_error(429, "rate_limited");
    // The owner, elsewhere, still logs in.
    let reply = start_from(&server, "198.51.100.7", "victim@example.com");
    assert_eq!(
        reply.status,
        200,
        "the owner's network has its own budget: {}",
        reply.text()
    );
    let started = reply.json();
    let code = mail_for(&server, &started).code();
    assert_eq!(fetch(&server, &fetch_token(&started), Some(&code)).status, 200);
}

#[test]
fn logins_for_one_address_from_all_networks_together_are_capped_against_mail_bombing() {
    let server = behind_proxy(&[
        ("GREN_REGISTRY_LOGIN_LIMIT_PER_EMAIL", "2"),
        ("GREN_REGISTRY_LOGIN_LIMIT_PER_EMAIL_TOTAL", "3"),
    ]);
    for client in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        assert_eq!(
            start_from(&server, client, "victim@example.com").status,
            200,
            "{client}"
        );
    }
    let reply = start_from(&server, "203.0.113.4", "victim@example.com");
    reply.assert_error(429, "rate_limited");
    reply.retry_after();
    assert_eq!(server.postmark.messages().len(), 3, "three e-mails, no more");
    assert_eq!(start_from(&server, "203.0.113.4", "other@example.com").status, 200);
}

#[test]
fn the_owner_passes_the_overall_cap_from_a_network_they_logged_in_from() {
    let server = behind_proxy(&[("GREN_REGISTRY_LOGIN_LIMIT_PER_EMAIL_TOTAL", "3")]);
    // The owner logged in from home once (a session from 198.51.100.7).
    let started = start_from(&server, "198.51.100.7", "victim@example.com").json();
    let code = mail_for(&server, &started).code();
    let body = json!({ "fetchSessionToken": fetch_token(&started), "emailConfirmationCode": code });
    let fetched = server.send(
        "POST",
        "/session/fetch",
        &[
            ("Content-Type", "application/json"),
            ("X-Forwarded-For", "198.51.100.7"),
        ],
        &serde_json::to_vec(&body).unwrap(),
    );
    assert_eq!(fetched.status, 200, "{}", fetched.text());
    // Attackers fill the overall cap from other networks.
    for client in ["203.0.113.1", "203.0.113.2"] {
        assert_eq!(start_from(&server, client, "victim@example.com").status, 200);
    }
    start_from(&server, "203.0.113.3", "victim@example.com").assert_error(429, "rate_limited");
    // Home still works.
    assert_eq!(start_from(&server, "198.51.100.7", "victim@example.com").status, 200);
}

#[test]
fn tag_variants_of_an_address_share_its_limit_and_the_mail_goes_to_the_address_typed() {
    let server = Server::with_env(&[("GREN_REGISTRY_LOGIN_LIMIT_PER_EMAIL", "2")]);
    start_login(&server, "me+one@example.com");
    start_login(&server, "Me+Two@Example.com");
    server
        .post_json("/session", &json!({ "email": "me+three@example.com" }), None)
        .assert_error(429, "rate_limited");
    server
        .post_json("/session", &json!({ "email": "me@example.com" }), None)
        .assert_error(429, "rate_limited");
    let to: Vec<_> = server
        .postmark
        .messages()
        .iter()
        .map(|m| m.json["To"].clone())
        .collect();
    assert_eq!(to, vec![json!("me+one@example.com"), json!("me+two@example.com")]);
    start_login(&server, "me-too@example.com");
}

#[test]
fn ipv6_clients_in_one_64_share_one_budget() {
    let server = behind_proxy(&[("GREN_REGISTRY_LOGIN_LIMIT_PER_IP", "2")]);
    assert_eq!(start_from(&server, "2001:db8:1:2::1", "a@example.com").status, 200);
    assert_eq!(start_from(&server, "2001:db8:1:2:ffff::2", "b@example.com").status, 200);
    start_from(&server, "2001:db8:1:2:abcd:ef01:2345:6789", "c@example.com").assert_error(429, "rate_limited");
    assert_eq!(
        start_from(&server, "2001:db8:1:3::1", "c@example.com").status,
        200,
        "the next /64 is another client"
    );
}

#[test]
fn every_login_request_gets_its_own_fetch_token_code_and_link() {
    let server = Server::start();
    let first = start_login(&server, "me@example.com");
    let second = start_login(&server, "me@example.com");
    let (first_token, second_token) = (fetch_token(&first), fetch_token(&second));
    assert_ne!(
        first_token.split('.').next(),
        second_token.split('.').next(),
        "two logins, not one shared"
    );
    let (first_mail, second_mail) = (mail_for(&server, &first), mail_for(&server, &second));
    assert_ne!(first_mail.link_token(), second_mail.link_token());
    // The second requester cannot finish the first login, with its code or its link.
    fetch(&server, &second_token, Some(&first_mail.code())).assert_error(400, "invalid_code");
    assert_eq!(
        server
            .post_form("/session/confirm", &[("token", &first_mail.link_token())])
            .status,
        200
    );
    assert_eq!(fetch(&server, &second_token, None).status, 202, "still pending");
    assert_eq!(fetch(&server, &first_token, None).status, 200);
}

#[test]
fn json_routes_refuse_what_a_browser_form_may_send_with_415() {
    let server = Server::start();
    let token = server.login("me@example.com");
    let bearer = format!("Bearer {token}");
    // A package to change, so that the package routes reach their body.
    assert_eq!(
        server
            .post_json("/publishing-identity", &json!({ "name": "browser" }), Some(&token))
            .status,
        200
    );
    let published = server.publish(&token, &synthetic("browser/thing", "1.0.0", "x"));
    assert_eq!(published.status, 201, "{}", published.text());
    let routes: [(&str, &str, &[u8]); 6] = [
        ("POST", "/session", br#"{"email": "victim@example.com"}"#),
        ("POST", "/session/fetch", br#"{"fetchSessionToken": "x"}"#),
        ("POST", "/publishing-identity", br#"{"name": "other"}"#),
        (
            "PUT",
            "/publishing-identity/browser/members/x@example.com",
            br#"{"role": "admin"}"#,
        ),
        ("PATCH", "/packages/browser/thing", br#"{"private": false}"#),
        ("POST", "/packages/browser/thing/1.0.0/revoke", br#"{"reason": "no"}"#),
    ];
    let mails = server.postmark.messages().len();
    for (method, path, body) in routes {
        for content_type in [
            Some("text/plain"),
            Some("text/plain;charset=UTF-8"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            None,
        ] {
            let mut headers = vec![("Authorization", bearer.as_str())];
            headers.extend(content_type.map(|value| ("Content-Type", value)));
            let reply = server.send(method, path, &headers, body);
            reply.assert_error(415, "unsupported_media_type");
        }
    }
    assert_eq!(server.postmark.messages().len(), mails, "no e-mail was sent");
    // JSON with parameters or in capitals is JSON.
    for content_type in ["application/json; charset=utf-8", "Application/JSON"] {
        let reply = server.send(
            "POST",
            "/session",
            &[("Content-Type", content_type)],
            br#"{"email": "me@example.com"}"#,
        );
        assert_eq!(reply.status, 200, "{content_type}: {}", reply.text());
    }
}

// ---------------------------------------------------------------------------
// Process: data directory lock, shutdown, records, routing, logging
// ---------------------------------------------------------------------------

#[test]
fn a_data_directory_serves_one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start_in(dir.path(), &[]);
    let token = first.login("me@example.com");
    match Server::try_start_in(dir.path(), &[]) {
        Ok(second) => panic!("a second server started on {} at {}", dir.path().display(), second.base),
        Err(failure) => {
            let status = failure.status.expect("the second process exits");
            assert!(!status.success(), "{status:?}");
            assert_eq!(status.code(), Some(1), "{status:?}");
            assert!(
                failure.log.contains("in use") && failure.log.contains("lock"),
                "the message names the lock: {}",
                failure.log
            );
        }
    }
    assert_eq!(first.get("/health", None).status, 200);
    assert!(first.stop().success());
    let third = Server::start_in(dir.path(), &[]);
    assert_eq!(third.get("/health", None).status, 200);
    // The data survived the restart.
    assert_eq!(third.get("/user", Some(&token)).status, 200);
}

#[test]
fn sigterm_answers_in_flight_requests_exits_0_and_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[]);
    let started = start_login(&server, "me@example.com");
    let token = fetch_token(&started);
    let (reply, took) = std::thread::scope(|scope| {
        let poll = scope.spawn(|| {
            let began = Instant::now();
            let reply = server.post_json("/session/fetch?wait=10", &json!({ "fetchSessionToken": token }), None);
            (reply, began.elapsed())
        });
        std::thread::sleep(Duration::from_millis(500));
        server.signal("TERM");
        poll.join().unwrap()
    });
    assert!(
        matches!(reply.status, 200 | 202),
        "the in-flight request was answered: {} {}",
        reply.status,
        reply.text()
    );
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(4),
        "in flight at the signal, answered on shutdown and not after its wait: {took:?}"
    );
    let (status, log) = server.wait_with_log(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}; log:\n{log}");
    assert!(log.contains("received signal"), "{log}");
    assert!(log.trim_end().ends_with("stopped"), "{log}");
    let next = Server::start_in(dir.path(), &[]);
    assert_eq!(next.get("/health", None).status, 200);
}

#[test]
fn sigint_stops_an_idle_server_with_status_0() {
    let server = Server::start();
    assert_eq!(server.get("/health", None).status, 200);
    server.signal("INT");
    let (status, log) = server.wait_with_log(Duration::from_secs(5));
    assert!(status.success(), "{status:?}\n{log}");
}

#[test]
fn records_are_pretty_printed_json() {
    let server = Server::start();
    let started = start_login(&server, "me@example.com");
    let login = login_path(&server, &started);
    let token = fetch(
        &server,
        &fetch_token(&started),
        Some(&mail_for(&server, &started).code()),
    )
    .json()["sessionToken"]
        .as_str()
        .unwrap()
        .to_string();
    let user = server.data_dir.join("users").join("me@example.com.json");
    let session = server
        .data_dir
        .join("sessions")
        .join(format!("{}.json", sha256_hex(&token)));
    for path in [login, user, session] {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        assert!(text.contains("\n  "), "{} is pretty: {text}", path.display());
        serde_json::from_str::<Value>(&text).expect("a record is JSON");
    }
}

#[test]
fn unknown_routes_wrong_methods_and_head() {
    let server = Server::start();
    let health = server.get("/health", None);
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");

    for path in ["/nope", "/session/x", "/user/sessions/a/b", "/%FF"] {
        server.get(path, None).assert_error(404, "not_found");
    }
    let reply = server.put_json("/session/fetch", &json!({}), None);
    reply.assert_error(405, "method_not_allowed");
    assert_eq!(reply.header("allow"), Some("POST"));
    let reply = server.delete("/health", None);
    reply.assert_error(405, "method_not_allowed");
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    let reply = server.patch_json("/session", &json!({}), None);
    reply.assert_error(405, "method_not_allowed");
    assert_eq!(reply.header("allow"), Some("POST, DELETE"));
    let reply = server.get("/session/fetch", None);
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("POST"));

    // HEAD /health: the GET's head, no body. Read to the end of the stream.
    let mut conn = server.conn();
    conn.write(b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let head = conn.read_response(true).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("application/json"));
    assert!(conn.closed_within(Duration::from_secs(2)));
    assert!(
        conn.leftover().is_empty(),
        "HEAD has no body: {:?}",
        String::from_utf8_lossy(conn.leftover())
    );
}

#[test]
fn requests_are_logged_without_their_query() {
    let server = Server::start();
    let reply = server.get("/session/confirm?token=SECRETabc123", None);
    assert_eq!(reply.status, 404);
    assert!(
        server.wait_for_log("GET /session/confirm 404", Duration::from_secs(2)),
        "{}",
        server.log()
    );

    let started = start_login(&server, "me@example.com");
    let link = mail_for(&server, &started).link_token();
    assert_eq!(server.get(&format!("/session/confirm?token={link}"), None).status, 200);
    assert!(
        server.wait_for_log("GET /session/confirm 200", Duration::from_secs(2)),
        "{}",
        server.log()
    );
    assert!(server.wait_for_log("POST /session 200", Duration::from_secs(2)));
    let log = server.log();
    assert!(!log.contains("SECRET"), "{log}");
    assert!(!log.contains(&link), "{log}");
    assert!(!log.contains(link.split_once('.').unwrap().1), "{log}");
}

#[test]
fn postmark_error_text_reaches_the_log_escaped_on_one_line() {
    let server = Server::start();
    server
        .postmark
        .fail_with("Bad request\n2099-01-01T00:00:00.000Z GET /forged 200 0.1ms\r\n\u{1b}[2Jcleared");
    let reply = server.post_json("/session", &json!({ "email": "me@example.com" }), None);
    reply.assert_error(502, "email_failed");
    assert!(server.wait_for_log("login e-mail not sent", Duration::from_secs(2)));
    let log = server.log();
    let line = log.lines().find(|line| line.contains("login e-mail not sent")).unwrap();
    assert!(
        line.ends_with(r"Bad request\n2099-01-01T00:00:00.000Z GET /forged 200 0.1ms\r\n\u{1b}[2Jcleared"),
        "the whole text, escaped, on the line: {line}"
    );
    assert!(!log.contains('\u{1b}'), "no raw escape sequence: {log:?}");
    assert!(
        !log.lines().any(|line| line.starts_with("2099")),
        "no forged line: {log}"
    );
}
