//! `/packages` and `/events`: publish, browse, download, revoke. Publishing,
//! revoking and reading take automation tokens too ([`Caller::publisher`],
//! [`Caller::reader`]); a token sees the private packages of the identities
//! its `download` scopes name, among its owner's. Answers about a private
//! package are marked private here; the rest of their cache headers (and
//! `304`s) come from the route table ([`crate::http::cache`]).

use crate::app::App;
use crate::http::cache::{self, IMMUTABLE, private_if};
use crate::http::errors::{ApiError, ApiResult};
use crate::http::{Caller, Request, Response};
use gren_registry_core::api::{
    EventPage, PackageList, PrivacyAnswer, PrivacyRequest, PublishReceipt, RevokeRequest, RevokedPackage, SortedKeys,
    VersionAnswer, VersionPage,
};
use gren_registry_core::auth::session::Authenticated;
use gren_registry_core::auth::token::ScopeAction;
use gren_registry_core::bundle::outline::PLATFORMS;
use gren_registry_core::error::ErrorCode;
use gren_registry_core::identity::{self, Actor};
use gren_registry_core::package::publish::{Published, Upload, version_not_found};
use gren_registry_core::package::{
    self, PackageError, PackageName, PackageRecord, PageView, Revocation, Version, VersionRecord, Visibility,
    find_visible,
};
use gren_registry_core::store::layout;
use gren_registry_core::text;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;

/// Events per page of `GET /events`: without `limit`, and at most.
const EVENT_PAGE: u64 = 100;
const MAX_EVENT_PAGE: u64 = 1000;

/// `POST /packages`. The caller was authenticated and counted against the
/// publish limit before the body was read (`RegistryService::body_limit`).
pub fn publish(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    let caller = caller.publisher()?;
    let email = caller.email.as_str().to_string();
    let private = match request.query_param("private").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidQuery,
                "`private` must be true or false.",
            ));
        }
    };
    let upload = Upload {
        bytes: &request.body,
        actor: &Actor::User(caller.email),
        token: caller.token.as_ref(),
        private,
        max_inflated: app.config.max_inflated_bytes,
        kernel_authors: &app.config.kernel_code_authors,
        successor_rule: true,
        inflations: Some(&app.inflations),
        name_probes: Some((&app.name_collisions_per_user, &email)),
    };
    let result = app.packages.publish(&app.store, upload);
    if matches!(result, Err(PackageError::Busy(_))) {
        // Refused for the registry's load, not for the bundle: no publish happened.
        app.publishes_per_user.give_back(&email);
    }
    let (name, published) = result?;
    let (status, version) = match published {
        Published::Created(version) => (201, version),
        Published::Existing(version) => (200, version),
    };
    Ok(Response::json(
        status,
        &SortedKeys(PublishReceipt {
            name,
            published: version.published,
            sha256: version.sha256,
            size: version.size,
            version: version.version,
        }),
    ))
}

/// Identity keys whose private packages the caller may see.
fn visibility(app: &App, caller: &Caller) -> ApiResult<Visibility> {
    visibility_of(app, caller.reader()?.as_ref(), None)
}

/// Identity keys whose private packages `reader` may see: a person's
/// identities; of those, an automation token's `download` scopes name
/// which it sees, and `also` one more (the package a scope lets it revoke).
fn visibility_of(app: &App, reader: Option<&Authenticated>, also: Option<&str>) -> ApiResult<Visibility> {
    let Some(reader) = reader else {
        return Ok(Visibility::new());
    };
    let keys = identity::memberships(&app.store, &reader.email)?
        .into_iter()
        .map(|(name, _)| name.to_ascii_lowercase());
    Ok(match &reader.token {
        None => keys.collect(),
        Some(token) => keys
            .filter(|key| Some(key.as_str()) == also || token.download_identities().any(|scope| scope == key))
            .collect(),
    })
}

/// The package of the path (`:author/:project`), if the caller may see it.
fn visible_package(app: &App, request: &Request, caller: &Caller) -> ApiResult<Arc<PackageRecord>> {
    let name = package_name(request.param("author"), request.param("project"))?;
    readable(app, &name, caller.reader()?.as_ref())
}

