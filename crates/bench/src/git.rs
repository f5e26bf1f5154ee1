//! The git rows of the benchmark: what the Gren compiler does to fetch a
//! package (`git ls-remote --tags`, then `git clone --branch <v> --depth 1`)
//! through the registry, against a shallow clone of the same bare
//! repository over `file://` (the floor: git alone, no HTTP, no CGI); and
//! the real compiler installing an application with ten dependencies.
//! Every git run has its own HOME and global configuration.

use super::median;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

/// The application's dependencies: ten packages of the benchmark registry.
const DIRECT: [(&str, &str); 9] = [
    ("gren-lang/core", "7.0.0"),
    ("gren-lang/node", "6.1.0"),
    ("author-000/pkg-00000", "4.4.0"),
    ("author-001/pkg-00001", "4.4.0"),
    ("author-002/pkg-00002", "4.4.0"),
    ("author-003/pkg-00003", "4.4.0"),
    ("author-004/pkg-00004", "4.4.0"),
    ("author-005/pkg-00005", "4.4.0"),
    ("author-006/pkg-00006", "4.4.0"),
];
const INDIRECT: (&str, &str) = ("gren-lang/url", "6.0.0");

/// A HOME whose git sends https://github.com/ to `registry`.
struct GitHome(PathBuf);

impl GitHome {
    fn new(work: &Path, name: &str, registry: &str) -> GitHome {
        let home = work.join(name);
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        let config = format!("[url \"{registry}/git/\"]\n\tinsteadOf = https://github.com/\n");
        std::fs::write(home.join(".gitconfig"), config).unwrap();
        GitHome(home)
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(&self.0)
            .env("HOME", &self.0)
            .env("GIT_CONFIG_GLOBAL", self.0.join(".gitconfig"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stdin(Stdio::null());
        command
    }

    fn git(&self, args: &[&str]) -> Output {
        let out = self.command("git").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// Milliseconds `run` takes, median of `count` runs.
fn timed(count: usize, mut run: impl FnMut(usize)) -> f64 {
    median(
        (0..count)
            .map(|round| {
                let started = Instant::now();
                run(round);
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect(),
    )
}

/// `ls-remote` + shallow clone of gren-lang/core 7.0.0 through the registry
/// at `registry` (data in `data`), against the file:// floor.
pub fn fetch_row(work: &Path, registry: &str, data: &Path, rounds: usize) -> [String; 4] {
    let home = GitHome::new(work, "git-fetch", registry);
    let url = "https://github.com/gren-lang/core.git";
    // The first request builds the repository; measured apart.
    let first = timed(1, |_| drop(home.git(&["ls-remote", "--tags", url])));
    let clone = |round: usize, from: &str| {
        let dir = format!("clone-{round}");
        let _ = std::fs::remove_dir_all(home.0.join(&dir));
        home.git(&["clone", "--quiet", "--branch", "7.0.0", "--depth", "1", from, &dir]);
    };
    let ours = timed(rounds, |round| {
        home.git(&["ls-remote", "--tags", url]);
        clone(round, url);
    });
    let repositories = data.join("repositories/gren-lang/core");
    let repository = std::fs::read_dir(&repositories)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "git"))
        .expect("the repository was built");
    let floor_url = format!("file://{}", repository.display());
    let floor = timed(rounds, |round| clone(round, &floor_url));
    let ratio = ours / floor;
    [
        format!("git ls-remote + clone --depth 1 of gren-lang/core 7.0.0 (median of {rounds})"),
        format!("{ours:.1} ms (first request, building the repository: {first:.0} ms)"),
        format!("{floor:.1} ms (git clone --depth 1 file://, same repository)"),
        format!("ratio {ratio:.2}"),
    ]
}

/// `gren package install` of an application with ten dependencies, all from
/// the registry: the first run (repositories built on demand) and the
/// median of warm runs, each with an empty package cache.
pub fn install_row(work: &Path, registry: &str, compiler: &Path, rounds: usize) -> [String; 4] {
    let app = work.join("git-app");
    let _ = std::fs::remove_dir_all(&app);
    std::fs::create_dir_all(app.join("src")).unwrap();
    let direct: serde_json::Map<String, serde_json::Value> = DIRECT
        .iter()
        .map(|(name, version)| (name.to_string(), (*version).into()))
        .collect();
    let outline = serde_json::json!({
        "type": "application", "platform": "node", "source-directories": ["src"], "gren-version": "0.6.3",
        "dependencies": { "direct": direct, "indirect": { INDIRECT.0: INDIRECT.1 } }
    });
    std::fs::write(app.join("gren.json"), serde_json::to_vec_pretty(&outline).unwrap()).unwrap();
    let install = |round: usize| {
        let _ = std::fs::remove_dir_all(app.join("gren_packages"));
        let home = GitHome::new(work, &format!("git-install-{round}"), registry);
        let out = home
            .command("node")
            .arg(compiler)
            .args(["package", "install"])
            .current_dir(&app)
            .env("GREN_BIN", "/bin/true")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gren package install: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let first = timed(1, install);
    let warm = timed(rounds, |round| install(round + 1));
    [
        "gren package install, application with 10 dependencies (real compiler 0.6.3)".into(),
        format!("{warm:.0} ms (median of {rounds}; first, building 10 repositories: {first:.0} ms)"),
        "—".into(),
        "every dependency fetched with git through the registry".into(),
    ]
}
