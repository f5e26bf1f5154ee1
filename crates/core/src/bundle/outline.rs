//! The package outline (`gren.json`) inside a bundle, validated with the
//! rules both of the Gren compiler's decoders enforce.

use super::{Bundle, BundleError};
use crate::package::{PackageName, Range, Version};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

/// The compiler's accepted licence identifiers (exact, case-sensitive).
const OSI_LICENSES: &str = include_str!("osi-licenses.txt");
pub const PLATFORMS: [&str; 3] = ["common", "browser", "node"];
const KERNEL_PREFIX: &str = "Gren.Kernel.";

/// Who may ship kernel JavaScript (`Gren.Kernel.*` sources), which runs
/// unchecked in every program depending on the package.
#[derive(Debug, Clone, Copy)]
pub enum KernelCode<'a> {
    /// The identities an operator named (`GREN_REGISTRY_KERNEL_CODE_AUTHORS`),
    /// in any case.
    Authors(&'a [String]),
    /// Any author: for the client, which cannot know the registry's setting
    /// (the registry decides when the bundle arrives), and for bundles the
    /// registry has already accepted.
    AnyAuthor,
}

impl KernelCode<'_> {
    fn allows(self, author: &str) -> bool {
        match self {
            KernelCode::Authors(authors) => authors.iter().any(|name| name.trim().eq_ignore_ascii_case(author)),
            KernelCode::AnyAuthor => true,
        }
    }
}

/// What the registry keeps of a valid outline.
#[derive(Debug, Clone, PartialEq)]
pub struct Outline {
    pub name: PackageName,
    pub version: Version,
    pub platform: String,
    pub summary: String,
    pub license: String,
    pub gren_version: Range,
    pub dependencies: BTreeMap<PackageName, Range>,
    pub exposed_modules: Vec<String>,
    /// `"private": true`, a registry extension.
    pub private: bool,
}

fn invalid(field: &str, rule: String) -> BundleError {
    BundleError::InvalidOutline {
        field: format!("outline.{field}"),
        rule,
    }
}

fn string<'a>(outline: &'a Map<String, Value>, field: &str) -> Result<&'a str, BundleError> {
    match outline.get(field) {
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(invalid(field, "must be a string.".into())),
        None => Err(invalid(field, "is missing.".into())),
    }
}

/// Validates a bundle's outline and sources together; `kernel` says whose
/// packages may contain kernel code.
pub fn validate(bundle: &Bundle, kernel: KernelCode) -> Result<Outline, BundleError> {
    let outline = validate_outline(&bundle.outline)?;
    let mut sources = SourceCheck::new(&outline, kernel);
    for module in bundle.sources.keys() {
        sources.module(module)?;
    }
    sources.finish()?;
    Ok(outline)
}

/// Validates an outline on its own, before the sources are read.
pub fn validate_outline(outline: &Map<String, Value>) -> Result<Outline, BundleError> {
    if string(outline, "type")? != "package" {
        return Err(invalid(
            "type",
            "must be \"package\": only packages can be published.".into(),
        ));
    }
    let platform = string(outline, "platform")?;
    if !PLATFORMS.contains(&platform) {
        return Err(invalid(
            "platform",
            format!("{platform:?} is not one of common, browser or node."),
        ));
    }
    let name_text = string(outline, "name")?;
    let name = PackageName::parse(name_text).ok_or_else(|| {
        invalid(
            "name",
            format!("{name_text:?} is not author/project (author: letters, digits, single dashes; project: lower-case letters, digits, single dashes, starting with a letter)."),
        )
    })?;
    let summary = string(outline, "summary")?;
    if summary.len() >= 80 {
        return Err(invalid(
            "summary",
            format!("must be shorter than 80 bytes; it has {}.", summary.len()),
        ));
    }
    let license = string(outline, "license")?;
    if !OSI_LICENSES.lines().any(|known| known == license) {
        return Err(invalid(
            "license",
            format!(
                "{license:?} is not an OSI-approved SPDX identifier the compiler accepts (for example BSD-3-Clause or MIT)."
            ),
        ));
    }
    let version_text = string(outline, "version")?;
    let version = Version::parse(version_text).ok_or_else(|| {
        invalid(
            "version",
            format!("{version_text:?} is not X.Y.Z (no leading zeros, each part at most 65535, no suffix)."),
        )
    })?;
    // The compiler's file name for the bundle is also the registry's: it
    // must fit in a file name (the name parts alone may be 255 bytes each).
    if name.bundle_file_name(version).len() > 255 {
        return Err(invalid(
            "name",
            "is too long: its bundle's file name would pass 255 bytes.".into(),
        ));
    }
    let gren_version = range(string(outline, "gren-version")?, "gren-version")?;
    let dependencies = dependencies(outline, &name)?;
    let exposed_modules = exposed_modules(outline)?;
    let private = match outline.get("private") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => return Err(invalid("private", "must be true or false.".into())),
    };
    Ok(Outline {
        name,
        version,
        platform: platform.to_string(),
        summary: summary.to_string(),
        license: license.to_string(),
        gren_version,
        dependencies,
        exposed_modules,
        private,
    })
}

