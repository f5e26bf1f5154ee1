//! Automation tokens: named, scoped, expiring credentials a person mints for
//! a machine (CI), so that it never holds their session.
//!
//! A token may only publish or revoke packages its scopes name
//! (`publish:gren-lang/*`, `revoke:gren-lang/core`) and download the private
//! packages of identities its scopes name (`download:gren-lang`), and never
//! more than its owner may at the moment of use: every request checks the
//! owner's current role as a session would. It can never manage members,
//! identities, privacy, sessions or tokens (the HTTP layer's `Caller` keeps
//! it out of every route but publish, revoke and reads).
//!
//! On disk, as sessions are: `tokens/<sha256 of token>.json` is the record
//! ([`TokenRecord`]: id, name, owner, scopes, created, expires, last used);
//! the owner's user record lists the hash (`tokens`) and is the authority.
//! Creation writes the user's list first, then the record (a crash leaves a
//! listed hash with no record: harmless, pruned later); revocation removes
//! the record, then the hash, under the user's lock (a crash cannot leave a
//! revoked token working). The secret exists in clear only in the answer to
//! its creation.

use super::AuthError;
use super::email::Email;
use super::secret;
use super::session::Authenticated;
use super::user;
use crate::identity::IdentityName;
use crate::package::PackageName;
use crate::package::name::is_valid_project;
use crate::store::{Store, StoreError, layout};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The longest life a token may be given: a year.
pub const MAX_LIFETIME_DAYS: u64 = 365;
/// Live tokens per user: bounds the user record and what a listing reads.
pub const MAX_TOKENS_PER_USER: usize = 50;
const MAX_SCOPES: usize = 32;
const MAX_NAME_CHARS: usize = 64;
const TOKEN_ID_LENGTH: usize = 16;
/// `last_used` is refreshed at most this often once set, so reads stay reads.
const LAST_USED_GRANULARITY: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// What a scope allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeAction {
    Publish,
    Revoke,
    Download,
}

impl ScopeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeAction::Publish => "publish",
            ScopeAction::Revoke => "revoke",
            ScopeAction::Download => "download",
        }
    }
}

/// The packages a `publish` or `revoke` scope covers: one identity's, all of
/// them (`gren-lang/*`), those whose project starts with a prefix
/// (`gren-lang/test-*`) or one (`gren-lang/core`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackagePattern {
    identity: IdentityName,
    /// The project, or the start of it when `prefix`.
    project: String,
    prefix: bool,
}

impl PackagePattern {
    fn parse(text: &str) -> Option<PackagePattern> {
        let (author, project) = text.split_once('/')?;
        let identity = IdentityName::parse(author).ok()?;
        let (project, prefix) = match project.strip_suffix('*') {
            Some(start) => (start, true),
            None => (project, false),
        };
        let valid = if prefix {
            // A prefix may end where a project's dash would be (`test-*`),
            // but no project has two dashes in a row: `test--*` matches none.
            project.is_empty() || is_valid_project(project.strip_suffix('-').unwrap_or(project))
        } else {
            is_valid_project(project)
        };
        valid.then(|| PackagePattern {
            identity,
            project: project.to_string(),
            prefix,
        })
    }

    pub fn matches(&self, name: &PackageName) -> bool {
        let same_identity = name.author.eq_ignore_ascii_case(self.identity.as_str());
        same_identity
            && if self.prefix {
                name.project.starts_with(&self.project)
            } else {
                name.project == self.project
            }
    }
}

impl fmt::Display for PackagePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let star = if self.prefix { "*" } else { "" };
        write!(f, "{}/{}{star}", self.identity.as_str(), self.project)
    }
}

/// One thing a token may do, written `publish:<pattern>`,
/// `revoke:<pattern>` or `download:<identity>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Publish(PackagePattern),
    Revoke(PackagePattern),
    /// Download (and see) the identity's private packages.
    Download(IdentityName),
}

impl Scope {
    pub fn parse(text: &str) -> Result<Scope, TokenError> {
        let invalid = || TokenError::InvalidScope {
            input: text.chars().take(300).collect(),
        };
        let (action, target) = text.split_once(':').ok_or_else(invalid)?;
        match action {
            "publish" => PackagePattern::parse(target).map(Scope::Publish),
            "revoke" => PackagePattern::parse(target).map(Scope::Revoke),
            "download" => IdentityName::parse(target).ok().map(Scope::Download),
            _ => None,
        }
        .ok_or_else(invalid)
    }

