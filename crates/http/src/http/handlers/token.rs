//! `/user/tokens`: a signed-in person creates, lists and revokes their
//! automation tokens ([`gren_registry_core::auth::token`]). Only a session
//! may: a token can never mint or revoke tokens (`Caller::user`).
//! `/user/git-token`: a session or an automation token mints a git token
//! ([`gren_registry_core::auth::git_token`]), minutes long, for git.

use crate::app::App;
use crate::http::errors::ApiResult;
use crate::http::{Caller, Request, Response};
use crate::mail::plain_message;
use gren_registry_core::api::{GitTokenAnswer, SortedKeys, TokenCreated, TokenList, TokenRequest, client_command};
use gren_registry_core::auth::email::Email;
use gren_registry_core::auth::git_token;
use gren_registry_core::auth::token::{self, NewToken, TokenView};
use gren_registry_core::identity;
use std::time::Duration;

/// `POST /user/tokens` → 201 with the secret, shown this once; the owner
/// is told by e-mail.
pub fn create(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    let caller = caller.user()?;
    let body: TokenRequest = request.json()?;
    let member_of: Vec<String> = identity::memberships(&app.store, &caller.email)?
        .into_iter()
        .map(|(name, _role)| name)
        .collect();
    let new = NewToken {
        email: &caller.email,
        name: &body.name,
        scopes: &body.scopes,
        lifetime_days: body.expires_in_days,
        member_of: &member_of,
    };
    let (secret, view) = token::create(&app.store, new)?;
    tell_owner(app, &caller.email, &view);
    Ok(Response::json(201, &SortedKeys(TokenCreated { token: secret, view })))
}

pub fn list(app: &App, _request: &Request, caller: &Caller) -> ApiResult<Response> {
    let caller = caller.user()?;
    let tokens = token::list(&app.store, &caller.email)?;
    Ok(Response::json(200, &SortedKeys(TokenList { tokens })))
}

/// `DELETE /user/tokens/<id>` → 204; the token stops working at once.
pub fn revoke(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    let caller = caller.user()?;
    token::revoke(&app.store, &caller.email, request.param("id"))?;
    Ok(Response::no_content())
}

/// `POST /user/git-token` → 201: a git token with the caller's rights, for
/// git's fetches only, lasting `GREN_REGISTRY_GIT_TOKEN_SECONDS`. No body
/// is read. (A git token cannot ask: the API does not take it.)
pub fn git_token(app: &App, _request: &Request, caller: &Caller) -> ApiResult<Response> {
    let caller = caller.git_fetcher()?;
    let lifetime = Duration::from_secs(app.config.git_token_secs);
    let (token, expires) = git_token::mint(&app.store, &caller, lifetime)?;
    let answer = GitTokenAnswer {
        token,
        expires,
        expires_in: lifetime.as_secs(),
    };
    Ok(Response::json(201, &SortedKeys(answer)))
}

/// Tells the owner a token was created, so that one made with a stolen
/// session does not go unnoticed. Best effort: the token exists either way.
fn tell_owner(app: &App, email: &Email, view: &TokenView) {
    let scopes: Vec<String> = view.scopes.iter().map(ToString::to_string).collect();
    let text = format!(
        "An automation token named \"{name}\" (id {id}) was created for your Gren registry account.\n\n\
         Scopes: {scopes}. It expires on {expires}.\n\n\
         If you did not create it, revoke it with `{revoke}`, and log out the \
         sessions you do not know (GET /user/sessions).\n",
        name = view.name,
        id = view.id,
        revoke = client_command(&app.public_url, &format!("token revoke {}", view.id)),
        scopes = scopes.join(", "),
        expires = view.expires,
    );
    let message = plain_message(email.as_str(), "Gren: a new automation token".to_string(), text);
    if let Err(err) = app.mailer.send(&message) {
        log::warn!("token e-mail not sent: {err}");
    }
}