fn range(text: &str, field: &str) -> Result<Range, BundleError> {
    if text.starts_with("local:") {
        return Err(invalid(field, "local dependencies cannot be published.".into()));
    }
    Range::parse(text).ok_or_else(|| {
        invalid(
            field,
            format!("{text:?} is not a range like \"1.0.0 <= v < 2.0.0\" (operators < or <=, lower below upper)."),
        )
    })
}

fn dependencies(outline: &Map<String, Value>, own: &PackageName) -> Result<BTreeMap<PackageName, Range>, BundleError> {
    let Some(Value::Object(entries)) = outline.get("dependencies") else {
        return Err(invalid(
            "dependencies",
            "must be an object of package names to version ranges.".into(),
        ));
    };
    let mut found = BTreeMap::new();
    for (name_text, constraint) in entries {
        let field = format!("dependencies.{name_text}");
        let name = PackageName::parse(name_text)
            .ok_or_else(|| invalid(&field, format!("{name_text:?} is not a valid package name.")))?;
        if name.key() == own.key() {
            return Err(invalid(&field, "a package cannot depend on itself.".into()));
        }
        let Value::String(text) = constraint else {
            return Err(invalid(&field, "must be a version range string.".into()));
        };
        found.insert(name, range(text, &field)?);
    }
    Ok(found)
}

fn exposed_modules(outline: &Map<String, Value>) -> Result<Vec<String>, BundleError> {
    const FIELD: &str = "exposed-modules";
    let list = |value: &Value, field: &str| -> Result<Vec<String>, BundleError> {
        let Value::Array(items) = value else {
            return Err(invalid(field, "must be an array of module names.".into()));
        };
        items
            .iter()
            .map(|item| match item {
                Value::String(module) if is_module_name(module) => Ok(module.clone()),
                other => Err(invalid(field, format!("{other} is not a module name."))),
            })
            .collect()
    };
    let modules = match outline.get(FIELD) {
        Some(Value::Array(_)) => list(&outline[FIELD], FIELD)?,
        Some(Value::Object(categories)) => {
            let mut all = Vec::new();
            for (category, value) in categories {
                if category.len() >= 20 {
                    return Err(invalid(
                        FIELD,
                        format!("the category {category:?} must be shorter than 20 bytes."),
                    ));
                }
                all.extend(list(value, &format!("{FIELD}.{category}"))?);
            }
            all
        }
        Some(_) => {
            return Err(invalid(
                FIELD,
                "must be an array of module names, or an object of categories.".into(),
            ));
        }
        None => return Err(invalid(FIELD, "is missing.".into())),
    };
    if modules.is_empty() {
        return Err(invalid(FIELD, "a package must expose at least one module.".into()));
    }
    Ok(modules)
}