/// `name` if `reader` may read it: public, or private and `reader` a
/// member of its identity (by a token with its `download` scope). The one
/// rule of reads, the API's and git's.
pub(crate) fn readable(app: &App, name: &PackageName, reader: Option<&Authenticated>) -> ApiResult<Arc<PackageRecord>> {
    find_for(app, name, reader, visibility_of(app, reader, None)?)
}

/// `name` if `visible` shows it. A private package hidden from an
/// automation token whose owner may see it is refused naming the scope the
/// token lacks: the token's holder is its owner's machine, which knows.
fn find_for(
    app: &App,
    name: &PackageName,
    reader: Option<&Authenticated>,
    visible: Visibility,
) -> ApiResult<Arc<PackageRecord>> {
    let found = find_visible(&app.packages.catalog, name, &visible);
    if found.is_err()
        && let Some(reader) = reader
        && let Some(token) = &reader.token
        && app.packages.catalog.get(name).is_some()
        && visibility_of(app, Some(&session_of(reader)), None)?.contains(&name.author.to_ascii_lowercase())
    {
        token.require(ScopeAction::Download, name)?;
    }
    Ok(found?)
}

/// What `reader`'s owner may do with a session: for comparing with a token.
fn session_of(reader: &Authenticated) -> Authenticated {
    Authenticated {
        token: None,
        ..reader.clone()
    }
}

fn package_name(author: &str, project: &str) -> ApiResult<PackageName> {
    PackageName::from_parts(author, project).ok_or_else(|| {
        ApiError::not_found(
            ErrorCode::PackageNotFound,
            // Not a valid name: quoted and escaped, as it is the client's input.
            format!("There is no package named {:?}.", format!("{author}/{project}")),
        )
    })
}

fn version_param(text: &str) -> ApiResult<Version> {
    Version::parse(text).ok_or_else(|| {
        ApiError::bad_request(ErrorCode::InvalidVersion, format!("{text:?} is not a version (X.Y.Z)."))
            .with_field("version")
    })
}

fn version_of<'a>(record: &'a PackageRecord, text: &str) -> ApiResult<&'a VersionRecord> {
    let version = version_param(text)?;
    record
        .version(version)
        .ok_or_else(|| version_not_found(&record.name, version).into())
}

/// `?gren=X.Y.Z`, validated.
fn gren_param(request: &Request) -> ApiResult<Option<Version>> {
    request
        .query_param("gren")
        .map(|text| {
            Version::parse(&text).ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::InvalidQuery,
                    format!("`gren` must be a compiler version X.Y.Z, not {text:?}."),
                )
            })
        })
        .transpose()
}

pub fn list(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    let gren = gren_param(request)?;
    let visible = visibility(app, caller)?;
    let packages: Vec<_> = app
        .packages
        .catalog
        .all()
        .iter()
        .filter(|record| !record.private || visible.contains(&record.name.author.to_ascii_lowercase()))
        .filter_map(|record| package::listing_entry(record, gren))
        .collect();
    Ok(Response::json(200, &SortedKeys(PackageList { packages })))
}

pub fn show(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    let record = visible_package(app, request, caller)?;
    Ok(kept_answer(&record, app.packages.catalog.view(&record)))
}

/// An answer the catalog keeps serialized, with its validator.
fn kept_answer(record: &PackageRecord, view: PageView) -> Response {
    let answer = Response::json_bytes(200, view.bytes).with_header("ETag", view.etag.to_string());
    private_if(record.private, answer)
}

/// A revocation's answer: the version as it is now. Serialized here, not
/// cached: the catalog's view of the package changed with the revocation.
fn revocation_answer(record: &PackageRecord, version: &VersionRecord) -> Response {
    let answer = Response::json(
        200,
        &VersionAnswer {
            name: Cow::Borrowed(&record.name),
            version: Cow::Borrowed(version),
        },
    );
    private_if(record.private, answer)
}

