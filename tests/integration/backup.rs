//! Backup proofs: `gren-registry admin snapshot` taken while the real binary
//! is under a publish/revoke load, copied into a fresh directory, passes
//! `admin fsck`, starts, and serves every version it lists byte for byte;
//! everything acknowledged before the snapshot began is in it.
//!
//! Sizes: `GREN_PROOF_SCALE` (default 1) multiplies the publisher threads
//! (3 × scale) and the snapshots taken during the load (2 × scale), each
//! restored and checked. At scale 1 (CI) the test takes a few seconds on 2
//! cores; try `GREN_PROOF_SCALE=5 cargo test --test integration backup:: --
//! --nocapture` for a longer local run.

use crate::common::bundles::*;
use crate::common::operator::*;
use crate::common::proofs::*;
use crate::common::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const IDENTITY: &str = "bak";
const OWNER: &str = "owner@example.com";

#[derive(Default, Clone)]
struct Model {
    attempted: BTreeMap<Key, String>,
    acked: BTreeMap<Key, String>,
    revoked: BTreeSet<Key>,
}

/// Publishes successive versions until `stop`, pausing `think` (a range of
/// milliseconds) between requests, as real clients do; `None`: back to back.
fn publisher(
    server: Arc<Server>,
    token: String,
    index: usize,
    model: Arc<Mutex<Model>>,
    stop: Arc<AtomicBool>,
    think: Option<(u64, u64)>,
) {
    // Two packages per thread, alternating, so snapshots catch several.
    let projects = [format!("b{index}x"), format!("b{index}y")];
    let mut next = [0u64, 0u64];
    let mut turn = 0u64;
    while !stop.load(Ordering::SeqCst) {
        if let Some((low, high)) = think {
            std::thread::sleep(Duration::from_millis(
                low + (turn * 7 + index as u64 * 13) % (high - low + 1),
            ));
        }
        let slot = (turn % 2) as usize;
        turn += 1;
        let project = &projects[slot];
        let patch = next[slot];
        let bytes = synthetic(
            &format!("{IDENTITY}/{project}"),
            &version(patch),
            &format!("backup {index}"),
        );
        let sha = sha256_hex(&bytes);
        model
            .lock()
            .unwrap()
            .attempted
            .insert((project.clone(), patch), sha.clone());
        let reply = server.publish(&token, &bytes);
        assert_eq!(reply.status, 201, "{project} {}: {}", version(patch), reply.text());
        assert_eq!(reply.json()["sha256"], sha.as_str());
        model.lock().unwrap().acked.insert((project.clone(), patch), sha);
        next[slot] += 1;
    }
}

fn revoker(server: Arc<Server>, token: String, model: Arc<Mutex<Model>>, stop: Arc<AtomicBool>) {
    let mut counter = 0u64;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(15));
        counter += 1;
        let victim = {
            let model = model.lock().unwrap();
            let live: Vec<&Key> = model.acked.keys().filter(|key| !model.revoked.contains(*key)).collect();
            if live.is_empty() {
                continue;
            }
            live[(counter * 7919) as usize % live.len()].clone()
        };
        let path = format!("/packages/{IDENTITY}/{}/{}/revoke", victim.0, version(victim.1));
        let reply = server.post_json(&path, &json!({ "reason": "backup test" }), Some(&token));
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        model.lock().unwrap().revoked.insert(victim);
    }
}

/// Restores `snapshot` into a fresh directory and checks it against what was
/// acknowledged before the snapshot began (`before`: all of it is in) and
/// what was sent before it ended (`after`: nothing else is in). Returns
/// (versions listed, revoked among them).
fn check_restored(snapshot: &Path, label: &str, before: &Model, after: &Model, token: &str) -> (usize, usize) {
    let fresh = tempfile::Builder::new().prefix("gren-restored-").tempdir().unwrap();
    let restored = fresh.path().join("data");
    copy_tree(snapshot, &restored);
    assert_fsck_finds_the_copy_clean(&restored, label);

    let server = Server::start_in(&restored, &PROOF_ENV);
    let listed = list_restored_packages(&server, after, label);
    let revoked_count = assert_listed_versions_were_sent_and_serve_as_listed(&server, &listed, after, label);
    assert_everything_acknowledged_before_is_in(&listed, before, label);
    assert_events_match_listing(&all_events(&server), IDENTITY, &listed, label);
    assert_the_copy_takes_the_next_publish(&server, &listed, token, label);
    let status = server.stop();
    assert!(status.success(), "{label}: the restored registry stops cleanly");
    let (clean, text) = fsck_text(&restored);
    assert!(clean, "{label}: fsck of the restored copy after use:\n{text}");
    (listed.values().map(BTreeMap::len).sum(), revoked_count)
}

/// Both forms of fsck find the restored copy clean.
fn assert_fsck_finds_the_copy_clean(restored: &Path, label: &str) {
    assert_fsck_clean(restored, &format!("{label}: fsck of the restored copy"));
    let report = admin_json(restored, &["fsck"]).json();
    assert_eq!(report["clean"], true, "{label}: fsck --json: {report}");
    assert_eq!(report["problems"], json!([]), "{label}: fsck --json: {report}");
}

