//! Configuration: environment variables, mirrored by command-line flags of
//! `gren-registry serve`. Every knob is documented in README.md.

use clap::Args;
use gren_registry_core::auth::git_token;
use gren_registry_core::package::publish::DEFAULT_KERNEL_CODE_AUTHORS;
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::time::Duration;

/// Longest session lifetime: a century keeps every expiry far inside what a
/// timestamp can hold and print (RFC 3339 ends with the year 9999).
pub const MAX_SESSION_DAYS: u64 = 36_500;
/// Longest request timeout: an hour is already far beyond any real client,
/// and deadlines computed from it can never overflow.
pub const MAX_REQUEST_TIMEOUT_SECS: u64 = 60 * 60;
/// Handlers at once: each is a thread, and a thousand is far beyond what
/// the registry's work needs.
pub const MAX_HANDLERS: usize = 1_000;
/// Longer than any service manager waits for a stop (systemd: 90 s by default).
pub const MAX_SHUTDOWN_GRACE_SECS: u64 = 300;
/// The second purge closes a window of one response's time: an hour is far
/// beyond it, and a repeat held in memory longer is likelier lost to a restart.
pub const MAX_PURGE_REPEAT_SECS: u64 = 60 * 60;

/// Where the Gren compiler fetches packages from when nobody redirects it.
pub const DEFAULT_GIT_FALLBACK: &str = "https://github.com";

/// Names that would confuse people or tools if a user owned them: the
/// language's own identity (`gren-lang`, which ships the core packages and,
/// by default, kernel code), the registry's own words, mail roles, and
/// Windows device names (which cannot be file names there).
pub const DEFAULT_RESERVED: &str = "gren-lang,admin,administrator,api,registry,www,root,gren,help,support,security,abuse,\
    mail,postmaster,webmaster,hostmaster,noreply,no-reply,login,logout,session,user,users,package,packages,\
    publishing-identity,identity,static,assets,con,prn,aux,nul,com1,com2,com3,com4,com5,com6,com7,com8,com9,\
    lpt1,lpt2,lpt3,lpt4,lpt5,lpt6,lpt7,lpt8,lpt9";

