//! `/publishing-identity`: create, show, manage members, read the audit log.

use crate::app::App;
use crate::auth::email::Email;
use crate::auth::login::escape_html;
use crate::auth::session::{self, Authenticated};
use crate::error::{ApiError, ApiResult};
use crate::http::{Request, Response};
use crate::identity::{self, Actor, IdentityName, Member, MemberChange, Role};
use crate::mail::Message;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct CreateBody {
    name: String,
    /// The upstream Gren registry sends the session token in the body.
    #[serde(default)]
    session: Option<String>,
}

pub fn create(app: &App, request: &Request) -> ApiResult<Response> {
    let body: CreateBody = match request.json() {
        Ok(body) => body,
        // Who is asking comes first: without a bearer token, the body was
        // the only place a token could be.
        Err(_) if request.bearer_token().is_none() => return Err(session::missing_token()),
        Err(err) => return Err(err),
    };
    let caller = session::authenticate(&app.store, request.bearer_token().or(body.session.as_deref()))?;
    let name = IdentityName::parse(&body.name)?;
    // Only creations count against the limit: the slot is taken before
    // creating (so parallel requests cannot all pass) and given back when
    // the name is refused (taken, reserved).
    app.identities_per_user.hit(caller.email.as_str())?;
    let actor = Actor::User(caller.email.clone());
    let created = identity::create(
        &app.store,
        &name,
        &caller.email,
        &actor,
        &app.config.reserved_identities,
    )
    .inspect_err(|_| app.identities_per_user.give_back(caller.email.as_str()))?;
    Ok(Response::json(
        200,
        &json!({ "name": created.name, "role": Role::Admin }),
    ))
}

pub fn show(app: &App, request: &Request, name: &str) -> ApiResult<Response> {
    let name = IdentityName::parse(name).map_err(|_| identity_not_found(name))?;
    let caller = optional_caller(app, request)?;
    let found = identity::require(&app.store, &name)?;
    let is_member = caller
        .as_ref()
        .is_some_and(|caller| found.role_of(&caller.email).is_some());
    let packages = crate::package::listing_for_identity(&app.packages.catalog, &name, is_member);
    Ok(Response::json(
        200,
        &if is_member {
            json!({ "name": found.name, "created": found.created, "members": found.members, "packages": packages })
        } else {
            json!({ "name": found.name, "packages": packages })
        },
    ))
}

#[derive(Deserialize)]
struct MemberBody {
    role: String,
}

pub fn set_member(app: &App, request: &Request, name: &str, email: &str) -> ApiResult<Response> {
    let caller = session::authenticate(&app.store, request.bearer_token())?;
    let body: MemberBody = request.json()?;
    let role = Role::parse(&body.role)?;
    let name = IdentityName::parse(name).map_err(|_| identity_not_found(name))?;
    let email = Email::parse(email)?;
    let (member, change) = identity::set_member(&app.store, &name, &Actor::User(caller.email.clone()), &email, role)?;
    if change != MemberChange::Unchanged {
        tell_member(app, &name, &member, &caller, change == MemberChange::Added);
    }
    Ok(Response::json(200, &member))
}

pub fn remove_member(app: &App, request: &Request, name: &str, email: &str) -> ApiResult<Response> {
    let caller = session::authenticate(&app.store, request.bearer_token())?;
    let name = IdentityName::parse(name).map_err(|_| identity_not_found(name))?;
    let email = Email::parse(email)?;
    identity::remove_member(&app.store, &name, &Actor::User(caller.email), &email)?;
    Ok(Response::no_content())
}

pub fn audit(app: &App, request: &Request, name: &str) -> ApiResult<Response> {
    let caller = session::authenticate(&app.store, request.bearer_token())?;
    let name = IdentityName::parse(name).map_err(|_| identity_not_found(name))?;
    let found = identity::require(&app.store, &name)?;
    identity::require_role(&found, &Actor::User(caller.email), Role::Admin)?;
    let entries = identity::audit::read(&app.store, &name, &found)?;
    Ok(Response::json(200, &json!({ "name": found.name, "entries": entries })))
}

/// The caller when a token is given (401 when it is bad), else `None`.
pub fn optional_caller(app: &App, request: &Request) -> ApiResult<Option<Authenticated>> {
    match request.bearer_token() {
        Some(token) => session::authenticate(&app.store, Some(token)).map(Some),
        None => Ok(None),
    }
}

fn identity_not_found(name: &str) -> ApiError {
    ApiError::not_found(
        "identity_not_found",
        format!("There is no publishing identity named {name:?}."),
    )
}

/// Tells a person that they joined an identity or that their role changed.
/// Best effort: the change is made whether or not the e-mail goes out.
fn tell_member(app: &App, name: &IdentityName, member: &Member, by: &Authenticated, added: bool) {
    let what = if added { "added you to" } else { "changed your role in" };
    let text = format!(
        "{by} {what} the Gren publishing identity {name}. Your role is now: {role}.\n\n\
         Log in with `gren-registry login` to use it. If this is unexpected, contact {by}.\n",
        by = by.email,
        role = member.role.as_str(),
    );
    let message = Message {
        to: member.email.to_string(),
        subject: format!("Gren: your role in {name}"),
        html: format!("<p>{}</p>", escape_html(&text).replace("\n\n", "</p><p>")),
        text,
    };
    if let Err(err) = app.mailer.send(&message) {
        log::warn!("membership e-mail not sent: {err}");
    }
}
