use crate::api::{Health, SortedKeys};
use crate::app::App;
use crate::http::ApiResult;
use crate::http::{Caller, Request, Response};

pub fn get(_app: &App, _request: &Request, _caller: &Caller) -> ApiResult<Response> {
    Ok(Response::json(
        200,
        &SortedKeys(Health {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }),
    ))
}
