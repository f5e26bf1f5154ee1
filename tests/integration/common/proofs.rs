//! Shared by the durability proofs (crash, concurrency, backup).

use super::Server;
use super::bundles::sha256_hex;
use super::operator::admin;
use serde_json::Value;
use std::any::Any;
use std::collections::BTreeMap;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment of the proofs' servers: no rate limit or bound may refuse
/// their load (they publish far more than people do), and all their client
/// threads (more than 32 at larger scales) connect from 127.0.0.1.
pub const PROOF_ENV: [(&str, &str); 4] = [
    ("GREN_REGISTRY_PUBLISH_LIMIT_PER_HOUR", "1000000"),
    ("GREN_REGISTRY_MAX_CONNECTIONS_PER_CLIENT", "1024"),
    ("GREN_REGISTRY_MEMBER_CHANGE_LIMIT_PER_HOUR", "1000000"),
    ("GREN_REGISTRY_PENDING_INVITATIONS_PER_IDENTITY", "1000000"),
];

pub fn scale() -> usize {
    std::env::var("GREN_PROOF_SCALE")
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok())
        .unwrap_or(1)
        .max(1)
}

/// The seed of a proof's random choices: `GREN_PROOF_SEED` (to replay a run
/// whose seed it printed), or else the clock.
pub fn seed() -> u64 {
    std::env::var("GREN_PROOF_SEED")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64)
}

/// Joins every thread, then re-raises the first panic among them, if any
/// (after all have ended, so that none outlives the test).
pub fn try_join_all<T>(handles: Vec<JoinHandle<T>>) -> Result<Vec<T>, Box<dyn Any + Send>> {
    let mut results = Vec::new();
    let mut panic = None;
    for handle in handles {
        match handle.join() {
            Ok(value) => results.push(value),
            Err(err) => panic = panic.or(Some(err)),
        }
    }
    match panic {
        Some(panic) => Err(panic),
        None => Ok(results),
    }
}

/// [`try_join_all`], re-raising the first panic.
pub fn join_all<T>(handles: Vec<JoinHandle<T>>) -> Vec<T> {
    try_join_all(handles).unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

pub fn version(patch: u64) -> String {
    format!("1.0.{patch}")
}

pub fn patch_of(version: &str) -> u64 {
    let parts: Vec<&str> = version.split('.').collect();
    assert_eq!(parts.len(), 3, "version {version:?}");
    assert_eq!(
        (parts[0], parts[1]),
        ("1", "0"),
        "only 1.0.x versions are published: {version}"
    );
    parts[2].parse().expect("a patch number")
}

/// Every event, paging through `GET /events` as a mirror does (following
/// `next` until the last page, the one with the head); checks the numbering.
pub fn all_events(server: &Server) -> Vec<Value> {
    let mut events: Vec<Value> = Vec::new();
    loop {
        let since = events.len();
        let reply = server.get(&format!("/events?since={since}"), None);
        assert_eq!(reply.status, 200, "GET /events: {}", reply.text());
        let page = reply.json();
        for event in page["events"].as_array().expect("events").clone() {
            let expected = events.len() as u64 + 1;
            assert_eq!(
                event["seq"].as_u64(),
                Some(expected),
                "events are numbered without gaps: {event}"
            );
            events.push(event);
        }
        assert_eq!(
            page["next"].as_u64(),
            Some(events.len() as u64),
            "next follows the page: {page}"
        );
        if let Some(head) = page["head"].as_u64() {
            assert_eq!(events.len() as u64, head, "the event log ends before its head");
            return events;
        }
    }
}

/// A version of one of a proof's packages: (project, patch).
pub type Key = (String, u64);

/// Every package's versions as listed: project → patch → its entry.
pub type Listed = BTreeMap<String, BTreeMap<u64, Value>>;

/// The listed entry of a version, if it is listed.
pub fn listed_entry<'a>(listed: &'a Listed, (project, patch): &Key) -> Option<&'a Value> {
    listed.get(project).and_then(|versions| versions.get(patch))
}

