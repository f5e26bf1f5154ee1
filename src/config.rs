//! Configuration: environment variables, mirrored by command-line flags of
//! `gren-registry serve`. Every knob is documented in README.md.

use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Names that would confuse people or tools if a user owned them: the
/// registry's own words, mail roles, and Windows device names (which cannot
/// be file names there).
pub const DEFAULT_RESERVED: &str = "admin,administrator,api,registry,www,root,gren,help,support,security,abuse,\
    mail,postmaster,webmaster,hostmaster,noreply,no-reply,login,logout,session,user,users,package,packages,\
    publishing-identity,identity,static,assets,con,prn,aux,nul,com1,com2,com3,com4,com5,com6,com7,com8,com9,\
    lpt1,lpt2,lpt3,lpt4,lpt5,lpt6,lpt7,lpt8,lpt9";

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

    #[arg(
        long,
        env = "GREN_REGISTRY_POSTMARK_URL",
        default_value = "https://api.postmarkapp.com"
    )]
    pub postmark_url: String,

    #[arg(long, env = "GREN_REGISTRY_MAIL_FROM", default_value = "no-reply@gren-lang.org")]
    pub mail_from: String,

    /// Days a session token stays valid.
    #[arg(long, env = "GREN_REGISTRY_SESSION_DAYS", default_value_t = 90)]
    pub session_days: u64,

    /// Logins that may be started per e-mail address per hour.
    #[arg(long, env = "GREN_REGISTRY_LOGIN_LIMIT_PER_EMAIL", default_value_t = 5)]
    pub login_limit_per_email: u32,

    /// Logins that may be started per client IP address per hour.
    #[arg(long, env = "GREN_REGISTRY_LOGIN_LIMIT_PER_IP", default_value_t = 30)]
    pub login_limit_per_ip: u32,

    /// Identities a user may create per day.
    #[arg(long, env = "GREN_REGISTRY_IDENTITY_LIMIT_PER_DAY", default_value_t = 10)]
    pub identity_limit_per_day: u32,

    /// Identity names users may not take (operators still can), comma-separated.
    #[arg(long, env = "GREN_REGISTRY_RESERVED_IDENTITIES", value_delimiter = ',', default_value = DEFAULT_RESERVED)]
    pub reserved_identities: Vec<String>,

    /// Member changes (invitations, role changes, removals, cancellations)
    /// one user may make per hour, across identities.
    #[arg(long, env = "GREN_REGISTRY_MEMBER_CHANGE_LIMIT_PER_HOUR", default_value_t = 30)]
    pub member_change_limit_per_hour: u32,

    /// Membership e-mails (invitations, role changes) one address may get per
    /// hour; past it, changes are still made, without e-mail.
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

    /// Publishes and revocations a user may make per hour.
    #[arg(long, env = "GREN_REGISTRY_PUBLISH_LIMIT_PER_HOUR", default_value_t = 60)]
    pub publish_limit_per_hour: u32,

    /// The packages site to tell about publishes and revocations
    /// (`POST <url>/import/init`); unset: nobody is told.
    #[arg(long, env = "GREN_REGISTRY_PACKAGE_SITE_URL")]
    pub package_site_url: Option<String>,

    /// Key for the `X-Gren-Registry-Signature` HMAC-SHA256 header on those calls.
    #[arg(long, env = "GREN_REGISTRY_PACKAGE_SITE_SECRET", hide_env_values = true)]
    pub package_site_secret: Option<String>,

    /// Reverse proxies (IP addresses, comma-separated) whose
    /// `X-Forwarded-For` names the real client, for per-IP limits and logs.
    #[arg(long, env = "GREN_REGISTRY_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// Connections served at once; more are answered 503.
    #[arg(long, env = "GREN_REGISTRY_MAX_CONNECTIONS", default_value_t = 256)]
    pub max_connections: usize,

    /// Seconds a request head may take from its first byte, and a body read
    /// may go without progress.
    #[arg(long, env = "GREN_REGISTRY_REQUEST_TIMEOUT", default_value_t = 10)]
    pub request_timeout_secs: u64,
}

impl Config {
    pub fn session_lifetime(&self) -> Duration {
        Duration::from_secs(self.session_days * 24 * 60 * 60)
    }

    /// The public URL without a trailing slash, given the address actually bound.
    pub fn public_url_for(&self, bound: std::net::SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{bound}"),
        }
    }
}
