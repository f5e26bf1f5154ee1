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
//!
//! A purge can cross a request: one that reached the registry before the
//! change, and whose answer reaches the cache after the purge, is kept
//! stale (a ban drops only what the cache held when it came). So each
//! purge is sent again, with the same keys, `GREN_REGISTRY_CACHE_PURGE_REPEAT`
//! seconds later (5; 0: never), by a second thread per cache
//! ([`repeat_until_stopped`]): repeats due together go as one request,
//! and a failed one is retried with the outbox's backoff. Repeats are held
//! in memory only: one still due when the registry stops is not sent (its
//! window was the moment of the change).

use crate::app::App;
use crate::http::cache::purge_keys;
use crate::notify::{FIRST_BACKOFF, MAX_BACKOFF, Outbox, agent};
use gren_registry_core::error::Chain;
use gren_registry_core::outbox::{Cursor, purge_cursor_path};
use gren_registry_core::package::events::Event;
use gren_registry_core::store::StoreError;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Starts one purging thread per configured cache, and one repeating its
/// purges; they end when the app stops. A cache seen for the first time
/// gets its cursor (at the log's head) here, before the first request can
/// add an event. An error, naming the cursor's file, when a cursor cannot
/// be read or that first one cannot be written: the registry must not
/// start then (see the module's header).
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
    let delay = Duration::from_secs(app.config.cache_purge_repeat_secs);
    let mut threads = Vec::new();
    for url in &app.config.cache_purge_urls {
        let repeats = if delay.is_zero() {
            None
        } else {
            let (sender, receiver) = mpsc::channel();
            let (app, url) = (app.clone(), url.clone());
            let repeater = move || repeat_until_stopped(&app, &url, &receiver);
            threads.push(
                std::thread::Builder::new()
                    .name("purge-repeat".into())
                    .spawn(repeater)?,
            );
            Some(Repeats { delay, sender })
        };
        let (app, url) = (app.clone(), url.clone());
        let purger = move || purge_until_stopped(&app, &url, repeats);
        threads.push(std::thread::Builder::new().name("purge".into()).spawn(purger)?);
    }
    Ok(threads)
}

fn outbox_of(url: &str) -> Outbox {
    Outbox {
        name: "purge",
        cursor: purge_cursor_path(url),
        url: Some(url.to_string()),
    }
}

/// One cache's purge endpoint, and how to reach it.
struct Cache<'a> {
    url: &'a str,
    header: &'a str,
    secret: &'a str,
    agent: ureq::Agent,
}

impl<'a> Cache<'a> {
    fn of(app: &'a App, url: &'a str) -> Cache<'a> {
        Cache {
            url,
            header: app.config.cache_purge_header.as_str(),
            secret: app.config.cache_purge_secret.as_deref().unwrap_or_default(),
            agent: agent(),
        }
    }

    /// Tells the cache to drop what is tagged with one of `keys`
    /// (space-separated); why not, when it did not answer 2xx.
    fn purge(&self, keys: &str) -> Result<(), String> {
        let sent = self
            .agent
            .post(self.url)
            .header("Surrogate-Key", keys)
            .header(self.header, self.secret)
            .send_empty()
            .map_err(|err| err.to_string());
        match sent.map(|answer| answer.status().as_u16()) {
            Ok(200..=299) => Ok(()),
            Ok(status) => Err(format!(
                "the cache at {} answered HTTP {status} to the purge of {keys}",
                self.url
            )),
            Err(reason) => Err(format!(
                "the purge of {keys} did not reach the cache at {} ({reason})",
                self.url
            )),
        }
    }
}

/// Where a purger hands its purges to be sent again, `delay` later.
struct Repeats {
    delay: Duration,
    sender: mpsc::Sender<Repeat>,
}

/// Keys (space-separated) to purge again at `due`.
struct Repeat {
    due: Instant,
    keys: String,
}

fn purge_until_stopped(app: &App, url: &str, repeats: Option<Repeats>) {
    let outbox = outbox_of(url);
    let cache = Cache::of(app, url);
    outbox.follow_until_stopped(app, |batch| {
        let (keys, last) = keys_of(batch);
        cache.purge(&keys)?;
        if let Some(repeats) = &repeats {
            let due = Instant::now() + repeats.delay;
            // Only a stopping app has no repeater left to take it.
            let _ = repeats.sender.send(Repeat { due, keys });
        }
        Ok(last)
    });
}

