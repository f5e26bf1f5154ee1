//! Crash proofs: the real binary under a publish / revoke / member-change
//! load, killed with SIGKILL at random moments, many times. After every
//! restart each acknowledged write is present and intact, nothing that was
//! not acknowledged is half-visible, the event and audit logs are whole, and
//! `admin fsck` finds nothing wrong.
//!
//! Sizes: `GREN_PROOF_SCALE` (default 1) multiplies the number of kill/restart
//! rounds (8 × scale) and the number of publisher threads (2 × scale). At
//! scale 1 (CI) the load test takes well under 60 s on 2 cores; try
//! `GREN_PROOF_SCALE=10 cargo test --test integration crash:: -- --nocapture`
//! for a longer local run. The random schedule is seeded from the clock and the seed is
//! printed; `GREN_PROOF_SEED=<n>` replays one.
//!
//! The deterministic tests below the load test lay out, file for file, what
//! the server has written at the moment a SIGKILL lands inside a change
//! (before its commit point), and check that a restart plus `fsck` treat it
//! as the debris the data directory's README promises it is.

use crate::common::bundles::*;
use crate::common::operator::*;
use crate::common::proofs::*;
use crate::common::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const IDENTITY: &str = "crash";
const ADMIN: &str = "admin@example.com";
/// Members who joined before the first kill, whose roles the load changes.
const POOL: [&str; 2] = ["pool1@example.com", "pool2@example.com"];

// ---------------------------------------------------------------------------
// Small tools (local: the shared harness panics on connection errors)
// ---------------------------------------------------------------------------

/// One request on a fresh connection that reports every failure (refused
/// connection, reset, a response cut short) as an error instead of panicking:
/// requests in flight when the server is killed fail like this, and count as
/// not acknowledged.
fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> io::Result<Reply> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.set_write_timeout(Some(Duration::from_secs(20)))?;
    let _ = stream.set_nodelay(true);
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: {USER_AGENT}\r\nConnection: close\r\n");
    if !body.is_empty() || !matches!(method, "GET" | "HEAD") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str("\r\n");
    let mut message = head.into_bytes();
    message.extend_from_slice(body);
    let mut conn = HttpConn::new(stream);
    conn.write(&message)?;
    let reply = conn.read_response(method == "HEAD")?;
    let declared = reply
        .header("content-length")
        .and_then(|value| value.trim().parse::<usize>().ok());
    if method != "HEAD" && declared.is_some_and(|length| length != reply.body.len()) {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "response body cut short"));
    }
    Ok(reply)
}

/// Runs `gren-registry admin --data-dir DIR --json fsck`; returns (exit
/// success, parsed report, raw output).
fn fsck(dir: &Path) -> (bool, Value, String) {
    let out = admin_json(dir, &["fsck"]);
    let report: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    (out.succeeded(), report, out.all())
}

// ---------------------------------------------------------------------------
// What the clients know
// ---------------------------------------------------------------------------

type Key = (String, u64); // (project, patch)

#[derive(Default)]
struct Model {
    /// Every bundle ever sent per version (one per attempt).
    attempted: BTreeMap<Key, BTreeSet<String>>,
    /// Publishes answered 201: the sha256 acknowledged.
    acked: BTreeMap<Key, String>,
    /// Versions seen listed after a restart (acknowledged or not): durable
    /// from then on.
    durable: BTreeMap<Key, String>,
    /// Revocations answered 200.
    revoke_acked: BTreeSet<Key>,
    /// Versions seen revoked after a restart.
    revoked_durable: BTreeSet<Key>,
    /// Members and invitations (but the creator) with their roles:
    /// acknowledged, or seen after a restart.
    people: People,
    /// The member change or invitation in flight when the server was killed.
    member_in_flight: Option<(String, String)>,
    member_counter: usize,
    counts: Counts,
}

#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    publishes: usize,
    revokes: usize,
    member_changes: usize,
    failed_in_flight: usize,
}

const ROLES: [&str; 3] = ["download", "publish", "admin"];

/// A publisher's package in progress, carried from round to round.
#[derive(Clone, Debug)]
struct Publisher {
    project: Option<String>,
    next: u64,
}