// Each flag is named after its variable (`--request-timeout` for
// GREN_REGISTRY_REQUEST_TIMEOUT); names it had before are hidden aliases.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Directory holding every record and bundle.
    #[arg(long, env = "GREN_REGISTRY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "GREN_REGISTRY_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: String,

    /// Base URL used in e-mailed links [default: http://<listen address>].
    #[arg(long, env = "GREN_REGISTRY_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Postmark server token; without it, e-mails are written to <data-dir>/mail
    /// and printed to the log.
    #[arg(long, env = "POSTMARK_SERVER_TOKEN", hide_env_values = true)]
    pub postmark_server_token: Option<String>,

    /// Base URL of Postmark's API (a stub's, in tests).
    #[arg(
        long,
        env = "GREN_REGISTRY_POSTMARK_URL",
        default_value = "https://api.postmarkapp.com"
    )]
    pub postmark_url: String,

    /// Sender of every e-mail: an address, with an optional name
    /// (`Gren <no-reply@gren-lang.org>`).
    #[arg(long, env = "GREN_REGISTRY_MAIL_FROM", default_value = "no-reply@gren-lang.org")]
    pub mail_from: String,

    /// Days a session token stays valid.
    #[arg(long, env = "GREN_REGISTRY_SESSION_DAYS", default_value_t = 90)]
    pub session_days: u64,

    /// Logins that may be started per e-mail address from one client network
    /// (an IPv4 address, an IPv6 /64) per hour; `+tag` variants count as the
    /// address.
    #[arg(long, env = "GREN_REGISTRY_LOGIN_LIMIT_PER_EMAIL", default_value_t = 5)]
    pub login_limit_per_email: u32,

    /// Logins that may be started per e-mail address from all networks
    /// together per hour (against mail bombing); networks the address holds
    /// a live session from are exempt.
    #[arg(long, env = "GREN_REGISTRY_LOGIN_LIMIT_PER_EMAIL_TOTAL", default_value_t = 20)]
    pub login_limit_per_email_total: u32,

    /// Logins that may be started per client IP address per hour.
    #[arg(long, env = "GREN_REGISTRY_LOGIN_LIMIT_PER_IP", default_value_t = 30)]
    pub login_limit_per_ip: u32,

    /// Identities a user may create per day; also the publishes refused per
    /// day as file-name collisions, which tell of private packages too.
    #[arg(long, env = "GREN_REGISTRY_IDENTITY_LIMIT_PER_DAY", default_value_t = 10)]
    pub identity_limit_per_day: u32,

    /// Identity names users may not take (operators still can), comma-separated.
    #[arg(long, env = "GREN_REGISTRY_RESERVED_IDENTITIES", value_delimiter = ',', default_value = DEFAULT_RESERVED)]
    pub reserved_identities: Vec<String>,

    /// Identities whose packages may contain kernel JavaScript
    /// (`Gren.Kernel.*` sources), comma-separated. Kernel code runs unchecked
    /// in every program that depends on the package, so this is an operator's
    /// decision, not a privilege of whoever holds a name.
    #[arg(
        long,
        env = "GREN_REGISTRY_KERNEL_CODE_AUTHORS",
        value_delimiter = ',',
        default_value = DEFAULT_KERNEL_CODE_AUTHORS
    )]
    pub kernel_code_authors: Vec<String>,

    /// Member changes (invitations, role changes, removals, cancellations)
    /// one user may make per hour, across identities.
    #[arg(long, env = "GREN_REGISTRY_MEMBER_CHANGE_LIMIT_PER_HOUR", default_value_t = 30)]
    pub member_change_limit_per_hour: u32,

    /// Membership e-mails (invitations, role changes) one mailbox (an address
    /// without its `+tag`) may get per hour; past it, changes are still
    /// made, without e-mail.
    #[arg(long, env = "GREN_REGISTRY_MEMBER_MAIL_LIMIT_PER_EMAIL", default_value_t = 5)]
    pub member_mail_limit_per_email: u32,

    /// Invitations an identity may have pending at once; more are refused (409).
    #[arg(long, env = "GREN_REGISTRY_PENDING_INVITATIONS_PER_IDENTITY", default_value_t = 20)]
    pub pending_invitations_per_identity: usize,

    /// Largest bundle upload (compressed), checked before it is read.
    #[arg(long, env = "GREN_REGISTRY_MAX_BUNDLE_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_bundle_bytes: u64,

    /// Largest inflated bundle, enforced while inflating.
    #[arg(long, env = "GREN_REGISTRY_MAX_INFLATED_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_inflated_bytes: u64,

    /// Bytes of bundle uploads in flight at once (reserved from each
    /// upload's Content-Length before its body is read); more wait, then 503.
    #[arg(long, env = "GREN_REGISTRY_UPLOAD_BUDGET_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub upload_budget_bytes: u64,

    /// Bundles inflated and checked at once; more wait, then 503.
    #[arg(long, env = "GREN_REGISTRY_MAX_INFLATIONS", default_value_t = 2)]
    pub max_inflations: u64,

    /// Publishes and revocations a user may make per hour.
    #[arg(long, env = "GREN_REGISTRY_PUBLISH_LIMIT_PER_HOUR", default_value_t = 60)]
    pub publish_limit_per_hour: u32,

    /// The packages site to tell about publishes, revocations and privacy
    /// changes (`POST <url>/import/init`); unset: nobody is told.
    #[arg(long, env = "GREN_REGISTRY_PACKAGE_SITE_URL")]
    pub package_site_url: Option<String>,

    /// Key of the HMAC-SHA256 `Gren-Registry-Signature` header (time, event
    /// and body) on those calls.
    #[arg(long, env = "GREN_REGISTRY_PACKAGE_SITE_SECRET", hide_env_values = true)]
    pub package_site_secret: Option<String>,

    /// Shared caches (Varnish, a CDN's purge API) to tell, after every
    /// publish, revocation and privacy change, to drop the package's cached
    /// answers and the listings (`POST <url>` with `Surrogate-Key`),
    /// comma-separated; each gets every purge, in order, retried until it
    /// answers 2xx. Unset: no cache is told.
    #[arg(long, env = "GREN_REGISTRY_CACHE_PURGE_URLS", value_delimiter = ',')]
    pub cache_purge_urls: Vec<String>,

    /// The shared secret purges carry (in GREN_REGISTRY_CACHE_PURGE_HEADER);
    /// required with GREN_REGISTRY_CACHE_PURGE_URLS.
    #[arg(long, env = "GREN_REGISTRY_CACHE_PURGE_SECRET", hide_env_values = true)]
    pub cache_purge_secret: Option<String>,

    /// The header that carries the purge secret (`Fastly-Key` for Fastly's
    /// purge API).
    #[arg(long, env = "GREN_REGISTRY_CACHE_PURGE_HEADER", default_value = "X-Purge-Secret")]
    pub cache_purge_header: String,

    /// Seconds after each purge that the cache is purged of the same keys
    /// again: an answer the registry gave just before a change can reach
    /// the cache just after the change's purge, and be kept. 0: purged once.
    #[arg(
        long = "cache-purge-repeat",
        env = "GREN_REGISTRY_CACHE_PURGE_REPEAT",
        default_value_t = 5,
        value_name = "SECONDS"
    )]
    pub cache_purge_repeat_secs: u64,

    /// Reverse proxies (IP addresses, comma-separated) whose
    /// `X-Forwarded-For` names the real client, for per-IP limits and logs.
    #[arg(long, env = "GREN_REGISTRY_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// Connections open at once, idle keep-alive ones included; more are
    /// answered 503. Lowered at start to what the open-files limit allows.
    #[arg(long, env = "GREN_REGISTRY_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Connections open at once from one client (an IPv4 address, an IPv6
    /// /64); trusted proxies are exempt. More are answered 503.
    #[arg(long, env = "GREN_REGISTRY_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 32)]
    pub max_connections_per_client: usize,

    /// Requests in handlers at once, each on a thread of its own; more wait
    /// up to 2 s for one, then are answered 503.
    #[arg(long, env = "GREN_REGISTRY_MAX_HANDLERS", default_value_t = 64)]
    pub max_handlers: usize,

    /// Seconds a request head may take from its first byte, and a body read
    /// may go without progress.
    #[arg(
        long = "request-timeout",
        alias = "request-timeout-secs",
        env = "GREN_REGISTRY_REQUEST_TIMEOUT",
        default_value_t = 10,
        value_name = "SECONDS"
    )]
    pub request_timeout_secs: u64,

    /// Seconds an idle keep-alive connection is kept open for its next request.
    #[arg(
        long = "keep-alive",
        alias = "keep-alive-secs",
        env = "GREN_REGISTRY_KEEP_ALIVE",
        default_value_t = 5,
        value_name = "SECONDS"
    )]
    pub keep_alive_secs: u64,

    /// Seconds in-flight requests may go on after SIGTERM or SIGINT before
    /// they are abandoned and the process exits.
    #[arg(
        long = "shutdown-grace",
        alias = "shutdown-grace-secs",
        env = "GREN_REGISTRY_SHUTDOWN_GRACE",
        default_value_t = 5,
        value_name = "SECONDS"
    )]
    pub shutdown_grace_secs: u64,

    /// Where git requests for authors the registry does not serve are
    /// redirected (302, same path): `/git/<author>/…` of no identity, and
    /// `/github/<author>/…` of no identity linked to that GitHub owner;
    /// empty: they are answered 404.
    #[arg(long, env = "GREN_REGISTRY_GIT_FALLBACK", default_value = DEFAULT_GIT_FALLBACK)]
    pub git_fallback: String,

    /// git processes serving fetches at once; as many more requests wait up
    /// to 3 s for one, then 503; past those, 503 at once.
    #[arg(long, env = "GREN_REGISTRY_GIT_PROCESSES", default_value_t = 4)]
    pub git_processes: u64,

    /// Seconds a git process serving a fetch may run before it is stopped.
    #[arg(
        long = "git-timeout",
        alias = "git-timeout-secs",
        env = "GREN_REGISTRY_GIT_TIMEOUT",
        default_value_t = 60,
        value_name = "SECONDS"
    )]
    pub git_timeout_secs: u64,

    /// Seconds a git token (what `gren-registry git-credential` gives git,
    /// for fetches only) lasts.
    #[arg(
        long = "git-token-seconds",
        alias = "git-token-secs",
        env = "GREN_REGISTRY_GIT_TOKEN_SECONDS",
        default_value_t = 600,
        value_name = "SECONDS"
    )]
    pub git_token_secs: u64,
}

