//! The vocabulary of failures that every layer shares: the API's error codes
//! ([`ErrorCode`], the `error` member of every error body) and [`Chain`], an
//! error with its causes, for logs and operators.
//!
//! Domain modules return error enums of their own (`StoreError`,
//! `AuthError`, `IdentityError`, `BundleError`, `PackageError`) that name no
//! HTTP status; the HTTP layer maps them to status, code and message in one
//! place (`gren_registry_http::http::errors`).

use serde::{Serialize, Serializer};
use std::error::Error;
use std::fmt;

/// Declares [`ErrorCode`] from one list: the variants, their text and
/// [`ErrorCode::ALL`] cannot drift apart.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $text:literal,)*) => {
        /// A stable, snake_case, machine-readable error code. Every one is
        /// documented in docs/API.md (a test checks).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                }
            }
        }
    };
}

error_codes! {
    // 400
    InvalidJson => "invalid_json",
    InvalidField => "invalid_field",
    InvalidEmail => "invalid_email",
    /// A wrong login confirmation code.
    InvalidCode => "invalid_code",
    /// An unknown login token.
    InvalidToken => "invalid_token",
    InvalidName => "invalid_name",
    InvalidRole => "invalid_role",
    InvalidBundle => "invalid_bundle",
    InvalidOutline => "invalid_outline",
    InvalidVersion => "invalid_version",
    InvalidQuery => "invalid_query",
    InvalidWait => "invalid_wait",
    InvalidReason => "invalid_reason",
    /// An automation token's scope that is not `action:target`.
    InvalidScope => "invalid_scope",
    /// An automation token's lifetime outside 1 to 365 days.
    InvalidExpiry => "invalid_expiry",
    LoginUsed => "login_used",
    LoginExpired => "login_expired",
    LoginLocked => "login_locked",
    MalformedRequest => "malformed_request",
    // 401, 403
    Unauthorized => "unauthorized",
    Forbidden => "forbidden",
    /// An automation token used outside its scopes.
    MissingScope => "missing_scope",
    /// An automation token used where only a person's session will do.
    SessionRequired => "session_required",
    // 404
    NotFound => "not_found",
    IdentityNotFound => "identity_not_found",
    MemberNotFound => "member_not_found",
    InvitationNotFound => "invitation_not_found",
    PackageNotFound => "package_not_found",
    VersionNotFound => "version_not_found",
    NoCompatibleVersion => "no_compatible_version",
    NoPreviousVersion => "no_previous_version",
    SessionNotFound => "session_not_found",
    TokenNotFound => "token_not_found",
    // 405, 408
    MethodNotAllowed => "method_not_allowed",
    RequestTimeout => "request_timeout",
    // 409
    NameTaken => "name_taken",
    NameReserved => "name_reserved",
    IdentityNameConfusable => "identity_name_confusable",
    LastAdmin => "last_admin",
    TooManyInvitations => "too_many_invitations",
    TooManyTokens => "too_many_tokens",
    VersionExists => "version_exists",
    PrivacyMismatch => "privacy_mismatch",
    PackageNameCollision => "package_name_collision",
    // 410, 411, 413, 415, 429, 431
    Revoked => "revoked",
    LengthRequired => "length_required",
    BodyTooLarge => "body_too_large",
    BundleTooLarge => "bundle_too_large",
    UnsupportedMediaType => "unsupported_media_type",
    RateLimited => "rate_limited",
    HeadersTooLarge => "headers_too_large",
    // 500, 502, 503, 507
    InternalError => "internal_error",
    EmailFailed => "email_failed",
    ServerBusy => "server_busy",
    StorageUnavailable => "storage_unavailable",
    /// A stored file no longer matches its recorded SHA-256 (a bundle
    /// damaged on disk): it is not served.
    StorageCorrupt => "storage_corrupt",
    StorageFull => "storage_full",
    TooManyConnections => "too_many_connections",
}

impl ErrorCode {
    /// The code a text names, `None` for a text no code has.
    pub fn from_text(text: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|code| code.as_str() == text)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// An error followed by its causes, `outer: inner: innermost`: what an
/// operator needs to act on a failure (the path, then what the system said).
pub struct Chain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// docs/API.md, found from this crate upwards (the crate may sit in a
    /// workspace below the repository root).
    fn api_docs() -> String {
        let start = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let docs = start
            .ancestors()
            .map(|dir| dir.join("docs").join("API.md"))
            .find(|path| path.exists())
            .unwrap_or_else(|| panic!("no docs/API.md in {} or above", start.display()));
        std::fs::read_to_string(&docs).unwrap()
    }

    #[test]
    fn every_error_code_is_documented_in_the_api_docs() {
        let docs = api_docs();
        let missing: Vec<&str> = ErrorCode::ALL
            .iter()
            .map(|code| code.as_str())
            .filter(|text| !docs.contains(&format!("`{text}`")))
            .collect();
        assert!(missing.is_empty(), "codes missing from docs/API.md: {missing:?}");
    }

    #[test]
    fn error_codes_are_distinct_snake_case_and_found_by_their_text() {
        let mut seen = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} is used twice");
            assert!(
                text.split('_')
                    .all(|word| !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase())),
                "{text} is not snake_case"
            );
            assert_eq!(ErrorCode::from_text(text), Some(code));
            assert_eq!(serde_json::to_value(code).unwrap(), text);
        }
        assert_eq!(ErrorCode::from_text("no_such_code"), None);
    }

    #[test]
    fn a_chain_shows_every_cause_in_order() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot read users/me.json")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other("Is a directory"));
        assert_eq!(Chain(&error).to_string(), "cannot read users/me.json: Is a directory");
    }
}
