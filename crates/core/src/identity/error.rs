//! Why a change to an identity, its members or its invitations was refused.
//! Each message is the sentence the person is shown.

use super::Role;
use super::name::MAX_LENGTH;
use crate::auth::email::Email;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "{input:?} is not a valid identity name: use letters, digits and single dashes between them, at most {MAX_LENGTH} characters."
    )]
    InvalidName { input: String },
    #[error("{input:?} is not a role; use download, publish or admin.")]
    InvalidRole { input: String },
    #[error("There is no publishing identity named {name}.")]
    NotFound { name: String },
    /// `existing` is the taken name as spelled at its creation.
    #[error("The name {name} is taken (by the identity {existing}); names are unique regardless of case.")]
    NameTaken { name: String, existing: String },
    #[error("The name {name} is reserved.")]
    NameReserved { name: String },
    /// `original` says what the name looks like: `the identity gren-lang`,
    /// `the reserved name admin`.
    #[error(
        "The name {name} looks like {original} (case, I, l and 1, O and 0, g, q and 9, digits read as letters, \
         rn and m, vv and w, and dashes are easily mistaken, and a long reserved name also covers names one \
         letter away); choose a name that is clearly different."
    )]
    Confusable { name: String, original: String },
    #[error("This needs the {} role in {identity}; you have {}.", .needed.as_str(), .held.as_str())]
    RoleTooLow { identity: String, needed: Role, held: Role },
    #[error("You are not a member of {identity}.")]
    NotAMember { identity: String },
    #[error("This would leave {identity} without an admin; make someone else admin first.")]
    LastAdmin { identity: String },
    #[error("{email} is neither a member of {identity} nor invited.")]
    MemberNotFound { identity: String, email: Email },
    #[error(
        "{identity} already has {max} pending invitations; cancel some, or wait until they are accepted, declined or expire."
    )]
    TooManyInvitations { identity: String, max: usize },
    #[error(
        "There is no pending invitation to {identity} for you (it may have expired, been cancelled or been answered)."
    )]
    NotInvited { identity: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}
