//! Concurrency proofs against the real binary: many clients publishing
//! different packages and racing for the same versions of one package, and
//! changing the members and invitations of one identity, all at once. No
//! update is lost, no version is taken twice, and every answer a client got
//! agrees with the final state (listings, downloads, the event log and the
//! audit log).
//!
//! Sizes: `GREN_PROOF_SCALE` (default 1) multiplies the number of threads of
//! each kind (4 racing publishers, 4 publishers of their own packages, 4
//! member changers) and each thread's operations (10). At scale 1 (CI) each
//! test takes a few seconds on 2 cores; try `GREN_PROOF_SCALE=5 cargo test
//! --test integration concurrency:: -- --nocapture` for a longer local run.

use crate::common::bundles::*;
use crate::common::proofs::*;
use crate::common::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const IDENTITY: &str = "conc";
const OWNER: &str = "owner@example.com";
const PUBLISHER: &str = "publisher@example.com";
/// The member every member-changing thread fights over.
const CONTESTED: &str = "contested@example.com";
const ROLES: [&str; 3] = ["download", "publish", "admin"];

// ---------------------------------------------------------------------------
// Small tools
// ---------------------------------------------------------------------------

/// `(versions by patch)` of a package as listed, or empty when it does not exist.
fn listing(server: &Server, project: &str) -> BTreeMap<u64, Value> {
    listed_versions(server, IDENTITY, project, "listing").unwrap_or_default()
}

/// A logged-in owner with the identity, and a second user with the publish role.
fn setup(server: &Server) -> (String, String) {
    let owner = server.login(OWNER);
    let created = server.post_json("/publishing-identity", &json!({ "name": IDENTITY }), Some(&owner));
    assert_eq!(created.status, 200, "create identity: {}", created.text());
    let publisher = server.add_member(IDENTITY, &owner, PUBLISHER, "publish");
    (owner, publisher)
}

// ---------------------------------------------------------------------------
// Publishes and member changes at once
// ---------------------------------------------------------------------------

/// One answer to a publish.
#[derive(Debug, Clone)]
struct Outcome {
    project: String,
    patch: u64,
    /// sha256 of the bytes sent.
    sent: String,
    status: u16,
    body: Value,
}

/// What one member-changing thread did to its own invitations and the
/// contested member.
#[derive(Debug, Default)]
struct MemberLog {
    /// Final role offered per own invitation (absent: cancelled or never made).
    own: BTreeMap<String, String>,
    /// Every own e-mail ever touched.
    touched: BTreeSet<String>,
    /// Roles put on the contested member and acknowledged.
    contested: BTreeSet<String>,
    changes: usize,
}

#[test]
fn concurrent_publishes_and_member_changes_lose_nothing_and_duplicate_nothing() {
    let plan = Plan::from_scale();
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("gren-concurrency-").tempdir().unwrap();
    let server = Arc::new(Server::start_in(dir.path(), &PROOF_ENV));
    let (owner_token, publisher_token) = setup(&server);
    server.add_member(IDENTITY, &owner_token, CONTESTED, "download");
    let ended = Load::start(&server, &plan, [owner_token.clone(), publisher_token]).finish();
    let load_time = started.elapsed();

    let listed = list_every_package(&server, &ended.outcomes);
    assert_each_listed_version_won_exactly_one_publish(&ended.outcomes, &listed);
    assert_refusals_agree_with_the_final_state(&ended.outcomes, &listed);
    assert_packages_are_whole(&listed, &ended.seen_shared, plan.ops);
    for (project, versions) in &listed {
        for (patch, entry) in versions {
            assert_downloads_as_listed(&server, IDENTITY, &(project.clone(), *patch), entry, "the end");
        }
    }
    let events = all_events(&server);
    assert_events_match_listing(&events, IDENTITY, &listed, "the end");
    assert_events_seen_during_the_load_are_unchanged(&events, &ended.seen_events);
    let people = assert_people_after_every_acknowledged_change(&server, &owner_token, &ended.member_logs);
    let audit = assert_the_audit_log_replays(&server, &owner_token, &people, &listed);

    let changes: usize = ended.member_logs.iter().map(|log| log.changes).sum();
    eprintln!(
        "concurrency: {} publish answers ({} versions listed, {} of shared), {changes} member changes ({} audited), {} downloads during the load, {} events; load {:.1} s",
        ended.outcomes.len(),
        listed.values().map(BTreeMap::len).sum::<usize>(),
        listed["shared"].len(),
        audit.member_entries,
        ended.downloads,
        events.len(),
        load_time.as_secs_f64()
    );
    stop_and_fsck(server, dir.path(), "fsck after the load");
}

