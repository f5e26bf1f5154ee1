//! Who is asking: nobody, or a signed-in user with their session, as the
//! request's bearer token says. The router makes one [`Caller`] per request
//! and hands it to the handler; the token is looked up at most once, when a
//! handler first asks, so it is checked at the same point of each handler
//! as ever: a path that names nothing is still `404` before a bad token is
//! `401`, and routes that never ask (`/events`, `/health`) never touch a
//! session. A bundle upload's caller was authenticated from its head,
//! before the body was read, and comes already resolved.

use crate::http::{ApiError, ApiResult};
use gren_registry_core::auth::session::{self, Authenticated};
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

    /// The signed-in user; `401` without a valid token.
    pub fn user(&self) -> ApiResult<Authenticated> {
        self.resolve(self.token)
    }

    /// Like [`Caller::user`], with `fallback` as the token when the request
    /// has no bearer token (the upstream Gren registry sends it in a body).
    pub fn user_or_token(&self, fallback: Option<&str>) -> ApiResult<Authenticated> {
        self.resolve(self.token.or(fallback))
    }

    /// The signed-in user when the request has a token (`401` when it is
    /// bad), `None` for an anonymous request.
    pub fn optional(&self) -> ApiResult<Option<Authenticated>> {
        match (self.token, self.resolved.get()) {
            (Some(_), _) => self.user().map(Some),
            // Admitted already, or signed in by a token from the body.
            (None, Some(Ok(user))) => Ok(Some(user.clone())),
            (None, _) => Ok(None),
        }
    }

    fn resolve(&self, token: Option<&str>) -> ApiResult<Authenticated> {
        if let Some(resolved) = self.resolved.get() {
            return again(resolved);
        }
        let result = session::authenticate(self.store, token).map_err(ApiError::from);
        let _ = self.resolved.set(again(&result));
        result
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
    use gren_registry_core::auth::session::NewSession;
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
        assert_eq!(answer(caller.optional().unwrap_err()), answer(first.replay()));
        assert!(
            session::authenticate(&store, Some(&token))
                .unwrap_err()
                .to_string()
                .contains("unknown")
        );
    }

    #[test]
    fn an_anonymous_caller_is_none_where_optional_and_401_where_required() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let caller = Caller::new(&store, None);
        assert!(caller.optional().unwrap().is_none());
        assert_eq!(caller.user().unwrap_err().status, 401);
        let token = session(&store, Duration::from_secs(60));
        let signed_in = Caller::new(&store, None).user_or_token(Some(&token)).unwrap();
        assert_eq!(signed_in.email.as_str(), "me@example.com");
        let admitted = Caller::signed_in(&store, signed_in);
        assert_eq!(admitted.optional().unwrap().unwrap().email.as_str(), "me@example.com");
    }
}