/// The answer of `latest` and `previous`: serialized once per change, as
/// the package's page is.
fn version_answer(app: &App, record: &PackageRecord, version: &VersionRecord) -> Response {
    kept_answer(record, app.packages.catalog.version_view(record, version))
}

pub fn show_version(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    let record = visible_package(app, request, caller)?;
    let version = version_of(&record, request.param("version"))?;
    let outline = app
        .packages
        .outline(&app.store, &record.name, version.version)
        .map(Value::Object);
    let page = VersionPage {
        name: Cow::Borrowed(&record.name),
        outline,
        version: Cow::Borrowed(version),
    };
    Ok(private_if(record.private, Response::json(200, &SortedKeys(page))))
}

pub fn latest(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    let record = visible_package(app, request, caller)?;
    let gren = gren_param(request)?;
    let platform = request.query_param("platform");
    if let Some(platform) = &platform
        && !PLATFORMS.contains(&platform.as_str())
    {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            "`platform` must be common, browser or node.",
        ));
    }
    let found = record.latest(gren, platform.as_deref()).ok_or_else(|| {
        ApiError::not_found(
            ErrorCode::NoCompatibleVersion,
            format!("{} has no unrevoked version that fits.", record.name),
        )
    })?;
    Ok(version_answer(app, &record, found))
}

pub fn previous(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    let record = visible_package(app, request, caller)?;
    let version = version_param(request.param("version"))?;
    let found = record.previous(version).ok_or_else(|| {
        ApiError::not_found(
            ErrorCode::NoPreviousVersion,
            format!("{} has no unrevoked version below {version}.", record.name),
        )
    })?;
    Ok(version_answer(app, &record, found))
}

pub fn bundle(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    let record = visible_package(app, request, caller)?;
    let version = version_of(&record, request.param("version"))?;
    if let Some(revoked) = &version.revoked {
        return Err(revoked_error(&record.name, version.version, revoked));
    }
    // The bundle's own hash: its bytes need not be read to answer `304`.
    let etag = format!("\"{}\"", version.sha256);
    let response = if cache::not_modified(request, &etag) {
        Response::no_content_with(304)
    } else {
        let path = layout::version_bundle(&record.name, version.version);
        // Checked against `sha256` when first read: a damaged bundle is `503
        // storage_corrupt`, never wrong bytes.
        let bytes = match app.packages.bundles.read(&app.store.full_path(&path), &version.sha256) {
            Ok(bytes) => bytes,
            // Revoked between the look-up and the read: answer as revoked.
            Err(err) if err.is_not_found() => {
                let now = app.packages.catalog.get(&record.name);
                let revoked = now
                    .as_ref()
                    .and_then(|now| now.version(version.version))
                    .and_then(|v| v.revoked.clone());
                return Err(match revoked {
                    Some(revoked) => revoked_error(&record.name, version.version, &revoked),
                    None => ApiError::from(err),
                });
            }
            Err(err) => return Err(err.into()),
        };
        Response {
            status: 200,
            headers: vec![("Content-Type", "application/gzip".into())],
            body: bytes.into(),
        }
        .with_header(
            "Content-Disposition",
            format!(
                "attachment; filename=\"{}\"",
                record.name.bundle_file_name(version.version)
            ),
        )
    };
    Ok(private_if(record.private, response.with_header("ETag", etag)))
}

/// `410 {"error": "revoked", "reason"}`.
fn revoked_error(name: &PackageName, version: Version, revoked: &Revocation) -> ApiError {
    ApiError::new(
        410,
        ErrorCode::Revoked,
        format!("{name} {version} was revoked: {}", revoked.reason),
    )
    .with_detail("reason", revoked.reason.clone())
}

/// `POST /packages/<author>/<project>/revoke`: every version.
pub fn revoke_package(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    revoke(app, request, caller, None)
}

/// `POST /packages/<author>/<project>/<version>/revoke`.
pub fn revoke_version(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    revoke(app, request, caller, Some(request.param("version")))
}

