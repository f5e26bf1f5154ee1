//! Package names: `author/project`, with the compiler's rules.

use crate::identity::IdentityName;
use crate::identity::name::is_valid_author;
use crate::serde_text::serde_as_text;
use std::fmt;
use std::fmt::Write as _;

/// The compiler refuses name parts of 256 bytes or more.
const MAX_PART: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageName {
    pub author: String,
    pub project: String,
}

impl PackageName {
    pub fn parse(text: &str) -> Option<PackageName> {
        let (author, project) = text.split_once('/')?;
        PackageName::from_parts(author, project)
    }

    /// The package `author/project`, when both parts are valid.
    pub fn from_parts(author: &str, project: &str) -> Option<PackageName> {
        let valid = is_valid_author(author)
            && author.len() <= MAX_PART
            && is_valid_project(project)
            && project.len() <= MAX_PART;
        valid.then(|| PackageName {
            author: author.to_string(),
            project: project.to_string(),
        })
    }

    /// The identity that owns the package, if the author part is a valid
    /// identity name (it is longer than identities may be otherwise).
    pub fn identity(&self) -> Option<IdentityName> {
        IdentityName::parse(&self.author).ok()
    }

    /// The case-insensitive key of the package: authors compare without case,
    /// projects are lower-case already.
    pub fn key(&self) -> String {
        self.key_after("")
    }

    /// `prefix` followed by the package's key, in one allocation: keys are
    /// made on every read of a package.
    pub fn key_after(&self, prefix: &str) -> String {
        let mut key = String::with_capacity(prefix.len() + self.author.len() + 1 + self.project.len());
        key.push_str(prefix);
        key.extend(self.author.chars().map(|c| c.to_ascii_lowercase()));
        key.push('/');
        key.push_str(&self.project);
        key
    }

    /// The name the compiler gives this version's bundle in `gren_packages/`.
    pub fn bundle_file_name(&self, version: super::Version) -> String {
        let mut name = self.file_stem();
        let super::Version { major, minor, patch } = version;
        let _ = write!(name, "__{major}_{minor}_{patch}.pkg.gz");
        name
    }

    /// The version whose bundle [`PackageName::bundle_file_name`] calls
    /// `file` (authors compare without case, as package directories are
    /// named in lower case).
    pub fn version_of_bundle_file(&self, file: &str) -> Option<super::Version> {
        let stem = format!("{}__", self.file_stem());
        let rest = file
            .get(..stem.len())
            .filter(|start| start.eq_ignore_ascii_case(&stem))?;
        let version = file[rest.len()..].strip_suffix(".pkg.gz")?;
        let version = super::Version::parse(&version.replace('_', "."))?;
        (self.bundle_file_name(version).eq_ignore_ascii_case(file)).then_some(version)
    }

    /// The start of the compiler's file names for this package's bundles:
    /// `-`, `.` and `/` all become `_`, so `x/y-z` and `x-y/z` share it.
    pub fn file_stem(&self) -> String {
        // Made on every download (the bundle's path and file name): in one
        // allocation, with room for the version that follows.
        let mut stem = String::with_capacity(self.author.len() + self.project.len() + 32);
        for part in [self.author.as_str(), "/", self.project.as_str()] {
            stem.extend(part.chars().map(|c| if matches!(c, '-' | '.' | '/') { '_' } else { c }));
        }
        stem
    }
}

serde_as_text!(PackageName, PackageName::parse, "package name");

/// `^[a-z][a-z0-9]*(-[a-z0-9]+)*$`
pub fn is_valid_project(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.author, self.project)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_compiler() {
        for ok in [
            "gren-lang/core",
            "blaix/gren-ws4sql",
            "A1/x",
            "gren-lang/test-runner-node",
        ] {
            assert!(PackageName::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "core",
            "gren-lang/Core",
            "gren-lang/1core",
            "gren-lang/co--re",
            "gren-lang/core-",
            "-a/core",
            "a/b/c",
            "a/",
            "/b",
            "../x",
            "a/..",
        ] {
            assert!(PackageName::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_name_from_parts_is_the_name_of_their_text_joined() {
        // Path parameters are percent-decoded: a part may hold a slash.
        for (author, project) in [
            ("gren-lang", "core"),
            ("a/b", "c"),
            ("a", "b/c"),
            ("A", "core"),
            ("", "x"),
        ] {
            assert_eq!(
                PackageName::from_parts(author, project),
                PackageName::parse(&format!("{author}/{project}")),
                "{author} {project}"
            );
        }
        assert!(PackageName::from_parts("a", "b/c").is_none());
    }

    #[test]
    fn bundle_file_names_match_the_compiler() {
        let name = PackageName::parse("gren-lang/test-runner-node").unwrap();
        assert_eq!(
            name.bundle_file_name(super::super::Version::new(7, 0, 0)),
            "gren_lang_test_runner_node__7_0_0.pkg.gz"
        );
        let twin = PackageName::parse("gren/lang-test-runner-node").unwrap();
        assert_eq!(twin.file_stem(), name.file_stem(), "the compiler's names collide");
    }
}
