//! Identity names follow the Gren compiler's package-author rule, and are
//! compared by their [`skeleton`] so that look-alikes (`gren-1ang` beside
//! `gren-lang`) cannot be created.

use super::IdentityError;
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
    pub fn parse(text: &str) -> Result<IdentityName, IdentityError> {
        if is_valid_author(text) && text.len() <= MAX_LENGTH {
            Ok(IdentityName {
                spelling: text.to_string(),
                key: text.to_ascii_lowercase(),
            })
        } else {
            Err(IdentityError::InvalidName {
                input: text.to_string(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.spelling
    }

    /// The case-insensitive key, used as the directory name.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn skeleton(&self) -> String {
        skeleton(&self.key)
    }
}

/// What a name looks like, for telling look-alikes apart: two names with the
/// same skeleton are easily mistaken for each other. Case is folded; `i`,
/// `l`, `1` and `|` count as `l`, and `o` and `0` as `o` (the pairs most
/// fonts draw alike); dashes (and `_`, `.`) are ignored, so `grenlang` and
/// `gren-lan-g` imitate `gren-lang`; then `rn` counts as `m` and `vv` as `w`
/// (indistinguishable in many sans-serif fonts at a glance). Other digits
/// (`5`/`s`, `8`/`b`) are left alone: they look different in the fonts
/// terminals and the packages site use, and refusing them would forbid many
/// real names.
pub fn skeleton(text: &str) -> String {
    let folded: String = text
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .map(|c| match c.to_ascii_lowercase() {
            'i' | '1' | '|' => 'l',
            '0' => 'o',
            other => other,
        })
        .collect();
    folded.replace("rn", "m").replace("vv", "w")
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
            assert!(
                matches!(IdentityName::parse(bad), Err(IdentityError::InvalidName { .. })),
                "{bad}"
            );
        }
        assert_eq!(IdentityName::parse("Gren-Lang").unwrap().key(), "gren-lang");
    }

    #[test]
    fn look_alikes_share_a_skeleton() {
        let same = |a: &str, b: &str| skeleton(a) == skeleton(b);
        for look_alike in [
            "gren-Iang",
            "gren-1ang",
            "GREN-LANG",
            "grenlang",
            "gren--lang",
            "gren-|ang",
            "gren_lang",
        ] {
            assert!(same("gren-lang", look_alike), "{look_alike}");
        }
        for look_alike in ["adm1n", "ADMIN", "admln", "adrnin", "adm-in"] {
            assert!(same("admin", look_alike), "{look_alike}");
        }
        assert!(same("g00gle", "google") && same("gOOgle", "goog1e"));
        assert!(same("www", "vvvvvv") && same("vvw", "wvv"));
        for different in [
            "gren-long",
            "gren-langs",
            "gren-lang2",
            "grenlan",
            "gren-1ong",
            "s-lang",
        ] {
            assert!(!same("gren-lang", different), "{different}");
        }
        assert!(!same("admin", "admins") && !same("root", "r00ts") && !same("b8", "bb"));
        assert_eq!(skeleton("Gren-1ang"), "grenlang");
        assert_eq!(IdentityName::parse("ADRNIN").unwrap().skeleton(), "admln");
    }
}