/// How many threads of each kind, and operations each.
struct Plan {
    seed: u64,
    racers: usize,
    owners: usize,
    changers: usize,
    ops: usize,
}

impl Plan {
    fn from_scale() -> Plan {
        let (scale, seed) = (scale(), seed());
        let plan = Plan {
            seed,
            racers: 4 * scale,
            owners: 4 * scale,
            changers: 4 * scale,
            ops: 10 * scale,
        };
        eprintln!(
            "concurrency: seed {seed}, scale {scale}: {} racers, {} own-package publishers, {} member changers, {} operations each",
            plan.racers, plan.owners, plan.changers, plan.ops
        );
        plan
    }
}

/// The clients of the load, released together by a barrier.
struct Load {
    barrier: Arc<Barrier>,
    done: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    seen_events: Arc<Mutex<Vec<Value>>>,
    publishers: Vec<JoinHandle<()>>,
    member_threads: Vec<JoinHandle<MemberLog>>,
    watcher: JoinHandle<()>,
    downloader: JoinHandle<(BTreeMap<u64, String>, u64)>,
}

/// What the clients saw, once they are all done.
struct Ended {
    outcomes: Vec<Outcome>,
    member_logs: Vec<MemberLog>,
    /// The bytes (sha256) of each version of `shared` downloaded during the load.
    seen_shared: BTreeMap<u64, String>,
    downloads: u64,
    seen_events: Vec<Value>,
}

impl Load {
    /// Starts every client; they wait at the barrier until [`Load::finish`].
    fn start(server: &Arc<Server>, plan: &Plan, tokens: [String; 2]) -> Load {
        let barrier = Arc::new(Barrier::new(plan.racers + plan.owners + plan.changers + 1));
        let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let seen_events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let start = |index: usize, client: fn(&Server, &str, usize, usize, &Mutex<Vec<Outcome>>)| {
            let (server, barrier, outcomes) = (server.clone(), barrier.clone(), outcomes.clone());
            let (token, ops) = (tokens[index % 2].clone(), plan.ops);
            std::thread::spawn(move || {
                barrier.wait();
                client(&server, &token, index, ops, &outcomes)
            })
        };
        let mut publishers: Vec<_> = (0..plan.racers).map(|index| start(index, race_for_shared)).collect();
        publishers.extend((0..plan.owners).map(|index| start(index, publish_own_package)));
        let member_threads = (0..plan.changers)
            .map(|index| {
                let (server, barrier, token) = (server.clone(), barrier.clone(), tokens[0].clone());
                let (rng, ops) = (Rng::new(plan.seed ^ ((index as u64 + 1) * 0x1000)), plan.ops);
                std::thread::spawn(move || {
                    barrier.wait();
                    change_members(&server, &token, index, ops, rng)
                })
            })
            .collect();
        let watcher = {
            let (server, done, seen) = (server.clone(), done.clone(), seen_events.clone());
            std::thread::spawn(move || watch_events(&server, &done, &seen))
        };
        let downloader = {
            let (server, done) = (server.clone(), done.clone());
            std::thread::spawn(move || download_shared(&server, &done))
        };
        Load {
            barrier,
            done,
            outcomes,
            seen_events,
            publishers,
            member_threads,
            watcher,
            downloader,
        }
    }

    /// Releases the clients, waits for the publishers and member changers,
    /// then stops the watchers.
    fn finish(self) -> Ended {
        self.barrier.wait();
        join_all(self.publishers);
        let member_logs = join_all(self.member_threads);
        self.done.store(true, Ordering::SeqCst);
        let (seen_shared, downloads) = join_all(vec![self.downloader]).pop().unwrap();
        join_all(vec![self.watcher]);
        Ended {
            outcomes: self.outcomes.lock().unwrap().clone(),
            member_logs,
            seen_shared,
            downloads,
            seen_events: self.seen_events.lock().unwrap().clone(),
        }
    }
}