/// Every package a client sent to, as the copy lists it: a point in time,
/// so each package's versions are its first k, without a hole.
fn list_restored_packages(server: &Server, after: &Model, label: &str) -> Listed {
    let projects: BTreeSet<String> = after.attempted.keys().map(|(project, _)| project.clone()).collect();
    let mut listed = Listed::new();
    for project in &projects {
        let Some(versions) = listed_versions(server, IDENTITY, project, label) else {
            continue;
        };
        assert_eq!(
            versions.keys().copied().collect::<Vec<_>>(),
            (0..versions.len() as u64).collect::<Vec<_>>(),
            "{label}: {project} lists a version without its predecessors"
        );
        listed.insert(project.clone(), versions);
    }
    listed
}

/// Every listed version holds bytes a client had sent when the snapshot
/// ended, and downloads as listed. Returns how many are revoked.
fn assert_listed_versions_were_sent_and_serve_as_listed(
    server: &Server,
    listed: &Listed,
    after: &Model,
    label: &str,
) -> usize {
    let mut revoked_count = 0;
    for (project, versions) in listed {
        for (patch, entry) in versions {
            let key = (project.clone(), *patch);
            assert_eq!(
                after.attempted.get(&key).map(String::as_str),
                Some(entry["sha256"].as_str().expect("sha256")),
                "{label}: {project} {} is listed with bytes nobody had sent when the snapshot ended",
                version(*patch)
            );
            if assert_downloads_as_listed(server, IDENTITY, &key, entry, label).is_none() {
                revoked_count += 1;
            }
        }
    }
    revoked_count
}

/// Everything acknowledged before the snapshot began is in it: the
/// publishes with their bytes, the revocations revoked.
fn assert_everything_acknowledged_before_is_in(listed: &Listed, before: &Model, label: &str) {
    for (key, sha) in &before.acked {
        let (project, patch) = key;
        let entry = listed_entry(listed, key).unwrap_or_else(|| {
            panic!(
                "{label}: {project} {} was acknowledged before the snapshot began but is not in it",
                version(*patch)
            )
        });
        assert_eq!(entry["sha256"], sha.as_str(), "{label}: {project} {}", version(*patch));
    }
    for (project, patch) in &before.revoked {
        assert!(
            listed[project][patch]["revoked"].is_object(),
            "{label}: {project} {} was revoked (acknowledged) before the snapshot began, but is live in it",
            version(*patch)
        );
    }
}

/// The copy is a working registry: the original's session works, and the
/// next version of a package can be published.
fn assert_the_copy_takes_the_next_publish(server: &Server, listed: &Listed, token: &str, label: &str) {
    let (project, versions) = listed.iter().next().expect("the copy holds packages");
    let next = versions.len() as u64;
    let bytes = synthetic(&format!("{IDENTITY}/{project}"), &version(next), "after the restore");
    let reply = server.publish(token, &bytes);
    assert_eq!(
        reply.status,
        201,
        "{label}: publishing into the restored copy: {}",
        reply.text()
    );
}

/// `admin --data-dir DIR --json snapshot DEST` in the background.
fn start_snapshot(dir: &Path, destination: &Path) -> Child {
    admin_command(dir)
        .args(["--json", "snapshot"])
        .arg(destination)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run gren-registry admin snapshot")
}

/// Waits up to `timeout` for `child`; `None` if it is still running.
fn wait_for(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the snapshot") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct Load {
    model: Arc<Mutex<Model>>,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(server: &Arc<Server>, token: &str, threads: usize, think: Option<(u64, u64)>) -> Load {
        let model: Arc<Mutex<Model>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for index in 0..threads {
            let (server, token, model, stop) = (server.clone(), token.to_string(), model.clone(), stop.clone());
            handles.push(std::thread::spawn(move || {
                publisher(server, token, index, model, stop, think)
            }));
        }
        let (server, token, model_, stop_) = (server.clone(), token.to_string(), model.clone(), stop.clone());
        handles.push(std::thread::spawn(move || revoker(server, token, model_, stop_)));
        Load { model, stop, handles }
    }

    fn snapshot(&self) -> Model {
        self.model.lock().unwrap().clone()
    }

    fn failed(&self) -> bool {
        self.handles.iter().any(|handle| handle.is_finished())
    }

    /// Stops the clients; re-raises a client's panic.
    fn stop(&mut self) -> Model {
        self.stop.store(true, Ordering::SeqCst);
        join_all(std::mem::take(&mut self.handles));
        self.model.lock().unwrap().clone()
    }
}

