//! Telling the packages site about publishes, revocations and privacy
//! changes: every event of the public log, so that the site re-imports the
//! package and finds it updated, revoked, gone private (404) or back.
//!
//! The outbox is the public event log itself plus a cursor,
//! `outbox/cursor.json`, naming the last event delivered: nothing extra is
//! written on the publish path, nothing is lost across restarts, and the
//! publish response never waits for the site. Each event becomes
//! `POST <site>/import/init` `{"packageName": "author/project"}` (consecutive
//! events of one package become one call), retried with exponential backoff
//! until the site answers 2xx, 3xx or 409 (the import job already exists).
//!
//! With a secret, each call is signed as Stripe signs its webhooks:
//! `Gren-Registry-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
//! "<t>.<event>.<body>">`, where `<event>` is the `X-Gren-Registry-Event`
//! header. Signing the time lets the site refuse a captured call replayed
//! later (docs/API.md: older than five minutes), and signing the event
//! number stops it being changed. The body-only `X-Gren-Registry-Signature:
//! sha256=…` is still sent, deprecated, for one release, so that a site can
//! move to the new header at its own pace.
//!
//! The cursor's record and reading it are in `gren_registry_core::outbox`,
//! which `admin` reads too. The delivery loop ([`Outbox`]) serves the
//! caches' purges too (`crate::purge`).

use crate::app::App;
use gren_registry_core::auth::secret::hex;
use gren_registry_core::error::Chain;
use gren_registry_core::outbox::{Cursor, read_cursor, read_cursor_at};
use gren_registry_core::package::events::Event;
use gren_registry_core::store::{RecordPath, StoreError, layout};
use gren_registry_core::time::Timestamp;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

pub(crate) const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The event's number (`seq`), which the signature covers.
pub const EVENT_HEADER: &str = "X-Gren-Registry-Event";
/// `t=<unix>,v1=<hex>`: see [`signature`].
pub const SIGNATURE_HEADER: &str = "Gren-Registry-Signature";
/// Deprecated: the body's HMAC alone (replayable, the event unsigned); sent
/// beside [`SIGNATURE_HEADER`] for one release.
pub const BODY_SIGNATURE_HEADER: &str = "X-Gren-Registry-Signature";

/// The events not yet delivered, oldest first.
pub fn pending(app: &App, limit: u64) -> Result<Vec<Event>, StoreError> {
    let delivered = read_cursor(&app.store)?.delivered;
    Ok(app.packages.events.since(delivered, limit))
}

/// An HTTP client for outbox deliveries: bounded waits, no redirects, every
/// status an answer.
pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(Some(Duration::from_secs(15)))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// Records in `outbox/cursor.json` (`url`) which packages site this server
/// tells, absent for none, so that `admin outbox`, run apart from the
/// server and its environment, can say so. Written only when it changes,
/// before the notifier starts (which keeps the URL as it moves the cursor).
pub fn record_site(app: &App, site_url: Option<&str>) {
    let path = layout::outbox_cursor();
    let cursor = match read_cursor_at(&app.store, &path) {
        Ok(cursor) => cursor,
        Err(err) => {
            log::error!("notify: cannot read the outbox: {}", Chain(&err));
            return;
        }
    };
    let url = site_url.map(|url| url.trim_end_matches('/').to_string());
    if cursor.url == url {
        return;
    }
    let recorded = Cursor { url, ..cursor };
    if let Err(err) = app.store.write_json(&path, &recorded) {
        log::error!("notify: cannot record the packages site in the outbox: {err}");
    }
}

/// Delivers events to `site_url` until the app stops.
pub fn deliver_until_stopped(app: &App, site_url: &str) {
    let agent = agent();
    let endpoint = format!("{}/import/init", site_url.trim_end_matches('/'));
    let secret = app
        .config
        .package_site_secret
        .as_deref()
        .filter(|secret| !secret.is_empty());
    let outbox = Outbox {
        name: "notify",
        cursor: layout::outbox_cursor(),
        url: Some(site_url.trim_end_matches('/').to_string()),
    };
    outbox.follow_until_stopped(app, |batch| {
        let first = &batch[0];
        let last = batch
            .iter()
            .take_while(|event| event.package == first.package)
            .last()
            .unwrap_or(first);
        deliver(&agent, &endpoint, secret, first)
            .map(|()| last.seq)
            .map_err(|reason| format!("telling the packages site about {} failed ({reason})", first.package))
    });
}

/// One destination of the event log: its cursor, and the URL the cursor
/// records (a cache's, whose file name only hashes it).
pub(crate) struct Outbox {
    /// For the log: `notify`, `purge`.
    pub name: &'static str,
    pub cursor: RecordPath,
    pub url: Option<String>,
}

