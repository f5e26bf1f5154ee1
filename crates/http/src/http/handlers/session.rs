//! Login and logout: `POST /session`, the magic-link page, `POST /session/fetch`,
//! `DELETE /session`.

use crate::app::App;
use crate::http::errors::{ApiError, ApiResult};
use crate::http::{Caller, Request, Response};
use gren_registry_core::api::{LoginRequest, LoginStarted, LoginStatus, SessionFetchAnswer, SessionFetchRequest};
use gren_registry_core::auth::email::Email;
use gren_registry_core::auth::login::{self, FetchOutcome, FetchRequest, LinkProblem, Login, Requester, escape_html};
use gren_registry_core::auth::session;
use gren_registry_core::error::ErrorCode;
use gren_registry_core::mail::MailError;
use gren_registry_core::ratelimit::{client_network, hit_all};
use std::net::IpAddr;
use std::time::Duration;

/// Longest `?wait=` a fetch may long-poll.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// What a pending fetch suggests between polls.
const POLL_SECONDS: u64 = 2;

pub fn start(app: &App, request: &Request, _caller: &Caller) -> ApiResult<Response> {
    let body: LoginRequest = request.json()?;
    let email = Email::parse(&body.email)?;
    let ip = request.client_ip(&app.config.trusted_proxies);
    // No user record is written here, nor read unless a limit is reached:
    // how long a login takes to start must not tell whether the address has
    // an account. The record is made with the first session (`login::fetch`).
    count_login(app, &email, ip)?;
    let started = login::start(
        &app.store,
        &email,
        Requester {
            ip: ip.to_string(),
            user_agent: request.user_agent(),
        },
        &app.public_url,
    )?;
    if let Err(err) = app.mailer.send(&started.message) {
        login::abandon(&app.store, &started.fetch_session_token)?;
        return Err(mail_not_sent(err));
    }
    Ok(Response::json(
        200,
        &LoginStarted {
            fetch_session_token: started.fetch_session_token,
            verification: started.verification,
            expires_in: started.expires_in,
        },
    ))
}

/// The answer when the login e-mail was not sent: the local sink's disk
/// trouble is the storage's (`507`/`503`, logged with its path), anything
/// else the mail service's.
fn mail_not_sent(err: MailError) -> ApiError {
    match err {
        MailError::Store(store) => ApiError::storage(store.fault(), store),
        MailError::Service(_) => {
            log::warn!("login e-mail not sent: {err}");
            ApiError::new(
                502,
                ErrorCode::EmailFailed,
                "The confirmation e-mail could not be sent; try again in a few minutes.",
            )
        }
    }
}

/// Counts a login against the limits, or refuses it with 429. The
/// per-address limit counts per client network, so that logins started
/// elsewhere cannot use up the owner's; the overall cap per address stops
/// mail bombing from many networks, but not the owner on a network they are
/// logged in from. Addresses count by mailbox (`+tag`s removed).
fn count_login(app: &App, email: &Email, ip: IpAddr) -> ApiResult<()> {
    let network = client_network(ip);
    let mailbox = email.mailbox();
    let from_network = format!("{mailbox} {network}");
    let mut limits = vec![
        (&app.login_per_ip, network.as_str()),
        (&app.login_per_email, from_network.as_str()),
    ];
    // Sessions are only read when the cap is reached, not on every login.
    if !app.login_per_email_total.is_exhausted(&mailbox) || !session::has_session_from(&app.store, email, &network)? {
        limits.push((&app.login_per_email_total, mailbox.as_str()));
    }
    Ok(hit_all(&limits)?)
}