/// A racer: publishes the next version of `shared` as listed, with its own
/// bytes, starting with the very first version (which creates the package).
fn race_for_shared(server: &Server, token: &str, index: usize, ops: usize, outcomes: &Mutex<Vec<Outcome>>) {
    for attempt in 0..ops {
        let next = listing(server, "shared").keys().next_back().map_or(0, |last| last + 1);
        let bytes = synthetic(
            &format!("{IDENTITY}/shared"),
            &version(next),
            &format!("racer {index} try {attempt}"),
        );
        let reply = server.publish(token, &bytes);
        let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        match (reply.status, body["error"].as_str()) {
            (201, _) | (409, Some("version_exists")) | (400, Some("invalid_version")) => {}
            _ => panic!(
                "racer {index}: publishing shared {} answered {}: {}",
                version(next),
                reply.status,
                reply.text()
            ),
        }
        outcomes.lock().unwrap().push(Outcome {
            project: "shared".into(),
            patch: next,
            sent: sha256_hex(&bytes),
            status: reply.status,
            body,
        });
    }
}

/// An owner: publishes its own package's successive versions, and now and
/// then sends the same bytes again (a safe retry: 200, same record).
fn publish_own_package(server: &Server, token: &str, index: usize, ops: usize, outcomes: &Mutex<Vec<Outcome>>) {
    let project = format!("own{index}");
    for patch in 0..ops as u64 {
        let bytes = synthetic(
            &format!("{IDENTITY}/{project}"),
            &version(patch),
            &format!("owner {index}"),
        );
        let reply = server.publish(token, &bytes);
        assert_eq!(reply.status, 201, "{project} {}: {}", version(patch), reply.text());
        let body = reply.json();
        if patch % 3 == 1 {
            let again = server.publish(token, &bytes);
            assert_eq!(
                again.status,
                200,
                "retrying {project} {}: {}",
                version(patch),
                again.text()
            );
            assert_eq!(again.json(), body, "a retry answers the existing record");
        }
        outcomes.lock().unwrap().push(Outcome {
            project: project.clone(),
            patch,
            sent: sha256_hex(&bytes),
            status: 201,
            body,
        });
    }
}

/// A member changer: its own invitations (invite, change the role offered,
/// cancel), plus setting the contested member's role, as everyone does.
fn change_members(server: &Server, token: &str, index: usize, ops: usize, mut rng: Rng) -> MemberLog {
    let mut log = MemberLog::default();
    let mut counter = 0;
    for _ in 0..ops {
        let choice = rng.below(4);
        let (email, role) = if choice == 0 {
            (CONTESTED.to_string(), ROLES[rng.below(3)].to_string())
        } else if choice == 1 && !log.own.is_empty() {
            let emails: Vec<String> = log.own.keys().cloned().collect();
            let email = emails[rng.below(emails.len())].clone();
            if rng.below(2) == 0 {
                let path = format!("/publishing-identity/{IDENTITY}/members/{email}");
                let reply = server.delete(&path, Some(token));
                assert_eq!(reply.status, 204, "DELETE {path}: {}", reply.text());
                log.own.remove(&email);
                log.changes += 1;
                continue;
            }
            (email, ROLES[rng.below(3)].to_string())
        } else {
            counter += 1;
            (
                format!("t{index}-m{counter}@example.com"),
                ROLES[rng.below(3)].to_string(),
            )
        };
        set_role(server, token, &email, &role);
        if email == CONTESTED {
            log.contested.insert(role);
        } else {
            log.touched.insert(email.clone());
            log.own.insert(email, role);
        }
        log.changes += 1;
    }
    log
}

/// `PUT` a member's role: a member's is set (200); anyone else is invited (202).
fn set_role(server: &Server, token: &str, email: &str, role: &str) {
    let path = format!("/publishing-identity/{IDENTITY}/members/{email}");
    let reply = server.put_json(&path, &json!({ "role": role }), Some(token));
    let status = if email == CONTESTED { 200 } else { 202 };
    assert_eq!(reply.status, status, "PUT {path}: {}", reply.text());
    let body = reply.json();
    assert_eq!(body["email"], email, "{body}");
    assert_eq!(body["role"], role, "the answer says the role just set: {body}");
}

/// A watcher during the load: reads the event log as it grows, checking the
/// numbering, and keeps every event it saw.
fn watch_events(server: &Server, done: &AtomicBool, seen: &Mutex<Vec<Value>>) {
    let mut since = 0;
    while !done.load(Ordering::SeqCst) {
        let reply = server.get(&format!("/events?since={since}"), None);
        assert_eq!(reply.status, 200, "{}", reply.text());
        let page = reply.json();
        // Full pages leave out the head, which is at least their `next`.
        let head = page["head"].as_u64().or(page["next"].as_u64()).unwrap();
        for event in page["events"].as_array().unwrap() {
            since += 1;
            assert_eq!(
                event["seq"].as_u64(),
                Some(since),
                "events arrive in order, without gaps: {event}"
            );
            assert!(
                event["seq"].as_u64().unwrap() <= head,
                "an event beyond the head: {event} (head {head})"
            );
            seen.lock().unwrap().push(event.clone());
        }
    }
}

