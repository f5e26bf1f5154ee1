//! Errors at the HTTP edge: [`ApiError`] is what a response says (status,
//! code, message, headers, details), and this module is the one place where
//! the domain's errors become one. Internal errors keep their cause for the
//! log, which [`ApiError::log_if_internal`] writes once, when the response is
//! made ([`super::Response::from_error`]); the client only hears that
//! something failed.

use crate::auth::AuthError;
use crate::budget::{self, Busy};
use crate::bundle::BundleError;
use crate::error::{Chain, ErrorCode};
use crate::identity::IdentityError;
use crate::package::PackageError;
use crate::ratelimit::RateLimited;
use crate::store::StoreError;
use std::error::Error;
use std::fmt;

/// The cause of an internal error: logged, never sent.
pub type Cause = Box<dyn Error + Send + Sync>;

#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub code: ErrorCode,
    /// A sentence for people.
    pub message: String,
    /// Extra headers the status calls for (`Allow`, `Retry-After`, ...).
    pub headers: Vec<(&'static str, String)>,
    /// More members of the error body, such as `field` (the input field at
    /// fault) or `reason` (why a version was revoked).
    pub details: Vec<(&'static str, serde_json::Value)>,
    /// Why an internal error happened, for the log.
    pub cause: Option<Cause>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
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

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> ApiError {
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

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, ErrorCode::Forbidden, message)
    }

    pub fn not_found(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(404, code, message)
    }

    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(409, code, message)
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
        ApiError::internal(err)
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> ApiError {
        let (status, code) = match &err {
            AuthError::InvalidEmail { .. } => (400, ErrorCode::InvalidEmail),
            AuthError::MissingToken
            | AuthError::NotASessionToken
            | AuthError::UnknownToken
            | AuthError::SessionExpired => return ApiError::unauthorized(err.to_string()),
            AuthError::UnknownLogin => (400, ErrorCode::InvalidToken),
            AuthError::LoginUsed => (400, ErrorCode::LoginUsed),
            AuthError::LoginLocked => (400, ErrorCode::LoginLocked),
            AuthError::LoginExpired => (400, ErrorCode::LoginExpired),
            AuthError::WrongCode { .. } => (400, ErrorCode::InvalidCode),
            AuthError::Store(_) => return ApiError::internal(err),
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
            IdentityError::Store(_) => return ApiError::internal(err),
        };
        ApiError::new(status, code, err.to_string())
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
            PackageError::Busy(err) => return err.into(),
            PackageError::Store(_) => return ApiError::internal(err),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Status, code and message of `err` as a response says them.
    fn seen(err: impl Into<ApiError>) -> (u16, &'static str, String) {
        let err = err.into();
        (err.status, err.code.as_str(), err.message)
    }

    fn header<'a>(err: &'a ApiError, name: &str) -> Option<&'a str> {
        err.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    fn store_failure() -> StoreError {
        StoreError::reading(std::path::Path::new("/data/users/me@example.com.json"))(std::io::Error::other(
            "Is a directory",
        ))
    }

    #[test]
    fn a_store_failure_is_an_internal_error_that_keeps_its_cause_for_the_log() {
        let err = ApiError::from(store_failure());
        assert_eq!(
            (err.status, err.code, err.message.as_str()),
            (
                500,
                ErrorCode::InternalError,
                "The registry hit an internal error; it has been logged."
            )
        );
        assert_eq!(
            Chain(err.cause.as_deref().unwrap()).to_string(),
            "cannot read /data/users/me@example.com.json: Is a directory"
        );
    }

    #[test]
    fn auth_errors_keep_their_statuses_codes_and_messages() {
        let unauthorized = ApiError::from(AuthError::MissingToken);
        assert_eq!(header(&unauthorized, "WWW-Authenticate"), Some("Bearer"));
        assert_eq!(
            seen(unauthorized),
            (
                401,
                "unauthorized",
                "This request needs an `Authorization: Bearer <token>` header.".into()
            )
        );
        for err in [
            AuthError::NotASessionToken,
            AuthError::UnknownToken,
            AuthError::SessionExpired,
        ] {
            assert_eq!(seen(err).0, 401);
        }
        let email = AuthError::InvalidEmail { input: "me@".into() };
        assert_eq!(
            seen(email),
            (
                400,
                "invalid_email",
                "\"me@\" is not an e-mail address the registry accepts.".into()
            )
        );
        assert_eq!(seen(AuthError::UnknownLogin).1, "invalid_token");
        assert_eq!(seen(AuthError::LoginUsed).1, "login_used");
        assert_eq!(seen(AuthError::LoginLocked).1, "login_locked");
        assert_eq!(seen(AuthError::LoginExpired).1, "login_expired");
        assert_eq!(
            seen(AuthError::WrongCode { attempts_left: 3 }),
            (
                400,
                "invalid_code",
                "The confirmation code is wrong; 3 attempts left.".into()
            )
        );
        assert_eq!(
            seen(AuthError::WrongCode { attempts_left: 0 }).2,
            "The confirmation code is wrong, and that was the last attempt; start a new login."
        );
        assert_eq!(seen(AuthError::Store(store_failure())).0, 500);
    }

    #[test]
    fn a_refusal_by_a_limit_says_when_to_come_back() {
        let err = ApiError::from(RateLimited { retry_after_secs: 42 });
        assert_eq!(header(&err, "Retry-After"), Some("42"));
        assert_eq!(
            seen(err),
            (
                429,
                "rate_limited",
                "Too many requests; try again in 42 seconds.".into()
            )
        );
    }

    #[test]
    fn identity_errors_keep_their_statuses_codes_and_messages() {
        let identity = || "gren-lang".to_string();
        let email = crate::auth::email::Email::parse("b@example.com").unwrap();
        let cases = [
            (IdentityError::InvalidName { input: "a--b".into() }, 400, "invalid_name"),
            (
                IdentityError::InvalidRole { input: "owner".into() },
                400,
                "invalid_role",
            ),
            (IdentityError::NotAMember { identity: identity() }, 403, "forbidden"),
            (IdentityError::NotFound { name: identity() }, 404, "identity_not_found"),
            (
                IdentityError::MemberNotFound {
                    identity: identity(),
                    email,
                },
                404,
                "member_not_found",
            ),
            (
                IdentityError::NotInvited { identity: identity() },
                404,
                "invitation_not_found",
            ),
            (
                IdentityError::NameTaken {
                    name: identity(),
                    existing: "Gren-Lang".into(),
                },
                409,
                "name_taken",
            ),
            (IdentityError::NameReserved { name: identity() }, 409, "name_reserved"),
            (
                IdentityError::Confusable {
                    name: "gren-1ang".into(),
                    original: "the identity gren-lang".into(),
                },
                409,
                "identity_name_confusable",
            ),
            (IdentityError::LastAdmin { identity: identity() }, 409, "last_admin"),
            (
                IdentityError::TooManyInvitations {
                    identity: identity(),
                    max: 20,
                },
                409,
                "too_many_invitations",
            ),
            (IdentityError::Store(store_failure()), 500, "internal_error"),
        ];
        for (err, status, code) in cases {
            let (seen_status, seen_code, _) = seen(err);
            assert_eq!((seen_status, seen_code), (status, code));
        }
        let too_low = IdentityError::RoleTooLow {
            identity: identity(),
            needed: crate::identity::Role::Admin,
            held: crate::identity::Role::Publish,
        };
        assert_eq!(
            seen(too_low),
            (
                403,
                "forbidden",
                "This needs the admin role in gren-lang; you have publish.".into()
            )
        );
        let confusable = IdentityError::Confusable {
            name: "gren-1ang".into(),
            original: "the identity gren-lang".into(),
        };
        assert_eq!(
            seen(confusable).2,
            "The name gren-1ang looks like the identity gren-lang (case, I, l and 1, O and 0, rn and m, vv and w, \
             and dashes are easily mistaken); choose a name that is clearly different."
        );
    }

    #[test]
    fn bundle_errors_keep_their_statuses_codes_fields_and_messages() {
        let too_large = ApiError::from(BundleError::TooLarge { max_inflated: 1024 });
        assert_eq!(
            (
                too_large.status,
                too_large.code,
                too_large.message.as_str(),
                too_large.field()
            ),
            (
                413,
                ErrorCode::BundleTooLarge,
                "The bundle inflates to more than 1024 bytes.",
                None
            )
        );
        let outline = ApiError::from(BundleError::InvalidOutline {
            field: "outline.license".into(),
            rule: "is missing.".into(),
        });
        assert_eq!(
            (outline.status, outline.code, outline.message.as_str(), outline.field()),
            (
                400,
                ErrorCode::InvalidOutline,
                "outline.license: is missing.",
                Some("outline.license")
            )
        );
        let huge = ApiError::from(BundleError::OutlineTooLarge);
        assert_eq!((huge.code, huge.field()), (ErrorCode::InvalidOutline, Some("outline")));
        let duplicate = ApiError::from(BundleError::DuplicateKey {
            path: "sources.Url".into(),
        });
        assert_eq!(
            (duplicate.status, duplicate.code, duplicate.field()),
            (400, ErrorCode::InvalidBundle, Some("sources.Url"))
        );
        assert_eq!(
            duplicate.message,
            "The key sources.Url appears more than once; every key of a bundle must be unique."
        );
        let source = ApiError::from(BundleError::InvalidSource {
            field: "sources.lower".into(),
            rule: "\"lower\" is not a module name.".into(),
        });
        assert_eq!(
            (source.code, source.message.as_str(), source.field()),
            (
                ErrorCode::InvalidBundle,
                "sources.lower: \"lower\" is not a module name.",
                Some("sources.lower")
            )
        );
        let not_gzip = ApiError::from(BundleError::NotGzip);
        assert_eq!(
            (not_gzip.status, not_gzip.code, not_gzip.field()),
            (400, ErrorCode::InvalidBundle, None)
        );
    }

    #[test]
    fn a_refusal_for_the_registrys_load_says_when_to_come_back() {
        let err = ApiError::from(Busy { what: "uploads" });
        assert_eq!(header(&err, "Retry-After"), Some("2"));
        assert_eq!(
            seen(err),
            (
                503,
                "server_busy",
                "The registry is handling as many uploads as it can at once; try again in a few seconds.".into()
            )
        );
    }

    #[test]
    fn package_errors_keep_their_statuses_codes_fields_and_messages() {
        let name = || crate::package::PackageName::parse("gren-lang/url").unwrap();
        let version = |text| crate::package::Version::parse(text).unwrap();
        let exists = ApiError::from(PackageError::VersionExists {
            name: name(),
            version: version("1.0.0"),
            revoked: true,
        });
        assert_eq!(
            (exists.status, exists.code, exists.message.as_str()),
            (
                409,
                ErrorCode::VersionExists,
                "gren-lang/url 1.0.0 is already published (and revoked); version numbers are never reused."
            )
        );
        let successor = ApiError::from(PackageError::NotASuccessor {
            name: name(),
            version: version("3.0.0"),
            allowed: vec![version("1.0.1"), version("1.1.0"), version("2.0.0")],
        });
        assert_eq!(
            (successor.status, successor.code, successor.field()),
            (400, ErrorCode::InvalidVersion, Some("outline.version"))
        );
        assert_eq!(
            successor.message,
            "gren-lang/url cannot go to 3.0.0 from its versions; the next version may be one of: 1.0.1, 1.1.0, 2.0.0."
        );
        let spelled = ApiError::from(PackageError::OwnerSpelledOtherwise {
            owner: "Gren-Lang".into(),
            project: "url".into(),
        });
        assert_eq!(
            (spelled.status, spelled.code, spelled.message.as_str(), spelled.field()),
            (
                400,
                ErrorCode::InvalidOutline,
                "outline.name: the publishing identity is spelled Gren-Lang; use Gren-Lang/url.",
                Some("outline.name")
            )
        );
        let collision = ApiError::from(PackageError::FileNameCollision {
            name: name(),
            other: "another package".into(),
            stem: "gren_lang_url".into(),
        });
        assert_eq!(
            (collision.status, collision.code),
            (409, ErrorCode::PackageNameCollision)
        );
        assert!(
            collision
                .message
                .contains("those of another package (gren_packages/gren_lang_url__<version>.pkg.gz)")
        );
        let cases = [
            (PackageError::NotFound { name: name() }, 404, "package_not_found"),
            (
                PackageError::VersionNotFound {
                    name: name(),
                    version: version("9.9.9"),
                },
                404,
                "version_not_found",
            ),
            (PackageError::PrivacyMismatch { name: name() }, 409, "privacy_mismatch"),
            (PackageError::Bundle(BundleError::NotGzip), 400, "invalid_bundle"),
            (
                PackageError::Identity(IdentityError::NotAMember { identity: "x".into() }),
                403,
                "forbidden",
            ),
            (PackageError::Busy(Busy { what: "bundle checks" }), 503, "server_busy"),
            (PackageError::Store(store_failure()), 500, "internal_error"),
        ];
        for (err, status, code) in cases {
            let (seen_status, seen_code, _) = seen(err);
            assert_eq!((seen_status, seen_code), (status, code));
        }
    }
}
