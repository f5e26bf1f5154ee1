//! `gren-registry admin ...`: operator commands on the data directory.
//!
//! Commands that change records take the data directory's lock, like the
//! server. When a server holds it, they are carried out by that server
//! instead ([`control`]: over its control socket, on its own store and
//! in-memory catalog, by the same [`change`]), so its answers show them at
//! once; `fsck --repair` still needs it stopped. Commands that
//! only read work beside a running server; `snapshot` holds the server's
//! writers off while it links files. Every command refuses to run as another user
//! than the data directory's owner (root included: its records would be
//! unreadable by the server) unless given `--allow-other-user`.

pub mod control;
mod fsck;
mod snapshot;

use clap::{Args, Subcommand};
use gren_registry_core::auth::AuthError;
use gren_registry_core::auth::email::Email;
use gren_registry_core::auth::{git_token, session, token, user};
use gren_registry_core::error::Chain;
use gren_registry_core::format::{self, FormatError};
use gren_registry_core::identity::{self, Actor, IdentityError, IdentityName, LookAlikes, MemberChange, Role};
use gren_registry_core::outbox;
use gren_registry_core::package::publish::DEFAULT_KERNEL_CODE_AUTHORS;
use gren_registry_core::package::publish::{Packages, Published, Upload};
use gren_registry_core::package::{PackageError, PackageName, Version};
use gren_registry_core::store::{OpenError, RecordPath, Store, StoreError, current_uid, layout, user_name};
use gren_registry_http::http::errors::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Why an operator command failed. Printed with its causes ([`Chain`]):
/// the operator needs the path and what the system said, not "an internal
/// error".
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A changing command beside a running server (the message quotes the lock's error).
    #[error("{0}.\nStop the server first: this command changes records the running server keeps in memory.")]
    InUse(OpenError),
    /// A changing command beside a running server that cannot be asked to
    /// carry it out (its control socket is missing or refuses).
    #[error(
        "{locked}, and its control socket {} cannot be reached: {why}.\nA server of this release carries out admin commands while it runs; with an older one, stop it first.",
        .socket.display()
    )]
    NoControl {
        locked: OpenError,
        socket: PathBuf,
        why: std::io::Error,
    },
    /// The running server refused or failed the command (its message).
    #[error("{0}")]
    ByServer(String),
    /// A command the running server does not carry out for another process.
    #[error("the running server does not run `admin {0}`; stop it first")]
    NotThroughServer(&'static str),
    /// A reading command on something that is not a data directory (the message quotes why).
    #[error("{0}")]
    NoDataDir(OpenError),
    #[error("{} is not a gren-registry data directory.", .0.display())]
    NotADataDir(PathBuf),
    #[error("{} already exists; snapshots go to a new directory.", .0.display())]
    DestinationExists(PathBuf),
    /// A snapshot that could not be finished: where it failed, what the
    /// system said, and what became of the partial copy.
    #[error("snapshot to {} failed at {}: {cause}.\n{outcome}", .destination.display(), .at.display())]
    Snapshot {
        destination: PathBuf,
        at: PathBuf,
        cause: std::io::Error,
        outcome: String,
    },
    /// Run as another user than the data directory's owner: what it writes
    /// could be unreadable by the registry (root's records, say).
    #[error(
        "{} belongs to {owner}, but this command runs as {me}: records it writes could be unreadable by the registry.\nRun it as the owner: sudo -u {owner_name} {command}\n(or, if this is meant, add --allow-other-user)",
        .dir.display()
    )]
    OtherUser {
        dir: PathBuf,
        owner: String,
        owner_name: String,
        me: String,
        command: String,
    },
    #[error("{0:?} is not author/project.")]
    InvalidPackageName(String),
    #[error("{0:?} is not X.Y.Z.")]
    InvalidVersion(String),
    #[error("There is no user {0}.")]
    UserNotFound(Email),
    /// A look-alike name the operator may still mean (the message quotes the refusal).
    #[error("{0}\nIf it is meant to be, run again with --allow-confusable.")]
    Confusable(IdentityError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(crate) type AdminResult<T> = Result<T, AdminError>;

/// The inflated-size cap for imports, as for uploads by default.
const IMPORT_MAX_INFLATED: u64 = 64 * 1024 * 1024;

/// Admin's options, taken before or after the subcommand (`global`), as
/// `--registry` is by the client commands: the commands the registry prints
/// (`gren-registry admin migrate --data-dir …`) run as printed.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The registry's data directory, as for `serve`.
    #[arg(
        long,
        env = "GREN_REGISTRY_DATA_DIR",
        default_value = "./data",
        global = true,
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
    /// Run even though this user does not own the data directory (records
    /// written are then owned by this user, and may be unreadable by the
    /// registry).
    #[arg(long, global = true)]
    pub allow_other_user: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum AdminCommand {
    /// Check every record, reference, bundle hash and the event log.
    Fsck {
        /// Fix what is safe to fix (needs the server stopped).
        #[arg(long)]
        repair: bool,
    },
    /// Copy the data directory (hard links) at one point in time.
    Snapshot {
        /// Where the copy goes: a new directory (best on the same file system).
        destination: PathBuf,
    },
    /// Upgrade the data directory to this release's data format, in place.
    ///
    /// Safe to interrupt: running it again finishes. Take a snapshot first,
    /// and stop the server.
    Migrate,
    /// Add existing bundles (a package's history) without the successor rule.
    Import {
        /// Bundle files (`.pkg.gz`, as the compiler writes them), oldest version first.
        #[arg(required = true)]
        bundles: Vec<PathBuf>,
        /// Make newly created packages private.
        #[arg(long)]
        private: bool,
        /// Identities whose packages may contain kernel code, as for `serve`.
        #[arg(
            long,
            env = "GREN_REGISTRY_KERNEL_CODE_AUTHORS",
            value_delimiter = ',',
            default_value = DEFAULT_KERNEL_CODE_AUTHORS
        )]
        kernel_code_authors: Vec<String>,
    },
    /// Create, show and link publishing identities; set their members.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Show users; log them out everywhere.
    #[command(subcommand)]
    User(UserCommand),
    /// Revoke a version.
    Revoke {
        /// The package, as author/project.
        package: String,
        /// The version to revoke, X.Y.Z.
        version: String,
        /// Why, for the people who depend on it (shown with the version).
        #[arg(long)]
        reason: String,
    },
    /// Show what the packages site and the shared caches have not been told yet.
    ///
    /// Notifications not yet delivered to the packages site, and how far
    /// each shared cache has been told to purge.
    Outbox,
    /// Counts of users, identities, packages, versions and bytes.
    Stats,
}