    /// The identity whose packages the scope covers.
    pub fn identity(&self) -> &IdentityName {
        match self {
            Scope::Publish(pattern) | Scope::Revoke(pattern) => &pattern.identity,
            Scope::Download(identity) => identity,
        }
    }

    fn action(&self) -> ScopeAction {
        match self {
            Scope::Publish(_) => ScopeAction::Publish,
            Scope::Revoke(_) => ScopeAction::Revoke,
            Scope::Download(_) => ScopeAction::Download,
        }
    }

    /// Whether this scope allows `action` on `package`.
    fn allows(&self, action: ScopeAction, package: &PackageName) -> bool {
        match self {
            Scope::Publish(pattern) | Scope::Revoke(pattern) => self.action() == action && pattern.matches(package),
            Scope::Download(identity) => {
                action == ScopeAction::Download && package.author.eq_ignore_ascii_case(identity.as_str())
            }
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Publish(pattern) | Scope::Revoke(pattern) => write!(f, "{}:{pattern}", self.action().as_str()),
            Scope::Download(identity) => write!(f, "download:{}", identity.as_str()),
        }
    }
}

crate::serde_text::serde_as_text!(Scope, |text| Scope::parse(text).ok(), "token scope");

/// How the audit log and the events name a token: never by its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRef {
    pub id: String,
    pub name: String,
}

/// The token a request was made with: who it names and what it may do.
#[derive(Debug, Clone)]
pub struct ScopedToken {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl ScopedToken {
    pub fn reference(&self) -> TokenRef {
        TokenRef {
            id: self.id.clone(),
            name: self.name.clone(),
        }
    }

    pub fn allows(&self, action: ScopeAction, package: &PackageName) -> bool {
        self.scopes.iter().any(|scope| scope.allows(action, package))
    }

    /// Refuses `action` on `package` unless a scope allows it, naming the
    /// scope that would.
    pub fn require(&self, action: ScopeAction, package: &PackageName) -> Result<(), TokenError> {
        if self.allows(action, package) {
            return Ok(());
        }
        let needed = match action {
            ScopeAction::Download => format!("download:{}", package.author),
            _ => format!("{}:{package}", action.as_str()),
        };
        Err(TokenError::MissingScope {
            token: self.name.clone(),
            scope: needed,
        })
    }

    /// The identity keys whose private packages this token may download.
    pub fn download_identities(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().filter_map(|scope| match scope {
            Scope::Download(identity) => Some(identity.key()),
            _ => None,
        })
    }
}

/// `tokens/<hash>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub email: Email,
    pub scopes: Vec<Scope>,
    pub created: Timestamp,
    pub expires: Timestamp,
    /// `None` until the token is first used.
    #[serde(default)]
    pub last_used: Option<Timestamp>,
}

/// What `GET /user/tokens` shows of a token: never the secret or its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created: Timestamp,
    pub expires: Timestamp,
    pub last_used: Option<Timestamp>,
}

impl From<TokenRecord> for TokenView {
    fn from(record: TokenRecord) -> TokenView {
        TokenView {
            id: record.id,
            name: record.name,
            scopes: record.scopes,
            created: record.created,
            expires: record.expires,
            last_used: record.last_used,
        }
    }
}

/// Why a token could not be created, found or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "A token's name is 1 to {MAX_NAME_CHARS} characters, none of them control or invisible formatting \
         characters (such as U+202E, which turns text around, or U+200B, a zero-width space)."
    )]
    InvalidName,
    /// `input` as given (shortened).
    #[error(
        "{input:?} is not a token scope; use publish:<identity>/<project or *>, revoke:<identity>/<project or *> \
         or download:<identity>."
    )]
    InvalidScope { input: String },
    #[error("A token needs 1 to {MAX_SCOPES} scopes.")]
    ScopeCount,
    /// A scope names an identity its owner is not a member of (or one that
    /// does not exist: the same answer).
    #[error(
        "You are not a member of {identity}, so a token of yours cannot act for it; scopes name your own identities."
    )]
    NotAMember { identity: String },
    #[error("A token expires in 1 to {MAX_LIFETIME_DAYS} days; {days} is not allowed.")]
    InvalidLifetime { days: u64 },
    #[error("You already have a token named {name:?}; choose another name or revoke that one.")]
    NameTaken { name: String },
    #[error("You already have {MAX_TOKENS_PER_USER} tokens; revoke some first.")]
    TooMany,
    #[error("You have no token with id {id:?}.")]
    NotFound { id: String },
    /// A token used outside its scopes: `scope` is the one it lacks.
    #[error("The token {token:?} does not have the scope {scope}.")]
    MissingScope { token: String, scope: String },
    /// Anything but publishing, revoking and reading.
    #[error(
        "An automation token cannot manage members, identities, privacy, sessions or tokens; \
         log in with `gren-registry login` for that."
    )]
    SessionRequired,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a person asks for when creating a token.
