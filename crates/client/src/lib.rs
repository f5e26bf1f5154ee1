//! The command-line client: `login`, `logout`, `whoami`, `publish`, `revoke`,
//! `identity`, `token`, `private`, `info`, `search`, `install` and `setup-git` (with its git
//! credential helper), speaking the registry's HTTP API. It
//! is the reference for how the `gren` CLI talks to a registry.

mod browse;
mod credentials;
mod git;
mod install;
mod login;
pub mod project;
mod registry;
mod remote;
mod token;

use clap::{Args, Subcommand};
use gren_registry_core::api::{
    Empty, IdentityPage, IdentityRequest, InvitationList, MemberAnswer, MemberRequest, PackagePage, PrivacyRequest,
    PublishReceipt, RevokeRequest, UserAnswer,
};
use gren_registry_core::bundle::outline::KernelCode;
use gren_registry_core::identity::{Member, Role};
use gren_registry_core::package::{PackageName, Version};
use remote::RemoteRegistry;
use serde::de::IgnoredAny;
use std::fmt;
use std::path::PathBuf;

pub use gren_registry_core::api::DEFAULT_REGISTRY;

/// A failure, worded for the person at the terminal: what went wrong and,
/// where there is one, what to do next.
#[derive(Debug)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

/// A bundle the client reads or builds, refused as the registry would.
impl From<gren_registry_core::bundle::BundleError> for CliError {
    fn from(err: gren_registry_core::bundle::BundleError) -> CliError {
        CliError(err.to_string())
    }
}

pub type CliResult<T> = Result<T, CliError>;