/// A downloader during the load: the newest listed version of `shared` is
/// the bytes its listing names, and never changes them. Returns the bytes
/// (sha256) seen per version and how many downloads it made.
fn download_shared(server: &Server, done: &AtomicBool) -> (BTreeMap<u64, String>, u64) {
    let mut seen: BTreeMap<u64, String> = BTreeMap::new();
    let mut downloads = 0;
    while !done.load(Ordering::SeqCst) {
        let versions = listing(server, "shared");
        let Some((patch, entry)) = versions.iter().next_back() else {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        };
        let sha = entry["sha256"].as_str().unwrap().to_string();
        let reply = server.get(&format!("/packages/{IDENTITY}/shared/{}/bundle", version(*patch)), None);
        assert_eq!(reply.status, 200, "downloading a listed version: {}", reply.text());
        assert_eq!(
            sha256_hex(&reply.body),
            sha,
            "a download is the bytes its listing names"
        );
        if let Some(before) = seen.insert(*patch, sha.clone()) {
            assert_eq!(before, sha, "shared {} changed its bytes", version(*patch));
        }
        downloads += 1;
    }
    (seen, downloads)
}

// ---- The final state ------------------------------------------------------

/// Every package anyone published, as listed at the end (`shared` always).
fn list_every_package(server: &Server, outcomes: &[Outcome]) -> Listed {
    let mut projects: BTreeSet<String> = outcomes.iter().map(|o| o.project.clone()).collect();
    projects.insert("shared".into());
    projects
        .iter()
        .map(|project| (project.clone(), listing(server, project)))
        .collect()
}

/// Exactly one 201 per version; each 201 is listed with the bytes sent, and
/// nothing is listed that no publish won.
fn assert_each_listed_version_won_exactly_one_publish(outcomes: &[Outcome], listed: &Listed) {
    let mut winners: BTreeMap<Key, &Outcome> = BTreeMap::new();
    for outcome in outcomes.iter().filter(|o| o.status == 201) {
        let key = (outcome.project.clone(), outcome.patch);
        assert_eq!(
            outcome.body["sha256"],
            outcome.sent.as_str(),
            "a 201 names the bytes sent: {outcome:?}"
        );
        assert_eq!(outcome.body["version"], version(outcome.patch).as_str(), "{outcome:?}");
        if let Some(first) = winners.insert(key.clone(), outcome) {
            panic!("two publishes of {key:?} were both answered 201:\n{first:?}\n{outcome:?}");
        }
        let entry = listed[&outcome.project].get(&outcome.patch).unwrap_or_else(|| {
            panic!(
                "{} {} was answered 201 but is not listed",
                outcome.project,
                version(outcome.patch)
            )
        });
        assert_eq!(
            entry["sha256"],
            outcome.sent.as_str(),
            "lost update: {outcome:?} vs listed {entry}"
        );
    }
    for (project, versions) in listed {
        for patch in versions.keys() {
            assert!(
                winners.contains_key(&(project.clone(), *patch)),
                "{project} {} is listed but no publish of it was answered 201",
                version(*patch)
            );
        }
    }
}

/// Every refusal agrees with the final state: a 409 lost to other bytes, a
/// 400 `invalid_version` was not published after all.
fn assert_refusals_agree_with_the_final_state(outcomes: &[Outcome], listed: &Listed) {
    for outcome in outcomes.iter().filter(|o| o.status != 201) {
        let entry = listed[&outcome.project].get(&outcome.patch);
        match outcome.status {
            409 => {
                let entry =
                    entry.unwrap_or_else(|| panic!("409 version_exists for a version never taken: {outcome:?}"));
                assert_ne!(
                    entry["sha256"],
                    outcome.sent.as_str(),
                    "409 for bytes that won: {outcome:?}"
                );
            }
            400 => assert!(
                entry.is_none_or(|entry| entry["sha256"] != outcome.sent.as_str()),
                "400 invalid_version for bytes that were published: {outcome:?}"
            ),
            _ => unreachable!(),
        }
    }
}