#[allow(clippy::too_many_arguments)]
fn publisher_thread(
    addr: SocketAddr,
    token: String,
    model: Arc<Mutex<Model>>,
    stop: Arc<AtomicBool>,
    package_counter: Arc<AtomicUsize>,
    mut state: Publisher,
    mut rng: Rng,
    tag: String,
) -> Publisher {
    while !stop.load(Ordering::SeqCst) {
        // A new package now and then, so that first publishes (which create
        // the package's directory) are among the writes cut short.
        if state.project.is_none() || rng.one_in(3) {
            state.project = Some(format!("p{}", package_counter.fetch_add(1, Ordering::SeqCst)));
            state.next = 0;
        }
        let project = state.project.clone().unwrap();
        let key = (project.clone(), state.next);
        let name = format!("{IDENTITY}/{project}");
        let bytes = synthetic(&name, &version(state.next), &format!("{tag}-{}", rng.next()));
        let sha = sha256_hex(&bytes);
        model
            .lock()
            .unwrap()
            .attempted
            .entry(key.clone())
            .or_default()
            .insert(sha.clone());
        match try_request(
            addr,
            "POST",
            "/packages",
            Some(&token),
            Some("application/gzip"),
            &bytes,
        ) {
            Ok(reply) if reply.status == 201 => {
                let body = reply.json();
                assert_eq!(
                    body["sha256"],
                    sha.as_str(),
                    "201 for {name} {}: {body}",
                    version(state.next)
                );
                assert_eq!(body["version"], version(state.next).as_str(), "201: {body}");
                let mut model = model.lock().unwrap();
                model.acked.insert(key, sha);
                model.counts.publishes += 1;
                state.next += 1;
            }
            Ok(reply) => panic!(
                "publishing {name} {} answered {}: {}",
                version(state.next),
                reply.status,
                reply.text()
            ),
            Err(_) => {
                // Killed in flight: not acknowledged. The next round starts
                // from what the restarted server lists.
                model.lock().unwrap().counts.failed_in_flight += 1;
                break;
            }
        }
    }
    state
}

fn revoker_thread(addr: SocketAddr, token: String, model: Arc<Mutex<Model>>, stop: Arc<AtomicBool>, mut rng: Rng) {
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(rng.range(5, 40)));
        let victim = {
            let model = model.lock().unwrap();
            let live: Vec<&Key> = model
                .acked
                .keys()
                .chain(model.durable.keys())
                .filter(|key| !model.revoke_acked.contains(*key) && !model.revoked_durable.contains(*key))
                .collect();
            if live.is_empty() {
                continue;
            }
            live[(rng.next() % live.len() as u64) as usize].clone()
        };
        let path = format!("/packages/{IDENTITY}/{}/{}/revoke", victim.0, version(victim.1));
        let body = serde_json::to_vec(&json!({ "reason": "crash test" })).unwrap();
        match try_request(addr, "POST", &path, Some(&token), Some("application/json"), &body) {
            Ok(reply) if reply.status == 200 => {
                let body = reply.json();
                assert_eq!(body["version"], version(victim.1).as_str(), "revoke answer: {body}");
                assert!(
                    body["revoked"].is_object(),
                    "a revoke answers the revoked record: {body}"
                );
                let mut model = model.lock().unwrap();
                model.revoke_acked.insert(victim);
                model.counts.revokes += 1;
            }
            Ok(reply) => panic!("POST {path} answered {}: {}", reply.status, reply.text()),
            Err(_) => {
                model.lock().unwrap().counts.failed_in_flight += 1;
                break;
            }
        }
    }
}

