//! Telling shared caches (Varnish, a CDN) to drop what a change made stale:
//! after every publish, revocation and privacy change, each cache of
//! `GREN_REGISTRY_CACHE_PURGE_URLS` gets
//!
//! ```text
//! POST <url>
//! Surrogate-Key: p:<author>/<project> listings
//! X-Purge-Secret: <GREN_REGISTRY_CACHE_PURGE_SECRET>   (the header is GREN_REGISTRY_CACHE_PURGE_HEADER)
//! ```
//!
//! and drops every cached answer tagged with one of the keys (the tags are
//! set in [`crate::http::cache`]; docs/deploy/varnish.vcl bans by them, and
//! Fastly's purge API takes this very request with `Fastly-Key`).
//!
//! Like the packages-site notification ([`crate::notify`]), the outbox is
//! the public event log plus a cursor, one per cache:
//! `outbox/purge/<sha256 of URL>.json` (`{"delivered", "url"}`), moved only
//! once the cache answered 2xx. A cache that is down gets its purges when it
//! answers again, in order, and each cache has its own thread and backoff,
//! so one that is down holds up no other. Pending events are purged in
//! batches of up to 100 (one request, their packages' keys). A cache seen
//! for the first time starts at the log's head: an empty cache holds
//! nothing stale.

use crate::app::App;
use crate::http::cache::purge_keys;
use crate::notify::{Outbox, agent};
use gren_registry_core::error::Chain;
use gren_registry_core::outbox::purge_cursor_path;
use gren_registry_core::package::events::Event;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Starts one purging thread per configured cache; they end when the app
/// stops. A cache seen for the first time gets its cursor (at the log's
/// head) here, before the first request can add an event.
pub fn start(app: &Arc<App>) -> std::io::Result<Vec<JoinHandle<()>>> {
    for url in &app.config.cache_purge_urls {
        let outbox = outbox_of(url);
        match app.store.read_bytes(&outbox.cursor) {
            Ok(Some(_)) => {}
            Ok(None) => outbox.move_cursor(app, app.packages.events.head()),
            Err(err) => log::error!("purge: cannot read the cursor of {url}: {}", Chain(&err)),
        }
    }
    app.config
        .cache_purge_urls
        .iter()
        .map(|url| {
            let (app, url) = (app.clone(), url.clone());
            std::thread::Builder::new()
                .name("purge".into())
                .spawn(move || purge_until_stopped(&app, &url))
        })
        .collect()
}

fn outbox_of(url: &str) -> Outbox {
    Outbox {
        name: "purge",
        cursor: purge_cursor_path(url),
        url: Some(url.to_string()),
    }
}

fn purge_until_stopped(app: &App, url: &str) {
    let outbox = outbox_of(url);
    let agent = agent();
    let secret = app.config.cache_purge_secret.as_deref().unwrap_or_default();
    let header = app.config.cache_purge_header.as_str();
    outbox.follow_until_stopped(app, |batch| {
        let keys = keys_of(batch);
        let sent = agent
            .post(url)
            .header("Surrogate-Key", &keys)
            .header(header, secret)
            .send_empty()
            .map_err(|err| err.to_string());
        let last = batch.last().map_or(0, |event| event.seq);
        match sent.map(|answer| answer.status().as_u16()) {
            Ok(200..=299) => Ok(last),
            Ok(status) => Err(format!(
                "the cache at {url} answered HTTP {status} to the purge of {keys}"
            )),
            Err(reason) => Err(format!(
                "the purge of {keys} did not reach the cache at {url} ({reason})"
            )),
        }
    });
}

/// The keys a batch of events makes stale, each once, space-separated.
fn keys_of(batch: &[Event]) -> String {
    let keys: BTreeSet<String> = batch.iter().flat_map(|event| purge_keys(&event.package)).collect();
    keys.into_iter().collect::<Vec<_>>().join(" ")
}
