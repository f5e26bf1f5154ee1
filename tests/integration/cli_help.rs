//! The command line as a newcomer meets it, through the real binary: every
//! command's `--help` has a summary of its own and describes each of its
//! arguments, enumerations list their values, each `serve` flag is named
//! after its environment variable (old names still accepted), and shell
//! completions are generated from the same definitions.

use crate::common::*;
use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};

/// `gren-registry <args>`, with no registry variable from the developer's
/// shell and a HOME of its own.
fn gren(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_gren-registry"));
    clear_registry_env(&mut command);
    command
        .args(args)
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The short help (`-h`) of the command `path`, which must succeed.
fn help(path: &[String]) -> String {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("-h");
    let output = gren(&args);
    assert!(output.status.success(), "{args:?}: {}", text(&output.stderr));
    text(&output.stdout)
}

/// One command's help, as clap lays it out: its summary (the first line),
/// its subcommands with their summaries, and its arguments and options,
/// each with its description ("" when it has none).
#[derive(Debug, Default)]
struct Help {
    summary: String,
    commands: Vec<(String, String)>,
    entries: Vec<(String, String)>,
}

fn parse_help(text: &str) -> Help {
    let mut help = Help {
        summary: text.lines().next().unwrap_or_default().trim().to_string(),
        ..Help::default()
    };
    let mut section = "";
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if indent == 0 {
            section = if trimmed.ends_with(':') { trimmed } else { "" };
            continue;
        }
        let entries = match section {
            "Commands:" => &mut help.commands,
            "Arguments:" | "Options:" => &mut help.entries,
            _ => continue,
        };
        if indent >= 8 {
            // clap's next-line layout: the description under its entry.
            let last = entries.last_mut().expect("a description follows its entry");
            last.1 = format!("{} {trimmed}", last.1).trim().to_string();
            continue;
        }
        let (head, description) = trimmed.split_once("  ").unwrap_or((trimmed, ""));
        entries.push((head.trim().to_string(), description.trim().to_string()));
    }
    help
}

