//! Package projects on disk (`gren.json` and `src/`) and the bundles the
//! Gren compiler makes of them.
//!
//! The bundle is byte-for-byte what the compiler writes: the outline
//! re-encoded compactly with its keys in the compiler's order (categories of
//! exposed modules and dependencies sorted by name, unknown fields dropped),
//! `sources` holding every `.gren` module under `src/` and the kernel
//! JavaScript in `src/Gren/Kernel/`, keys sorted, compact JSON that escapes
//! neither non-ASCII nor `/`; then gzip.

use super::{CliError, CliResult};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

const KERNEL_DIR: [&str; 2] = ["Gren", "Kernel"];

/// The outline as the compiler encodes it: fields in this order.
#[derive(Serialize)]
struct CompilerOutline {
    #[serde(rename = "type")]
    kind: String,
    platform: String,
    name: String,
    summary: String,
    license: String,
    version: String,
    #[serde(rename = "exposed-modules")]
    exposed_modules: ExposedModules,
    #[serde(rename = "gren-version")]
    gren_version: String,
    dependencies: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ExposedModules {
    List(Vec<String>),
    Categories(BTreeMap<String, Vec<String>>),
}

#[derive(Serialize)]
struct CompilerBundle {
    outline: CompilerOutline,
    sources: BTreeMap<String, String>,
}

fn text_field(outline: &Map<String, Value>, field: &str) -> CliResult<String> {
    outline
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| CliError(format!("gren.json: `{field}` must be a string.")))
}

fn module_list(value: &Value, field: &str) -> CliResult<Vec<String>> {
    serde_json::from_value(value.clone())
        .map_err(|_| CliError(format!("gren.json: `{field}` must be a list of module names.")))
}

fn compiler_outline(outline: &Map<String, Value>) -> CliResult<CompilerOutline> {
    let exposed = match outline.get("exposed-modules") {
        Some(value @ Value::Array(_)) => ExposedModules::List(module_list(value, "exposed-modules")?),
        Some(Value::Object(categories)) => ExposedModules::Categories(
            categories
                .iter()
                .map(|(category, modules)| Ok((category.clone(), module_list(modules, "exposed-modules")?)))
                .collect::<CliResult<_>>()?,
        ),
        _ => {
            return Err(CliError(
                "gren.json: `exposed-modules` must be a list or an object of lists.".into(),
            ));
        }
    };
    let dependencies = match outline.get("dependencies") {
        Some(Value::Object(entries)) => entries
            .iter()
            .map(|(name, range)| match range {
                Value::String(range) => Ok((name.clone(), range.clone())),
                _ => Err(CliError(format!(
                    "gren.json: the dependency {name} must be a version range."
                ))),
            })
            .collect::<CliResult<_>>()?,
        _ => return Err(CliError("gren.json: `dependencies` must be an object.".into())),
    };
    Ok(CompilerOutline {
        kind: text_field(outline, "type")?,
        platform: text_field(outline, "platform")?,
        name: text_field(outline, "name")?,
        summary: text_field(outline, "summary")?,
        license: text_field(outline, "license")?,
        version: text_field(outline, "version")?,
        exposed_modules: exposed,
        gren_version: text_field(outline, "gren-version")?,
        dependencies,
    })
}

/// The bundle's JSON for the project in `dir`, before compression.
pub fn bundle_json(dir: &Path) -> CliResult<Vec<u8>> {
    let manifest = dir.join("gren.json");
    let text =
        std::fs::read(&manifest).map_err(|err| CliError(format!("Cannot read {}: {err}", manifest.display())))?;
    let outline: Map<String, Value> = serde_json::from_slice(&text)
        .map_err(|err| CliError(format!("{} is not a JSON object: {err}", manifest.display())))?;
    if outline.get("type").and_then(Value::as_str) != Some("package") {
        return Err(CliError(format!(
            "{} describes an application; only packages are published.",
            manifest.display()
        )));
    }
    let bundle = CompilerBundle {
        outline: compiler_outline(&outline)?,
        sources: read_sources(&dir.join("src"))?,
    };
    serde_json::to_vec(&bundle).map_err(|err| CliError(err.to_string()))
}

/// Builds the compressed bundle for the project in `dir`.
pub fn build_bundle(dir: &Path) -> CliResult<Vec<u8>> {
    let json = bundle_json(dir)?;
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder
        .write_all(&json)
        .and_then(|()| encoder.finish())
        .map_err(|err| CliError(err.to_string()))
}

/// Every `.gren` module under `src/`, and `src/Gren/Kernel/*.js`, by module name.
fn read_sources(src: &Path) -> CliResult<BTreeMap<String, String>> {
    let mut sources = BTreeMap::new();
    let mut pending = vec![(src.to_path_buf(), Vec::<String>::new())];
    while let Some((dir, module_path)) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|err| CliError(format!("Cannot read {}: {err}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(|err| CliError(err.to_string()))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                let mut inner = module_path.clone();
                inner.push(name);
                pending.push((path, inner));
                continue;
            }
            let kernel = module_path == KERNEL_DIR;
            let stem = match (name.strip_suffix(".gren"), name.strip_suffix(".js")) {
                (Some(stem), _) => stem,
                (None, Some(stem)) if kernel => stem,
                _ => continue,
            };
            let module = module_path
                .iter()
                .map(String::as_str)
                .chain([stem])
                .collect::<Vec<_>>()
                .join(".");
            let text = std::fs::read_to_string(&path)
                .map_err(|err| CliError(format!("Cannot read {}: {err}", path.display())))?;
            sources.insert(module, text);
        }
    }
    Ok(sources)
}

/// Writes a bundle out as a project directory: `gren.json` and `src/`
/// (see [`gren_registry_core::bundle::project`]). The inverse of
/// [`build_bundle`], used to check it and to inspect bundles.
pub fn unpack(bundle: &[u8], dir: &Path) -> CliResult<()> {
    let decoded = gren_registry_core::bundle::read(bundle, 256 * 1024 * 1024)?;
    for file in gren_registry_core::bundle::project::project_files(decoded)? {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|err| CliError(err.to_string()))?;
        }
        std::fs::write(&path, &file.bytes)
            .map_err(|err| CliError(format!("Cannot write {}: {err}", path.display())))?;
    }
    Ok(())
}
