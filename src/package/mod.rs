//! Packages and their versions.

use crate::error::ApiResult;
use crate::identity::IdentityName;
use crate::store::Store;

/// The packages of an identity as shown on its page: all of them for
/// members, public ones for everyone else.
pub fn listing_for_identity(_store: &Store, _name: &IdentityName, _member: bool) -> ApiResult<Vec<serde_json::Value>> {
    Ok(Vec::new())
}
