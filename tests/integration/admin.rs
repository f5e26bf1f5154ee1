//! The operator commands (`gren-registry admin ...`) run as child processes
//! against real data directories: identity creation, importing the real
//! compiler bundles, showing identities and users, revoking sessions and
//! versions, the outbox, stats, fsck (each kind of damage, found and, where
//! safe, repaired), snapshots (hard links, a server starts on them), the lock
//! that keeps changing commands away from a running server, and text versus
//! `--json` output.

use crate::common::bundles::*;
use crate::common::disk::small_disk_or_skip;
use crate::common::operator::*;
use crate::common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ME: &str = "me@example.com";

fn s(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

// ---------------------------------------------------------------------------
// Data directories
// ---------------------------------------------------------------------------

/// A data directory in a temporary directory (`<tmp>/data`, not created).
struct Dir {
    tmp: tempfile::TempDir,
    path: PathBuf,
}

impl Dir {
    fn join(&self, relative: &str) -> PathBuf {
        self.path.join(relative)
    }

    /// Another path in the same temporary directory.
    fn sibling(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A full copy (real bytes, not links) in a new temporary directory, to
    /// damage without touching this one.
    fn copy(&self) -> Dir {
        let copy = fresh();
        copy_tree(&self.path, &copy.path);
        copy
    }
}

fn fresh() -> Dir {
    let tmp = tempfile::Builder::new().prefix("gren-admin-test-").tempdir().unwrap();
    let path = tmp.path().join("data");
    Dir { tmp, path }
}

/// A data directory with the identities `gren-lang` and `blaix` (admin ME),
/// made by the operator command.
fn with_identities() -> Dir {
    let dir = fresh();
    admin(&dir.path, &["identity", "create", "gren-lang", "--admin", ME]).success();
    admin(&dir.path, &["identity", "create", "blaix", "--admin", ME]).success();
    dir
}

/// [`with_identities`] plus every real bundle imported.
fn imported() -> Dir {
    let dir = with_identities();
    let paths = real_paths();
    let mut args = vec!["import"];
    args.extend(paths.iter().map(|path| s(path)));
    admin(&dir.path, &args).success();
    dir
}

/// A real bundle: its path, bytes, package name and version (from its outline).
struct Real {
    path: PathBuf,
    file: String,
    bytes: Vec<u8>,
    name: String,
    version: String,
}

fn reals() -> Vec<Real> {
    all_real_bundles()
        .into_iter()
        .map(|(file, bytes)| {
            let outline = decode(&bytes)["outline"].clone();
            Real {
                path: real_bundles_dir().join(&file),
                file,
                name: outline["name"].as_str().unwrap().to_string(),
                version: outline["version"].as_str().unwrap().to_string(),
                bytes,
            }
        })
        .collect()
}

fn real_paths() -> Vec<PathBuf> {
    reals().into_iter().map(|real| real.path).collect()
}

fn real_path(file: &str) -> PathBuf {
    real_bundles_dir().join(file)
}

/// Where a version's bundle lives in a data directory: beside its record.
fn bundle_file(dir: &Dir, name: &str, version: &str) -> PathBuf {
    dir.join(&format!("packages/{name}/{}", bundle_file_name(name, version)))
}

/// Asserts that a running server serves every real bundle byte for byte.
#[track_caller]
fn assert_serves_all_real(server: &Server) {
    for real in reals() {
        let reply = server.get(&format!("/packages/{}/{}/bundle", real.name, real.version), None);
        assert_eq!(reply.status, 200, "{} {}: {}", real.name, real.version, reply.text());
        assert!(
            reply.body == real.bytes,
            "{} {} is served with {} bytes, not the {} bytes imported",
            real.name,
            real.version,
            reply.body.len(),
            real.bytes.len()
        );
        assert_eq!(
            reply.header("etag"),
            Some(format!("\"{}\"", sha256_hex(&real.bytes)).as_str())
        );
    }
}

/// The six packages of the real bundles and their newest versions.
fn expected_listing() -> BTreeMap<String, String> {
    let mut latest = BTreeMap::new();
    for real in reals() {
        // File names sort versions of one package in ascending order here.
        latest.insert(real.name, real.version);
    }
    latest
}

// ---------------------------------------------------------------------------
// identity create, and the lock
// ---------------------------------------------------------------------------

#[test]
fn identity_create_works_on_fresh_and_existing_dirs_reserved_names_included() {
    let dir = fresh();
    assert!(!dir.path.exists());
    // A fresh directory: created, with a reserved name.
    let out = admin(
        &dir.path,
        &["identity", "create", "admin", "--admin", "Ops@Example.com"],
    )
    .success();
    out.assert_stdout_has("created identity admin");
    let record = read_json(&dir.join("identities/admin/identity.json"));
    assert_eq!(record["name"], "admin");
    assert_eq!(
        record["members"][0]["email"], "ops@example.com",
        "addresses are lower-cased: {record}"
    );
    assert_eq!(record["members"][0]["role"], "admin");
    assert!(
        dir.join("users/ops@example.com.json").exists(),
        "the admin's user record exists"
    );

    // An existing directory: more identities, reserved ones too.
    admin(&dir.path, &["identity", "create", "gren-lang", "--admin", ME]).success();
    let out = admin_json(&dir.path, &["identity", "create", "api", "--admin", ME]).success();
    assert_eq!(out.json(), json!({ "name": "api", "admin": ME }));

    // Names stay unique regardless of case; bad input is refused.
    let out = admin(&dir.path, &["identity", "create", "Admin", "--admin", ME]).failure();
    assert!(out.all().contains("taken"), "{out:?}");
    admin(&dir.path, &["identity", "create", "bad name!", "--admin", ME]).failure();
    admin(&dir.path, &["identity", "create", "fine", "--admin", "not-an-address"]).failure();
    assert!(!dir.join("identities/fine").exists());

    // A server on the directory sees them; users may not take reserved names.
    let server = Server::start_in(&dir.path, &[]);
    let reply = server.get("/publishing-identity/admin", None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["name"], "admin");
    let token = server.login(ME);
    let user = server.get("/user", Some(&token));
    assert_eq!(user.status, 200);
    let user_json = user.json();
    let names: Vec<&str> = user_json["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"api") && names.contains(&"gren-lang"),
        "GET /user: {}",
        user.text()
    );
    server
        .post_json("/publishing-identity", &json!({ "name": "www" }), Some(&token))
        .assert_error(409, "name_reserved");
    server.stop();
}

#[test]
fn an_operator_links_an_identity_to_its_github_owner_and_unlinks_it() {
    let dir = fresh();
    let out = admin_json(
        &dir.path,
        &[
            "identity",
            "create",
            "gren-lang",
            "--admin",
            ME,
            "--github-owner-id",
            "42",
        ],
    )
    .success();
    assert_eq!(
        out.json(),
        json!({ "name": "gren-lang", "admin": ME, "github_owner_id": 42 })
    );
    let shown = admin_json(&dir.path, &["identity", "show", "gren-lang"])
        .success()
        .json();
    assert_eq!(shown["github"]["owner_id"], 42, "{shown}");
    let kinds = |shown: &Value| -> Vec<String> {
        shown["audit"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["action"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(kinds(&shown), ["created", "github_linked"]);
    admin(&dir.path, &["identity", "link-github", "gren-lang", "--owner-id", "42"])
        .success()
        .assert_stdout_has("(as it was)");
    admin(&dir.path, &["identity", "show", "gren-lang"])
        .success()
        .assert_stdout_has("github: owner id 42")
        .assert_stdout_has("audit log:\n  1 ")
        .assert_stdout_has("operator: created admin=\"me@example.com\"")
        .assert_stdout_has("operator: github_linked owner_id=42");
    admin(&dir.path, &["identity", "unlink-github", "gren-lang"])
        .success()
        .assert_stdout_has("unlinked gren-lang from GitHub");
    let shown = admin_json(&dir.path, &["identity", "show", "gren-lang"])
        .success()
        .json();
    assert!(shown["github"].is_null(), "{shown}");
    assert_eq!(kinds(&shown), ["created", "github_linked", "github_unlinked"]);
    admin(&dir.path, &["identity", "link-github", "nobody", "--owner-id", "1"]).failure();
    admin(&dir.path, &["identity", "link-github", "gren-lang", "--owner-id", "x"]).failure();
}

// ---------------------------------------------------------------------------
// import
// ---------------------------------------------------------------------------

#[test]
fn import_all_real_bundles_then_a_server_serves_them_byte_identical() {
    let dir = with_identities();
    let reals = reals();
    assert_eq!(reals.len(), 12, "the shared test bundles");
    let mut args = vec!["import"];
    args.extend(reals.iter().map(|real| s(&real.path)));
    let out = admin(&dir.path, &args).success();
    for real in &reals {
        out.assert_stdout_has(&format!(
            "imported: {} {} ({})",
            real.name,
            real.version,
            real.path.display()
        ));
        let stored = std::fs::read(bundle_file(&dir, &real.name, &real.version)).unwrap();
        assert!(stored == real.bytes, "{} is stored as uploaded", real.file);
    }
    assert_eq!(
        out.stdout.lines().filter(|line| line.starts_with("imported: ")).count(),
        12
    );

    let server = Server::start_in(&dir.path, &[]);
    assert_serves_all_real(&server);
    assert_eq!(server.listing("/packages", None), expected_listing());
    for real in &reals {
        let reply = server.get(&format!("/packages/{}/{}", real.name, real.version), None);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["sha256"], sha256_hex(&real.bytes));
    }
    let events = server.get("/events?since=0", None);
    assert_eq!(events.status, 200, "{}", events.text());
    let events = events.json();
    assert_eq!(events["head"], 12, "{events}");
    let announced: Vec<(String, String)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            assert_eq!(event["type"], "publish", "{event}");
            (
                event["package"].as_str().unwrap().to_string(),
                event["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let imported: Vec<(String, String)> = reals
        .iter()
        .map(|real| (real.name.clone(), real.version.clone()))
        .collect();
    assert_eq!(announced, imported, "one public event per import, in order");
    server.stop();
}

#[test]
fn import_private_makes_new_packages_private() {
    let dir = with_identities();
    let url = real_path("gren_lang_url__5_0_0.pkg.gz");
    let ws4sql = real_path("blaix_gren_ws4sql__2_0_0.pkg.gz");
    let core = real_path("gren_lang_core__7_0_0.pkg.gz");
    admin(&dir.path, &["import", "--private", s(&url), s(&ws4sql)]).success();
    admin(&dir.path, &["import", s(&core)]).success();
    assert_eq!(
        read_json(&dir.join("packages/gren-lang/url/package.json"))["private"],
        true
    );
    assert_eq!(
        read_json(&dir.join("packages/gren-lang/core/package.json"))["private"],
        false
    );

    let stats = admin_json(&dir.path, &["stats"]).success().json();
    assert_eq!(stats["private_packages"], 2, "{stats}");
    assert_eq!(stats["events"], 1, "private packages have no public events: {stats}");
    admin(&dir.path, &["identity", "show", "gren-lang"])
        .success()
        .assert_stdout_has("gren-lang/url 5.0.0 (private)");

    let server = Server::start_in(&dir.path, &[]);
    server
        .get("/packages/gren-lang/url", None)
        .assert_error(404, "package_not_found");
    server
        .get("/packages/blaix/gren-ws4sql", None)
        .assert_error(404, "package_not_found");
    assert_eq!(server.get("/packages/gren-lang/url/5.0.0/bundle", None).status, 404);
    assert_eq!(server.get("/packages/gren-lang/core", None).status, 200);
    assert_eq!(
        server.listing("/packages", None).keys().collect::<Vec<_>>(),
        ["gren-lang/core"]
    );
    // Members see them.
    let token = server.login(ME);
    let reply = server.get("/packages/gren-lang/url", Some(&token));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["private"], true);
    let bundle = server.get("/packages/gren-lang/url/5.0.0/bundle", Some(&token));
    assert_eq!(bundle.status, 200);
    assert!(bundle.body == std::fs::read(&url).unwrap());
    server.stop();
}

#[test]
fn import_follows_the_kernel_code_setting_of_the_server() {
    let dir = with_identities();
    let url = real_path("gren_lang_url__5_0_0.pkg.gz");
    // gren-lang/url has kernel code: refused when the setting leaves gren-lang out.
    let out = admin(&dir.path, &["import", "--kernel-code-authors", "blaix", s(&url)]).failure();
    out.assert_stdout_has("only the identities named in GREN_REGISTRY_KERNEL_CODE_AUTHORS");
    assert!(!dir.join("packages/gren-lang/url/package.json").exists());
    // The default names gren-lang.
    admin(&dir.path, &["import", s(&url)])
        .success()
        .assert_stdout_has("imported: gren-lang/url 5.0.0");
}

#[test]
fn importing_the_same_file_twice_says_already_present() {
    let dir = imported();
    let core = real_path("gren_lang_core__7_0_0.pkg.gz");
    let out = admin(&dir.path, &["import", s(&core)]).success();
    out.assert_stdout_has(&format!("already present: gren-lang/core 7.0.0 ({})", core.display()));
    assert!(!out.stdout.contains("imported:"), "{}", out.stdout);
    let out = admin_json(&dir.path, &["import", s(&core), s(&core)]).success();
    let results = out.json()["results"].clone();
    assert_eq!(results.as_array().unwrap().len(), 2, "{results}");
    for result in results.as_array().unwrap() {
        assert_eq!(result["status"], "already present", "{result}");
        assert_eq!(result["package"], "gren-lang/core");
        assert_eq!(result["version"], "7.0.0");
    }
    let stats = admin_json(&dir.path, &["stats"]).success().json();
    assert_eq!(
        (stats["versions"].as_u64(), stats["events"].as_u64()),
        (Some(12), Some(12)),
        "{stats}"
    );
}

#[test]
fn a_corrupted_bundle_fails_naming_the_field_and_the_others_are_still_imported() {
    let dir = with_identities();
    let bad_license = dir.sibling("bad_license.pkg.gz");
    std::fs::write(
        &bad_license,
        rewrite(&real_bundle("gren_lang_core__7_0_0.pkg.gz"), |bundle| {
            bundle["outline"]["license"] = json!("Not-A-Licence");
        }),
    )
    .unwrap();
    let not_gzip = dir.sibling("not_gzip.pkg.gz");
    std::fs::write(&not_gzip, b"this is not a bundle").unwrap();
    let no_identity = dir.sibling("nobody.pkg.gz");
    std::fs::write(&no_identity, synthetic("nobody/thing", "1.0.0", "x")).unwrap();
    let missing = dir.sibling("missing.pkg.gz");
    let url5 = real_path("gren_lang_url__5_0_0.pkg.gz");
    let url6 = real_path("gren_lang_url__6_0_0.pkg.gz");

    let out = admin(
        &dir.path,
        &[
            "import",
            s(&url5),
            s(&bad_license),
            s(&not_gzip),
            s(&no_identity),
            s(&missing),
            s(&url6),
        ],
    )
    .failure();
    out.assert_stdout_has(&format!("imported: gren-lang/url 5.0.0 ({})", url5.display()));
    out.assert_stdout_has(&format!("imported: gren-lang/url 6.0.0 ({})", url6.display()));
    let failed = |path: &Path| -> String {
        out.stdout
            .lines()
            .find(|line| line.starts_with(&format!("failed: {}", path.display())))
            .unwrap_or_else(|| panic!("no `failed:` line for {}:\n{}", path.display(), out.stdout))
            .to_string()
    };
    let line = failed(&bad_license);
    assert!(line.contains("license"), "the message names the field: {line}");
    failed(&not_gzip);
    assert!(failed(&no_identity).contains("nobody"), "{}", failed(&no_identity));
    failed(&missing);
    assert!(
        !dir.join("packages/gren-lang/core").exists(),
        "nothing of the bad bundle is stored"
    );
    assert!(!dir.join("packages/nobody").exists());

    // JSON: one result per file, errors with a code and the field in the message.
    let out = admin_json(&dir.path, &["import", s(&bad_license), s(&url5)]).failure();
    let results = out.json()["results"].clone();
    assert_eq!(results[0]["error"], "invalid_outline", "{results}");
    assert!(
        results[0]["message"].as_str().unwrap().contains("outline.license"),
        "{results}"
    );
    assert_eq!(results[1]["status"], "already present", "{results}");

    // The directory is consistent and a server serves what was imported.
    admin(&dir.path, &["fsck"]).success().assert_stdout_has("clean");
    let server = Server::start_in(&dir.path, &[]);
    assert_eq!(
        server.get("/packages/gren-lang/url/6.0.0/bundle", None).body,
        std::fs::read(&url6).unwrap()
    );
    assert_eq!(server.get("/packages/gren-lang/core", None).status, 404);
    server.stop();
}

#[test]
fn import_bypasses_the_successor_rule() {
    let dir = with_identities();
    let core7 = real_path("gren_lang_core__7_0_0.pkg.gz");
    let core6 = real_path("gren_lang_core__6_0_1.pkg.gz");
    admin(&dir.path, &["import", s(&core7)])
        .success()
        .assert_stdout_has("imported: gren-lang/core 7.0.0");
    admin(&dir.path, &["import", s(&core6)])
        .success()
        .assert_stdout_has("imported: gren-lang/core 6.0.1");
    let node = real_path("gren_lang_node__6_1_0.pkg.gz");
    let node_old = real_path("gren_lang_node__5_0_2.pkg.gz");
    admin(&dir.path, &["import", s(&node), s(&node_old)])
        .success()
        .assert_stdout_has("imported: gren-lang/node 5.0.2");

    let server = Server::start_in(&dir.path, &[]);
    let record = server.get("/packages/gren-lang/core", None).json();
    assert_eq!(
        version_numbers(&record),
        ["6.0.1", "7.0.0"],
        "versions are kept in order: {record}"
    );
    assert_eq!(
        server.get("/packages/gren-lang/core/latest", None).json()["version"],
        "7.0.0"
    );
    assert!(server.get("/packages/gren-lang/core/6.0.1/bundle", None).body == std::fs::read(&core6).unwrap());
    let previous = server.get("/packages/gren-lang/core/7.0.0/previous", None);
    assert_eq!(previous.json()["version"], "6.0.1", "{}", previous.text());
    server.stop();
    admin(&dir.path, &["fsck"]).success();
}

// ---------------------------------------------------------------------------
// identity show, user show, user revoke-sessions
// ---------------------------------------------------------------------------

#[test]
fn identity_show_lists_members_packages_and_audit() {
    let dir = imported();
    let out = admin(&dir.path, &["identity", "show", "gren-lang"]).success();
    out.assert_stdout_has("identity gren-lang")
        .assert_stdout_has("members:")
        .assert_stdout_has(&format!("admin {ME}"))
        .assert_stdout_has("packages:");
    for (name, latest) in expected_listing() {
        let line = format!("{name} {latest}");
        assert_eq!(
            out.stdout.contains(&line),
            name.starts_with("gren-lang/"),
            "{line:?} in:\n{}",
            out.stdout
        );
    }

    let shown = admin_json(&dir.path, &["identity", "show", "gren-lang"])
        .success()
        .json();
    assert_eq!(shown["name"], "gren-lang");
    let members = shown["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{shown}");
    assert_eq!(
        (members[0]["email"].as_str(), members[0]["role"].as_str()),
        (Some(ME), Some("admin"))
    );
    let packages: BTreeMap<String, String> = shown["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["latest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: BTreeMap<String, String> = expected_listing()
        .into_iter()
        .filter(|(name, _)| name.starts_with("gren-lang/"))
        .collect();
    assert_eq!(packages, expected);
    let audit = shown["audit"].as_array().unwrap();
    let gren_lang: Vec<Real> = reals()
        .into_iter()
        .filter(|real| real.name.starts_with("gren-lang/"))
        .collect();
    assert_eq!(
        audit.len(),
        1 + gren_lang.len(),
        "created + one entry per import: {shown}"
    );
    for (i, entry) in audit.iter().enumerate() {
        assert_eq!(entry["seq"], i as u64 + 1, "{entry}");
        assert_eq!(entry["actor"], "operator", "{entry}");
    }
    assert_eq!(audit[0]["action"], "created");
    let published: Vec<(String, String)> = audit[1..]
        .iter()
        .map(|entry| {
            assert_eq!(entry["action"], "published", "{entry}");
            (
                entry["package"].as_str().unwrap().to_string(),
                entry["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let imported: Vec<(String, String)> = gren_lang.into_iter().map(|real| (real.name, real.version)).collect();
    assert_eq!(published, imported);

    let out = admin(&dir.path, &["identity", "show", "nobody"]).failure();
    assert!(out.stderr.contains("nobody"), "{out:?}");
}

#[test]
fn user_show_and_revoke_sessions() {
    let dir = imported();
    let server = Server::start_in(&dir.path, &[]);
    let first = server.login(ME);
    let second = server.login(ME);
    assert_eq!(server.get("/user", Some(&first)).status, 200);
    server.stop();

    let out = admin(&dir.path, &["user", "show", ME]).success();
    out.assert_stdout_has(&format!("user {ME}"))
        .assert_stdout_has("sessions:")
        .assert_stdout_has("identities:")
        .assert_stdout_has("blaix (admin)")
        .assert_stdout_has("gren-lang (admin)");
    let shown = admin_json(&dir.path, &["user", "show", ME]).success().json();
    assert_eq!(shown["email"], ME);
    let sessions = shown["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{shown}");
    let hashes: Vec<String> = [&first, &second]
        .iter()
        .map(|token| sha256_hex(token.as_bytes()))
        .collect();
    for session in sessions {
        let id = session["id"].as_str().unwrap();
        assert!(
            hashes.iter().any(|hash| hash.starts_with(id)),
            "session id {id} is a prefix of a token hash"
        );
        assert!(out.stdout.contains(id), "the text names session {id}:\n{}", out.stdout);
    }
    let identities: Vec<(&str, &str)> = shown["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["role"].as_str().unwrap()))
        .collect();
    assert_eq!(identities, [("blaix", "admin"), ("gren-lang", "admin")]);

    let out = admin(&dir.path, &["user", "revoke-sessions", ME]).success();
    out.assert_stdout_has(&format!("revoked 2 session(s) and 0 automation token(s) of {ME}"));
    for hash in &hashes {
        assert!(
            !dir.join(&format!("sessions/{hash}.json")).exists(),
            "session file {hash} is deleted"
        );
    }
    assert_eq!(
        admin_json(&dir.path, &["user", "show", ME]).success().json()["sessions"],
        json!([])
    );
    assert_eq!(
        admin_json(&dir.path, &["user", "revoke-sessions", ME]).success().json(),
        json!({ "email": ME, "revoked": 0, "revoked_tokens": 0, "revoked_git_tokens": 0 })
    );

    let server = Server::start_in(&dir.path, &[]);
    for token in [&first, &second] {
        assert_eq!(
            server.get("/user", Some(token)).status,
            401,
            "a revoked token is refused"
        );
    }
    server.stop();

    let out = admin(&dir.path, &["user", "show", "stranger@example.com"]).failure();
    assert!(out.stderr.contains("stranger@example.com"), "{out:?}");
}

#[test]
fn revoke_sessions_stops_the_users_automation_tokens_too_which_user_show_lists_and_fsck_counts() {
    let dir = with_identities();
    let server = Server::start_in(&dir.path, &[]);
    let session = server.login(ME);
    let body = json!({ "name": "nightly", "scopes": ["publish:blaix/*", "download:blaix"], "expiresInDays": 30 });
    let created = server.post_json("/user/tokens", &body, Some(&session));
    assert_eq!(created.status, 201, "{}", created.text());
    let token = created.json()["token"].as_str().unwrap().to_string();
    let id = created.json()["id"].as_str().unwrap().to_string();
    assert_eq!(server.get("/packages", Some(&token)).status, 200, "the token works");
    // And what git is given (`gren-registry git-credential`), made from the session.
    let minted = server.post_json("/user/git-token", &json!({}), Some(&session));
    assert_eq!(minted.status, 201, "{}", minted.text());
    server.stop();

    // The operator sees the token (never its secret or its hash).
    let hash = sha256_hex(token.as_bytes());
    let out = admin(&dir.path, &["user", "show", ME]).success();
    out.assert_stdout_has("automation tokens:")
        .assert_stdout_has(&format!("{id} nightly"))
        .assert_stdout_has("publish:blaix/*, download:blaix")
        .assert_stdout_has("expires ");
    let shown = admin_json(&dir.path, &["user", "show", ME]).success().json();
    let tokens = shown["tokens"].as_array().expect("user show --json lists tokens");
    assert_eq!(tokens.len(), 1, "{shown}");
    assert_eq!(tokens[0]["id"], id.as_str());
    assert_eq!(tokens[0]["name"], "nightly");
    assert_eq!(tokens[0]["scopes"], json!(["publish:blaix/*", "download:blaix"]));
    assert!(tokens[0]["expires"].is_string(), "{shown}");
    assert_eq!(shown["sessions"].as_array().map(Vec::len), Some(1), "{shown}");
    for said in [&out.stdout, &shown.to_string()] {
        assert!(!said.contains(&token) && !said.contains(&hash), "{said}");
    }
    let fsck = admin(&dir.path, &["fsck"]).success();
    fsck.assert_stdout_has("checked 1 tokens")
        .assert_stdout_has("checked 1 git tokens");
    let checked = admin_json(&dir.path, &["fsck"]).success().json()["checked"].clone();
    assert_eq!(checked["tokens"], 1, "{checked}");

    let help = admin(&dir.path, &["user", "revoke-sessions", "--help"]).success();
    help.assert_stdout_has("automation token");
    let out = admin(&dir.path, &["user", "revoke-sessions", ME]).success();
    out.assert_stdout_has(&format!(
        "revoked 1 session(s) and 1 automation token(s) of {ME}, and 1 git token(s) made from them"
    ));
    assert!(
        !dir.join(&format!("tokens/{hash}.json")).exists(),
        "the record is deleted"
    );
    let shown = admin_json(&dir.path, &["user", "show", ME]).success().json();
    assert_eq!(
        (shown["sessions"].clone(), shown["tokens"].clone()),
        (json!([]), json!([]))
    );
    // `--json` keeps `revoked` (the sessions) and adds the tokens beside it.
    assert_eq!(
        admin_json(&dir.path, &["user", "revoke-sessions", ME]).success().json(),
        json!({ "email": ME, "revoked": 0, "revoked_tokens": 0, "revoked_git_tokens": 0 })
    );

    let server = Server::start_in(&dir.path, &[]);
    server.get("/packages", Some(&token)).assert_error(401, "unauthorized");
    server.get("/user", Some(&session)).assert_error(401, "unauthorized");
    server.stop();
}

#[test]
fn a_storage_failure_shows_the_operator_the_record_and_its_cause() {
    let dir = with_identities();
    // A directory where a user record belongs: reading it fails, as a
    // damaged disk would make it fail (permissions would not stop root).
    let record = dir.join("users/broken@example.com.json");
    std::fs::create_dir_all(&record).unwrap();
    let out = admin(&dir.path, &["user", "show", "broken@example.com"]).failure();
    let said = out
        .stderr
        .lines()
        .find(|line| line.starts_with("gren-registry: "))
        .unwrap_or_else(|| panic!("no error line: {out:?}"));
    assert!(
        said.contains(s(&record)) && said.contains("Is a directory") && !said.contains("internal error"),
        "the error names the record and what the system said, not \"an internal error\": {said}"
    );
}

// ---------------------------------------------------------------------------
// revoke, outbox, stats
// ---------------------------------------------------------------------------

#[test]
fn revoke_makes_downloads_410_with_the_reason_and_deletes_the_bundle() {
    let dir = imported();
    let reason = "security: remote code execution";
    let bundle = bundle_file(&dir, "gren-lang/url", "5.0.0");
    let size = std::fs::metadata(&bundle).unwrap().len();
    assert!(bundle.exists());
    let out = admin(&dir.path, &["revoke", "gren-lang/url", "5.0.0", "--reason", reason]).success();
    out.assert_stdout_has(&format!("revoked gren-lang/url 5.0.0: {reason}"));
    assert!(!bundle.exists(), "the revoked bundle is deleted");
    let record = read_json(&dir.join("packages/gren-lang/url/5.0.0.json"));
    assert_eq!(record["version"]["revoked"]["reason"], reason, "{record}");
    let other = read_json(&dir.join("packages/gren-lang/url/6.0.0.json"));
    assert_eq!(other["version"]["revoked"], Value::Null, "{other}");

    let stats = admin_json(&dir.path, &["stats"]).success().json();
    let total: u64 = reals().iter().map(|real| real.bytes.len() as u64).sum();
    assert_eq!(stats["revoked_versions"], 1, "{stats}");
    assert_eq!(stats["versions"], 12, "{stats}");
    assert_eq!(stats["bundle_bytes"], total - size, "{stats}");
    assert_eq!(stats["events"], 13, "{stats}");
    let outbox = admin_json(&dir.path, &["outbox"]).success().json();
    let last = outbox["pending"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["seq"], &last["type"], &last["package"], &last["version"]),
        (&json!(13), &json!("revoke"), &json!("gren-lang/url"), &json!("5.0.0")),
        "{outbox}"
    );
    let audit = admin_json(&dir.path, &["identity", "show", "gren-lang"])
        .success()
        .json()["audit"]
        .clone();
    let entry = audit.as_array().unwrap().last().unwrap();
    assert_eq!(
        (&entry["action"], &entry["reason"]),
        (&json!("revoked"), &json!(reason)),
        "{entry}"
    );

    // Unknown versions and packages are errors.
    admin(&dir.path, &["revoke", "gren-lang/url", "9.9.9", "--reason", "x"]).failure();
    admin(&dir.path, &["revoke", "gren-lang/nothing", "1.0.0", "--reason", "x"]).failure();
    admin(&dir.path, &["revoke", "not-a-package", "1.0.0", "--reason", "x"]).failure();
    admin(&dir.path, &["fsck"]).success().assert_stdout_has("clean");

    let server = Server::start_in(&dir.path, &[]);
    let reply = server.get("/packages/gren-lang/url/5.0.0/bundle", None);
    reply.assert_error(410, "revoked");
    assert!(
        reply.json()["message"].as_str().unwrap().contains(reason),
        "{}",
        reply.text()
    );
    assert_eq!(reply.json()["reason"], reason, "{}", reply.text());
    assert_eq!(server.get("/packages/gren-lang/url/6.0.0/bundle", None).status, 200);
    assert_eq!(
        server.get("/packages/gren-lang/url/latest", None).json()["version"],
        "6.0.0"
    );
    server.stop();
}

#[test]
fn outbox_lists_the_pending_events() {
    let dir = imported();
    let reals = reals();
    let out = admin(&dir.path, &["outbox"]).success();
    out.assert_stdout_has("delivered up to event 0 of 12; 12 pending");
    for (i, real) in reals.iter().enumerate() {
        out.assert_stdout_has(&format!("{} publish {} {}", i + 1, real.name, real.version));
    }

    let outbox = admin_json(&dir.path, &["outbox"]).success().json();
    let keys: Vec<&String> = outbox.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["caches", "delivered", "head", "package_site", "pending"],
        "{outbox}"
    );
    assert_eq!(outbox["caches"], json!([]), "no cache was ever told to purge");
    assert_eq!((&outbox["delivered"], &outbox["head"]), (&json!(0), &json!(12)));
    let pending = outbox["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 12);
    for (i, (event, real)) in pending.iter().zip(&reals).enumerate() {
        assert_eq!(event["seq"], i as u64 + 1, "{event}");
        assert_eq!(event["type"], "publish");
        assert_eq!(
            (event["package"].as_str(), event["version"].as_str()),
            (Some(real.name.as_str()), Some(real.version.as_str()))
        );
    }

    // An operator (or the notifier) moves the cursor: fewer are pending.
    std::fs::create_dir_all(dir.join("outbox")).unwrap();
    write_json(&dir.join("outbox/cursor.json"), &json!({ "delivered": 10 }));
    let outbox = admin_json(&dir.path, &["outbox"]).success().json();
    assert_eq!(
        (&outbox["delivered"], &outbox["head"]),
        (&json!(10), &json!(12)),
        "{outbox}"
    );
    let seqs: Vec<u64> = outbox["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [11, 12]);
    admin(&dir.path, &["outbox"])
        .success()
        .assert_stdout_has("delivered up to event 10 of 12; 2 pending");
}

#[test]
fn outbox_says_which_packages_site_the_server_tells_or_that_none_is_configured() {
    let dir = imported();
    admin(&dir.path, &["outbox"]).success().assert_stdout_has(
        "no packages site is configured (the server last started without GREN_REGISTRY_PACKAGE_SITE_URL)",
    );
    // Nothing answers there (the discard port): the events stay pending.
    let site = "http://127.0.0.1:9";
    let server = Server::start_in(&dir.path, &[("GREN_REGISTRY_PACKAGE_SITE_URL", site)]);
    // Read beside the running server, whose environment this command lacks.
    let out = admin(&dir.path, &["outbox"]).success();
    out.assert_stdout_has(&format!("packages site {site}\n"));
    assert!(!out.stdout.contains("no packages site"), "{}", out.stdout);
    assert_eq!(
        admin_json(&dir.path, &["outbox"]).success().json()["package_site"],
        site
    );
    server.stop();
    let server = Server::start_in(&dir.path, &[]);
    admin(&dir.path, &["outbox"])
        .success()
        .assert_stdout_has("no packages site is configured");
    assert_eq!(
        admin_json(&dir.path, &["outbox"]).success().json()["package_site"],
        Value::Null
    );
    server.stop();
}

#[test]
fn stats_counts_exactly() {
    let dir = imported();
    let total: u64 = reals().iter().map(|real| real.bytes.len() as u64).sum();
    let stats = admin_json(&dir.path, &["stats"]).success().json();
    assert_eq!(
        stats,
        json!({
            "users": 1,
            "sessions": 0,
            "pending_logins": 0,
            "identities": 2,
            "packages": 6,
            "private_packages": 0,
            "versions": 12,
            "revoked_versions": 0,
            "bundle_bytes": total,
            "events": 12,
        })
    );
    let text = admin(&dir.path, &["stats"]).success().stdout;
    for line in [
        "users: 1",
        "identities: 2",
        "packages: 6",
        "versions: 12",
        "revoked_versions: 0",
        "events: 12",
    ] {
        assert!(text.lines().any(|l| l.trim() == line), "{line:?} in:\n{text}");
    }
    assert!(text.contains(&format!("bundle_bytes: {total}")), "{text}");

    // More users and identities, a session, a revocation.
    admin(
        &dir.path,
        &["identity", "create", "admin", "--admin", "ops@example.com"],
    )
    .success();
    let server = Server::start_in(&dir.path, &[]);
    server.login("third@example.com");
    server.stop();
    admin(&dir.path, &["revoke", "blaix/gren-ws4sql", "2.0.0", "--reason", "old"]).success();
    let ws4sql2 = real_bundle("blaix_gren_ws4sql__2_0_0.pkg.gz").len() as u64;
    let stats = admin_json(&dir.path, &["stats"]).success().json();
    assert_eq!(stats["users"], 3, "{stats}");
    assert_eq!(stats["identities"], 3, "{stats}");
    assert_eq!(stats["sessions"], 1, "{stats}");
    assert_eq!(stats["versions"], 12, "{stats}");
    assert_eq!(stats["revoked_versions"], 1, "{stats}");
    assert_eq!(stats["bundle_bytes"], total - ws4sql2, "{stats}");
    assert_eq!(stats["events"], 13, "{stats}");
}

// ---------------------------------------------------------------------------
// Reading beside a running server
// ---------------------------------------------------------------------------

#[test]
fn read_only_commands_work_while_a_server_runs() {
    let dir = imported();
    let server = Server::start_in(&dir.path, &[]);
    let token = server.login(ME);
    let reads: [&[&str]; 5] = [
        &["identity", "show", "gren-lang"],
        &["user", "show", ME],
        &["stats"],
        &["outbox"],
        &["fsck"],
    ];
    for args in reads {
        admin(&dir.path, args).success();
        admin_json(&dir.path, args).success().json();
    }
    admin(&dir.path, &["fsck"]).success().assert_stdout_has("clean");
    assert_eq!(
        admin_json(&dir.path, &["user", "show", ME]).success().json()["sessions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(admin_json(&dir.path, &["stats"]).success().json()["sessions"], 1);
    let snapshot = dir.sibling("snapshot");
    admin(&dir.path, &["snapshot", s(&snapshot)]).success();
    assert!(snapshot.join("packages/gren-lang/core/package.json").exists());
    // The server carries on, writes included.
    assert_eq!(server.get("/health", None).status, 200);
    let revoked = server.post_json(
        "/packages/gren-lang/url/5.0.0/revoke",
        &json!({ "reason": "test" }),
        Some(&token),
    );
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    assert_eq!(
        admin_json(&dir.path, &["stats"]).success().json()["revoked_versions"],
        1
    );
    admin(&dir.path, &["fsck"]).success();
    server.stop();
}

// ---------------------------------------------------------------------------
// fsck
// ---------------------------------------------------------------------------

/// An imported directory with one revoked version (url 5.0.0, event 13), so
/// fsck sees revocations too. Shared by the damage tests below (each damages
/// its own copy).
fn fsck_base() -> Dir {
    let dir = imported();
    admin(
        &dir.path,
        &["revoke", "gren-lang/url", "5.0.0", "--reason", "fsck test"],
    )
    .success();
    dir
}

#[test]
fn fsck_on_a_clean_directory_is_clean() {
    let dir = fsck_base();
    let out = admin(&dir.path, &["fsck"]).success();
    assert_eq!(out.stdout.lines().last(), Some("clean"), "{}", out.stdout);
    out.assert_stdout_has("checked 12 versions")
        .assert_stdout_has("checked 13 events");
    assert!(!out.stdout.contains("problem"), "{}", out.stdout);
    let report = admin_json(&dir.path, &["fsck"]).success().json();
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["problems"], json!([]), "{report}");
    assert_eq!(report["repaired"], json!([]), "{report}");
    // Repairing a clean directory changes nothing.
    let report = admin_json(&dir.path, &["fsck", "--repair"]).success().json();
    assert_eq!(
        (&report["clean"], &report["repaired"]),
        (&json!(true), &json!([])),
        "{report}"
    );
}

/// Damages a copy of the base directory, checks that fsck finds `problem`
/// (text and JSON), then that `--repair` fixes it (or, when it cannot, that
/// it stays a problem).
#[track_caller]
fn check_damage(damage: impl FnOnce(&Dir), problem: &str, repairable: bool) {
    let base = fsck_base();
    let dir = base.copy();
    admin(&dir.path, &["fsck"]).success();
    damage(&dir);

    let out = admin(&dir.path, &["fsck"]).failure();
    assert!(
        out.stdout
            .lines()
            .any(|line| line.starts_with("problem: ") && line.contains(problem)),
        "fsck should report a problem naming {problem:?}:\n{}",
        out.stdout
    );
    assert!(!out.stdout.lines().any(|line| line == "clean"), "{}", out.stdout);
    let report = admin_json(&dir.path, &["fsck"]).failure().json();
    assert_eq!(report["clean"], false, "{report}");
    assert!(
        report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().contains(problem)),
        "{report}"
    );
    assert_eq!(
        report["repaired"],
        json!([]),
        "fsck without --repair repairs nothing: {report}"
    );

    let repaired = admin(&dir.path, &["fsck", "--repair"]);
    if repairable {
        let repaired = repaired.success();
        assert!(!repaired.stdout.contains("problem:"), "{}", repaired.stdout);
        let after = admin(&dir.path, &["fsck"]).success();
        assert_eq!(after.stdout.lines().last(), Some("clean"), "{}", after.stdout);
        // The repaired directory serves.
        let server = Server::start_in(&dir.path, &[]);
        assert_eq!(server.get("/packages/gren-lang/core/7.0.0/bundle", None).status, 200);
        server.stop();
    } else {
        let repaired = repaired.failure();
        assert!(
            repaired.stdout.contains(problem),
            "an unrepairable problem stays:\n{}",
            repaired.stdout
        );
        let after = admin_json(&dir.path, &["fsck"]).failure().json();
        assert!(
            after["problems"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p.as_str().unwrap().contains(problem)),
            "{after}"
        );
    }
}

/// Asserts that `fsck --repair` on a damaged copy names the fix on a
/// `repaired:` line (text) and in `repaired` (JSON).
#[track_caller]
fn check_repair_says_repaired(damage: impl Fn(&Dir), fix: &str) {
    let base = fsck_base();
    let dir = base.copy();
    damage(&dir);
    let out = admin(&dir.path, &["fsck", "--repair"]).success();
    assert!(
        out.stdout
            .lines()
            .any(|line| line.starts_with("repaired: ") && line.contains(fix)),
        "fsck --repair should say `repaired: ...{fix}...`:\n{}",
        out.stdout
    );
    let dir = base.copy();
    damage(&dir);
    let report = admin_json(&dir.path, &["fsck", "--repair"]).success().json();
    assert_eq!(report["clean"], true, "{report}");
    assert!(
        report["repaired"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().contains(fix)),
        "{report}"
    );
}

#[test]
fn fsck_finds_a_flipped_bundle_byte_and_cannot_repair_it() {
    check_damage(
        |dir| {
            let path = bundle_file(dir, "gren-lang/core", "7.0.0");
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
            std::fs::write(&path, bytes).unwrap();
        },
        "gren-lang/core 7.0.0: the bundle does not match its SHA-256",
        false,
    );
}

#[test]
fn fsck_finds_a_deleted_bundle() {
    check_damage(
        |dir| std::fs::remove_file(bundle_file(dir, "gren-lang/node", "6.0.0")).unwrap(),
        "gren-lang/node 6.0.0: the bundle is missing",
        false,
    );
}

#[test]
fn fsck_finds_a_package_record_that_is_not_json() {
    check_damage(
        |dir| {
            std::fs::write(
                dir.join("packages/blaix/gren-ws4sql/package.json"),
                b"{\"name\": \"blaix/gren-ws4sql\",",
            )
            .unwrap()
        },
        "packages/blaix/gren-ws4sql/package.json does not parse",
        false,
    );
}

#[test]
fn fsck_finds_a_file_where_a_package_directory_belongs() {
    check_damage(
        |dir| std::fs::write(dir.join("packages/blaix/not-a-package"), b"").unwrap(),
        "packages/blaix/not-a-package is a file where a package directory belongs",
        false,
    );
}

/// Edits the record of `version` of `package` (`<version>.json`) in place,
/// as a person with an editor would.
fn edit_version_record(dir: &Dir, package: &str, version: &str, edit: impl FnOnce(&mut Value)) {
    let path = dir.join(&format!("packages/{package}/{version}.json"));
    let mut record = read_json(&path);
    edit(&mut record);
    write_json(&path, &record);
}

#[test]
fn fsck_finds_a_gap_in_the_event_log() {
    check_damage(
        |dir| {
            edit_version_record(dir, "gren-lang/core", "6.0.1", |record| {
                record["events"].as_array_mut().unwrap().clear()
            })
        },
        "the event log has a gap",
        false,
    );
}

#[test]
fn a_reading_command_reports_a_real_gap_in_the_event_log_after_looking_again() {
    let dir = fsck_base().copy();
    edit_version_record(&dir, "gren-lang/core", "6.0.1", |record| {
        record["events"].as_array_mut().unwrap().clear()
    });
    // The first load fails, as one read across a commit could; the second,
    // with the writers held off, finds the gap again: it is real.
    let out = admin(&dir.path, &["stats"]).failure();
    assert!(out.stderr.contains("the event log has a gap"), "{}", out.stderr);
}

#[test]
fn a_server_refuses_to_start_on_a_gap_in_the_event_log() {
    let dir = fsck_base().copy();
    edit_version_record(&dir, "gren-lang/core", "6.0.1", |record| {
        record["events"].as_array_mut().unwrap().clear()
    });
    // Debris it would clear on a sound directory.
    add_uncommitted_version(&dir);
    let failure = Server::try_start_in(&dir.path, &[]).err().expect("it refuses to start");
    assert!(failure.log.contains("the event log has a gap"), "{}", failure.log);
    assert!(
        failure.log.contains("admin fsck"),
        "it says what to do: {}",
        failure.log
    );
    assert!(
        bundle_file(&dir, "gren-lang/core", "9.9.9").exists(),
        "a refused start changes nothing on disk"
    );
}

#[test]
fn a_server_refuses_to_start_when_the_packages_site_was_told_of_events_the_records_do_not_hold() {
    // The record holding the newest events was lost: its numbers would be
    // given out again, though the packages site has them.
    let dir = fsck_base().copy();
    std::fs::create_dir_all(dir.join("outbox")).unwrap();
    write_json(&dir.join("outbox/cursor.json"), &json!({ "delivered": 99 }));
    let failure = Server::try_start_in(&dir.path, &[]).err().expect("it refuses to start");
    assert!(
        failure
            .log
            .contains("the packages site was told of events up to 99, but the package records hold only 13"),
        "{}",
        failure.log
    );
}

#[test]
fn a_lost_or_older_record_of_the_newest_events_stops_start_up_and_no_event_number_is_given_twice() {
    let dir = fresh();
    admin(&dir.path, &["identity", "create", "gren-lang", "--admin", ME]).success();
    let server = Server::start_in(&dir.path, &[]);
    let token = server.login(ME);
    for file in [
        "gren_lang_url__5_0_0.pkg.gz",
        "gren_lang_core__6_0_1.pkg.gz",
        "gren_lang_core__7_0_0.pkg.gz",
    ] {
        assert_eq!(server.publish(&token, &real_bundle(file)).status, 201);
    }
    server.stop();
    // The record of core 7.0.0 holds event 3, the newest.
    let core_7 = dir.join("packages/gren-lang/core/7.0.0.json");
    let older = dir.sibling("older-core-7.json");
    std::fs::copy(&core_7, &older).unwrap();
    assert_eq!(read_json(&dir.join("event-log.json")), json!({ "head": 3 }));

    // Lost: the log would end at 2.
    std::fs::remove_file(&core_7).unwrap();
    let failure = Server::try_start_in(&dir.path, &[]).err().expect("it refuses to start");
    assert!(
        failure
            .log
            .contains("the event log reached event 3, but the package records hold only 2"),
        "{}",
        failure.log
    );
    assert!(
        failure.log.contains("restore packages/ from the backup"),
        "{}",
        failure.log
    );
    assert!(
        bundle_file(&dir, "gren-lang/core", "7.0.0").exists(),
        "a refused start moves nothing aside"
    );
    admin(&dir.path, &["fsck"])
        .failure()
        .assert_stdout_has("event-log.json says the log reached event 3");

    // Back, then revoked (event 4), then restored from the older copy,
    // which holds event 3 only.
    std::fs::copy(&older, &core_7).unwrap();
    let server = Server::start_in(&dir.path, &[]);
    let token = server.login(ME);
    let revoked = server.post_json(
        "/packages/gren-lang/core/7.0.0/revoke",
        &json!({ "reason": "broken" }),
        Some(&token),
    );
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    server.stop();
    let newest = dir.sibling("newest-core-7.json");
    std::fs::copy(&core_7, &newest).unwrap();
    std::fs::copy(&older, &core_7).unwrap();
    let failure = Server::try_start_in(&dir.path, &[]).err().expect("it refuses to start");
    assert!(
        failure.log.contains("reached event 4") && failure.log.contains("hold only 3"),
        "{}",
        failure.log
    );

    // The right record back: the next publish is event 5, never 4 again.
    std::fs::copy(&newest, &core_7).unwrap();
    let server = Server::start_in(&dir.path, &[]);
    let token = server.login(ME);
    assert_eq!(
        server
            .publish(&token, &real_bundle("gren_lang_url__6_0_0.pkg.gz"))
            .status,
        201
    );
    let events = server.get("/events", None).json();
    let seqs: Vec<u64> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    server.stop();
    admin(&dir.path, &["fsck"]).success();
}

#[test]
fn fsck_notes_a_stray_temporary_file_as_crash_debris_and_repair_sweeps_it() {
    let stray = "packages/gren-lang/core/.tmp-x";
    let dir = fsck_base().copy();
    std::fs::write(dir.join(stray), b"half a record").unwrap();
    let out = admin(&dir.path, &["fsck"]).success();
    out.assert_stdout_has(&format!("note: stray temporary file {stray}"));
    assert_eq!(out.stdout.lines().last(), Some("clean"), "{}", out.stdout);
    // Opening for repair sweeps temporary files before fsck looks, so the
    // file is simply gone afterwards.
    std::fs::write(dir.join("users/.tmp-y"), b"").unwrap();
    let out = admin(&dir.path, &["fsck", "--repair"]).success();
    assert!(
        !dir.join(stray).exists() && !dir.join("users/.tmp-y").exists(),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.lines().last(), Some("clean"), "{}", out.stdout);
}

#[test]
fn fsck_finds_a_missing_audit_entry() {
    check_damage(
        |dir| std::fs::remove_file(dir.join("identities/gren-lang/audit/000000000001.json")).unwrap(),
        "identity gren-lang: audit entry 1 is missing",
        false,
    );
}

#[test]
fn fsck_finds_a_publish_or_revocation_without_its_audit_entry() {
    check_damage(
        |dir| {
            edit_version_record(dir, "gren-lang/url", "5.0.0", |record| {
                record["changes"].as_array_mut().unwrap().clear()
            })
        },
        "gren-lang/url 5.0.0: the audit entry of its being revoked is missing",
        false,
    );
    check_damage(
        |dir| {
            edit_version_record(dir, "gren-lang/url", "6.0.0", |record| {
                record["changes"].as_array_mut().unwrap().clear()
            })
        },
        "gren-lang/url 6.0.0: the audit entry of its being published is missing",
        false,
    );
}

fn drop_blaix_from_my_index(dir: &Dir) {
    let path = dir.join(&format!("users/{ME}.json"));
    let mut user = read_json(&path);
    user["identities"] = json!(["gren-lang"]);
    write_json(&path, &user);
}

#[test]
fn fsck_finds_and_repairs_a_user_index_missing_an_identity() {
    let problem = format!("user {ME}: the identity index misses memberships");
    check_damage(drop_blaix_from_my_index, &problem, true);
    check_repair_says_repaired(drop_blaix_from_my_index, &problem);
    let dir = fsck_base().copy();
    drop_blaix_from_my_index(&dir);
    admin(&dir.path, &["fsck", "--repair"]).success();
    let user = read_json(&dir.join(&format!("users/{ME}.json")));
    assert_eq!(user["identities"], json!(["blaix", "gren-lang"]), "{user}");
}

fn add_uncommitted_version(dir: &Dir) {
    std::fs::write(
        bundle_file(dir, "gren-lang/core", "9.9.9"),
        real_bundle("gren_lang_core__7_0_0.pkg.gz"),
    )
    .unwrap();
}

/// Checks that fsck notes `note` (harmless debris of an interrupted change)
/// without failing, and that `--repair` removes it.
#[track_caller]
fn check_debris(damage: impl Fn(&Dir), note: &str) {
    let dir = fsck_base().copy();
    damage(&dir);
    let out = admin(&dir.path, &["fsck"]).success();
    assert!(
        out.stdout
            .lines()
            .any(|line| line.starts_with("note: ") && line.contains(note)),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.lines().last(), Some("clean"), "{}", out.stdout);
    let out = admin(&dir.path, &["fsck", "--repair"]).success();
    assert!(
        out.stdout
            .lines()
            .any(|line| line.starts_with("repaired: ") && line.contains(note)),
        "{}",
        out.stdout
    );
    let after = admin(&dir.path, &["fsck"]).success();
    assert!(!after.stdout.contains(note), "{}", after.stdout);
}

#[test]
fn fsck_notes_and_repairs_the_bundle_of_a_publish_that_never_committed() {
    check_debris(
        add_uncommitted_version,
        "gren_lang_core__9_9_9.pkg.gz: the bundle of an interrupted publish or revocation",
    );
    let dir = fsck_base().copy();
    add_uncommitted_version(&dir);
    admin(&dir.path, &["fsck", "--repair"]).success();
    assert!(!bundle_file(&dir, "gren-lang/core", "9.9.9").exists());
    assert!(
        bundle_file(&dir, "gren-lang/core", "7.0.0").exists(),
        "committed versions stay"
    );
}

fn restore_revoked_bundle(dir: &Dir) {
    std::fs::write(
        bundle_file(dir, "gren-lang/url", "5.0.0"),
        real_bundle("gren_lang_url__5_0_0.pkg.gz"),
    )
    .unwrap();
}

#[test]
fn fsck_notes_and_repairs_a_revoked_bundle_left_on_disk() {
    check_debris(
        restore_revoked_bundle,
        "gren_lang_url__5_0_0.pkg.gz: the bundle of an interrupted publish or revocation",
    );
    let dir = fsck_base().copy();
    restore_revoked_bundle(&dir);
    admin(&dir.path, &["fsck", "--repair"]).success();
    assert!(!bundle_file(&dir, "gren-lang/url", "5.0.0").exists());
    let record = read_json(&dir.join("packages/gren-lang/url/5.0.0.json"));
    assert_eq!(
        record["outline"]["version"], "5.0.0",
        "the outline of a revoked version stays in its record: {record}"
    );
}

#[test]
fn fsck_finds_a_package_directory_without_a_record_that_no_publish_explains() {
    check_damage(
        |dir| {
            let orphan = dir.join("packages/gren-lang/orphan");
            std::fs::create_dir_all(&orphan).unwrap();
            std::fs::write(orphan.join("notes.txt"), b"?").unwrap();
        },
        "packages/gren-lang/orphan: a package directory without package.json that no interrupted publish explains",
        false,
    );
}

#[test]
fn fsck_understands_privacy_events_and_checks_the_records_against_them() {
    let dir = fsck_base();
    let server = Server::start_in(&dir.path, &[]);
    let token = server.login(ME);
    let private = |private: bool| {
        let reply = server.patch_json("/packages/gren-lang/url", &json!({ "private": private }), Some(&token));
        assert_eq!(reply.status, 200, "{}", reply.text());
    };
    private(true);
    let revoked = server.post_json(
        "/packages/gren-lang/url/6.0.0/revoke",
        &json!({ "reason": "while private" }),
        Some(&token),
    );
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    private(false);
    server.stop();

    let outbox = admin(&dir.path, &["outbox"]).success();
    outbox
        .assert_stdout_has("14 private gren-lang/url at")
        .assert_stdout_has("15 public gren-lang/url at")
        .assert_stdout_has("16 revoke gren-lang/url 6.0.0 at");
    let out = admin(&dir.path, &["fsck"]).success();
    out.assert_stdout_has("checked 16 events");
    assert_eq!(out.stdout.lines().last(), Some("clean"), "{}", out.stdout);

    // A record that lost its privacy change.
    let record_path = dir.join("packages/gren-lang/url/package.json");
    let mut record = read_json(&record_path);
    record["private"] = json!(true);
    write_json(&record_path, &record);
    admin(&dir.path, &["fsck"]).failure().assert_stdout_has(
        "problem: gren-lang/url: the record says it is private, but its last privacy event says otherwise",
    );
}

fn tell_mirrors_core_7_was_revoked(dir: &Dir) {
    edit_version_record(dir, "gren-lang/core", "7.0.0", |record| {
        let events = record["events"].as_array_mut().unwrap();
        let event = events.iter_mut().find(|event| event["version"] == "7.0.0").unwrap();
        event["type"] = json!("revoke");
    });
}

#[test]
fn fsck_finds_a_live_version_whose_events_do_not_announce_it() {
    check_damage(
        tell_mirrors_core_7_was_revoked,
        "gren-lang/core 7.0.0: no publish event tells mirrors what the record says",
        false,
    );
}

fn announce_a_version_that_does_not_exist(dir: &Dir) {
    edit_version_record(dir, "gren-lang/core", "7.0.0", |record| {
        let events = record["events"].as_array_mut().unwrap();
        let mut event = events[0].clone();
        event["seq"] = json!(14);
        event["version"] = json!("9.9.9");
        events.push(event);
    });
}

#[test]
fn fsck_finds_an_event_naming_a_version_that_does_not_exist() {
    check_damage(
        announce_a_version_that_does_not_exist,
        "gren-lang/core: event 14 names gren-lang/core 9.9.9, which does not exist",
        false,
    );
}

#[test]
fn fsck_repair_fixes_what_it_can_and_leaves_a_sha_mismatch() {
    let dir = fsck_base().copy();
    std::fs::write(dir.join("users/.tmp-x"), b"").unwrap();
    drop_blaix_from_my_index(&dir);
    add_uncommitted_version(&dir);
    restore_revoked_bundle(&dir);
    let flipped = bundle_file(&dir, "blaix/gren-ws4sql", "3.0.0");
    let mut bytes = std::fs::read(&flipped).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&flipped, bytes).unwrap();

    let report = admin_json(&dir.path, &["fsck"]).failure().json();
    assert_eq!(report["problems"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(
        report["notes"].as_array().unwrap().len(),
        3,
        "the debris of interrupted changes: {report}"
    );

    let out = admin(&dir.path, &["fsck", "--repair"]).failure();
    let repaired = out.stdout.lines().filter(|line| line.starts_with("repaired: ")).count();
    assert_eq!(
        repaired, 3,
        "three fixes (the temporary file is swept on opening):\n{}",
        out.stdout
    );
    out.assert_stdout_has("problem: blaix/gren-ws4sql 3.0.0: the bundle does not match its SHA-256");
    out.assert_stdout_has("1 problem(s)");

    let report = admin_json(&dir.path, &["fsck"]).failure().json();
    assert_eq!(
        report["problems"],
        json!(["blaix/gren-ws4sql 3.0.0: the bundle does not match its SHA-256"]),
        "only the unrepairable problem is left: {report}"
    );
}

// ---------------------------------------------------------------------------
// snapshot
// ---------------------------------------------------------------------------

#[test]
fn snapshot_links_every_record_and_bundle_and_a_server_starts_on_it() {
    let dir = imported();
    let server = Server::start_in(&dir.path, &[]);
    let token = server.login(ME);
    // Debris of an interrupted write, made while the server runs, and local
    // development mail: neither belongs in a snapshot.
    std::fs::write(dir.join("packages/gren-lang/core/.tmp-x"), b"half").unwrap();
    std::fs::create_dir_all(dir.join("mail")).unwrap();
    std::fs::write(dir.join("mail/2026-01-01-1.txt"), b"Your code is ...").unwrap();
    let snapshot = dir.sibling("snapshot");
    let out = admin_json(&dir.path, &["snapshot", s(&snapshot)]).success();
    let report = out.json();
    assert!(report["linked"].as_u64().unwrap() > 12, "{report}");
    assert_eq!(report["copied"], 0, "{report}");
    assert_the_snapshot_hard_links_every_record_and_bundle(&dir.path, &snapshot);
    assert_a_second_server_starts_on_the_snapshot(server, &snapshot, &token);
    admin(&snapshot, &["fsck"]).success().assert_stdout_has("clean");
    assert_snapshots_go_to_new_directories_only(&dir, &snapshot);
}

/// Every file of the original is in the snapshot as the same inode, but the
/// locks, local mail and temporary files; the snapshot has a lock of its own.
fn assert_the_snapshot_hard_links_every_record_and_bundle(original_dir: &Path, snapshot: &Path) {
    let relative = |root: &Path, path: &Path| path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
    let skipped = |rel: &str| {
        ["registry.lock", "writers.lock", "snapshot.lock"].contains(&rel)
            || rel.starts_with("mail/")
            || rel.rsplit('/').next().unwrap().starts_with(".tmp-")
    };
    let original: BTreeMap<String, u64> = files_under(original_dir)
        .iter()
        .map(|path| (relative(original_dir, path), std::fs::metadata(path).unwrap().ino()))
        .collect();
    let copied: BTreeMap<String, u64> = files_under(snapshot)
        .iter()
        .map(|path| (relative(snapshot, path), std::fs::metadata(path).unwrap().ino()))
        .collect();
    let mut expected = 0;
    for (rel, ino) in &original {
        if skipped(rel) {
            continue;
        }
        expected += 1;
        assert_eq!(
            copied.get(rel),
            Some(ino),
            "{rel} is in the snapshot as a hard link (same inode)"
        );
    }
    assert!(expected > 20, "records, sessions and bundles: {original:?}");
    for rel in copied.keys() {
        assert!(
            !rel.rsplit('/').next().unwrap().starts_with(".tmp-"),
            "no temporary file in the snapshot: {rel}"
        );
        assert!(
            rel == "registry.lock" || original.contains_key(rel),
            "{rel} is not in the original"
        );
    }
    assert!(original.contains_key("packages/gren-lang/core/.tmp-x"));
    assert!(!snapshot.join("mail").exists(), "local mail is not part of a snapshot");
    assert!(copied.contains_key("registry.lock"), "the snapshot is a data directory");
    assert_ne!(
        copied["registry.lock"], original["registry.lock"],
        "registry.lock is not shared"
    );
    for real in reals() {
        let rel = format!("packages/{}/{}", real.name, real.file);
        assert!(copied.contains_key(&rel), "{rel}");
    }
}

/// A change on the original after the snapshot does not reach it, and a
/// second server starts on the snapshot while the first one runs, with
/// every bundle and session.
fn assert_a_second_server_starts_on_the_snapshot(server: Server, snapshot: &Path, token: &str) {
    let revoked = server.post_json(
        "/packages/gren-lang/url/5.0.0/revoke",
        &json!({ "reason": "later" }),
        Some(token),
    );
    assert_eq!(revoked.status, 200, "{}", revoked.text());

    // A second server starts on the snapshot while the first one runs.
    let copy = Server::start_in(snapshot, &[]);
    assert_serves_all_real(&copy);
    assert_eq!(copy.listing("/packages", None), expected_listing());
    assert_eq!(
        copy.get("/user", Some(token)).status,
        200,
        "sessions are in the snapshot"
    );
    assert_eq!(server.get("/packages/gren-lang/url/5.0.0/bundle", None).status, 410);
    copy.stop();
    server.stop();
}

/// Snapshots go to new directories only, and come from data directories only.
fn assert_snapshots_go_to_new_directories_only(dir: &Dir, snapshot: &Path) {
    let out = admin(&dir.path, &["snapshot", s(snapshot)]).failure();
    assert!(out.stderr.contains("already exists"), "{out:?}");
    let empty = dir.sibling("empty");
    std::fs::create_dir(&empty).unwrap();
    admin(&dir.path, &["snapshot", s(&empty)]).failure();
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "an existing directory is left alone"
    );
    // Not a data directory: refused.
    let nothing = fresh();
    std::fs::create_dir_all(&nothing.path).unwrap();
    admin(&nothing.path, &["snapshot", s(&nothing.sibling("snap"))]).failure();
    assert!(!nothing.sibling("snap").exists());
}

#[test]
fn a_snapshot_to_a_full_file_system_fails_saying_so_and_leaves_nothing_there() {
    let Some(disk) = small_disk_or_skip(4) else { return };
    let dir = imported();
    let destination = disk.path().join("snap");
    let filler = disk.fill();
    let out = admin(&dir.path, &["snapshot", s(&destination)]).failure();
    out.assert_stderr_has("No space left on device");
    out.assert_stderr_has("The partial copy was removed");
    let left: Vec<String> = std::fs::read_dir(disk.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["filler"], "nothing of the snapshot is left");
    // With room, the same command makes a whole copy (copied: another file system).
    filler.free();
    let report = admin_json(&dir.path, &["snapshot", s(&destination)]).success().json();
    assert!(report["copied"].as_u64().unwrap() > 12, "{report}");
    admin(&destination, &["fsck"]).success().assert_stdout_has("clean");
}

/// What the snapshot of earlier releases left on a full target: the files
/// copied so far, without the lock file it wrote last; with or without
/// `format.json` (which made `serve` take it for a whole registry, and
/// its absence for format 1, which `migrate` would have "migrated").
#[test]
fn serve_and_migrate_refuse_a_partial_copy_without_the_lock_file_every_data_directory_has() {
    let dir = imported();
    for keep_format in [true, false] {
        let partial = dir.sibling(&format!("partial-{keep_format}"));
        copy_tree(&dir.path, &partial);
        for lock in ["registry.lock", "writers.lock", "snapshot.lock"] {
            let _ = std::fs::remove_file(partial.join(lock));
        }
        if !keep_format {
            std::fs::remove_file(partial.join("format.json")).unwrap();
        }
        // Not yet copied when the target filled up.
        std::fs::remove_dir_all(partial.join("identities")).unwrap();
        std::fs::remove_file(partial.join("event-log.json")).unwrap();
        let refusal = "is not a whole gren-registry data directory";
        match Server::try_start_in(&partial, &[]) {
            Ok(server) => panic!(
                "serve took a partial copy (format.json: {keep_format}):\n{}",
                server.log()
            ),
            Err(failure) => assert!(failure.log.contains(refusal), "{}", failure.log),
        }
        admin(&partial, &["migrate"]).failure().assert_stderr_has(refusal);
        assert!(!partial.join("registry.lock").exists(), "still refused next time");
        assert_eq!(partial.join("format.json").exists(), keep_format, "nothing was stamped");
    }
}

// ---------------------------------------------------------------------------
// Output formats
// ---------------------------------------------------------------------------

#[test]
fn output_is_text_by_default_and_json_with_the_flag() {
    let dir = with_identities();
    let url5 = real_path("gren_lang_url__5_0_0.pkg.gz");
    let url6 = real_path("gren_lang_url__6_0_0.pkg.gz");
    let core = real_path("gren_lang_core__7_0_0.pkg.gz");
    let bad = dir.sibling("bad.pkg.gz");
    std::fs::write(&bad, b"garbage").unwrap();
    let (snap1, snap2) = (dir.sibling("snap1"), dir.sibling("snap2"));

    // (text args, json args, whether they succeed)
    let pairs: Vec<(Vec<&str>, Vec<&str>, bool)> = vec![
        (
            vec!["identity", "create", "one", "--admin", ME],
            vec!["identity", "create", "two", "--admin", ME],
            true,
        ),
        (vec!["import", s(&url5)], vec!["import", s(&url6), s(&core)], true),
        (vec!["import", s(&bad)], vec!["import", s(&bad)], false),
        (
            vec!["identity", "show", "gren-lang"],
            vec!["identity", "show", "gren-lang"],
            true,
        ),
        (vec!["user", "show", ME], vec!["user", "show", ME], true),
        (
            vec!["user", "revoke-sessions", ME],
            vec!["user", "revoke-sessions", ME],
            true,
        ),
        (
            vec!["revoke", "gren-lang/url", "5.0.0", "--reason", "a"],
            vec!["revoke", "gren-lang/url", "6.0.0", "--reason", "b"],
            true,
        ),
        (vec!["outbox"], vec!["outbox"], true),
        (vec!["stats"], vec!["stats"], true),
        (vec!["fsck"], vec!["fsck"], true),
        (vec!["fsck", "--repair"], vec!["fsck", "--repair"], true),
        (vec!["snapshot", s(&snap1)], vec!["snapshot", s(&snap2)], true),
    ];
    for (text_args, json_args, succeeds) in pairs {
        let text = admin(&dir.path, &text_args);
        let json = admin_json(&dir.path, &json_args);
        let (text, json) = if succeeds {
            (text.success(), json.success())
        } else {
            (text.failure(), json.failure())
        };
        assert!(
            !text.stdout.trim().is_empty(),
            "`{}` prints text: {text:?}",
            text_args.join(" ")
        );
        assert!(
            serde_json::from_str::<Value>(&text.stdout).is_err(),
            "`{}` prints plain text by default, not JSON:\n{}",
            text_args.join(" "),
            text.stdout
        );
        assert!(
            json.json().is_object(),
            "`--json {}` prints a JSON object: {}",
            json_args.join(" "),
            json.stdout
        );
    }
    // The flag may also follow the command.
    let out = admin(&dir.path, &["stats", "--json"]).success();
    assert_eq!(out.json()["identities"], 4);
}

// ---------------------------------------------------------------------------
// Beside a busy server
// ---------------------------------------------------------------------------

/// Publishes (and now and then revokes) versions of `gren-lang/synth` over
/// HTTP until `stop` is set; returns how many were published.
fn keep_publishing(server: &Server, token: &str, stop: &std::sync::atomic::AtomicBool) -> usize {
    let mut published = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let version = format!("1.0.{published}");
        let bundle = synthetic("gren-lang/synth", &version, &version);
        let reply = server.publish(token, &bundle);
        assert_eq!(reply.status, 201, "publish {version}: {}", reply.text());
        if published % 4 == 3 {
            let reply = server.post_json(
                &format!("/packages/gren-lang/synth/{version}/revoke"),
                &json!({ "reason": "busy" }),
                Some(token),
            );
            assert_eq!(reply.status, 200, "revoke {version}: {}", reply.text());
        }
        published += 1;
    }
    published
}

#[test]
fn snapshots_taken_while_the_server_publishes_are_consistent() {
    let dir = imported();
    let server = Server::start_in(&dir.path, &[("GREN_REGISTRY_PUBLISH_LIMIT_PER_HOUR", "100000")]);
    let token = server.login(ME);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let snapshots: Vec<PathBuf> = (0..6).map(|i| dir.sibling(&format!("snap{i}"))).collect();
    let published = std::thread::scope(|scope| {
        let publisher = scope.spawn(|| keep_publishing(&server, &token, &stop));
        for snapshot in &snapshots {
            std::thread::sleep(Duration::from_millis(150));
            admin(&dir.path, &["snapshot", s(snapshot)]).success();
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        publisher.join().unwrap()
    });
    assert!(
        published >= 6,
        "the server was publishing during the snapshots ({published} versions)"
    );
    let mut seen = Vec::new();
    for snapshot in &snapshots {
        let out = admin(snapshot, &["fsck"]);
        assert!(
            out.code == Some(0) && out.stdout.lines().last() == Some("clean"),
            "a snapshot taken during publishing is consistent; fsck {}:\n{}",
            snapshot.display(),
            out.stdout
        );
        seen.push(
            admin_json(snapshot, &["stats"]).success().json()["versions"]
                .as_u64()
                .unwrap(),
        );
    }
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "later snapshots have more: {seen:?}"
    );
    server.stop();
    // The last snapshot serves every live version it lists.
    let last = snapshots.last().unwrap();
    let copy = Server::start_in(last, &[]);
    let record = copy.get("/packages/gren-lang/synth", None).json();
    for version in record["versions"].as_array().unwrap() {
        let v = version["version"].as_str().unwrap();
        let reply = copy.get(&format!("/packages/gren-lang/synth/{v}/bundle"), None);
        if version["revoked"].is_null() {
            assert_eq!(reply.status, 200, "{v}");
            assert_eq!(sha256_hex(&reply.body), version["sha256"].as_str().unwrap(), "{v}");
        } else {
            assert_eq!(reply.status, 410, "{v}");
        }
    }
    copy.stop();
}

#[test]
fn fsck_beside_a_busy_server_reports_no_problems() {
    let dir = imported();
    let server = Server::start_in(&dir.path, &[("GREN_REGISTRY_PUBLISH_LIMIT_PER_HOUR", "100000")]);
    let token = server.login(ME);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut reports = Vec::new();
    let published = std::thread::scope(|scope| {
        let publisher = scope.spawn(|| keep_publishing(&server, &token, &stop));
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            reports.push(admin(&dir.path, &["fsck"]));
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        publisher.join().unwrap()
    });
    assert!(published >= 6, "{published} versions published");
    let failed: Vec<&Out> = reports.iter().filter(|out| out.code != Some(0)).collect();
    // The kinds of problem reported, numbers and temporary names left out.
    let kinds: std::collections::BTreeSet<String> = failed
        .iter()
        .flat_map(|out| out.stdout.lines())
        .filter_map(|line| line.strip_prefix("problem: "))
        .map(|line| {
            let mut line: String = line.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect();
            while line.contains("##") {
                line = line.replace("##", "#");
            }
            match line.find(".tmp-") {
                Some(at) => format!("{}.tmp-*", &line[..at]),
                None => line,
            }
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} runs of fsck beside a server that was publishing reported problems, of these kinds:\n  {}\nthe first report:\n{}",
        failed.len(),
        reports.len(),
        kinds.iter().cloned().collect::<Vec<_>>().join("\n  "),
        failed.first().map(|out| out.stdout.as_str()).unwrap_or("")
    );
    server.stop();
    admin(&dir.path, &["fsck"]).success();
}

// ---------------------------------------------------------------------------
// Ownership: admin commands run as the data directory's owner
// ---------------------------------------------------------------------------

/// `nobody`: another user than the one the tests run as (root).
const OTHER_UID: u32 = 65534;

#[test]
fn admin_commands_refuse_a_data_directory_owned_by_another_user_and_say_how_to_run_them() {
    let dir = with_identities();
    chown_tree(&dir.path, OTHER_UID);
    for args in [
        &["fsck"][..],
        &["identity", "create", "newcomer", "--admin", ME],
        &["stats"],
    ] {
        let out = admin(&dir.path, args).failure();
        let all = out.all();
        assert!(all.contains("belongs to nobody (uid 65534)"), "{all}");
        assert!(all.contains("sudo -u nobody "), "{all}");
        assert!(all.contains("--allow-other-user"), "{all}");
    }
    assert!(!dir.join("identities/newcomer").exists(), "nothing was written");
    admin(&dir.path, &["--allow-other-user", "fsck"]).success();
    admin(&dir.path, &["stats", "--allow-other-user"]).success();
}

#[test]
fn fsck_repair_reports_an_unreadable_user_record_and_never_deletes_its_sessions() {
    let dir = with_identities();
    let server = Server::start_in(&dir.path, &[]);
    let token = server.login(ME);
    server.stop();
    let session = dir.join(&format!("sessions/{}.json", sha256_hex(&token)));
    assert!(session.exists());
    // The registry runs as `nobody`; a command once run as root left the
    // user record root-owned and private: EACCES for the registry's user.
    chown_tree(dir.tmp.path(), OTHER_UID);
    let user_record = dir.join(&format!("users/{ME}.json"));
    std::os::unix::fs::chown(&user_record, Some(0), Some(0)).unwrap();

    let out = admin_as(OTHER_UID, &dir.path, &["fsck", "--repair"]).failure();
    let all = out.all();
    assert!(all.contains("Permission denied"), "{all}");
    assert!(all.contains(&format!("users/{ME}.json")), "{all}");
    assert!(session.exists(), "the session was deleted: {all}");
    assert!(!all.contains("repaired: session"), "{all}");

    // Readable again, the session is valid and fsck is clean.
    std::os::unix::fs::chown(&user_record, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    admin_as(OTHER_UID, &dir.path, &["fsck"]).success();
}

// ---------------------------------------------------------------------------
// Snapshots to another file system
// ---------------------------------------------------------------------------

#[test]
fn a_snapshot_to_another_file_system_fsyncs_every_file_and_directory_it_copies() {
    let strace_works = std::process::Command::new("strace")
        .args(["-o", "/dev/null", "true"])
        .status()
        .is_ok_and(|status| status.success());
    let shm = Path::new("/dev/shm");
    if !strace_works || !shm.is_dir() {
        // .ci/run installs strace: CI must run this test, not skip it.
        assert!(
            std::env::var_os("CI").is_none(),
            "this test needs strace and /dev/shm, which CI must provide"
        );
        eprintln!("skipped: needs strace and /dev/shm (another file system than the temporary directory)");
        return;
    }
    let dir = with_identities();
    let other_fs = tempfile::Builder::new()
        .prefix("gren-snapshot-")
        .tempdir_in(shm)
        .unwrap();
    let snapshot = other_fs.path().join("snapshot");
    let trace = dir.sibling("trace");
    let mut command = std::process::Command::new("strace");
    command
        .args(["-f", "-y", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&trace);
    command.arg(env!("CARGO_BIN_EXE_gren-registry"));
    clear_registry_env(&mut command);
    let out = command
        .args(["admin", "--json", "--data-dir", s(&dir.path), "snapshot", s(&snapshot)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["copied"].as_u64().unwrap() > 3, "copied, not linked: {report}");
    let trace = std::fs::read_to_string(&trace).unwrap();
    // The copy is fsynced under its temporary name, then renamed into place
    // and its directory fsynced.
    let prefix = format!("{}/.snapshot.partial-", other_fs.path().display());
    let start = trace.find(&prefix).expect("fsyncs under the temporary name") + prefix.len();
    let suffix: String = trace[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let partial = other_fs.path().join(format!(".snapshot.partial-{suffix}"));
    let synced_at = |path: &Path| trace.contains(&format!("<{}>) = 0", path.display()));
    let synced = |path: &Path| match path.strip_prefix(&snapshot).unwrap() {
        inside if inside.as_os_str().is_empty() => synced_at(&partial),
        inside => synced_at(&partial.join(inside)),
    };
    assert!(synced_at(other_fs.path()), "the rename was not made durable:\n{trace}");
    let mut pending = vec![snapshot.clone()];
    while let Some(at) = pending.pop() {
        assert!(synced(&at), "{} was not fsynced:\n{trace}", at.display());
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            assert!(synced(&path), "{} was not fsynced:\n{trace}", path.display());
        }
    }
}