impl Config {
    /// Checks every setting before anything is opened or served, naming each
    /// bad one by its environment variable (the flag mirrors it). One rule
    /// per line: a new setting adds its line here.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Problems::default();
        problems.require(
            "GREN_REGISTRY_DATA_DIR",
            !self.data_dir.as_os_str().is_empty(),
            || "must not be empty",
        );
        problems.listen_address("GREN_REGISTRY_LISTEN", &self.listen);
        problems.http_url("GREN_REGISTRY_PUBLIC_URL", self.public_url.as_deref());
        problems.http_url("GREN_REGISTRY_POSTMARK_URL", Some(&self.postmark_url));
        problems.mail_from("GREN_REGISTRY_MAIL_FROM", &self.mail_from);
        problems.at_most(
            "GREN_REGISTRY_SESSION_DAYS",
            self.session_days,
            MAX_SESSION_DAYS,
            "(100 years)",
        );
        problems.at_least_one("GREN_REGISTRY_LOGIN_LIMIT_PER_EMAIL", self.login_limit_per_email.into());
        problems.at_least_one(
            "GREN_REGISTRY_LOGIN_LIMIT_PER_EMAIL_TOTAL",
            self.login_limit_per_email_total.into(),
        );
        problems.at_least_one("GREN_REGISTRY_LOGIN_LIMIT_PER_IP", self.login_limit_per_ip.into());
        problems.at_least_one(
            "GREN_REGISTRY_IDENTITY_LIMIT_PER_DAY",
            self.identity_limit_per_day.into(),
        );
        problems.at_least_one("GREN_REGISTRY_MAX_BUNDLE_BYTES", self.max_bundle_bytes);
        problems.at_least_one("GREN_REGISTRY_MAX_INFLATED_BYTES", self.max_inflated_bytes);
        problems.at_least_one(
            "GREN_REGISTRY_PUBLISH_LIMIT_PER_HOUR",
            self.publish_limit_per_hour.into(),
        );
        problems.http_url("GREN_REGISTRY_PACKAGE_SITE_URL", self.package_site_url.as_deref());
        let secret_set = self
            .package_site_secret
            .as_deref()
            .is_none_or(|secret| !secret.is_empty());
        problems.require(
            "GREN_REGISTRY_PACKAGE_SITE_SECRET",
            secret_set,
            || "must not be empty (unset it instead)",
        );
        for url in &self.cache_purge_urls {
            problems.http_url("GREN_REGISTRY_CACHE_PURGE_URLS", Some(url));
            // The secret goes in a header; a URL is logged and stored.
            problems.require(
                "GREN_REGISTRY_CACHE_PURGE_URLS",
                !url.contains('@'),
                || "must not carry credentials (the secret goes in GREN_REGISTRY_CACHE_PURGE_SECRET)",
            );
        }
        let purge_secret = self.cache_purge_secret.as_deref().unwrap_or_default();
        problems.require(
            "GREN_REGISTRY_CACHE_PURGE_SECRET",
            self.cache_purge_urls.is_empty() || purge_secret.len() >= 16,
            || "must be set, at least 16 characters, when GREN_REGISTRY_CACHE_PURGE_URLS is",
        );
        let header_ok = !self.cache_purge_header.is_empty()
            && self
                .cache_purge_header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        problems.require(
            "GREN_REGISTRY_CACHE_PURGE_HEADER",
            header_ok,
            || "must be a header name (letters, digits, `-`)",
        );
        problems.at_most(
            "GREN_REGISTRY_CACHE_PURGE_REPEAT",
            self.cache_purge_repeat_secs,
            MAX_PURGE_REPEAT_SECS,
            "seconds",
        );
        problems.at_least_one("GREN_REGISTRY_MAX_CONNECTIONS", self.max_connections as u64);
        problems.at_least_one("GREN_REGISTRY_MAX_HANDLERS", self.max_handlers as u64);
        problems.at_most(
            "GREN_REGISTRY_MAX_HANDLERS",
            self.max_handlers as u64,
            MAX_HANDLERS as u64,
            "(each is a thread)",
        );
        problems.at_least_one("GREN_REGISTRY_REQUEST_TIMEOUT", self.request_timeout_secs);
        problems.at_most(
            "GREN_REGISTRY_REQUEST_TIMEOUT",
            self.request_timeout_secs,
            MAX_REQUEST_TIMEOUT_SECS,
            "seconds",
        );
        problems.at_least_one("GREN_REGISTRY_KEEP_ALIVE", self.keep_alive_secs);
        problems.at_most(
            "GREN_REGISTRY_KEEP_ALIVE",
            self.keep_alive_secs,
            MAX_REQUEST_TIMEOUT_SECS,
            "seconds",
        );
        problems.at_least_one(
            "GREN_REGISTRY_MEMBER_CHANGE_LIMIT_PER_HOUR",
            self.member_change_limit_per_hour.into(),
        );
        problems.at_least_one(
            "GREN_REGISTRY_MEMBER_MAIL_LIMIT_PER_EMAIL",
            self.member_mail_limit_per_email.into(),
        );
        problems.at_least_one(
            "GREN_REGISTRY_PENDING_INVITATIONS_PER_IDENTITY",
            self.pending_invitations_per_identity as u64,
        );
        problems.at_least_one("GREN_REGISTRY_UPLOAD_BUDGET_BYTES", self.upload_budget_bytes);
        problems.at_least_one("GREN_REGISTRY_MAX_INFLATIONS", self.max_inflations);
        problems.at_least_one(
            "GREN_REGISTRY_MAX_CONNECTIONS_PER_CLIENT",
            self.max_connections_per_client as u64,
        );
        if !self.git_fallback.is_empty() {
            problems.http_url("GREN_REGISTRY_GIT_FALLBACK", Some(&self.git_fallback));
        }
        problems.at_least_one("GREN_REGISTRY_GIT_PROCESSES", self.git_processes);
        problems.at_least_one("GREN_REGISTRY_GIT_TIMEOUT", self.git_timeout_secs);
        problems.at_most(
            "GREN_REGISTRY_GIT_TIMEOUT",
            self.git_timeout_secs,
            MAX_REQUEST_TIMEOUT_SECS,
            "seconds",
        );
        problems.at_least_one("GREN_REGISTRY_GIT_TOKEN_SECONDS", self.git_token_secs);
        problems.at_most(
            "GREN_REGISTRY_GIT_TOKEN_SECONDS",
            self.git_token_secs,
            git_token::MAX_LIFETIME.as_secs(),
            "seconds",
        );
        problems.at_most(
            "GREN_REGISTRY_SHUTDOWN_GRACE",
            self.shutdown_grace_secs,
            MAX_SHUTDOWN_GRACE_SECS,
            "seconds",
        );
        problems.into_result()
    }

    /// Saturates rather than overflows; [`Config::validate`] keeps it far
    /// below that anyway.
    pub fn session_lifetime(&self) -> Duration {
        Duration::from_secs(self.session_days.saturating_mul(24 * 60 * 60))
    }

    /// The public URL without a trailing slash, given the address actually bound.
    pub fn public_url_for(&self, bound: std::net::SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{bound}"),
        }
    }
}

