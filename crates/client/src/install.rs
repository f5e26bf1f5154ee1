//! `install [DIR]`: resolves a project's dependencies against the registry
//! the way the Gren compiler does, downloads the bundles, checks their
//! SHA-256 and writes them to `DIR/gren_packages/` under the compiler's file
//! names.
//!
//! - applications: exactly the versions listed (`direct` and `indirect`);
//! - packages: the lower bound of each range (the lowest published version
//!   in it), and the same for dependencies of dependencies.
//!
//! Every package is checked against the project's compiler version and
//! platform, and every dependency's range against the version chosen; two
//! packages the compiler would give one file name are refused.

use super::remote::RemoteRegistry;
use super::{CliError, CliResult};
use gren_registry_core::api::{PackagePage, VersionPage};
use gren_registry_core::bundle::outline::{KernelCode, Outline};
use gren_registry_core::package::{PackageName, Range, Version};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::Path;

/// What a project asks for.
struct Project {
    platform: String,
    /// The compiler version the project is for (an application's
    /// `gren-version`, or the lower bound of a package's).
    gren: Version,
    application: bool,
    /// name → the version (applications) or range (packages) asked for.
    wanted: Vec<(PackageName, Want)>,
}

#[derive(Clone, Copy)]
enum Want {
    Exactly(Version),
    Within(Range),
}

fn read_project(dir: &Path) -> CliResult<Project> {
    let path = dir.join("gren.json");
    let text = std::fs::read(&path).map_err(|err| {
        CliError(format!(
            "Cannot read {}: {err}\nRun install in a Gren project directory.",
            path.display()
        ))
    })?;
    let outline: Value = serde_json::from_slice(&text)
        .map_err(|err| CliError(format!("{} is not valid JSON: {err}", path.display())))?;
    let field = |name: &str| {
        outline[name]
            .as_str()
            .ok_or_else(|| CliError(format!("{}: `{name}` is missing.", path.display())))
    };
    let platform = field("platform")?.to_string();
    let parse_name = |name: &str| {
        PackageName::parse(name).ok_or_else(|| CliError(format!("{}: {name:?} is not a package name.", path.display())))
    };
    match field("type")? {
        "application" => {
            let gren = Version::parse(field("gren-version")?)
                .ok_or_else(|| CliError(format!("{}: `gren-version` is not X.Y.Z.", path.display())))?;
            let mut wanted = Vec::new();
            for group in ["direct", "indirect"] {
                for (name, version) in outline["dependencies"][group].as_object().into_iter().flatten() {
                    let version = version.as_str().and_then(Version::parse).ok_or_else(|| {
                        CliError(format!(
                            "{}: {name} must be an exact version in an application.",
                            path.display()
                        ))
                    })?;
                    wanted.push((parse_name(name)?, Want::Exactly(version)));
                }
            }
            Ok(Project {
                platform,
                gren,
                application: true,
                wanted,
            })
        }
        "package" => {
            let gren = Range::parse(field("gren-version")?)
                .ok_or_else(|| CliError(format!("{}: `gren-version` is not a range.", path.display())))?
                .lower;
            let mut wanted = Vec::new();
            for (name, range) in outline["dependencies"].as_object().into_iter().flatten() {
                let range = range.as_str().and_then(Range::parse).ok_or_else(|| {
                    CliError(format!(
                        "{}: the range of {name} is not like \"1.0.0 <= v < 2.0.0\".",
                        path.display()
                    ))
                })?;
                wanted.push((parse_name(name)?, Want::Within(range)));
            }
            Ok(Project {
                platform,
                gren,
                application: false,
                wanted,
            })
        }
        other => Err(CliError(format!("{}: unknown project type {other:?}.", path.display()))),
    }
}

/// A chosen version, with the bundle and its outline.
struct ChosenVersion {
    version: Version,
    bytes: Vec<u8>,
    outline: Outline,
}

pub fn install(registry: &RemoteRegistry, token: Option<&str>, dir: &Path) -> CliResult<()> {
    let project = read_project(dir)?;
    let mut chosen: BTreeMap<PackageName, ChosenVersion> = BTreeMap::new();
    // (package, what is wanted, who wants it)
    let mut queue: VecDeque<(PackageName, Want, String)> = project
        .wanted
        .iter()
        .map(|(name, want)| (name.clone(), *want, "your project".to_string()))
        .collect();
    while let Some((name, want, wanted_by)) = queue.pop_front() {
        if let Some(existing) = chosen.get(&name) {
            check_fits(&name, existing.version, want, &wanted_by)?;
            continue;
        }
        if project.application && wanted_by != "your project" {
            return Err(CliError(format!(
                "{wanted_by} needs {name}, which gren.json does not list.\nAdd it to the application's indirect dependencies."
            )));
        }
        let version = match want {
            Want::Exactly(version) => version,
            Want::Within(range) => lowest_in(registry, token, &name, range, &wanted_by)?,
        };
        let fetched = fetch(registry, token, dir, &name, version)?;
        check_compatible(&project, &fetched.outline)?;
        for (dependency, range) in &fetched.outline.dependencies {
            queue.push_back((dependency.clone(), Want::Within(*range), format!("{name} {version}")));
        }
        chosen.insert(name, fetched);
    }
    check_file_names(&chosen)?;
    let target = dir.join("gren_packages");
    std::fs::create_dir_all(&target).map_err(|err| CliError(format!("Cannot create {}: {err}", target.display())))?;
    for (name, fetched) in &chosen {
        write_atomically(&target.join(name.bundle_file_name(fetched.version)), &fetched.bytes)?;
    }
    println!("Installed {} package(s) in {}", chosen.len(), target.display());
    Ok(())
}

