use crate::api::{Health, SortedKeys};
use crate::http::Response;

pub fn get() -> Response {
    Response::json(
        200,
        &SortedKeys(Health {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }),
    )
}
