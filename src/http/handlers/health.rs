use crate::app::App;
use crate::error::ApiResult;
use crate::http::{Caller, Request, Response};
use serde_json::json;

pub fn get(_app: &App, _request: &Request, _caller: &Caller) -> ApiResult<Response> {
    Ok(Response::json(
        200,
        &json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }),
    ))
}
