//! Publishing identities: the author half of a package name (`gren-lang` in
//! `gren-lang/core`), and the users who may act for it.
//!
//! On disk ([`layout`]): `identities/<lower-case name>/identity.json` holds
//! the identity, its members and its pending invitations (`invitations`,
//! absent from records written before invitations existed: read as none);
//! `identities/<name>/audit/<seq>.json` its audit log. The identity record
//! is the source of truth and each change's commit point (see [`audit`]);
//! each member's user record keeps an index of its memberships for
//! `GET /user`, which is only trusted after checking it against the identity
//! (see [`memberships`]). The index is written before the identity record
//! when someone joins and after it when someone leaves, so it may say too
//! much, never too little; a creation that fails before its commit takes
//! its entry out again, with the identity's directory ([`create`]).
//! Invitations touch no user record: people who were only invited have
//! none until they log in.
//!
//! Nobody becomes a member without consent: an admin's `set_member` for a
//! non-member records an invitation ([`invitation`]), which the invitee
//! accepts or declines. Only operators add members directly.

pub mod audit;
mod error;
pub mod invitation;
pub mod name;

use crate::auth::email::Email;
use crate::auth::user;
use crate::store::{RecordGuard, Store, StoreError, layout};
use crate::time::Timestamp;
pub use audit::{Action, AuditEntry};
pub use error::IdentityError;
pub use invitation::Invitation;
pub use name::IdentityName;
use serde::{Deserialize, Serialize};

/// What a member may do, in increasing order of power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// List and download the identity's private packages.
    Download,
    /// Also publish and revoke versions.
    Publish,
    /// Also manage members and package settings.
    Admin,
}

impl Role {
    /// Every role, weakest first (what the command line offers).
    pub const ALL: [Role; 3] = [Role::Download, Role::Publish, Role::Admin];

    pub fn parse(text: &str) -> Result<Role, IdentityError> {
        serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|_| IdentityError::InvalidRole {
            input: text.to_string(),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Download => "download",
            Role::Publish => "publish",
            Role::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub email: Email,
    pub role: Role,
    pub added: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    /// As spelled at creation.
    pub name: String,
    pub created: Timestamp,
    pub members: Vec<Member>,
    /// Invitations not yet accepted or declined; expired ones are dropped at
    /// the next change and never shown.
    #[serde(default)]
    pub invitations: Vec<Invitation>,
    /// Number of audit entries committed (see [`audit`]).
    #[serde(default)]
    pub audit_seq: u64,
    /// The GitHub account of the same name that this identity is known to
    /// be (absent: not known). Identity names are first come, first
    /// served, GitHub's belong to someone: only a linked identity is
    /// served for `https://github.com/<name>/`, the path `setup-git` sends
    /// the registry (see [`GitHubLink`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<GitHubLink>,
}

/// Proof that an identity is the GitHub owner (user or organization) whose
/// login is the identity's name, case aside. The owner's numeric id is
/// kept, not only the name: a GitHub account that is deleted frees its
/// login for someone else, who gets a new id, so a later proof for the
/// same name with another id does not match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitHubLink {
    pub owner_id: u64,
    pub linked: Timestamp,
}

impl Identity {
    pub fn role_of(&self, email: &Email) -> Option<Role> {
        self.members
            .iter()
            .find(|member| &member.email == email)
            .map(|member| member.role)
    }

    fn admin_count(&self) -> usize {
        self.members.iter().filter(|member| member.role == Role::Admin).count()
    }

    /// The invitations that can still be accepted.
    pub fn pending_invitations(&self) -> impl Iterator<Item = &Invitation> {
        self.invitations.iter().filter(|invitation| invitation.is_pending())
    }

