//! Invitations: how a person joins an identity. An admin's request to add
//! someone who is not a member records an invitation in the identity record
//! (`invitations` in `identity.json`: `email`, `role`, `invited_by`,
//! `invited`, `expires`); the person, logged in as that address, accepts it
//! (and becomes a member with that role) or declines it. So nobody is made a
//! member, least of all the sole admin of a stranger's identity, without
//! their consent.
//!
//! Invitations create no user record: an address that never logs in leaves
//! nothing behind but its entry in the identity, and an identity holds at
//! most a bounded number of pending invitations. They expire after
//! [`LIFETIME`]; expired ones are never shown or accepted, and are dropped
//! from the record by its next change.
//!
//! Commit order: as every identity change, an audit entry and then the
//! identity record (see [`super::audit`]); accepting also writes the
//! invitee's membership index first (it may say too much, never too little).

use super::{Action, Actor, Identity, IdentityName, Member, MemberChange, Role, audit};
use crate::auth::email::Email;
use crate::error::{ApiError, ApiResult};
use crate::store::Store;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long an invitation may be accepted.
pub const LIFETIME: Duration = Duration::from_secs(14 * 24 * 60 * 60);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub email: Email,
    pub role: Role,
    /// Who invited: an admin's address.
    pub invited_by: String,
    pub invited: Timestamp,
    pub expires: Timestamp,
}

impl Invitation {
    pub fn is_pending(&self) -> bool {
        !self.expires.has_passed()
    }
}

/// Invites `email` (not a member) with `role`, or changes the role a pending
/// invitation offers. The caller holds the identity's lock and checked that
/// the actor is an admin.
pub(super) fn invite(
    store: &Store,
    name: &IdentityName,
    identity: &mut Identity,
    actor: &Actor,
    email: &Email,
    role: Role,
    max_pending: usize,
) -> ApiResult<MemberChange> {
    let existing = identity
        .invitations
        .iter()
        .position(|invitation| &invitation.email == email);
    match existing {
        Some(index) if identity.invitations[index].role == role => {
            return Ok(MemberChange::AlreadyInvited(identity.invitations[index].clone()));
        }
        Some(index) => {
            identity.invitations.remove(index);
        }
        None if identity.invitations.len() >= max_pending => return Err(too_many(identity, max_pending)),
        None => {}
    }
    let now = Timestamp::now();
    let invitation = Invitation {
        email: email.clone(),
        role,
        invited_by: actor.label(),
        invited: now,
        expires: now.plus(LIFETIME),
    };
    identity.invitations.push(invitation.clone());
    let action = Action::Invited {
        member: email.clone(),
        role,
    };
    audit::commit(store, name, identity, actor, action)?;
    Ok(MemberChange::Invited(invitation))
}

fn too_many(identity: &Identity, max_pending: usize) -> ApiError {
    ApiError::conflict(
        "too_many_invitations",
        format!(
            "{} already has {max_pending} pending invitations; cancel some, or wait until they are accepted, declined or expire.",
            identity.name
        ),
    )
}

/// Removes `email`'s pending invitation: declined when the actor is the
/// invitee, cancelled otherwise. The caller holds the identity's lock.
pub(super) fn withdraw(
    store: &Store,
    name: &IdentityName,
    identity: &mut Identity,
    actor: &Actor,
    email: &Email,
) -> ApiResult<()> {
    let index = identity
        .invitations
        .iter()
        .position(|invitation| &invitation.email == email)
        .ok_or_else(|| not_invited(identity))?;
    let role = identity.invitations.remove(index).role;
    let member = email.clone();
    let action = match actor {
        Actor::User(caller) if caller == email => Action::InvitationDeclined { member, role },
        _ => Action::InvitationCancelled { member, role },
    };
    audit::commit(store, name, identity, actor, action)
}

/// Accepts the caller's pending invitation: they become a member with the
/// role it offers.
pub fn accept(store: &Store, name: &IdentityName, email: &Email) -> ApiResult<Member> {
    let _guard = store.lock(&super::identity_path(name));
    let mut identity = super::require_for_change(store, name)?;
    let role = identity
        .pending_invitation(email)
        .ok_or_else(|| not_invited(&identity))?
        .role;
    super::add_member(store, name, &mut identity, &Actor::User(email.clone()), email, role)
}

/// Declines the caller's pending invitation.
pub fn decline(store: &Store, name: &IdentityName, email: &Email) -> ApiResult<()> {
    let _guard = store.lock(&super::identity_path(name));
    let mut identity = super::require_for_change(store, name)?;
    withdraw(store, name, &mut identity, &Actor::User(email.clone()), email)
}

fn not_invited(identity: &Identity) -> ApiError {
    ApiError::not_found(
        "invitation_not_found",
        format!(
            "There is no pending invitation to {} for you (it may have expired, been cancelled or been answered).",
            identity.name
        ),
    )
}

/// An invitation as its invitee sees it: which identity it is to.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    pub identity: String,
    #[serde(flatten)]
    pub invitation: Invitation,
}

/// Every pending invitation for `email`. Invitations live in the identity
/// records (no user record is made for people who are only invited), so
/// this reads every identity: fine for a registry of thousands of
/// identities and a request people make by hand.
pub fn received(store: &Store, email: &Email) -> ApiResult<Vec<Received>> {
    let mut found = Vec::new();
    for key in store.list_dirs(&super::identities_dir())? {
        let Ok(name) = IdentityName::parse(&key) else { continue };
        // A directory without its record is a creation in progress.
        let Some(identity) = super::load(store, &name)? else {
            continue;
        };
        if let Some(invitation) = identity.pending_invitation(email) {
            found.push(Received {
                identity: identity.name.clone(),
                invitation: invitation.clone(),
            });
        }
    }
    Ok(found)
}
