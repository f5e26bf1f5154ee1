//! E-mail login: a pending login is created, e-mailed (a code and a magic
//! link), then exchanged once for a session token.
//!
//! Pending logins live in `logins/<id>.json`. The client holds
//! `<id>.<fetch secret>`; the e-mail carries `<id>.<link secret>` and the code.
//! Only SHA-256 hashes of the secrets and the code are stored.

use super::AuthError;
use super::email::Email;
use super::secret::{self, same_secret, sha256_hex};
use super::session::{self, NewSession};
use crate::error::Chain;
use crate::mail::Message;
use crate::store::{RecordPath, Store, StoreError, layout, lock_ignoring_poison};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

pub const LOGIN_LIFETIME: Duration = Duration::from_secs(15 * 60);
pub const MAX_WRONG_CODES: u32 = 5;
/// Purged this long after expiry, so that reuse of a just-expired or used
/// token still gets a precise answer for a while.
const PURGE_AFTER_EXPIRY: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Login {
    pub id: String,
    pub email: Email,
    pub created: Timestamp,
    pub expires: Timestamp,
    pub fetch_hash: String,
    pub link_hash: String,
    pub code_hash: String,
    pub verification: String,
    pub client_ip: String,
    pub user_agent: Option<String>,
    pub wrong_codes: u32,
    pub confirmed: Option<Timestamp>,
    pub used: Option<Timestamp>,
}

/// A started login: what `POST /session` answers ([`crate::api::LoginStarted`])
/// and the e-mail with the code and the link, which only the e-mail carries.
#[derive(Debug)]
pub struct Started {
    pub fetch_session_token: String,
    pub verification: String,
    pub expires_in: u64,
    pub message: Message,
}

/// Who started a login, as the confirmation page shows them.
pub struct Requester<'a> {
    pub ip: String,
    pub user_agent: Option<&'a str>,
}

fn login_path(id: &str) -> Result<RecordPath, AuthError> {
    if id.len() != 32 || !secret::is_lower_hex(id) {
        return Err(AuthError::UnknownLogin);
    }
    Ok(layout::login(id).expect("32 hex digits make a safe file name"))
}

fn code_hash(id: &str, code: &str) -> String {
    sha256_hex(format!("{id}:{code}").as_bytes())
}

/// Splits `<id>.<secret>` into its parts, refusing any other shape.
fn split_token(token: &str) -> Result<(&str, &str), AuthError> {
    let (id, secret) = token.split_once('.').ok_or(AuthError::UnknownLogin)?;
    if !secret::is_secret(secret) {
        return Err(AuthError::UnknownLogin);
    }
    login_path(id)?;
    Ok((id, secret))
}

/// Creates a pending login and the e-mail that announces it. The caller sends
/// the e-mail and calls [`abandon`] if that fails.
pub fn start(store: &Store, email: &Email, requester: Requester, public_url: &str) -> Result<Started, AuthError> {
    let id = secret::hex(&secret::random_bytes::<16>());
    let (fetch_secret, link_secret) = (secret::random_secret(), secret::random_secret());
    let code = secret::new_confirmation_code();
    let now = Timestamp::now();
    let login = Login {
        id: id.clone(),
        email: email.clone(),
        created: now,
        expires: now.plus(LOGIN_LIFETIME),
        fetch_hash: sha256_hex(fetch_secret.as_bytes()),
        link_hash: sha256_hex(link_secret.as_bytes()),
        code_hash: code_hash(&id, &code),
        verification: secret::new_verification_phrase(),
        client_ip: requester.ip,
        user_agent: requester.user_agent.map(|agent| agent.chars().take(200).collect()),
        wrong_codes: 0,
        confirmed: None,
        used: None,
    };
    store.write_json(&login_path(&id)?, &login)?;
    let link = format!("{public_url}/session/confirm?token={id}.{link_secret}");
    Ok(Started {
        fetch_session_token: format!("{id}.{fetch_secret}"),
        verification: login.verification.clone(),
        expires_in: LOGIN_LIFETIME.as_secs(),
        message: login_email(&login, &code, &link),
    })
}

/// Removes a login whose e-mail could not be sent: it must not be usable.
pub fn abandon(store: &Store, fetch_token: &str) -> Result<(), AuthError> {
    let (id, _) = split_token(fetch_token)?;
    store.remove(&login_path(id)?)?;
    Ok(())
}