/// How long one snapshot may take while the load runs. The snapshot holds
/// the writers off only while it links files (milliseconds here), so this
/// is generous.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs a load, takes `snapshots` snapshots during it, stops it, and checks
/// every snapshot restored into a fresh directory.
fn snapshots_under_load(label: &str, threads: usize, snapshots: usize, think: Option<(u64, u64)>) {
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("gren-backup-").tempdir().unwrap();
    let work = tempfile::Builder::new().prefix("gren-backup-snaps-").tempdir().unwrap();
    let server = Arc::new(Server::start_in(dir.path(), &PROOF_ENV));
    let token = server.login(OWNER);
    let created = server.post_json("/publishing-identity", &json!({ "name": IDENTITY }), Some(&token));
    assert_eq!(created.status, 200, "{}", created.text());

    let mut load = Load::start(&server, &token, threads, think);
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    let mut taken = Vec::new();
    for index in 0..snapshots {
        // Let the load run (and grow) between snapshots.
        std::thread::sleep(Duration::from_millis(150 + seed.wrapping_mul(index as u64 + 1) % 150));
        assert!(!load.failed(), "{label}: a load thread stopped early");
        let destination = work.path().join(format!("snap{index}"));
        let (before, after) = snapshot_during_the_load(
            &mut load,
            dir.path(),
            &destination,
            &format!("{label}: snapshot {index}"),
        );
        taken.push((destination, before, after));
    }
    let all = stop_the_load_still_publishing(load, &taken, label);
    let server = Arc::try_unwrap(server).ok().expect("all clients joined");
    assert!(server.stop().success(), "{label}: the original registry stops cleanly");
    let (clean, text) = fsck_text(dir.path());
    assert!(clean, "{label}: fsck of the original after the load:\n{text}");

    for (index, (snapshot, before, after)) in taken.iter().enumerate() {
        let (listed, revoked) = check_restored(snapshot, &format!("{label}: snapshot {index}"), before, after, &token);
        assert!(listed >= before.acked.len());
        eprintln!(
            "{label}: snapshot {index} restored: {listed} versions listed ({revoked} revoked), all served as listed"
        );
    }
    eprintln!(
        "{label}: {} publishes, {} revocations, {} snapshots in {:.1} s",
        all.acked.len(),
        all.revoked.len(),
        taken.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Takes a snapshot of `dir` into `destination` while the load runs; it must
/// succeed within [`SNAPSHOT_TIMEOUT`]. Returns the clients' model just
/// before it began and just after it ended.
fn snapshot_during_the_load(load: &mut Load, dir: &Path, destination: &Path, label: &str) -> (Model, Model) {
    let before = load.snapshot();
    let asked = Instant::now();
    let mut child = start_snapshot(dir, destination);
    let Some(status) = wait_for(&mut child, SNAPSHOT_TIMEOUT) else {
        explain_a_starved_snapshot(load, child, &before, label);
    };
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    let took = asked.elapsed();
    let after = load.snapshot();
    assert!(
        status.success(),
        "{label}: admin snapshot during the load failed:\n{text}"
    );
    let report: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    eprintln!(
        "{label} in {:.0} ms: {} acknowledged before it, {} after it; {} files linked, {} copied, writers held {:.1} ms",
        took.as_secs_f64() * 1000.0,
        before.acked.len(),
        after.acked.len(),
        report["linked"],
        report["copied"],
        report["held_ms"].as_f64().unwrap_or(f64::NAN)
    );
    (before, after)
}

/// A snapshot still waiting for the writers' gate: stops the load, sees
/// whether it finishes then, and fails saying which.
fn explain_a_starved_snapshot(load: &mut Load, mut child: Child, before: &Model, label: &str) -> ! {
    let during = load.snapshot().acked.len() - before.acked.len();
    let _ = load.stop();
    let waited = Instant::now();
    let finished = wait_for(&mut child, Duration::from_secs(10));
    if finished.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!(
        "{label}: `admin snapshot` did not finish within {SNAPSHOT_TIMEOUT:?} under a publish load \
         ({during} publishes were acknowledged meanwhile, so the server's writers were never held off); \
         after the load stopped it {}. The snapshot's exclusive lock on writers.lock is starved by the \
         shared locks of overlapping writers.",
        match finished {
            Some(status) => format!("finished ({status}) in {:?}", waited.elapsed()),
            None => "still did not finish within 10 s".to_string(),
        }
    );
}

/// Lets the load go on a moment after the last snapshot, then stops it; it
/// must have published past the last snapshot. Returns its final model.
fn stop_the_load_still_publishing(mut load: Load, taken: &[(PathBuf, Model, Model)], label: &str) -> Model {
    std::thread::sleep(Duration::from_millis(100));
    let all = load.stop();
    let last_before = taken.last().map_or(0, |(_, before, _)| before.acked.len());
    assert!(
        all.acked.len() > last_before,
        "{label}: the load was still publishing after the last snapshot ({last_before} → {})",
        all.acked.len()
    );
    all
}

/// Clients that pause a few milliseconds between publishes, as people and
/// CI jobs do: every snapshot restores whole.
#[test]
fn snapshots_taken_during_a_publish_load_restore_whole() {
    let scale = scale();
    snapshots_under_load("paced load", 3 * scale, 2 * scale, Some((2, 12)));
}

/// Clients publishing back to back (a busy registry, a bulk import through
/// the API): a snapshot must still get its turn ("writers are held off ...
/// only while the links are made") and restore whole.
#[test]
fn a_snapshot_is_not_starved_by_back_to_back_publishes() {
    snapshots_under_load("back-to-back load", 3, 1, None);
}
