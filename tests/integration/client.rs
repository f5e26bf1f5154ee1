//! The command-line client against the real server: bundles built from
//! project directories, login with a typed code, identities, publishing,
//! installing, and the real Gren compiler accepting what `install` wrote.

use crate::common::bundles::{self, all_real_bundles, gunzip, real_bundle};
use crate::common::*;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A person at a terminal: their own HOME (for ~/.gren/user) and registry.
pub(crate) struct Cli {
    pub(crate) home: tempfile::TempDir,
    pub(crate) registry: String,
}

impl Cli {
    pub(crate) fn new(server: &Server) -> Cli {
        Cli {
            home: tempfile::tempdir().unwrap(),
            registry: server.base.clone(),
        }
    }

    /// Someone logged in to `server` as me@example.com, admin of the
    /// identity `gren-lang` they created: the start of most client tests.
    pub(crate) fn gren_lang_admin(server: &Server) -> Cli {
        let cli = Cli::new(server);
        cli.login(server, "me@example.com");
        cli.ok(&["identity", "create", "gren-lang"]);
        cli
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gren-registry"));
        clear_registry_env(&mut command);
        command
            .args(args)
            .env("HOME", self.home.path())
            .env("GREN_REGISTRY_URL", &self.registry);
        command
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Runs and asserts success, returning stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "gren-registry {args:?} failed:\n{}{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    /// Runs and asserts failure, returning stderr.
    pub(crate) fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            !output.status.success(),
            "gren-registry {args:?} should fail:\n{}",
            text(&output.stdout)
        );
        text(&output.stderr)
    }

    /// `login`, typing the code from the e-mail at the prompt.
    pub(crate) fn login(&self, server: &Server, email: &str) {
        self.login_with(self.command(&["login", "--email", email]), server, email);
    }

    /// `login` run as `command`, which names `--email` (and a registry).
    pub(crate) fn login_with(&self, mut command: Command, server: &Server, email: &str) {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut phrase = String::new();
        let mut line = String::new();
        while stdout.read_line(&mut line).unwrap() > 0 {
            if let Some(rest) = line.trim().strip_prefix("It should show the verification phrase: ") {
                phrase = rest.to_string();
                break;
            }
            line.clear();
        }
        assert!(!phrase.is_empty(), "login printed no verification phrase");
        let mail = server
            .postmark
            .wait_for_message(|mail| mail.text_body().contains(&phrase));
        // Typed as a person might: lower case, with the dash.
        writeln!(child.stdin.as_mut().unwrap(), "{}", mail.code().to_lowercase()).unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "login failed: {rest}");
        assert!(
            rest.contains(&format!("Logged in to {} as {email}", server.base)),
            "{rest}"
        );
    }

    pub(crate) fn credentials(&self) -> PathBuf {
        self.home.path().join(".gren/user")
    }
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Unpacks a real bundle into a fresh project directory.
pub(crate) fn project_of(file_name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    gren_registry_client::project::unpack(&real_bundle(file_name), dir.path()).unwrap();
    dir
}

fn application(dir: &Path, platform: &str, gren: &str, direct: serde_json::Value, indirect: serde_json::Value) {
    let outline = json!({
        "type": "application",
        "platform": platform,
        "source-directories": ["src"],
        "gren-version": gren,
        "dependencies": { "direct": direct, "indirect": indirect }
    });
    std::fs::create_dir_all(dir.join("src")).unwrap();
    write_json(&dir.join("gren.json"), &outline);
}

fn node_application(dir: &Path) {
    application(
        dir,
        "node",
        "0.6.3",
        json!({ "gren-lang/core": "7.0.0", "gren-lang/node": "6.1.0" }),
        json!({ "gren-lang/url": "6.0.0" }),
    );
}

#[test]
fn every_real_bundle_round_trips_through_a_project_directory() {
    for (name, bytes) in all_real_bundles() {
        let dir = tempfile::tempdir().unwrap();
        gren_registry_client::project::unpack(&bytes, dir.path()).unwrap();
        let rebuilt = gren_registry_client::project::bundle_json(dir.path()).unwrap();
        assert!(
            rebuilt == gunzip(&bytes),
            "{name}: the rebuilt bundle differs from the compiler's"
        );
        let compressed = gren_registry_client::project::build_bundle(dir.path()).unwrap();
        assert_eq!(gunzip(&compressed), rebuilt, "{name}: build_bundle gzips bundle_json");
    }
}