#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum IdentityCommand {
    /// Create an identity, reserved names included.
    Create {
        /// The identity's name: the author part of its package names.
        name: String,
        /// The first admin's e-mail address.
        #[arg(long)]
        admin: String,
        /// Create it even if its name looks like an existing identity's
        /// (`gren-1ang` beside `gren-lang`).
        #[arg(long)]
        allow_confusable: bool,
        /// Link it at once to the GitHub owner of the same name, by that
        /// owner's numeric id (see `link-github`).
        #[arg(long, value_name = "ID")]
        github_owner_id: Option<u64>,
    },
    /// Show an identity, its members, invitations, packages and audit log.
    Show {
        /// The identity's name.
        name: String,
    },
    /// Link an identity to the GitHub owner (user or organization) of its name.
    ///
    /// `setup-git` users then get its packages for
    /// `https://github.com/<name>/…` from the registry. Check first that
    /// the identity's admins are that owner: the id is
    /// `curl https://api.github.com/users/<name>`'s `id`.
    LinkGithub {
        /// The identity's name (and the GitHub owner's login).
        name: String,
        /// The GitHub owner's numeric id (it survives renames; a new
        /// account with the same login gets another).
        #[arg(long, value_name = "ID")]
        owner_id: u64,
    },
    /// Remove an identity's GitHub link: `https://github.com/<name>/` then
    /// goes to GitHub again for `setup-git` users.
    UnlinkGithub {
        /// The identity's name.
        name: String,
    },
    /// Add a member or change their role, directly: no invitation, no
    /// e-mail (for an identity left without an admin, for instance).
    SetMember {
        /// The identity's name.
        name: String,
        /// The member's e-mail address.
        email: String,
        /// What they may do: download its private packages, publish, or
        /// also manage its members (admin).
        #[arg(long, value_parser = Role::ALL.map(Role::as_str))]
        role: String,
    },
}

