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

use super::{Action, Actor, Identity, IdentityError, IdentityName, Locked, Member, MemberChange, Role};
use crate::auth::email::Email;
use crate::store::{Store, StoreError, layout, lock_ignoring_poison};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
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
/// invitation offers. The caller checked that the actor is an admin.
pub(super) fn invite(
    locked: &mut Locked,
    actor: &Actor,
    email: &Email,
    role: Role,
    max_pending: usize,
) -> Result<MemberChange, IdentityError> {
    let invitations = &mut locked.identity.invitations;
    match invitations.iter().position(|invitation| &invitation.email == email) {
        Some(index) if invitations[index].role == role => {
            return Ok(MemberChange::AlreadyInvited(invitations[index].clone()));
        }
        Some(index) => {
            invitations.remove(index);
        }
        None if invitations.len() >= max_pending => return Err(too_many(&locked.identity, max_pending)),
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
    locked.identity.invitations.push(invitation.clone());
    let action = Action::Invited {
        member: email.clone(),
        role,
    };
    locked.commit(actor, action)?;
    Ok(MemberChange::Invited(invitation))
}

fn too_many(identity: &Identity, max_pending: usize) -> IdentityError {
    IdentityError::TooManyInvitations {
        identity: identity.name.clone(),
        max: max_pending,
    }
}

/// Removes `email`'s pending invitation: declined when the actor is the
/// invitee, cancelled otherwise.
pub(super) fn withdraw(locked: &mut Locked, actor: &Actor, email: &Email) -> Result<(), IdentityError> {
    let index = locked
        .identity
        .invitations
        .iter()
        .position(|invitation| &invitation.email == email)
        .ok_or_else(|| not_invited(&locked.identity))?;
    let role = locked.identity.invitations.remove(index).role;
    let member = email.clone();
    let action = match actor {
        Actor::User(caller) if caller == email => Action::InvitationDeclined { member, role },
        _ => Action::InvitationCancelled { member, role },
    };
    locked.commit(actor, action)
}

/// Accepts the caller's pending invitation: they become a member with the
/// role it offers.
pub fn accept(store: &Store, name: &IdentityName, email: &Email) -> Result<Member, IdentityError> {
    let mut locked = Locked::open(store, name)?;
    let invitation = locked.identity.pending_invitation(email);
    let role = invitation.ok_or_else(|| not_invited(&locked.identity))?.role;
    super::add_member(&mut locked, &Actor::User(email.clone()), email, role)
}

/// Declines the caller's pending invitation.
pub fn decline(store: &Store, name: &IdentityName, email: &Email) -> Result<(), IdentityError> {
    let mut locked = Locked::open(store, name)?;
    withdraw(&mut locked, &Actor::User(email.clone()), email)
}

fn not_invited(identity: &Identity) -> IdentityError {
    IdentityError::NotInvited {
        identity: identity.name.clone(),
    }
}

/// An invitation as its invitee sees it: which identity it is to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Received {
    pub identity: String,
    #[serde(flatten)]
    pub invitation: Invitation,
}

/// Who is invited where: an index for `GET /user/invitations`, so that
/// listing one person's invitations does not read every identity record.
/// Kept in memory only: built from the identity records on first use (they
/// are the truth, and only this process writes them while it runs), then
/// told of each invitation the server makes ([`Index::invited`]). It may
/// name invitations that are gone (accepted, declined, cancelled, expired),
/// never miss one: [`Index::received`] checks every entry against its
/// record and forgets those that are gone.
#[derive(Default)]
pub struct Index(Mutex<Option<HashMap<Email, BTreeSet<String>>>>);

impl Index {
    /// Notes an invitation just committed (before the index is built, the
    /// build will find it in the record).
    pub fn invited(&self, email: &Email, name: &IdentityName) {
        if let Some(index) = lock_ignoring_poison(&self.0).as_mut() {
            index.entry(email.clone()).or_default().insert(name.key().to_string());
        }
    }

    /// Every pending invitation for `email`.
    pub fn received(&self, store: &Store, email: &Email) -> Result<Vec<Received>, StoreError> {
        // Held while reading the records: an invitation committed meanwhile
        // is noted only after this has pruned, so it is never forgotten.
        let mut guard = lock_ignoring_poison(&self.0);
        if guard.is_none() {
            *guard = Some(build(store)?);
        }
        let index = guard.as_mut().expect("just built");
        let Some(keys) = index.get_mut(email) else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for key in keys.clone() {
            match pending_in(store, &key, email)? {
                Some(received) => found.push(received),
                None => {
                    keys.remove(&key);
                }
            }
        }
        if keys.is_empty() {
            index.remove(email);
        }
        Ok(found)
    }
}

/// The index from the records: every pending invitation of every identity.
fn build(store: &Store) -> Result<HashMap<Email, BTreeSet<String>>, StoreError> {
    let mut index: HashMap<Email, BTreeSet<String>> = HashMap::new();
    for key in layout::identity_keys(store)? {
        let Ok(name) = IdentityName::parse(&key) else { continue };
        // A directory without its record is a creation in progress.
        let Some(identity) = super::load(store, &name)? else {
            continue;
        };
        for invitation in identity.pending_invitations() {
            index.entry(invitation.email.clone()).or_default().insert(key.clone());
        }
    }
    Ok(index)
}

/// `email`'s pending invitation to the identity `key`, if there is one.
fn pending_in(store: &Store, key: &str, email: &Email) -> Result<Option<Received>, StoreError> {
    let Ok(name) = IdentityName::parse(key) else {
        return Ok(None);
    };
    let Some(identity) = super::load(store, &name)? else {
        return Ok(None);
    };
    Ok(identity.pending_invitation(email).map(|invitation| Received {
        identity: identity.name.clone(),
        invitation: invitation.clone(),
    }))
}