pub struct NewToken<'a> {
    pub email: &'a Email,
    pub name: &'a str,
    pub scopes: &'a [String],
    pub lifetime_days: u64,
    /// The identities the owner is a member of, with any role (as
    /// `identity::memberships` finds them): a scope may name no other.
    pub member_of: &'a [String],
}

/// Creates a token; returns its secret (the only time it exists in clear)
/// and what listings show of it.
pub fn create(store: &Store, new: NewToken) -> Result<(String, TokenView), TokenError> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || crate::text::check(name).is_err() {
        return Err(TokenError::InvalidName);
    }
    if new.scopes.is_empty() || new.scopes.len() > MAX_SCOPES {
        return Err(TokenError::ScopeCount);
    }
    let mut scopes = new
        .scopes
        .iter()
        .map(|text| Scope::parse(text.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    // The first of each, in the order given: a repeat adds nothing.
    let mut seen = Vec::new();
    scopes.retain(|scope| {
        let first = !seen.contains(scope);
        seen.push(scope.clone());
        first
    });
    // A scope for an identity its owner is not in could never be used, and
    // would sit in listings looking like a right; one for an identity that
    // does not exist gets the same answer, so strangers learn nothing.
    if let Some(foreign) = scopes.iter().map(Scope::identity).find(|identity| {
        !new.member_of
            .iter()
            .any(|member| member.eq_ignore_ascii_case(identity.as_str()))
    }) {
        return Err(TokenError::NotAMember {
            identity: foreign.as_str().to_string(),
        });
    }
    if !(1..=MAX_LIFETIME_DAYS).contains(&new.lifetime_days) {
        return Err(TokenError::InvalidLifetime {
            days: new.lifetime_days,
        });
    }
    let token = secret::new_automation_token();
    let hash = secret::sha256_hex(token.as_bytes());
    let now = Timestamp::now();
    let record = TokenRecord {
        id: token_id(&hash).to_string(),
        name: name.to_string(),
        email: new.email.clone(),
        scopes,
        created: now,
        expires: now.plus(DAY * new.lifetime_days as u32),
        last_used: None,
    };
    // The user's list first: after a crash in between, it names a token
    // that does not exist (pruned later), never the other way round.
    user::update(store, new.email, |user| {
        let live = prune_dead(store, &mut user.tokens)?;
        if live.iter().any(|other| other.name == record.name) {
            return Err(TokenError::NameTaken {
                name: record.name.clone(),
            });
        }
        if live.len() >= MAX_TOKENS_PER_USER {
            return Err(TokenError::TooMany);
        }
        user.tokens.push(hash.clone());
        Ok(())
    })?;
    store.write_json(&layout::automation_token(&hash)?, &record)?;
    Ok((token, record.into()))
}

/// The public id of a token: the start of its hash (an operator finds its
/// record with `ls tokens/<id>*`).
/// Whether `text` has the shape of a token id ([`TokenView::id`]): what
/// a client checks before asking to revoke one.
pub fn is_token_id(text: &str) -> bool {
    text.len() == TOKEN_ID_LENGTH && secret::is_lower_hex(text)
}

fn token_id(hash: &str) -> &str {
    &hash[..TOKEN_ID_LENGTH]
}

/// Resolves an automation token to its owner and scopes. Refuses one its
/// owner does not list (revoked, or planted) as unknown, and an expired one
/// as expired (kept, so that it keeps saying so until revoked or replaced).
pub fn authenticate(store: &Store, token: &str) -> Result<Authenticated, AuthError> {
    if !secret::is_automation_token(token) {
        return Err(AuthError::NotARegistryToken);
    }
    authenticate_hash(store, secret::sha256_hex(token.as_bytes()))
}

/// [`authenticate`] by the hash of the token: a git token's record names
/// the automation token it was made from so ([`super::git_token`]).
pub(super) fn authenticate_hash(store: &Store, hash: String) -> Result<Authenticated, AuthError> {
    let path = layout::automation_token(&hash)?;
    let names = ("token", hash.as_str(), token_id(&hash));
    let record: TokenRecord = super::listed_record(
        store,
        &path,
        names,
        |record: &TokenRecord| &record.email,
        |user| &user.tokens,
        || AuthError::UnknownAutomationToken,
    )?;
    if record.expires.has_passed() {
        return Err(AuthError::TokenExpired { name: record.name });
    }
    let stale = record
        .last_used
        .is_none_or(|used| used.elapsed() >= LAST_USED_GRANULARITY);
    // Best-effort, as for sessions: a read must work on a full disk.
    let mark = |record: &mut TokenRecord| record.last_used = Some(Timestamp::now());
    if stale && let Err(err) = super::touch(store, &path, mark) {
        log::warn!(
            "token {} used without refreshing its last use: {}",
            record.id,
            crate::error::Chain(&err)
        );
    }
    Ok(Authenticated {
        email: record.email,
        token_hash: hash,
        token: Some(ScopedToken {
            id: record.id,
            name: record.name,
            scopes: record.scopes,
        }),
    })
}

/// The user's tokens (expired ones too, until replaced), oldest first.
pub fn list(store: &Store, email: &Email) -> Result<Vec<TokenView>, StoreError> {
    let Some(user) = user::load(store, email)? else {
        return Ok(Vec::new());
    };
    let mut views = Vec::new();
    for hash in &user.tokens {
        if let Some(record) = store.read_json::<TokenRecord>(&layout::automation_token(hash)?)? {
            views.push(TokenView::from(record));
        }
    }
    views.sort_by_key(|view| view.created);
    Ok(views)
}

/// Revokes the user's token whose id is `id`: its record goes first, so a
/// crash cannot leave it working.
pub fn revoke(store: &Store, email: &Email, id: &str) -> Result<(), TokenError> {
    user::update(store, email, |user| {
        let Some(index) = user.tokens.iter().position(|hash| token_id(hash) == id) else {
            return Err(TokenError::NotFound {
                id: id.chars().take(64).collect(),
            });
        };
        let path = layout::automation_token(&user.tokens[index])?;
        let _guard = store.lock(&path);
        store.remove(&path)?;
        user.tokens.remove(index);
        Ok(())
    })
}

/// Revokes every token of the user (an operator stopping a person's
/// machines), each record before the list, as [`revoke`] does; returns
/// how many records there were.
pub fn revoke_all(store: &Store, email: &Email) -> Result<usize, StoreError> {
    if user::load(store, email)?.is_none_or(|user| user.tokens.is_empty()) {
        // Nothing to revoke: no user record is written (or created).
        return Ok(0);
    }
    user::update(store, email, |user| {
        let mut revoked = 0;
        for hash in &user.tokens {
            let path = layout::automation_token(hash)?;
            let _guard = store.lock(&path);
            if store.remove(&path)? {
                revoked += 1;
            }
        }
        user.tokens.clear();
        Ok(revoked)
    })
}

/// Drops expired or missing tokens from a user's list (deleting their
/// records) and returns the live ones.
fn prune_dead(store: &Store, hashes: &mut Vec<String>) -> Result<Vec<TokenRecord>, StoreError> {
    let mut live = Vec::with_capacity(hashes.len());
    let mut kept = Vec::with_capacity(hashes.len());
    for hash in hashes.drain(..) {
        let path = layout::automation_token(&hash)?;
        match store.read_json::<TokenRecord>(&path)? {
            Some(record) if !record.expires.has_passed() => {
                live.push(record);
                kept.push(hash);
            }
            Some(_) => {
                let _guard = store.lock(&path);
                store.remove(&path)?;
            }
            None => {}
        }
    }
    *hashes = kept;
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn package(text: &str) -> PackageName {
        PackageName::parse(text).unwrap()
    }

    fn token_with(scopes: &[&str]) -> ScopedToken {
        ScopedToken {
            id: "0123456789abcdef".into(),
            name: "ci".into(),
            scopes: scopes.iter().map(|text| Scope::parse(text).unwrap()).collect(),
        }
    }

    fn mint(store: &Store, email: &Email, name: &str, days: u64) -> Result<(String, TokenView), TokenError> {
        let scopes = ["publish:team/*".to_string()];
        let new = NewToken {
            email,
            name,
            scopes: &scopes,
            lifetime_days: days,
            member_of: &["team".to_string()],
        };
        create(store, new)
    }

    #[test]
    fn scopes_read_and_write_as_text_and_refuse_anything_else() {
        for text in [
            "publish:gren-lang/*",
            "revoke:gren-lang/core",
            "publish:Team/test-*",
            "publish:team/core*",
            "download:gren-lang",
        ] {
            assert_eq!(Scope::parse(text).unwrap().to_string(), text);
        }
        for bad in [
            "",
            "publish",
            "admin:gren-lang/*",
            "publish:gren-lang",
            "publish:gren-lang/Core",
            "publish:*/core",
            "publish:gren-lang/co*re",
            "download:gren-lang/core",
            "download:../x",
            "publish:../x/*",
            // No project has two dashes in a row: this would match nothing.
            "publish:team/test--*",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_scope_allows_only_its_action_on_the_packages_it_names() {
        let token = token_with(&[
            "publish:Team/*",
            "revoke:team/core",
            "download:other",
            "publish:x/test-*",
        ]);
        assert!(token.allows(ScopeAction::Publish, &package("team/anything")));
        assert!(token.allows(ScopeAction::Publish, &package("TEAM/core")));
        assert!(!token.allows(ScopeAction::Revoke, &package("team/anything")));
        assert!(token.allows(ScopeAction::Revoke, &package("team/core")));
        assert!(!token.allows(ScopeAction::Revoke, &package("team/core-extra")));
        assert!(!token.allows(ScopeAction::Publish, &package("teams/core")));
        assert!(token.allows(ScopeAction::Download, &package("other/secret")));
        assert!(!token.allows(ScopeAction::Download, &package("team/core")));
        assert!(token.allows(ScopeAction::Publish, &package("x/test-runner")));
        assert!(!token.allows(ScopeAction::Publish, &package("x/tested")));
        let refused = token.require(ScopeAction::Revoke, &package("team/url")).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "The token \"ci\" does not have the scope revoke:team/url."
        );
        assert_eq!(token.download_identities().collect::<Vec<_>>(), ["other"]);
    }

    #[test]
    fn a_created_token_authenticates_with_its_scopes_until_revoked() {
        let (_dir, store) = store();
        let email = Email::parse("me@example.com").unwrap();
        let (secret, view) = mint(&store, &email, "ci", 30).unwrap();
        assert!(secret.starts_with("gren_token_"));
        let found = authenticate(&store, &secret).unwrap();
        assert_eq!(found.email, email);
        let scoped = found.token.unwrap();
        assert_eq!((scoped.id.as_str(), scoped.name.as_str()), (view.id.as_str(), "ci"));
        // Stored under its hash, which its owner lists; the secret itself
        // is nowhere on disk (tests/integration/tokens.rs reads every file).
        assert_eq!(found.token_hash, secret::sha256_hex(secret.as_bytes()));
        let record = layout::automation_token(&found.token_hash).unwrap();
        assert!(store.full_path(&record).is_file());
        let user = crate::auth::user::load(&store, &email).unwrap().unwrap();
        assert_eq!(user.tokens, [found.token_hash.clone()]);
        let listed = list(&store, &email).unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].last_used.is_some(), "the use was noted");
        revoke(&store, &email, &view.id).unwrap();
        assert!(matches!(
            authenticate(&store, &secret),
            Err(AuthError::UnknownAutomationToken)
        ));
        assert!(matches!(
            revoke(&store, &email, &view.id),
            Err(TokenError::NotFound { .. })
        ));
    }

    #[test]
    fn revoking_all_of_a_users_tokens_stops_each_and_creates_no_user() {
        let (_dir, store) = store();
        let email = Email::parse("me@example.com").unwrap();
        let (first, _) = mint(&store, &email, "ci", 30).unwrap();
        let (second, _) = mint(&store, &email, "nightly", 30).unwrap();
        assert_eq!(revoke_all(&store, &email).unwrap(), 2);
        for secret in [&first, &second] {
            assert!(matches!(
                authenticate(&store, secret),
                Err(AuthError::UnknownAutomationToken)
            ));
        }
        assert!(list(&store, &email).unwrap().is_empty());
        assert_eq!(revoke_all(&store, &email).unwrap(), 0);
        let nobody = Email::parse("nobody@example.com").unwrap();
        assert_eq!(revoke_all(&store, &nobody).unwrap(), 0);
        assert!(crate::auth::user::load(&store, &nobody).unwrap().is_none());
    }

    #[test]
    fn a_scope_given_twice_is_kept_once_in_the_order_given() {
        let (_dir, store) = store();
        let email = Email::parse("me@example.com").unwrap();
        let scopes = ["publish:team/a", "download:team", "publish:team/a", "download:team"].map(String::from);
        let new = NewToken {
            email: &email,
            name: "ci",
            scopes: &scopes,
            lifetime_days: 30,
            member_of: &["team".to_string()],
        };
        let (_, view) = create(&store, new).unwrap();
        let texts: Vec<String> = view.scopes.iter().map(ToString::to_string).collect();
        assert_eq!(texts, ["publish:team/a", "download:team"]);
        // The id it shows has the shape clients check before a revocation.
        assert!(is_token_id(&view.id), "{}", view.id);
        assert!(!is_token_id(&view.id.to_ascii_uppercase()));
        assert!(!is_token_id(&view.id[1..]));
    }

    #[test]
    fn names_lifetimes_and_counts_are_bounded() {
        let (_dir, store) = store();
        let email = Email::parse("me@example.com").unwrap();
        assert!(matches!(mint(&store, &email, "", 30), Err(TokenError::InvalidName)));
        assert!(matches!(mint(&store, &email, "a\nb", 30), Err(TokenError::InvalidName)));
        for hidden in ["ci\u{202e}gnp.exe", "ci\u{200b}", "\u{feff}ci", "c\u{ad}i"] {
            assert!(
                matches!(mint(&store, &email, hidden, 30), Err(TokenError::InvalidName)),
                "{hidden:?}"
            );
        }
        assert!(matches!(
            mint(&store, &email, "ci", 0),
            Err(TokenError::InvalidLifetime { .. })
        ));
        assert!(matches!(
            mint(&store, &email, "ci", 366),
            Err(TokenError::InvalidLifetime { .. })
        ));
        mint(&store, &email, "ci", 365).unwrap();
        assert!(matches!(
            mint(&store, &email, "ci", 1),
            Err(TokenError::NameTaken { .. })
        ));
        for n in 1..MAX_TOKENS_PER_USER {
            mint(&store, &email, &format!("ci-{n}"), 1).unwrap();
        }
        assert!(matches!(mint(&store, &email, "one-more", 1), Err(TokenError::TooMany)));
    }

    #[test]
    fn an_expired_token_is_refused_as_expired_and_a_planted_one_as_unknown() {
        let (_dir, store) = store();
        let email = Email::parse("me@example.com").unwrap();
        let (secret, _) = mint(&store, &email, "ci", 1).unwrap();
        let path = layout::automation_token(&secret::sha256_hex(secret.as_bytes())).unwrap();
        let mut record: TokenRecord = store.read_json(&path).unwrap().unwrap();
        record.expires = serde_json::from_str("\"2001-01-01T00:00:00.000Z\"").unwrap();
        store.write_json(&path, &record).unwrap();
        assert!(matches!(
            authenticate(&store, &secret),
            Err(AuthError::TokenExpired { .. })
        ));
        let planted = secret::new_automation_token();
        let planted_path = layout::automation_token(&secret::sha256_hex(planted.as_bytes())).unwrap();
        record.expires = Timestamp::latest();
        store.write_json(&planted_path, &record).unwrap();
        assert!(matches!(
            authenticate(&store, &planted),
            Err(AuthError::UnknownAutomationToken)
        ));
        assert!(matches!(
            authenticate(&store, "gren_token_../../x"),
            Err(AuthError::NotARegistryToken)
        ));
    }
}
