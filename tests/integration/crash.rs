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
/// A package of its own identity whose privacy the load toggles.
const TOGGLED_IDENTITY: &str = "crash-privacy";
const TOGGLED: &str = "crash-privacy/toggled";

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
    /// The toggled package's privacy changes (`true`: made private),
    /// acknowledged or seen after a restart, in order.
    privacy: Vec<bool>,
    /// The privacy change in flight when the server was killed.
    privacy_in_flight: Option<bool>,
    counts: Counts,
}

#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    publishes: usize,
    revokes: usize,
    member_changes: usize,
    privacy_changes: usize,
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

/// Makes the toggled package private, then public, and so on, at random moments.
fn privacy_thread(addr: SocketAddr, token: String, model: Arc<Mutex<Model>>, stop: Arc<AtomicBool>, mut rng: Rng) {
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(rng.range(5, 40)));
        let private = {
            let mut model = model.lock().unwrap();
            let private = !model.privacy.last().copied().unwrap_or(false);
            model.privacy_in_flight = Some(private);
            private
        };
        let body = serde_json::to_vec(&json!({ "private": private })).unwrap();
        let path = format!("/packages/{TOGGLED}");
        match try_request(addr, "PATCH", &path, Some(&token), Some("application/json"), &body) {
            Ok(reply) if reply.status == 200 => {
                let mut model = model.lock().unwrap();
                model.privacy.push(private);
                model.privacy_in_flight = None;
                model.counts.privacy_changes += 1;
            }
            Ok(reply) => panic!("PATCH {path} answered {}: {}", reply.status, reply.text()),
            Err(_) => {
                model.lock().unwrap().counts.failed_in_flight += 1;
                break;
            }
        }
    }
}

/// Every acknowledged privacy change of the toggled package holds, with its
/// audit entry and its event, in order; the one in flight may have happened.
fn assert_privacy_changes_hold(server: &Server, token: &str, model: &mut Model, context: &str) {
    let audit = server.get(&format!("/publishing-identity/{TOGGLED_IDENTITY}/audit"), Some(token));
    assert_eq!(audit.status, 200, "{context}: {}", audit.text());
    let audited: Vec<bool> = audit.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "privacy_changed")
        .map(|entry| entry["private"].as_bool().unwrap())
        .collect();
    let mut possible = vec![model.privacy.clone()];
    possible.extend(
        model
            .privacy_in_flight
            .map(|private| [model.privacy.clone(), vec![private]].concat()),
    );
    assert!(
        possible.contains(&audited),
        "{context}: the audit log's privacy changes {audited:?}, acknowledged {:?} (in flight {:?})",
        model.privacy,
        model.privacy_in_flight
    );
    let announced: Vec<bool> = all_events(server)
        .iter()
        .filter(|event| event["package"] == TOGGLED && event["version"].is_null())
        .map(|event| event["type"] == "private")
        .collect();
    assert_eq!(announced, audited, "{context}: every privacy change has its event");
    let record = server.get(&format!("/packages/{TOGGLED}"), Some(token)).json();
    assert_eq!(
        record["private"],
        audited.last().copied().unwrap_or(false),
        "{context}: {record}"
    );
    model.privacy = audited;
    model.privacy_in_flight = None;
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
fn verify(server: &Server, token: &str, model: &mut Model, context: &str) -> Listed {
    assert_the_session_survives(server, token, context);
    let listed = list_every_package(server, model, context);
    assert_acknowledged_publishes_are_listed(&listed, model, context);
    assert_acknowledged_revocations_hold(&listed, model, context);
    assert_listed_versions_are_whole(server, &listed, model, context);
    let mut events = all_events(server);
    events.retain(|event| event["package"] != TOGGLED);
    assert_events_match_listing(&events, IDENTITY, &listed, context);
    assert_privacy_changes_hold(server, token, model, context);
    let in_flight = model.member_in_flight.take();
    let context = format!("{context} (in flight: {in_flight:?})");
    let people = assert_people_follow_acknowledged_changes(server, token, model, &in_flight, &context);
    assert_audit_log_agrees(server, token, &listed, model, &people, &context);
    fold_into_model(model, &listed, people);
    listed
}

/// The session made before the first crash still works.
fn assert_the_session_survives(server: &Server, token: &str, context: &str) {
    let user = server.get("/user", Some(token));
    assert_eq!(
        user.status,
        200,
        "{context}: the admin's session survives restarts: {}",
        user.text()
    );
}