fn login_email(login: &Login, code: &str, link: &str) -> Message {
    let code = secret::display_code(code);
    let phrase = &login.verification;
    let text = format!(
        "Someone, hopefully you, is logging in to the Gren package registry as {email}.\n\n\
         Your confirmation code is: {code}\n\n\
         Or confirm in your browser: {link}\n\n\
         The terminal should show the verification phrase \"{phrase}\". If it does not, do not confirm.\n\n\
         This login expires in 15 minutes. If you did not just try to log in, ignore this e-mail: nothing happens without the code or the link.\n",
        email = login.email,
    );
    let html = format!(
        "<p>Someone, hopefully you, is logging in to the Gren package registry as <b>{email}</b>.</p>\
         <p>Your confirmation code is: <b style=\"font-size:1.4em;font-family:monospace\">{code}</b></p>\
         <p>Or <a href=\"{link}\">confirm in your browser</a>.</p>\
         <p>The terminal should show the verification phrase <b>{phrase}</b>. If it does not, do not confirm.</p>\
         <p>This login expires in 15 minutes. If you did not just try to log in, ignore this e-mail: nothing happens without the code or the link.</p>",
        email = escape_html(login.email.as_str()),
        link = escape_html(link),
        phrase = escape_html(phrase),
    );
    Message {
        to: login.email.to_string(),
        subject: "Gren: Confirm your email address".into(),
        text,
        html,
    }
}

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Why a magic link cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkProblem {
    Unknown,
    Expired,
    Used,
}

/// Loads the login a magic link names, if the link is still good.
pub fn for_link(store: &Store, link_token: &str) -> Result<Login, LinkProblem> {
    let (id, link_secret) = split_token(link_token).map_err(|_| LinkProblem::Unknown)?;
    let path = login_path(id).map_err(|_| LinkProblem::Unknown)?;
    let login: Login = store.read_json(&path).ok().flatten().ok_or(LinkProblem::Unknown)?;
    if !same_secret(&login.link_hash, &sha256_hex(link_secret.as_bytes())) {
        return Err(LinkProblem::Unknown);
    }
    if login.used.is_some() || login.wrong_codes >= MAX_WRONG_CODES {
        return Err(LinkProblem::Used);
    }
    if login.expires.has_passed() {
        return Err(LinkProblem::Expired);
    }
    Ok(login)
}

/// Confirms the login a magic link names (the page's button, never the GET).
pub fn confirm(store: &Store, link_token: &str, confirmations: &Confirmations) -> Result<Login, LinkProblem> {
    let (id, _) = split_token(link_token).map_err(|_| LinkProblem::Unknown)?;
    let path = login_path(id).map_err(|_| LinkProblem::Unknown)?;
    let _guard = store.lock(&path);
    let mut login = for_link(store, link_token)?;
    if login.confirmed.is_none() {
        login.confirmed = Some(Timestamp::now());
        store.write_json(&path, &login).map_err(|_| LinkProblem::Unknown)?;
        confirmations.announce();
    }
    Ok(login)
}

/// The outcome of `POST /session/fetch`.
#[derive(Debug)]
pub enum FetchOutcome {
    Token(String),
    Pending,
}

pub struct FetchRequest<'a> {
    pub fetch_token: &'a str,
    pub code: Option<&'a str>,
    pub session_lifetime: Duration,
    pub user_agent: Option<&'a str>,
    pub ip: String,
}

