//! `/user/tokens`: a signed-in person creates, lists and revokes their
//! automation tokens ([`gren_registry_core::auth::token`]). Only a session
//! may: a token can never mint or revoke tokens (`Caller::user`).

use crate::app::App;
use crate::http::errors::ApiResult;
use crate::http::{Caller, Request, Response};
use crate::mail::plain_message;
use gren_registry_core::api::{SortedKeys, TokenCreated, TokenList, TokenRequest};
use gren_registry_core::auth::email::Email;
use gren_registry_core::auth::token::{self, NewToken, TokenView};

/// `POST /user/tokens` → 201 with the secret, shown this once; the owner
/// is told by e-mail.
pub fn create(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    let caller = caller.user()?;
    let body: TokenRequest = request.json()?;
    let new = NewToken {
        email: &caller.email,
        name: &body.name,
        scopes: &body.scopes,
        lifetime_days: body.expires_in_days,
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

/// Tells the owner a token was created, so that one made with a stolen
/// session does not go unnoticed. Best effort: the token exists either way.
fn tell_owner(app: &App, email: &Email, view: &TokenView) {
    let scopes: Vec<String> = view.scopes.iter().map(ToString::to_string).collect();
    let text = format!(
        "An automation token named \"{name}\" (id {id}) was created for your Gren registry account.\n\n\
         Scopes: {scopes}. It expires on {expires}.\n\n\
         If you did not create it, revoke it with `gren-registry token revoke {id}`, and log out the \
         sessions you do not know (GET /user/sessions).\n",
        name = view.name,
        id = view.id,
        scopes = scopes.join(", "),
        expires = view.expires,
    );
    let message = plain_message(email.as_str(), "Gren: a new automation token".to_string(), text);
    if let Err(err) = app.mailer.send(&message) {
        log::warn!("token e-mail not sent: {err}");
    }
}
