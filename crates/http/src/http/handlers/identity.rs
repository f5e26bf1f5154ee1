//! `/publishing-identity`: create, show, manage members and invitations,
//! read the audit log.

use crate::app::App;
use crate::http::errors::{ApiError, ApiResult};
use crate::http::{Caller, Request, Response};
use crate::mail::plain_message;
use gren_registry_core::api::{
    AuditLog, IdentityPage, IdentityRequest, IdentityRole, MemberAnswer, MemberRequest, SortedKeys, client_command,
};
use gren_registry_core::auth::AuthError;
use gren_registry_core::auth::email::Email;
use gren_registry_core::error::ErrorCode;
use gren_registry_core::identity::{self, Actor, IdentityName, LookAlikes, MemberChange, Role};

pub fn create(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    let body: IdentityRequest = match request.json() {
        Ok(body) => body,
        // Who is asking comes first: without a bearer token, the body was
        // the only place a token could be.
        Err(_) if request.bearer_token().is_none() => return Err(AuthError::MissingToken.into()),
        Err(err) => return Err(err),
    };
    let caller = caller.user_or_token(body.session.as_deref())?;
    let name = IdentityName::parse(&body.name)?;
    let actor = Actor::User(caller.email.clone());
    // Only creations count against the limit, not refused names.
    let created = app.identities_per_user.counting(
        caller.email.as_str(),
        || {
            identity::create(
                &app.store,
                &name,
                &caller.email,
                &actor,
                &app.config.reserved_identities,
                LookAlikes::Refuse,
            )
            .map_err(ApiError::from)
        },
        |_| true,
    )?;
    Ok(Response::json(
        200,
        &SortedKeys(IdentityRole {
            name: created.name,
            role: Role::Admin,
        }),
    ))
}

pub fn show(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    let name = parse_name(request.param("name"))?;
    // An automation token sees what anyone sees: it carries none of its
    // owner's membership.
    let caller = caller.reader()?.filter(|reader| reader.token.is_none());
    let found = identity::require(&app.store, &name)?;
    let role = caller.as_ref().and_then(|caller| found.role_of(&caller.email));
    let member = role.is_some();
    let packages = gren_registry_core::package::listing_for_identity(&app.packages.catalog, &name, member);
    // Members see who else is in; only admins see whom they invited.
    let invitations = (role == Some(Role::Admin)).then(|| found.pending_invitations().cloned().collect());
    let view = IdentityPage {
        created: member.then_some(found.created),
        invitations,
        members: member.then_some(found.members),
        name: found.name,
        packages,
    };
    Ok(Response::json(200, &SortedKeys(view)))
}

/// Changes a member's role (200), or invites someone who is not a member (202).
pub fn set_member(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    let caller = caller.user()?;
    let body: MemberRequest = request.json()?;
    let role = Role::parse(&body.role)?;
    let name = parse_name(request.param("name"))?;
    let email = Email::parse(request.param("email"))?;
    let actor = Actor::User(caller.email.clone());
    let limit = app.config.pending_invitations_per_identity;
    let change = app.member_changes_per_user.counting(
        caller.email.as_str(),
        || identity::set_member(&app.store, &name, &actor, &email, role, limit).map_err(ApiError::from),
        MemberChange::changed,
    )?;
    if let MemberChange::Invited(invitation) = &change {
        app.invitations.invited(&invitation.email, &name);
    }
    if change.changed() {
        tell(app, &name, &change, &caller.email);
    }
    Ok(match change {
        MemberChange::Invited(invitation) | MemberChange::AlreadyInvited(invitation) => {
            Response::json(202, &MemberAnswer::Invited(invitation))
        }
        MemberChange::RoleChanged(member) | MemberChange::Unchanged(member) | MemberChange::Added(member) => {
            Response::json(200, &MemberAnswer::Member(member))
        }
    })
}

/// Removes a member, cancels an invitation, or (for one's own address)
/// leaves or declines.
pub fn remove_member(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    let caller = caller.user()?;
    let name = parse_name(request.param("name"))?;
    let email = Email::parse(request.param("email"))?;
    let actor = Actor::User(caller.email.clone());
    let remove = || identity::remove_member(&app.store, &name, &actor, &email);
    if email == caller.email {
        // Leaving (or declining) is always possible.
        remove()?;
    } else {
        app.member_changes_per_user
            .counting(caller.email.as_str(), || remove().map_err(ApiError::from), |_| true)?;
    }
    Ok(Response::no_content())
}

pub fn audit(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    let caller = caller.user()?;
    let name = parse_name(request.param("name"))?;
    let found = identity::require(&app.store, &name)?;
    identity::require_role(&found, &Actor::User(caller.email), Role::Admin)?;
    let entries = gren_registry_core::package::audit_log(&app.store, &app.packages.catalog, &name, &found)?;
    Ok(Response::json(
        200,
        &SortedKeys(AuditLog {
            entries,
            name: found.name,
        }),
    ))
}

/// An identity name from a path: one that cannot exist is simply not found.
pub fn parse_name(name: &str) -> ApiResult<IdentityName> {
    IdentityName::parse(name).map_err(|_| {
        ApiError::not_found(
            ErrorCode::IdentityNotFound,
            format!("There is no publishing identity named {name:?}."),
        )
    })
}

/// Tells a person about an invitation or a new role. Best effort: the
/// change is made whether or not the e-mail goes out, and a mailbox (an
/// address without its `+tag`) gets at most
/// `GREN_REGISTRY_MEMBER_MAIL_LIMIT_PER_EMAIL` of these an hour, so nobody's
/// inbox can be flooded by toggling their role or inviting its tag variants.
/// The commands it names carry `--registry <public URL>` unless it is the
/// client's default, so that they work wherever the reader last logged in.
fn tell(app: &App, name: &IdentityName, change: &MemberChange, by: &Email) {
    let command = |words: &str| client_command(&app.public_url, words);
    let (to, subject, text) = match change {
        MemberChange::Invited(invitation) => (
            &invitation.email,
            format!("Gren: invitation to {name}"),
            format!(
                "{by} invited you to the Gren publishing identity {name}, with the role {role}.\n\n\
                 To accept, log in as {to} with `{login}`, then run \
                 `{accept}` (or `{decline}`). \
                 The invitation expires on {expires}.\n\n\
                 If you do not know {by}, ignore this e-mail: nothing changes unless you accept.\n",
                role = invitation.role.as_str(),
                to = invitation.email,
                expires = invitation.expires,
                login = command("login"),
                accept = command(&format!("identity accept {name}")),
                decline = command(&format!("identity decline {name}")),
            ),
        ),
        MemberChange::RoleChanged(member) => (
            &member.email,
            format!("Gren: your role in {name}"),
            format!(
                "{by} changed your role in the Gren publishing identity {name}. Your role is now: {role}.\n\n\
                 If this is unexpected, contact {by}; you can leave with `{leave}`.\n",
                role = member.role.as_str(),
                leave = command(&format!("identity leave {name}")),
            ),
        ),
        _ => return,
    };
    // Counted by mailbox, as logins are: `victim+1@` and `victim+2@` are one inbox.
    if app.member_mails_per_email.hit(&to.mailbox()).is_err() {
        log::info!("membership e-mail about {name} not sent: its recipient's hourly limit is reached");
        return;
    }
    let message = plain_message(to.as_str(), subject, text);
    if let Err(err) = app.mailer.send(&message) {
        log::warn!("membership e-mail not sent: {err}");
    }
}
