use crate::app::App;
use crate::http::ApiResult;
use crate::http::{Caller, Request, Response};
use gren_registry_core::api::{Health, SortedKeys};

pub fn get(_app: &App, _request: &Request, _caller: &Caller) -> ApiResult<Response> {
    Ok(Response::json(
        200,
        &SortedKeys(Health {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }),
    ))
}
