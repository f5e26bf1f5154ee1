//! Invitations as their invitee sees them: `GET /user/invitations`, and
//! `POST` (accept) / `DELETE` (decline) `/publishing-identity/<name>/invitation`.

use super::identity::parse_name;
use crate::app::App;
use crate::auth::session;
use crate::http::errors::ApiResult;
use crate::http::{Request, Response};
use crate::identity::invitation;
use serde_json::json;

pub fn list(app: &App, request: &Request) -> ApiResult<Response> {
    let caller = session::authenticate(&app.store, request.bearer_token())?;
    let invitations = app.invitations.received(&app.store, &caller.email)?;
    Ok(Response::json(200, &json!({ "invitations": invitations })))
}

/// Accepts: the caller becomes a member with the invited role.
pub fn accept(app: &App, request: &Request, name: &str) -> ApiResult<Response> {
    let caller = session::authenticate(&app.store, request.bearer_token())?;
    let name = parse_name(name)?;
    let member = invitation::accept(&app.store, &name, &caller.email)?;
    Ok(Response::json(200, &member))
}

pub fn decline(app: &App, request: &Request, name: &str) -> ApiResult<Response> {
    let caller = session::authenticate(&app.store, request.bearer_token())?;
    let name = parse_name(name)?;
    invitation::decline(&app.store, &name, &caller.email)?;
    Ok(Response::no_content())
}