/// A description without clap's own brackets (`[default: …]`, `[env: …]`,
/// `[possible values: …]`): what a person wrote about the argument.
fn written(description: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in description.chars() {
        match c {
            '[' => depth += 1,
            ']' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

/// Every command path below the program (`["admin", "identity", "show"]`),
/// found by walking the help texts, hidden `git-credential` added.
fn every_command() -> Vec<(Vec<String>, Help)> {
    let mut found = Vec::new();
    let mut pending = vec![Vec::<String>::new(), vec!["git-credential".to_string()]];
    while let Some(path) = pending.pop() {
        let parsed = parse_help(&help(&path));
        for (name, _) in &parsed.commands {
            if name != "help" {
                pending.push(path.iter().cloned().chain([name.clone()]).collect());
            }
        }
        found.push((path, parsed));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Every command path of the program, hidden ones included
/// (`["admin", "migrate"]`), as its help texts list them.
pub(crate) fn command_paths() -> Vec<Vec<String>> {
    every_command()
        .into_iter()
        .map(|(path, _)| path)
        .filter(|path| !path.is_empty())
        .collect()
}

#[test]
fn every_command_has_a_summary_of_its_own_and_describes_each_argument() {
    let commands = every_command();
    let names: Vec<String> = commands.iter().map(|(path, _)| path.join(" ")).collect();
    for expected in [
        "serve",
        "admin",
        "admin migrate",
        "admin identity set-member",
        "login",
        "identity add",
        "token revoke",
        "setup-git",
        "completions",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} missing: {names:?}"
        );
    }
    let mut by_summary: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (path, parsed) in &commands {
        let name = format!("gren-registry {}", path.join(" "));
        let summary = parsed.summary.as_str();
        assert!(!summary.is_empty(), "{name} has no summary");
        assert!(!summary.contains("The client's options"), "{name}: {summary}");
        by_summary.entry(summary).or_default().push(name.clone());
        for (head, description) in &parsed.entries {
            assert!(
                !written(description).is_empty(),
                "{name}: {head} is not described ({description:?})"
            );
        }
    }
    for (path, parsed) in &commands {
        // The list a parent shows is the child's own summary.
        for (child, listed) in parsed.commands.iter().filter(|(child, _)| child != "help") {
            let child_path: Vec<String> = path.iter().cloned().chain([child.clone()]).collect();
            let (_, own) = commands.iter().find(|(other, _)| *other == child_path).unwrap();
            assert_eq!(listed, &own.summary, "{child_path:?}");
        }
    }
    let shared: Vec<_> = by_summary.iter().filter(|(_, names)| names.len() > 1).collect();
    assert!(shared.is_empty(), "commands sharing a summary: {shared:?}");
}

#[test]
fn the_arguments_a_newcomer_asked_about_are_described() {
    let described = |path: &[&str], head: &str| -> String {
        let path: Vec<String> = path.iter().map(|word| word.to_string()).collect();
        let parsed = parse_help(&help(&path));
        let (_, description) = parsed
            .entries
            .iter()
            .find(|(entry, _)| entry.starts_with(head))
            .unwrap_or_else(|| panic!("{path:?} has no {head}: {:?}", parsed.entries));
        written(description)
    };
    assert!(described(&["login"], "--email").contains("e-mail address"));
    assert!(described(&["revoke"], "--reason").contains("Why"));
    assert!(described(&["revoke"], "<VERSION>").contains("X.Y.Z"));
    assert!(described(&["publish"], "[PATH]").contains("project directory"));
    assert!(described(&["install"], "[DIR]").contains("gren.json"));
    assert!(described(&["git-credential"], "<OPERATION>").contains("get"));
    assert!(described(&["serve"], "--postmark-url").contains("Postmark"));
    assert!(described(&["serve"], "--mail-from").contains("Sender"));
    assert!(described(&["admin"], "--data-dir").contains("data directory"));
    // Global: taken after the subcommand too (`admin migrate --data-dir f1`).
    assert!(described(&["admin", "migrate"], "--data-dir").contains("data directory"));
    assert!(described(&["login"], "--registry <URL>").contains("registry"));
}

#[test]
fn enumerations_list_their_values_and_clap_refuses_others_before_any_request() {
    let roles = "[possible values: download, publish, admin]";
    for path in [
        &["identity", "add"][..],
        &["identity", "role"],
        &["admin", "identity", "set-member"],
    ] {
        let path: Vec<String> = path.iter().map(|word| word.to_string()).collect();
        let text = help(&path);
        assert!(text.contains(roles), "{path:?}:\n{text}");
    }
    assert!(help(&["private".into()]).contains("[possible values: on, off]"));
    let shells = help(&["completions".into()]);
    for shell in ["bash", "fish", "zsh"] {
        assert!(shells.contains(shell), "{shells}");
    }
    // No registry listens at the default address: the refusal is clap's.
    for args in [
        &["identity", "add", "blaix", "friend@example.com", "--role", "owner"][..],
        &[
            "admin",
            "--data-dir",
            "/nonexistent",
            "identity",
            "set-member",
            "a",
            "b@example.com",
            "--role",
            "Owner",
        ],
    ] {
        let output = gren(args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("invalid value") && stderr.contains("download, publish, admin"),
            "{stderr}"
        );
    }
}

/// `GREN_REGISTRY_REQUEST_TIMEOUT` → `--request-timeout`.
fn flag_of(variable: &str) -> String {
    let name = variable.strip_prefix("GREN_REGISTRY_").unwrap_or(variable);
    format!("--{}", name.to_ascii_lowercase().replace('_', "-"))
}

#[test]
fn every_serve_flag_is_named_after_its_variable_and_the_old_names_still_work() {
    let parsed = parse_help(&help(&["serve".into()]));
    let mut checked = 0;
    for (head, description) in &parsed.entries {
        let Some(start) = description.find("[env: ") else {
            continue;
        };
        let variable: String = description[start + "[env: ".len()..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        let flag = head.split_whitespace().next().unwrap();
        assert_eq!(flag, flag_of(&variable), "{head}: {description}");
        checked += 1;
    }
    assert!(
        checked > 30,
        "only {checked} flags with a variable: {:?}",
        parsed.entries
    );
    // The names before the rename still parse (hidden), into the same
    // setting: a bad value is refused naming the variable.
    let help = help(&["serve".into()]);
    for (old, new, bad, variable) in [
        (
            "--request-timeout-secs",
            "--request-timeout",
            "0",
            "GREN_REGISTRY_REQUEST_TIMEOUT",
        ),
        ("--keep-alive-secs", "--keep-alive", "0", "GREN_REGISTRY_KEEP_ALIVE"),
        (
            "--shutdown-grace-secs",
            "--shutdown-grace",
            "301",
            "GREN_REGISTRY_SHUTDOWN_GRACE",
        ),
        ("--git-timeout-secs", "--git-timeout", "0", "GREN_REGISTRY_GIT_TIMEOUT"),
        (
            "--git-token-secs",
            "--git-token-seconds",
            "0",
            "GREN_REGISTRY_GIT_TOKEN_SECONDS",
        ),
    ] {
        assert!(!help.contains(&format!("{old} ")), "{old} is shown");
        for flag in [old, new] {
            let output = gren(&["serve", "--data-dir", "/nonexistent", flag, bad]);
            let stderr = text(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{flag}: {stderr}");
            assert!(
                stderr.contains(&format!("invalid configuration: {variable}")),
                "{flag}: {stderr}"
            );
        }
    }
}

#[test]
fn completions_are_generated_for_bash_zsh_and_fish_from_the_command_line_itself() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef gren-registry"),
        ("fish", "complete -c gren-registry"),
    ] {
        let output = gren(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {}", text(&output.stderr));
        let script = text(&output.stdout);
        assert!(script.contains(marker), "{shell}:\n{script}");
        // Subcommands at every depth, and options of the client and of admin.
        for word in [
            "setup-git",
            "identity",
            "accept",
            "admin",
            "migrate",
            "set-member",
            "--data-dir",
            "--registry",
            "--role",
        ] {
            // fish names a long option `-l data-dir`.
            let fish_style = format!("-l {}", word.trim_start_matches("--"));
            assert!(
                script.contains(word) || script.contains(&fish_style),
                "{shell} completions lack {word}"
            );
        }
        if shell == "bash" {
            let checked = Command::new("bash").arg("-n").arg("-c").arg(&script).output().unwrap();
            assert!(checked.status.success(), "bash -n: {}", text(&checked.stderr));
        }
    }
    let output = gren(&["completions", "tcsh"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("possible values"));
}