/// `shared` has gap-free successive versions, agreeing with every download
/// during the load; each owner's package has every version it published.
fn assert_packages_are_whole(listed: &Listed, seen_shared: &BTreeMap<u64, String>, ops: usize) {
    let shared = &listed["shared"];
    assert_eq!(
        shared.keys().copied().collect::<Vec<_>>(),
        (0..shared.len() as u64).collect::<Vec<_>>(),
        "shared has gap-free successive versions"
    );
    assert!(!shared.is_empty());
    for (project, versions) in listed {
        if project.starts_with("own") {
            assert_eq!(versions.len(), ops, "{project} has every version its owner published");
        }
    }
    for (patch, sha) in seen_shared {
        assert_eq!(
            shared[patch]["sha256"],
            sha.as_str(),
            "a download during the load disagrees with the end"
        );
    }
}

/// What the watcher saw during the load is a prefix of the final event log,
/// unchanged.
fn assert_events_seen_during_the_load_are_unchanged(events: &[Value], seen_events: &[Value]) {
    for event in seen_events {
        let seq = event["seq"].as_u64().unwrap() as usize;
        assert_eq!(
            &events[seq - 1],
            event,
            "an event seen during the load changed afterwards"
        );
    }
}

/// People: every thread's own invitations as it last left them; the
/// contested member holds one of the roles put on it; nothing else.
/// Returns them as listed.
fn assert_people_after_every_acknowledged_change(server: &Server, token: &str, member_logs: &[MemberLog]) -> People {
    let identity = server.get(&format!("/publishing-identity/{IDENTITY}"), Some(token));
    assert_eq!(identity.status, 200, "{}", identity.text());
    let mut people = People::from_view(&identity.json());
    let mut expected = People::default();
    expected.members.insert(OWNER.into(), "admin".into());
    expected.members.insert(PUBLISHER.into(), "publish".into());
    let mut contested_roles = BTreeSet::from(["download".to_string()]);
    for log in member_logs {
        expected
            .invitations
            .extend(log.own.iter().map(|(email, role)| (email.clone(), role.clone())));
        contested_roles.extend(log.contested.iter().cloned());
    }
    let contested = people.members.remove(CONTESTED).expect("the contested member stays");
    assert!(
        contested_roles.contains(&contested),
        "the contested member's role {contested} was never set"
    );
    assert_eq!(
        people, expected,
        "the identity's members and invitations after every acknowledged change (lost update?)"
    );
    people.members.insert(CONTESTED.into(), contested);
    people
}

/// The audit log replays to exactly these people and names each published
/// version once (and nothing was revoked).
fn assert_the_audit_log_replays(server: &Server, token: &str, people: &People, listed: &Listed) -> Audit {
    let audit = replay_audit(server, IDENTITY, token, "the end");
    assert_eq!(
        &audit.people, people,
        "the audit log replays to the members and invitations"
    );
    assert!(audit.revoked.is_empty(), "nothing was revoked: {:?}", audit.revoked);
    let listed_count: usize = listed.values().map(BTreeMap::len).sum();
    assert_eq!(
        audit.published.len(),
        listed_count,
        "every published version is audited"
    );
    assert!(
        audit.published.values().all(|count| *count == 1),
        "each publish is audited once: {:?}",
        audit.published
    );
    audit
}

/// The registry stops cleanly and leaves a directory fsck finds clean.
fn stop_and_fsck(server: Arc<Server>, dir: &Path, what: &str) {
    let server = Arc::try_unwrap(server).ok().expect("every thread is done");
    let status = server.stop();
    assert!(status.success(), "the registry stops cleanly: {status:?}");
    assert_fsck_clean(dir, what);
}

// ---------------------------------------------------------------------------
// Downloads racing revocations
// ---------------------------------------------------------------------------