// The client's options. The command line gives them to each client command
// (global: below `identity` too), not to `serve` or `admin`. Not a doc
// comment: clap would make it the `about` of every command it is given to,
// hiding each command's own summary in `--help`.
#[derive(Debug, Args)]
pub struct Target {
    /// The registry to talk to (its base URL) [default: the one you last
    /// logged in to, else http://127.0.0.1:3000].
    // No default_value: whether it was given decides (see `registry::choose`).
    #[arg(long, env = "GREN_REGISTRY_URL", global = true, value_name = "URL")]
    pub registry: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Log in by e-mail (a code or a link) and store the token in ~/.gren/user.
    Login {
        /// Your e-mail address (asked for when not given); the code and link go there.
        #[arg(long)]
        email: Option<String>,
    },
    /// Revoke the stored token and forget it.
    Logout,
    /// Show who the stored token belongs to.
    Whoami,
    /// Publish a bundle file, or a package project directory (default: .).
    Publish {
        /// A project directory (with gren.json) or a bundle file [default: .].
        path: Option<PathBuf>,
        /// Validate and show what would be published, then stop.
        #[arg(long)]
        dry_run: bool,
        /// Make the package private (on its first publish).
        #[arg(long)]
        private: bool,
    },
    /// Revoke a version: it stays listed, its content is removed.
    Revoke {
        /// The package, as author/project.
        package: String,
        /// The version to revoke, X.Y.Z.
        version: String,
        /// Why, for the people who depend on it (shown with the version).
        #[arg(long)]
        reason: String,
    },
    /// Publishing identities and their members.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Automation tokens, for publishing from CI (GREN_REGISTRY_TOKEN).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Make a package private or public, or show which it is.
    Private {
        /// The package, as author/project.
        package: String,
        /// on: only the identity's members (and tokens with its download
        /// scope) see it; off: everyone does [default: show the current setting].
        #[arg(value_parser = ["on", "off"])]
        setting: Option<String>,
    },
    /// Show a package: its versions (revoked ones marked), latest version and summary.
    Info {
        /// The package, as author/project.
        package: String,
        /// The compiler version to find the latest version for, X.Y.Z
        /// [default: the latest version for any compiler].
        #[arg(long, value_name = "X.Y.Z")]
        gren: Option<String>,
    },
    /// Find packages whose name or summary contains all the given words.
    ///
    /// Ignores case, and includes the private packages you may see. For now
    /// the client fetches the registry's whole listing (GET /packages) and
    /// filters it itself.
    Search {
        /// The words to look for.
        #[arg(required = true)]
        words: Vec<String>,
    },
    /// Download a project's dependencies into <DIR>/gren_packages.
    Install {
        /// The application or package project (with gren.json) [default: .].
        dir: Option<PathBuf>,
    },
    /// Let the Gren compiler install from this registry (git configuration).
    ///
    /// Adds to your global git configuration an `insteadOf` sending
    /// https://github.com/ here, and a credential helper (this program) for
    /// private packages. The registry answers there only for identities
    /// linked to the GitHub owner of their name; everything else goes on to
    /// GitHub.
    SetupGit {
        /// Take out what `setup-git` added (every `--identity` included).
        #[arg(long)]
        remove: bool,
        /// Also take https://github.com/<NAME>/… from this registry's
        /// identity NAME although it is not linked to that GitHub owner:
        /// you trust whoever holds NAME here with those URLs. Repeatable.
        #[arg(long = "identity", value_name = "NAME", conflicts_with = "remove")]
        identities: Vec<String>,
    },
    /// git's credential helper for this registry, which `setup-git` sets up:
    /// `get` answers, for this registry's host only, with a git token (minutes
    /// long, for fetches only) made from GREN_REGISTRY_TOKEN or the stored login.
    #[command(hide = true)]
    GitCredential {
        /// What git asks: get, store or erase (only get answers).
        operation: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Create an identity; you become its admin.
    Create {
        /// The identity's name: the author part of its package names.
        name: String,
    },
    /// Show an identity, its members and packages (and, to admins, its pending invitations).
    Show {
        /// The identity's name.
        name: String,
    },
    /// Invite someone with a role; they become a member once they accept.
    Add {
        /// The identity's name.
        name: String,
        /// The e-mail address of the person to invite.
        email: String,
        /// What they may do: download its private packages, publish, or
        /// also manage its members (admin).
        #[arg(long, default_value = "publish", value_parser = Role::ALL.map(Role::as_str))]
        role: String,
    },
    /// Remove a member, or cancel their invitation.
    Remove {
        /// The identity's name.
        name: String,
        /// The member's (or the invited person's) e-mail address.
        email: String,
    },
    /// Change a member's role (or the role an invitation offers).
    Role {
        /// The identity's name.
        name: String,
        /// The member's (or the invited person's) e-mail address.
        email: String,
        /// The new role.
        #[arg(value_parser = Role::ALL.map(Role::as_str))]
        role: String,
    },
    /// List the invitations waiting for you.
    Invitations,
    /// Accept an invitation: you become a member of the identity.
    Accept {
        /// The identity that invited you.
        name: String,
    },
    /// Decline an invitation.
    Decline {
        /// The identity that invited you.
        name: String,
    },
    /// Leave an identity (even as its last admin).
    Leave {
        /// The identity's name.
        name: String,
    },
}

pub fn run_command(target: &Target, command: ClientCommand) -> CliResult<()> {
    // The client speaks in sentences; its libraries' log lines would only
    // repeat them (the certificate verifier logs every refusal as an error).
    log::set_max_level(log::LevelFilter::Off);
    let registry = RemoteRegistry::new(&registry::choose(target.registry.as_deref())?);
    match command {
        ClientCommand::Login { email } => login::log_in(&registry, email),
        ClientCommand::Logout => login::logout(&registry),
        ClientCommand::Whoami => whoami(&registry),
        ClientCommand::Publish { path, dry_run, private } => publish(&registry, path, dry_run, private),
        ClientCommand::Revoke {
            package,
            version,
            reason,
        } => {
            let (package, version) = (package_name(&package)?, version_number(&version)?);
            let token = credentials::token_for(&registry.url)?;
            let body = RevokeRequest { reason: reason.clone() };
            let _: IgnoredAny = registry.post(&format!("/packages/{package}/{version}/revoke"), &body, Some(&token))?;
            println!("Revoked {package} {version}: {reason}");
            Ok(())
        }
        ClientCommand::Identity(command) => identity(&registry, command),
        ClientCommand::Token(command) => token::run(&registry, command),
        ClientCommand::Private { package, setting: None } => {
            let package = package_name(&package)?;
            let token = credentials::optional_token(&registry.url)?;
            let page: PackagePage = registry.get(&format!("/packages/{package}"), token.as_deref())?;
            println!("{package} is {}", if page.private { "private" } else { "public" });
            Ok(())
        }
        ClientCommand::Private {
            package,
            setting: Some(setting),
        } => {
            let package = package_name(&package)?;
            let token = credentials::token_for(&registry.url)?;
            let private = setting == "on";
            let body = PrivacyRequest { private };
            let _: IgnoredAny = registry.send("PATCH", &format!("/packages/{package}"), &body, Some(&token))?;
            println!("{package} is now {}", if private { "private" } else { "public" });
            Ok(())
        }
        ClientCommand::Info { package, gren } => {
            let gren = gren.as_deref().map(version_number).transpose()?;
            browse::info(&registry, &package, gren)
        }
        ClientCommand::Search { words } => browse::search(&registry, &words),
        ClientCommand::Install { dir } => {
            let token = credentials::optional_token(&registry.url)?;
            install::install(&registry, token.as_deref(), &dir.unwrap_or_else(|| PathBuf::from(".")))
        }
        ClientCommand::SetupGit {
            remove: false,
            identities,
        } => git::set_up(&registry.url, &identities),
        ClientCommand::SetupGit { remove: true, .. } => git::remove(&registry.url),
        ClientCommand::GitCredential { operation } => git::credential(&registry.url, &operation),
    }
}

/// A package named on the command line, checked before it becomes a path.
fn package_name(text: &str) -> CliResult<PackageName> {
    PackageName::parse(text).ok_or_else(|| {
        CliError(format!(
            "{text:?} is not a package name: expected author/project, such as gren-lang/core."
        ))
    })
}

fn version_number(text: &str) -> CliResult<Version> {
    Version::parse(text).ok_or_else(|| {
        CliError(format!(
            "{text:?} is not a version: expected major.minor.patch, such as 6.0.2."
        ))
    })
}

/// The user of the token for `registry`, and every stored login, marking
/// the default (the one used when nothing names a registry).
fn whoami(registry: &RemoteRegistry) -> CliResult<()> {
    let token = credentials::token_for(&registry.url)?;
    let user: UserAnswer = registry.get("/user", Some(&token))?;
    println!("{} on {}", user.email, registry.url);
    for identity in &user.identities {
        println!("  {} ({})", identity.name, identity.role.as_str());
    }
    let logins = credentials::logins()?;
    if logins.len() > 1 || logins.iter().all(|login| login.registry != registry.url) {
        println!(
            "Logins, the most recent last (*: the default, used unless --registry or GREN_REGISTRY_URL names another):"
        );
        for (at, login) in logins.iter().enumerate() {
            let mark = if at + 1 == logins.len() { '*' } else { ' ' };
            println!("{mark} {} {}", login.registry, login.email);
        }
    }
    Ok(())
}

fn publish(registry: &RemoteRegistry, path: Option<PathBuf>, dry_run: bool, private: bool) -> CliResult<()> {
    let path = path.unwrap_or_else(|| PathBuf::from("."));
    let bytes = if path.is_dir() {
        project::build_bundle(&path)?
    } else if path.file_name().is_some_and(|name| name == "gren.json") {
        let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty());
        return Err(CliError(format!(
            "{} is a project's gren.json: pass the project directory, `gren-registry publish {}`.",
            path.display(),
            dir.map_or(".".into(), |dir| dir.display().to_string())
        )));
    } else {
        std::fs::read(&path).map_err(|err| CliError(format!("Cannot read {}: {err}", path.display())))?
    };
    let bundle = gren_registry_core::bundle::read(&bytes, 64 * 1024 * 1024)?;
    // Whose kernel code is welcome is the registry's setting: it decides.
    let outline = gren_registry_core::bundle::outline::validate(&bundle, KernelCode::AnyAuthor)?;
    println!(
        "{} {} {} ({} modules, {} bytes compressed) to {}",
        if dry_run { "Would publish" } else { "Publishing" },
        outline.name,
        outline.version,
        bundle.sources.len(),
        bytes.len(),
        registry.url
    );
    if dry_run {
        println!("The bundle is valid. Nothing was published (--dry-run).");
        return Ok(());
    }
    let token = credentials::token_for(&registry.url)?;
    let query = if private { "?private=true" } else { "" };
    let (status, published): (u16, PublishReceipt) = registry.upload(&format!("/packages{query}"), &bytes, &token)?;
    let (name, version, sha256) = (&outline.name, &outline.version, &published.sha256);
    // 200 rather than 201: these very bytes were published before.
    if status == 200 {
        println!("{name} {version} is already published (identical, sha256 {sha256}): nothing changed.");
    } else {
        println!("Published {name} {version} (sha256 {sha256})");
    }
    Ok(())
}

