//! Text that people choose and others are shown (token names, in e-mails
//! and public events; reasons for a revocation): it may hold any visible
//! character, but no control character and no invisible formatting one.
//!
//! A right-to-left override makes `ci\u{202e}gnp.exe` read `ciexe.png`, a
//! zero-width space makes two names that look the same differ, and a
//! newline forges a line where the text is printed. So Unicode's control
//! characters (general category Cc), format characters (Cf: bidi controls,
//! zero-width characters, the soft hyphen, tags, ...) and the line and
//! paragraph separators (U+2028, U+2029) are refused. Identity and package
//! names need no such check: they are ASCII letters, digits and dashes.

use std::fmt;

/// The general category Cf (format), from Unicode 15.1's
/// `DerivedGeneralCategory.txt`: every range, inclusive.
const FORMAT: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// A character [`check`] refuses, shown as its code point (it may be
/// invisible, or turn the text around it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hidden(pub char);

impl fmt::Display for Hidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "U+{:04X}", self.0 as u32)
    }
}

/// Whether `c` is a control, format or line-breaking separator character.
pub fn is_hidden(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') || FORMAT.iter().any(|(from, to)| (*from..=*to).contains(&c))
}

/// Refuses text with a character people cannot see or that changes how the
/// text around it is shown; names the first.
pub fn check(text: &str) -> Result<(), Hidden> {
    match text.chars().find(|c| is_hidden(*c)) {
        Some(c) => Err(Hidden(c)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_overrides_zero_width_and_control_characters_are_refused() {
        for (text, hidden) in [
            ("ci\u{202e}gnp.exe", '\u{202e}'),
            ("ci\u{200b}", '\u{200b}'),
            ("\u{feff}ci", '\u{feff}'),
            ("c\u{00ad}i", '\u{00ad}'),
            ("a\u{2066}b\u{2069}", '\u{2066}'),
            ("a\u{2060}b", '\u{2060}'),
            ("a\u{200d}b", '\u{200d}'),
            ("a\u{200e}b", '\u{200e}'),
            ("a\nb", '\n'),
            ("a\tb", '\t'),
            ("a\u{7f}", '\u{7f}'),
            ("a\u{85}", '\u{85}'),
            ("a\u{2028}b", '\u{2028}'),
            ("tag\u{e0041}", '\u{e0041}'),
        ] {
            assert_eq!(check(text), Err(Hidden(hidden)), "{text:?}");
        }
        assert_eq!(Hidden('\u{202e}').to_string(), "U+202E");
        assert_eq!(Hidden('\n').to_string(), "U+000A");
    }

    #[test]
    fn visible_text_in_any_script_passes() {
        for text in [
            "ci",
            "nightly build",
            "déploiement",
            "Über-CI",
            "部署",
            "نشر",
            "🚀 release",
            "a-b_c.d",
        ] {
            assert_eq!(check(text), Ok(()), "{text}");
        }
    }
}