#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum UserCommand {
    /// Show a user, their sessions, automation tokens and identities.
    Show {
        /// The user's e-mail address.
        email: String,
    },
    /// Revoke every session and every automation token of a user: they are
    /// logged out everywhere, and their CI jobs' tokens stop working.
    RevokeSessions {
        /// The user's e-mail address.
        email: String,
    },
}

impl AdminCommand {
    /// The command's words, for the server's log (no argument: those are
    /// e-mail addresses and reasons, which the audit log keeps).
    fn label(&self) -> &'static str {
        match self {
            AdminCommand::Fsck { .. } => "fsck",
            AdminCommand::Snapshot { .. } => "snapshot",
            AdminCommand::Migrate => "migrate",
            AdminCommand::Import { .. } => "import",
            AdminCommand::Identity(IdentityCommand::Create { .. }) => "identity create",
            AdminCommand::Identity(IdentityCommand::Show { .. }) => "identity show",
            AdminCommand::Identity(IdentityCommand::SetMember { .. }) => "identity set-member",
            AdminCommand::Identity(IdentityCommand::LinkGithub { .. }) => "identity link-github",
            AdminCommand::Identity(IdentityCommand::UnlinkGithub { .. }) => "identity unlink-github",
            AdminCommand::User(UserCommand::Show { .. }) => "user show",
            AdminCommand::User(UserCommand::RevokeSessions { .. }) => "user revoke-sessions",
            AdminCommand::Revoke { .. } => "revoke",
            AdminCommand::Outbox => "outbox",
            AdminCommand::Stats => "stats",
        }
    }
}

/// What a command found: text for people, JSON for scripts, and whether it
/// should exit non-zero.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub text: String,
    pub json: Value,
    pub failed: bool,
}

impl Report {
    fn ok(text: String, json: Value) -> Report {
        Report {
            text,
            json,
            failed: false,
        }
    }
}

pub fn run_command(args: AdminArgs) -> Result<bool, Box<dyn std::error::Error>> {
    let report = execute(&args).map_err(|err| Chain(&err).to_string())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json)?);
    } else {
        println!("{}", report.text.trim_end());
    }
    Ok(!report.failed)
}

/// Opens the data directory for changes: refuses while a server holds it.
/// Opens the directory with its lock, in this release's format (a new one
/// is stamped with it).
fn open_for_changes(args: &AdminArgs) -> AdminResult<Store> {
    let store = open_locked(args)?;
    format::require_current(&store, true)?;
    store.sweep_temp_files()?;
    Ok(store)
}

fn open_locked(args: &AdminArgs) -> AdminResult<Store> {
    Store::open(&args.data_dir).map_err(|err| match err {
        OpenError::Locked(_) => AdminError::InUse(err),
        // Not a whole data directory, or not one at all: no server to stop.
        other => AdminError::NoDataDir(other),
    })
}

fn open_for_reading(args: &AdminArgs) -> AdminResult<Store> {
    let store = Store::inspect(&args.data_dir).map_err(AdminError::NoDataDir)?;
    format::require_current(&store, false)?;
    Ok(store)
}