/// Changes a member's role (answered 200) or invites someone, or changes
/// the role an invitation offers (answered 202), at random moments.
fn member_thread(addr: SocketAddr, token: String, model: Arc<Mutex<Model>>, stop: Arc<AtomicBool>, mut rng: Rng) {
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(rng.range(2, 25)));
        let (email, role) = {
            let mut model = model.lock().unwrap();
            let members: Vec<(String, String)> = model.people.members.clone().into_iter().collect();
            let invitations: Vec<(String, String)> = model.people.invitations.clone().into_iter().collect();
            let change = if !members.is_empty() && rng.one_in(3) {
                another_role(&members[rng.below(members.len())], &mut rng)
            } else if !invitations.is_empty() && rng.one_in(3) {
                another_role(&invitations[rng.below(invitations.len())], &mut rng)
            } else {
                model.member_counter += 1;
                let email = format!("m{}@example.com", model.member_counter);
                (email, ROLES[(rng.next() % 3) as usize].to_string())
            };
            model.member_in_flight = Some(change.clone());
            change
        };
        let path = format!("/publishing-identity/{IDENTITY}/members/{email}");
        let body = serde_json::to_vec(&json!({ "role": role })).unwrap();
        match try_request(addr, "PUT", &path, Some(&token), Some("application/json"), &body) {
            Ok(reply) if reply.status == 200 || reply.status == 202 => {
                let body = reply.json();
                assert_eq!(body["email"], email.as_str(), "PUT member answer: {body}");
                assert_eq!(body["role"], role.as_str(), "PUT member answer: {body}");
                let mut model = model.lock().unwrap();
                let people = if reply.status == 200 {
                    &mut model.people.members
                } else {
                    &mut model.people.invitations
                };
                people.insert(email, role);
                model.member_in_flight = None;
                model.counts.member_changes += 1;
            }
            Ok(reply) => panic!("PUT {path} answered {}: {}", reply.status, reply.text()),
            Err(_) => {
                model.lock().unwrap().counts.failed_in_flight += 1;
                break;
            }
        }
    }
}

/// `(email, a role other than the current one)`.
fn another_role((email, current): &(String, String), rng: &mut Rng) -> (String, String) {
    let others: Vec<&str> = ROLES.iter().copied().filter(|role| role != current).collect();
    (email.clone(), others[(rng.next() % 2) as usize].to_string())
}

// ---------------------------------------------------------------------------
// Checking a restarted server against the model
// ---------------------------------------------------------------------------

