//! Invitations as their invitee sees them: `GET /user/invitations`, and
//! `POST` (accept) / `DELETE` (decline) `/publishing-identity/<name>/invitation`.

use super::identity::parse_name;
use crate::app::App;
use crate::http::errors::ApiResult;
use crate::http::{Caller, Request, Response};
use gren_registry_core::api::{InvitationList, SortedKeys};
use gren_registry_core::identity::invitation;

pub fn list(app: &App, _request: &Request, caller: &Caller) -> ApiResult<Response> {
    let caller = caller.user()?;
    let invitations = app.invitations.received(&app.store, &caller.email)?;
    Ok(Response::json(200, &SortedKeys(InvitationList { invitations })))
}

/// Accepts: the caller becomes a member with the invited role.
pub fn accept(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    let caller = caller.user()?;
    let name = parse_name(request.param("name"))?;
    let member = invitation::accept(&app.store, &name, &caller.email)?;
    Ok(Response::json(200, &member))
}

pub fn decline(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    let caller = caller.user()?;
    let name = parse_name(request.param("name"))?;
    invitation::decline(&app.store, &name, &caller.email)?;
    Ok(Response::no_content())
}
