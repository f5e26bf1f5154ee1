//! The registry the client talks to: requests with the API's typed bodies
//! ([`gren_registry_core::api`]), answers read into them, and every error turned into a
//! sentence for people.

use super::{CliError, CliResult};
use gren_registry_core::api::{ErrorBody, SessionFetchAnswer, SessionFetchRequest};
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use std::io::Read;
use std::time::Duration;

pub struct RemoteRegistry {
    pub url: String,
    agent: ureq::Agent,
}

/// A response the client did not expect, kept whole so callers can decide.
#[derive(Debug)]
pub struct Failure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl From<Failure> for CliError {
    fn from(failure: Failure) -> CliError {
        let hint = match failure.status {
            401 => "\nLog in again with `gren-registry login`.",
            429 => "\nWait a little and try again.",
            _ => "",
        };
        CliError(format!("{}{hint}", failure.message))
    }
}

impl RemoteRegistry {
    pub fn new(url: &str) -> RemoteRegistry {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .user_agent(concat!("gren-registry/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        RemoteRegistry {
            url: url.trim_end_matches('/').to_string(),
            agent,
        }
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str, token: Option<&str>) -> CliResult<T> {
        Ok(self.request("GET", path, None, token)?)
    }

    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize, token: Option<&str>) -> CliResult<T> {
        self.send("POST", path, body, token)
    }

    /// A request with a JSON body.
    pub fn send<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &impl Serialize,
        token: Option<&str>,
    ) -> CliResult<T> {
        Ok(self.request(method, path, Some(encode(body)), token)?)
    }

    /// `DELETE`, whose answer has no body; the failure is kept whole.
    pub fn delete(&self, path: &str, token: Option<&str>) -> Result<(), Failure> {
        self.request::<IgnoredAny>("DELETE", path, None, token).map(drop)
    }

    /// A JSON request; `Err(Failure)` for any status of 400 or more.
    fn request<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        token: Option<&str>,
    ) -> Result<T, Failure> {
        let (status, bytes) = self.exchange(method, path, body, "application/json", token)?;
        parse(status, &bytes)
    }

    pub fn upload<T: DeserializeOwned>(&self, path: &str, bytes: &[u8], token: &str) -> CliResult<T> {
        let (status, body) = self.exchange("POST", path, Some(bytes.to_vec()), "application/gzip", Some(token))?;
        Ok(parse(status, &body)?)
    }

    /// Downloads a file, showing progress for large ones.
    pub fn download(&self, path: &str, token: Option<&str>, label: &str) -> CliResult<Vec<u8>> {
        let url = format!("{}{path}", self.url);
        let mut request = self.agent.get(&url);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut response = request.call().map_err(|err| unreachable(&self.url, err))?;
        let status = response.status().as_u16();
        let total: Option<u64> = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let mut reader = response.body_mut().with_config().limit(256 * 1024 * 1024).reader();
        let mut bytes = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut shown = 0;
        loop {
            let read = reader
                .read(&mut chunk)
                .map_err(|err| CliError(format!("The download of {label} broke off: {err}")))?;
            if read == 0 {
                break;
            }
            bytes.extend_from_slice(&chunk[..read]);
            if let Some(total) = total.filter(|total| *total > 1024 * 1024) {
                let percent = bytes.len() as u64 * 100 / total;
                if percent >= shown + 10 {
                    shown = percent;
                    eprint!("\r  {label}: {percent}%");
                }
            }
        }
        if shown > 0 {
            eprintln!();
        }
        if status >= 400 {
            return Err(failure(status, &bytes).into());
        }
        Ok(bytes)
    }

    fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: &str,
        token: Option<&str>,
    ) -> Result<(u16, Vec<u8>), Failure> {
        let url = format!("{}{path}", self.url);
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let result = match body {
            Some(body) => {
                let request = request
                    .header("Content-Type", content_type)
                    .body(body)
                    .map_err(|err| local_failure(err.to_string()))?;
                self.agent.run(request)
            }
            None => {
                let request = request.body(()).map_err(|err| local_failure(err.to_string()))?;
                self.agent.run(request)
            }
        };
        let mut response = result.map_err(|err| local_failure(unreachable(&self.url, err).0))?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(16 * 1024 * 1024)
            .read_to_vec()
            .map_err(|err| local_failure(format!("The registry's answer broke off: {err}")))?;
        Ok((status, bytes))
    }
}

