//! The registry's HTTP API as data: the request and answer bodies of its
//! routes ([docs/API.md](../docs/API.md)), shared by the handlers that write
//! them and the command-line client that reads them. Nothing here knows about
//! HTTP; the pieces are the domain's own types (names, versions, roles,
//! records), so both sides agree on every field by construction.
//!
//! Key order on the wire: answers first written as `serde_json::json!` maps
//! have always had their keys sorted at every depth (serde_json's map is
//! ordered by key), and keep exactly those bytes (the ETag of an `/events`
//! page is a hash of them): the handlers send them in [`SortedKeys`], and
//! their fields are listed here in that order. The other answers (marked
//! "in field order") are sent as declared.
//!
//! Answers made of catalog records borrow them (`Cow`): the server sends them
//! without copying, the client reads them owned.

use crate::auth::email::Email;
use crate::auth::session::SessionView;
use crate::auth::token::TokenView;
use crate::identity::invitation::Received;
use crate::identity::{AuditEntry, Invitation, Member, Role};
use crate::package::events::Event;
use crate::package::{ListingEntry, PackageName, Version, VersionRecord};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize, Serializer};
use std::borrow::Cow;

/// An answer serialized with its keys sorted at every depth (see the module
/// documentation for why).
pub struct SortedKeys<T>(pub T);

impl<T: Serialize> Serialize for SortedKeys<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde_json::to_value(&self.0)
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

/// The registry the client talks to when nothing names another: a server
/// run with the default settings (`serve` listens on 127.0.0.1:3000).
pub const DEFAULT_REGISTRY: &str = "http://127.0.0.1:3000";

/// A client command to show someone (`gren-registry <words>`), naming
/// `registry` when it is not the default, so that it reaches the registry
/// that said it from any machine. Pasted as shown, it works: `--registry`
/// is taken after any client command.
pub fn client_command(registry: &str, words: &str) -> String {
    if registry.trim_end_matches('/') == DEFAULT_REGISTRY {
        format!("gren-registry {words}")
    } else {
        format!("gren-registry {words} --registry {}", registry.trim_end_matches('/'))
    }
}

/// Every error answer (sorted): `error` is the code
/// ([`crate::error::ApiError::code`]); `details` holds the extra members some
/// errors have (`field`, `reason`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// `{}`: what the client sends to `POST …/invitation` (accept), which reads
/// no body.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Empty {}

// --- Login: /session -------------------------------------------------------

/// `POST /session`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginRequest {
    pub email: String,
}

/// `POST /session` → 200 (in field order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginStarted {
    pub fetch_session_token: String,
    /// The phrase the e-mail and the confirmation page show too.
    pub verification: String,
    /// Seconds the login may be confirmed in.
    pub expires_in: u64,
}

/// `POST /session/fetch[?wait=N]`: with the code typed at the terminal, or
/// without one to learn whether the magic link was confirmed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionFetchRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_confirmation_code: Option<String>,
    pub fetch_session_token: String,
}

/// `POST /session/fetch` → 200 with the session token, or 202 while the
/// login waits for its confirmation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SessionFetchAnswer {
    #[serde(rename_all = "camelCase")]
    Token {
        session_token: String,
    },
    Pending {
        status: LoginStatus,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoginStatus {
    Pending,
}

// --- The caller: /user -----------------------------------------------------

/// `GET /user` → 200 (sorted).
#[derive(Debug, Serialize, Deserialize)]
pub struct UserAnswer {
    /// `None` only for a user whose record is gone (removed by an operator).
    pub created: Option<Timestamp>,
    pub email: Email,
    pub identities: Vec<IdentityRole>,
    pub sessions: Vec<SessionView>,
}

/// `GET /user/sessions` → 200 (sorted).
#[derive(Debug, Serialize, Deserialize)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

/// `GET /user/invitations` → 200 (sorted).
#[derive(Debug, Serialize, Deserialize)]
pub struct InvitationList {
    pub invitations: Vec<Received>,
}

// --- Automation tokens: /user/tokens --------------------------------------

/// `POST /user/tokens`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    pub name: String,
    /// `publish:<pattern>`, `revoke:<pattern>`, `download:<identity>`.
    pub scopes: Vec<String>,
    /// Required: 1 to 365.
    pub expires_in_days: u64,
}