/// The compiler finds a package in `gren_packages/` by its file name alone,
/// in which `x/y-z` and `x-y/z` are the same (and so are names differing in
/// case, on macOS and Windows): two such packages cannot be installed
/// together, since one file would silently replace the other.
fn check_file_names(chosen: &BTreeMap<PackageName, ChosenVersion>) -> CliResult<()> {
    let mut files: BTreeMap<String, &PackageName> = BTreeMap::new();
    for (name, fetched) in chosen {
        let file = name.bundle_file_name(fetched.version);
        if let Some(other) = files.insert(file.to_ascii_lowercase(), name) {
            return Err(CliError(format!(
                "{other} and {name} would both be installed as gren_packages/{file}, and the compiler cannot tell them apart.\nDepend on only one of them."
            )));
        }
    }
    Ok(())
}

fn check_fits(name: &PackageName, version: Version, want: Want, wanted_by: &str) -> CliResult<()> {
    let fits = match want {
        Want::Exactly(exact) => exact == version,
        Want::Within(range) => range.contains(version),
    };
    if fits {
        return Ok(());
    }
    let asked = match want {
        Want::Exactly(exact) => exact.to_string(),
        Want::Within(range) => range.to_string(),
    };
    Err(CliError(format!(
        "Conflicting versions of {name}: {wanted_by} needs {asked}, but {version} is already chosen.\nAlign the version ranges in gren.json."
    )))
}

fn check_compatible(project: &Project, outline: &Outline) -> CliResult<()> {
    if !outline.gren_version.contains(project.gren) {
        return Err(CliError(format!(
            "{} {} is for Gren {}, not {}.\nPick a version of it made for your compiler.",
            outline.name, outline.version, outline.gren_version, project.gren
        )));
    }
    if outline.platform != "common" && outline.platform != project.platform {
        return Err(CliError(format!(
            "{} {} runs on the {} platform; this project is for {}.",
            outline.name, outline.version, outline.platform, project.platform
        )));
    }
    Ok(())
}

/// The lowest unrevoked published version of `name` within `range`.
fn lowest_in(
    registry: &RemoteRegistry,
    token: Option<&str>,
    name: &PackageName,
    range: Range,
    wanted_by: &str,
) -> CliResult<Version> {
    let package: PackagePage = registry
        .get(&format!("/packages/{name}"), token)
        .map_err(|err| not_found(name, wanted_by, err))?;
    package
        .versions
        .iter()
        .filter(|version| version.revoked.is_none())
        .map(|version| version.version)
        .filter(|version| range.contains(*version))
        .min()
        .ok_or_else(|| {
            CliError(format!(
                "No published version of {name} is in {range} (needed by {wanted_by})."
            ))
        })
}

fn not_found(name: &PackageName, wanted_by: &str, err: CliError) -> CliError {
    CliError(format!("{name} (needed by {wanted_by}): {err}"))
}

/// Downloads (or reuses) a bundle and checks it against its published SHA-256.
fn fetch(
    registry: &RemoteRegistry,
    token: Option<&str>,
    dir: &Path,
    name: &PackageName,
    version: Version,
) -> CliResult<ChosenVersion> {
    let page: VersionPage = registry
        .get(&format!("/packages/{name}/{version}"), token)
        .map_err(|err| not_found(name, "your project", err))?;
    if let Some(revoked) = &page.version.revoked {
        return Err(CliError(format!(
            "{name} {version} was revoked: {}\nChoose another version.",
            revoked.reason
        )));
    }
    let expected = page.version.sha256.clone();
    let existing = dir.join("gren_packages").join(name.bundle_file_name(version));
    let bytes = match std::fs::read(&existing) {
        Ok(bytes) if gren_registry_core::auth::secret::sha256_hex(&bytes) == expected => bytes,
        _ => {
            println!("Downloading {name} {version}");
            let label = format!("{name} {version}");
            let bytes = registry.download(&format!("/packages/{name}/{version}/bundle"), token, &label)?;
            let actual = gren_registry_core::auth::secret::sha256_hex(&bytes);
            if actual != expected {
                return Err(CliError(format!(
                    "The download of {name} {version} is corrupt (SHA-256 {actual}, published {expected}).\nTry again; if it persists, tell the registry's operators."
                )));
            }
            bytes
        }
    };
    let bundle = gren_registry_core::bundle::read(&bytes, 256 * 1024 * 1024)?;
    // The registry accepted this bundle, kernel code included.
    let outline = gren_registry_core::bundle::outline::validate(&bundle, KernelCode::AnyAuthor)?;
    if outline.name != *name || outline.version != version {
        return Err(CliError(format!(
            "The bundle of {name} {version} says it is {} {}.",
            outline.name, outline.version
        )));
    }
    Ok(ChosenVersion {
        version,
        bytes,
        outline,
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> CliResult<()> {
    let dir = path.parent().expect("gren_packages/<file>");
    let failed = |err: std::io::Error| CliError(format!("Cannot write {}: {err}", path.display()));
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(failed)?;
    temp.write_all(bytes).map_err(failed)?;
    temp.as_file().sync_all().map_err(failed)?;
    temp.persist(path).map_err(|err| failed(err.error))?;
    Ok(())
}
