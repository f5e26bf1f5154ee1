//! E-mail addresses: the identity of a user, and a file name in the store.

use super::AuthError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A validated, lower-cased e-mail address. The accepted syntax is a strict
/// subset of RFC 5321 (what real addresses use), so that the address is also
/// a safe file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Email, AuthError> {
        let address = input.trim().to_ascii_lowercase();
        if is_valid(&address) {
            Ok(Email(address))
        } else {
            Err(AuthError::InvalidEmail {
                input: input.trim().to_string(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The mailbox that per-address limits count against: the address
    /// without a `+tag` (`me+1@example.com` and `me+2@example.com` reach
    /// the same inbox at most providers). Logins still go to the address
    /// as typed.
    pub fn mailbox(&self) -> String {
        let (local, domain) = self.0.split_once('@').unwrap_or((&self.0, ""));
        let untagged = local.split_once('+').map_or(local, |(untagged, _)| untagged);
        format!("{untagged}@{domain}")
    }
}

fn is_valid(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    let local_ok = (1..=64).contains(&local.len())
        && local.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()));
    address.len() <= 254 && local_ok && domain_ok
}

impl TryFrom<String> for Email {
    type Error = AuthError;
    fn try_from(value: String) -> Result<Email, AuthError> {
        Email::parse(&value)
    }
}

impl From<Email> for String {
    fn from(email: Email) -> String {
        email.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::check_component;

    #[test]
    fn accepts_real_addresses_lower_cased_and_trimmed() {
        assert_eq!(Email::parse("  Me@Example.COM\n").unwrap().as_str(), "me@example.com");
        for ok in ["a.b+tag@mail.example.org", "x_y-z@sub-domain.io", "robin@gren-lang.org"] {
            let email = Email::parse(ok).unwrap();
            check_component(&format!("{email}.json")).expect("an address is a safe file name");
        }
    }

    #[test]
    fn the_mailbox_drops_a_tag_and_keeps_everything_else() {
        let mailbox = |text: &str| Email::parse(text).unwrap().mailbox();
        assert_eq!(mailbox("Me+Work@Example.com"), "me@example.com");
        assert_eq!(mailbox("me+a+b@example.com"), "me@example.com");
        assert_eq!(mailbox("me@example.com"), "me@example.com");
        assert_eq!(mailbox("me.too-x_y@example.com"), "me.too-x_y@example.com");
        assert_ne!(mailbox("me@example.com"), mailbox("me@example.org"));
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "me@",
            "me@localhost",
            "me@@example.com",
            "a@b@example.com",
            ".me@example.com",
            "me.@example.com",
            "m..e@example.com",
            "me@-x.com",
            "me@x-.com",
            "me@example.c0m",
            "me@exa mple.com",
            "me/../x@example.com",
            "me%x@example.com",
            "mé@example.com",
            "me@example..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }
}