/// `POST /user/tokens` → 201 (sorted): the secret, this once, and what
/// listings show of the token.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenCreated {
    pub token: String,
    #[serde(flatten)]
    pub view: TokenView,
}

/// `GET /user/tokens` → 200 (sorted).
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// `POST /user/git-token` → 201 (sorted): a git token (`gren_git_…`), for
/// git's fetches only, and when it expires: at `expires`, `expires_in`
/// seconds after it was made (what a client adds to its own clock).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitTokenAnswer {
    pub token: String,
    pub expires: Timestamp,
    pub expires_in: u64,
}

// --- Publishing identities: /publishing-identity ---------------------------

/// `POST /publishing-identity`.
#[derive(Debug, Serialize, Deserialize)]
pub struct IdentityRequest {
    pub name: String,
    /// The upstream Gren registry sends the session token in the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// An identity and the caller's role in it: `POST /publishing-identity` →
/// 200, and each of `GET /user`'s `identities` (sorted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityRole {
    pub name: String,
    pub role: Role,
}

/// `GET /publishing-identity/<name>` → 200 (sorted). Members see `created`
/// and `members`, admins also the pending `invitations`.
#[derive(Debug, Serialize, Deserialize)]
pub struct IdentityPage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitations: Option<Vec<Invitation>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<Member>>,
    pub name: String,
    pub packages: Vec<ListingEntry>,
}

/// `PUT /publishing-identity/<name>/members/<email>`.
#[derive(Debug, Serialize, Deserialize)]
pub struct MemberRequest {
    /// `download`, `publish` or `admin`; checked by the handler, which names
    /// the roles when it is none of them.
    pub role: String,
}

/// `PUT /publishing-identity/<name>/members/<email>` → 202 with the
/// invitation for someone not yet a member, 200 with the member whose role
/// is set (in field order). (`POST …/invitation`, accepting, answers 200
/// with the new [`Member`] alone.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MemberAnswer {
    Invited(Invitation),
    Member(Member),
}

/// `GET /publishing-identity/<name>/audit` → 200 (sorted).
#[derive(Debug, Serialize, Deserialize)]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
    pub name: String,
}

// --- Packages: /packages ---------------------------------------------------

/// `POST /packages[?private=true]` → 201 (published) or 200 (the same bundle
/// again) (sorted).
#[derive(Debug, Serialize, Deserialize)]
pub struct PublishReceipt {
    pub name: PackageName,
    pub published: Timestamp,
    pub sha256: String,
    pub size: u64,
    pub version: Version,
}

/// `GET /packages[?gren=X.Y.Z]` → 200 (sorted).
#[derive(Debug, Serialize, Deserialize)]
pub struct PackageList {
    pub packages: Vec<ListingEntry>,
}

/// `GET /packages/<author>/<project>` → 200 (in field order).
#[derive(Debug, Serialize, Deserialize)]
pub struct PackagePage<'a> {
    pub name: Cow<'a, PackageName>,
    pub private: bool,
    /// Ascending, revoked ones included.
    pub versions: Cow<'a, [VersionRecord]>,
}

/// A version with its package's name (in field order): `GET
/// /packages/<a>/<p>/latest`, `GET …/<version>/previous` and `POST
/// …/<version>/revoke` → 200.
#[derive(Debug, Serialize, Deserialize)]
pub struct VersionAnswer<'a> {
    pub name: Cow<'a, PackageName>,
    #[serde(flatten)]
    pub version: Cow<'a, VersionRecord>,
}