fn local_failure(message: String) -> Failure {
    Failure {
        status: 0,
        code: "unreachable".into(),
        message,
    }
}

fn unreachable(url: &str, err: ureq::Error) -> CliError {
    CliError(format!(
        "Cannot reach the registry at {url}: {err}.\nCheck the address (--registry or GREN_REGISTRY_URL) and your connection."
    ))
}

fn encode(body: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_default()
}

/// The answer to a request: `T` below 400 (an empty answer reads as `null`,
/// which `IgnoredAny`, `()` and `Option` accept), else the registry's error.
fn parse<T: DeserializeOwned>(status: u16, bytes: &[u8]) -> Result<T, Failure> {
    if status >= 400 {
        return Err(failure(status, bytes));
    }
    let bytes = if bytes.is_empty() { b"null".as_slice() } else { bytes };
    serde_json::from_slice(bytes).map_err(|err| Failure {
        status,
        code: "unexpected_answer".into(),
        message: format!("The registry's answer (HTTP {status}) is not what this client expects: {err}."),
    })
}

/// An error answer; one that is not the registry's JSON (from a proxy in
/// front of it, say) is named by its status.
fn failure(status: u16, bytes: &[u8]) -> Failure {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => Failure {
            status,
            code: body.error,
            message: body.message,
        },
        Err(_) => Failure {
            status,
            code: "http_error".into(),
            message: format!("The registry answered HTTP {status}."),
        },
    }
}

impl RemoteRegistry {
    /// `POST /session/fetch`: `Ok(Some(token))`, `Ok(None)` while pending.
    pub fn fetch_session(&self, fetch_token: &str, code: Option<&str>, wait: u64) -> Result<Option<String>, Failure> {
        let body = SessionFetchRequest {
            email_confirmation_code: code.map(str::to_string),
            fetch_session_token: fetch_token.to_string(),
        };
        let path = if wait > 0 {
            format!("/session/fetch?wait={wait}")
        } else {
            "/session/fetch".to_string()
        };
        Ok(match self.request("POST", &path, Some(encode(&body)), None)? {
            SessionFetchAnswer::Token { session_token } => Some(session_token),
            SessionFetchAnswer::Pending { .. } => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gren_registry_core::api::{SessionFetchAnswer, UserAnswer};

    #[test]
    fn an_error_answer_gives_the_registrys_code_and_message() {
        let body = br#"{"error":"revoked","message":"a/b 1.0.0 was revoked: broken","reason":"broken"}"#;
        let failure = parse::<IgnoredAny>(410, body).unwrap_err();
        assert_eq!(
            (failure.status, failure.code.as_str(), failure.message.as_str()),
            (410, "revoked", "a/b 1.0.0 was revoked: broken")
        );
    }

    #[test]
    fn an_error_answer_that_is_not_the_registrys_json_is_named_by_its_status() {
        for body in [b"<html>Bad gateway</html>".as_slice(), b"", br#"{"status":"down"}"#] {
            let failure = parse::<IgnoredAny>(502, body).unwrap_err();
            assert_eq!(
                (failure.code.as_str(), failure.message.as_str()),
                ("http_error", "The registry answered HTTP 502.")
            );
        }
    }

    #[test]
    fn an_empty_answer_reads_as_nothing() {
        parse::<IgnoredAny>(204, b"").unwrap();
        assert_eq!(
            parse::<Option<UserAnswer>>(204, b"").unwrap().map(|user| user.email),
            None
        );
    }

    #[test]
    fn an_answer_of_another_shape_is_an_error_that_says_so() {
        let failure = parse::<UserAnswer>(200, br#"{"email":"me@example.com"}"#).unwrap_err();
        assert_eq!(failure.code, "unexpected_answer");
        assert!(
            failure.message.contains("missing field `identities`"),
            "{}",
            failure.message
        );
        assert_eq!(
            parse::<SessionFetchAnswer>(202, br#"{"status":"pending"}"#).unwrap(),
            SessionFetchAnswer::Pending {
                status: gren_registry_core::api::LoginStatus::Pending
            }
        );
    }
}
