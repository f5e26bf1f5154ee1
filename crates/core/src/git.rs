//! Running git: the one way the registry starts a git process, both to build
//! a package's repository ([`crate::repository`]) and to answer a fetch
//! (`git http-backend`, from the HTTP crate).
//!
//! Every run is boxed in the same way:
//! - **a clean environment**: only `PATH` is inherited; no system or global
//!   configuration is read (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`),
//!   so an operator's `~/.gitconfig` (hooks, `safe.directory`, aliases) cannot
//!   change what the registry serves; the caller adds what the run needs;
//! - **private files**: umask `077`, so what git writes under the data
//!   directory is `0600` in `0700` like every record;
//! - **a time limit**: past it, the whole process group is killed (git starts
//!   helpers: `http-backend` runs `upload-pack`, which runs `pack-objects`);
//! - **a cap on standard output**, which is kept in memory: past it, the
//!   group is killed too; standard error is kept up to [`MAX_STDERR`] for the
//!   log.
//!
//! Standard input is bytes in memory, or written by the caller as git reads
//! it ([`Stdin::Stream`]: a repository build feeds `fast-import` one version
//! at a time rather than the whole history at once).

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Standard error kept of a run, for the log: git's messages are lines.
pub const MAX_STDERR: usize = 16 * 1024;

/// How to install git, for the messages that find it missing.
pub const INSTALL_HINT: &str = "Install git (on Debian and Ubuntu: `apt-get install git`).";

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git is not installed or cannot be run ({0}). {INSTALL_HINT}")]
    Missing(io::Error),
    #[error("git has no http-backend at {0} (git {1}). {INSTALL_HINT}")]
    NoHttpBackend(PathBuf, String),
    #[error("talking to git failed: {0}")]
    Io(#[from] io::Error),
    #[error("git {what} ran longer than {} s and was stopped", limit.as_secs())]
    TimedOut { what: String, limit: Duration },
    #[error("git {what} wrote more than {max} bytes and was stopped")]
    OutputTooLarge { what: String, max: usize },
    #[error("git {what} failed ({status}): {stderr}")]
    Failed {
        what: String,
        status: ExitStatus,
        stderr: String,
    },
}

/// What a run of git reads on its standard input.
pub enum Stdin<'a> {
    Bytes(&'a [u8]),
    /// Written by the caller, on a thread of its own, while git runs; the
    /// input ends when it returns. Its error (git stopped reading, or the
    /// caller's own, which it keeps for itself) only ends the input early:
    /// git judges a truncated input by its exit status.
    Stream(Writer<'a>),
}

/// What writes a [`Stdin::Stream`].
pub type Writer<'a> = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send + 'a>;

/// One run of git: its arguments, extra environment, input and limits.
pub struct Invocation<'a> {
    pub args: Vec<OsString>,
    pub env: Vec<(&'static str, OsString)>,
    pub cwd: Option<&'a Path>,
    pub stdin: Stdin<'a>,
    pub time_limit: Duration,
    pub max_stdout: usize,
}

impl<'a> Invocation<'a> {
    /// `git <args>` with no input, a minute and a mebibyte of output.
    pub fn new<S: Into<OsString>>(args: impl IntoIterator<Item = S>) -> Invocation<'a> {
        Invocation {
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: None,
            stdin: Stdin::Bytes(&[]),
            time_limit: Duration::from_secs(60),
            max_stdout: 1024 * 1024,
        }
    }

    /// The subcommand, for messages.
    fn what(&self) -> String {
        self.args
            .iter()
            .map(|arg| arg.to_string_lossy())
            .find(|arg| !arg.starts_with('-') && !arg.contains('='))
            .map(|arg| arg.into_owned())
            .unwrap_or_default()
    }
}

/// What a finished run gave.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Finished {
    /// Standard error as text, for the log.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim_end().to_string()
    }
}

/// The git program to run (`git` on the `PATH` unless told otherwise).
#[derive(Debug, Clone)]
pub struct Git {
    pub program: PathBuf,
}

impl Default for Git {
    fn default() -> Git {
        Git { program: "git".into() }
    }
}