/// `GET /packages/<author>/<project>/<version>` → 200 (sorted): the version
/// with its package's name and its `gren.json` as published (`null` if it
/// was lost).
#[derive(Debug, Serialize, Deserialize)]
pub struct VersionPage<'a> {
    pub name: Cow<'a, PackageName>,
    /// The outline is passed through as the compiler wrote it.
    pub outline: Option<serde_json::Value>,
    #[serde(flatten)]
    pub version: Cow<'a, VersionRecord>,
}

/// `POST /packages/<author>/<project>[/<version>]/revoke`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RevokeRequest {
    pub reason: String,
}

/// `POST /packages/<author>/<project>/revoke` (every version) → 200 (sorted).
#[derive(Debug, Serialize, Deserialize)]
pub struct RevokedPackage {
    pub name: PackageName,
    pub versions: Vec<VersionRecord>,
}

/// `PATCH /packages/<author>/<project>`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PrivacyRequest {
    pub private: bool,
}

/// `PATCH /packages/<author>/<project>` → 200 (sorted).
#[derive(Debug, Serialize, Deserialize)]
pub struct PrivacyAnswer {
    pub name: PackageName,
    pub private: bool,
}

/// `GET /events?since=N&limit=M` → 200 (sorted). `head` (the newest event)
/// only on a last page: full pages never change, and are cached for ever.
#[derive(Debug, Serialize, Deserialize)]
pub struct EventPage {
    pub events: Vec<Event>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<u64>,
    pub next: u64,
}