/// `admin migrate`: see [`format::migrate`].
fn migrate(args: &AdminArgs) -> AdminResult<Report> {
    let store = match open_locked(args) {
        Ok(store) => store,
        // A server holds the directory: one of this release runs only on
        // the current format, so there is nothing to do; an older one (the
        // binary upgraded, the server not yet restarted) must be stopped.
        Err(AdminError::InUse(locked @ OpenError::Locked(_))) => {
            let beside = Store::inspect(&args.data_dir).map_err(AdminError::NoDataDir)?;
            if format::detect(&beside)? != format::Found::Format(format::CURRENT) {
                return Err(AdminError::InUse(locked));
            }
            return Ok(Report::ok(
                format!(
                    "{} is in data format {} already (a server is running on it): nothing to do",
                    args.data_dir.display(),
                    format::CURRENT
                ),
                json!({ "from": format::CURRENT, "to": format::CURRENT, "packages": 0, "events": 0 }),
            ));
        }
        Err(err) => return Err(err),
    };
    store.sweep_temp_files()?;
    let done = format::migrate::migrate(&store)?;
    let text = if done.from == format::CURRENT {
        format!(
            "{} is in data format {} already: nothing to do",
            args.data_dir.display(),
            format::CURRENT
        )
    } else {
        format!(
            "migrated {} from data format {} to {}: {} package record(s) rewritten, holding {} event(s)",
            args.data_dir.display(),
            done.from,
            format::CURRENT,
            done.packages,
            done.events
        )
    };
    let json = json!({ "from": done.from, "to": format::CURRENT, "packages": done.packages, "events": done.events });
    Ok(Report::ok(text, json))
}

/// Refuses to work on a data directory another user owns, unless allowed:
/// a root-owned record in a registry run by `gren` is a record the server
/// cannot read, and a check run as another user sees permission errors.
fn refuse_other_user(args: &AdminArgs) -> AdminResult<()> {
    let Ok(meta) = std::fs::metadata(&args.data_dir) else {
        // Not there yet (created by this command, as this user) or not a
        // directory at all: the command itself says what is wrong.
        return Ok(());
    };
    let (owner, me) = (meta.uid(), current_uid());
    if owner == me || args.allow_other_user {
        return Ok(());
    }
    let describe = |uid| match user_name(uid) {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    };
    let command: Vec<String> = std::env::args().map(|arg| shell_quoted(&arg)).collect();
    Err(AdminError::OtherUser {
        dir: args.data_dir.clone(),
        owner: describe(owner),
        owner_name: user_name(owner).unwrap_or_else(|| format!("'#{owner}'")),
        me: describe(me),
        command: command.join(" "),
    })
}

/// `arg` as a shell reads it back, so that a command printed for the
/// operator to run (`--reason 'a leaked secret'`) pastes and works.
fn shell_quoted(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

fn execute(args: &AdminArgs) -> AdminResult<Report> {
    refuse_other_user(args)?;
    match &args.command {
        AdminCommand::Fsck { repair: true } => Ok(fsck::check(&open_for_changes(args)?, true)),
        AdminCommand::Fsck { repair: false } => Ok(fsck::check_beside_a_server(&open_for_reading(args)?)?),
        AdminCommand::Snapshot { destination } => snapshot::take(&args.data_dir, destination),
        AdminCommand::Migrate => migrate(args),
        AdminCommand::Identity(IdentityCommand::Show { name }) => identity_show(&open_for_reading(args)?, name),
        AdminCommand::User(UserCommand::Show { email }) => user_show(&open_for_reading(args)?, email),
        AdminCommand::Outbox => outbox(&open_for_reading(args)?),
        AdminCommand::Stats => stats(&open_for_reading(args)?),
        command => match open_for_changes(args) {
            Ok(store) => change(&Workspace::local(&store), command),
            // A server holds the directory: it carries the command out.
            Err(AdminError::InUse(locked @ OpenError::Locked(_))) => control::ask(&args.data_dir, command, locked),
            Err(err) => Err(err),
        },
    }
}

/// Where a changing command runs: on a data directory this process has
/// opened with its lock, or inside the running server (through
/// [`control`]), on the server's store and in-memory catalog, so that the
/// server's answers show the change at once.
pub(crate) struct Workspace<'a> {
    store: &'a Store,
    /// The running server's catalog; `None`: loaded from the records by
    /// the commands that need one.
    packages: Option<&'a Packages>,
    /// The running server's `GREN_REGISTRY_KERNEL_CODE_AUTHORS`, which an
    /// import beside it follows rather than the command's environment.
    kernel_code_authors: Option<&'a [String]>,
}

