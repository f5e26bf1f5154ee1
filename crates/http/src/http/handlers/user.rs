//! `GET /user`, `GET /user/sessions`, `DELETE /user/sessions/<id>`.

use crate::app::App;
use crate::http::errors::{ApiError, ApiResult};
use crate::http::{Caller, Request, Response};
use gren_registry_core::api::{IdentityRole, SessionList, SortedKeys, UserAnswer};
use gren_registry_core::auth::{session, user};
use gren_registry_core::error::ErrorCode;
use gren_registry_core::identity;

pub fn get(app: &App, _request: &Request, caller: &Caller) -> ApiResult<Response> {
    let caller = caller.user()?;
    let record = user::load(&app.store, &caller.email)?;
    let sessions = session::list(&app.store, &caller.email, &caller.token_hash)?;
    let identities = identity::memberships(&app.store, &caller.email)?
        .into_iter()
        .map(|(name, role)| IdentityRole { name, role })
        .collect();
    Ok(Response::json(
        200,
        &SortedKeys(UserAnswer {
            created: record.map(|user| user.created),
            email: caller.email,
            identities,
            sessions,
        }),
    ))
}

pub fn sessions(app: &App, _request: &Request, caller: &Caller) -> ApiResult<Response> {
    let caller = caller.user()?;
    let sessions = session::list(&app.store, &caller.email, &caller.token_hash)?;
    Ok(Response::json(200, &SortedKeys(SessionList { sessions })))
}

pub fn revoke_session(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    let id = request.param("id");
    let caller = caller.user()?;
    if session::revoke_by_id(&app.store, &caller.email, id)? {
        Ok(Response::no_content())
    } else {
        Err(ApiError::not_found(
            ErrorCode::SessionNotFound,
            format!("You have no session with id {id:?}."),
        ))
    }
}
