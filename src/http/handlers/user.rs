//! `GET /user`, `GET /user/sessions`, `DELETE /user/sessions/<id>`.

use crate::app::App;
use crate::auth::{session, user};
use crate::error::ErrorCode;
use crate::http::errors::{ApiError, ApiResult};
use crate::http::{Request, Response};
use crate::identity;
use serde_json::json;

pub fn get(app: &App, request: &Request) -> ApiResult<Response> {
    let caller = session::authenticate(&app.store, request.bearer_token())?;
    let record = user::load(&app.store, &caller.email)?;
    let sessions = session::list(&app.store, &caller.email, &caller.token_hash)?;
    let identities: Vec<_> = identity::memberships(&app.store, &caller.email)?
        .into_iter()
        .map(|(name, role)| json!({ "name": name, "role": role }))
        .collect();
    Ok(Response::json(
        200,
        &json!({
            "email": caller.email,
            "created": record.map(|user| user.created),
            "sessions": sessions,
            "identities": identities,
        }),
    ))
}

pub fn sessions(app: &App, request: &Request) -> ApiResult<Response> {
    let caller = session::authenticate(&app.store, request.bearer_token())?;
    let sessions = session::list(&app.store, &caller.email, &caller.token_hash)?;
    Ok(Response::json(200, &json!({ "sessions": sessions })))
}

pub fn revoke_session(app: &App, request: &Request, id: &str) -> ApiResult<Response> {
    let caller = session::authenticate(&app.store, request.bearer_token())?;
    if session::revoke_by_id(&app.store, &caller.email, id)? {
        Ok(Response::no_content())
    } else {
        Err(ApiError::not_found(
            ErrorCode::SessionNotFound,
            format!("You have no session with id {id:?}."),
        ))
    }
}