/// The rules of a bundle's sources, checked one module at a time as they
/// stream past (so that no module name needs to be kept but the exposed ones).
pub struct SourceCheck {
    author: String,
    kernel_allowed: bool,
    /// The exposed modules in the outline's order, and whether each was seen.
    exposed: Vec<String>,
    seen: HashMap<String, bool>,
}

impl SourceCheck {
    pub fn new(outline: &Outline, kernel: KernelCode) -> SourceCheck {
        SourceCheck {
            author: outline.name.author.clone(),
            kernel_allowed: kernel.allows(&outline.name.author),
            exposed: outline.exposed_modules.clone(),
            seen: outline
                .exposed_modules
                .iter()
                .map(|module| (module.clone(), false))
                .collect(),
        }
    }

    /// Checks one module name (kernel code only from the authors the setting names).
    pub fn module(&mut self, module: &str) -> Result<(), BundleError> {
        let field = || format!("sources.{}", module.chars().take(80).collect::<String>());
        if let Some(kernel) = module.strip_prefix(KERNEL_PREFIX) {
            if !is_module_segment(kernel) {
                return Err(bad_source(field(), format!("{module:?} is not Gren.Kernel.<Name>.")));
            }
            if !self.kernel_allowed {
                return Err(bad_source(
                    field(),
                    format!(
                        "only the identities named in GREN_REGISTRY_KERNEL_CODE_AUTHORS may publish kernel code, \
                         and {} is not one of them.",
                        self.author
                    ),
                ));
            }
        } else if !is_module_name(module) {
            return Err(bad_source(field(), format!("{module:?} is not a module name.")));
        }
        if let Some(seen) = self.seen.get_mut(module) {
            *seen = true;
        }
        Ok(())
    }

    /// After the last module: every exposed module was among them.
    pub fn finish(self) -> Result<(), BundleError> {
        match self.exposed.iter().find(|module| !self.seen[*module]) {
            Some(missing) => Err(invalid(
                "exposed-modules",
                format!("{missing} is exposed but not in the bundle's sources."),
            )),
            None => Ok(()),
        }
    }
}

fn bad_source(field: String, rule: String) -> BundleError {
    BundleError::InvalidSource { field, rule }
}

/// `^[A-Z][A-Za-z0-9]*(\.[A-Z][A-Za-z0-9]*)*$`, shorter than 256 bytes.
pub fn is_module_name(text: &str) -> bool {
    text.len() < 256 && text.split('.').all(is_module_segment)
}