/// A revocation's reason, trimmed: 1 to 500 characters of visible text (it
/// is shown to everyone who asks for the version, and in its event).
fn revocation_reason(reason: &str) -> ApiResult<&str> {
    let reason = reason.trim();
    let refusal = if reason.is_empty() || reason.chars().count() > 500 {
        "Give a reason of 1 to 500 characters.".to_string()
    } else if let Err(hidden) = text::check(reason) {
        format!(
            "The reason holds {hidden}, a control or invisible formatting character; give it as one line of visible text."
        )
    } else {
        return Ok(reason);
    };
    Err(ApiError::bad_request(ErrorCode::InvalidReason, refusal).with_field("reason"))
}

fn revoke(app: &App, request: &Request, caller: &Caller, version: Option<&str>) -> ApiResult<Response> {
    let user = caller.publisher()?;
    let name = package_name(request.param("author"), request.param("project"))?;
    // A token's revoke scope is checked first, so a private package it may
    // revoke is found without a download scope, and one it may not is
    // refused for the scope it lacks.
    if let Some(token) = &user.token {
        token.require(ScopeAction::Revoke, &name)?;
    }
    let also = user.token.as_ref().map(|_| name.author.to_ascii_lowercase());
    let visible = visibility_of(app, Some(&user), also.as_deref())?;
    let record = find_for(app, &name, Some(&user), visible)?;
    let body: RevokeRequest = request.json()?;
    let reason = revocation_reason(&body.reason)?;
    let version = version.map(version_param).transpose()?;
    app.publishes_per_user.hit(user.email.as_str())?;
    let actor = Actor::User(user.email.clone());
    let versions = app
        .packages
        .revoke(&app.store, &record.name, version, reason, &actor, user.token.as_ref())?;
    match version {
        Some(version) => {
            let revoked = versions
                .iter()
                .find(|record| record.version == version)
                .expect("the version exists");
            Ok(revocation_answer(&record, revoked))
        }
        None => Ok(Response::json(
            200,
            &SortedKeys(RevokedPackage {
                name: record.name.clone(),
                versions,
            }),
        )),
    }
}

pub fn settings(app: &App, request: &Request, caller: &Caller) -> ApiResult<Response> {
    let user = caller.user()?;
    let record = visible_package(app, request, caller)?;
    let body: PrivacyRequest = request.json()?;
    let updated = app
        .packages
        .set_private(&app.store, &record.name, body.private, &Actor::User(user.email))?;
    Ok(Response::json(
        200,
        &SortedKeys(PrivacyAnswer {
            name: updated.name,
            private: updated.private,
        }),
    ))
}

/// A whole-number query parameter, `default` when absent.
fn number_param(request: &Request, name: &str, default: u64, message: &str) -> ApiResult<u64> {
    match request.query_param(name) {
        None => Ok(default),
        Some(text) => text
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(ErrorCode::InvalidQuery, message.to_string())),
    }
}

pub fn events(app: &App, request: &Request, _caller: &Caller) -> ApiResult<Response> {
    let since = number_param(
        request,
        "since",
        0,
        "`since` must be an event number (0 for the start).",
    )?;
    let limit_message = format!("`limit` must be a number of events from 1 to {MAX_EVENT_PAGE}.");
    let limit = number_param(request, "limit", EVENT_PAGE, &limit_message)?;
    if !(1..=MAX_EVENT_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(ErrorCode::InvalidQuery, limit_message));
    }
    // The log is public history, the same for everyone: a package made
    // private since keeps its past events, and its `private` event tells
    // mirrors to stop serving it.
    let (events, head) = app.packages.events.page(since, limit);
    let next = head.min(since.saturating_add(limit)).max(since);
    // Events are never rewritten, so a full page never changes: cacheable
    // for ever, and without the head, which moves. The last page changes
    // with the next event, which purges it from shared caches.
    let full = events.len() as u64 == limit;
    let page = EventPage {
        events,
        head: (!full).then_some(head),
        next,
    };
    let answer = Response::json(200, &SortedKeys(page));
    Ok(if full {
        answer.with_header("Cache-Control", IMMUTABLE)
    } else {
        answer
    })
}