/// The versions of every package a client ever sent, as listed; a package
/// may be missing only if none of its versions was acknowledged or seen.
fn list_every_package(server: &Server, model: &Model, context: &str) -> Listed {
    let projects: BTreeSet<String> = model.attempted.keys().map(|(project, _)| project.clone()).collect();
    let mut listed = Listed::new();
    for project in &projects {
        let Some(versions) = listed_versions(server, IDENTITY, project, context) else {
            for key in model.acked.keys().chain(model.durable.keys()) {
                assert_ne!(
                    &key.0,
                    project,
                    "{context}: {IDENTITY}/{project} {} was acknowledged or seen, but the package is gone",
                    version(key.1)
                );
            }
            continue;
        };
        listed.insert(project.clone(), versions);
    }
    listed
}

/// Acknowledged (or previously seen) publishes are present, with their bytes' hash.
fn assert_acknowledged_publishes_are_listed(listed: &Listed, model: &Model, context: &str) {
    for (source, map) in [
        ("acknowledged", &model.acked),
        ("seen after an earlier restart", &model.durable),
    ] {
        for (key, sha) in map {
            let (project, patch) = key;
            let entry = listed_entry(listed, key).unwrap_or_else(|| {
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
}

/// Acknowledged (or previously seen) revocations hold.
fn assert_acknowledged_revocations_hold(listed: &Listed, model: &Model, context: &str) {
    for key in model.revoke_acked.iter().chain(model.revoked_durable.iter()) {
        let entry = &listed[&key.0][&key.1];
        assert!(
            entry["revoked"].is_object(),
            "{context}: {IDENTITY}/{} {} was revoked (acknowledged) but is live again: {entry}",
            key.0,
            version(key.1)
        );
    }
}

/// Everything listed is whole: a bundle we sent for that version, served
/// byte for byte, or 410 when revoked; its outline is there.
fn assert_listed_versions_are_whole(server: &Server, listed: &Listed, model: &Model, context: &str) {
    for (project, versions) in listed {
        for (patch, entry) in versions {
            let key = (project.clone(), *patch);
            let sha = entry["sha256"].as_str().expect("sha256");
            assert!(
                model.attempted.get(&key).is_some_and(|shas| shas.contains(sha)),
                "{context}: {IDENTITY}/{project} {} is listed with a sha256 no client ever sent: {entry}",
                version(*patch)
            );
            let base = format!("/packages/{IDENTITY}/{project}/{}", version(*patch));
            if let Some(bytes) = assert_downloads_as_listed(server, IDENTITY, &key, entry, context) {
                assert_eq!(
                    entry["size"].as_u64(),
                    Some(bytes.len() as u64),
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
}

/// Members and invitations: every acknowledged change holds; the one in
/// flight may or may not have happened; nothing else appears. Returns them
/// (but the creator).
fn assert_people_follow_acknowledged_changes(
    server: &Server,
    token: &str,
    model: &Model,
    in_flight: &Option<(String, String)>,
    context: &str,
) -> People {
    let identity = server.get(&format!("/publishing-identity/{IDENTITY}"), Some(token));
    assert_eq!(identity.status, 200, "{context}: GET identity: {}", identity.text());
    let mut actual = People::from_view(&identity.json());
    assert_eq!(
        actual.members.remove(ADMIN).as_deref(),
        Some("admin"),
        "{context}: the creator stays admin"
    );
    check_people(context, "member", &model.people.members, &actual.members, in_flight);
    check_people(
        context,
        "invitation",
        &model.people.invitations,
        &actual.invitations,
        in_flight,
    );
    actual
}

/// The audit log: replaying its member entries gives exactly the members
/// and invitations (`people`, but the creator); every acknowledged publish
/// and revocation is in it once, nothing is in it twice.
fn assert_audit_log_agrees(
    server: &Server,
    token: &str,
    listed: &Listed,
    model: &Model,
    people: &People,
    context: &str,
) {
    let audit = replay_audit(server, IDENTITY, token, context);
    let mut expected = people.clone();
    expected.members.insert(ADMIN.to_string(), "admin".to_string());
    assert_eq!(
        audit.people, expected,
        "{context}: the audit log's member changes replay to the members and invitations"
    );
    for (key, count) in audit.published.iter().chain(audit.revoked.iter()) {
        assert!(*count <= 1, "{context}: {key:?} is in the audit log {count} times");
        assert!(
            listed_entry(listed, key).is_some(),
            "{context}: the audit log names {key:?}, which is not listed"
        );
    }
    for key in model.acked.keys() {
        assert_eq!(
            audit.published.get(key),
            Some(&1),
            "{context}: acknowledged publish {key:?} is not audited"
        );
    }
    for key in &model.revoke_acked {
        assert_eq!(
            audit.revoked.get(key),
            Some(&1),
            "{context}: acknowledged revocation {key:?} is not audited"
        );
    }
}

/// What a restarted server shows must stay: it becomes the model's durable
/// state.
fn fold_into_model(model: &mut Model, listed: &Listed, people: People) {
    for (project, versions) in listed {
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
    model.people = people;
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
fn sigkill_under_publish_revoke_member_and_privacy_load_keeps_every_acknowledged_write() {
    let scale = scale();
    let seed = seed();
    let rounds = 8 * scale;
    eprintln!("crash test: seed {seed} (GREN_PROOF_SEED={seed} replays), {rounds} rounds, scale {scale}");
    let started = Instant::now();
    let mut run = LoadRun::new(seed, 2 * scale);
    for round in 0..=rounds {
        let server = Server::start_in(run.dir.path(), &PROOF_ENV);
        if round == 0 {
            run.create_the_identity_and_its_pool(&server);
        } else {
            run.check_the_restarted_server(&server, &format!("seed {seed}, after kill {round}"));
        }
        if round == rounds {
            // The final check is done; stop cleanly and fsck the stopped directory.
            let status = server.stop();
            assert!(status.success(), "the registry stops cleanly: {status:?}");
            break;
        }
        run.load_until_killed(server, round);
    }
    run.assert_the_stopped_directory_is_clean(started);
}

/// The load test's state from round to round.
struct LoadRun {
    seed: u64,
    rng: Rng,
    dir: tempfile::TempDir,
    model: Model,
    package_counter: Arc<AtomicUsize>,
    states: Vec<Publisher>,
    fsck_failures: Vec<String>,
    token: String,
}

impl LoadRun {
    fn new(seed: u64, publishers: usize) -> LoadRun {
        LoadRun {
            seed,
            rng: Rng::new(seed),
            dir: tempfile::Builder::new().prefix("gren-crash-").tempdir().unwrap(),
            model: Model::default(),
            package_counter: Arc::new(AtomicUsize::new(1)),
            states: (0..publishers).map(|_| Publisher { project: None, next: 0 }).collect(),
            fsck_failures: Vec::new(),
            token: String::new(),
        }
    }

    /// Before the first kill: the admin's session, the identity, and the
    /// pool of members whose roles the load changes.
    fn create_the_identity_and_its_pool(&mut self, server: &Server) {
        self.token = server.login(ADMIN);
        let created = server.post_json("/publishing-identity", &json!({ "name": IDENTITY }), Some(&self.token));
        assert_eq!(created.status, 200, "create identity: {}", created.text());
        for email in POOL {
            server.add_member(IDENTITY, &self.token, email, "download");
            self.model
                .people
                .members
                .insert(email.to_string(), "download".to_string());
        }
        let created = server.post_json(
            "/publishing-identity",
            &json!({ "name": TOGGLED_IDENTITY }),
            Some(&self.token),
        );
        assert_eq!(created.status, 200, "create identity: {}", created.text());
        let published = server.publish(&self.token, &synthetic(TOGGLED, "1.0.0", "toggled"));
        assert_eq!(published.status, 201, "{}", published.text());
    }

    /// After a kill: the server shows every acknowledged write, each
    /// publisher goes on from what is listed now, and the restart swept
    /// every crash leftover (fsck, read-only beside the idle server, finds
    /// nothing; its failures are reported at the end).
    fn check_the_restarted_server(&mut self, server: &Server, context: &str) {
        let listed = verify(server, &self.token, &mut self.model, context);
        for state in &mut self.states {
            if let Some(project) = &state.project {
                state.next = listed
                    .get(project)
                    .and_then(|versions| versions.keys().next_back())
                    .map_or(0, |last| last + 1);
            }
        }
        let (clean, report, text) = fsck(self.dir.path());
        if !clean || report["clean"] != true {
            eprintln!("{context}: fsck after the restart:\n{text}");
            self.fsck_failures.push(format!("{context}: {}", report["problems"]));
        }
    }

    /// Publishers, a revoker and a member changer against `server` until a
    /// SIGKILL at a random moment; their model of what was acknowledged
    /// comes back into the run.
    fn load_until_killed(&mut self, server: Server, round: usize) {
        let model = Arc::new(Mutex::new(std::mem::take(&mut self.model)));
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, token) = (server.addr, &self.token);
        let handles: Vec<_> = self
            .states
            .iter()
            .enumerate()
            .map(|(index, state)| {
                let (token, model, stop, counter) =
                    (token.clone(), model.clone(), stop.clone(), self.package_counter.clone());
                let (state, rng, tag) = (state.clone(), Rng::new(self.rng.next()), format!("r{round}t{index}"));
                std::thread::spawn(move || publisher_thread(addr, token, model, stop, counter, state, rng, tag))
            })
            .collect();
        let revoker = {
            let (token, model, stop, rng) = (token.clone(), model.clone(), stop.clone(), Rng::new(self.rng.next()));
            std::thread::spawn(move || revoker_thread(addr, token, model, stop, rng))
        };
        let members = {
            let (token, model, stop, rng) = (token.clone(), model.clone(), stop.clone(), Rng::new(self.rng.next()));
            std::thread::spawn(move || member_thread(addr, token, model, stop, rng))
        };
        let privacy = {
            let (token, model, stop, rng) = (token.clone(), model.clone(), stop.clone(), Rng::new(self.rng.next()));
            std::thread::spawn(move || privacy_thread(addr, token, model, stop, rng))
        };

        std::thread::sleep(Duration::from_millis(self.rng.range(100, 400)));
        server.kill();
        stop.store(true, Ordering::SeqCst);
        match (try_join_all(handles), try_join_all(vec![revoker, members, privacy])) {
            (Ok(states), Ok(_)) => self.states = states,
            (Err(panic), _) | (_, Err(panic)) => {
                eprintln!("seed {}: a client saw a wrong answer in round {round}", self.seed);
                std::panic::resume_unwind(panic);
            }
        }
        self.model = Arc::try_unwrap(model)
            .ok()
            .expect("all clients joined")
            .into_inner()
            .unwrap();
    }

    /// No restart left debris, the stopped directory passes fsck, and the
    /// load did publish and did have requests cut by kills.
    fn assert_the_stopped_directory_is_clean(self, started: Instant) {
        let (seed, counts) = (self.seed, self.model.counts);
        eprintln!(
            "crash test: seed {seed}: {} acknowledged publishes, {} revocations, {} member changes, {} privacy changes, {} requests cut by kills, {} versions durable, in {:.1} s",
            counts.publishes,
            counts.revokes,
            counts.member_changes,
            counts.privacy_changes,
            counts.failed_in_flight,
            self.model.durable.len(),
            started.elapsed().as_secs_f64()
        );
        assert!(
            self.fsck_failures.is_empty(),
            "seed {seed}: fsck found problems right after restarts (the server did not clean crash debris):\n{}",
            self.fsck_failures.join("\n")
        );
        assert_fsck_clean(self.dir.path(), &format!("seed {seed}: final fsck"));
        assert!(counts.publishes > 0, "the load published something");
        assert!(counts.privacy_changes > 0, "the load changed privacy");
        assert!(counts.failed_in_flight > 0, "some kills cut requests in flight");
    }
}

// ---------------------------------------------------------------------------
// Kills at exact moments, laid out by hand
// ---------------------------------------------------------------------------

/// A SIGKILL during the first publish of a package, after the bundle was
/// staged and before the version's record (the commit point) was written:
/// `first-publish.pending` and the bundle, with `package.json` or not yet.
/// The restarted server must not show the version, and the directory must
/// pass fsck (data/README.md: a package directory without a version record
/// that holds what a first publish writes before its commit is debris, never
/// served; start-up removes debris).
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
    // between staging the bundle and the commit: before `package.json`
    // (ghost) and after it (staged, its record copied from the committed
    // package's, as the publish writes one).
    let mut ghosts = Vec::new();
    for (ghost, with_package_json) in [("ghost", false), ("staged", true)] {
        let name = format!("{IDENTITY}/{ghost}");
        let bytes = synthetic(&name, "1.0.0", "never committed");
        let package_dir = dir.path().join("packages").join(&name);
        std::fs::create_dir_all(&package_dir).unwrap();
        std::fs::write(package_dir.join("first-publish.pending"), b"").unwrap();
        std::fs::write(package_dir.join(format!("crash_{ghost}__1_0_0.pkg.gz")), &bytes).unwrap();
        std::fs::write(package_dir.join(".tmp-record"), b"{\"name\": ").unwrap();
        if with_package_json {
            let mut record = read_json(&dir.path().join("packages/crash/other/package.json"));
            record["name"] = json!(name);
            std::fs::write(package_dir.join("package.json"), record.to_string()).unwrap();
        }
        ghosts.push((name, package_dir));
    }

    let server = Server::start_in(dir.path(), &PROOF_ENV);
    for (name, _) in &ghosts {
        server
            .get(&format!("/packages/{name}"), None)
            .assert_error(404, "package_not_found");
        server
            .get(&format!("/packages/{name}/1.0.0/bundle"), None)
            .assert_error(404, "package_not_found");
    }
    let status = server.stop();
    assert!(status.success());

    for (_, package_dir) in &ghosts {
        assert!(!package_dir.exists(), "start-up removed exactly what the publish left");
    }
    assert!(!dir.path().join("quarantine").exists(), "and quarantined nothing");
    let left = files_under(&dir.path().join("packages/crash"));
    assert_fsck_clean(
        dir.path(),
        &format!(
            "after a restart, the debris of an uncommitted first publish (left on disk: {left:?}) must not be an \
             fsck problem"
        ),
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

    assert_fsck_clean(
        dir.path(),
        "after a restart, the debris of an uncommitted identity creation must not be an fsck problem",
    );
}