    pub fn pending_invitation(&self, email: &Email) -> Option<&Invitation> {
        self.pending_invitations().find(|invitation| &invitation.email == email)
    }
}

/// Who is acting: a signed-in user, or an operator at the command line.
#[derive(Debug, Clone)]
pub enum Actor {
    User(Email),
    Operator,
}

impl Actor {
    pub fn label(&self) -> String {
        match self {
            Actor::User(email) => email.to_string(),
            Actor::Operator => "operator".into(),
        }
    }
}

pub fn load(store: &Store, name: &IdentityName) -> Result<Option<Identity>, StoreError> {
    store.read_json(&layout::identity(name))
}

/// Loads an identity, refusing one that does not exist.
pub fn require(store: &Store, name: &IdentityName) -> Result<Identity, IdentityError> {
    load(store, name)?.ok_or_else(|| not_found(name))
}

fn not_found(name: &IdentityName) -> IdentityError {
    IdentityError::NotFound { name: name.to_string() }
}

/// Whether [`create`] may make an identity whose name looks like an
/// existing one's (see [`name::skeleton`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookAlikes {
    Refuse,
    /// Operators who know what they are doing (`--allow-confusable`).
    Allow,
}

/// Creates an identity whose first admin is `admin`. Reserved names, and
/// names that look like them, are only refused for users, never for
/// operators; names that look like an existing identity's are refused
/// unless `look_alikes` allows them.
pub fn create(
    store: &Store,
    name: &IdentityName,
    admin: &Email,
    actor: &Actor,
    reserved: &[String],
    look_alikes: LookAlikes,
) -> Result<Identity, IdentityError> {
    if matches!(actor, Actor::User(_)) {
        refuse_reserved(name, reserved)?;
    }
    // One creation at a time: a look-alike is a different record, so the
    // record's own lock cannot keep two look-alikes from being created at once.
    let _creating = store.lock(&layout::identity_creation_lock());
    let path = layout::identity(name);
    let _guard = store.lock(&path);
    if let Some(existing) = store.read_json::<Identity>(&path)? {
        return Err(IdentityError::NameTaken {
            name: name.to_string(),
            existing: existing.name,
        });
    }
    if look_alikes == LookAlikes::Refuse
        && let Some(original) = look_alike_of(store, name)?
    {
        return Err(confusable(name, format!("the identity {original}")));
    }
    let now = Timestamp::now();
    let mut identity = Identity {
        name: name.as_str().to_string(),
        created: now,
        members: vec![Member {
            email: admin.clone(),
            role: Role::Admin,
            added: now,
        }],
        invitations: Vec::new(),
        audit_seq: 0,
        github: None,
    };
    index_membership(store, admin, name, true)?;
    let committed = audit::commit(
        store,
        name,
        &mut identity,
        actor,
        Action::Created { admin: admin.clone() },
    );
    if let Err(err) = committed {
        undo_creation(store, name, admin);
        return Err(err.into());
    }
    Ok(identity)
}

/// After a creation that failed before its commit (`identity.json`): takes
/// the identity out of its admin's index and removes its directory (its
/// audit entry), as if it had never been tried. The caller holds the
/// creation's locks, and nothing else refers to an identity without its
/// record. A failure here is logged: readers check the index against the
/// identity records, and `admin fsck --repair` removes both leftovers.
fn undo_creation(store: &Store, name: &IdentityName, admin: &Email) {
    let undone = index_membership(store, admin, name, false).and_then(|()| {
        let dir = layout::identity_dir(name);
        store.remove_tree(&dir).map(drop)
    });
    if let Err(err) = undone {
        log::error!(
            "cannot undo the failed creation of the identity {name}: {}",
            crate::error::Chain(&err)
        );
    }
}

fn refuse_reserved(name: &IdentityName, reserved: &[String]) -> Result<(), IdentityError> {
    if reserved.iter().any(|word| word.eq_ignore_ascii_case(name.as_str())) {
        return Err(IdentityError::NameReserved { name: name.to_string() });
    }
    match reserved.iter().find(|word| name::imitates_reserved(name, word)) {
        Some(word) => Err(confusable(name, format!("the reserved name {word}"))),
        None => Ok(()),
    }
}