fn identity(registry: &RemoteRegistry, command: IdentityCommand) -> CliResult<()> {
    let token = credentials::token_for(&registry.url)?;
    let member_path = |name: &str, email: &str| format!("/publishing-identity/{name}/members/{email}");
    let invitation_path = |name: &str| format!("/publishing-identity/{name}/invitation");
    match command {
        IdentityCommand::Create { name } => {
            let body = IdentityRequest {
                name: name.clone(),
                session: None,
            };
            let _: IgnoredAny = registry.post("/publishing-identity", &body, Some(&token))?;
            println!("Created the identity {name}; you are its admin.");
        }
        IdentityCommand::Show { name } => {
            let found: IdentityPage = registry.get(&format!("/publishing-identity/{name}"), Some(&token))?;
            print_identity(&found);
        }
        IdentityCommand::Add { name, email, role } | IdentityCommand::Role { name, email, role } => {
            let body = MemberRequest { role };
            let answer = registry.send("PUT", &member_path(&name, &email), &body, Some(&token))?;
            print_member_change(&answer, &name, &registry.url);
        }
        IdentityCommand::Remove { name, email } => {
            registry.delete(&member_path(&name, &email), Some(&token))?;
            println!("Removed {email} from {name} (or cancelled their invitation)");
        }
        IdentityCommand::Invitations => {
            let answer: InvitationList = registry.get("/user/invitations", Some(&token))?;
            print_invitations(&answer, &registry.url);
        }
        IdentityCommand::Accept { name } => {
            let member: Member = registry.post(&invitation_path(&name), &Empty {}, Some(&token))?;
            println!("You are now a member of {name} with the {} role.", member.role.as_str());
        }
        IdentityCommand::Decline { name } => {
            registry.delete(&invitation_path(&name), Some(&token))?;
            println!("Declined the invitation to {name}");
        }
        IdentityCommand::Leave { name } => {
            let user: UserAnswer = registry.get("/user", Some(&token))?;
            registry.delete(&member_path(&name, user.email.as_str()), Some(&token))?;
            println!("You left {name}");
        }
    }
    Ok(())
}