/// How often a repeater with nothing due looks whether the app stops.
const STOP_CHECK: Duration = Duration::from_millis(250);

/// Sends each purge of `repeats` again when it is due, until the app
/// stops: the keys of all the purges due by then in as few requests as
/// [`MAX_KEYS_HEADER`] allows; what a cache refused, again after a backoff.
fn repeat_until_stopped(app: &App, url: &str, repeats: &mpsc::Receiver<Repeat>) {
    let cache = Cache::of(app, url);
    let mut pending: BTreeMap<Instant, BTreeSet<String>> = BTreeMap::new();
    let mut backoff = FIRST_BACKOFF;
    while !app.is_stopping() {
        let first_due = pending.keys().next().copied();
        let wait = first_due.map_or(STOP_CHECK, |due| due.saturating_duration_since(Instant::now()));
        match repeats.recv_timeout(wait.min(STOP_CHECK)) {
            Ok(Repeat { due, keys }) => {
                pending
                    .entry(due)
                    .or_default()
                    .extend(keys.split(' ').map(str::to_string));
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(wait.min(STOP_CHECK)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let due = take_due(&mut pending, Instant::now());
        let mut unsent = due.into_iter().peekable();
        while unsent.peek().is_some() {
            let keys = header_of(&mut unsent);
            if let Err(reason) = cache.purge(&keys) {
                log::warn!("purge: {reason} (a repeat); retrying in {}s", backoff.as_secs());
                let retry = pending.entry(Instant::now() + backoff).or_default();
                retry.extend(keys.split(' ').map(str::to_string).chain(unsent));
                backoff = (backoff * 2).min(MAX_BACKOFF);
                break;
            }
            backoff = FIRST_BACKOFF;
        }
    }
}

/// The keys of every repeat due by `now`, each once, taken out of `pending`.
fn take_due(pending: &mut BTreeMap<Instant, BTreeSet<String>>, now: Instant) -> BTreeSet<String> {
    let later = pending.split_off(&(now + Duration::from_nanos(1)));
    std::mem::replace(pending, later).into_values().flatten().collect()
}

/// The next keys of `keys`, space-separated, as many as fit in
/// [`MAX_KEYS_HEADER`] (and at least one).
fn header_of(keys: &mut std::iter::Peekable<impl Iterator<Item = String>>) -> String {
    let mut header = keys.next().unwrap_or_default();
    while let Some(key) = keys.next_if(|key| header.len() + 1 + key.len() <= MAX_KEYS_HEADER) {
        header.push(' ');
        header.push_str(&key);
    }
    header
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
    fn repeats_due_by_now_are_taken_together_and_later_ones_wait() {
        let now = Instant::now();
        let keys = |keys: &[&str]| keys.iter().map(|key| key.to_string()).collect::<BTreeSet<_>>();
        let mut pending = BTreeMap::from([
            (now - Duration::from_secs(1), keys(&["listings", "p:a/x"])),
            (now, keys(&["listings", "p:b/y"])),
            (now + Duration::from_secs(1), keys(&["p:c/z"])),
        ]);
        assert_eq!(take_due(&mut pending, now), keys(&["listings", "p:a/x", "p:b/y"]));
        assert_eq!(pending.into_values().collect::<Vec<_>>(), [keys(&["p:c/z"])]);
    }

    #[test]
    fn repeated_keys_go_in_headers_that_fit() {
        let keys: Vec<String> = (0..200)
            .map(|n| format!("p:author-{n:03}/{}", "p".repeat(90)))
            .collect();
        let mut unsent = keys.clone().into_iter().peekable();
        let mut headers = Vec::new();
        while unsent.peek().is_some() {
            headers.push(header_of(&mut unsent));
        }
        assert!(headers.len() > 1, "{} headers", headers.len());
        assert!(headers.iter().all(|header| header.len() <= MAX_KEYS_HEADER));
        let sent: Vec<&str> = headers.iter().flat_map(|header| header.split(' ')).collect();
        assert_eq!(sent, keys, "every key, once, in order");
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
