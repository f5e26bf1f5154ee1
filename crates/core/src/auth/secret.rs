//! Secrets: random tokens, confirmation codes and verification phrases, and
//! how they are hashed and compared.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every session token starts with this, so that secret scanners and people
/// can recognise a leaked Gren registry token.
pub const SESSION_TOKEN_PREFIX: &str = "gren_";
/// Every automation token starts with this instead: a leaked one is told
/// from a person's session at a glance (and by secret scanners), and the
/// registry knows which record to look for before hashing anything.
pub const AUTOMATION_TOKEN_PREFIX: &str = "gren_token_";
/// Every git token (`gren-registry git-credential`'s, minutes long, for
/// fetches only) starts with this: a `~/.git-credentials` line holding one
/// is told from a leaked login at a glance.
pub const GIT_TOKEN_PREFIX: &str = "gren_git_";
/// 192 random bits per token.
const TOKEN_BYTES: usize = 24;
/// No 0/O, 1/I/L: a code read aloud or retyped from a phone cannot be ambiguous.
pub const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
pub const CODE_LENGTH: usize = 8;

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS random source failing is not something a registry can recover from.
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes
}

/// Lower-case hex. Every public answer's `ETag` goes through here, so it
/// looks digits up instead of formatting each byte.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    text
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// A fresh random secret, hex-encoded.
pub fn random_secret() -> String {
    hex(&random_bytes::<TOKEN_BYTES>())
}

pub fn new_session_token() -> String {
    format!("{SESSION_TOKEN_PREFIX}{}", random_secret())
}

pub fn new_automation_token() -> String {
    format!("{AUTOMATION_TOKEN_PREFIX}{}", random_secret())
}

pub fn new_git_token() -> String {
    format!("{GIT_TOKEN_PREFIX}{}", random_secret())
}

/// Whether `token` has the shape of a session token (checked before hashing,
/// so garbage never reaches the store).
pub fn is_session_token(token: &str) -> bool {
    token.strip_prefix(SESSION_TOKEN_PREFIX).is_some_and(is_secret)
}

/// Whether `token` has the shape of an automation token.
pub fn is_automation_token(token: &str) -> bool {
    token.strip_prefix(AUTOMATION_TOKEN_PREFIX).is_some_and(is_secret)
}

/// Whether `token` has the shape of a git token.
pub fn is_git_token(token: &str) -> bool {
    token.strip_prefix(GIT_TOKEN_PREFIX).is_some_and(is_secret)
}