/// What is wrong with a configuration: one sentence per bad setting.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn require<T: std::fmt::Display>(&mut self, variable: &str, ok: bool, requirement: impl FnOnce() -> T) {
        if !ok {
            self.0.push(format!("{variable} {}", requirement()));
        }
    }

    fn at_least_one(&mut self, variable: &str, value: u64) {
        self.require(variable, value > 0, || "must be at least 1");
    }

    fn at_most(&mut self, variable: &str, value: u64, max: u64, unit: &str) {
        self.require(variable, value <= max, || {
            format!("must be at most {max} {unit}, not {value}")
        });
    }

    /// An absolute http(s) URL with a host and no query (paths are appended).
    fn http_url(&mut self, variable: &str, value: Option<&str>) {
        let ok = value.is_none_or(|text| {
            text.parse::<ureq::http::Uri>().is_ok_and(|uri| {
                matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.host().is_some_and(|host| !host.is_empty())
                    && uri.query().is_none()
            })
        });
        self.require(variable, ok, || {
            format!(
                "must be an http(s) URL with a host and no query, not {:?}",
                value.unwrap_or_default()
            )
        });
    }

    /// What `TcpListener::bind` accepts: a host or IP address with a port.
    fn listen_address(&mut self, variable: &str, listen: &str) {
        let ok = listen
            .to_socket_addrs()
            .is_ok_and(|mut addresses| addresses.next().is_some());
        self.require(variable, ok, || {
            format!("must be an address with a port, such as 127.0.0.1:3000, not {listen:?}")
        });
    }

    /// `me@example.org` or `Name <me@example.org>`; never a line break, which
    /// would add headers to every e-mail.
    fn mail_from(&mut self, variable: &str, from: &str) {
        let ok = from.contains('@') && !from.chars().any(char::is_control);
        self.require(variable, ok, || {
            format!("must be an e-mail address (with an optional name) on one line, not {from:?}")
        });
    }

    fn into_result(self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("invalid configuration: {}", self.0.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        config: Config,
    }

    /// The configuration the flags give, on top of the defaults.
    fn config(flags: &[&str]) -> Config {
        let args = std::iter::once("serve").chain(flags.iter().copied());
        Serve::try_parse_from(args).expect("the flags parse").config
    }

    /// Asserts the flags are refused with a message naming `variable`.
    #[track_caller]
    fn refused(flags: &[&str], variable: &str) {
        let message = config(flags).validate().expect_err("refused");
        assert!(message.contains(variable), "{flags:?}: {message}");
        assert!(message.starts_with("invalid configuration: "), "{message}");
    }

    #[test]
    fn the_defaults_are_valid() {
        config(&[]).validate().unwrap();
    }

    #[test]
    fn git_tokens_last_a_second_to_an_hour() {
        assert_eq!(config(&[]).git_token_secs, 600);
        config(&["--git-token-secs", "1"]).validate().unwrap();
        config(&["--git-token-secs", "3600"]).validate().unwrap();
        refused(&["--git-token-secs", "0"], "GREN_REGISTRY_GIT_TOKEN_SECONDS");
        refused(&["--git-token-secs", "3601"], "GREN_REGISTRY_GIT_TOKEN_SECONDS");
    }

    #[test]
    fn session_days_stop_at_a_century() {
        config(&["--session-days", "0"]).validate().unwrap();
        config(&["--session-days", "36500"]).validate().unwrap();
        refused(&["--session-days", "36501"], "GREN_REGISTRY_SESSION_DAYS");
        refused(&["--session-days", "3000000"], "GREN_REGISTRY_SESSION_DAYS");
        assert_eq!(
            config(&["--session-days", &u64::MAX.to_string()]).session_lifetime(),
            Duration::from_secs(u64::MAX),
            "the lifetime saturates rather than overflows"
        );
    }

    #[test]
    fn limits_must_be_at_least_one() {
        for (flag, variable) in [
            ("--login-limit-per-email", "GREN_REGISTRY_LOGIN_LIMIT_PER_EMAIL"),
            (
                "--login-limit-per-email-total",
                "GREN_REGISTRY_LOGIN_LIMIT_PER_EMAIL_TOTAL",
            ),
            ("--login-limit-per-ip", "GREN_REGISTRY_LOGIN_LIMIT_PER_IP"),
            ("--identity-limit-per-day", "GREN_REGISTRY_IDENTITY_LIMIT_PER_DAY"),
            ("--max-bundle-bytes", "GREN_REGISTRY_MAX_BUNDLE_BYTES"),
            ("--max-inflated-bytes", "GREN_REGISTRY_MAX_INFLATED_BYTES"),
            ("--publish-limit-per-hour", "GREN_REGISTRY_PUBLISH_LIMIT_PER_HOUR"),
            ("--max-connections", "GREN_REGISTRY_MAX_CONNECTIONS"),
            ("--max-handlers", "GREN_REGISTRY_MAX_HANDLERS"),
            ("--git-processes", "GREN_REGISTRY_GIT_PROCESSES"),
            ("--git-timeout-secs", "GREN_REGISTRY_GIT_TIMEOUT"),
        ] {
            refused(&[flag, "0"], variable);
            config(&[flag, "1"]).validate().unwrap();
        }
    }

    #[test]
    fn the_keep_alive_is_one_second_to_an_hour() {
        refused(&["--keep-alive-secs", "0"], "GREN_REGISTRY_KEEP_ALIVE");
        refused(&["--keep-alive-secs", "3601"], "GREN_REGISTRY_KEEP_ALIVE");
        config(&["--keep-alive-secs", "3600"]).validate().unwrap();
    }

    #[test]
    fn handlers_are_at_most_a_thousand() {
        config(&["--max-handlers", "1000"]).validate().unwrap();
        refused(&["--max-handlers", "1001"], "GREN_REGISTRY_MAX_HANDLERS");
    }

    #[test]
    fn the_git_fallback_is_an_http_url_or_empty_for_none() {
        config(&["--git-fallback", ""]).validate().unwrap();
        config(&["--git-fallback", "https://git.example.org/base"])
            .validate()
            .unwrap();
        refused(&["--git-fallback", "github.com"], "GREN_REGISTRY_GIT_FALLBACK");
        refused(&["--git-timeout-secs", "3601"], "GREN_REGISTRY_GIT_TIMEOUT");
    }

    #[test]
    fn the_request_timeout_is_one_second_to_an_hour() {
        refused(&["--request-timeout-secs", "0"], "GREN_REGISTRY_REQUEST_TIMEOUT");
        refused(&["--request-timeout-secs", "3601"], "GREN_REGISTRY_REQUEST_TIMEOUT");
        refused(
            &["--request-timeout-secs", &u64::MAX.to_string()],
            "GREN_REGISTRY_REQUEST_TIMEOUT",
        );
        config(&["--request-timeout-secs", "3600"]).validate().unwrap();
    }

    #[test]
    fn urls_must_be_http_or_https_with_a_host_and_no_query() {
        for (flag, variable) in [
            ("--public-url", "GREN_REGISTRY_PUBLIC_URL"),
            ("--postmark-url", "GREN_REGISTRY_POSTMARK_URL"),
            ("--package-site-url", "GREN_REGISTRY_PACKAGE_SITE_URL"),
        ] {
            for bad in [
                "",
                "registry.example.com",
                "ftp://example.com",
                "http://",
                "https://x.org/?a=1",
                "http://a b",
            ] {
                refused(&[flag, bad], variable);
            }
            for good in [
                "https://registry.example.com",
                "http://127.0.0.1:3000/",
                "https://x.org/registry",
            ] {
                config(&[flag, good]).validate().unwrap();
            }
        }
    }

    #[test]
    fn the_listen_address_needs_a_port() {
        refused(&["--listen", "not an address"], "GREN_REGISTRY_LISTEN");
        refused(&["--listen", "127.0.0.1"], "GREN_REGISTRY_LISTEN");
        refused(&["--listen", "127.0.0.1:99999"], "GREN_REGISTRY_LISTEN");
        config(&["--listen", "[::1]:0"]).validate().unwrap();
    }

    #[test]
    fn the_sender_is_an_address_on_one_line() {
        refused(&["--mail-from", ""], "GREN_REGISTRY_MAIL_FROM");
        refused(&["--mail-from", "nobody"], "GREN_REGISTRY_MAIL_FROM");
        refused(
            &["--mail-from", "a@example.org\r\nBcc: b@example.org"],
            "GREN_REGISTRY_MAIL_FROM",
        );
        config(&["--mail-from", "Gren <login@example.org>"]).validate().unwrap();
    }

    #[test]
    fn the_data_directory_and_the_package_site_secret_must_not_be_empty() {
        // clap refuses an empty path itself; a Config built in code may not.
        let mut unset = config(&[]);
        unset.data_dir = PathBuf::new();
        assert!(unset.validate().unwrap_err().contains("GREN_REGISTRY_DATA_DIR"));
        refused(&["--package-site-secret", ""], "GREN_REGISTRY_PACKAGE_SITE_SECRET");
        config(&["--package-site-secret", "s3cret"]).validate().unwrap();
    }

    #[test]
    fn cache_purges_need_http_urls_without_credentials_and_a_secret() {
        let secret = "0123456789abcdef";
        let urls = "http://127.0.0.1:6081/.gren-registry/purge,https://api.fastly.com/service/x/purge";
        config(&["--cache-purge-urls", urls, "--cache-purge-secret", secret])
            .validate()
            .unwrap();
        refused(&["--cache-purge-urls", urls], "GREN_REGISTRY_CACHE_PURGE_SECRET");
        refused(
            &["--cache-purge-urls", urls, "--cache-purge-secret", "short"],
            "GREN_REGISTRY_CACHE_PURGE_SECRET",
        );
        for bad in ["varnish:6081", "http://user:pass@varnish/purge", "ftp://varnish/"] {
            refused(
                &["--cache-purge-urls", bad, "--cache-purge-secret", secret],
                "GREN_REGISTRY_CACHE_PURGE_URLS",
            );
        }
        refused(&["--cache-purge-header", "X Bad:"], "GREN_REGISTRY_CACHE_PURGE_HEADER");
        refused(&["--cache-purge-repeat", "3601"], "GREN_REGISTRY_CACHE_PURGE_REPEAT");
        config(&["--cache-purge-repeat", "0"]).validate().unwrap();
        let message = config(&["--cache-purge-urls", "http://a@b/", "--cache-purge-secret", "x"])
            .validate()
            .unwrap_err();
        assert!(!message.contains("\"x\""), "the secret is not echoed: {message}");
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let message = config(&["--session-days", "3000000", "--login-limit-per-ip", "0"])
            .validate()
            .unwrap_err();
        assert!(
            message.contains("GREN_REGISTRY_SESSION_DAYS") && message.contains("3000000"),
            "{message}"
        );
        assert!(message.contains("GREN_REGISTRY_LOGIN_LIMIT_PER_IP"), "{message}");
    }
}