/// The spelling of an existing identity whose name looks like `name`.
fn look_alike_of(store: &Store, name: &IdentityName) -> Result<Option<String>, StoreError> {
    let skeleton = name.skeleton();
    for key in layout::identity_keys(store)? {
        if key == name.key() || name::skeleton(&key) != skeleton {
            continue;
        }
        // A directory without its record is a creation interrupted by a crash.
        if let Ok(other) = IdentityName::parse(&key)
            && let Some(found) = load(store, &other)?
        {
            return Ok(Some(found.name));
        }
    }
    Ok(None)
}

fn confusable(name: &IdentityName, original: String) -> IdentityError {
    IdentityError::Confusable {
        name: name.to_string(),
        original,
    }
}

/// What [`set_member`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// A member's role changed.
    RoleChanged(Member),
    /// The member already had that role: nothing was written.
    Unchanged(Member),
    /// An operator added the person directly.
    Added(Member),
    /// The person was invited, or their pending invitation now offers another role.
    Invited(Invitation),
    /// The person was already invited with that role: nothing was written.
    AlreadyInvited(Invitation),
}

impl MemberChange {
    /// Whether anything was written (and so whether anyone should be told).
    pub fn changed(&self) -> bool {
        !matches!(self, MemberChange::Unchanged(_) | MemberChange::AlreadyInvited(_))
    }
}

/// An identity loaded for a change, its record locked until this is
/// dropped. Expired invitations are forgotten on loading, so the write that
/// commits the change drops them.
struct Locked<'a> {
    store: &'a Store,
    name: &'a IdentityName,
    identity: Identity,
    _guard: RecordGuard<'a>,
}

impl<'a> Locked<'a> {
    fn open(store: &'a Store, name: &'a IdentityName) -> Result<Locked<'a>, IdentityError> {
        let guard = store.lock(&layout::identity(name));
        let mut identity = require(store, name)?;
        identity.invitations.retain(Invitation::is_pending);
        Ok(Locked {
            store,
            name,
            identity,
            _guard: guard,
        })
    }

    /// Writes the audit entry, then the record: the change's commit point.
    fn commit(&mut self, actor: &Actor, action: Action) -> Result<(), IdentityError> {
        Ok(audit::commit(self.store, self.name, &mut self.identity, actor, action)?)
    }
}

/// Sets a member's role. For someone who is not a member, a user's change is
/// an invitation (see [`invitation`]); an operator's adds them directly. The
/// actor must hold `admin`; at most `max_pending` invitations may be pending.
pub fn set_member(
    store: &Store,
    name: &IdentityName,
    actor: &Actor,
    email: &Email,
    role: Role,
    max_pending: usize,
) -> Result<MemberChange, IdentityError> {
    let mut locked = Locked::open(store, name)?;
    require_role(&locked.identity, actor, Role::Admin)?;
    match locked.identity.members.iter().position(|member| &member.email == email) {
        Some(index) => change_role(&mut locked, actor, index, role),
        None if matches!(actor, Actor::Operator) => {
            add_member(&mut locked, actor, email, role).map(MemberChange::Added)
        }
        None => invitation::invite(&mut locked, actor, email, role, max_pending),
    }
}

fn change_role(locked: &mut Locked, actor: &Actor, index: usize, role: Role) -> Result<MemberChange, IdentityError> {
    let from = locked.identity.members[index].role;
    if from == role {
        return Ok(MemberChange::Unchanged(locked.identity.members[index].clone()));
    }
    if from == Role::Admin && locked.identity.admin_count() == 1 {
        return Err(last_admin(locked.name));
    }
    locked.identity.members[index].role = role;
    let member = locked.identity.members[index].clone();
    let action = Action::RoleChanged {
        member: member.email.clone(),
        from,
        to: role,
    };
    locked.commit(actor, action)?;
    Ok(MemberChange::RoleChanged(member))
}