/// Exchanges a fetch token (with the code, or after the link was confirmed)
/// for a session token, exactly once.
pub fn fetch(store: &Store, request: &FetchRequest) -> Result<FetchOutcome, AuthError> {
    let (id, fetch_secret) = split_token(request.fetch_token)?;
    let path = login_path(id)?;
    let _guard = store.lock(&path);
    let mut login: Login = store.read_json(&path)?.ok_or(AuthError::UnknownLogin)?;
    if !same_secret(&login.fetch_hash, &sha256_hex(fetch_secret.as_bytes())) {
        return Err(AuthError::UnknownLogin);
    }
    if login.used.is_some() {
        return Err(AuthError::LoginUsed);
    }
    if login.wrong_codes >= MAX_WRONG_CODES {
        return Err(AuthError::LoginLocked);
    }
    if login.expires.has_passed() {
        return Err(AuthError::LoginExpired);
    }
    let code = request.code.map(secret::normalize_code).filter(|code| !code.is_empty());
    match code {
        Some(code) if !same_secret(&login.code_hash, &code_hash(id, &code)) => {
            login.wrong_codes += 1;
            store.write_json(&path, &login)?;
            Err(AuthError::WrongCode {
                attempts_left: MAX_WRONG_CODES.saturating_sub(login.wrong_codes),
            })
        }
        None if login.confirmed.is_none() => Ok(FetchOutcome::Pending),
        _ => {
            // The session first, under the login's lock: a session that
            // cannot be written leaves the login usable. If marking the
            // login used fails, the session is revoked (its record removed
            // first), so the login never gives out two working tokens. A
            // failed fsync after either rename ends the process, so an error
            // here means the write did not happen.
            let token = session::create(
                store,
                NewSession {
                    email: &login.email,
                    lifetime: request.session_lifetime,
                    user_agent: request.user_agent,
                    ip: Some(request.ip.clone()),
                },
            )?;
            login.used = Some(Timestamp::now());
            if let Err(err) = store.write_json(&path, &login) {
                let token_hash = sha256_hex(token.as_bytes());
                if let Err(revoke) = session::revoke(store, &login.email, &token_hash) {
                    log::error!("cannot revoke the session of an unfinished login: {}", Chain(&revoke));
                }
                return Err(err.into());
            }
            Ok(FetchOutcome::Token(token))
        }
    }
}