pub fn is_lower_hex(text: &str) -> bool {
    text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `text` is a secret as [`random_secret`] makes them.
pub fn is_secret(text: &str) -> bool {
    text.len() == TOKEN_BYTES * 2 && is_lower_hex(text)
}

/// Constant-time equality of two hashes or secrets.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// An 8-character confirmation code from [`CODE_ALPHABET`], uniformly drawn.
pub fn new_confirmation_code() -> String {
    let mut code = String::with_capacity(CODE_LENGTH);
    // Rejection sampling keeps every letter equally likely.
    let limit = (256 / CODE_ALPHABET.len() * CODE_ALPHABET.len()) as u8;
    while code.len() < CODE_LENGTH {
        for byte in random_bytes::<16>() {
            if byte < limit && code.len() < CODE_LENGTH {
                code.push(CODE_ALPHABET[byte as usize % CODE_ALPHABET.len()] as char);
            }
        }
    }
    code
}

/// How a person may type a code: any case, with spaces and dashes.
pub fn normalize_code(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// `ABCD-EFGH`: easier to read in an e-mail.
pub fn display_code(code: &str) -> String {
    let (first, second) = code.split_at(code.len() / 2);
    format!("{first}-{second}")
}

const PHRASE_WORDS: &[&str] = &[
    "amber", "anchor", "apple", "arrow", "aspen", "badger", "bamboo", "beacon", "birch", "bison", "bramble", "breeze",
    "brook", "cactus", "canyon", "cedar", "cobalt", "comet", "coral", "cotton", "crane", "crystal", "daisy", "delta",
    "dune", "eagle", "ember", "falcon", "fern", "fjord", "flint", "forest", "fox", "garnet", "glacier", "granite",
    "harbor", "hazel", "heron", "indigo", "island", "ivory", "jade", "juniper", "kestrel", "lagoon", "lantern",
    "lemon", "lilac", "linen", "lotus", "maple", "marble", "meadow", "mint", "moss", "nectar", "nutmeg", "oak",
    "ocean", "olive", "onyx", "orchid", "otter", "pebble", "pepper", "pine", "plum", "prairie", "quartz", "quill",
    "raven", "reef", "river", "robin", "saffron", "sage", "salmon", "sparrow", "spruce", "summit", "thistle",
    "thunder", "tulip", "tundra", "velvet", "violet", "walnut", "willow", "wren", "yarrow", "zephyr",
];

/// Three words shown both in the terminal and in the e-mail, so the person can
/// check that the e-mail answers the login they started.
pub fn new_verification_phrase() -> String {
    let bytes = random_bytes::<6>();
    bytes
        .chunks(2)
        .map(|pair| {
            let index = u16::from_le_bytes([pair[0], pair[1]]) as usize % PHRASE_WORDS.len();
            PHRASE_WORDS[index]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn hex_writes_two_lower_case_digits_a_byte() {
        assert_eq!(hex(&[]), "");
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn session_tokens_are_prefixed_random_and_recognised() {
        let tokens: HashSet<String> = (0..1000).map(|_| new_session_token()).collect();
        assert_eq!(tokens.len(), 1000);
        for token in &tokens {
            assert!(token.starts_with("gren_"));
            assert!(is_session_token(token), "{token}");
            // 24 random bytes = 192 bits ≥ 128.
            assert_eq!(token.len(), 5 + 48);
        }
        assert!(!is_session_token("gren_xyz"));
        assert!(!is_session_token(&format!("grex_{}", random_secret())));
        assert!(!is_session_token(&format!("gren_{}", random_secret().to_uppercase())));
    }

    #[test]
    fn automation_tokens_are_told_from_session_tokens_by_their_prefix() {
        let token = new_automation_token();
        assert!(token.starts_with("gren_token_"), "{token}");
        assert!(is_automation_token(&token));
        assert!(!is_session_token(&token), "no session look-up for an automation token");
        assert!(!is_automation_token(&new_session_token()));
        assert_ne!(new_automation_token(), token);
    }

    #[test]
    fn git_tokens_are_told_from_sessions_and_automation_tokens_by_their_prefix() {
        let token = new_git_token();
        assert!(token.starts_with("gren_git_") && is_git_token(&token), "{token}");
        assert!(!is_session_token(&token) && !is_automation_token(&token));
        assert!(!is_git_token(&new_session_token()) && !is_git_token(&new_automation_token()));
    }

    #[test]
    fn codes_use_only_the_unambiguous_alphabet_and_all_of_it() {
        let mut seen = HashSet::new();
        for _ in 0..2000 {
            let code = new_confirmation_code();
            assert_eq!(code.len(), CODE_LENGTH);
            for c in code.bytes() {
                assert!(CODE_ALPHABET.contains(&c), "{code}");
                seen.insert(c);
            }
        }
        assert_eq!(seen.len(), CODE_ALPHABET.len(), "every letter of the alphabet occurs");
        for confusing in b"0O1IL" {
            assert!(!CODE_ALPHABET.contains(confusing));
        }
    }

    #[test]
    fn typed_codes_are_normalized() {
        assert_eq!(normalize_code(" abcd-efgh "), "ABCDEFGH");
        assert_eq!(normalize_code("ab cd\tef-gh"), "ABCDEFGH");
        assert_eq!(display_code("ABCDEFGH"), "ABCD-EFGH");
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }

    #[test]
    fn phrases_are_three_words() {
        let phrase = new_verification_phrase();
        assert_eq!(phrase.split(' ').count(), 3, "{phrase}");
    }
}