/// `GET /health` → 200 (sorted).
#[derive(Debug, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;

    const T: &str = "2025-01-02T03:04:05.678Z";
    const SHA: &str = "517f80339517d7f76e5cf6baabc4bce575b5402144b0292af0d8ae93235a3435";

    /// `json` with `<T>` standing for a time and `<SHA>` for a hash.
    fn fill(json: &str) -> String {
        json.replace("<T>", T).replace("<SHA>", SHA)
    }

    /// Reads `json` as the client does, writes it back as the server does
    /// (`SortedKeys`), and checks that the bytes are the same.
    fn sorted<T: Serialize + DeserializeOwned>(json: &str) {
        let json = fill(json);
        let read: T = serde_json::from_str(&json).unwrap_or_else(|err| panic!("{json}: {err}"));
        assert_eq!(serde_json::to_string(&SortedKeys(read)).unwrap(), json);
    }

    #[test]
    fn a_client_command_names_the_registry_unless_it_is_the_default() {
        assert_eq!(client_command("http://127.0.0.1:3000/", "login"), "gren-registry login");
        assert_eq!(
            client_command("https://r.example/", "identity accept gren-lang"),
            "gren-registry identity accept gren-lang --registry https://r.example"
        );
    }

    /// The same for an answer sent in field order.
    fn in_field_order<T: Serialize + DeserializeOwned>(json: &str) {
        let json = fill(json);
        let read: T = serde_json::from_str(&json).unwrap_or_else(|err| panic!("{json}: {err}"));
        assert_eq!(serde_json::to_string(&read).unwrap(), json);
    }

    // The JSON below is what the registry answered before these types
    // existed (recorded from the binary), with times and hashes replaced.

    #[test]
    fn a_git_token_answer_reads_and_writes_its_documented_shape() {
        sorted::<GitTokenAnswer>(r#"{"expires":"<T>","expiresIn":600,"token":"gren_git_0a1b"}"#);
    }

    #[test]
    fn login_answers_keep_their_bytes() {
        in_field_order::<LoginStarted>(
            r#"{"fetchSessionToken":"0a1b.c2d3","verification":"amber otter","expiresIn":900}"#,
        );
        in_field_order::<SessionFetchAnswer>(r#"{"sessionToken":"grs_abc"}"#);
        in_field_order::<SessionFetchAnswer>(r#"{"status":"pending"}"#);
        let session = r#"{"created":"<T>","current":true,"expires":"<T>","id":"0123456789abcdef","lastUsed":"<T>","userAgent":null}"#;
        sorted::<UserAnswer>(&format!(
            r#"{{"created":"<T>","email":"me@example.com","identities":[{{"name":"blaix","role":"admin"}},{{"name":"gren-lang","role":"publish"}}],"sessions":[{session}]}}"#
        ));
        sorted::<UserAnswer>(r#"{"created":null,"email":"me@example.com","identities":[],"sessions":[]}"#);
        sorted::<SessionList>(&format!(r#"{{"sessions":[{session}]}}"#));
    }

    #[test]
    fn identity_answers_keep_their_bytes() {
        sorted::<InvitationList>(
            r#"{"invitations":[{"email":"friend@example.com","expires":"<T>","identity":"gren-lang","invited":"<T>","invited_by":"me@example.com","role":"publish"}]}"#,
        );
        sorted::<IdentityRole>(r#"{"name":"gren-lang","role":"admin"}"#);
        let packages = r#""packages":[{"latest":"7.0.0","name":"gren-lang/core","private":false,"summary":"Gren's core modules"}]"#;
        sorted::<IdentityPage>(&format!(
            r#"{{"created":"<T>","invitations":[{{"email":"other@example.com","expires":"<T>","invited":"<T>","invited_by":"me@example.com","role":"download"}}],"members":[{{"added":"<T>","email":"me@example.com","role":"admin"}}],"name":"gren-lang",{packages}}}"#
        ));
        sorted::<IdentityPage>(&format!(
            r#"{{"created":"<T>","members":[{{"added":"<T>","email":"me@example.com","role":"publish"}}],"name":"gren-lang",{packages}}}"#
        ));
        sorted::<IdentityPage>(&format!(r#"{{"name":"gren-lang",{packages}}}"#));
        in_field_order::<MemberAnswer>(
            r#"{"email":"friend@example.com","role":"publish","invited_by":"me@example.com","invited":"<T>","expires":"<T>"}"#,
        );
        in_field_order::<MemberAnswer>(r#"{"email":"friend@example.com","role":"admin","added":"<T>"}"#);
        sorted::<AuditLog>(
            r#"{"entries":[{"action":"created","actor":"me@example.com","admin":"me@example.com","at":"<T>","seq":1},{"action":"published","actor":"me@example.com","at":"<T>","package":"gren-lang/core","seq":2,"version":"6.0.1"}],"name":"gren-lang"}"#,
        );
    }

    #[test]
    fn member_answers_tell_an_invitation_from_a_member() {
        let invited: MemberAnswer = serde_json::from_str(&fill(
            r#"{"email":"a@example.com","role":"publish","invited_by":"me@example.com","invited":"<T>","expires":"<T>"}"#,
        ))
        .unwrap();
        assert!(matches!(invited, MemberAnswer::Invited(_)));
        let member: MemberAnswer =
            serde_json::from_str(&fill(r#"{"email":"a@example.com","role":"admin","added":"<T>"}"#)).unwrap();
        assert!(matches!(member, MemberAnswer::Member(_)));
    }

    #[test]
    fn package_answers_keep_their_bytes() {
        sorted::<PublishReceipt>(
            r#"{"name":"gren-lang/core","published":"<T>","sha256":"<SHA>","size":100563,"version":"6.0.1"}"#,
        );
        sorted::<PackageList>(
            r#"{"packages":[{"latest":"2.0.0","name":"blaix/gren-ws4sql","private":true,"summary":"Use sqlite entirely in Gren via ws4sql"}]}"#,
        );
        let live = r#""version":"6.0.1","gren-version":"0.5.0 <= v < 0.6.0","platform":"common","summary":"Gren's core modules","published":"<T>","sha256":"<SHA>","size":100563,"revoked":null"#;
        let revoked = r#""version":"6.0.1","gren-version":"0.5.0 <= v < 0.6.0","platform":"node","summary":"Gren's core modules","published":"<T>","sha256":"<SHA>","size":100563,"revoked":{"at":"<T>","reason":"broken"}"#;
        in_field_order::<PackagePage>(&format!(
            r#"{{"name":"gren-lang/core","private":false,"versions":[{{{live}}},{{{revoked}}}]}}"#
        ));
        in_field_order::<VersionAnswer>(&format!(r#"{{"name":"gren-lang/core",{live}}}"#));
        in_field_order::<VersionAnswer>(&format!(r#"{{"name":"gren-lang/core",{revoked}}}"#));
        sorted::<VersionPage>(
            r#"{"gren-version":"0.6.0 <= v < 0.7.0","name":"gren-lang/core","outline":{"dependencies":{},"gren-version":"0.6.0 <= v < 0.7.0","name":"gren-lang/core","type":"package","version":"7.0.0"},"platform":"common","published":"<T>","revoked":null,"sha256":"<SHA>","size":103277,"summary":"Gren's core modules","version":"7.0.0"}"#,
        );
        sorted::<VersionPage>(
            r#"{"gren-version":"0.6.0 <= v < 0.7.0","name":"gren-lang/core","outline":null,"platform":"common","published":"<T>","revoked":{"at":"<T>","reason":"broken"},"sha256":"<SHA>","size":103277,"summary":"Gren's core modules","version":"7.0.0"}"#,
        );
        sorted::<RevokedPackage>(
            r#"{"name":"gren-lang/url","versions":[{"gren-version":"0.5.0 <= v < 0.6.0","platform":"common","published":"<T>","revoked":{"at":"<T>","reason":"all gone"},"sha256":"<SHA>","size":9219,"summary":"Create and parse URLs.","version":"5.0.0"}]}"#,
        );
        sorted::<PrivacyAnswer>(r#"{"name":"gren-lang/url","private":true}"#);
    }

    #[test]
    fn event_pages_keep_their_bytes_and_so_their_etags() {
        sorted::<EventPage>(
            r#"{"events":[{"at":"<T>","package":"gren-lang/core","seq":1,"sha256":"<SHA>","type":"publish","version":"6.0.1"}],"next":1}"#,
        );
        sorted::<EventPage>(
            r#"{"events":[{"at":"<T>","package":"gren-lang/url","seq":7,"type":"private"}],"head":7,"next":7}"#,
        );
        sorted::<Health>(r#"{"status":"ok","version":"0.1.0"}"#);
    }

    #[test]
    fn error_answers_keep_their_bytes_with_their_details() {
        sorted::<ErrorBody>(r#"{"error":"unauthorized","message":"Log in."}"#);
        sorted::<ErrorBody>(
            r#"{"error":"invalid_version","field":"version","message":"\"7.0.x\" is not a version (X.Y.Z)."}"#,
        );
        sorted::<ErrorBody>(
            r#"{"error":"revoked","message":"gren-lang/core 6.0.1 was revoked: broken","reason":"broken"}"#,
        );
    }

    #[test]
    fn request_bodies_are_the_json_the_handlers_read() {
        in_field_order::<LoginRequest>(r#"{"email":"me@example.com"}"#);
        in_field_order::<SessionFetchRequest>(r#"{"emailConfirmationCode":"123456","fetchSessionToken":"a.b"}"#);
        in_field_order::<SessionFetchRequest>(r#"{"fetchSessionToken":"a.b"}"#);
        in_field_order::<IdentityRequest>(r#"{"name":"blaix"}"#);
        in_field_order::<IdentityRequest>(r#"{"name":"blaix","session":"grs_abc"}"#);
        in_field_order::<MemberRequest>(r#"{"role":"publish"}"#);
        in_field_order::<RevokeRequest>(r#"{"reason":"broken"}"#);
        in_field_order::<PrivacyRequest>(r#"{"private":true}"#);
        in_field_order::<Empty>("{}");
    }
}
