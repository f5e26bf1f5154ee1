//! Commands the program prints work as printed. Each test brings a real
//! data directory or server into the state that makes the binary suggest a
//! command (in an error, a log line, a report, an answer, an e-mail or a
//! help text), takes the backticked `gren-registry …` from what it printed,
//! and runs it, its `<placeholders>` filled, in the environment of whoever
//! was told: clap must accept it (never a usage error, exit status 2), and
//! where it should work, it does.
//!
//! `the_sources_suggest_no_command_these_tests_do_not_run` keeps the list
//! complete: every backticked `gren-registry …` in the sources names a
//! command some test here ran from the binary's own output.

use crate::cli_help::command_paths;
use crate::common::operator::*;
use crate::common::*;
use serde_json::json;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

/// The backticked `gren-registry …` commands of `text`, in order, once each.
fn suggested(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        for quoted in line.split('`').skip(1).step_by(2) {
            if quoted.starts_with("gren-registry ") && !found.iter().any(|seen| seen == quoted) {
                found.push(quoted.to_string());
            }
        }
    }
    found
}

/// The one suggestion of `text` that contains `words`.
#[track_caller]
fn the_one(text: &str, words: &str) -> String {
    let matching: Vec<String> = suggested(text)
        .into_iter()
        .filter(|command| command.contains(words))
        .collect();
    assert_eq!(matching.len(), 1, "one `{words}` suggestion expected in:\n{text}");
    matching.into_iter().next().unwrap()
}

/// Words as a POSIX shell splits them (quotes; no expansions).
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut in_word) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => (quote, in_word) = (Some(c), true),
            (Some(open), _) if c == open => quote = None,
            (None, ' ' | '\t') => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
            }
            _ => (word.push(c), in_word = true).1,
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// How a printed command must end.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// It does what it says.
    Success,
    /// The program refuses it for what it found (exit 1: nothing to accept,
    /// a prompt without a terminal, problems found), never as a usage error.
    Refusal,
    /// A command named without the arguments it needs (`create a new one
    /// with `gren-registry token create``): clap asks for exactly those.
    Mention,
}

/// Who runs the printed commands: a person (their HOME, registry, token)
/// or an operator (the data directory's environment).
struct Shell {
    home: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// Every command path run from printed output, `"admin migrate"`.
    ran: RefCell<BTreeSet<String>>,
    paths: Vec<Vec<String>>,
}

impl Shell {
    fn new(env: &[(&str, &str)]) -> Shell {
        let home = tempfile::tempdir().unwrap();
        let mut all: Vec<(String, String)> = vec![
            ("HOME".into(), home.path().display().to_string()),
            (
                "GIT_CONFIG_GLOBAL".into(),
                home.path().join(".gitconfig").display().to_string(),
            ),
            ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
            ("NO_PROXY".into(), "*".into()),
        ];
        all.extend(env.iter().map(|(key, value)| (key.to_string(), value.to_string())));
        Shell {
            home,
            env: all,
            ran: RefCell::default(),
            paths: command_paths(),
        }
    }

    /// A person at a terminal, with `registry` in `GREN_REGISTRY_URL` and,
    /// when given, a token in `GREN_REGISTRY_TOKEN`.
    fn person(server: &Server, token: Option<&str>) -> Shell {
        let mut env = vec![("GREN_REGISTRY_URL", server.base.as_str())];
        env.extend(token.map(|token| ("GREN_REGISTRY_TOKEN", token)));
        Shell::new(&env)
    }

    /// The operator of the data directory `dir`, as `serve` runs it.
    fn operator(dir: &Path) -> Shell {
        Shell::new(&[("GREN_REGISTRY_DATA_DIR", dir.to_str().unwrap())])
    }

    fn command(&self, program: &Path, args: &[String]) -> Command {
        let mut command = Command::new(program);
        clear_registry_env(&mut command);
        command
            .args(args)
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .current_dir(self.home.path())
            .stdin(Stdio::null());
        command
    }

