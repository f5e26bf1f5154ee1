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
//! batches of up to 100 (one request, their packages' keys), cut shorter
//! where their keys would pass [`MAX_KEYS_HEADER`] bytes. A cache seen
//! for the first time starts at the log's head: an empty cache holds
//! nothing stale. A cursor that cannot be read, or a new one that cannot
//! be written, stops start-up naming the file: without it the cache would
//! be purged of the whole log again (or lose its place).

use crate::app::App;
use crate::http::cache::purge_keys;
use crate::notify::{Outbox, agent};
use gren_registry_core::error::Chain;
use gren_registry_core::outbox::{Cursor, purge_cursor_path};
use gren_registry_core::package::events::Event;
use gren_registry_core::store::StoreError;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Starts one purging thread per configured cache; they end when the app
/// stops. A cache seen for the first time gets its cursor (at the log's
/// head) here, before the first request can add an event. An error, naming
/// the cursor's file, when a cursor cannot be read or that first one cannot
/// be written: the registry must not start then (see the module's header).
pub fn start(app: &Arc<App>) -> Result<Vec<JoinHandle<()>>, Box<dyn std::error::Error>> {
    for url in &app.config.cache_purge_urls {
        let outbox = outbox_of(url);
        let refused = |err: StoreError| {
            format!(
                "cannot purge the cache at {url}: {}; its cursor says which purges it still needs: restore the \
                 file from a backup, or remove it to start the cache at the current event (then ban everything \
                 it holds once)",
                Chain(&err)
            )
        };
        if app
            .store
            .read_json::<Cursor>(&outbox.cursor)
            .map_err(refused)?
            .is_none()
        {
            outbox.move_cursor(app, app.packages.events.head()).map_err(refused)?;
        }
    }
    let threads = app.config.cache_purge_urls.iter().map(|url| {
        let (app, url) = (app.clone(), url.clone());
        std::thread::Builder::new()
            .name("purge".into())
            .spawn(move || purge_until_stopped(&app, &url))
    });
    Ok(threads.collect::<std::io::Result<_>>()?)
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
        let (keys, last) = keys_of(batch);
        let sent = agent
            .post(url)
            .header("Surrogate-Key", &keys)
            .header(header, secret)
            .send_empty()
            .map_err(|err| err.to_string());
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

/// The longest `Surrogate-Key` header a purge sends: Varnish refuses a
/// request header over 8 KB (`http_req_hdr_len`) by default, and a refused
/// purge would be retried, refused, for ever.
const MAX_KEYS_HEADER: usize = 4096;

/// The keys the first events of `batch` make stale, each once,
/// space-separated, and the sequence number of the last of those events:
/// as many events as keep the keys within [`MAX_KEYS_HEADER`], and at least
/// the first (a package's two keys are far shorter).
fn keys_of(batch: &[Event]) -> (String, u64) {
    let mut keys = BTreeSet::new();
    let mut length = 0;
    let mut last = None;
    for event in batch {
        let new: Vec<String> = purge_keys(&event.package)
            .into_iter()
            .filter(|key| !keys.contains(key))
            .collect();
        // Each key and the space before it (the first has none: hence + 1).
        let added: usize = new.iter().map(|key| key.len() + 1).sum();
        if last.is_some() && length + added > MAX_KEYS_HEADER + 1 {
            break;
        }
        length += added;
        keys.extend(new);
        last = Some(event.seq);
    }
    let keys = keys.into_iter().collect::<Vec<_>>().join(" ");
    (keys, last.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gren_registry_core::package::PackageName;
    use gren_registry_core::package::events::EventKind;
    use gren_registry_core::time::Timestamp;

    fn event(seq: u64, package: &str) -> Event {
        Event {
            seq,
            at: Timestamp::now(),
            kind: EventKind::Private,
            package: PackageName::parse(package).unwrap(),
            version: None,
            sha256: String::new(),
            token: None,
        }
    }

    #[test]
    fn a_batch_purges_each_key_once() {
        let batch = [event(7, "a/x"), event(8, "b/y"), event(9, "a/x")];
        assert_eq!(keys_of(&batch), ("listings p:a/x p:b/y".to_string(), 9));
    }

    #[test]
    fn a_batch_whose_keys_would_not_fit_one_header_is_cut_short() {
        let long = "p".repeat(90);
        let batch: Vec<Event> = (1..=100)
            .map(|seq| event(seq, &format!("author-{seq:03}/{long}")))
            .collect();
        let (keys, last) = keys_of(&batch);
        assert!(keys.len() <= MAX_KEYS_HEADER, "{} bytes", keys.len());
        assert!((30..100).contains(&last), "cut after event {last}");
        // The events purged are exactly those up to `last`.
        assert_eq!(keys.split(' ').count(), last as usize + 1);
        assert!(keys.contains(&format!("p:author-{last:03}/")));
        assert!(!keys.contains(&format!("p:author-{:03}/", last + 1)));
    }
}
