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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
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
    let reply = server.get(&format!("/packages/{IDENTITY}/{project}"), None);
    if reply.status == 404 {
        return BTreeMap::new();
    }
    assert_eq!(reply.status, 200, "GET {project}: {}", reply.text());
    let body = reply.json();
    let mut versions = BTreeMap::new();
    let mut previous = None;
    for entry in body["versions"].as_array().expect("versions") {
        let patch = patch_of(entry["version"].as_str().unwrap());
        assert!(
            previous < Some(patch),
            "{project} lists versions out of order or twice: {body}"
        );
        previous = Some(patch);
        versions.insert(patch, entry.clone());
    }
    versions
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
    let scale = scale();
    let seed = seed();
    let racers = 4 * scale;
    let owners = 4 * scale;
    let changers = 4 * scale;
    let ops = 10 * scale;
    eprintln!(
        "concurrency: seed {seed}, scale {scale}: {racers} racers, {owners} own-package publishers, {changers} member changers, {ops} operations each"
    );
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("gren-concurrency-").tempdir().unwrap();
    let server = Arc::new(Server::start_in(dir.path(), &PROOF_ENV));
    let (owner_token, publisher_token) = setup(&server);
    server.add_member(IDENTITY, &owner_token, CONTESTED, "download");
    let tokens = [owner_token.clone(), publisher_token.clone()];
    let barrier = Arc::new(Barrier::new(racers + owners + changers + 1));
    let done = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();

    // Racers: all publish the next version of `shared`, each with its own
    // bytes, starting with the very first version (which creates the package).
    let mut publishers = Vec::new();
    for index in 0..racers {
        let (server, barrier, outcomes) = (server.clone(), barrier.clone(), outcomes.clone());
        let token = tokens[index % 2].clone();
        publishers.push(std::thread::spawn(move || {
            barrier.wait();
            for attempt in 0..ops {
                let next = listing(&server, "shared").keys().next_back().map_or(0, |last| last + 1);
                let bytes = synthetic(
                    &format!("{IDENTITY}/shared"),
                    &version(next),
                    &format!("racer {index} try {attempt}"),
                );
                let reply = server.publish(&token, &bytes);
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
        }));
    }
    // Owners: each publishes its own package's successive versions, and now
    // and then sends the same bytes again (a safe retry: 200, same record).
    for index in 0..owners {
        let (server, barrier, outcomes) = (server.clone(), barrier.clone(), outcomes.clone());
        let token = tokens[index % 2].clone();
        publishers.push(std::thread::spawn(move || {
            barrier.wait();
            let project = format!("own{index}");
            for patch in 0..ops as u64 {
                let bytes = synthetic(
                    &format!("{IDENTITY}/{project}"),
                    &version(patch),
                    &format!("owner {index}"),
                );
                let reply = server.publish(&token, &bytes);
                assert_eq!(reply.status, 201, "{project} {}: {}", version(patch), reply.text());
                let body = reply.json();
                if patch % 3 == 1 {
                    let again = server.publish(&token, &bytes);
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
        }));
    }
    // Member changers: own invitations (invite, change the role offered,
    // cancel), plus everyone setting the contested member's role.
    let mut member_threads = Vec::new();
    for index in 0..changers {
        let (server, barrier, token) = (server.clone(), barrier.clone(), owner_token.clone());
        let mut rng = Rng::new(seed ^ ((index as u64 + 1) * 0x1000));
        member_threads.push(std::thread::spawn(move || {
            barrier.wait();
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
                        let reply = server.delete(&path, Some(&token));
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
                let path = format!("/publishing-identity/{IDENTITY}/members/{email}");
                let reply = server.put_json(&path, &json!({ "role": role }), Some(&token));
                // A member's role is set (200); anyone else is invited (202).
                let status = if email == CONTESTED { 200 } else { 202 };
                assert_eq!(reply.status, status, "PUT {path}: {}", reply.text());
                let body = reply.json();
                assert_eq!(body["email"], email.as_str(), "{body}");
                assert_eq!(body["role"], role.as_str(), "the answer says the role just set: {body}");
                if email == CONTESTED {
                    log.contested.insert(role);
                } else {
                    log.touched.insert(email.clone());
                    log.own.insert(email, role);
                }
                log.changes += 1;
            }
            log
        }));
    }
    // Watchers during the load: every event seen then must be in the final
    // log unchanged; every download must be the bytes its listing named.
    let seen_events: Arc<Mutex<Vec<Value>>> = Arc::default();
    let watcher = {
        let (server, done, seen) = (server.clone(), done.clone(), seen_events.clone());
        std::thread::spawn(move || {
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
        })
    };
    let downloads = Arc::new(AtomicU64::new(0));
    let downloader = {
        let (server, done, downloads) = (server.clone(), done.clone(), downloads.clone());
        std::thread::spawn(move || {
            let mut seen: BTreeMap<u64, String> = BTreeMap::new();
            while !done.load(Ordering::SeqCst) {
                let versions = listing(&server, "shared");
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
                downloads.fetch_add(1, Ordering::Relaxed);
            }
            seen
        })
    };

    barrier.wait();
    join_all(publishers);
    let member_logs = join_all(member_threads);
    done.store(true, Ordering::SeqCst);
    let seen_shared = join_all(vec![downloader]).pop().unwrap();
    join_all(vec![watcher]);
    let load_time = started.elapsed();

    // ---- The final state ------------------------------------------------
    let outcomes = outcomes.lock().unwrap().clone();
    let mut projects: BTreeSet<String> = outcomes.iter().map(|o| o.project.clone()).collect();
    projects.insert("shared".into());
    let listed: BTreeMap<String, BTreeMap<u64, Value>> = projects
        .iter()
        .map(|project| (project.clone(), listing(&server, project)))
        .collect();

    // Exactly one 201 per version; each 201 is listed with the bytes sent.
    let mut winners: BTreeMap<(String, u64), &Outcome> = BTreeMap::new();
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
    for (project, versions) in &listed {
        for patch in versions.keys() {
            assert!(
                winners.contains_key(&(project.clone(), *patch)),
                "{project} {} is listed but no publish of it was answered 201",
                version(*patch)
            );
        }
    }
    // Every refusal agrees with the final state.
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
    let shared = &listed["shared"];
    assert_eq!(
        shared.keys().copied().collect::<Vec<_>>(),
        (0..shared.len() as u64).collect::<Vec<_>>(),
        "shared has gap-free successive versions"
    );
    assert!(!shared.is_empty());
    for (project, versions) in &listed {
        if project.starts_with("own") {
            assert_eq!(versions.len(), ops, "{project} has every version its owner published");
        }
    }
    for (patch, sha) in &seen_shared {
        assert_eq!(
            shared[patch]["sha256"],
            sha.as_str(),
            "a download during the load disagrees with the end"
        );
    }

    // Every listed version downloads as listed.
    for (project, versions) in &listed {
        for (patch, entry) in versions {
            let reply = server.get(
                &format!("/packages/{IDENTITY}/{project}/{}/bundle", version(*patch)),
                None,
            );
            assert_eq!(reply.status, 200, "{project} {}: {}", version(*patch), reply.text());
            assert_eq!(
                sha256_hex(&reply.body),
                entry["sha256"].as_str().unwrap(),
                "{project} {}",
                version(*patch)
            );
        }
    }

    // The event log: one publish event per listed version and nothing else;
    // what the watcher saw during the load is a prefix of it, unchanged.
    let events = all_events(&server);
    let mut per_version: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for event in &events {
        assert_eq!(event["type"], "publish", "only publishes happened: {event}");
        let project = event["package"]
            .as_str()
            .unwrap()
            .strip_prefix("conc/")
            .expect("a conc package")
            .to_string();
        let patch = patch_of(event["version"].as_str().unwrap());
        assert!(
            listed[&project].contains_key(&patch),
            "event {event} names a version that is not listed"
        );
        *per_version.entry((project, patch)).or_default() += 1;
    }
    let listed_count: usize = listed.values().map(BTreeMap::len).sum();
    assert_eq!(
        per_version.len(),
        listed_count,
        "every listed version has a publish event"
    );
    assert!(
        per_version.values().all(|count| *count == 1),
        "one publish event per version: {per_version:?}"
    );
    let seen_events = seen_events.lock().unwrap().clone();
    for event in &seen_events {
        let seq = event["seq"].as_u64().unwrap() as usize;
        assert_eq!(
            &events[seq - 1],
            event,
            "an event seen during the load changed afterwards"
        );
    }

    // People: every thread's own invitations as it last left them; the
    // contested member holds one of the roles put on it; nothing else.
    let identity = server.get(&format!("/publishing-identity/{IDENTITY}"), Some(&owner_token));
    assert_eq!(identity.status, 200, "{}", identity.text());
    let mut people = People::from_view(&identity.json());
    let mut expected = People::default();
    expected.members.insert(OWNER.into(), "admin".into());
    expected.members.insert(PUBLISHER.into(), "publish".into());
    let mut contested_roles = BTreeSet::from(["download".to_string()]);
    for log in &member_logs {
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

    // The audit log replays to exactly these people and names each
    // published version once.
    let audit = server.get(&format!("/publishing-identity/{IDENTITY}/audit"), Some(&owner_token));
    assert_eq!(audit.status, 200, "{}", audit.text());
    let mut replayed = People::default();
    let mut audited: BTreeMap<(String, u64), usize> = BTreeMap::new();
    let mut member_entries = 0;
    for (index, entry) in audit.json()["entries"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            entry["seq"].as_u64(),
            Some(index as u64 + 1),
            "audit numbering: {entry}"
        );
        if replayed.apply(entry) {
            member_entries += 1;
            continue;
        }
        match entry["action"].as_str().unwrap() {
            "published" => {
                let project = entry["package"]
                    .as_str()
                    .unwrap()
                    .strip_prefix("conc/")
                    .unwrap()
                    .to_string();
                *audited
                    .entry((project, patch_of(entry["version"].as_str().unwrap())))
                    .or_default() += 1;
            }
            other => panic!("unexpected audit action {other}: {entry}"),
        }
    }
    people.members.insert(CONTESTED.into(), contested);
    assert_eq!(replayed, people, "the audit log replays to the members and invitations");
    assert_eq!(audited.len(), listed_count, "every published version is audited");
    assert!(
        audited.values().all(|count| *count == 1),
        "each publish is audited once: {audited:?}"
    );

    let changes: usize = member_logs.iter().map(|log| log.changes).sum();
    eprintln!(
        "concurrency: {} publish answers ({} versions listed, {} of shared), {changes} member changes ({member_entries} audited), {} downloads during the load, {} events; load {:.1} s",
        outcomes.len(),
        listed_count,
        shared.len(),
        downloads.load(Ordering::Relaxed),
        events.len(),
        load_time.as_secs_f64()
    );

    let server = Arc::try_unwrap(server).ok().expect("every thread is done");
    let status = server.stop();
    assert!(status.success(), "the registry stops cleanly: {status:?}");
    let (clean, text) = fsck_text(dir.path());
    assert!(
        clean && text.trim_end().ends_with("clean"),
        "fsck after the load:\n{text}"
    );
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
    let scale = scale();
    let versions = 100 * scale as u64;
    let downloaders = 3;
    let dir = tempfile::Builder::new()
        .prefix("gren-concurrency-revoke-")
        .tempdir()
        .unwrap();
    let server = Arc::new(Server::start_in(dir.path(), &PROOF_ENV));
    let (owner, _) = setup(&server);
    let mut shas = Vec::new();
    for patch in 0..versions {
        let bytes = synthetic(&format!("{IDENTITY}/target"), &version(patch), "revoked soon");
        let reply = server.publish(&owner, &bytes);
        assert_eq!(reply.status, 201, "{}", reply.text());
        shas.push(sha256_hex(&bytes));
    }
    let shas = Arc::new(shas);
    // The version being revoked now, and the last one whose revocation was acknowledged.
    let current = Arc::new(AtomicU64::new(0));
    let acknowledged = Arc::new(AtomicU64::new(u64::MAX));
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    let mut handles = Vec::new();
    for _ in 0..downloaders {
        let (server, shas, current, acknowledged, done) = (
            server.clone(),
            shas.clone(),
            current.clone(),
            acknowledged.clone(),
            done.clone(),
        );
        handles.push(std::thread::spawn(move || {
            let mut counts = (0usize, 0usize);
            let mut failures = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let patch = current.load(Ordering::SeqCst);
                // Revocations acknowledged before this request was sent.
                let revoked_before = acknowledged.load(Ordering::SeqCst);
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
        }));
    }
    for patch in 0..versions {
        current.store(patch, Ordering::SeqCst);
        // Let the downloaders aim at it first.
        std::thread::sleep(Duration::from_millis(1));
        let path = format!("/packages/{IDENTITY}/target/{}/revoke", version(patch));
        let reply = server.post_json(&path, &json!({ "reason": "race" }), Some(&owner));
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        acknowledged.store(patch, Ordering::SeqCst);
    }
    done.store(true, Ordering::SeqCst);
    let results = join_all(handles);
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
    let listed = listing(&server, "target");
    assert!(
        listed.values().all(|entry| entry["revoked"].is_object()),
        "every version ends revoked"
    );
    let server = Arc::try_unwrap(server).ok().expect("every thread is done");
    assert!(server.stop().success());
    let (clean, text) = fsck_text(dir.path());
    assert!(
        clean && text.trim_end().ends_with("clean"),
        "fsck after the race:\n{text}"
    );
}
