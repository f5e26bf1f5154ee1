//! The registry the client talks to: requests with the API's typed bodies
//! ([`gren_registry_core::api`]), answers read into them, and every error turned into a
//! sentence for people, with one next step: a certificate that is not
//! trusted, a server that does not speak TLS to `https://`, a registry that
//! cannot be reached, and a connection lost mid-request are told apart
//! ([`Trouble`]). Certificates are checked against the machine's trust
//! store (`SSL_CERT_FILE` when set), not a bundled list.

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

/// The registry's own message is the sentence shown: each already says
/// what to do, once (a refused token: log in again, or make a new
/// automation token; a limit: when to try again), so nothing is added to
/// it. Only a bare status from something in front of it gets a step.
impl From<Failure> for CliError {
    fn from(failure: Failure) -> CliError {
        let hint = match (failure.code.as_str(), failure.status) {
            (HTTP_ERROR, 429) => "\nWait a little and try again.",
            _ => "",
        };
        CliError(format!("{}{hint}", failure.message))
    }
}

/// The code of an error answer that is not the registry's JSON.
const HTTP_ERROR: &str = "http_error";

impl RemoteRegistry {
    pub fn new(url: &str) -> RemoteRegistry {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
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

    /// A GET whose refusal the caller looks at (its status and code).
    pub fn try_get<T: DeserializeOwned>(&self, path: &str, token: Option<&str>) -> Result<T, Failure> {
        self.request("GET", path, None, token)
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

    /// A bundle upload; the status (201 published, 200 the same bytes
    /// were already) and the answer. A connection lost once the upload
    /// began leaves the publish unknown, and says so.
    pub fn upload<T: DeserializeOwned>(&self, path: &str, bytes: &[u8], token: &str) -> CliResult<(u16, T)> {
        let (status, body) = self
            .exchange("POST", path, Some(bytes.to_vec()), "application/gzip", Some(token))
            .map_err(|failure| match failure.code.as_str() {
                LOST => CliError(format!(
                    "{}\nThe publish may or may not have happened; running it again is safe \
                     (publishing the same bundle again changes nothing).",
                    failure.message
                )),
                _ => failure.into(),
            })?;
        Ok((status, parse(status, &body)?))
    }

    /// Downloads a file, showing progress for large ones.
    pub fn download(&self, path: &str, token: Option<&str>, label: &str) -> CliResult<Vec<u8>> {
        let url = format!("{}{path}", self.url);
        let mut request = self.agent.get(&url);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut response = request
            .call()
            .map_err(|err| CliError(Trouble::of(&self.url, &err).message(&self.url)))?;
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
        let mut response = result.map_err(|err| trouble_failure(&self.url, &err))?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(16 * 1024 * 1024)
            .read_to_vec()
            .map_err(|err| Failure {
                status: 0,
                code: LOST.into(),
                message: format!("The registry's answer broke off: {err}."),
            })?;
        Ok((status, bytes))
    }
}

/// A request that could not even be made (a path the URL cannot hold).
fn local_failure(message: String) -> Failure {
    Failure {
        status: 0,
        code: "unsent".into(),
        message,
    }
}

/// The code of a [`Failure`] whose request may have reached the registry.
const LOST: &str = "connection_lost";

fn trouble_failure(url: &str, err: &ureq::Error) -> Failure {
    let trouble = Trouble::of(url, err);
    Failure {
        status: 0,
        code: match trouble {
            Trouble::Lost(_) => LOST,
            _ => "unreachable",
        }
        .into(),
        message: trouble.message(url),
    }
}

/// Why a request got no answer, each with its own next step.
#[derive(Debug)]
enum Trouble {
    /// The registry's certificate was refused (not trusted, expired, for
    /// another name).
    Certificate(rustls::CertificateError),
    /// `https://` given, and what answered does not speak TLS.
    NotTls,
    /// The connection was cut (reset, closed, timed out) once made: the
    /// request may have been carried out.
    Lost(String),
    /// No connection: refused, no such host, nothing answered in time.
    Unreachable(String),
}

impl Trouble {
    fn of(url: &str, err: &ureq::Error) -> Trouble {
        let tls = match err {
            ureq::Error::Rustls(tls) => Some(tls),
            ureq::Error::Io(io) => io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()),
            _ => None,
        };
        match tls {
            Some(rustls::Error::InvalidCertificate(why)) => return Trouble::Certificate(why.clone()),
            Some(rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. })
                if url.starts_with("https://") =>
            {
                return Trouble::NotTls;
            }
            _ => {}
        }
        let lost = match err {
            ureq::Error::Io(io) => matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ),
            ureq::Error::Timeout(timeout) => !matches!(timeout, ureq::Timeout::Connect | ureq::Timeout::Resolve),
            ureq::Error::Protocol(_) => true,
            _ => false,
        };
        if lost {
            Trouble::Lost(err.to_string())
        } else {
            Trouble::Unreachable(err.to_string())
        }
    }

    fn message(&self, url: &str) -> String {
        match self {
            Trouble::Certificate(why) => format!(
                "The registry at {url} presented a TLS certificate this machine does not trust: {}. \
                 This is a certificate problem, not an address problem.\n{}",
                certificate_fault(why),
                certificate_step(why)
            ),
            Trouble::NotTls => format!(
                "{url:?} is not a registry URL for this server: it does not speak TLS there.\n\
                 Use {} if it serves plain HTTP.",
                url.replacen("https://", "http://", 1)
            ),
            Trouble::Lost(err) => format!("The connection to the registry at {url} was lost: {err}."),
            Trouble::Unreachable(err) => format!(
                "Cannot reach the registry at {url}: {err}.\nCheck the address (--registry or GREN_REGISTRY_URL) and your connection."
            ),
        }
    }
}

