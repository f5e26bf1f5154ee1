//! A bundle as a project: the files from which the Gren compiler rebuilds
//! the bundle byte for byte. `gren.json` is the outline (the compiler
//! re-encodes it in its own order, so its layout here is free), every module
//! `A.B.C` is `src/A/B/C.gren`, and kernel modules (`Gren.Kernel.*`) are
//! JavaScript, `src/Gren/Kernel/*.js`.
//!
//! The client writes these files to disk (`unpack`); the registry commits
//! them to a package's git repository, which the compiler clones.

use super::{Bundle, BundleError};
use crate::store::check_component;

/// The module prefix whose files are JavaScript.
const KERNEL_PREFIX: &str = "Gren.Kernel.";

/// One file of a project: its path, `/`-separated, every component a safe
/// file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// The project's files, `gren.json` first, then the modules in name order;
/// the texts are moved, not copied (a module may be tens of MiB). A module
/// name that is no safe path is refused (the registry's checks already
/// refuse it at publishing).
pub fn project_files(bundle: Bundle) -> Result<Vec<ProjectFile>, BundleError> {
    let manifest = serde_json::to_vec_pretty(&bundle.outline).expect("JSON values serialize");
    let mut files = vec![ProjectFile {
        path: "gren.json".into(),
        bytes: manifest,
    }];
    for (module, text) in bundle.sources {
        let parts: Vec<&str> = module.split('.').collect();
        if parts.iter().any(|part| check_component(part).is_err()) {
            return Err(BundleError::InvalidSource {
                field: format!("sources.{module}"),
                rule: "a module name must be dot-separated names of letters, digits and _".into(),
            });
        }
        let extension = if module.starts_with(KERNEL_PREFIX) {
            "js"
        } else {
            "gren"
        };
        files.push(ProjectFile {
            path: format!("src/{}.{extension}", parts.join("/")),
            bytes: text.into_bytes(),
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundle(sources: &[(&str, &str)]) -> Bundle {
        Bundle {
            outline: json!({"type": "package", "name": "a/b"}).as_object().unwrap().clone(),
            sources: sources.iter().map(|(m, t)| (m.to_string(), t.to_string())).collect(),
        }
    }

    #[test]
    fn modules_become_files_under_src_and_kernel_modules_javascript() {
        let files = project_files(bundle(&[("Gren.Kernel.Json", "var x;"), ("A.B", "module A.B")])).unwrap();
        let paths: Vec<&str> = files.iter().map(|file| file.path.as_str()).collect();
        assert_eq!(paths, ["gren.json", "src/A/B.gren", "src/Gren/Kernel/Json.js"]);
        assert_eq!(files[1].bytes, b"module A.B");
        let outline: serde_json::Value = serde_json::from_slice(&files[0].bytes).unwrap();
        assert_eq!(outline["name"], "a/b");
    }

    #[test]
    fn a_module_name_that_is_no_safe_path_is_refused() {
        for module in ["..", "A..B", "A/B", ".hidden"] {
            let err = project_files(bundle(&[(module, "")])).unwrap_err();
            assert!(matches!(err, BundleError::InvalidSource { .. }), "{module}: {err}");
        }
    }
}
