//! Why a publish, a revocation or a privacy change was refused. Each
//! message is the sentence the publisher is shown; refusals of the bundle,
//! of the identity and of the registry's load keep their own types.

use super::{PackageName, Version};
use crate::auth::token::TokenError;
use crate::budget::Busy;
use crate::bundle::BundleError;
use crate::identity::IdentityError;
use crate::ratelimit::RateLimited;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("There is no package named {name}.")]
    NotFound { name: PackageName },
    #[error("{name} has no version {version}.")]
    VersionNotFound { name: PackageName, version: Version },
    /// Version numbers are never reused, revoked or not.
    #[error(
        "{name} {version} is already published{}; version numbers are never reused.",
        if *.revoked { " (and revoked)" } else { "" }
    )]
    VersionExists {
        name: PackageName,
        version: Version,
        revoked: bool,
    },
    /// A private upload of a package that is public.
    #[error("{name} is public; an admin can make it private with PATCH /packages/{name}.")]
    PrivacyMismatch { name: PackageName },
    /// `allowed` are the versions that may come next.
    #[error(
        "{name} cannot go to {version} from its versions; the next version may be one of: {}.",
        list(allowed)
    )]
    NotASuccessor {
        name: PackageName,
        version: Version,
        allowed: Vec<Version>,
    },
    /// Another package's bundles have the same file names; `stem` is the
    /// shared start of the file names. The other package is never named,
    /// so that a private one answers exactly as a public one does.
    #[error(
        "{name} cannot be published: its bundles would have the same file names as those of another package \
         (gren_packages/{stem}__<version>.pkg.gz), which the compiler cannot tell apart. Choose another name."
    )]
    FileNameCollision { name: PackageName, stem: String },
    /// The actor's refusals of new names for their file names are used up
    /// (see [`super::publish::Upload::name_probes`]).
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    /// The outline spells the identity otherwise than its creator did.
    #[error("outline.name: the publishing identity is spelled {owner}; use {owner}/{project}.")]
    OwnerSpelledOtherwise { owner: String, project: String },
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// An automation token's scopes do not cover the change.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The registry's load, not the upload, refused it.
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn list(versions: &[Version]) -> String {
    versions.iter().map(Version::to_string).collect::<Vec<_>>().join(", ")
}