/// Makes `email` a member: an operator's direct addition, or an accepted
/// invitation. A pending invitation of theirs is used up.
fn add_member(locked: &mut Locked, actor: &Actor, email: &Email, role: Role) -> Result<Member, IdentityError> {
    // Before the identity: the index may say too much, never too little.
    index_membership(locked.store, email, locked.name, true)?;
    locked
        .identity
        .invitations
        .retain(|invitation| &invitation.email != email);
    let member = Member {
        email: email.clone(),
        role,
        added: Timestamp::now(),
    };
    locked.identity.members.push(member.clone());
    let action = Action::MemberAdded {
        member: email.clone(),
        role,
    };
    locked.commit(actor, action)?;
    Ok(member)
}

/// Removes a member, or withdraws an invitation. Admins may remove anyone
/// but the last admin, and cancel invitations; everyone may leave (even the
/// last admin: nobody is held in an identity, and an operator can name a new
/// admin) or decline their own invitation.
pub fn remove_member(store: &Store, name: &IdentityName, actor: &Actor, email: &Email) -> Result<(), IdentityError> {
    let mut locked = Locked::open(store, name)?;
    let removing_self = matches!(actor, Actor::User(caller) if caller == email);
    let role = locked.identity.role_of(email);
    let invited = locked.identity.pending_invitation(email).is_some();
    if removing_self {
        return match role {
            Some(role) => drop_member(&mut locked, actor, email, role),
            None if invited => invitation::withdraw(&mut locked, actor, email),
            // A stranger naming themself learns nothing beyond "not a member".
            None => Err(not_a_member(&locked.identity)),
        };
    }
    require_role(&locked.identity, actor, Role::Admin)?;
    match role {
        Some(Role::Admin) if locked.identity.admin_count() == 1 => Err(last_admin(name)),
        Some(role) => drop_member(&mut locked, actor, email, role),
        None if invited => invitation::withdraw(&mut locked, actor, email),
        None => Err(IdentityError::MemberNotFound {
            identity: locked.identity.name.clone(),
            email: email.clone(),
        }),
    }
}

fn drop_member(locked: &mut Locked, actor: &Actor, email: &Email, role: Role) -> Result<(), IdentityError> {
    locked.identity.members.retain(|member| &member.email != email);
    let action = Action::MemberRemoved {
        member: email.clone(),
        role,
    };
    locked.commit(actor, action)?;
    // After the identity: the index may say too much, never too little.
    Ok(index_membership(locked.store, email, locked.name, false)?)
}

/// Links (or, with `None`, unlinks) `name` to the GitHub owner whose login
/// it is ([`GitHubLink`]); `actor` must hold `admin`, and only operators
/// may link today (a user's proof is a GitHub Actions ID token, checked
/// before this is called). Linking again to the same owner changes
/// nothing; `Ok(false)` says nothing was written.
pub fn link_github(
    store: &Store,
    name: &IdentityName,
    actor: &Actor,
    owner_id: Option<u64>,
) -> Result<bool, IdentityError> {
    let mut locked = Locked::open(store, name)?;
    require_role(&locked.identity, actor, Role::Admin)?;
    let linked = locked.identity.github.as_ref().map(|link| link.owner_id);
    if linked == owner_id {
        return Ok(false);
    }
    let action = match (owner_id, linked) {
        (Some(owner_id), _) => Action::GitHubLinked { owner_id },
        (None, Some(owner_id)) => Action::GitHubUnlinked { owner_id },
        (None, None) => return Ok(false),
    };
    locked.identity.github = owner_id.map(|owner_id| GitHubLink {
        owner_id,
        linked: Timestamp::now(),
    });
    locked.commit(actor, action)?;
    Ok(true)
}

/// Refuses unless `actor` holds at least `needed` (operators hold all).
pub fn require_role(identity: &Identity, actor: &Actor, needed: Role) -> Result<(), IdentityError> {
    let Actor::User(email) = actor else { return Ok(()) };
    match identity.role_of(email) {
        Some(role) if role >= needed => Ok(()),
        Some(held) => Err(IdentityError::RoleTooLow {
            identity: identity.name.clone(),
            needed,
            held,
        }),
        None => Err(not_a_member(identity)),
    }
}

