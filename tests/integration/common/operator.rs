//! Running the operator commands (`gren-registry admin --data-dir DIR ...`)
//! as child processes, with the registry's variables taken out of their
//! environment so that a developer's shell cannot change what a test sees.

use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one admin command may take before the test calls it hung.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What an admin command did.
#[derive(Debug)]
pub struct Out {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn succeeded(&self) -> bool {
        self.code == Some(0)
    }

    #[track_caller]
    pub fn success(self) -> Out {
        assert!(self.succeeded(), "{}", self.report("should succeed"));
        self
    }

    #[track_caller]
    pub fn failure(self) -> Out {
        let failed = self.code.is_some_and(|code| code != 0);
        assert!(failed, "{}", self.report("should exit non-zero"));
        self
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("{}", self.report(&format!("printed no valid JSON ({err})"))))
    }

    /// The command, what it did wrong, its exit code and its output.
    fn report(&self, wrong: &str) -> String {
        format!(
            "`admin {}` {wrong}, exit code {:?}\nstdout:\n{}\nstderr:\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }

    /// stdout and stderr together, for "the output mentions X".
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn assert_stderr_has(&self, needle: &str) -> &Out {
        let wrong = format!("stderr should mention {needle:?}");
        assert!(self.stderr.contains(needle), "{}", self.report(&wrong));
        self
    }

    #[track_caller]
    pub fn assert_stdout_has(&self, needle: &str) -> &Out {
        let wrong = format!("output should mention {needle:?}");
        assert!(self.stdout.contains(needle), "{}", self.report(&wrong));
        self
    }
}

/// `gren-registry admin --data-dir <dir> <args...>`, waited for (at most
/// [`COMMAND_TIMEOUT`]).
pub fn admin(dir: &Path, args: &[&str]) -> Out {
    run(dir, false, None, args)
}

/// Like [`admin`], run as the user `uid` (the tests run as root), from a
/// copy of the binary that user can reach ([`super::BinaryForOthers`]).
pub fn admin_as(uid: u32, dir: &Path, args: &[&str]) -> Out {
    run(dir, false, Some(uid), args)
}

/// Like [`admin`] with `--json`.
pub fn admin_json(dir: &Path, args: &[&str]) -> Out {
    run(dir, true, None, args)
}

/// `gren-registry admin --data-dir <dir>`, for a command a test runs in the
/// background; the caller adds the rest.
pub fn admin_command(dir: &Path) -> Command {
    admin_command_of(Path::new(env!("CARGO_BIN_EXE_gren-registry")), dir)
}

fn admin_command_of(program: &Path, dir: &Path) -> Command {
    let mut command = Command::new(program);
    super::clear_registry_env(&mut command);
    command.arg("admin").arg("--data-dir").arg(dir);
    command
}

fn run(dir: &Path, json: bool, uid: Option<u32>, args: &[&str]) -> Out {
    let args: Vec<&str> = json
        .then_some("--json")
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    let mut all: Vec<String> = vec!["--data-dir".into(), dir.display().to_string()];
    all.extend(args.iter().map(|arg| arg.to_string()));
    // Another user may not reach the build's binary (a clone under /root).
    let for_others = uid.map(|_| super::BinaryForOthers::new());
    let program = for_others
        .as_ref()
        .map_or(Path::new(env!("CARGO_BIN_EXE_gren-registry")), |copy| &copy.path);
    let mut command = admin_command_of(program, dir);
    if let Some(uid) = uid {
        std::os::unix::process::CommandExt::uid(&mut command, uid);
    }
    command
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("cannot run gren-registry admin");
    // Both pipes drain while the command runs, so a chatty one cannot block.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`admin {}` did not finish within {COMMAND_TIMEOUT:?}", all.join(" "));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Out {
        args: all,
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}
