//! The registry's HTTP API as the client sees it: JSON in and out, and every
//! error turned into a sentence for people.

use super::{CliError, CliResult};
use serde_json::Value;
use std::io::Read;
use std::time::Duration;

pub struct Registry {
    pub url: String,
    agent: ureq::Agent,
}

/// A response the client did not expect, kept whole so callers can decide.
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

impl Registry {
    pub fn new(url: &str) -> Registry {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .user_agent(concat!("gren-registry/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Registry {
            url: url.trim_end_matches('/').to_string(),
            agent,
        }
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> CliResult<Value> {
        Ok(self.request("GET", path, None, token)?)
    }

    pub fn post(&self, path: &str, body: &Value, token: Option<&str>) -> CliResult<Value> {
        Ok(self.request("POST", path, Some(body), token)?)
    }

    pub fn send(&self, method: &str, path: &str, body: Option<&Value>, token: Option<&str>) -> CliResult<Value> {
        Ok(self.request(method, path, body, token)?)
    }

    /// A JSON request; `Err(Failure)` for any status of 400 or more.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<Value, Failure> {
        let (status, bytes) = self.exchange(
            method,
            path,
            body.map(|body| serde_json::to_vec(body).unwrap_or_default()),
            "application/json",
            token,
        )?;
        parse(status, &bytes)
    }

    pub fn upload(&self, path: &str, bytes: &[u8], token: &str) -> CliResult<Value> {
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
            return Err(parse(status, &bytes)
                .err()
                .map(CliError::from)
                .unwrap_or_else(|| CliError(format!("HTTP {status}"))));
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

fn parse(status: u16, bytes: &[u8]) -> Result<Value, Failure> {
    let value: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes).unwrap_or(Value::Null)
    };
    if status < 400 {
        return Ok(value);
    }
    Err(Failure {
        status,
        code: value["error"].as_str().unwrap_or("http_error").to_string(),
        message: value["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("The registry answered HTTP {status}.")),
    })
}

impl Registry {
    /// `POST /session/fetch`: `Ok(Some(token))`, `Ok(None)` while pending.
    pub fn fetch_session(&self, fetch_token: &str, code: Option<&str>, wait: u64) -> Result<Option<String>, Failure> {
        let mut body = serde_json::json!({ "fetchSessionToken": fetch_token });
        if let Some(code) = code {
            body["emailConfirmationCode"] = code.into();
        }
        let path = if wait > 0 {
            format!("/session/fetch?wait={wait}")
        } else {
            "/session/fetch".to_string()
        };
        let answer = self.request("POST", &path, Some(&body), None)?;
        Ok(answer["sessionToken"].as_str().map(str::to_string))
    }
}