impl<'a> Workspace<'a> {
    fn local(store: &'a Store) -> Workspace<'a> {
        Workspace {
            store,
            packages: None,
            kernel_code_authors: None,
        }
    }

    /// Runs `work` with the server's catalog, or one loaded for it (whose
    /// new events' high-water mark this process then writes itself; the
    /// server's thread keeps its own).
    fn with_packages<T>(&self, work: impl FnOnce(&Packages) -> AdminResult<T>) -> AdminResult<T> {
        match self.packages {
            Some(packages) => work(packages),
            None => {
                let packages = Packages::open(self.store)?;
                let done = work(&packages);
                let marked = packages.events.save_mark(self.store, 0);
                // The command's own failure is the one to report.
                let report = done?;
                marked?;
                Ok(report)
            }
        }
    }
}

/// The commands that change records, wherever they run ([`Workspace`]):
/// one implementation, the same audit entries and events either way.
fn change(workspace: &Workspace, command: &AdminCommand) -> AdminResult<Report> {
    let store = workspace.store;
    match command {
        AdminCommand::Import {
            bundles,
            private,
            kernel_code_authors,
        } => {
            let kernel_authors = workspace.kernel_code_authors.unwrap_or(kernel_code_authors);
            workspace.with_packages(|packages| import(store, packages, bundles, *private, kernel_authors))
        }
        AdminCommand::Identity(IdentityCommand::Create {
            name,
            admin,
            allow_confusable,
            github_owner_id,
        }) => identity_create(store, name, admin, *allow_confusable, *github_owner_id),
        AdminCommand::Identity(IdentityCommand::LinkGithub { name, owner_id }) => {
            identity_link_github(store, name, Some(*owner_id))
        }
        AdminCommand::Identity(IdentityCommand::UnlinkGithub { name }) => identity_link_github(store, name, None),
        AdminCommand::Identity(IdentityCommand::SetMember { name, email, role }) => {
            identity_set_member(store, name, email, role)
        }
        AdminCommand::User(UserCommand::RevokeSessions { email }) => revoke_sessions(store, email),
        AdminCommand::Revoke {
            package,
            version,
            reason,
        } => workspace.with_packages(|packages| revoke(store, packages, package, version, reason)),
        other => Err(AdminError::NotThroughServer(other.label())),
    }
}

fn revoke(store: &Store, packages: &Packages, package: &str, version: &str, reason: &str) -> AdminResult<Report> {
    let name = PackageName::parse(package).ok_or_else(|| AdminError::InvalidPackageName(package.to_string()))?;
    let version = Version::parse(version).ok_or_else(|| AdminError::InvalidVersion(version.to_string()))?;
    packages.revoke(store, &name, Some(version), reason, &Actor::Operator, None)?;
    Ok(Report::ok(
        format!("revoked {name} {version}: {reason}"),
        json!({ "package": name, "version": version, "reason": reason }),
    ))
}

fn import(
    store: &Store,
    packages: &Packages,
    bundles: &[PathBuf],
    private: bool,
    kernel_authors: &[String],
) -> AdminResult<Report> {
    let mut lines = Vec::new();
    let mut results = Vec::new();
    let mut failed = false;
    for path in bundles {
        let outcome = match std::fs::read(path) {
            Err(err) => Err((UNREADABLE, format!("cannot read {}: {err}", path.display()))),
            Ok(bytes) => {
                let upload = Upload {
                    bytes: &bytes,
                    actor: &Actor::Operator,
                    token: None,
                    private,
                    max_inflated: IMPORT_MAX_INFLATED,
                    kernel_authors,
                    successor_rule: false,
                    inflations: None,
                    name_probes: None,
                };
                packages.publish(store, upload).map_err(refusal)
            }
        };
        match outcome {
            Ok((name, published)) => {
                let (verb, version) = match published {
                    Published::Created(version) => ("imported", version),
                    Published::Existing(version) => ("already present", version),
                };
                lines.push(format!("{verb}: {name} {} ({})", version.version, path.display()));
                results.push(json!({ "file": path, "package": name, "version": version.version, "status": verb }));
            }
            Err((code, message)) => {
                failed = true;
                lines.push(format!("failed: {}: {message}", path.display()));
                results.push(json!({ "file": path, "error": code, "message": message }));
            }
        }
    }
    Ok(Report {
        text: lines.join("\n"),
        json: json!({ "results": results }),
        failed,
    })
}

/// The code `admin import --json` gives a bundle file it cannot read (not
/// an API code: no request ever reads a file).
const UNREADABLE: &str = "unreadable";

/// A refused bundle as the import reports it: the API's code and message,
/// or, for a failure of the registry itself, its causes.
fn refusal(err: PackageError) -> (&'static str, String) {
    let err = ApiError::from(err);
    let message = match &err.cause {
        Some(cause) => Chain(cause.as_ref()).to_string(),
        None => err.message,
    };
    (err.code.as_str(), message)
}

fn identity_create(
    store: &Store,
    name: &str,
    admin: &str,
    allow_confusable: bool,
    github_owner_id: Option<u64>,
) -> AdminResult<Report> {
    let name = IdentityName::parse(name)?;
    let admin = Email::parse(admin)?;
    let look_alikes = if allow_confusable {
        LookAlikes::Allow
    } else {
        LookAlikes::Refuse
    };
    let created =
        identity::create(store, &name, &admin, &Actor::Operator, &[], look_alikes).map_err(|err| match err {
            IdentityError::Confusable { .. } => AdminError::Confusable(err),
            err => err.into(),
        })?;
    let mut text = format!("created identity {} with admin {admin}", created.name);
    let mut answer = json!({ "name": created.name, "admin": admin });
    if let Some(id) = github_owner_id {
        identity::link_github(store, &name, &Actor::Operator, github_owner_id)?;
        text += &linked_text(&created.name, github_owner_id);
        answer["github_owner_id"] = id.into();
    }
    Ok(Report::ok(text, answer))
}

/// `link-github` (`Some`) and `unlink-github` (`None`).
fn identity_link_github(store: &Store, name: &str, owner_id: Option<u64>) -> AdminResult<Report> {
    let name = IdentityName::parse(name)?;
    let changed = identity::link_github(store, &name, &Actor::Operator, owner_id)?;
    let mut text = linked_text(name.as_str(), owner_id);
    if !changed {
        text += " (as it was)";
    }
    Ok(Report::ok(
        text.trim_start_matches('\n').to_string(),
        json!({ "name": name.as_str(), "github_owner_id": owner_id, "changed": changed }),
    ))
}

/// What a link means for `setup-git` users, said once for both commands.
fn linked_text(name: &str, owner_id: Option<u64>) -> String {
    match owner_id {
        Some(id) => format!(
            "\nlinked {name} to the GitHub owner with id {id}: setup-git users now get https://github.com/{name}/… from the registry"
        ),
        None => format!("\nunlinked {name} from GitHub: setup-git users get https://github.com/{name}/… from GitHub"),
    }
}

fn identity_show(store: &Store, name: &str) -> AdminResult<Report> {
    let name = IdentityName::parse(name)?;
    let found = identity::require(store, &name)?;
    let packages = Packages::open_read_only(store)?;
    let listing = gren_registry_core::package::listing_for_identity(&packages.catalog, &name, true);
    let mut text = format!("identity {} (created {})\n", found.name, found.created);
    if let Some(link) = &found.github {
        text += &format!("github: owner id {} (linked {})\n", link.owner_id, link.linked);
    }
    text += "members:\n";
    for member in &found.members {
        text += &format!("  {} {} (added {})\n", member.role.as_str(), member.email, member.added);
    }
    for invitation in found.pending_invitations() {
        text += &format!(
            "  invited: {} {} (by {}, expires {})\n",
            invitation.role.as_str(),
            invitation.email,
            invitation.invited_by,
            invitation.expires
        );
    }
    text += "packages:\n";
    for entry in &listing {
        text += &format!(
            "  {} {}{}\n",
            entry.name,
            entry.latest,
            if entry.private { " (private)" } else { "" }
        );
    }
    let audit = gren_registry_core::package::audit_log(store, &packages.catalog, &name, &found)?;
    text += "audit log:\n";
    for entry in &audit {
        text += &format!("  {}\n", audit_line(entry));
    }
    Ok(Report::ok(
        text,
        json!({
            "name": found.name,
            "created": found.created,
            "github": found.github,
            "members": found.members,
            "invitations": found.pending_invitations().collect::<Vec<_>>(),
            "packages": listing,
            "audit": audit,
        }),
    ))
}

/// One audit entry as a line: `3 2026-12-07T… operator: member_added
/// member=x@example.com role=publish (token ci)`, the fields in the order
/// the entry's JSON has them.
fn audit_line(entry: &gren_registry_core::identity::AuditEntry) -> String {
    let mut line = format!("{} {} {}: {}", entry.seq, entry.at, entry.actor, entry.action.kind());
    if let Ok(Value::Object(fields)) = serde_json::to_value(&entry.action) {
        for (key, value) in fields.iter().filter(|(key, _)| *key != "action") {
            match value {
                Value::String(text) => line += &format!(" {key}={text:?}"),
                other => line += &format!(" {key}={other}"),
            }
        }
    }
    if let Some(token) = &entry.token {
        line += &format!(" (token {} {})", token.id, token.name);
    }
    line
}

/// The operator is trusted: members are set directly, never invited.
fn identity_set_member(store: &Store, name: &str, email: &str, role: &str) -> AdminResult<Report> {
    let name = IdentityName::parse(name)?;
    let email = Email::parse(email)?;
    let role = Role::parse(role)?;
    let change = identity::set_member(store, &name, &Actor::Operator, &email, role, usize::MAX)?;
    let what = match change {
        MemberChange::Added(_) => "added",
        MemberChange::RoleChanged(_) => "changed the role of",
        _ => "left unchanged",
    };
    Ok(Report::ok(
        format!("{what} {email} in {name}: {}", role.as_str()),
        json!({ "name": name.as_str(), "email": email, "role": role, "changed": change.changed() }),
    ))
}

/// `admin user revoke-sessions`: every session, then every automation
/// token, each stopping at once (and the git tokens made from them, which
/// would stop with them anyway). `--json` keeps `revoked` for the
/// sessions, as before tokens were revoked too.
fn revoke_sessions(store: &Store, email: &str) -> AdminResult<Report> {
    let email = Email::parse(email)?;
    let hashes = user::load(store, &email)?.map(|user| user.sessions).unwrap_or_default();
    for hash in &hashes {
        session::revoke(store, &email, hash)?;
    }
    let tokens = token::revoke_all(store, &email)?;
    let git_tokens = git_token::revoke_all(store, &email)?;
    Ok(Report::ok(
        format!(
            "revoked {} session(s) and {tokens} automation token(s) of {email}, and {git_tokens} git token(s) made from them",
            hashes.len()
        ),
        json!({ "email": email, "revoked": hashes.len(), "revoked_tokens": tokens, "revoked_git_tokens": git_tokens }),
    ))
}

fn user_show(store: &Store, email: &str) -> AdminResult<Report> {
    let email = Email::parse(email)?;
    let found = user::load(store, &email)?.ok_or_else(|| AdminError::UserNotFound(email.clone()))?;
    let sessions = session::list(store, &email, "")?;
    let identities = identity::memberships(store, &email)?;
    let mut text = format!("user {email} (created {})\nsessions:\n", found.created);
    for view in &sessions {
        text += &format!(
            "  {} created {} last used {} ({})\n",
            view.id,
            view.created,
            view.last_used,
            view.user_agent.as_deref().unwrap_or("unknown client")
        );
    }
    let tokens = token::list(store, &email)?;
    text += "automation tokens:\n";
    for view in &tokens {
        let scopes: Vec<String> = view.scopes.iter().map(ToString::to_string).collect();
        let expired = if view.expires.has_passed() { " (expired)" } else { "" };
        let last_used = view.last_used.map_or("never".to_string(), |used| used.to_string());
        text += &format!(
            "  {} {} ({}) expires {}{expired}, last used {last_used}\n",
            view.id,
            view.name,
            scopes.join(", "),
            view.expires
        );
    }
    text += "identities:\n";
    for (name, role) in &identities {
        text += &format!("  {name} ({})\n", role.as_str());
    }
    let identities: Vec<Value> = identities
        .iter()
        .map(|(name, role)| json!({ "name": name, "role": role }))
        .collect();
    Ok(Report::ok(
        text,
        json!({ "email": email, "created": found.created, "sessions": sessions, "tokens": tokens, "identities": identities }),
    ))
}

fn outbox(store: &Store) -> AdminResult<Report> {
    let packages = Packages::open_read_only(store)?;
    let cursor = outbox::read_cursor(store)?;
    let delivered = cursor.delivered;
    let pending = packages.events.since(delivered, u64::MAX);
    // The server records its site at each start: this command's own
    // environment need not be the server's.
    let mut text = match &cursor.url {
        Some(url) => format!("packages site {url}\n"),
        None => "no packages site is configured (the server last started without \
                 GREN_REGISTRY_PACKAGE_SITE_URL): events are told to nobody, and wait here for one\n"
            .to_string(),
    };
    text += &format!(
        "delivered up to event {delivered} of {}; {} pending\n",
        packages.events.head(),
        pending.len()
    );
    for event in &pending {
        let subject = match event.version {
            Some(version) => format!("{} {version}", event.package),
            None => event.package.to_string(),
        };
        text += &format!("  {} {} {subject} at {}\n", event.seq, event.kind.as_str(), event.at);
    }
    let head = packages.events.head();
    let mut caches = Vec::new();
    for (file, cursor) in outbox::purge_cursors(store)? {
        let cursor = cursor?;
        let pending = head.saturating_sub(cursor.delivered);
        let url = cursor.url.unwrap_or_default();
        text += &format!(
            "cache {url}: purged up to event {} of {head}; {pending} pending\n",
            cursor.delivered
        );
        caches.push(
            json!({ "file": format!("{file}.json"), "url": url, "delivered": cursor.delivered, "pending": pending }),
        );
    }
    Ok(Report::ok(
        text,
        json!({ "caches": caches, "delivered": delivered, "head": head, "package_site": cursor.url, "pending": pending }),
    ))
}

fn count_json(store: &Store, dir: &RecordPath) -> AdminResult<usize> {
    Ok(store.list_json(dir)?.len())
}

fn stats(store: &Store) -> AdminResult<Report> {
    let packages = Packages::open_read_only(store)?;
    let all = packages.catalog.all();
    let versions: usize = all.iter().map(|record| record.versions.len()).sum();
    let revoked: usize = all
        .iter()
        .flat_map(|record| &record.versions)
        .filter(|version| version.revoked.is_some())
        .count();
    let bytes: u64 = all
        .iter()
        .flat_map(|record| &record.versions)
        .filter(|version| version.revoked.is_none())
        .map(|version| version.size)
        .sum();
    let identities = std::fs::read_dir(store.full_path(&layout::identities_dir()))
        .map(|dir| dir.count())
        .unwrap_or(0);
    let stats = json!({
        "users": count_json(store, &layout::users_dir())?,
        "sessions": count_json(store, &layout::sessions_dir())?,
        "pending_logins": count_json(store, &layout::logins_dir())?,
        "identities": identities,
        "packages": all.len(),
        "private_packages": all.iter().filter(|record| record.private).count(),
        "versions": versions,
        "revoked_versions": revoked,
        "bundle_bytes": bytes,
        "events": packages.events.head(),
    });
    let text = stats
        .as_object()
        .map(|fields| {
            fields
                .iter()
                .map(|(key, value)| format!("{key}: {value}"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    Ok(Report::ok(text, stats))
}