fn certificate_fault(why: &rustls::CertificateError) -> String {
    use rustls::CertificateError as Why;
    match why {
        Why::UnknownIssuer => "it is signed by an authority that is not in the trust store".into(),
        Why::BadSignature => "its signature does not verify".into(),
        Why::Expired => "it has expired".into(),
        Why::NotValidYet => "it is not valid yet".into(),
        Why::NotValidForName => "it is not made out to this host name".into(),
        Why::Revoked => "it has been revoked".into(),
        // The verifier's own reasons (a CA certificate served as the
        // server's, say) and the variants with context read well as rustls
        // words them.
        Why::Other(other) => other.to_string(),
        other => other.to_string(),
    }
}

/// The one thing to do about a refused certificate.
fn certificate_step(why: &rustls::CertificateError) -> String {
    use rustls::CertificateError as Why;
    // A file that cannot be read leaves nothing trusted: that comes first.
    if let Some(file) = std::env::var_os("SSL_CERT_FILE")
        && let Err(err) = std::fs::metadata(&file)
    {
        let file = std::path::Path::new(&file).display();
        return format!("SSL_CERT_FILE ({file}) cannot be read ({err}): point it at a PEM file of the CAs to trust.");
    }
    match why {
        Why::UnknownIssuer | Why::BadSignature => match std::env::var_os("SSL_CERT_FILE") {
            Some(file) => format!(
                "SSL_CERT_FILE ({}) holds no authority that signed it: point it at the PEM file of the CA that did.",
                std::path::Path::new(&file).display()
            ),
            None => "If your organisation runs its own CA, add it to this machine's trust store \
                     (update-ca-certificates), or set SSL_CERT_FILE to its PEM file."
                .to_string(),
        },
        Why::NotValidForName | Why::NotValidForNameContext { .. } => {
            "Use the name the certificate was made for in the URL.".to_string()
        }
        _ => "Tell the registry's operators: its certificate must be renewed or replaced.".to_string(),
    }
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
            code: HTTP_ERROR.into(),
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