/// Checks everything the restarted server shows against what the clients
/// were told, then folds what it shows into the model (all of it is durable
/// from now on). Returns every package's versions as listed.
fn verify(server: &Server, token: &str, model: &mut Model, context: &str) -> BTreeMap<String, BTreeMap<u64, Value>> {
    // The session made before the first crash still works.
    let user = server.get("/user", Some(token));
    assert_eq!(
        user.status,
        200,
        "{context}: the admin's session survives restarts: {}",
        user.text()
    );

    let projects: BTreeSet<String> = model.attempted.keys().map(|(project, _)| project.clone()).collect();
    let mut listed: BTreeMap<String, BTreeMap<u64, Value>> = BTreeMap::new();
    for project in &projects {
        let reply = server.get(&format!("/packages/{IDENTITY}/{project}"), None);
        if reply.status == 404 {
            for key in model.acked.keys().chain(model.durable.keys()) {
                assert_ne!(
                    &key.0,
                    project,
                    "{context}: {IDENTITY}/{project} {} was acknowledged or seen, but the package is gone",
                    version(key.1)
                );
            }
            continue;
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
        listed.insert(project.clone(), versions);
    }

    // Acknowledged (or previously seen) publishes are present, with their bytes' hash.
    for (source, map) in [
        ("acknowledged", &model.acked),
        ("seen after an earlier restart", &model.durable),
    ] {
        for ((project, patch), sha) in map {
            let entry = listed
                .get(project)
                .and_then(|versions| versions.get(patch))
                .unwrap_or_else(|| {
                    panic!(
                        "{context}: {IDENTITY}/{project} {} was {source} but is not listed",
                        version(*patch)
                    )
                });
            assert_eq!(
                entry["sha256"],
                sha.as_str(),
                "{context}: {IDENTITY}/{project} {} ({source}) lists another sha256",
                version(*patch)
            );
        }
    }
    // Acknowledged (or previously seen) revocations hold.
    for key in model.revoke_acked.iter().chain(model.revoked_durable.iter()) {
        let entry = &listed[&key.0][&key.1];
        assert!(
            entry["revoked"].is_object(),
            "{context}: {IDENTITY}/{} {} was revoked (acknowledged) but is live again: {entry}",
            key.0,
            version(key.1)
        );
    }

    // Everything listed is whole: a bundle we sent for that version, served
    // byte for byte, or 410 when revoked; its outline is there.
    for (project, versions) in &listed {
        for (patch, entry) in versions {
            let key = (project.clone(), *patch);
            let sha = entry["sha256"].as_str().expect("sha256");
            assert!(
                model.attempted.get(&key).is_some_and(|shas| shas.contains(sha)),
                "{context}: {IDENTITY}/{project} {} is listed with a sha256 no client ever sent: {entry}",
                version(*patch)
            );
            let base = format!("/packages/{IDENTITY}/{project}/{}", version(*patch));
            let download = server.get(&format!("{base}/bundle"), None);
            if entry["revoked"].is_object() {
                download.assert_error(410, "revoked");
            } else {
                assert_eq!(
                    download.status,
                    200,
                    "{context}: {base}/bundle of a listed live version: {}",
                    download.text()
                );
                assert_eq!(
                    sha256_hex(&download.body),
                    sha,
                    "{context}: {base}/bundle is not the bytes its record names"
                );
                assert_eq!(
                    entry["size"].as_u64(),
                    Some(download.body.len() as u64),
                    "{context}: {base} size"
                );
            }
            let shown = server.get(&base, None);
            assert_eq!(shown.status, 200, "{context}: GET {base}: {}", shown.text());
            let shown = shown.json();
            assert_eq!(
                shown["outline"]["version"],
                version(*patch).as_str(),
                "{context}: {base} has its outline: {shown}"
            );
            assert_eq!(shown["outline"]["name"], format!("{IDENTITY}/{project}").as_str());
        }
    }

    // The event log: numbered 1..head, each event about a listed version,
    // exactly one publish event per listed version and one revoke event per
    // revoked one.
    let events = all_events(server);
    let mut publish_events: BTreeMap<Key, usize> = BTreeMap::new();
    let mut revoke_events: BTreeMap<Key, usize> = BTreeMap::new();
    for event in &events {
        let package = event["package"].as_str().expect("package");
        let project = package
            .strip_prefix(&format!("{IDENTITY}/"))
            .unwrap_or_else(|| panic!("{context}: event about a package nobody published: {event}"));
        let patch = patch_of(event["version"].as_str().expect("version"));
        let entry = listed
            .get(project)
            .and_then(|versions| versions.get(&patch))
            .unwrap_or_else(|| panic!("{context}: event {event} names a version that is not listed"));
        let key = (project.to_string(), patch);
        match event["type"].as_str() {
            Some("publish") => *publish_events.entry(key).or_default() += 1,
            Some("revoke") => {
                assert!(
                    entry["revoked"].is_object(),
                    "{context}: revoke event {event} for a live version"
                );
                *revoke_events.entry(key).or_default() += 1;
            }
            other => panic!("{context}: event type {other:?}: {event}"),
        }
    }
    for (project, versions) in &listed {
        for (patch, entry) in versions {
            let key = (project.clone(), *patch);
            assert_eq!(
                publish_events.get(&key).copied().unwrap_or(0),
                1,
                "{context}: {IDENTITY}/{project} {} needs exactly one publish event",
                version(*patch)
            );
            let expected = usize::from(entry["revoked"].is_object());
            assert_eq!(
                revoke_events.get(&key).copied().unwrap_or(0),
                expected,
                "{context}: {IDENTITY}/{project} {} revoke events",
                version(*patch)
            );
        }
    }

    // Members and invitations: every acknowledged change holds; the one in
    // flight may or may not have happened; nothing else appears.
    let identity = server.get(&format!("/publishing-identity/{IDENTITY}"), Some(token));
    assert_eq!(identity.status, 200, "{context}: GET identity: {}", identity.text());
    let mut actual = People::from_view(&identity.json());
    assert_eq!(
        actual.members.remove(ADMIN).as_deref(),
        Some("admin"),
        "{context}: the creator stays admin"
    );
    let in_flight = model.member_in_flight.take();
    let context = format!("{context} (in flight: {in_flight:?})");
    check_people(&context, "member", &model.people.members, &actual.members, &in_flight);
    check_people(
        &context,
        "invitation",
        &model.people.invitations,
        &actual.invitations,
        &in_flight,
    );

    // The audit log: numbered without gaps; replaying its member entries
    // gives exactly the members and invitations; every acknowledged publish
    // and revocation is in it once, nothing is in it twice.
    let audit = server.get(&format!("/publishing-identity/{IDENTITY}/audit"), Some(token));
    assert_eq!(audit.status, 200, "{context}: GET audit: {}", audit.text());
    let audit = audit.json();
    let mut replayed = People::default();
    let mut published: BTreeMap<Key, usize> = BTreeMap::new();
    let mut revoked: BTreeMap<Key, usize> = BTreeMap::new();
    for (index, entry) in audit["entries"].as_array().expect("entries").iter().enumerate() {
        assert_eq!(
            entry["seq"].as_u64(),
            Some(index as u64 + 1),
            "{context}: audit numbering: {entry}"
        );
        let key_of = |entry: &Value| {
            let project = entry["package"]
                .as_str()
                .unwrap()
                .strip_prefix(&format!("{IDENTITY}/"))
                .unwrap()
                .to_string();
            (project, patch_of(entry["version"].as_str().unwrap()))
        };
        if replayed.apply(entry) {
            continue;
        }
        match entry["action"].as_str().unwrap() {
            "published" => *published.entry(key_of(entry)).or_default() += 1,
            "revoked" => *revoked.entry(key_of(entry)).or_default() += 1,
            other => panic!("{context}: unexpected audit action {other}: {entry}"),
        }
    }
    actual.members.insert(ADMIN.to_string(), "admin".to_string());
    assert_eq!(
        replayed, actual,
        "{context}: the audit log's member changes replay to the members and invitations"
    );
    for (key, count) in published.iter().chain(revoked.iter()) {
        assert!(*count <= 1, "{context}: {key:?} is in the audit log {count} times");
        assert!(
            listed.get(&key.0).is_some_and(|versions| versions.contains_key(&key.1)),
            "{context}: the audit log names {key:?}, which is not listed"
        );
    }
    for key in model.acked.keys() {
        assert_eq!(
            published.get(key),
            Some(&1),
            "{context}: acknowledged publish {key:?} is not audited"
        );
    }
    for key in &model.revoke_acked {
        assert_eq!(
            revoked.get(key),
            Some(&1),
            "{context}: acknowledged revocation {key:?} is not audited"
        );
    }

    // Fold in: what a restarted server shows must stay.
    for (project, versions) in &listed {
        for (patch, entry) in versions {
            let key = (project.clone(), *patch);
            model
                .durable
                .insert(key.clone(), entry["sha256"].as_str().unwrap().to_string());
            if entry["revoked"].is_object() {
                model.revoked_durable.insert(key);
            }
        }
    }
    actual.members.remove(ADMIN);
    model.people = actual;
    listed
}

/// Every acknowledged member (or invitation) is there with its role, but the
/// change in flight may or may not have happened; nobody else appears.
fn check_people(
    context: &str,
    kind: &str,
    acknowledged: &BTreeMap<String, String>,
    actual: &BTreeMap<String, String>,
    in_flight: &Option<(String, String)>,
) {
    let was_in_flight =
        |email: &String, role: Option<&String>| in_flight.as_ref().is_some_and(|(e, r)| e == email && Some(r) == role);
    for (email, role) in acknowledged {
        let found = actual.get(email);
        assert!(
            found == Some(role) || was_in_flight(email, found),
            "{context}: {kind} {email} was acknowledged as {role}, the identity says {found:?}"
        );
    }
    for (email, role) in actual {
        assert!(
            acknowledged.contains_key(email) || was_in_flight(email, Some(role)),
            "{context}: {kind} {email} ({role}) appeared without being added"
        );
    }
}

// ---------------------------------------------------------------------------
// The load test
// ---------------------------------------------------------------------------

#[test]
fn sigkill_under_publish_revoke_and_member_load_keeps_every_acknowledged_write() {
    let scale = scale();
    let seed = seed();
    let rounds = 8 * scale;
    let publishers = 2 * scale;
    eprintln!("crash test: seed {seed} (GREN_PROOF_SEED={seed} replays), {rounds} rounds, scale {scale}");
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let dir = tempfile::Builder::new().prefix("gren-crash-").tempdir().unwrap();

    let mut model = Model::default();
    let package_counter = Arc::new(AtomicUsize::new(1));
    let mut states: Vec<Publisher> = (0..publishers).map(|_| Publisher { project: None, next: 0 }).collect();
    let mut fsck_failures: Vec<String> = Vec::new();
    let mut token = String::new();

    for round in 0..=rounds {
        let context = format!("seed {seed}, after kill {round}");
        let server = Server::start_in(dir.path(), &PROOF_ENV);
        if round == 0 {
            token = server.login(ADMIN);
            let created = server.post_json("/publishing-identity", &json!({ "name": IDENTITY }), Some(&token));
            assert_eq!(created.status, 200, "create identity: {}", created.text());
            for email in POOL {
                server.add_member(IDENTITY, &token, email, "download");
                model.people.members.insert(email.to_string(), "download".to_string());
            }
        } else {
            let listed = verify(&server, &token, &mut model, &context);
            // Each publisher goes on from what is listed now.
            for state in &mut states {
                if let Some(project) = &state.project {
                    state.next = listed
                        .get(project)
                        .and_then(|versions| versions.keys().next_back())
                        .map_or(0, |last| last + 1);
                }
            }
            // The restart swept every crash leftover: fsck, read-only beside
            // the idle server, finds nothing.
            let (clean, report, text) = fsck(dir.path());
            if !clean || report["clean"] != true {
                eprintln!("{context}: fsck after the restart:\n{text}");
                fsck_failures.push(format!("{context}: {}", report["problems"]));
            }
        }
        if round == rounds {
            // The final check is done; stop cleanly and fsck the stopped directory.
            let status = server.stop();
            assert!(status.success(), "the registry stops cleanly: {status:?}");
            break;
        }

        let model_shared = Arc::new(Mutex::new(std::mem::take(&mut model)));
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for (index, state) in states.iter().enumerate() {
            let (addr, token, model, stop, counter) = (
                server.addr,
                token.clone(),
                model_shared.clone(),
                stop.clone(),
                package_counter.clone(),
            );
            let (state, thread_rng, tag) = (state.clone(), Rng::new(rng.next()), format!("r{round}t{index}"));
            handles.push(std::thread::spawn(move || {
                publisher_thread(addr, token, model, stop, counter, state, thread_rng, tag)
            }));
        }
        let revoker = {
            let (addr, token, model, stop, thread_rng) = (
                server.addr,
                token.clone(),
                model_shared.clone(),
                stop.clone(),
                Rng::new(rng.next()),
            );
            std::thread::spawn(move || revoker_thread(addr, token, model, stop, thread_rng))
        };
        let members = {
            let (addr, token, model, stop, thread_rng) = (
                server.addr,
                token.clone(),
                model_shared.clone(),
                stop.clone(),
                Rng::new(rng.next()),
            );
            std::thread::spawn(move || member_thread(addr, token, model, stop, thread_rng))
        };

        std::thread::sleep(Duration::from_millis(rng.range(100, 400)));
        server.kill();
        stop.store(true, Ordering::SeqCst);
        let publishers = try_join_all(handles);
        let others = try_join_all(vec![revoker, members]);
        match (publishers, others) {
            (Ok(ended), Ok(_)) => states = ended,
            (Err(panic), _) | (_, Err(panic)) => {
                eprintln!("seed {seed}: a client saw a wrong answer in round {round}");
                std::panic::resume_unwind(panic);
            }
        }
        model = Arc::try_unwrap(model_shared)
            .ok()
            .expect("all clients joined")
            .into_inner()
            .unwrap();
    }

    let (clean, text) = fsck_text(dir.path());
    eprintln!(
        "crash test: seed {seed}: {} acknowledged publishes, {} revocations, {} member changes, {} requests cut by kills, {} versions durable, in {:.1} s",
        model.counts.publishes,
        model.counts.revokes,
        model.counts.member_changes,
        model.counts.failed_in_flight,
        model.durable.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        fsck_failures.is_empty(),
        "seed {seed}: fsck found problems right after restarts (the server did not clean crash debris):\n{}",
        fsck_failures.join("\n")
    );
    assert!(
        clean && text.trim_end().ends_with("clean"),
        "seed {seed}: final fsck:\n{text}"
    );
    assert!(model.counts.publishes > 0, "the load published something");
    assert!(model.counts.failed_in_flight > 0, "some kills cut requests in flight");
}

// ---------------------------------------------------------------------------
// Kills at exact moments, laid out by hand
// ---------------------------------------------------------------------------

/// A SIGKILL during the first publish of a package, after the bundle and
/// outline were written and before `package.json` (the commit point) was:
/// `packages/<a>/<p>/<v>/` exists without `packages/<a>/<p>/package.json`.
/// The restarted server must not show the version, and the directory must
/// pass fsck (data/README.md: "A bundle without a version in package.json is
/// the debris of a crash and is never served"; start-up removes debris).
#[test]
fn sigkill_during_the_first_publish_of_a_package_leaves_fsck_clean() {
    let dir = tempfile::Builder::new().prefix("gren-crash-first-").tempdir().unwrap();
    let server = Server::start_in(dir.path(), &PROOF_ENV);
    let token = server.login(ADMIN);
    let created = server.post_json("/publishing-identity", &json!({ "name": IDENTITY }), Some(&token));
    assert_eq!(created.status, 200, "{}", created.text());
    // A committed package beside it, so the identity's directory exists as in real life.
    let other = synthetic("crash/other", "1.0.0", "kept");
    let reply = server.publish(&token, &other);
    assert_eq!(reply.status, 201, "{}", reply.text());
    server.kill();

    // Exactly what `Packages::publish` has written when the kill lands
    // between the outline and the commit.
    let bytes = synthetic("crash/ghost", "1.0.0", "never committed");
    let version_dir = dir.path().join("packages/crash/ghost/1.0.0");
    std::fs::create_dir_all(&version_dir).unwrap();
    std::fs::write(version_dir.join("crash_ghost__1_0_0.pkg.gz"), &bytes).unwrap();
    let outline = decode(&bytes)["outline"].clone();
    let mut outline_text = serde_json::to_vec_pretty(&outline).unwrap();
    outline_text.push(b'\n');
    std::fs::write(version_dir.join("outline.json"), outline_text).unwrap();

    let server = Server::start_in(dir.path(), &PROOF_ENV);
    server
        .get("/packages/crash/ghost", None)
        .assert_error(404, "package_not_found");
    server
        .get("/packages/crash/ghost/1.0.0/bundle", None)
        .assert_error(404, "package_not_found");
    let status = server.stop();
    assert!(status.success());

    let (clean, text) = fsck_text(dir.path());
    assert!(
        clean && text.trim_end().ends_with("clean"),
        "after a restart, the debris of an uncommitted first publish must not be an fsck problem \
         (expected exit 0 and `clean`); fsck said:\n{text}\nleft on disk: {:?}",
        files_under(&dir.path().join("packages/crash/ghost"))
    );
}

/// A SIGKILL while an identity is created, after its first audit entry was
/// written and before `identity.json` (the commit point) was: the identity
/// does not exist, and the directory passes fsck after a restart.
#[test]
fn sigkill_during_identity_creation_leaves_fsck_clean() {
    let dir = tempfile::Builder::new()
        .prefix("gren-crash-identity-")
        .tempdir()
        .unwrap();
    // Let an operator create the identity, then take away the commit:
    // `identity::create` writes the user index, then audit entry 1, then
    // identity.json.
    admin(dir.path(), &["identity", "create", "ghost", "--admin", ADMIN]).success();
    std::fs::remove_file(dir.path().join("identities/ghost/identity.json")).unwrap();
    assert!(dir.path().join("identities/ghost/audit/000000000001.json").exists());

    let server = Server::start_in(dir.path(), &PROOF_ENV);
    server
        .get("/publishing-identity/ghost", None)
        .assert_error(404, "identity_not_found");
    let status = server.stop();
    assert!(status.success());

    let (clean, text) = fsck_text(dir.path());
    assert!(
        clean && text.trim_end().ends_with("clean"),
        "after a restart, the debris of an uncommitted identity creation must not be an fsck problem \
         (expected exit 0 and `clean`); fsck said:\n{text}"
    );
}