fn is_module_segment(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_uppercase()) && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundle(outline: Value, sources: &[&str]) -> Bundle {
        Bundle {
            outline: outline.as_object().unwrap().clone(),
            sources: sources
                .iter()
                .map(|module| (module.to_string(), String::new()))
                .collect(),
        }
    }

    fn gren_lang() -> Vec<String> {
        vec!["gren-lang".to_string()]
    }

    fn outline() -> Value {
        json!({
            "type": "package", "platform": "common", "name": "gren-lang/url", "summary": "URLs",
            "license": "BSD-3-Clause", "version": "6.0.0", "exposed-modules": ["Url"],
            "gren-version": "0.6.0 <= v < 0.7.0", "dependencies": {"gren-lang/core": "7.0.0 <= v < 8.0.0"}
        })
    }

    fn error_with(change: impl FnOnce(&mut Value), sources: &[&str]) -> BundleError {
        let mut value = outline();
        change(&mut value);
        validate(&bundle(value, sources), KernelCode::Authors(&gren_lang())).unwrap_err()
    }

    #[test]
    fn the_licence_list_is_the_compilers() {
        assert_eq!(OSI_LICENSES.lines().count(), 99);
        let reference = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/osi-licenses.txt"
        ))
        .expect("tests/fixtures/osi-licenses.txt");
        assert_eq!(reference, OSI_LICENSES, "the embedded list matches tests/fixtures");
    }

    #[test]
    fn accepts_a_valid_outline() {
        let valid = validate(&bundle(outline(), &["Url", "Url.Parser"]), KernelCode::AnyAuthor).unwrap();
        assert_eq!(valid.name.to_string(), "gren-lang/url");
        assert_eq!(valid.version, Version::new(6, 0, 0));
        assert!(!valid.private);
    }

    /// A change to a valid outline, and the field its error must name.
    type Corruption = (Box<dyn FnOnce(&mut Value)>, &'static str);

    #[test]
    fn each_rule_names_its_field() {
        let cases: Vec<Corruption> = vec![
            (Box::new(|o| o["type"] = json!("application")), "outline.type"),
            (Box::new(|o| o["platform"] = json!("wasm")), "outline.platform"),
            (Box::new(|o| o["name"] = json!("gren-lang/Url")), "outline.name"),
            (Box::new(|o| o["summary"] = json!("x".repeat(80))), "outline.summary"),
            (Box::new(|o| o["license"] = json!("bsd-3-clause")), "outline.license"),
            (Box::new(|o| o["version"] = json!("6.0.0-beta")), "outline.version"),
            (
                Box::new(|o| o["gren-version"] = json!("0.6.0 <= v < 0.6.0")),
                "outline.gren-version",
            ),
            (
                Box::new(|o| o["dependencies"] = json!({"gren-lang/core": "local:../core"})),
                "outline.dependencies.gren-lang/core",
            ),
            (
                Box::new(|o| o["dependencies"] = json!({"gren-lang/url": "1.0.0 <= v < 2.0.0"})),
                "outline.dependencies.gren-lang/url",
            ),
            (
                Box::new(|o| o["dependencies"] = json!({"Bad": "1.0.0 <= v < 2.0.0"})),
                "outline.dependencies.Bad",
            ),
            (
                Box::new(|o| o["exposed-modules"] = json!([])),
                "outline.exposed-modules",
            ),
            (
                Box::new(|o| o["exposed-modules"] = json!(["Missing"])),
                "outline.exposed-modules",
            ),
            (
                Box::new(|o| o["exposed-modules"] = json!({"a category name too long": ["Url"]})),
                "outline.exposed-modules",
            ),
            (Box::new(|o| o["private"] = json!("yes")), "outline.private"),
            (
                Box::new(|o| o["name"] = json!(format!("gren-lang/{}", "a".repeat(240)))),
                "outline.name",
            ),
            (
                Box::new(|o| {
                    o.as_object_mut().unwrap().remove("license");
                }),
                "outline.license",
            ),
        ];
        for (change, field) in cases {
            let err = error_with(change, &["Url"]);
            assert!(matches!(err, BundleError::InvalidOutline { .. }), "{err:?}");
            assert_eq!(err.field(), Some(field), "{err}");
        }
    }

    #[test]
    fn sources_follow_module_and_kernel_rules() {
        assert_eq!(
            error_with(|_| {}, &["Url", "lower.Case"]).field(),
            Some("sources.lower.Case")
        );
        let kernel = bundle(outline(), &["Url", "Gren.Kernel.Url"]);
        validate(&kernel, KernelCode::Authors(&gren_lang())).expect("gren-lang may ship kernel code");
        let err = error_with(|o| o["name"] = json!("someone/url"), &["Url", "Gren.Kernel.Url"]);
        assert_eq!(err.field(), Some("sources.Gren.Kernel.Url"));
        let others = ["someone".to_string(), " Gren-Lang".to_string()];
        validate(&kernel, KernelCode::Authors(&others)).expect("names match in any case, trimmed");
        let err = validate(&kernel, KernelCode::Authors(&others[..1])).unwrap_err();
        assert_eq!(
            err.field(),
            Some("sources.Gren.Kernel.Url"),
            "the name alone grants nothing"
        );
        validate(&kernel, KernelCode::Authors(&[])).expect_err("an empty setting allows nobody");
        assert!(
            is_module_name("Url.Parser.Query") && !is_module_name("Url..Parser") && !is_module_name(&"A".repeat(256))
        );
    }
}