    /// `gren-registry <args>` by this person (not from printed output).
    fn gren(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        self.command(Path::new(env!("CARGO_BIN_EXE_gren-registry")), &args)
            .output()
            .unwrap()
    }

    /// [`Shell::gren`], which must succeed.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> Output {
        let output = self.gren(args);
        assert!(output.status.success(), "{args:?}: {}", text(&output.stderr));
        output
    }

    /// What [`Shell::gren`] said on standard error, the command failing.
    #[track_caller]
    fn refused(&self, args: &[&str]) -> String {
        let output = self.gren(args);
        assert!(!output.status.success(), "{args:?} should fail");
        text(&output.stderr)
    }

    /// Runs `printed` as printed: `<placeholders>` replaced from `fill`, a
    /// `> file` redirection dropped (stdout is captured), `sudo -u USER`
    /// done by running as that user (no sudo on test machines), the
    /// program `gren-registry` being the built binary.
    #[track_caller]
    fn run(&self, printed: &str, fill: &[(&str, &str)], expect: Expect) -> Output {
        let mut line = printed.to_string();
        for (placeholder, value) in fill {
            line = line.replace(placeholder, value);
        }
        assert!(!line.contains('<'), "a placeholder of `{printed}` was not filled");
        let mut words = shell_words(&line);
        if let Some(at) = words.iter().position(|word| word == ">") {
            words.drain(at..at + 2);
        }
        let mut as_user = None;
        if words[0] == "sudo" {
            assert_eq!(words[1], "-u", "{printed}");
            as_user = Some(uid_of(&words[2]));
            words.drain(..3);
        }
        let program = match words[0].as_str() {
            "gren-registry" => PathBuf::from(env!("CARGO_BIN_EXE_gren-registry")),
            path if path.ends_with("/gren-registry") => PathBuf::from(path),
            other => panic!("`{printed}` runs {other}, not gren-registry"),
        };
        let mut command = self.command(&program, &words[1..]);
        if let Some(uid) = as_user {
            // Not in this (root's, private) HOME: the owner may not enter it.
            command.uid(uid).gid(uid).current_dir("/");
        }
        let output = command.output().unwrap();
        let stderr = text(&output.stderr);
        let report = format!(
            "`{printed}` ({expect:?}) exited {:?}\nstdout:\n{}\nstderr:\n{stderr}",
            output.status.code(),
            text(&output.stdout)
        );
        match expect {
            Expect::Success => assert!(output.status.success(), "{report}"),
            Expect::Refusal => assert_eq!(output.status.code(), Some(1), "{report}"),
            Expect::Mention => assert!(
                output.status.code() == Some(2) && stderr.contains("required arguments were not provided"),
                "{report}"
            ),
        }
        self.ran.borrow_mut().insert(command_path(&self.paths, &words[1..]));
        output
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").arg("-u").arg(user).output().unwrap();
    text(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no user {user}"))
}

/// The command a line of arguments runs (`identity accept`): its words
/// that extend a command of the program into another, options and
/// arguments (`--data-dir DIR`, `acme`) passed over.
fn command_path(paths: &[Vec<String>], args: &[String]) -> String {
    let mut path: Vec<String> = Vec::new();
    for arg in args {
        path.push(arg.clone());
        if !paths.contains(&path) {
            path.pop();
        }
    }
    path.join(" ")
}

/// Asserts that `shells` ran, from printed output, commands of each path.
#[track_caller]
fn assert_ran(shells: &[&Shell], paths: &[&str]) {
    let ran: BTreeSet<String> = shells.iter().flat_map(|shell| shell.ran.borrow().clone()).collect();
    for path in paths {
        assert!(ran.contains(*path), "{path} was not run; ran {ran:?}");
    }
}

fn format1_copy() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1/data");
    copy_tree(&fixture, &data);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// Paths each test below runs from printed output (the inventory checks
/// the sources against all of them).
const OLD_FORMAT: &[&str] = &["admin snapshot", "admin migrate", "admin fsck"];
const OPERATOR: &[&str] = &["admin identity set-member", "admin identity create", "admin revoke"];
const MEMBERS: &[&str] = &["login", "identity accept", "identity decline", "identity leave"];
const TOKENS: &[&str] = &["token revoke", "token list", "token create", "login"];
const GIT: &[&str] = &["setup-git", "git-credential", "publish"];
const HELP: &[&str] = &["completions", "git-credential"];

#[test]
fn serve_on_an_old_data_directory_prints_snapshot_and_migrate_commands_that_work() {
    let tmp = format1_copy();
    let data = tmp.path().join("data");
    let refused = Server::try_start_in(&data, &[]).err().expect("format 1 is refused");
    let snapshot = the_one(&refused.log, "admin snapshot");
    let migrate = the_one(&refused.log, "admin migrate");
    assert!(migrate.contains("--data-dir"), "{migrate}");
    let destination = tmp.path().join("before-upgrade");
    // Printed for the server's directory: run where GREN_REGISTRY_DATA_DIR is unset.
    let bare = Shell::new(&[]);
    bare.run(
        &snapshot,
        &[("<new directory>", destination.to_str().unwrap())],
        Expect::Success,
    );
    assert!(destination.join("format.json").exists() || destination.join("packages").exists());
    bare.run(&migrate, &[], Expect::Success);

    // A migration that would lose an event says to run it again once fixed.
    let tmp = format1_copy();
    let data = tmp.path().join("data");
    let event = data.join("events/000000000005.json");
    let saved = std::fs::read(&event).unwrap();
    std::fs::remove_file(&event).unwrap();
    let refused = admin(&data, &["migrate"]).failure();
    let again = the_one(&refused.stderr, "admin migrate");
    std::fs::write(&event, saved).unwrap();
    bare.run(&again, &[], Expect::Success);

    // A file no record explains is quarantined at start, with a pointer to fsck.
    std::fs::write(data.join("packages/acme/widgets/notes.txt"), b"?").unwrap();
    let server = Server::start_in(&data, &[]);
    let log = server.log();
    server.stop();
    let fsck = the_one(&log, "admin fsck");
    // Printed without --data-dir: for the operator of this server, whose
    // environment names it. It reports the quarantine until they deal with it.
    let operator = Shell::operator(&data);
    operator.run(&fsck, &[], Expect::Refusal);
    assert_ran(&[&bare, &operator], OLD_FORMAT);
}

#[test]
fn operator_commands_print_commands_that_work_as_printed() {
    // fsck's note about an identity without an admin.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    admin(&data, &["identity", "create", "acme", "--admin", ALICE]).success();
    let record = data.join("identities/acme/identity.json");
    let mut identity = read_json(&record);
    identity["members"][0]["role"] = json!("publish");
    write_json(&record, &identity);
    let operator = Shell::operator(&data);
    let note = admin(&data, &["fsck"]).success();
    let set_member = the_one(&note.stdout, "admin identity set-member");
    operator.run(&set_member, &[("<email>", ALICE)], Expect::Success);
    let members = read_json(&record)["members"].clone();
    assert_eq!(members[0]["role"], "admin", "{members}");

    // A look-alike name: "run again with --allow-confusable".
    let refused = admin(&data, &["identity", "create", "acrne", "--admin", ALICE]).failure();
    assert!(
        refused.stderr.contains("run again with --allow-confusable"),
        "{refused:?}"
    );
    let again = format!(
        "gren-registry admin --data-dir {} identity create acrne --admin {ALICE} --allow-confusable",
        data.display()
    );
    operator.run(&again, &[], Expect::Success);

    // Run as another user than the directory's owner: "sudo -u <owner> <the
    // command>", quoted so that it pastes, or "add --allow-other-user".
    let owner = 65534;
    chown_tree(tmp.path(), owner);
    let binary = BinaryForOthers::new();
    for (args, as_owner) in [
        (
            vec!["identity", "create", "newcomer", "--admin", ALICE],
            Expect::Success,
        ),
        // No such package, but the reason's words stay one argument.
        (
            vec!["revoke", "acme/none", "1.0.0", "--reason", "a leaked secret"],
            Expect::Refusal,
        ),
    ] {
        let out = Command::new(&binary.path)
            .args(["admin", "--data-dir", data.to_str().unwrap()])
            .args(&args)
            .env_remove("GREN_REGISTRY_DATA_DIR")
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        let printed = stderr
            .lines()
            .find_map(|line| line.strip_prefix("Run it as the owner: "))
            .unwrap_or_else(|| panic!("no command printed: {stderr}"));
        assert!(stderr.contains("add --allow-other-user"), "{stderr}");
        operator.run(printed, &[], as_owner);
    }
    assert!(data.join("identities/newcomer").exists());
    let mut allowed = format!(
        "gren-registry admin --data-dir {} identity create other --admin {ALICE}",
        data.display()
    );
    allowed += " --allow-other-user";
    operator.run(&allowed, &[], Expect::Success);
    assert_ran(&[&operator], OPERATOR);
}

#[test]
fn invitations_and_role_changes_print_commands_that_work_for_the_person_told() {
    let server = Server::start();
    let alice = Shell::person(&server, Some(&server.login(ALICE)));
    let stranger = Shell::person(&server, None);
    let whoami = stranger.refused(&["whoami"]);
    // Without a terminal, login cannot ask for the address: a refusal.
    stranger.run(&the_one(&whoami, "login"), &[], Expect::Refusal);

    alice.ok(&["identity", "create", "acme"]);
    let invited = alice.ok(&["identity", "add", "acme", BOB, "--role", "publish"]);
    let mail = server
        .postmark
        .wait_for_message(|mail| mail.json["To"] == BOB && mail.text_body().contains("identity accept"));
    let bob = Shell::person(&server, Some(&server.login(BOB)));
    let listed = bob.ok(&["identity", "invitations"]);
    // What bob is told to run names the registry when it is said to him by
    // someone else (alice's output, the e-mail): he may use other
    // registries. His own listing, from the registry he is logged in to,
    // needs none.
    let accept = the_one(&text(&listed.stdout), "identity accept");
    let named = format!("{accept} --registry {}", server.base);
    assert_eq!(the_one(&text(&invited.stdout), "identity accept"), named);
    assert_eq!(the_one(mail.text_body(), "identity accept"), named);
    bob.run(&the_one(mail.text_body(), "login"), &[], Expect::Refusal);
    bob.run(&accept, &[], Expect::Success);
    // Accepted already: nothing left to decline, said as a refusal.
    bob.run(&the_one(mail.text_body(), "identity decline"), &[], Expect::Refusal);

    alice.ok(&["identity", "role", "acme", BOB, "admin"]);
    let mail = server
        .postmark
        .wait_for_message(|mail| mail.json["To"] == BOB && mail.text_body().contains("identity leave"));
    bob.run(&the_one(mail.text_body(), "identity leave"), &[], Expect::Success);
    assert_ran(&[&stranger, &bob], MEMBERS);
}

#[test]
fn token_messages_print_commands_that_work_for_the_person_told() {
    let server = Server::start();
    let alice = Shell::person(&server, Some(&server.login(ALICE)));
    alice.ok(&["identity", "create", "acme"]);
    let created = alice.ok(&[
        "token",
        "create",
        "--name",
        "ci",
        "--scope",
        "publish:acme/*",
        "--expires-in-days",
        "1",
    ]);
    let secret = text(&created.stdout).trim().to_string();
    let mail = server
        .postmark
        .wait_for_message(|mail| mail.json["To"] == ALICE && mail.text_body().contains("token revoke"));

    // An automation token asked to manage identities: log in for that.
    let ci = Shell::person(&server, Some(&secret));
    let refused = ci.refused(&["identity", "create", "other"]);
    ci.run(&the_one(&refused, "login"), &[], Expect::Refusal);

    alice.run(&the_one(mail.text_body(), "token revoke"), &[], Expect::Success);
    // Revoked: "create a new one with `gren-registry token create`".
    let refused = ci.refused(&["whoami"]);
    let create = the_one(&refused, "token create");
    ci.run(&create, &[], Expect::Mention);
    alice.ok(&[
        "token",
        "create",
        "--name",
        "ci-2",
        "--scope",
        "publish:acme/*",
        "--expires-in-days",
        "1",
    ]);

    let bad_id = alice.refused(&["token", "revoke", "not-an-id"]);
    alice.run(&the_one(&bad_id, "token list"), &[], Expect::Success);

    assert_ran(&[&alice, &ci], TOKENS);
}

#[test]
fn setup_git_and_the_git_routes_print_commands_that_work() {
    let server = Server::start();
    let alice = Shell::person(&server, Some(&server.login(ALICE)));
    let set_up = alice.ok(&["setup-git"]);
    let said = format!("{}{}", text(&set_up.stdout), text(&set_up.stderr));
    // What git runs, with the operation it adds (`get`, `store`, `erase`).
    alice.run(&the_one(&said, "git-credential"), &[], Expect::Mention);
    alice.run(&the_one(&said, "setup-git --remove"), &[], Expect::Success);

    // A push to the registry's git: "publish with `gren-registry publish`"
    // (here from an empty directory: no project to publish).
    let push = server.send(
        "POST",
        "/git/acme/thing.git/git-receive-pack",
        &[("Content-Type", "application/x-git-receive-pack-request")],
        b"",
    );
    assert_eq!(push.status, 403, "{}", push.text());
    alice.run(&the_one(&push.text(), "publish"), &[], Expect::Refusal);
    assert_ran(&[&alice], GIT);
}

#[test]
fn help_texts_print_commands_that_work_as_printed() {
    let reader = Shell::new(&[]);
    let mut printed = BTreeSet::new();
    for path in command_paths() {
        let mut args = path.clone();
        args.push("--help".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        printed.extend(suggested(&text(&reader.ok(&args).stdout)));
    }
    assert!(!printed.is_empty());
    for command in &printed {
        // serve's `--git-token-seconds` names what git runs, which adds the operation.
        if command == "gren-registry git-credential" {
            reader.run(command, &[], Expect::Mention);
            continue;
        }
        let out = reader.run(command, &[], Expect::Success);
        assert!(!out.stdout.is_empty(), "`{command}` printed nothing");
    }
    assert_ran(&[&reader], HELP);
}

/// Every backticked `gren-registry …` in the binary's sources (its string
/// literals, not comments), as the command path it names.
fn suggested_by_the_sources(paths: &[Vec<String>]) -> BTreeSet<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("src/main.rs")];
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let crate_dir = entry.unwrap().path();
        // The benchmark driver is another program, printing none of these.
        if crate_dir.ends_with("bench") {
            continue;
        }
        files.extend(
            files_under(&crate_dir.join("src"))
                .into_iter()
                .filter(|file| file.extension().is_some_and(|ext| ext == "rs")),
        );
    }
    let mut found = BTreeSet::new();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let code: String = source
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for command in suggested(&code) {
            let words = shell_words(&command.replace(['{', '}'], ""));
            let path = command_path(paths, &words[1..]);
            let place = format!("{}: `{command}`", file.strip_prefix(root).unwrap().display());
            found.insert((path, place));
        }
    }
    found
}

#[test]
fn the_sources_suggest_no_command_these_tests_do_not_run() {
    let paths = command_paths();
    let suggested = suggested_by_the_sources(&paths);
    assert!(suggested.len() > 10, "the sources were read: {suggested:?}");
    let exercised: BTreeSet<&str> = [OLD_FORMAT, OPERATOR, MEMBERS, TOKENS, GIT, HELP]
        .concat()
        .into_iter()
        .collect();
    let missing: Vec<&String> = suggested
        .iter()
        .filter(|(path, _)| !exercised.contains(path.as_str()))
        .map(|(_, place)| place)
        .collect();
    assert!(
        missing.is_empty(),
        "the binary suggests commands no test here runs from its output (bring about the \
         message in a test of tests/integration/printed_commands.rs, run what it printed, \
         and add the command to that test's list):\n{}",
        missing
            .iter()
            .map(|place| format!("  {place}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