/// `GET /packages/<identity>/<project>`: its versions by patch, which must be
/// listed in order and each once; `None` when the package does not exist.
pub fn listed_versions(server: &Server, identity: &str, project: &str, context: &str) -> Option<BTreeMap<u64, Value>> {
    let reply = server.get(&format!("/packages/{identity}/{project}"), None);
    if reply.status == 404 {
        return None;
    }
    assert_eq!(reply.status, 200, "{context}: GET {project}: {}", reply.text());
    let body = reply.json();
    let mut versions = BTreeMap::new();
    let mut previous = None;
    for entry in body["versions"].as_array().expect("versions") {
        let patch = patch_of(entry["version"].as_str().expect("version"));
        assert!(
            previous < Some(patch),
            "{context}: {project} lists versions out of order or twice: {body}"
        );
        previous = Some(patch);
        versions.insert(patch, entry.clone());
    }
    Some(versions)
}

/// The version an event or an audit entry names, within `identity`.
pub fn key_of(entry: &Value, identity: &str, context: &str) -> Key {
    let project = entry["package"]
        .as_str()
        .expect("package")
        .strip_prefix(&format!("{identity}/"))
        .unwrap_or_else(|| panic!("{context}: {entry} names a package outside {identity}"));
    (
        project.to_string(),
        patch_of(entry["version"].as_str().expect("version")),
    )
}

/// A listed version downloads as its entry says: `410 revoked` when revoked,
/// otherwise the bytes whose hash the entry names, which are returned.
pub fn assert_downloads_as_listed(
    server: &Server,
    identity: &str,
    key: &Key,
    entry: &Value,
    context: &str,
) -> Option<Vec<u8>> {
    let path = format!("/packages/{identity}/{}/{}/bundle", key.0, version(key.1));
    let download = server.get(&path, None);
    if entry["revoked"].is_object() {
        download.assert_error(410, "revoked");
        return None;
    }
    assert_eq!(
        download.status,
        200,
        "{context}: {path} of a listed live version: {}",
        download.text()
    );
    assert_eq!(
        sha256_hex(&download.body),
        entry["sha256"].as_str().expect("sha256"),
        "{context}: {path} is not the bytes its record names"
    );
    Some(download.body)
}

/// The event log agrees with the listing: every event names a listed
/// version (a revoke event a revoked one), and every listed version has
/// exactly one publish event, and one revoke event when it is revoked.
pub fn assert_events_match_listing(events: &[Value], identity: &str, listed: &Listed, context: &str) {
    let mut publishes: BTreeMap<Key, usize> = BTreeMap::new();
    let mut revokes: BTreeMap<Key, usize> = BTreeMap::new();
    for event in events {
        let key = key_of(event, identity, context);
        let entry = listed_entry(listed, &key)
            .unwrap_or_else(|| panic!("{context}: event {event} names a version that is not listed"));
        match event["type"].as_str() {
            Some("publish") => *publishes.entry(key).or_default() += 1,
            Some("revoke") => {
                assert!(
                    entry["revoked"].is_object(),
                    "{context}: revoke event {event} for a live version"
                );
                *revokes.entry(key).or_default() += 1;
            }
            other => panic!("{context}: event type {other:?}: {event}"),
        }
    }
    for (project, versions) in listed {
        for (patch, entry) in versions {
            let key = (project.clone(), *patch);
            assert_eq!(
                publishes.get(&key).copied().unwrap_or(0),
                1,
                "{context}: {identity}/{project} {} needs exactly one publish event",
                version(*patch)
            );
            assert_eq!(
                revokes.get(&key).copied().unwrap_or(0),
                usize::from(entry["revoked"].is_object()),
                "{context}: {identity}/{project} {} revoke events",
                version(*patch)
            );
        }
    }
}

/// An identity's audit log, replayed.
#[derive(Debug, Default)]
pub struct Audit {
    /// The members and invitations its member entries add up to.
    pub people: People,
    pub member_entries: usize,
    /// How many times each version is audited as published, and as revoked.
    pub published: BTreeMap<Key, usize>,
    pub revoked: BTreeMap<Key, usize>,
}

