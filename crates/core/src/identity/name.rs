//! Identity names follow the Gren compiler's package-author rule, and are
//! compared by their [`skeleton`] so that look-alikes (`gren-1ang` beside
//! `gren-lang`) cannot be created; a long reserved name also covers names
//! one edit from it ([`imitates_reserved`]).

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
/// fonts draw alike), as do `q` and `9` with `g`; the digits that stand for
/// letters in names people read as words count as those letters (`4` as
/// `a`, `3` as `e`, `5` as `s`, `7` as `t`: `gren-l4ng` reads `gren-lang`);
/// dashes (and `_`, `.`) are ignored, so `grenlang` and `gren-lan-g`
/// imitate `gren-lang`; then `rn` counts as `m` and `vv` as `w`
/// (indistinguishable in many sans-serif fonts at a glance). `8`/`b`, `6`
/// and `2` are left alone: they are not read as letters, and two names
/// only clash when both exist, so the folds cost few real names.
pub fn skeleton(text: &str) -> String {
    let folded: String = text
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .map(|c| match c.to_ascii_lowercase() {
            'i' | '1' | '|' => 'l',
            '0' => 'o',
            'q' | '9' => 'g',
            '4' => 'a',
            '3' => 'e',
            '5' => 's',
            '7' => 't',
            other => other,
        })
        .collect();
    folded.replace("rn", "m").replace("vv", "w")
}

/// Reserved names this long (in skeleton letters) also cover every name
/// one edit away. Shorter ones cover only their look-alikes: one letter
/// is too much of `gren`, `admin` or `login` (it makes `green`, `admit`,
/// `logan`, names of their own).
pub const MIN_EDIT_COVERED: usize = 6;

/// Whether `name` imitates the reserved name `reserved`: the same
/// [`skeleton`], or, for a reserved name of [`MIN_EDIT_COVERED`] letters or
/// more, a skeleton one edit away (a letter inserted, deleted or changed, or
/// two neighbours swapped: `gren-langs`, `gren-lnag`). A longer name that
/// merely contains it (`gren-lang-community`) is more than one edit away.
pub fn imitates_reserved(name: &IdentityName, reserved: &str) -> bool {
    let (name, reserved) = (name.skeleton(), skeleton(reserved));
    name == reserved || (reserved.chars().count() >= MIN_EDIT_COVERED && within_one_edit(&name, &reserved))
}

/// Whether one insertion, deletion, substitution or swap of two adjacent
/// characters turns `a` into `b` (or they are equal).
fn within_one_edit(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let (short, long) = if a.len() <= b.len() { (&a, &b) } else { (&b, &a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let Some(at) = short.iter().zip(long.iter()).position(|(x, y)| x != y) else {
        return true;
    };
    if short.len() < long.len() {
        return short[at..] == long[at + 1..];
    }
    let swapped = at + 1 < short.len() && short[at] == long[at + 1] && short[at + 1] == long[at];
    short[at + 1..] == long[at + 1..] || (swapped && short[at + 2..] == long[at + 2..])
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

    #[test]
    fn letters_drawn_or_read_alike_share_a_skeleton() {
        for look_alike in [
            "gren-lanq",
            "qren-lang",
            "9ren-lang",
            "gren-l4ng",
            "gr3n-lang",
            "9r3n-l4n9",
        ] {
            assert_eq!(skeleton(look_alike), skeleton("gren-lang"), "{look_alike}");
        }
        assert_eq!(skeleton("5upp0r7"), skeleton("support"));
        assert!(skeleton("b8") != skeleton("bb") && skeleton("g6") != skeleton("gb"));
    }

    fn imitates(name: &str, reserved: &str) -> bool {
        imitates_reserved(&IdentityName::parse(name).unwrap(), reserved)
    }

    #[test]
    fn names_one_edit_or_one_look_alike_from_a_long_reserved_name_imitate_it() {
        for look_alike in [
            "gren-lanq",
            "qren-lang",
            "9ren-lang",
            "gren-l4ng",
            "gren-langs",
            "gren-lan",
            "gren-lnag",
            "gren-lamg",
            "xgren-lang",
            "Gren-Lang-X",
            "gren-1angs",
            "grenlang",
        ] {
            assert!(imitates(look_alike, "gren-lang"), "{look_alike}");
        }
        assert!(imitates("registri", "registry") && imitates("5ecurity", "security"));
    }

    #[test]
    fn names_further_away_or_near_a_short_reserved_name_do_not_imitate_it() {
        for different in [
            "gren-lang-community",
            "gren-lang-x2",
            "gren-long-x",
            "gren",
            "grenade",
            "elm-lang",
            "gren-land-z",
        ] {
            assert!(!imitates(different, "gren-lang"), "{different}");
        }
        // Short reserved names cover their look-alikes only.
        for (name, reserved) in [
            ("green", "gren"),
            ("admit", "admin"),
            ("logan", "login"),
            ("rooty", "root"),
        ] {
            assert!(!imitates(name, reserved), "{name}");
        }
        assert!(imitates("9ren", "gren") && imitates("adm1n", "admin") && imitates("r00t", "root"));
    }

    #[test]
    fn one_edit_means_one_insertion_deletion_substitution_or_adjacent_swap() {
        for (a, b) in [
            ("abc", "abc"),
            ("abc", "abxc"),
            ("abc", "ab"),
            ("abc", "xbc"),
            ("abc", "bac"),
            ("abc", "acb"),
            ("", "a"),
        ] {
            assert!(within_one_edit(a, b) && within_one_edit(b, a), "{a} {b}");
        }
        for (a, b) in [
            ("abc", "cba"),
            ("abc", "abxy"),
            ("abcd", "badc"),
            ("abc", "a"),
            ("abc", "xyc"),
            ("ab", "ba-"),
        ] {
            assert!(!within_one_edit(a, b) && !within_one_edit(b, a), "{a} {b}");
        }
    }
}
