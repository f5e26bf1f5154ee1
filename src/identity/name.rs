//! Identity names follow the Gren compiler's package-author rule.

use crate::error::{ApiError, ApiResult};
use std::fmt;

/// GitHub's limit for user and organisation names, which Gren package
/// authors mirror.
pub const MAX_LENGTH: usize = 39;

/// A valid identity name, with its case-folded key (the directory name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityName {
    spelling: String,
    key: String,
}

impl IdentityName {
    pub fn parse(text: &str) -> ApiResult<IdentityName> {
        if is_valid_author(text) && text.len() <= MAX_LENGTH {
            Ok(IdentityName {
                spelling: text.to_string(),
                key: text.to_ascii_lowercase(),
            })
        } else {
            Err(ApiError::bad_request(
                "invalid_name",
                format!(
                    "{text:?} is not a valid identity name: use letters, digits and single dashes between them, at most {MAX_LENGTH} characters."
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.spelling
    }

    /// The case-insensitive key, used as the directory name.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// `^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$`: the compiler's rule for a package author.
pub fn is_valid_author(text: &str) -> bool {
    !text.is_empty()
        && text
            .split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()))
}

impl fmt::Display for IdentityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spelling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_author_rule() {
        for ok in ["gren-lang", "blaix", "A1", "a-b-c", &"a".repeat(39)] {
            assert!(IdentityName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a--b", "a_b", "a.b", "a/b", "..", "é", &"a".repeat(40)] {
            assert_eq!(IdentityName::parse(bad).unwrap_err().code, "invalid_name", "{bad}");
        }
        assert_eq!(IdentityName::parse("Gren-Lang").unwrap().key(), "gren-lang");
    }
}