/// Reads and replays an identity's audit log (as its admin `token`),
/// checking that it is numbered without gaps and holds nothing but member
/// changes, publishes and revocations.
pub fn replay_audit(server: &Server, identity: &str, token: &str, context: &str) -> Audit {
    let reply = server.get(&format!("/publishing-identity/{identity}/audit"), Some(token));
    assert_eq!(reply.status, 200, "{context}: GET audit: {}", reply.text());
    let mut audit = Audit::default();
    for (index, entry) in reply.json()["entries"].as_array().expect("entries").iter().enumerate() {
        assert_eq!(
            entry["seq"].as_u64(),
            Some(index as u64 + 1),
            "{context}: audit numbering: {entry}"
        );
        if audit.people.apply(entry) {
            audit.member_entries += 1;
            continue;
        }
        let counts = match entry["action"].as_str().unwrap() {
            "published" => &mut audit.published,
            "revoked" => &mut audit.revoked,
            other => panic!("{context}: unexpected audit action {other}: {entry}"),
        };
        *counts.entry(key_of(entry, identity, context)).or_default() += 1;
    }
    audit
}

/// Runs the text form of fsck: whether it succeeded, and its output.
pub fn fsck_text(dir: &Path) -> (bool, String) {
    let out = admin(dir, &["fsck"]);
    (out.succeeded(), out.all())
}

/// The text form of fsck exits 0 and ends with `clean`; `what` says which
/// directory, when, for the failure.
#[track_caller]
pub fn assert_fsck_clean(dir: &Path, what: &str) {
    let (clean, text) = fsck_text(dir);
    assert!(
        clean && text.trim_end().ends_with("clean"),
        "{what} (expected exit 0 and `clean`); fsck said:\n{text}"
    );
}

/// xorshift64*: small, seedable, good enough to pick moments and victims.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

/// An identity's people: members and pending invitations (e-mail → role).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct People {
    pub members: BTreeMap<String, String>,
    pub invitations: BTreeMap<String, String>,
}

impl People {
    /// As an admin's `GET /publishing-identity/<name>` lists them; nobody
    /// may be listed twice.
    pub fn from_view(view: &Value) -> People {
        let list = |key: &str| {
            let mut found = BTreeMap::new();
            for person in view[key].as_array().unwrap_or_else(|| panic!("no {key} in {view}")) {
                let email = person["email"].as_str().unwrap().to_string();
                let role = person["role"].as_str().unwrap().to_string();
                assert!(
                    found.insert(email.clone(), role).is_none(),
                    "{email} is listed twice in {key}"
                );
            }
            found
        };
        People {
            members: list("members"),
            invitations: list("invitations"),
        }
    }

    /// Replays one audit entry, checking that the change follows from the
    /// ones before it; `false` (and nothing changes) when it is not about
    /// members or invitations.
    pub fn apply(&mut self, entry: &Value) -> bool {
        let text = |key: &str| {
            entry[key]
                .as_str()
                .unwrap_or_else(|| panic!("no {key} in {entry}"))
                .to_string()
        };
        match entry["action"].as_str().unwrap_or_default() {
            "created" => {
                self.members.insert(text("admin"), "admin".into());
            }
            "invited" => {
                assert!(!self.members.contains_key(&text("member")), "{entry} invites a member");
                self.invitations.insert(text("member"), text("role"));
            }
            "invitation_cancelled" | "invitation_declined" => {
                let removed = self.invitations.remove(&text("member"));
                assert_eq!(removed, Some(text("role")), "{entry} withdraws no such invitation");
            }
            "member_added" => {
                let email = text("member");
                assert!(!self.members.contains_key(&email), "{entry} adds a present member");
                // Accepted, or added by an operator (who needs no invitation).
                let invitation = self.invitations.remove(&email);
                if entry["actor"] != "operator" {
                    assert_eq!(invitation, Some(text("role")), "{entry} accepts no such invitation");
                }
                self.members.insert(email, text("role"));
            }
            "role_changed" => {
                let previous = self.members.insert(text("member"), text("to"));
                assert_eq!(previous, Some(text("from")), "{entry} does not chain");
            }
            "member_removed" => {
                let removed = self.members.remove(&text("member"));
                assert_eq!(removed, Some(text("role")), "{entry} removes a non-member");
            }
            _ => return false,
        }
        true
    }
}