impl Git {
    /// Checks that git runs and has `http-backend`; returns its version line.
    pub fn check_installed(&self) -> Result<String, GitError> {
        let version = self.run_ok(Invocation::new(["--version"])).map_err(|err| match err {
            GitError::Io(err) => GitError::Missing(err),
            other => other,
        })?;
        let version = String::from_utf8_lossy(&version).trim().to_string();
        let exec_path = self.run_ok(Invocation::new(["--exec-path"]))?;
        let backend = PathBuf::from(String::from_utf8_lossy(&exec_path).trim()).join("git-http-backend");
        if !backend.is_file() {
            return Err(GitError::NoHttpBackend(backend, version));
        }
        Ok(version)
    }

    /// Runs git and requires it to succeed; returns its standard output.
    pub fn run_ok(&self, invocation: Invocation) -> Result<Vec<u8>, GitError> {
        let what = invocation.what();
        let finished = self.run(invocation)?;
        if !finished.status.success() {
            return Err(GitError::Failed {
                what,
                status: finished.status,
                stderr: finished.stderr_text(),
            });
        }
        Ok(finished.stdout)
    }

    /// Runs git to the end, within the invocation's limits; a failing exit
    /// status is the caller's to judge.
    pub fn run(&self, mut invocation: Invocation) -> Result<Finished, GitError> {
        let what = invocation.what();
        let mut child = self.command(&invocation).spawn()?;
        let deadline = Instant::now() + invocation.time_limit;
        let timed_out = || GitError::TimedOut {
            what: what.clone(),
            limit: invocation.time_limit,
        };
        let stdin = std::mem::replace(&mut invocation.stdin, Stdin::Bytes(&[]));
        let (stdout, stderr) = match collect(&mut child, stdin, invocation.max_stdout, deadline) {
            Ok(Some(output)) => output,
            // The group was killed already.
            Ok(None) => return Err(timed_out()),
            Err(Overflow) => {
                return Err(GitError::OutputTooLarge {
                    what,
                    max: invocation.max_stdout,
                });
            }
        };
        match wait_until(&mut child, deadline)? {
            Some(status) => Ok(Finished { status, stdout, stderr }),
            None => {
                kill_group(&mut child);
                Err(timed_out())
            }
        }
    }

    fn command(&self, invocation: &Invocation) -> Command {
        let mut command = Command::new(&self.program);
        command
            .env_clear()
            .envs(std::env::var_os("PATH").map(|path| ("PATH", path)))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .envs(invocation.env.iter().map(|(key, value)| (key, value)))
            .args(&invocation.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so that a kill reaches the helpers git starts.
            .process_group(0);
        if let Some(cwd) = invocation.cwd {
            command.current_dir(cwd);
        }
        // SAFETY: umask is async-signal-safe and touches no memory.
        unsafe {
            command.pre_exec(|| {
                libc::umask(0o077);
                Ok(())
            });
        }
        command
    }
}

/// Standard output went past its cap.
struct Overflow;

/// What one of the threads serving the child's pipes finished with.
enum Piped {
    Stdin,
    Stdout(Vec<u8>, bool),
    Stderr(Vec<u8>),
}

/// Feeds standard input and reads both outputs to their ends, all within
/// the deadline: `Ok(None)` when it came first (a child that closed its
/// standard output but kept standard error, or its input, open would
/// otherwise hold the caller for as long as it liked).
fn collect(
    child: &mut Child,
    input: Stdin,
    max: usize,
    deadline: Instant,
) -> Result<Option<(Vec<u8>, Vec<u8>)>, Overflow> {
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::channel();
        // A child that stops reading early makes this fail: what it says
        // about it is on its standard error, and in its exit status.
        let to_stdin = sender.clone();
        scope.spawn(move || {
            let _ = match input {
                Stdin::Bytes(bytes) => stdin.write_all(bytes),
                Stdin::Stream(write) => write(&mut stdin),
            };
            drop(stdin);
            let _ = to_stdin.send(Piped::Stdin);
        });
        let from_stderr = sender.clone();
        scope.spawn(move || {
            let _ = from_stderr.send(Piped::Stderr(read_capped(stderr, MAX_STDERR).0));
        });
        scope.spawn(move || {
            let (bytes, overflowed) = read_capped(stdout, max);
            let _ = sender.send(Piped::Stdout(bytes, overflowed));
        });
        let (mut out, mut errors, mut fed) = (None, None, false);
        let mut cut_short = false;
        while out.is_none() || errors.is_none() || !fed {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left) {
                Ok(Piped::Stdin) => fed = true,
                Ok(Piped::Stderr(bytes)) => errors = Some(bytes),
                Ok(Piped::Stdout(bytes, overflowed)) => {
                    out = Some((bytes, overflowed));
                    if overflowed {
                        cut_short = true;
                        break;
                    }
                }
                Err(_) => {
                    cut_short = true;
                    break;
                }
            }
        }
        if cut_short {
            // Ends the readers and the writer: their pipes close.
            kill_group(child);
        }
        match out {
            Some((_, true)) => Err(Overflow),
            Some((stdout, false)) if !cut_short => Ok(Some((stdout, errors.unwrap_or_default()))),
            _ => Ok(None),
        }
    })
}

