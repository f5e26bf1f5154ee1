//! Docs that paste and work: the `sh` examples of README.md and
//! docs/OPERATIONS.md, taken from the documents themselves and run in
//! order by `sh` against a real server and data directory, as the person or
//! operator they are written for; and the shipped systemd unit's open-files
//! limit, under which the binary must hold every default connection.
//!
//! A test machine is not a server: what needs systemd, the network, root or
//! the Gren compiler is done the way the machine allows, each rule in
//! [`Machine::run`] (`systemctl stop` stops the test's server, the unit's
//! paths are temporary directories, `sudo -u gren-registry` is the test's
//! own user, who owns them as the unit's user owns the real ones).

use crate::common::*;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const FRIEND: &str = "friend@example.com";

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `sh` blocks of a document, each as its commands: comment lines
/// dropped, `\` continuations joined, a here-document kept with its command.
fn sh_examples(document: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(repository().join(document)).unwrap();
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```sh" {
            continue;
        }
        let mut commands: Vec<String> = Vec::new();
        let mut pending = String::new();
        let mut heredoc: Option<String> = None;
        for line in lines.by_ref() {
            if heredoc.is_none() && line.trim() == "```" {
                break;
            }
            if let Some(end) = &heredoc {
                pending += &format!("\n{line}");
                if line == end {
                    commands.push(std::mem::take(&mut pending));
                    heredoc = None;
                }
                continue;
            }
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if let Some(continued) = trimmed.strip_suffix('\\') {
                pending += continued;
                continue;
            }
            pending += trimmed;
            if let Some((_, delimiter)) = pending.split_once("<<") {
                heredoc = Some(delimiter.trim().trim_matches('\'').to_string());
                continue;
            }
            commands.push(std::mem::take(&mut pending));
        }
        blocks.push(commands);
    }
    blocks
}

/// A machine the examples run on: a working directory (the clone, for
/// README; `./data` is the data directory), the unit's paths, a server, and
/// a HOME for each person.
struct Machine {
    tmp: tempfile::TempDir,
    server: Option<Server>,
    /// The id `token list` showed, for the example's `token revoke <id>`.
    token_id: Option<String>,
    ran: Vec<String>,
    skipped: Vec<(String, &'static str)>,
}

/// The README's example id of an automation token.
const EXAMPLE_TOKEN_ID: &str = "3b1f0c9e2d4a5b6c";

impl Machine {
    fn new() -> Machine {
        let tmp = tempfile::tempdir().unwrap();
        for dir in ["work", "bin", "backups", "home/me", "home/friend"] {
            std::fs::create_dir_all(tmp.path().join(dir)).unwrap();
        }
        // `cargo install --path .`, done by the build that runs this test.
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_gren-registry"),
            tmp.path().join("bin/gren-registry"),
        )
        .unwrap();
        // The clone: the examples use its fixtures.
        std::os::unix::fs::symlink(repository().join("tests"), tmp.path().join("work/tests")).unwrap();
        // "a clone of gren-lang/url 6.0.0" at path/to/url.
        let url = crate::common::bundles::real_bundle("gren_lang_url__6_0_0.pkg.gz");
        gren_registry_client::project::unpack(&url, &tmp.path().join("work/path/to/url")).unwrap();
        Machine {
            tmp,
            server: None,
            token_id: None,
            ran: Vec::new(),
            skipped: Vec::new(),
        }
    }

    fn data(&self) -> PathBuf {
        self.tmp.path().join("work/data")
    }

    fn start(&mut self) {
        if self.server.is_none() {
            self.server = Some(Server::start_in(&self.data(), &[]));
        }
    }

    fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            assert!(server.stop().success());
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("the example needs the server running")
    }

    /// `sh -c <command>` in the working directory, as `person`.
    fn shell(&self, person: &str, command: &str) -> Command {
        let mut shell = Command::new("sh");
        clear_registry_env(&mut shell);
        let path = format!(
            "{}:{}",
            self.tmp.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let home = self.tmp.path().join("home").join(person);
        shell
            .arg("-c")
            .arg(command)
            .current_dir(self.tmp.path().join("work"))
            .env("PATH", path)
            .env("HOME", &home)
            .env("GIT_CONFIG_GLOBAL", home.join(".gitconfig"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("NO_PROXY", "*");
        // The example's registry is the default address; the test's server has a port of its own.
        if let Some(server) = &self.server {
            shell.env("GREN_REGISTRY_URL", &server.base);
        }
        shell
    }

    /// The example as this machine can run it: its paths and ids made this
    /// machine's, or what it needs that a test machine lacks.
    fn run(&mut self, example: &str) {
        let backups = self.tmp.path().join("backups");
        let mut command = example
            .replace("cargo run --release -- ", "gren-registry ")
            .replace("/var/lib/gren-registry", self.data().to_str().unwrap())
            .replace("/var/backups/gren", backups.to_str().unwrap())
            // The CI's secret store.
            .replace("| gh secret set GREN_REGISTRY_TOKEN", "> ci-token");
        if let Some(id) = &self.token_id {
            command = command.replace(EXAMPLE_TOKEN_ID, id);
        }
        // The unit's user owns the data directory; here the test's user does.
        if let Some(rest) = command.strip_prefix("sudo -u gren-registry ") {
            command = rest.to_string();
        }
        let person = if example.contains("# the friend") {
            "friend"
        } else {
            "me"
        };
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["cargo", "install", "--path", "."] | ["cargo", "test"] => {
                self.skipped.push((command, "the build that runs this test does it"))
            }
            ["gren", "package", "install", ..] => self.skipped.push((
                command,
                "the Gren compiler comes from npm; tests/integration/git.rs runs it",
            )),
            ["curl", ..] | ["rsync", ..] => self.skipped.push((command, "no network")),
            ["gren-registry", "serve"] => self.start(),
            ["systemctl", "stop", "gren-registry"] => self.stop(),
            ["systemctl", "start", "gren-registry"] => self.start(),
            ["gren-registry", "login", "--email", email] => {
                let email = email.to_string();
                self.log_in(person, &email, &command);
            }
            _ => {
                if person == "friend" && !self.tmp.path().join("home/friend/.gren").exists() {
                    self.log_in("friend", FRIEND, &format!("gren-registry login --email {FRIEND}"));
                }
                let output = self.shell(person, &command).stdin(Stdio::null()).output().unwrap();
                assert!(
                    output.status.success(),
                    "`{example}` failed (run as `{command}`, exit {:?}):\n{}{}",
                    output.status.code(),
                    text(&output.stdout),
                    text(&output.stderr)
                );
                if words.starts_with(&["gren-registry", "token", "list"]) {
                    self.token_id = text(&output.stdout)
                        .split_whitespace()
                        .find(|word| word.len() == 16 && word.bytes().all(|b| b.is_ascii_hexdigit()))
                        .map(str::to_string);
                }
                self.ran.push(command);
            }
        }
    }

    /// `login` as the example has it, typing the code from the e-mail.
    fn log_in(&mut self, person: &str, email: &str, command: &str) {
        let mut child = self
            .shell(person, command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let phrase = loop {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "`{command}` printed no phrase"
            );
            if let Some(phrase) = line.trim().strip_prefix("It should show the verification phrase: ") {
                break phrase.to_string();
            }
        };
        let mail = self
            .server()
            .postmark
            .wait_for_message(|mail| mail.json["To"] == email && mail.text_body().contains(&phrase));
        writeln!(child.stdin.as_mut().unwrap(), "{}", mail.code()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "`{command}`: {}", text(&output.stderr));
        self.ran.push(command.to_string());
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.stop();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_readme_and_operations_examples_run_as_written_in_order() {
    let mut machine = Machine::new();
    let mut fresh = Machine::new();
    let readme = sh_examples("README.md");
    let operations = sh_examples("docs/OPERATIONS.md");
    assert!(readme.len() >= 6 && operations.len() >= 6, "{readme:?}\n{operations:?}");
    for example in readme.iter().chain(&operations).flatten() {
        // The Gren team's identity, created "once": on a registry that has
        // none yet (README's walkthrough made one for you).
        if example.contains("identity create gren-lang --admin lead@") {
            fresh.run(example);
            continue;
        }
        machine.run(example);
    }
    for (done, expected) in [
        (&machine.ran, "admin identity create gren-lang --admin me@example.com"),
        (&machine.ran, "install hello"),
        (&machine.ran, "setup-git"),
        (&machine.ran, "identity accept gren-lang"),
        (&machine.ran, "revoke gren-lang/url 6.0.0"),
        (&machine.ran, "link-github blaix"),
        (&machine.ran, "snapshot"),
        (&machine.ran, "migrate"),
        (&fresh.ran, "--github-owner-id 72624283"),
    ] {
        assert!(
            done.iter().any(|command| command.contains(expected)),
            "no example ran `{expected}`: {done:#?}"
        );
    }
    let installed = machine.tmp.path().join("work/hello/gren_packages");
    assert_eq!(std::fs::read_dir(&installed).unwrap().count(), 2, "core and url");
    eprintln!(
        "ran {} example commands; skipped: {:#?}",
        machine.ran.len() + fresh.ran.len(),
        machine.skipped
    );
}

#[test]
fn operations_runs_every_operator_command_as_the_units_user() {
    let unit = std::fs::read_to_string(repository().join("docs/deploy/gren-registry.service")).unwrap();
    assert!(unit.contains("\nUser=gren-registry\n"), "the unit's user");
    for document in ["README.md", "docs/OPERATIONS.md"] {
        for command in sh_examples(document).iter().flatten() {
            if command.contains("sudo ") {
                assert!(
                    command.starts_with("sudo -u gren-registry gren-registry "),
                    "{document}: {command}"
                );
            }
            if document.ends_with("OPERATIONS.md") && command.contains("gren-registry admin") {
                assert!(command.starts_with("sudo -u gren-registry "), "{document}: {command}");
            }
        }
    }
}

#[test]
fn the_shipped_units_open_files_limit_holds_every_default_connection_without_a_warning() {
    let unit = std::fs::read_to_string(repository().join("docs/deploy/gren-registry.service")).unwrap();
    let limit: u64 = unit
        .lines()
        .find_map(|line| line.strip_prefix("LimitNOFILE="))
        .expect("the unit sets LimitNOFILE")
        .trim()
        .parse()
        .unwrap();
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) }, 0);
    // SAFETY: geteuid has no preconditions.
    if current.rlim_max < limit && unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root: it can set the unit's limit"
        );
        eprintln!(
            "skipped: the hard open-files limit ({}) is below the unit's {limit}, and only root may raise it",
            current.rlim_max
        );
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_gren-registry"));
    clear_registry_env(&mut command);
    command
        .arg("serve")
        .env("GREN_REGISTRY_DATA_DIR", data.path())
        .env("GREN_REGISTRY_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // As systemd does for the unit: both limits set before exec.
    let unit_limit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit is async-signal-safe; nothing else runs before exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &unit_limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = command.spawn().unwrap();
    let log = read_until(child.stderr.take().unwrap(), "can hold", Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    assert!(log.contains("can hold 10000 connections at once"), "{log}");
    assert!(
        !log.contains("open-files limit"),
        "a start under LimitNOFILE={limit} warns:\n{log}"
    );
}

/// What `pipe` says up to and including the first line containing `needle`.
fn read_until(pipe: impl std::io::Read + Send + 'static, needle: &'static str, within: Duration) -> String {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut said = String::new();
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            said += &line;
            said.push('\n');
            if line.contains(needle) {
                break;
            }
        }
        let _ = sender.send(said);
    });
    receiver.recv_timeout(within).expect("the server said nothing in time")
}