impl Outbox {
    /// Hands the pending events, oldest first, to `deliver` until the app
    /// stops. `deliver` delivers some of them, from the first, and answers
    /// the number of the last one it delivered, which the cursor then
    /// names; or why it failed, and the same events come again after a
    /// backoff, so the destination gets every event, in order.
    pub(crate) fn follow_until_stopped(&self, app: &App, mut deliver: impl FnMut(&[Event]) -> Result<u64, String>) {
        let mut backoff = FIRST_BACKOFF;
        while !app.is_stopping() {
            let delivered = match read_cursor_at(&app.store, &self.cursor) {
                Ok(cursor) => cursor.delivered,
                Err(err) => {
                    log::error!("{}: cannot read the outbox: {}", self.name, Chain(&err));
                    pause(app, backoff);
                    continue;
                }
            };
            let batch = app.packages.events.since(delivered, 100);
            if batch.is_empty() {
                // Short waits: a wake-up at shutdown may come before the wait starts.
                app.packages.events.wait_beyond(delivered, Duration::from_secs(1));
                continue;
            }
            let failure = match deliver(&batch) {
                Ok(last) => match self.move_cursor(app, last) {
                    Ok(()) => None,
                    // The destination has them, the cursor does not say so:
                    // they go again, after a pause rather than in a loop.
                    Err(err) => Some(format!("cannot move the outbox cursor: {}", Chain(&err))),
                },
                Err(reason) => Some(reason),
            };
            match failure {
                None => backoff = FIRST_BACKOFF,
                Some(reason) => {
                    log::warn!("{}: {reason}; retrying in {}s", self.name, backoff.as_secs());
                    pause(app, backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    pub(crate) fn move_cursor(&self, app: &App, delivered: u64) -> Result<(), StoreError> {
        let cursor = Cursor {
            delivered,
            url: self.url.clone(),
        };
        app.store.write_json(&self.cursor, &cursor)
    }
}

fn deliver(agent: &ureq::Agent, endpoint: &str, secret: Option<&str>, event: &Event) -> Result<(), String> {
    let body =
        serde_json::to_vec(&serde_json::json!({ "packageName": event.package })).map_err(|err| err.to_string())?;
    let seq = event.seq.to_string();
    let mut request = agent
        .post(endpoint)
        .header("Content-Type", "application/json")
        .header(EVENT_HEADER, &seq);
    if let Some(secret) = secret {
        // Each attempt is signed anew: a retry carries the time it is sent.
        let now = Timestamp::now().unix_seconds();
        request = request
            .header(SIGNATURE_HEADER, signature(secret, now, &seq, &body))
            .header(BODY_SIGNATURE_HEADER, format!("sha256={}", sign(secret, &body)));
    }
    let response = request.send(&body[..]).map_err(|err| err.to_string())?;
    match response.status().as_u16() {
        200..=399 | 409 => Ok(()),
        status => Err(format!("HTTP {status}")),
    }
}

/// The [`SIGNATURE_HEADER`] of a call sent at `time` (Unix seconds) for
/// the event `seq` with `body`: `t=<time>,v1=<hex HMAC-SHA256 of
/// "<time>.<seq>.<body>">`.
pub fn signature(secret: &str, time: u64, seq: &str, body: &[u8]) -> String {
    let mut signed = format!("{time}.{seq}.").into_bytes();
    signed.extend_from_slice(body);
    format!("t={time},v1={}", sign(secret, &signed))
}

/// HMAC-SHA256 of `body` under `secret`, hex-encoded.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

/// Sleeps for `duration`, waking early when the app stops.
pub(crate) fn pause(app: &App, duration: Duration) {
    let step = Duration::from_millis(100);
    let mut slept = Duration::ZERO;
    while slept < duration && !app.is_stopping() {
        std::thread::sleep(step);
        slept += step;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signatures_match_rfc_4231_test_case_2() {
        assert_eq!(
            super::sign("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_signature_covers_the_time_the_event_and_the_body() {
        let body = br#"{"packageName":"a/b"}"#;
        let expected = super::sign("s", br#"1700000000.7.{"packageName":"a/b"}"#);
        assert_eq!(
            super::signature("s", 1_700_000_000, "7", body),
            format!("t=1700000000,v1={expected}")
        );
        // The example of docs/API.md ("Verifying a call").
        assert_eq!(
            super::signature("s3cret", 1_767_225_600, "1", br#"{"packageName":"gren-lang/url"}"#),
            "t=1767225600,v1=f4fabb38b32e83e94332577bd8995e6432fbfa17f1743116b774fee4fd69859c"
        );
        let other_event = super::signature("s", 1_700_000_000, "8", body);
        let other_time = super::signature("s", 1_700_000_001, "7", body);
        for other in [other_event, other_time] {
            assert!(!other.ends_with(&expected), "{other}");
        }
    }
}
