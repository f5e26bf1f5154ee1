//! Why a bundle was refused. Each message is the sentence the publisher is
//! shown; [`BundleError::field`] names the part of the bundle at fault.

use super::{MAX_MODULES, MAX_OUTLINE_BYTES};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// It inflates past the cap.
    #[error("The bundle inflates to more than {max_inflated} bytes.")]
    TooLarge { max_inflated: u64 },
    #[error("outline: larger than {MAX_OUTLINE_BYTES} bytes (gren.json is a few hundred).")]
    OutlineTooLarge,
    /// The outline breaks one of the compiler's rules: `field` is its path
    /// (`outline.license`), `rule` what is wrong there.
    #[error("{field}: {rule}")]
    InvalidOutline { field: String, rule: String },
    /// A module the outline's rules do not allow: `field` is its path
    /// (`sources.Gren.Kernel.X`), `rule` what is wrong with it.
    #[error("{field}: {rule}")]
    InvalidSource { field: String, rule: String },
    #[error("The body is not gzip data.")]
    NotGzip,
    /// The message quotes the cause.
    #[error("The body is not a complete gzip stream: {0}.")]
    IncompleteGzip(serde_json::Error),
    /// The message quotes the cause.
    #[error("The bundle is not {{\"outline\": {{...}}, \"sources\": {{\"Module.Name\": \"text\"}}}}: {0}.")]
    NotABundle(serde_json::Error),
    #[error("The body has data after the end of its gzip stream.")]
    TrailingData,
    /// `path` is where the key is: `outline.dependencies.gren-lang/core`.
    #[error("The key {path} appears more than once; every key of a bundle must be unique.")]
    DuplicateKey { path: String },
    #[error("The bundle's outline is not an object.")]
    OutlineNotAnObject,
    #[error("The bundle's sources come before its outline; the outline must come first, as the compiler writes it.")]
    SourcesFirst,
    /// `name` is the start of the member's name.
    #[error("The bundle has a member {name:?}; it may only have outline and sources.")]
    UnexpectedMember { name: String },
    /// `member` is `outline` or `sources`.
    #[error("The bundle has no {member}.")]
    Missing { member: &'static str },
    #[error("The bundle has more than {MAX_MODULES} modules.")]
    TooManyModules,
    /// `field` is `sources.` and the start of the module's name.
    #[error("{field}: a module name must be shorter than 256 bytes.")]
    ModuleNameTooLong { field: String },
}

impl BundleError {
    /// The part of the bundle at fault (`outline.license`, `sources.Main`),
    /// when the refusal is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            BundleError::OutlineTooLarge => Some("outline"),
            BundleError::InvalidOutline { field, .. }
            | BundleError::InvalidSource { field, .. }
            | BundleError::ModuleNameTooLong { field } => Some(field),
            BundleError::DuplicateKey { path } => Some(path),
            _ => None,
        }
    }
}