/// Removes logins long past their expiry. Returns how many were removed.
pub fn purge_expired(store: &Store) -> Result<usize, StoreError> {
    let mut removed = 0;
    for id in store.list_json(&layout::logins_dir())? {
        let Ok(path) = login_path(&id) else { continue };
        let _guard = store.lock(&path);
        let stale = match store.read_json::<Login>(&path) {
            Ok(Some(login)) => login.expires.plus(PURGE_AFTER_EXPIRY).has_passed(),
            Ok(None) => false,
            // An unreadable pending login is worthless: drop it.
            Err(_) => true,
        };
        if stale && store.remove(&path)? {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Lets long-polling fetches sleep until some login is confirmed, instead of
/// spinning, and caps how many may sleep at once so waiting clients cannot
/// hold every connection.
pub struct Confirmations {
    generation: Mutex<u64>,
    changed: Condvar,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Confirmations {
    pub fn new(max_waiting: usize) -> Confirmations {
        Confirmations {
            generation: Mutex::new(0),
            changed: Condvar::new(),
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    /// Wakes every waiter (a login was confirmed, or the server is stopping).
    pub fn announce(&self) {
        *lock_ignoring_poison(&self.generation) += 1;
        self.changed.notify_all();
    }

    /// Polls `check` until it yields a value or `wait` has passed, sleeping
    /// between announcements. Waits not at all when too many already wait.
    pub fn wait_for<T, E>(
        &self,
        wait: Duration,
        mut check: impl FnMut() -> Result<Option<T>, E>,
    ) -> Result<Option<T>, E> {
        let deadline = Instant::now() + wait;
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return check();
        }
        let result = (|| loop {
            let seen = *lock_ignoring_poison(&self.generation);
            if let Some(value) = check()? {
                return Ok(Some(value));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let generation = lock_ignoring_poison(&self.generation);
            if *generation == seen {
                let _ = self.changed.wait_timeout(generation, deadline - now);
            }
        })();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Store, Email) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store, Email::parse("me@example.com").unwrap())
    }

    fn requester() -> Requester<'static> {
        Requester {
            ip: "127.0.0.1".into(),
            user_agent: Some("test"),
        }
    }

    fn request<'a>(token: &'a str, code: Option<&'a str>) -> FetchRequest<'a> {
        FetchRequest {
            fetch_token: token,
            code,
            session_lifetime: Duration::from_secs(60),
            user_agent: None,
            ip: "127.0.0.1".into(),
        }
    }

    fn code_of(message: &Message) -> String {
        let line = message
            .text
            .lines()
            .find(|line| line.starts_with("Your confirmation code is: "))
            .unwrap();
        line.trim_start_matches("Your confirmation code is: ").to_string()
    }

    fn link_token_of(message: &Message) -> String {
        let start = message.text.find("token=").unwrap() + "token=".len();
        message.text[start..].split_whitespace().next().unwrap().to_string()
    }

    #[test]
    fn code_exchange_works_once() {
        let (_dir, store, email) = setup();
        let started = start(&store, &email, requester(), "http://x").unwrap();
        let code = code_of(&started.message);
        let on_disk =
            std::fs::read_to_string(store.full_path(&login_path(&started.fetch_session_token[..32]).unwrap())).unwrap();
        assert!(!on_disk.contains(&code.replace('-', "")), "the code is stored hashed");
        assert!(
            !on_disk.contains(&started.fetch_session_token[33..]),
            "the fetch secret is stored hashed"
        );
        let typed = code.to_lowercase().replace('-', " ");
        match fetch(&store, &request(&started.fetch_session_token, Some(&typed))).unwrap() {
            FetchOutcome::Token(token) => assert!(token.starts_with("gren_")),
            other => panic!("{other:?}"),
        }
        let again = fetch(&store, &request(&started.fetch_session_token, Some(&code))).unwrap_err();
        assert!(matches!(again, AuthError::LoginUsed), "{again:?}");
    }

    #[test]
    fn five_wrong_codes_lock_the_login() {
        let (_dir, store, email) = setup();
        let started = start(&store, &email, requester(), "http://x").unwrap();
        let right = code_of(&started.message);
        let wrong = if right.starts_with('A') {
            "BBBB-BBBB"
        } else {
            "AAAA-AAAA"
        };
        for _ in 0..MAX_WRONG_CODES {
            assert!(matches!(
                fetch(&store, &request(&started.fetch_session_token, Some(wrong))),
                Err(AuthError::WrongCode { .. })
            ));
        }
        assert!(matches!(
            fetch(&store, &request(&started.fetch_session_token, Some(&right))),
            Err(AuthError::LoginLocked)
        ));
    }

    #[test]
    fn the_link_confirms_and_a_fetch_without_code_then_succeeds() {
        let (_dir, store, email) = setup();
        let started = start(&store, &email, requester(), "http://x").unwrap();
        assert!(matches!(
            fetch(&store, &request(&started.fetch_session_token, None)).unwrap(),
            FetchOutcome::Pending
        ));
        let link = link_token_of(&started.message);
        let confirmations = Confirmations::new(4);
        // Neither the fetch token nor a forged secret confirms.
        assert_eq!(
            confirm(&store, &started.fetch_session_token, &confirmations).unwrap_err(),
            LinkProblem::Unknown
        );
        confirm(&store, &link, &confirmations).unwrap();
        assert!(matches!(
            fetch(&store, &request(&started.fetch_session_token, None)).unwrap(),
            FetchOutcome::Token(_)
        ));
        assert_eq!(for_link(&store, &link).unwrap_err(), LinkProblem::Used);
    }

    #[test]
    fn malformed_tokens_are_unknown() {
        let (_dir, store, _) = setup();
        for token in [
            "",
            "x",
            "../../etc.passwd",
            &format!("{}.{}", "a".repeat(32), "b".repeat(48)),
        ] {
            assert!(
                matches!(fetch(&store, &request(token, None)), Err(AuthError::UnknownLogin)),
                "{token}"
            );
        }
    }

    #[test]
    fn logins_long_expired_are_purged() {
        let (_dir, store, email) = setup();
        let fresh = start(&store, &email, requester(), "http://x").unwrap();
        let stale = start(&store, &email, requester(), "http://x").unwrap();
        let stale_path = login_path(&stale.fetch_session_token[..32]).unwrap();
        let mut login: Login = store.read_json(&stale_path).unwrap().unwrap();
        // Expired long before PURGE_AFTER_EXPIRY ago.
        login.expires = serde_json::from_value(serde_json::json!("2020-01-01T00:00:00Z")).unwrap();
        store.write_json(&stale_path, &login).unwrap();
        assert_eq!(purge_expired(&store).unwrap(), 1);
        assert!(!store.full_path(&stale_path).exists());
        assert!(
            store
                .full_path(&login_path(&fresh.fetch_session_token[..32]).unwrap())
                .exists()
        );
    }

    #[test]
    fn waiting_ends_at_an_announcement() {
        let confirmations = std::sync::Arc::new(Confirmations::new(4));
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let waiter = {
            let (confirmations, flag) = (confirmations.clone(), flag.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                let got = confirmations
                    .wait_for(Duration::from_secs(10), || {
                        Ok::<_, AuthError>(flag.load(Ordering::SeqCst).then_some(()))
                    })
                    .unwrap();
                (got, started.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        flag.store(true, Ordering::SeqCst);
        confirmations.announce();
        let (got, took) = waiter.join().unwrap();
        assert_eq!(got, Some(()));
        assert!(took < Duration::from_secs(5));
    }
}