#[test]
fn publish_dry_run_validates_a_project_locally() {
    let server = Server::start();
    let cli = Cli::new(&server);
    let project = project_of("gren_lang_url__6_0_0.pkg.gz");
    let out = cli.ok(&["publish", "--dry-run", project.path().to_str().unwrap()]);
    assert!(
        out.contains("Would publish gren-lang/url 6.0.0") && out.contains("Nothing was published"),
        "{out}"
    );
    // Not logged in and nothing sent: a dry run needs neither.
    assert_eq!(server.get("/packages/gren-lang/url", None).status, 404);
    // An invalid outline is refused locally, naming the field.
    let manifest = project.path().join("gren.json");
    let mut outline = read_json(&manifest);
    outline["license"] = json!("WTFPL");
    std::fs::write(&manifest, serde_json::to_vec(&outline).unwrap()).unwrap();
    let err = cli.fails(&["publish", "--dry-run", project.path().to_str().unwrap()]);
    assert!(err.contains("outline.license"), "{err}");
}

#[test]
fn login_identity_publish_and_install_end_to_end() {
    let server = Server::start();
    let cli = Cli::new(&server);
    cli.fails(&["whoami"]);
    cli.login(&server, "me@example.com");
    let stored = read_json(&cli.credentials());
    assert_eq!(stored[0]["registry"], server.base);
    assert_eq!(stored[0]["email"], "me@example.com");
    assert!(stored[0]["token"].as_str().unwrap().starts_with("gren_"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cli.credentials()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "~/.gren/user is readable by its owner only");
    assert!(cli.ok(&["whoami"]).contains("me@example.com"));

    cli.ok(&["identity", "create", "gren-lang"]);
    assert!(cli.ok(&["whoami"]).contains("gren-lang (admin)"));
    for file in [
        "gren_lang_core__7_0_0.pkg.gz",
        "gren_lang_url__6_0_0.pkg.gz",
        "gren_lang_node__6_1_0.pkg.gz",
    ] {
        let project = project_of(file);
        let out = cli.ok(&["publish", project.path().to_str().unwrap()]);
        assert!(out.contains("Published gren-lang/"), "{out}");
    }
    let app = tempfile::tempdir().unwrap();
    node_application(app.path());
    let out = cli.ok(&["install", app.path().to_str().unwrap()]);
    assert!(out.contains("Installed 3 package(s)"), "{out}");
    for file in [
        "gren_lang_core__7_0_0.pkg.gz",
        "gren_lang_url__6_0_0.pkg.gz",
        "gren_lang_node__6_1_0.pkg.gz",
    ] {
        let installed = std::fs::read(app.path().join("gren_packages").join(file)).unwrap();
        assert_eq!(
            gunzip(&installed),
            gunzip(&real_bundle(file)),
            "{file} installed as the compiler made it"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(app.path().join("gren_packages"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".pkg.gz"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary files stay behind: {leftovers:?}");

    let out = cli.ok(&[
        "identity",
        "add",
        "gren-lang",
        "friend@example.com",
        "--role",
        "download",
    ]);
    assert!(
        out.contains("Invited friend@example.com to gren-lang as download"),
        "{out}"
    );
    let shown = cli.ok(&["identity", "show", "gren-lang"]);
    assert!(shown.contains("invitations:\n  download friend@example.com"), "{shown}");
    cli.ok(&["revoke", "gren-lang/url", "6.0.0", "--reason", "test"]);
    let err = cli.fails(&["install", app.path().to_str().unwrap()]);
    assert!(err.contains("gren-lang/url 6.0.0 was revoked: test"), "{err}");

    cli.ok(&["logout"]);
    assert_eq!(
        server.get("/user", Some(stored[0]["token"].as_str().unwrap())).status,
        401,
        "logout revokes the token"
    );
    assert!(cli.fails(&["whoami"]).contains("not logged in"));
}

#[test]
fn invitations_are_listed_accepted_declined_and_members_leave_from_the_command_line() {
    let server = Server::start();
    let admin = Cli::new(&server);
    admin.login(&server, "admin@example.com");
    admin.ok(&["identity", "create", "gren-lang"]);
    admin.ok(&["identity", "create", "blaix"]);
    admin.ok(&[
        "identity",
        "add",
        "gren-lang",
        "friend@example.com",
        "--role",
        "publish",
    ]);
    admin.ok(&["identity", "add", "blaix", "friend@example.com"]);

    let friend = Cli::new(&server);
    friend.login(&server, "friend@example.com");
    let listed = friend.ok(&["identity", "invitations"]);
    for line in [
        "gren-lang as publish, from admin@example.com",
        "`gren-registry identity accept gren-lang`",
        "blaix as publish",
    ] {
        assert!(listed.contains(line), "{line:?} in:\n{listed}");
    }
    let out = friend.ok(&["identity", "accept", "gren-lang"]);
    assert!(
        out.contains("You are now a member of gren-lang with the publish role."),
        "{out}"
    );
    let out = friend.ok(&["identity", "decline", "blaix"]);
    assert!(out.contains("Declined the invitation to blaix"), "{out}");
    assert!(
        friend
            .ok(&["identity", "invitations"])
            .contains("No invitations are waiting for you.")
    );
    assert!(friend.ok(&["whoami"]).contains("gren-lang (publish)"));
    let err = friend.fails(&["identity", "accept", "blaix"]);
    assert!(err.contains("no pending invitation to blaix"), "{err}");

    let out = admin.ok(&["identity", "role", "gren-lang", "friend@example.com", "admin"]);
    assert!(
        out.contains("friend@example.com is now a member of gren-lang with the admin role."),
        "{out}"
    );
    // Even the last admin may leave.
    admin.ok(&["identity", "leave", "gren-lang"]);
    let out = friend.ok(&["identity", "leave", "gren-lang"]);
    assert!(out.contains("You left gren-lang"), "{out}");
    assert!(!friend.ok(&["whoami"]).contains("gren-lang"));
    for command in ["invitations", "accept", "decline", "leave"] {
        let help = friend.ok(&["identity", command, "--help"]);
        assert!(help.lines().count() > 2, "{command} has help:\n{help}");
    }
}

#[test]
fn private_packages_install_with_the_stored_token_only() {
    let server = Server::start();
    let cli = Cli::gren_lang_admin(&server);
    let core = project_of("gren_lang_core__7_0_0.pkg.gz");
    cli.ok(&["publish", "--private", core.path().to_str().unwrap()]);
    let url = project_of("gren_lang_url__6_0_0.pkg.gz");
    cli.ok(&["publish", url.path().to_str().unwrap()]);
    let app = tempfile::tempdir().unwrap();
    application(
        app.path(),
        "common",
        "0.6.3",
        json!({ "gren-lang/url": "6.0.0" }),
        json!({ "gren-lang/core": "7.0.0" }),
    );
    cli.ok(&["install", app.path().to_str().unwrap()]);
    assert!(app.path().join("gren_packages/gren_lang_core__7_0_0.pkg.gz").exists());

    let stranger = Cli::new(&server);
    let fresh = tempfile::tempdir().unwrap();
    application(
        fresh.path(),
        "common",
        "0.6.3",
        json!({ "gren-lang/url": "6.0.0" }),
        json!({ "gren-lang/core": "7.0.0" }),
    );
    let err = stranger.fails(&["install", fresh.path().to_str().unwrap()]);
    assert!(
        err.contains("gren-lang/core") && err.contains("no package named"),
        "{err}"
    );
}

#[test]
fn private_without_on_or_off_shows_the_current_setting() {
    let server = Server::start();
    let cli = Cli::gren_lang_admin(&server);
    let core = project_of("gren_lang_core__7_0_0.pkg.gz");
    cli.ok(&["publish", "--private", core.path().to_str().unwrap()]);
    assert_eq!(cli.ok(&["private", "gren-lang/core"]), "gren-lang/core is private\n");
    cli.ok(&["private", "gren-lang/core", "off"]);
    assert_eq!(cli.ok(&["private", "gren-lang/core"]), "gren-lang/core is public\n");
    // A public package's setting needs no login.
    let stranger = Cli::new(&server);
    assert_eq!(
        stranger.ok(&["private", "gren-lang/core"]),
        "gren-lang/core is public\n"
    );
}

#[test]
fn info_shows_versions_with_revoked_ones_marked_the_latest_for_a_compiler_and_the_summary() {
    let server = Server::start();
    let cli = Cli::gren_lang_admin(&server);
    let bundles = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bundles");
    for file in ["gren_lang_core__6_0_1.pkg.gz", "gren_lang_core__7_0_0.pkg.gz"] {
        cli.ok(&["publish", bundles.join(file).to_str().unwrap()]);
    }
    cli.ok(&["revoke", "gren-lang/core", "6.0.1", "--reason", "use 7"]);
    let url = project_of("gren_lang_url__6_0_0.pkg.gz");
    cli.ok(&["publish", "--private", url.path().to_str().unwrap()]);

    // Public: no login needed.
    let stranger = Cli::new(&server);
    let said = stranger.ok(&["info", "gren-lang/core"]);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines[0], "gren-lang/core (public)", "{said}");
    assert!(
        lines[2].starts_with("  6.0.1 (Gren ") && lines[2].ends_with(" revoked: use 7"),
        "{said}"
    );
    assert!(
        lines[3].starts_with("  7.0.0 (Gren ") && !lines[3].contains("revoked"),
        "{said}"
    );
    assert_eq!(lines[4], "latest: 7.0.0", "{said}");
    assert!(
        lines[5].starts_with("summary: ") && lines[5].len() > "summary: ".len(),
        "{said}"
    );
    let for_old = stranger.ok(&["info", "gren-lang/core", "--gren", "0.5.0"]);
    assert!(for_old.contains("latest for Gren 0.5.0: none"), "{for_old}");
    let for_current = stranger.ok(&["info", "gren-lang/core", "--gren", "0.6.3"]);
    assert!(for_current.contains("latest for Gren 0.6.3: 7.0.0"), "{for_current}");

    // Private: only with a login that may see it.
    let err = stranger.fails(&["info", "gren-lang/url"]);
    assert!(err.contains("gren-lang/url"), "{err}");
    let said = cli.ok(&["info", "gren-lang/url"]);
    assert!(
        said.starts_with("gren-lang/url (private)\n") && said.contains("latest: 6.0.0"),
        "{said}"
    );
}

#[test]
fn search_finds_packages_by_name_or_summary_ignoring_case() {
    let server = Server::start();
    let cli = Cli::gren_lang_admin(&server);
    let core = project_of("gren_lang_core__7_0_0.pkg.gz");
    cli.ok(&["publish", core.path().to_str().unwrap()]);
    let url = project_of("gren_lang_url__6_0_0.pkg.gz");
    cli.ok(&["publish", "--private", url.path().to_str().unwrap()]);

    let stranger = Cli::new(&server);
    // By summary ("Gren's core modules"), in another case, all words needed.
    assert_eq!(
        stranger.ok(&["search", "CORE", "modules"]),
        "gren-lang/core 7.0.0 Gren's core modules\n"
    );
    assert!(
        stranger
            .ok(&["search", "core", "nothing-like-this"])
            .starts_with("No package")
    );
    // By name; a private package only for those who may see it.
    assert!(stranger.ok(&["search", "url"]).starts_with("No package"));
    let said = cli.ok(&["search", "gren-lang/"]);
    assert!(
        said.starts_with("gren-lang/core 7.0.0 ") && said.lines().nth(1).unwrap().starts_with("gren-lang/url 6.0.0 "),
        "{said}"
    );
}

#[test]
fn install_reports_conflicts_and_incompatibilities_clearly() {
    let server = Server::start();
    let cli = Cli::gren_lang_admin(&server);
    for file in [
        "gren_lang_core__6_0_1.pkg.gz",
        "gren_lang_core__7_0_0.pkg.gz",
        "gren_lang_url__5_0_0.pkg.gz",
        "gren_lang_url__6_0_0.pkg.gz",
        "gren_lang_node__6_1_0.pkg.gz",
    ] {
        cli.ok(&["publish", project_of(file).path().to_str().unwrap()]);
    }
    publish_acme_a_needing_acme_b_1(&cli);
    assert_a_conflict_names_both_sides_and_lower_bounds_win(&cli);
    assert_applications_that_cannot_install_say_why(&cli);
}

/// acme/b 1.0.0 and 2.0.0, and acme/a 1.0.0 needing acme/b 1.x.
fn publish_acme_a_needing_acme_b_1(cli: &Cli) {
    cli.ok(&["identity", "create", "acme"]);
    let dir = tempfile::tempdir().unwrap();
    let with_dependencies = |name: &str, version: &str, dependencies: serde_json::Value| {
        let bytes = bundles::rewrite(&bundles::synthetic(name, version, "x"), |bundle| {
            bundle["outline"]["dependencies"] = dependencies;
        });
        let file = dir.path().join(format!("{}-{version}.pkg.gz", name.replace('/', "-")));
        std::fs::write(&file, bytes).unwrap();
        cli.ok(&["publish", file.to_str().unwrap()]);
    };
    let core = json!({ "gren-lang/core": "7.0.0 <= v < 8.0.0" });
    with_dependencies("acme/b", "1.0.0", core.clone());
    with_dependencies("acme/b", "2.0.0", core.clone());
    with_dependencies(
        "acme/a",
        "1.0.0",
        json!({ "gren-lang/core": "7.0.0 <= v < 8.0.0", "acme/b": "1.0.0 <= v < 2.0.0" }),
    );
}

/// A package: lower bounds, transitively. acme/a 1.0.0 needs acme/b 1.x,
/// but the project asks for acme/b 2.x; once it allows 1.x, 1.0.0 is chosen.
fn assert_a_conflict_names_both_sides_and_lower_bounds_win(cli: &Cli) {
    let project = tempfile::tempdir().unwrap();
    let package = json!({
        "type": "package", "platform": "node", "name": "acme/thing", "summary": "x", "license": "MIT",
        "version": "1.0.0", "exposed-modules": ["Thing"], "gren-version": "0.6.0 <= v < 0.7.0",
        "dependencies": { "acme/b": "2.0.0 <= v < 3.0.0", "acme/a": "1.0.0 <= v < 2.0.0" }
    });
    std::fs::write(project.path().join("gren.json"), serde_json::to_vec(&package).unwrap()).unwrap();
    let err = cli.fails(&["install", project.path().to_str().unwrap()]);
    assert!(
        err.contains(
            "Conflicting versions of acme/b: acme/a 1.0.0 needs 1.0.0 <= v < 2.0.0, but 2.0.0 is already chosen"
        ),
        "{err}"
    );
    let mut fixed = package.clone();
    fixed["dependencies"]["acme/b"] = json!("1.0.0 <= v < 3.0.0");
    std::fs::write(project.path().join("gren.json"), serde_json::to_vec(&fixed).unwrap()).unwrap();
    assert!(
        cli.ok(&["install", project.path().to_str().unwrap()])
            .contains("Installed 3 package(s)")
    );
    assert!(
        project.path().join("gren_packages/acme_b__1_0_0.pkg.gz").exists(),
        "the lower bound is chosen"
    );
}

/// Applications for an older compiler, for another platform, or without
/// their indirect dependencies are refused, saying which.
fn assert_applications_that_cannot_install_say_why(cli: &Cli) {
    // For an older compiler.
    let old = tempfile::tempdir().unwrap();
    application(
        old.path(),
        "node",
        "0.5.4",
        json!({ "gren-lang/core": "7.0.0" }),
        json!({}),
    );
    let err = cli.fails(&["install", old.path().to_str().unwrap()]);
    assert!(
        err.contains("gren-lang/core 7.0.0 is for Gren 0.6.0 <= v < 0.7.0, not 0.5.4"),
        "{err}"
    );

    // A browser application cannot use a node package.
    let browser = tempfile::tempdir().unwrap();
    application(
        browser.path(),
        "browser",
        "0.6.3",
        json!({ "gren-lang/core": "7.0.0", "gren-lang/node": "6.1.0" }),
        json!({ "gren-lang/url": "6.0.0" }),
    );
    let err = cli.fails(&["install", browser.path().to_str().unwrap()]);
    assert!(err.contains("runs on the node platform"), "{err}");

    // An application must list its indirect dependencies.
    let incomplete = tempfile::tempdir().unwrap();
    application(
        incomplete.path(),
        "node",
        "0.6.3",
        json!({ "gren-lang/core": "7.0.0", "gren-lang/node": "6.1.0" }),
        json!({}),
    );
    let err = cli.fails(&["install", incomplete.path().to_str().unwrap()]);
    assert!(
        err.contains("needs gren-lang/url, which gren.json does not list"),
        "{err}"
    );
}

/// A synthetic package without dependencies, so an application needs nothing else.
fn standalone(name: &str) -> Vec<u8> {
    bundles::rewrite(&bundles::synthetic(name, "1.0.0", name), |bundle| {
        bundle["outline"]["dependencies"] = json!({});
    })
}

/// Adds `twin` 1.0.0 to a stopped registry's data directory by copying the
/// records of `original` 1.0.0 (public, published) and putting `twin`'s
/// bundle in: the registry no longer publishes packages whose file names
/// collide, but older data may hold them.
fn forge_package(data: &Path, original: &str, twin: &str) {
    let from = data.join("packages").join(original);
    let to = data.join("packages").join(twin);
    std::fs::create_dir_all(&to).unwrap();
    let bytes = standalone(twin);
    std::fs::write(to.join(bundles::bundle_file_name(twin, "1.0.0")), &bytes).unwrap();
    let mut record = read_json(&from.join("package.json"));
    record["name"] = json!(twin);
    std::fs::write(to.join("package.json"), record.to_string()).unwrap();
    let mut version = read_json(&from.join("1.0.0.json"));
    // Its events would be the original's numbers twice: mirrors never heard of it.
    version["events"] = json!([]);
    version["version"]["sha256"] = json!(bundles::sha256_hex(&bytes));
    version["version"]["size"] = json!(bytes.len());
    std::fs::write(to.join("1.0.0.json"), version.to_string()).unwrap();
}

#[test]
fn install_refuses_two_packages_the_compiler_would_give_one_file_name() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_in(data.path(), &[]);
    let cli = Cli::new(&server);
    cli.login(&server, "me@example.com");
    cli.ok(&["identity", "create", "acme"]);
    let bundle = data.path().join("tools-x.pkg.gz");
    std::fs::write(&bundle, standalone("acme/tools-x")).unwrap();
    cli.ok(&["publish", bundle.to_str().unwrap()]);
    server.stop();
    forge_package(data.path(), "acme/tools-x", "acme-tools/x");

    let server = Server::start_in(data.path(), &[]);
    assert_eq!(
        server.get("/packages/acme-tools/x", None).status,
        200,
        "both are served"
    );
    let app = tempfile::tempdir().unwrap();
    application(
        app.path(),
        "common",
        "0.6.3",
        json!({ "acme/tools-x": "1.0.0", "acme-tools/x": "1.0.0" }),
        json!({}),
    );
    let err = Cli::new(&server).fails(&["install", app.path().to_str().unwrap()]);
    assert!(
        err.contains("acme/tools-x and acme-tools/x would both be installed")
            && err.contains("gren_packages/acme_tools_x__1_0_0.pkg.gz"),
        "{err}"
    );
    assert!(
        !app.path().join("gren_packages/acme_tools_x__1_0_0.pkg.gz").exists(),
        "neither was installed"
    );
}

/// The Gren compiler from npm (`gren-lang` 0.6.x), installed on first use
/// under target/ (`.ci/run` installs it up front).
pub(crate) fn gren_compiler() -> PathBuf {
    let prefix = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/gren-compiler");
    let compiler = prefix.join("node_modules/gren-lang/bin/compiler");
    if !compiler.exists() {
        let status = Command::new("npm")
            .args(["install", "--no-save", "--prefix"])
            .arg(&prefix)
            .arg("gren-lang@0.6.3")
            .status()
            .expect("npm is needed to install the Gren compiler for this test");
        assert!(status.success(), "npm could not install gren-lang@0.6.3");
    }
    compiler
}

/// `gren package install` with no network (a fresh network namespace when
/// the machine allows one) and GREN_BIN set, so the compiler neither
/// downloads its backend nor any package.
fn compiler_package_install(compiler: &Path, project: &Path) -> Output {
    let isolated = Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|status| status.success());
    let mut command = if isolated {
        let mut command = Command::new("unshare");
        command.args(["-n", "node"]);
        command
    } else {
        Command::new("node")
    };
    command
        .arg(compiler)
        .args(["package", "install"])
        .current_dir(project)
        .env("GREN_BIN", "/bin/true")
        .env("HOME", project)
        .stdin(Stdio::null());
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs the compiler");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the compiler hung");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn the_real_compiler_accepts_what_install_wrote() {
    let compiler = gren_compiler();
    let server = Server::start();
    let cli = Cli::gren_lang_admin(&server);
    for file in [
        "gren_lang_core__7_0_0.pkg.gz",
        "gren_lang_url__6_0_0.pkg.gz",
        "gren_lang_node__6_1_0.pkg.gz",
    ] {
        cli.ok(&["publish", project_of(file).path().to_str().unwrap()]);
    }
    let app = tempfile::tempdir().unwrap();
    node_application(app.path());
    cli.ok(&["install", app.path().to_str().unwrap()]);
    let accepted = compiler_package_install(&compiler, app.path());
    assert!(
        accepted.status.success(),
        "the compiler refused gren_packages:\n{}{}",
        text(&accepted.stdout),
        text(&accepted.stderr)
    );

    // The same check fails when a bundle is missing: the test can fail.
    std::fs::remove_file(app.path().join("gren_packages/gren_lang_url__6_0_0.pkg.gz")).unwrap();
    let refused = compiler_package_install(&compiler, app.path());
    assert!(!refused.status.success(), "the compiler must notice a missing package");
}

#[test]
fn the_registry_option_belongs_to_the_client_commands_and_serve_and_admin_refuse_it() {
    let cli = Cli {
        home: tempfile::tempdir().unwrap(),
        registry: "http://from-env.example".into(),
    };
    // Before the client command, after it, or after a subcommand of it.
    let spellings: [(&[&str], &str); 4] = [
        (&["whoami"], "http://from-env.example"),
        (
            &["--registry", "http://before.example", "whoami"],
            "http://before.example",
        ),
        (
            &["whoami", "--registry", "http://after.example"],
            "http://after.example",
        ),
        (
            &["identity", "show", "x", "--registry", "http://deep.example"],
            "http://deep.example",
        ),
    ];
    for (args, registry) in spellings {
        let stderr = cli.fails(args);
        assert!(
            stderr.contains(&format!("not logged in to {registry}.")),
            "{args:?}: {stderr}"
        );
    }
    // `serve` and `admin` talk to no registry: a usage error (status 2),
    // wherever the option stands. Their settings would fail otherwise.
    let refusals: [&[&str]; 5] = [
        &["serve", "--registry", "http://x.example"],
        &["--registry", "http://x.example", "serve"],
        &["admin", "fsck", "--registry", "http://x.example"],
        &["admin", "--registry", "http://x.example", "fsck"],
        &["--registry", "http://x.example", "admin", "fsck"],
    ];
    for args in refusals {
        let output = cli
            .command(args)
            .env("GREN_REGISTRY_LISTEN", "not an address")
            .env("GREN_REGISTRY_DATA_DIR", cli.home.path().join("absent"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--registry"), "{args:?}: {stderr}");
    }
}

#[test]
fn token_create_prints_only_the_secret_and_ci_publishes_with_it_from_the_environment() {
    let server = Server::start();
    let cli = Cli::gren_lang_admin(&server);
    let args = [
        "token",
        "create",
        "--name",
        "ci",
        "--scope",
        "publish:gren-lang/*",
        "--scope",
        "download:gren-lang",
        "--expires-in-days",
        "30",
    ];
    let stdout = cli.ok(&args);
    let secret = stdout.strip_suffix('\n').expect("one line");
    assert!(
        secret.starts_with("gren_token_") && !secret.contains(char::is_whitespace),
        "stdout is the secret alone: {stdout:?}"
    );
    let listed = cli.ok(&["token", "list"]);
    assert!(
        listed.contains("ci") && listed.contains("publish:gren-lang/*"),
        "{listed}"
    );
    assert!(!listed.contains(secret), "{listed}");

    // A CI machine: no login, the token in GREN_REGISTRY_TOKEN.
    let ci = Cli::new(&server);
    let core = project_of("gren_lang_core__7_0_0.pkg.gz");
    let publish = |token: &str| {
        ci.command(&["publish", core.path().to_str().unwrap()])
            .env("GREN_REGISTRY_TOKEN", token)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let published = publish(secret);
    assert!(published.status.success(), "{}", text(&published.stderr));
    assert!(text(&published.stdout).contains("Published gren-lang/core 7.0.0"));

    let id = listed.split_whitespace().next().unwrap();
    cli.ok(&["token", "revoke", id]);
    let refused = publish(secret);
    assert!(!refused.status.success());
    // By name too; a name that is not one of yours says so.
    let args = [
        "token",
        "create",
        "--name",
        "nightly",
        "--scope",
        "download:gren-lang",
        "--expires-in-days",
        "1",
    ];
    cli.ok(&args);
    let said = cli.ok(&["token", "revoke", "nightly"]);
    assert!(said.starts_with("Revoked the token "), "{said}");
    assert!(!cli.ok(&["token", "list"]).contains("nightly"));
    let unknown = cli.fails(&["token", "revoke", "nightly"]);
    assert!(unknown.contains("You have no token named \"nightly\""), "{unknown}");
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains(
            "The automation token is unknown or has been revoked; create a new one with `gren-registry token create`."
        ),
        "{}",
        text(&refused.stderr)
    );
}
