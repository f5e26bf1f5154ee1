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
//! The cursor's record and reading it are in `gren_registry_core::outbox`,
//! which `admin` reads too.

use crate::app::App;
use gren_registry_core::auth::secret::hex;
use gren_registry_core::error::Chain;
use gren_registry_core::outbox::{Cursor, read_cursor};
use gren_registry_core::package::events::Event;
use gren_registry_core::store::{StoreError, layout};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
pub const SIGNATURE_HEADER: &str = "X-Gren-Registry-Signature";

/// The events not yet delivered, oldest first.
pub fn pending(app: &App, limit: u64) -> Result<Vec<Event>, StoreError> {
    let delivered = read_cursor(&app.store)?.delivered;
    Ok(app.packages.events.since(delivered, limit))
}

/// Delivers events to `site_url` until the app stops.
pub fn deliver_until_stopped(app: &App, site_url: &str) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(Some(Duration::from_secs(15)))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let endpoint = format!("{}/import/init", site_url.trim_end_matches('/'));
    let secret = app
        .config
        .package_site_secret
        .as_deref()
        .filter(|secret| !secret.is_empty());
    let mut backoff = FIRST_BACKOFF;
    while !app.is_stopping() {
        let batch = match pending(app, 100) {
            Ok(batch) => batch,
            Err(err) => {
                log::error!("notify: cannot read the outbox: {}", Chain(&err));
                pause(app, backoff);
                continue;
            }
        };
        let Some(first) = batch.first() else {
            let delivered = read_cursor(&app.store).map(|cursor| cursor.delivered).unwrap_or(0);
            // Short waits: a wake-up at shutdown may come before the wait starts.
            app.packages.events.wait_beyond(delivered, Duration::from_secs(1));
            continue;
        };
        let last = batch
            .iter()
            .take_while(|event| event.package == first.package)
            .last()
            .unwrap_or(first);
        match deliver(&agent, &endpoint, secret, first) {
            Ok(()) => {
                backoff = FIRST_BACKOFF;
                if let Err(err) = app
                    .store
                    .write_json(&layout::outbox_cursor(), &Cursor { delivered: last.seq })
                {
                    log::error!("notify: cannot move the outbox cursor: {err}");
                }
            }
            Err(reason) => {
                log::warn!(
                    "notify: telling the packages site about {} failed ({reason}); retrying in {}s",
                    first.package,
                    backoff.as_secs()
                );
                pause(app, backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn deliver(agent: &ureq::Agent, endpoint: &str, secret: Option<&str>, event: &Event) -> Result<(), String> {
    let body =
        serde_json::to_vec(&serde_json::json!({ "packageName": event.package })).map_err(|err| err.to_string())?;
    let mut request = agent
        .post(endpoint)
        .header("Content-Type", "application/json")
        .header("X-Gren-Registry-Event", event.seq.to_string());
    if let Some(secret) = secret {
        request = request.header(SIGNATURE_HEADER, format!("sha256={}", sign(secret, &body)));
    }
    let response = request.send(&body[..]).map_err(|err| err.to_string())?;
    match response.status().as_u16() {
        200..=399 | 409 => Ok(()),
        status => Err(format!("HTTP {status}")),
    }
}

/// HMAC-SHA256 of `body` under `secret`, hex-encoded.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

/// Sleeps for `duration`, waking early when the app stops.
fn pause(app: &App, duration: Duration) {
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
}
