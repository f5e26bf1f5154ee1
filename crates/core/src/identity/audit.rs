//! The audit log of an identity's member changes:
//! `identities/<name>/audit/<seq>.json`, one entry per change, numbered from
//! 1. Changes to its packages are audited in their records, and the log an
//! admin sees merges both ([`crate::package::audit_log`]); format-1
//! directories also hold such entries here, which [`read`] skips.
//!
//! An entry is written before the identity record that counts it
//! (`audit_seq`); the identity record is the commit point. After a crash
//! between the two, the uncounted entry is ignored and overwritten by the
//! next change, so the log never shows a change that did not happen.

use super::{Actor, Identity, IdentityName, Role};
use crate::auth::email::Email;
use crate::auth::token::TokenRef;
use crate::store::{Store, StoreError, layout};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Created {
        admin: Email,
    },
    MemberAdded {
        member: Email,
        role: Role,
    },
    RoleChanged {
        member: Email,
        from: Role,
        to: Role,
    },
    MemberRemoved {
        member: Email,
        role: Role,
    },
    /// An admin invited someone (or changed the role an invitation offers).
    Invited {
        member: Email,
        role: Role,
    },
    /// An admin withdrew an invitation.
    InvitationCancelled {
        member: Email,
        role: Role,
    },
    /// The invitee turned it down.
    InvitationDeclined {
        member: Email,
        role: Role,
    },
    Published {
        package: String,
        version: String,
    },
    Revoked {
        package: String,
        version: String,
        reason: String,
    },
    PrivacyChanged {
        package: String,
        private: bool,
    },
    /// The identity was shown to be the GitHub owner with this id.
    #[serde(rename = "github_linked")]
    GitHubLinked {
        owner_id: u64,
    },
    /// The link to that GitHub owner was removed.
    #[serde(rename = "github_unlinked")]
    GitHubUnlinked {
        owner_id: u64,
    },
}

impl Action {
    /// The package a publish, revocation or privacy change is about.
    pub fn package(&self) -> Option<&str> {
        match self {
            Action::Published { package, .. }
            | Action::Revoked { package, .. }
            | Action::PrivacyChanged { package, .. } => Some(package),
            _ => None,
        }
    }

    /// Whether `self` and `other` record the same change: the same kind,
    /// about the same package and version (a revocation's reason aside).
    pub fn same_change(&self, other: &Action) -> bool {
        self.kind() == other.kind() && self.package() == other.package() && self.version() == other.version()
    }

    /// The version a publish or revocation is about.
    pub fn version(&self) -> Option<&str> {
        match self {
            Action::Published { version, .. } | Action::Revoked { version, .. } => Some(version),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Action::Created { .. } => "created",
            Action::MemberAdded { .. } => "member_added",
            Action::RoleChanged { .. } => "role_changed",
            Action::MemberRemoved { .. } => "member_removed",
            Action::Invited { .. } => "invited",
            Action::InvitationCancelled { .. } => "invitation_cancelled",
            Action::InvitationDeclined { .. } => "invitation_declined",
            Action::Published { .. } => "published",
            Action::Revoked { .. } => "revoked",
            Action::PrivacyChanged { .. } => "privacy_changed",
            Action::GitHubLinked { .. } => "github_linked",
            Action::GitHubUnlinked { .. } => "github_unlinked",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: Timestamp,
    pub actor: String,
    /// The automation token the actor used (by id and name, never its
    /// secret); absent for a session's or an operator's change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenRef>,
    #[serde(flatten)]
    pub action: Action,
}

/// Writes `identity` together with a new audit entry describing the change.
/// The caller holds the identity's lock.
pub fn commit(
    store: &Store,
    name: &IdentityName,
    identity: &mut Identity,
    actor: &Actor,
    action: Action,
) -> Result<(), StoreError> {
    let entry = AuditEntry {
        seq: identity.audit_seq + 1,
        at: Timestamp::now(),
        actor: actor.label(),
        // Member changes need a session: no token ever makes one.
        token: None,
        action,
    };
    store.write_json(&layout::audit_entry(name, entry.seq), &entry)?;
    identity.audit_seq = entry.seq;
    store.write_json(&layout::identity(name), identity)?;
    Ok(())
}

/// The committed member changes, oldest first (entries about packages,
/// which format 1 wrote here, are in the package records).
pub fn read(store: &Store, name: &IdentityName, identity: &Identity) -> Result<Vec<AuditEntry>, StoreError> {
    let mut entries = read_all(store, name, identity)?;
    entries.retain(|entry| entry.action.package().is_none());
    Ok(entries)
}

/// Every committed entry in the identity's files, oldest first.
pub fn read_all(store: &Store, name: &IdentityName, identity: &Identity) -> Result<Vec<AuditEntry>, StoreError> {
    let mut entries = Vec::with_capacity(identity.audit_seq as usize);
    for seq in 1..=identity.audit_seq {
        if let Some(entry) = store.read_json(&layout::audit_entry(name, seq))? {
            entries.push(entry);
        }
    }
    Ok(entries)
}
