//! Who is asking: nobody, or a signed-in user with their session or with
//! an automation token, as the request's bearer token says. An automation
//! token is let in only where a handler asks for it by name
//! ([`Caller::publisher`], [`Caller::reader`], [`Caller::git_fetcher`]);
//! everywhere else
//! ([`Caller::user`]) it is refused with `403 session_required`, so a route added later is closed to tokens unless its
//! author opens it. The router makes one [`Caller`] per request
//! and hands it to the handler; the token is looked up at most once, when a
//! handler first asks, so it is checked at the same point of each handler
//! as ever: a path that names nothing is still `404` before a bad token is
//! `401`, and routes that never ask (`/events`, `/health`) never touch a
//! session. A bundle upload's caller was authenticated from its head,
//! before the body was read, and comes already resolved.

use crate::http::{ApiError, ApiResult};
use gren_registry_core::auth::session::Authenticated;
use gren_registry_core::auth::token::TokenError;
use gren_registry_core::store::Store;
use std::cell::OnceCell;

pub struct Caller<'r> {
    store: &'r Store,
    token: Option<&'r str>,
    resolved: OnceCell<ApiResult<Authenticated>>,
}

impl<'r> Caller<'r> {
    /// The caller the bearer token `token` names, not looked up yet.
    pub fn new(store: &'r Store, token: Option<&'r str>) -> Caller<'r> {
        Caller {
            store,
            token,
            resolved: OnceCell::new(),
        }
    }

    /// A caller authenticated already (an upload, from its head).
    pub fn signed_in(store: &'r Store, user: Authenticated) -> Caller<'r> {
        Caller {
            store,
            token: None,
            resolved: OnceCell::from(Ok(user)),
        }
    }

    /// The user signed in with a session; `401` without a valid token,
    /// `403` for an automation token.
    pub fn user(&self) -> ApiResult<Authenticated> {
        self.resolve(self.token).and_then(session_only)
    }

    /// Like [`Caller::user`], with `fallback` as the token when the request
    /// has no bearer token (the upstream Gren registry sends it in a body).
    pub fn user_or_token(&self, fallback: Option<&str>) -> ApiResult<Authenticated> {
        self.resolve(self.token.or(fallback)).and_then(session_only)
    }

    /// The signed-in user, by session or by automation token (whose scopes
    /// the domain then checks): for publishing and revoking.
    pub fn publisher(&self) -> ApiResult<Authenticated> {
        self.resolve(self.token)
    }

    /// The signed-in user, by session or by automation token: for minting
    /// a git token, which fetches with the same rights (`POST
    /// /user/git-token`).
    pub fn git_fetcher(&self) -> ApiResult<Authenticated> {
        self.resolve(self.token)
    }

    /// The signed-in user when the request has a token (`401` when it is
    /// bad), `None` for an anonymous request; an automation token is let
    /// in: for reads, where its `download` scopes say what private packages
    /// it sees.
    pub fn reader(&self) -> ApiResult<Option<Authenticated>> {
        match (self.token, self.resolved.get()) {
            (Some(_), _) => self.publisher().map(Some),
            // Admitted already, or signed in by a token from the body.
            (None, Some(Ok(user))) => Ok(Some(user.clone())),
            (None, _) => Ok(None),
        }
    }

    fn resolve(&self, token: Option<&str>) -> ApiResult<Authenticated> {
        if let Some(resolved) = self.resolved.get() {
            return again(resolved);
        }
        let result = gren_registry_core::auth::authenticate(self.store, token).map_err(ApiError::from);
        let _ = self.resolved.set(again(&result));
        result
    }
}

/// Refuses an automation token where only a person's session will do.
fn session_only(user: Authenticated) -> ApiResult<Authenticated> {
    match user.token {
        Some(_) => Err(TokenError::SessionRequired.into()),
        None => Ok(user),
    }
}

/// An answer to give again: the same user, or the same refusal (its cause,
/// if any, goes to the log with the first).
fn again(resolved: &ApiResult<Authenticated>) -> ApiResult<Authenticated> {
    match resolved {
        Ok(user) => Ok(user.clone()),
        Err(refusal) => Err(refusal.replay()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gren_registry_core::auth::email::Email;
    use gren_registry_core::auth::session::{self, NewSession};
    use gren_registry_core::auth::token::{self, NewToken};
    use std::time::Duration;

    fn session(store: &Store, lifetime: Duration) -> String {
        let email = Email::parse("me@example.com").unwrap();
        let new = NewSession {
            email: &email,
            lifetime,
            user_agent: None,
            ip: None,
        };
        session::create(store, new).unwrap()
    }

    #[test]
    fn a_token_is_looked_up_once_however_often_the_caller_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // An expired session is removed by its first look-up: a second
        // look-up would call the token unknown instead.
        let token = session(&store, Duration::ZERO);
        let caller = Caller::new(&store, Some(&token));
        let first = caller.user().unwrap_err();
        assert!(first.message.contains("expired"), "{first}");
        let answer = |error: ApiError| (error.status, error.code, error.message);
        assert_eq!(answer(caller.user().unwrap_err()), answer(first.replay()));
        assert_eq!(answer(caller.reader().unwrap_err()), answer(first.replay()));
        assert!(
            session::authenticate(&store, Some(&token))
                .unwrap_err()
                .to_string()
                .contains("unknown")
        );
    }

    #[test]
    fn an_anonymous_caller_is_none_to_a_reader_and_401_where_required() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let caller = Caller::new(&store, None);
        assert!(caller.reader().unwrap().is_none());
        assert_eq!(caller.user().unwrap_err().status, 401);
        let token = session(&store, Duration::from_secs(60));
        let signed_in = Caller::new(&store, None).user_or_token(Some(&token)).unwrap();
        assert_eq!(signed_in.email.as_str(), "me@example.com");
        let admitted = Caller::signed_in(&store, signed_in);
        assert_eq!(admitted.reader().unwrap().unwrap().email.as_str(), "me@example.com");
    }

    #[test]
    fn an_automation_token_is_let_in_only_where_a_handler_asks_for_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let email = Email::parse("me@example.com").unwrap();
        let scopes = ["publish:team/*".to_string()];
        let new = NewToken {
            email: &email,
            name: "ci",
            scopes: &scopes,
            lifetime_days: 1,
            member_of: &["team".to_string()],
        };
        let (secret, _) = token::create(&store, new).unwrap();
        let caller = Caller::new(&store, Some(&secret));
        assert_eq!(caller.publisher().unwrap().token.unwrap().name, "ci");
        assert!(caller.reader().unwrap().unwrap().token.is_some());
        for refused in [caller.user(), caller.user_or_token(None)] {
            let refused = refused.unwrap_err();
            assert_eq!((refused.status, refused.code.as_str()), (403, "session_required"));
        }
    }
}
