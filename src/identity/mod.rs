//! Publishing identities: the author half of a package name (`gren-lang` in
//! `gren-lang/core`), and the users who may act for it.
//!
//! On disk: `identities/<lower-case name>/identity.json` holds the identity
//! and its members; `identities/<name>/audit/<seq>.json` its audit log. The
//! identity record is the source of truth; each user record keeps an index
//! of its memberships for `GET /user`, which is only trusted after checking
//! it against the identity (see [`memberships`]).

pub mod audit;
pub mod name;

use crate::auth::email::Email;
use crate::auth::user;
use crate::error::{ApiError, ApiResult};
use crate::store::{RecordPath, Store};
use crate::time::Timestamp;
pub use audit::{Action, AuditEntry};
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
    pub fn parse(text: &str) -> ApiResult<Role> {
        serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|_| {
            ApiError::bad_request(
                "invalid_role",
                format!("{text:?} is not a role; use download, publish or admin."),
            )
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
    /// Number of audit entries committed (see [`audit`]).
    #[serde(default)]
    pub audit_seq: u64,
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

fn identity_path(name: &IdentityName) -> RecordPath {
    RecordPath::new(["identities", name.key(), "identity.json"]).expect("identity names are safe file names")
}

pub fn load(store: &Store, name: &IdentityName) -> ApiResult<Option<Identity>> {
    Ok(store.read_json(&identity_path(name))?)
}

/// Loads an identity or answers 404 `identity_not_found`.
pub fn require(store: &Store, name: &IdentityName) -> ApiResult<Identity> {
    load(store, name)?.ok_or_else(|| not_found(name))
}

fn not_found(name: &IdentityName) -> ApiError {
    ApiError::not_found(
        "identity_not_found",
        format!("There is no publishing identity named {name}."),
    )
}

/// Creates an identity whose first admin is `admin`. Reserved names are only
/// refused for users, never for operators.
pub fn create(
    store: &Store,
    name: &IdentityName,
    admin: &Email,
    actor: &Actor,
    reserved: &[String],
) -> ApiResult<Identity> {
    if matches!(actor, Actor::User(_)) && reserved.iter().any(|word| word.eq_ignore_ascii_case(name.as_str())) {
        return Err(ApiError::conflict(
            "name_reserved",
            format!("The name {name} is reserved."),
        ));
    }
    let path = identity_path(name);
    let _guard = store.lock(&path);
    if let Some(existing) = store.read_json::<Identity>(&path)? {
        return Err(ApiError::conflict(
            "name_taken",
            format!(
                "The name {name} is taken (by the identity {}); names are unique regardless of case.",
                existing.name
            ),
        ));
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
        audit_seq: 0,
    };
    index_membership(store, admin, name, true)?;
    audit::commit(
        store,
        name,
        &mut identity,
        actor,
        Action::Created { admin: admin.clone() },
    )?;
    Ok(identity)
}

/// What [`set_member`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChange {
    Added,
    RoleChanged,
    Unchanged,
}

/// Sets a member's role, adding them (and their user record) if needed. The
/// caller must hold `admin`.
pub fn set_member(
    store: &Store,
    name: &IdentityName,
    actor: &Actor,
    email: &Email,
    role: Role,
) -> ApiResult<(Member, MemberChange)> {
    let path = identity_path(name);
    let _guard = store.lock(&path);
    let mut identity = require(store, name)?;
    require_role(&identity, actor, Role::Admin)?;
    let position = identity.members.iter().position(|member| &member.email == email);
    let action = match position {
        Some(index) => {
            let from = identity.members[index].role;
            if from == role {
                return Ok((identity.members[index].clone(), MemberChange::Unchanged));
            }
            if from == Role::Admin && identity.admin_count() == 1 {
                return Err(last_admin(name));
            }
            identity.members[index].role = role;
            Action::RoleChanged {
                member: email.clone(),
                from,
                to: role,
            }
        }
        None => {
            // Before the identity: the index may say too much, never too little.
            index_membership(store, email, name, true)?;
            identity.members.push(Member {
                email: email.clone(),
                role,
                added: Timestamp::now(),
            });
            Action::MemberAdded {
                member: email.clone(),
                role,
            }
        }
    };
    audit::commit(store, name, &mut identity, actor, action)?;
    let member = identity.members.iter().find(|member| &member.email == email).cloned();
    let change = if position.is_none() {
        MemberChange::Added
    } else {
        MemberChange::RoleChanged
    };
    Ok((member.expect("the member was just set"), change))
}

/// Removes a member: admins may remove anyone, members themselves.
pub fn remove_member(store: &Store, name: &IdentityName, actor: &Actor, email: &Email) -> ApiResult<()> {
    let path = identity_path(name);
    let _guard = store.lock(&path);
    let mut identity = require(store, name)?;
    let removing_self = matches!(actor, Actor::User(caller) if caller == email);
    if !removing_self {
        require_role(&identity, actor, Role::Admin)?;
    } else if identity.role_of(email).is_none() {
        // A stranger naming themself learns nothing beyond a 403.
        return Err(ApiError::forbidden(format!(
            "You are not a member of {}.",
            identity.name
        )));
    }
    let role = identity.role_of(email).ok_or_else(|| {
        ApiError::not_found(
            "member_not_found",
            format!("{email} is not a member of {}.", identity.name),
        )
    })?;
    if role == Role::Admin && identity.admin_count() == 1 {
        return Err(last_admin(name));
    }
    identity.members.retain(|member| &member.email != email);
    audit::commit(
        store,
        name,
        &mut identity,
        actor,
        Action::MemberRemoved {
            member: email.clone(),
            role,
        },
    )?;
    // After the identity: the index may say too much, never too little.
    index_membership(store, email, name, false)?;
    Ok(())
}

/// Appends an entry to an identity's audit log (publishes, revocations,
/// package settings: changes made elsewhere that the identity answers for).
pub fn record_action(store: &Store, name: &IdentityName, actor: &Actor, action: Action) -> ApiResult<()> {
    let _guard = store.lock(&identity_path(name));
    let mut identity = require(store, name)?;
    audit::commit(store, name, &mut identity, actor, action)
}

/// Refuses with 403 unless `actor` holds at least `needed` (operators hold all).
pub fn require_role(identity: &Identity, actor: &Actor, needed: Role) -> ApiResult<()> {
    let Actor::User(email) = actor else { return Ok(()) };
    match identity.role_of(email) {
        Some(role) if role >= needed => Ok(()),
        Some(role) => Err(ApiError::forbidden(format!(
            "This needs the {} role in {}; you have {}.",
            needed.as_str(),
            identity.name,
            role.as_str()
        ))),
        None => Err(ApiError::forbidden(format!(
            "You are not a member of {}.",
            identity.name
        ))),
    }
}

fn last_admin(name: &IdentityName) -> ApiError {
    ApiError::conflict(
        "last_admin",
        format!("This would leave {name} without an admin; make someone else admin first."),
    )
}

/// Records (or forgets) a membership in the user's index, creating the user
/// record for people who never logged in.
fn index_membership(store: &Store, email: &Email, name: &IdentityName, member: bool) -> ApiResult<()> {
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
pub fn memberships(store: &Store, email: &Email) -> ApiResult<Vec<(String, Role)>> {
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
        assert_eq!(Role::parse("owner").unwrap_err().code, "invalid_role");
    }

    #[test]
    fn names_are_unique_regardless_of_case_and_keep_their_spelling() {
        let (_dir, store) = setup();
        let name = IdentityName::parse("Gren-Lang").unwrap();
        create(&store, &name, &email("a@example.com"), &user("a@example.com"), &[]).unwrap();
        let other = IdentityName::parse("gren-lang").unwrap();
        let err = create(&store, &other, &email("b@example.com"), &user("b@example.com"), &[]).unwrap_err();
        assert_eq!(err.code, "name_taken");
        assert_eq!(require(&store, &other).unwrap().name, "Gren-Lang");
    }

    #[test]
    fn reserved_names_are_for_operators_only() {
        let (_dir, store) = setup();
        let name = IdentityName::parse("Admin").unwrap();
        let reserved = vec!["admin".to_string()];
        assert_eq!(
            create(
                &store,
                &name,
                &email("a@example.com"),
                &user("a@example.com"),
                &reserved
            )
            .unwrap_err()
            .code,
            "name_reserved"
        );
        create(&store, &name, &email("a@example.com"), &Actor::Operator, &reserved).unwrap();
    }

    #[test]
    fn the_last_admin_stays() {
        let (_dir, store) = setup();
        let name = IdentityName::parse("team").unwrap();
        let admin = user("a@example.com");
        create(&store, &name, &email("a@example.com"), &admin, &[]).unwrap();
        assert_eq!(
            set_member(&store, &name, &admin, &email("a@example.com"), Role::Publish)
                .unwrap_err()
                .code,
            "last_admin"
        );
        assert_eq!(
            remove_member(&store, &name, &admin, &email("a@example.com"))
                .unwrap_err()
                .code,
            "last_admin"
        );
        set_member(&store, &name, &admin, &email("b@example.com"), Role::Admin).unwrap();
        remove_member(&store, &name, &admin, &email("a@example.com")).unwrap();
        assert_eq!(memberships(&store, &email("a@example.com")).unwrap(), vec![]);
        assert_eq!(
            memberships(&store, &email("b@example.com")).unwrap(),
            vec![("team".to_string(), Role::Admin)]
        );
    }

    #[test]
    fn only_admins_manage_members_but_anyone_may_leave() {
        let (_dir, store) = setup();
        let name = IdentityName::parse("team").unwrap();
        let admin = user("a@example.com");
        create(&store, &name, &email("a@example.com"), &admin, &[]).unwrap();
        set_member(&store, &name, &admin, &email("p@example.com"), Role::Publish).unwrap();
        let publisher = user("p@example.com");
        assert_eq!(
            set_member(&store, &name, &publisher, &email("x@example.com"), Role::Download)
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(
            remove_member(&store, &name, &user("x@example.com"), &email("x@example.com"))
                .unwrap_err()
                .status,
            403
        );
        remove_member(&store, &name, &publisher, &email("p@example.com")).unwrap();
        let entries = audit::read(&store, &name, &require(&store, &name).unwrap()).unwrap();
        let actions: Vec<&str> = entries.iter().map(|entry| entry.action.kind()).collect();
        assert_eq!(actions, ["created", "member_added", "member_removed"]);
    }
}