/// While versions are revoked one after another, clients hammer the very
/// version being revoked: every download answers the exact bytes (before
/// the revocation) or `410 revoked` (after it), never an error, and never
/// the bytes once the revocation was acknowledged.
#[test]
fn downloads_racing_revocations_answer_the_bytes_or_410() {
    let versions = 100 * scale() as u64;
    let dir = tempfile::Builder::new()
        .prefix("gren-concurrency-revoke-")
        .tempdir()
        .unwrap();
    let server = Arc::new(Server::start_in(dir.path(), &PROOF_ENV));
    let (owner, _) = setup(&server);
    let shas: Arc<Vec<String>> = Arc::new(
        (0..versions)
            .map(|patch| publish_target(&server, &owner, patch))
            .collect(),
    );
    let race = Arc::new(Race::default());
    let started = Instant::now();
    let downloaders: Vec<_> = (0..3)
        .map(|_| {
            let (server, shas, race) = (server.clone(), shas.clone(), race.clone());
            std::thread::spawn(move || download_while_revoked(&server, &shas, &race))
        })
        .collect();
    revoke_one_after_another(&server, &owner, versions, &race);
    race.done.store(true, Ordering::SeqCst);
    let results = join_all(downloaders);
    assert_every_download_answered_the_bytes_or_410(&server, &results, versions, started);
    let listed = listing(&server, "target");
    assert!(
        listed.values().all(|entry| entry["revoked"].is_object()),
        "every version ends revoked"
    );
    stop_and_fsck(server, dir.path(), "fsck after the race");
}

/// Where the revoker is: the version being revoked now, and the last one
/// whose revocation was acknowledged (`u64::MAX`: none yet).
struct Race {
    current: AtomicU64,
    acknowledged: AtomicU64,
    done: AtomicBool,
}

impl Default for Race {
    fn default() -> Race {
        Race {
            current: AtomicU64::new(0),
            acknowledged: AtomicU64::new(u64::MAX),
            done: AtomicBool::new(false),
        }
    }
}

/// Publishes version `patch` of `target`; returns the sha256 of its bytes.
fn publish_target(server: &Server, token: &str, patch: u64) -> String {
    let bytes = synthetic(&format!("{IDENTITY}/target"), &version(patch), "revoked soon");
    let reply = server.publish(token, &bytes);
    assert_eq!(reply.status, 201, "{}", reply.text());
    sha256_hex(&bytes)
}

/// Revokes the versions in order, each announced in `race` first.
fn revoke_one_after_another(server: &Server, token: &str, versions: u64, race: &Race) {
    for patch in 0..versions {
        race.current.store(patch, Ordering::SeqCst);
        // Let the downloaders aim at it first.
        std::thread::sleep(Duration::from_millis(1));
        let path = format!("/packages/{IDENTITY}/target/{}/revoke", version(patch));
        let reply = server.post_json(&path, &json!({ "reason": "race" }), Some(token));
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        race.acknowledged.store(patch, Ordering::SeqCst);
    }
}

/// A downloader hammering the version being revoked until the race is done:
/// returns (bytes served, gone) and a line per wrong answer.
fn download_while_revoked(server: &Server, shas: &[String], race: &Race) -> ((usize, usize), Vec<String>) {
    let mut counts = (0usize, 0usize);
    let mut failures = Vec::new();
    while !race.done.load(Ordering::SeqCst) {
        let patch = race.current.load(Ordering::SeqCst);
        // Revocations acknowledged before this request was sent.
        let revoked_before = race.acknowledged.load(Ordering::SeqCst);
        let reply = server.get(&format!("/packages/{IDENTITY}/target/{}/bundle", version(patch)), None);
        let settled = revoked_before != u64::MAX && patch <= revoked_before;
        match reply.status {
            200 if sha256_hex(&reply.body) == shas[patch as usize] && !settled => counts.0 += 1,
            410 => counts.1 += 1,
            _ => failures.push(format!(
                "{} (revocation acknowledged before the request: {settled}): {} {}",
                version(patch),
                reply.status,
                String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)])
            )),
        }
    }
    (counts, failures)
}

/// No downloader saw anything but the bytes (before an acknowledged
/// revocation) or a 410; the failures quote the registry's error lines.
fn assert_every_download_answered_the_bytes_or_410(
    server: &Server,
    results: &[((usize, usize), Vec<String>)],
    versions: u64,
    started: Instant,
) {
    let served: usize = results.iter().map(|(counts, _)| counts.0).sum();
    let gone: usize = results.iter().map(|(counts, _)| counts.1).sum();
    let failures: Vec<&String> = results.iter().flat_map(|(_, failures)| failures).collect();
    eprintln!(
        "revocation race: {versions} versions revoked in {:.1} s; downloads: {served} bytes, {gone} gone, {} wrong",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    let log = server.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("internal") || line.contains("storage") || line.contains(" 500 "))
        .take(6)
        .collect();
    assert!(
        failures.is_empty(),
        "downloads racing a revocation must answer the bytes or 410; {} did not, e.g.:\n{}\nthe registry's log:\n{}",
        failures.len(),
        failures
            .iter()
            .take(5)
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        errors.join("\n")
    );
}
