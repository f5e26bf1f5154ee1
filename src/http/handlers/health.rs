use crate::http::Response;
use serde_json::json;

pub fn get() -> Response {
    Response::json(200, &json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}