/// Reads `reader` to its end, keeping at most `max` bytes; `true` when
/// there was more.
fn read_capped(reader: impl Read, max: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut limited = reader.take(max as u64 + 1);
    let _ = limited.read_to_end(&mut kept);
    let overflowed = kept.len() > max;
    kept.truncate(max);
    (kept, overflowed)
}

/// The child's exit status, or `None` when it was still running at the
/// deadline (its output ended already, so this is short).
fn wait_until(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Kills the child's process group and reaps the child.
fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: a plain system call; the group is the child's own.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.wait();
}

/// git for a unit test, `None` (with a note) when it is not installed;
/// under CI its absence fails the test.
#[cfg(test)]
pub(crate) fn installed_for_tests() -> Option<Git> {
    let git = Git::default();
    match git.check_installed() {
        Ok(_) => Some(git),
        Err(_) if std::env::var_os("CI").is_none() => {
            eprintln!("note: git is not installed; skipping");
            None
        }
        Err(err) => panic!("{err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git() -> Option<Git> {
        installed_for_tests()
    }

    #[test]
    fn a_run_sees_neither_the_users_configuration_nor_a_permissive_umask() {
        let Some(git) = git() else { return };
        let dir = tempfile::tempdir().unwrap();
        let mut init = Invocation::new(["init", "--bare", "--quiet", "repo.git"]);
        init.cwd = Some(dir.path());
        git.run_ok(init).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("repo.git/config"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "git's files are private: {mode:o}");
        // A home whose configuration would show: git must not read it.
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join(".gitconfig"), "[user]\n\tname = planted\n").unwrap();
        let mut listed = Invocation::new(["config", "--list", "--show-origin"]);
        listed.cwd = Some(dir.path());
        listed.env = vec![("HOME", home.path().into())];
        let listed = String::from_utf8(git.run_ok(listed).unwrap()).unwrap();
        assert!(!listed.contains("planted"), "{listed}");
        assert!(!listed.contains(".gitconfig"), "{listed}");
    }

    #[test]
    fn a_run_past_its_time_limit_or_output_cap_is_stopped_with_its_helpers() {
        // Stand-ins for a git that hangs or floods: the box is the same.
        let sleeper = Git { program: "sh".into() };
        let mut slow = Invocation::new(["-c", "sleep 30 & sleep 30"]);
        slow.time_limit = Duration::from_millis(300);
        let started = Instant::now();
        let err = sleeper.run(slow).unwrap_err();
        assert!(matches!(err, GitError::TimedOut { .. }), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the helper's pipe did not hold it up"
        );
        // Standard output closed early, standard error kept open: the
        // deadline still holds.
        let mut mute = Invocation::new(["-c", "exec >&-; sleep 30"]);
        mute.time_limit = Duration::from_millis(300);
        let started = Instant::now();
        let err = sleeper.run(mute).unwrap_err();
        assert!(matches!(err, GitError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "held by standard error");
        let flood = Git { program: "yes".into() };
        let mut chatty = Invocation::new(["y"]);
        chatty.max_stdout = 100;
        let err = flood.run(chatty).unwrap_err();
        assert!(matches!(err, GitError::OutputTooLarge { max: 100, .. }), "{err}");
    }
}