fn not_a_member(identity: &Identity) -> IdentityError {
    IdentityError::NotAMember {
        identity: identity.name.clone(),
    }
}

fn last_admin(name: &IdentityName) -> IdentityError {
    IdentityError::LastAdmin {
        identity: name.to_string(),
    }
}

/// Records (or forgets) a membership in the user's index, creating the user
/// record for people who never logged in.
fn index_membership(store: &Store, email: &Email, name: &IdentityName, member: bool) -> Result<(), StoreError> {
    user::update(store, email, |user| {
        user.identities.retain(|key| key != name.key());
        if member {
            user.identities.push(name.key().to_string());
            user.identities.sort();
        }
        Ok(())
    })
}

/// A user's identities and roles, checked against the identity records.
pub fn memberships(store: &Store, email: &Email) -> Result<Vec<(String, Role)>, StoreError> {
    let Some(user) = user::load(store, email)? else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for key in &user.identities {
        let Ok(name) = IdentityName::parse(key) else { continue };
        if let Some(identity) = load(store, &name)?
            && let Some(role) = identity.role_of(email)
        {
            found.push((identity.name, role));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn email(text: &str) -> Email {
        Email::parse(text).unwrap()
    }

    fn user(text: &str) -> Actor {
        Actor::User(email(text))
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Download < Role::Publish && Role::Publish < Role::Admin);
        assert_eq!(Role::parse("publish").unwrap(), Role::Publish);
        assert!(matches!(Role::parse("owner"), Err(IdentityError::InvalidRole { .. })));
    }

    /// Creates `name` as the user `who`, its first admin.
    fn create_by(store: &Store, name: &str, who: &str, reserved: &[String]) -> Result<IdentityName, IdentityError> {
        let name = IdentityName::parse(name).unwrap();
        create(store, &name, &email(who), &user(who), reserved, LookAlikes::Refuse).map(|_| name)
    }

    #[test]
    fn names_are_unique_regardless_of_case_and_keep_their_spelling() {
        let (_dir, store) = setup();
        create_by(&store, "Gren-Lang", "a@example.com", &[]).unwrap();
        let err = create_by(&store, "gren-lang", "b@example.com", &[]).unwrap_err();
        assert!(matches!(err, IdentityError::NameTaken { .. }), "{err:?}");
        let other = IdentityName::parse("gren-lang").unwrap();
        assert_eq!(require(&store, &other).unwrap().name, "Gren-Lang");
    }

    #[test]
    fn reserved_names_and_their_look_alikes_are_for_operators_only() {
        let (_dir, store) = setup();
        let reserved = vec!["admin".to_string()];
        let err = create_by(&store, "Admin", "a@example.com", &reserved).unwrap_err();
        assert!(matches!(err, IdentityError::NameReserved { .. }), "{err:?}");
        let err = create_by(&store, "adm1n", "a@example.com", &reserved).unwrap_err();
        assert!(matches!(err, IdentityError::Confusable { .. }), "{err:?}");
        let name = IdentityName::parse("Admin").unwrap();
        let operator = Actor::Operator;
        create(
            &store,
            &name,
            &email("a@example.com"),
            &operator,
            &reserved,
            LookAlikes::Refuse,
        )
        .unwrap();
    }

    #[test]
    fn look_alikes_of_existing_identities_are_refused_unless_allowed() {
        let (_dir, store) = setup();
        create_by(&store, "gren-lang", "a@example.com", &[]).unwrap();
        let err = create_by(&store, "Gren-1ang", "b@example.com", &[]).unwrap_err();
        assert!(matches!(err, IdentityError::Confusable { .. }), "{err:?}");
        assert!(err.to_string().contains("the identity gren-lang"), "{err}");
        // An interrupted creation (a directory without its record) is no original.
        let blaix = IdentityName::parse("blaix").unwrap();
        std::fs::create_dir_all(store.full_path(&layout::identity(&blaix)).parent().unwrap()).unwrap();
        create_by(&store, "b1aix", "b@example.com", &[]).unwrap();
        let look_alike = IdentityName::parse("Gren-1ang").unwrap();
        create(
            &store,
            &look_alike,
            &email("c@example.com"),
            &Actor::Operator,
            &[],
            LookAlikes::Allow,
        )
        .unwrap();
    }

    const PENDING: usize = 20;

    /// Invites `who` to `team` as `role` and accepts for them.
    fn join(store: &Store, name: &IdentityName, admin: &Actor, who: &str, role: Role) {
        let change = set_member(store, name, admin, &email(who), role, PENDING).unwrap();
        assert!(matches!(change, MemberChange::Invited(_)), "{change:?}");
        invitation::accept(store, name, &email(who)).unwrap();
    }

    #[test]
    fn the_last_admin_is_neither_demoted_nor_removed_by_others_but_may_leave() {
        let (_dir, store) = setup();
        let name = create_by(&store, "team", "a@example.com", &[]).unwrap();
        let admin = user("a@example.com");
        assert!(matches!(
            set_member(&store, &name, &admin, &email("a@example.com"), Role::Publish, PENDING),
            Err(IdentityError::LastAdmin { .. })
        ));
        assert!(matches!(
            remove_member(&store, &name, &Actor::Operator, &email("a@example.com")),
            Err(IdentityError::LastAdmin { .. })
        ));
        join(&store, &name, &admin, "b@example.com", Role::Admin);
        remove_member(&store, &name, &admin, &email("a@example.com")).unwrap();
        assert_eq!(memberships(&store, &email("a@example.com")).unwrap(), vec![]);
        assert_eq!(
            memberships(&store, &email("b@example.com")).unwrap(),
            vec![("team".to_string(), Role::Admin)]
        );
        // Now b is the last admin, and leaves all the same.
        remove_member(&store, &name, &user("b@example.com"), &email("b@example.com")).unwrap();
        assert!(require(&store, &name).unwrap().members.is_empty());
        assert_eq!(memberships(&store, &email("b@example.com")).unwrap(), vec![]);
    }

    #[test]
    fn adding_someone_invites_them_and_only_their_acceptance_makes_them_a_member() {
        let (_dir, store) = setup();
        let name = create_by(&store, "team", "a@example.com", &[]).unwrap();
        let admin = user("a@example.com");
        let change = set_member(&store, &name, &admin, &email("b@example.com"), Role::Publish, PENDING).unwrap();
        let MemberChange::Invited(invited) = change else {
            panic!("{change:?}")
        };
        assert_eq!(
            (invited.role, invited.invited_by.as_str()),
            (Role::Publish, "a@example.com")
        );
        let again = set_member(&store, &name, &admin, &email("b@example.com"), Role::Publish, PENDING).unwrap();
        assert!(!again.changed(), "{again:?}");
        assert_eq!(require(&store, &name).unwrap().role_of(&email("b@example.com")), None);
        assert!(
            user::load(&store, &email("b@example.com")).unwrap().is_none(),
            "an invitation makes no user record"
        );
        let member = invitation::accept(&store, &name, &email("b@example.com")).unwrap();
        assert_eq!(member.role, Role::Publish);
        assert_eq!(
            memberships(&store, &email("b@example.com")).unwrap(),
            vec![("team".to_string(), Role::Publish)]
        );
        set_member(&store, &name, &admin, &email("c@example.com"), Role::Download, PENDING).unwrap();
        invitation::decline(&store, &name, &email("c@example.com")).unwrap();
        assert!(matches!(
            invitation::accept(&store, &name, &email("c@example.com")),
            Err(IdentityError::NotInvited { .. })
        ));
        set_member(&store, &name, &admin, &email("d@example.com"), Role::Download, PENDING).unwrap();
        remove_member(&store, &name, &admin, &email("d@example.com")).unwrap();
        let found = require(&store, &name).unwrap();
        assert!(found.invitations.is_empty(), "{:?}", found.invitations);
        let actions: Vec<&str> = audit::read(&store, &name, &found)
            .unwrap()
            .iter()
            .map(|entry| entry.action.kind())
            .collect();
        assert_eq!(
            actions,
            [
                "created",
                "invited",
                "member_added",
                "invited",
                "invitation_declined",
                "invited",
                "invitation_cancelled"
            ]
        );
    }

    #[test]
    fn operators_add_members_directly() {
        let (_dir, store) = setup();
        let name = create_by(&store, "team", "a@example.com", &[]).unwrap();
        let change = set_member(&store, &name, &Actor::Operator, &email("b@example.com"), Role::Admin, 0).unwrap();
        assert!(matches!(change, MemberChange::Added(_)), "{change:?}");
        assert_eq!(
            memberships(&store, &email("b@example.com")).unwrap(),
            vec![("team".to_string(), Role::Admin)]
        );
    }

    #[test]
    fn pending_invitations_are_bounded_and_expired_ones_neither_count_nor_show() {
        let (_dir, store) = setup();
        let name = create_by(&store, "team", "a@example.com", &[]).unwrap();
        let admin = user("a@example.com");
        for who in ["x@example.com", "y@example.com"] {
            set_member(&store, &name, &admin, &email(who), Role::Download, 2).unwrap();
        }
        let refused = set_member(&store, &name, &admin, &email("z@example.com"), Role::Download, 2).unwrap_err();
        assert!(
            matches!(refused, IdentityError::TooManyInvitations { max: 2, .. }),
            "{refused:?}"
        );
        // Changing the role a pending invitation offers is not a new one.
        set_member(&store, &name, &admin, &email("y@example.com"), Role::Publish, 2).unwrap();

        let mut record = require(&store, &name).unwrap();
        record.invitations[0].expires = serde_json::from_str("\"2001-01-01T00:00:00.000Z\"").unwrap();
        store.write_json(&layout::identity(&name), &record).unwrap();
        let index = invitation::Index::default();
        assert!(index.received(&store, &email("x@example.com")).unwrap().is_empty());
        assert!(matches!(
            invitation::accept(&store, &name, &email("x@example.com")),
            Err(IdentityError::NotInvited { .. })
        ));
        set_member(&store, &name, &admin, &email("z@example.com"), Role::Download, 2).unwrap();
        let emails: Vec<String> = require(&store, &name)
            .unwrap()
            .invitations
            .iter()
            .map(|invitation| invitation.email.to_string())
            .collect();
        assert_eq!(
            emails,
            ["y@example.com", "z@example.com"],
            "the expired one was dropped"
        );
        let received = index.received(&store, &email("y@example.com")).unwrap();
        assert_eq!(received.len(), 1);
        assert_eq!(
            (received[0].identity.as_str(), received[0].invitation.role),
            ("team", Role::Publish)
        );
    }

    #[test]
    fn the_invitation_index_misses_no_invitation_and_forgets_those_that_are_gone() {
        let (_dir, store) = setup();
        let admin = user("a@example.com");
        let invitee = email("b@example.com");
        let invite = |name: &IdentityName| set_member(&store, name, &admin, &invitee, Role::Publish, PENDING).unwrap();
        let team = create_by(&store, "team", "a@example.com", &[]).unwrap();
        let other = create_by(&store, "other", "a@example.com", &[]).unwrap();
        invite(&team);
        let index = invitation::Index::default();
        let identities = |index: &invitation::Index| -> Vec<String> {
            let received = index.received(&store, &invitee).unwrap();
            received.into_iter().map(|received| received.identity).collect()
        };
        assert_eq!(identities(&index), ["team"], "built from the records");
        invite(&other);
        index.invited(&invitee, &other);
        assert_eq!(identities(&index), ["other", "team"]);
        invitation::decline(&store, &team, &invitee).unwrap();
        assert_eq!(identities(&index), ["other"]);
        invitation::accept(&store, &other, &invitee).unwrap();
        assert!(identities(&index).is_empty());
        // Declined, then invited again: noted, and found.
        invite(&team);
        index.invited(&invitee, &team);
        assert_eq!(identities(&index), ["team"]);
    }

    #[test]
    fn records_written_before_invitations_existed_still_load() {
        let (_dir, store) = setup();
        let name = IdentityName::parse("old").unwrap();
        let record = serde_json::json!({
            "name": "old",
            "created": "2025-01-01T00:00:00.000Z",
            "members": [{ "email": "a@example.com", "role": "admin", "added": "2025-01-01T00:00:00.000Z" }],
            "audit_seq": 0
        });
        store.write_json(&layout::identity(&name), &record).unwrap();
        let found = require(&store, &name).unwrap();
        assert!(found.invitations.is_empty());
        set_member(
            &store,
            &name,
            &user("a@example.com"),
            &email("b@example.com"),
            Role::Publish,
            PENDING,
        )
        .unwrap();
        assert_eq!(require(&store, &name).unwrap().invitations.len(), 1);
    }

    #[test]
    fn only_admins_manage_members_but_anyone_may_leave() {
        let (_dir, store) = setup();
        let name = create_by(&store, "team", "a@example.com", &[]).unwrap();
        let admin = user("a@example.com");
        join(&store, &name, &admin, "p@example.com", Role::Publish);
        let publisher = user("p@example.com");
        assert!(matches!(
            set_member(
                &store,
                &name,
                &publisher,
                &email("x@example.com"),
                Role::Download,
                PENDING
            ),
            Err(IdentityError::RoleTooLow { .. })
        ));
        assert!(matches!(
            remove_member(&store, &name, &user("x@example.com"), &email("x@example.com")),
            Err(IdentityError::NotAMember { .. })
        ));
        remove_member(&store, &name, &publisher, &email("p@example.com")).unwrap();
        let entries = audit::read(&store, &name, &require(&store, &name).unwrap()).unwrap();
        let actions: Vec<&str> = entries.iter().map(|entry| entry.action.kind()).collect();
        assert_eq!(actions, ["created", "invited", "member_added", "member_removed"]);
    }

    #[test]
    fn a_github_link_is_an_admins_audited_change_and_linking_again_writes_nothing() {
        let (_dir, store) = setup();
        let name = create_by(&store, "blaix", "a@example.com", &[]).unwrap();
        assert_eq!(require(&store, &name).unwrap().github, None, "not linked at creation");
        join(&store, &name, &user("a@example.com"), "p@example.com", Role::Publish);
        assert!(matches!(
            link_github(&store, &name, &user("p@example.com"), Some(7)),
            Err(IdentityError::RoleTooLow { .. })
        ));
        assert!(link_github(&store, &name, &Actor::Operator, Some(7)).unwrap());
        assert_eq!(require(&store, &name).unwrap().github.unwrap().owner_id, 7);
        assert!(
            !link_github(&store, &name, &Actor::Operator, Some(7)).unwrap(),
            "as it was"
        );
        assert!(
            link_github(&store, &name, &Actor::Operator, Some(8)).unwrap(),
            "another owner id"
        );
        assert!(link_github(&store, &name, &Actor::Operator, None).unwrap());
        assert!(
            !link_github(&store, &name, &Actor::Operator, None).unwrap(),
            "nothing to unlink"
        );
        assert_eq!(require(&store, &name).unwrap().github, None);
        let entries = audit::read(&store, &name, &require(&store, &name).unwrap()).unwrap();
        let actions: Vec<&Action> = entries.iter().map(|entry| &entry.action).skip(3).collect();
        assert_eq!(
            actions,
            [
                &Action::GitHubLinked { owner_id: 7 },
                &Action::GitHubLinked { owner_id: 8 },
                &Action::GitHubUnlinked { owner_id: 8 }
            ]
        );
        let json = serde_json::to_value(&entries[3]).unwrap();
        assert_eq!(
            (json["action"].as_str(), json["owner_id"].as_u64()),
            (Some("github_linked"), Some(7))
        );
    }
}