pub fn fetch(app: &App, request: &Request, _caller: &Caller) -> ApiResult<Response> {
    let body: SessionFetchRequest = request.json()?;
    let wait = match request.query_param("wait") {
        None => Duration::ZERO,
        Some(text) => text
            .parse::<u64>()
            .map(|secs| Duration::from_secs(secs).min(MAX_WAIT))
            .map_err(|_| {
                ApiError::bad_request(
                    ErrorCode::InvalidWait,
                    "`wait` must be a whole number of seconds (at most 30).",
                )
            })?,
    };
    let fetch_request = FetchRequest {
        fetch_token: &body.fetch_session_token,
        code: body.email_confirmation_code.as_deref(),
        session_lifetime: app.config.session_lifetime(),
        user_agent: request.user_agent(),
        ip: request.client_ip(&app.config.trusted_proxies).to_string(),
    };
    let outcome = match login::fetch(&app.store, &fetch_request)? {
        FetchOutcome::Pending if !wait.is_zero() => app
            .confirmations
            .wait_for(wait, || match login::fetch(&app.store, &fetch_request) {
                Ok(FetchOutcome::Pending) if !app.is_stopping() => Ok(None),
                outcome => outcome.map(Some),
            })?
            .unwrap_or(FetchOutcome::Pending),
        outcome => outcome,
    };
    Ok(match outcome {
        FetchOutcome::Token(session_token) => Response::json(200, &SessionFetchAnswer::Token { session_token }),
        FetchOutcome::Pending => Response::json(
            202,
            &SessionFetchAnswer::Pending {
                status: LoginStatus::Pending,
            },
        )
        .with_header("Retry-After", POLL_SECONDS.to_string()),
    })
}

pub fn logout(app: &App, _request: &Request, caller: &Caller) -> ApiResult<Response> {
    let caller = caller.user()?;
    session::revoke(&app.store, &caller.email, &caller.token_hash)?;
    Ok(Response::no_content())
}

/// `GET /session/confirm?token=`: shows who is logging in and a Confirm
/// button. Only the button's POST confirms, so scanners that fetch links
/// confirm nothing.
pub fn confirm_page(app: &App, request: &Request, _caller: &Caller) -> ApiResult<Response> {
    let token = request.query_param("token").unwrap_or_default();
    Ok(match login::for_link(&app.store, &token) {
        Ok(login) => Response::html(200, page("Confirm your login", &confirm_form(&login, &token))),
        Err(problem) => link_problem_page(problem),
    })
}

/// `POST /session/confirm` (form field `token`).
pub fn confirm(app: &App, request: &Request, _caller: &Caller) -> ApiResult<Response> {
    let token = request.form_field("token").unwrap_or_default();
    Ok(match login::confirm(&app.store, &token, &app.confirmations) {
        Ok(login) => Response::html(
            200,
            page(
                "Login confirmed",
                &format!(
                    "<p>You are now logged in as <b>{}</b>.</p><p>Go back to your terminal; you can close this page.</p>",
                    escape_html(login.email.as_str())
                ),
            ),
        ),
        Err(problem) => link_problem_page(problem),
    })
}

fn confirm_form(login: &Login, token: &str) -> String {
    format!(
        "<p>Someone is logging in to the Gren package registry as <b>{email}</b>.</p>\
         <table>\
         <tr><th>Started</th><td>{created}</td></tr>\
         <tr><th>From</th><td>{ip}</td></tr>\
         <tr><th>Client</th><td>{agent}</td></tr>\
         <tr><th>Verification phrase</th><td><b>{phrase}</b></td></tr>\
         </table>\
         <p>Confirm only if you started this login and your terminal shows the same verification phrase.</p>\
         <form method=\"post\" action=\"/session/confirm\">\
         <input type=\"hidden\" name=\"token\" value=\"{token}\">\
         <button type=\"submit\">Confirm</button>\
         </form>",
        email = escape_html(login.email.as_str()),
        created = login.created,
        ip = escape_html(&login.client_ip),
        agent = escape_html(login.user_agent.as_deref().unwrap_or("unknown")),
        phrase = escape_html(&login.verification),
        token = escape_html(token),
    )
}

fn link_problem_page(problem: LinkProblem) -> Response {
    let (status, title, text) = match problem {
        LinkProblem::Unknown => (
            404,
            "Unknown link",
            "This login link is not valid. Copy the whole link from the e-mail, or start a new login.",
        ),
        LinkProblem::Expired => (
            410,
            "Link expired",
            "This login link has expired. Start a new login from your terminal.",
        ),
        LinkProblem::Used => (
            410,
            "Link already used",
            "This login has already been completed or cancelled. Start a new login if you need one.",
        ),
    };
    Response::html(status, page(title, &format!("<p>{text}</p>")))
}

fn page(title: &str, content: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title} · Gren package registry</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:3em auto;padding:0 1em;color:#222}}\
         th{{text-align:left;padding-right:1em;font-weight:normal;color:#666}}td,th{{padding:.2em 0}}\
         button{{font-size:1.1em;padding:.5em 1.5em;margin-top:1em;cursor:pointer}}</style></head>\
         <body><h1>{title}</h1>{content}</body></html>"
    )
}