/// A `PUT …/members/<email>` answer: a member (role set) or an invitation.
fn print_member_change(answer: &MemberAnswer, name: &str, url: &str) {
    match answer {
        MemberAnswer::Invited(invitation) => println!(
            "Invited {} to {name} as {}; they become a member once they run \
             `{}` (the invitation expires {}).",
            invitation.email,
            invitation.role.as_str(),
            registry::command_for_others(url, &format!("identity accept {name}")),
            invitation.expires
        ),
        MemberAnswer::Member(member) => println!(
            "{} is now a member of {name} with the {} role.",
            member.email,
            member.role.as_str()
        ),
    }
}

fn print_invitations(answer: &InvitationList, url: &str) {
    if answer.invitations.is_empty() {
        println!("No invitations are waiting for you.");
    }
    for received in &answer.invitations {
        println!(
            "{} as {}, from {} (expires {}): `{}`",
            received.identity,
            received.invitation.role.as_str(),
            received.invitation.invited_by,
            received.invitation.expires,
            registry::command(url, &format!("identity accept {}", received.identity)),
        );
    }
}

fn print_identity(found: &IdentityPage) {
    println!("{}", found.name);
    if let Some(members) = &found.members {
        println!("members:");
        for member in members {
            println!("  {} {}", member.role.as_str(), member.email);
        }
    }
    if let Some(invitations) = &found.invitations {
        println!("invitations:");
        for invitation in invitations {
            println!(
                "  {} {} (expires {})",
                invitation.role.as_str(),
                invitation.email,
                invitation.expires
            );
        }
    }
    println!("packages:");
    for package in &found.packages {
        println!("  {} {}", package.name, package.latest);
    }
}
