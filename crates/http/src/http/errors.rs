//! Errors at the HTTP edge: [`ApiError`] is what a response says (status,
//! code, message, headers, details), and this module is the one place where
//! the domain's errors become one. Internal errors keep their cause for the
//! log, which [`ApiError::log_if_internal`] writes once, when the response is
//! made ([`super::Response::from_error`]); the client only hears that
//! something failed.

use gren_registry_core::auth::AuthError;
use gren_registry_core::auth::token::TokenError;
use gren_registry_core::budget::{self, Busy};
use gren_registry_core::bundle::BundleError;
use gren_registry_core::error::{Chain, ErrorCode};
use gren_registry_core::git::GitError;
use gren_registry_core::identity::IdentityError;
use gren_registry_core::package::PackageError;
use gren_registry_core::ratelimit::RateLimited;
use gren_registry_core::repository::RepositoryError;
use gren_registry_core::store::{DiskFault, StoreError};
use std::error::Error;
use std::fmt;

/// When to come back after the storage refused a write: an operator has to
/// act, so not in a few seconds.
const STORAGE_RETRY_AFTER_SECS: u64 = 60;

/// The cause of an internal error: logged, never sent.
pub type Cause = Box<dyn Error + Send + Sync>;

#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub code: ErrorCode,
    /// A sentence for people.
    pub message: String,
    /// Extra headers the status calls for (`Allow`, `Retry-After`, ...).
    pub headers: Vec<(&'static str, super::HeaderText)>,
    /// More members of the error body, such as `field` (the input field at
    /// fault) or `reason` (why a version was revoked).
    pub details: Vec<(&'static str, serde_json::Value)>,
    /// Why an internal error happened, for the log.
    pub cause: Option<Cause>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// The same answer again, without the cause (which was logged with the
    /// first): for a refusal that is given more than once, such as a
    /// request's authentication asked for by several steps.
    pub fn replay(&self) -> ApiError {
        ApiError {
            status: self.status,
            code: self.code,
            message: self.message.clone(),
            headers: self.headers.clone(),
            details: self.details.clone(),
            cause: None,
        }
    }

    pub fn new(status: u16, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
            details: Vec::new(),
            cause: None,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<super::HeaderText>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    pub fn with_detail(mut self, key: &'static str, value: impl Into<serde_json::Value>) -> ApiError {
        self.details.push((key, value.into()));
        self
    }

    /// Names the input field at fault (`outline.license`).
    pub fn with_field(self, field: impl Into<String>) -> ApiError {
        self.with_detail("field", field.into())
    }

    pub fn field(&self) -> Option<&str> {
        self.details
            .iter()
            .find(|(key, _)| *key == "field")
            .and_then(|(_, value)| value.as_str())
    }

    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(400, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(401, ErrorCode::Unauthorized, message).with_header("WWW-Authenticate", "Bearer")
    }

    pub fn not_found(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(404, code, message)
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(413, ErrorCode::BodyTooLarge, message)
    }

    /// A fault of ours. The cause goes to the log (once, when the response
    /// is made), never to the client.
    pub fn internal(cause: impl Into<Cause>) -> ApiError {
        ApiError {
            cause: Some(cause.into()),
            ..ApiError::new(
                500,
                ErrorCode::InternalError,
                "The registry hit an internal error; it has been logged.",
            )
        }
    }

    /// A failure of the data directory: disk trouble says so (`507` for a
    /// full disk, `503` with `Retry-After` for one refusing writes or a file
    /// damaged on it), anything else is internal. The path and cause go to the log, never to the
    /// client.
    pub fn storage(fault: Option<DiskFault>, cause: impl Into<Cause>) -> ApiError {
        let answer = match fault {
            None => return ApiError::internal(cause),
            Some(DiskFault::Full) => ApiError::new(
                507,
                ErrorCode::StorageFull,
                "The registry's storage is full; the change was not made. It has been logged.",
            ),
            Some(DiskFault::Unavailable) => ApiError::new(
                503,
                ErrorCode::StorageUnavailable,
                "The registry's storage is not accepting changes; the change was not made. Try again later.",
            )
            .with_header("Retry-After", STORAGE_RETRY_AFTER_SECS.to_string()),
            Some(DiskFault::Damaged) => ApiError::new(
                503,
                ErrorCode::StorageCorrupt,
                "The registry's stored copy of this is damaged and is not served; it has been logged. Try again later.",
            )
            .with_header("Retry-After", STORAGE_RETRY_AFTER_SECS.to_string()),
        };
        ApiError {
            cause: Some(cause.into()),
            ..answer
        }
    }

    /// Logs an internal error with its whole cause chain; other errors are
    /// the client's business, not the operator's.
    pub fn log_if_internal(&self) {
        if self.status >= 500
            && let Some(cause) = &self.cause
        {
            log::error!("internal error: {}", Chain(cause.as_ref()));
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl Error for ApiError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.cause.as_deref().map(|cause| cause as &(dyn Error + 'static))
    }
}

/// The data directory failing is never the client's fault.
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        ApiError::storage(err.fault(), err)
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> ApiError {
        let (status, code) = match &err {
            AuthError::InvalidEmail { .. } => (400, ErrorCode::InvalidEmail),
            AuthError::MissingToken
            | AuthError::NotARegistryToken
            | AuthError::UnknownToken
            | AuthError::UnknownAutomationToken
            | AuthError::SessionExpired
            | AuthError::TokenExpired { .. }
            | AuthError::UnknownGitToken
            | AuthError::GitTokenExpired
            | AuthError::GitTokenNotForApi => return ApiError::unauthorized(err.to_string()),
            AuthError::UnknownLogin => (400, ErrorCode::InvalidToken),
            AuthError::LoginUsed => (400, ErrorCode::LoginUsed),
            AuthError::LoginLocked => (400, ErrorCode::LoginLocked),
            AuthError::LoginExpired => (400, ErrorCode::LoginExpired),
            AuthError::WrongCode { .. } => (400, ErrorCode::InvalidCode),
            AuthError::Store(store) => return ApiError::storage(store.fault(), err),
        };
        ApiError::new(status, code, err.to_string())
    }
}

impl From<RateLimited> for ApiError {
    fn from(err: RateLimited) -> ApiError {
        ApiError::new(429, ErrorCode::RateLimited, err.to_string())
            .with_header("Retry-After", err.retry_after_secs.to_string())
    }
}

impl From<IdentityError> for ApiError {
    fn from(err: IdentityError) -> ApiError {
        let (status, code) = match &err {
            IdentityError::InvalidName { .. } => (400, ErrorCode::InvalidName),
            IdentityError::InvalidRole { .. } => (400, ErrorCode::InvalidRole),
            IdentityError::RoleTooLow { .. } | IdentityError::NotAMember { .. } => (403, ErrorCode::Forbidden),
            IdentityError::NotFound { .. } => (404, ErrorCode::IdentityNotFound),
            IdentityError::MemberNotFound { .. } => (404, ErrorCode::MemberNotFound),
            IdentityError::NotInvited { .. } => (404, ErrorCode::InvitationNotFound),
            IdentityError::NameTaken { .. } => (409, ErrorCode::NameTaken),
            IdentityError::NameReserved { .. } => (409, ErrorCode::NameReserved),
            IdentityError::Confusable { .. } => (409, ErrorCode::IdentityNameConfusable),
            IdentityError::LastAdmin { .. } => (409, ErrorCode::LastAdmin),
            IdentityError::TooManyInvitations { .. } => (409, ErrorCode::TooManyInvitations),
            IdentityError::Store(store) => return ApiError::storage(store.fault(), err),
        };
        ApiError::new(status, code, err.to_string())
    }
}

impl From<TokenError> for ApiError {
    fn from(err: TokenError) -> ApiError {
        let (status, code, field) = match &err {
            TokenError::InvalidName => (400, ErrorCode::InvalidName, Some("name")),
            TokenError::InvalidScope { .. } | TokenError::ScopeCount | TokenError::NotAMember { .. } => {
                (400, ErrorCode::InvalidScope, Some("scopes"))
            }
            TokenError::InvalidLifetime { .. } => (400, ErrorCode::InvalidExpiry, Some("expiresInDays")),
            TokenError::NameTaken { .. } => (409, ErrorCode::NameTaken, Some("name")),
            TokenError::TooMany => (409, ErrorCode::TooManyTokens, None),
            TokenError::NotFound { .. } => (404, ErrorCode::TokenNotFound, None),
            TokenError::MissingScope { scope, .. } => {
                let scope = scope.clone();
                return ApiError::new(403, ErrorCode::MissingScope, err.to_string()).with_detail("scope", scope);
            }
            TokenError::SessionRequired => (403, ErrorCode::SessionRequired, None),
            TokenError::Store(store) => return ApiError::storage(store.fault(), err),
        };
        let refused = ApiError::new(status, code, err.to_string());
        match field {
            Some(field) => refused.with_field(field),
            None => refused,
        }
    }
}

impl From<BundleError> for ApiError {
    fn from(err: BundleError) -> ApiError {
        let (status, code) = match &err {
            BundleError::TooLarge { .. } => (413, ErrorCode::BundleTooLarge),
            BundleError::OutlineTooLarge | BundleError::InvalidOutline { .. } => (400, ErrorCode::InvalidOutline),
            BundleError::InvalidSource { .. }
            | BundleError::NotGzip
            | BundleError::IncompleteGzip(_)
            | BundleError::NotABundle(_)
            | BundleError::TrailingData
            | BundleError::DuplicateKey { .. }
            | BundleError::OutlineNotAnObject
            | BundleError::SourcesFirst
            | BundleError::UnexpectedMember { .. }
            | BundleError::Missing { .. }
            | BundleError::TooManyModules
            | BundleError::ModuleNameTooLong { .. } => (400, ErrorCode::InvalidBundle),
        };
        let refused = ApiError::new(status, code, err.to_string());
        match err.field() {
            Some(field) => refused.with_field(field),
            None => refused,
        }
    }
}

impl From<Busy> for ApiError {
    fn from(err: Busy) -> ApiError {
        ApiError::new(503, ErrorCode::ServerBusy, err.to_string())
            .with_header("Retry-After", budget::RETRY_AFTER_SECS.to_string())
    }
}

impl From<PackageError> for ApiError {
    fn from(err: PackageError) -> ApiError {
        let (status, code, field) = match err {
            PackageError::Bundle(err) => return err.into(),
            PackageError::Identity(err) => return err.into(),
            PackageError::Token(err) => return err.into(),
            PackageError::Busy(err) => return err.into(),
            PackageError::RateLimited(err) => return err.into(),
            PackageError::Store(ref store) => return ApiError::storage(store.fault(), err),
            PackageError::NotFound { .. } => (404, ErrorCode::PackageNotFound, None),
            PackageError::VersionNotFound { .. } => (404, ErrorCode::VersionNotFound, None),
            PackageError::VersionExists { .. } => (409, ErrorCode::VersionExists, None),
            PackageError::PrivacyMismatch { .. } => (409, ErrorCode::PrivacyMismatch, None),
            PackageError::FileNameCollision { .. } => (409, ErrorCode::PackageNameCollision, None),
            PackageError::NotASuccessor { .. } => (400, ErrorCode::InvalidVersion, Some("outline.version")),
            PackageError::OwnerSpelledOtherwise { .. } => (400, ErrorCode::InvalidOutline, Some("outline.name")),
        };
        let refused = ApiError::new(status, code, err.to_string());
        match field {
            Some(field) => refused.with_field(field),
            None => refused,
        }
    }
}

/// A git process that ran out of time gave up for the registry's load; any
/// other failure of git or of a repository build is ours.
impl From<GitError> for ApiError {
    fn from(err: GitError) -> ApiError {
        match err {
            GitError::TimedOut { .. } => ApiError {
                cause: Some(err.into()),
                ..ApiError::new(
                    503,
                    ErrorCode::ServerBusy,
                    "The registry could not answer this git request in time; try again in a few seconds.",
                )
                .with_header("Retry-After", budget::RETRY_AFTER_SECS.to_string())
            },
            other => ApiError::internal(other),
        }
    }
}

impl From<RepositoryError> for ApiError {
    fn from(err: RepositoryError) -> ApiError {
        match err {
            RepositoryError::Store(store) => store.into(),
            RepositoryError::Git(git) => git.into(),
            RepositoryError::Busy(busy) => busy.into(),
            other => ApiError::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gren_registry_core::auth::email::Email;
    use gren_registry_core::identity::Role;
    use gren_registry_core::package::{PackageName, Version};
    use gren_registry_core::store::Operation;

    /// What a response says of `err`: status, code, message, `field`, and
    /// `Retry-After` or `WWW-Authenticate`.
    fn seen(err: impl Into<ApiError>) -> (u16, &'static str, String, Option<String>, Option<String>) {
        let err = err.into();
        let header = err
            .headers
            .iter()
            .find(|(name, _)| ["Retry-After", "WWW-Authenticate"].contains(name))
            .map(|(_, value)| value.to_string());
        let field = err.field().map(str::to_string);
        (err.status, err.code.as_str(), err.message, field, header)
    }

    /// Status and code only, for tables of cases.
    fn status_and_code(err: impl Into<ApiError>) -> (u16, &'static str) {
        let (status, code, ..) = seen(err);
        (status, code)
    }

    fn store_failure() -> StoreError {
        let path = std::path::Path::new("/data/users/me@example.com.json");
        StoreError::io(Operation::Read, path)(std::io::Error::other("Is a directory"))
    }

    fn name() -> PackageName {
        PackageName::parse("gren-lang/url").unwrap()
    }

    fn version(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn a_store_failure_is_an_internal_error_that_keeps_its_cause_for_the_log() {
        let err = ApiError::from(store_failure());
        assert_eq!(
            Chain(err.cause.as_deref().unwrap()).to_string(),
            "cannot read /data/users/me@example.com.json: Is a directory"
        );
        let message = "The registry hit an internal error; it has been logged.";
        assert_eq!(seen(err), (500, "internal_error", message.into(), None, None));
    }

    #[test]
    fn a_full_disk_is_507_and_a_read_only_or_failing_one_is_503_with_retry_after() {
        let failing = |errno| {
            let path = std::path::Path::new("/data/users/me@example.com.json");
            StoreError::io(Operation::Write, path)(std::io::Error::from_raw_os_error(errno))
        };
        for errno in [libc::ENOSPC, libc::EDQUOT] {
            let (status, code, message, _, header) = seen(PackageError::Store(failing(errno)));
            assert_eq!((status, code, header), (507, "storage_full", None));
            assert!(!message.contains("/data"), "{message}");
        }
        for errno in [libc::EROFS, libc::EIO] {
            let (status, code, _, _, header) = seen(AuthError::Store(failing(errno)));
            assert_eq!((status, code, header), (503, "storage_unavailable", Some("60".into())));
        }
        let err = ApiError::from(failing(libc::ENOSPC));
        assert!(
            Chain(err.cause.as_deref().unwrap())
                .to_string()
                .contains("/data/users/me@example.com.json")
        );
        assert_eq!(status_and_code(failing(libc::EACCES)), (500, "internal_error"));
    }

    #[test]
    fn a_damaged_file_is_503_storage_corrupt_with_retry_after_and_named_only_in_the_log() {
        let damaged = StoreError::Damaged {
            path: "/data/packages/a/b/a_b__1_0_0.pkg.gz".into(),
            expected: "00".repeat(32),
            found: "11".repeat(32),
        };
        let err = ApiError::from(damaged);
        assert!(
            Chain(err.cause.as_deref().unwrap())
                .to_string()
                .contains("a_b__1_0_0.pkg.gz")
        );
        let (status, code, message, _, header) = seen(err);
        assert_eq!((status, code, header), (503, "storage_corrupt", Some("60".into())));
        assert!(!message.contains("/data"), "{message}");
    }

    #[test]
    fn auth_errors_keep_their_statuses_codes_and_messages() {
        let message = "This request needs an `Authorization: Bearer <token>` header.";
        let bearer = Some("Bearer".to_string());
        assert_eq!(
            seen(AuthError::MissingToken),
            (401, "unauthorized", message.into(), None, bearer.clone())
        );
        for err in [
            AuthError::NotARegistryToken,
            AuthError::UnknownToken,
            AuthError::UnknownAutomationToken,
            AuthError::SessionExpired,
            AuthError::UnknownGitToken,
            AuthError::GitTokenExpired,
            AuthError::GitTokenNotForApi,
        ] {
            assert_eq!(seen(err).4, bearer);
        }
        let message = "\"me@\" is not an e-mail address the registry accepts.";
        let email = AuthError::InvalidEmail { input: "me@".into() };
        assert_eq!(seen(email), (400, "invalid_email", message.into(), None, None));
        let message = "The confirmation code is wrong; 3 attempts left.";
        let wrong = AuthError::WrongCode { attempts_left: 3 };
        assert_eq!(seen(wrong), (400, "invalid_code", message.into(), None, None));
        let message = "The confirmation code is wrong, and that was the last attempt; start a new login.";
        assert_eq!(seen(AuthError::WrongCode { attempts_left: 0 }).2, message);
        let cases = [
            (AuthError::UnknownLogin, (400, "invalid_token")),
            (AuthError::LoginUsed, (400, "login_used")),
            (AuthError::LoginLocked, (400, "login_locked")),
            (AuthError::LoginExpired, (400, "login_expired")),
            (AuthError::Store(store_failure()), (500, "internal_error")),
        ];
        for (err, expected) in cases {
            assert_eq!(status_and_code(err), expected);
        }
    }

    #[test]
    fn token_refusals_name_the_missing_scope_and_the_field_at_fault() {
        let missing = ApiError::from(TokenError::MissingScope {
            token: "ci".into(),
            scope: "publish:team/core".into(),
        });
        assert_eq!((missing.status, missing.code.as_str()), (403, "missing_scope"));
        assert!(missing.message.contains("publish:team/core"), "{}", missing.message);
        assert_eq!(missing.details, vec![("scope", "publish:team/core".into())]);
        assert_eq!(status_and_code(TokenError::SessionRequired), (403, "session_required"));
        let expired = seen(AuthError::TokenExpired { name: "ci".into() });
        assert_eq!((expired.0, expired.4), (401, Some("Bearer".into())));
        let cases = [
            (TokenError::InvalidName, (400, "invalid_name"), Some("name")),
            (TokenError::ScopeCount, (400, "invalid_scope"), Some("scopes")),
            (
                TokenError::InvalidLifetime { days: 400 },
                (400, "invalid_expiry"),
                Some("expiresInDays"),
            ),
            (
                TokenError::NameTaken { name: "ci".into() },
                (409, "name_taken"),
                Some("name"),
            ),
            (TokenError::TooMany, (409, "too_many_tokens"), None),
            (TokenError::NotFound { id: "x".into() }, (404, "token_not_found"), None),
        ];
        for (err, expected, field) in cases {
            let (status, code, _, seen_field, _) = seen(err);
            assert_eq!(((status, code), seen_field.as_deref()), (expected, field));
        }
    }

    #[test]
    fn refusals_for_a_limit_or_the_registrys_load_say_when_to_come_back() {
        let message = "Too many requests; try again in 42 seconds.";
        let limited = RateLimited { retry_after_secs: 42 };
        assert_eq!(
            seen(limited),
            (429, "rate_limited", message.into(), None, Some("42".into()))
        );
        let message = "The registry is handling as many uploads as it can at once; try again in a few seconds.";
        let busy = Busy { what: "uploads" };
        assert_eq!(seen(busy), (503, "server_busy", message.into(), None, Some("2".into())));
    }

    #[test]
    fn identity_errors_keep_their_statuses_codes_and_messages() {
        let identity = || "gren-lang".to_string();
        let message = "This needs the admin role in gren-lang; you have publish.";
        let too_low = IdentityError::RoleTooLow {
            identity: identity(),
            needed: Role::Admin,
            held: Role::Publish,
        };
        assert_eq!(seen(too_low), (403, "forbidden", message.into(), None, None));
        let message = "The name gren-1ang looks like the identity gren-lang (case, I, l and 1, O and 0, g, q and 9, \
                       digits read as letters, rn and m, vv and w, and dashes are easily mistaken, and a long \
                       reserved name also covers names one letter away); choose a name that is clearly different.";
        let confusable = IdentityError::Confusable {
            name: "gren-1ang".into(),
            original: "the identity gren-lang".into(),
        };
        assert_eq!(
            seen(confusable),
            (409, "identity_name_confusable", message.into(), None, None)
        );
        let email = Email::parse("b@example.com").unwrap();
        let cases = [
            (
                IdentityError::InvalidName { input: "a--b".into() },
                (400, "invalid_name"),
            ),
            (
                IdentityError::InvalidRole { input: "owner".into() },
                (400, "invalid_role"),
            ),
            (IdentityError::NotAMember { identity: identity() }, (403, "forbidden")),
            (
                IdentityError::NotFound { name: identity() },
                (404, "identity_not_found"),
            ),
            (
                IdentityError::MemberNotFound {
                    identity: identity(),
                    email,
                },
                (404, "member_not_found"),
            ),
            (
                IdentityError::NotInvited { identity: identity() },
                (404, "invitation_not_found"),
            ),
            (
                IdentityError::NameTaken {
                    name: identity(),
                    existing: "Gren-Lang".into(),
                },
                (409, "name_taken"),
            ),
            (IdentityError::NameReserved { name: identity() }, (409, "name_reserved")),
            (IdentityError::LastAdmin { identity: identity() }, (409, "last_admin")),
            (
                IdentityError::TooManyInvitations {
                    identity: identity(),
                    max: 20,
                },
                (409, "too_many_invitations"),
            ),
            (IdentityError::Store(store_failure()), (500, "internal_error")),
        ];
        for (err, expected) in cases {
            assert_eq!(status_and_code(err), expected);
        }
    }

    #[test]
    fn bundle_errors_keep_their_statuses_codes_fields_and_messages() {
        let field = |text: &str| Some(text.to_string());
        let message = "The bundle inflates to more than 1024 bytes.";
        let too_large = BundleError::TooLarge { max_inflated: 1024 };
        assert_eq!(seen(too_large), (413, "bundle_too_large", message.into(), None, None));
        let rule = BundleError::InvalidOutline {
            field: "outline.license".into(),
            rule: "is missing.".into(),
        };
        let message = "outline.license: is missing.";
        assert_eq!(
            seen(rule),
            (400, "invalid_outline", message.into(), field("outline.license"), None)
        );
        assert_eq!(seen(BundleError::OutlineTooLarge).3, field("outline"));
        let message = "The key sources.Url appears more than once; every key of a bundle must be unique.";
        let duplicate = BundleError::DuplicateKey {
            path: "sources.Url".into(),
        };
        assert_eq!(
            seen(duplicate),
            (400, "invalid_bundle", message.into(), field("sources.Url"), None)
        );
        let source = BundleError::InvalidSource {
            field: "sources.lower".into(),
            rule: "\"lower\" is not a module name.".into(),
        };
        let message = "sources.lower: \"lower\" is not a module name.";
        assert_eq!(
            seen(source),
            (400, "invalid_bundle", message.into(), field("sources.lower"), None)
        );
        assert_eq!(seen(BundleError::NotGzip).3, None);
    }

    #[test]
    fn package_errors_keep_their_statuses_codes_fields_and_messages() {
        let message = "gren-lang/url 1.0.0 is already published (and revoked); version numbers are never reused.";
        let exists = PackageError::VersionExists {
            name: name(),
            version: version("1.0.0"),
            revoked: true,
        };
        assert_eq!(seen(exists), (409, "version_exists", message.into(), None, None));
        let message =
            "gren-lang/url cannot go to 3.0.0 from its versions; the next version may be one of: 1.0.1, 1.1.0, 2.0.0.";
        let successor = PackageError::NotASuccessor {
            name: name(),
            version: version("3.0.0"),
            allowed: vec![version("1.0.1"), version("1.1.0"), version("2.0.0")],
        };
        let field = Some("outline.version".to_string());
        assert_eq!(seen(successor), (400, "invalid_version", message.into(), field, None));
        let message = "outline.name: the publishing identity is spelled Gren-Lang; use Gren-Lang/url.";
        let spelled = PackageError::OwnerSpelledOtherwise {
            owner: "Gren-Lang".into(),
            project: "url".into(),
        };
        let field = Some("outline.name".to_string());
        assert_eq!(seen(spelled), (400, "invalid_outline", message.into(), field, None));
        let collision = seen(PackageError::FileNameCollision {
            name: name(),
            stem: "gren_lang_url".into(),
        });
        assert_eq!((collision.0, collision.1), (409, "package_name_collision"));
        assert!(
            collision
                .2
                .contains("those of another package (gren_packages/gren_lang_url__<version>.pkg.gz)")
        );
        let not_a_member = IdentityError::NotAMember { identity: "x".into() };
        let cases = [
            (PackageError::NotFound { name: name() }, (404, "package_not_found")),
            (
                PackageError::VersionNotFound {
                    name: name(),
                    version: version("9.9.9"),
                },
                (404, "version_not_found"),
            ),
            (
                PackageError::PrivacyMismatch { name: name() },
                (409, "privacy_mismatch"),
            ),
            (PackageError::Bundle(BundleError::NotGzip), (400, "invalid_bundle")),
            (PackageError::Identity(not_a_member), (403, "forbidden")),
            (PackageError::Busy(Busy { what: "uploads" }), (503, "server_busy")),
            (PackageError::Store(store_failure()), (500, "internal_error")),
        ];
        for (err, expected) in cases {
            assert_eq!(status_and_code(err), expected);
        }
    }
}
