//! `gren-registry serve`: wires the store, the app, the HTTP server and the
//! admin commands' control socket together, and shuts down cleanly on
//! SIGINT/SIGTERM: in-flight requests get `GREN_REGISTRY_SHUTDOWN_GRACE`
//! seconds, then the process exits.

use crate::app::App;
use crate::config::Config;
use crate::control;
use crate::http::router::RegistryService;
use crate::http::server::{LINGERING_REFUSALS, Limits, Server};
use crate::{notify, purge};
use gren_registry_core::error::Chain;
use gren_registry_core::git::Git;
use gren_registry_core::package::publish::Packages;
use gren_registry_core::repository::{self, Repositories};
use gren_registry_core::store::{self, Store, layout};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::Arc;
use std::time::Duration;

/// Serves until a signal; `admin`, when given, carries out the admin
/// commands that reach the control socket ([`control`]).
pub fn serve(config: Config, admin: Option<control::Handler>) -> Result<(), Box<dyn std::error::Error>> {
    // Before anything is opened: a bad setting must not cost a data
    // directory lock, a port, or (later) a login it cannot complete.
    config.validate()?;
    let git = Git::default();
    let git_version = git.check_installed()?;
    let store = Store::open(&config.data_dir)?;
    gren_registry_core::format::require_current(&store, true)?;
    warn_about_exposure(&store);
    let limits = limits(&config);
    let server = Server::bind(&config.listen, limits.clone())
        .map_err(|err| format!("cannot listen on {}: {err}", config.listen))?;
    let bound = server.local_addr()?;
    let public_url = config.public_url_for(bound);
    let mail_mode = mail_mode(&config, &store);
    let packages = Packages::open(&store).map_err(|err| format!("cannot load the packages: {}", Chain(&err)))?;
    // Room for one version at the inflated cap: smaller ones build side by side.
    let build_memory = config
        .max_inflated_bytes
        .saturating_mul(repository::HELD_PER_INFLATED_BYTE);
    let repositories = Repositories::new(git).with_build_memory(build_memory);
    let app = Arc::new(App::new(config, store, packages, repositories, public_url));

    let shutdown = server.shutdown_handle()?;
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    {
        let (app, shutdown, grace) = (app.clone(), shutdown.clone(), app.config.shutdown_grace_secs);
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            if let Some(signal) = signals.forever().next() {
                log::info!("received signal {signal}: finishing in-flight requests (at most {grace} s), then stopping");
                app.stop();
                shutdown.shut_down();
            }
        })?;
    }
    // First: a cache's cursor that cannot be read or written stops start-up
    // before the notifier, the sweep or the control socket start.
    let purgers = purge::start(&app)?;
    notify::record_site(&app, app.config.package_site_url.as_deref());
    let notifier = match app.config.package_site_url.clone() {
        Some(url) => {
            let app = app.clone();
            Some(
                std::thread::Builder::new()
                    .name("notify".into())
                    .spawn(move || notify::deliver_until_stopped(&app, &url))?,
            )
        }
        None => None,
    };
    sweep_in_the_background(&app)?;
    let _control = admin.and_then(|handler| control::start(&app, handler));
    let housekeeping = {
        let app = app.clone();
        std::thread::Builder::new()
            .name("housekeeping".into())
            .spawn(move || app.housekeeping())?
    };
    let event_mark = {
        let app = app.clone();
        std::thread::Builder::new()
            .name("event-mark".into())
            .spawn(move || app.keep_the_event_mark())?
    };

    log::info!(
        "gren-registry {} listening on http://{bound} (data: {}, public URL: {}, mail: {mail_mode}, {git_version})",
        env!("CARGO_PKG_VERSION"),
        app.store.root().display(),
        app.public_url,
    );
    log::info!(
        "can hold {} connections at once ({} per client), {} requests in handlers",
        limits.max_connections,
        limits.max_connections_per_client,
        limits.max_handlers
    );
    server.serve_until_shut_down(Arc::new(RegistryService(app.clone())));
    app.stop();
    let _ = housekeeping.join();
    let _ = event_mark.join();
    if let Some(notifier) = notifier {
        let _ = notifier.join();
    }
    for purger in purgers {
        let _ = purger.join();
    }
    log::info!("stopped");
    Ok(())
}

/// The connection layer's limits, from the configuration.
/// Warns (and serves on: the operator may have reasons, and refusing would
/// take the registry down over a mode bit) when the data directory is open to
/// others or belongs to another user.
fn warn_about_exposure(store: &Store) {
    match store::exposure(store.root()) {
        Ok(concerns) => concerns.iter().for_each(|concern| log::warn!("{concern}")),
        Err(err) => log::warn!("cannot check who may reach {}: {err}", store.root().display()),
    }
}

fn limits(config: &Config) -> Limits {
    let max_connections = connections_the_files_allow(config.max_connections.max(1), config.max_handlers);
    Limits {
        max_connections,
        max_connections_per_client: config.max_connections_per_client.max(1),
        max_handlers: config.max_handlers.max(1),
        trusted_proxies: config.trusted_proxies.clone(),
        request_timeout: Duration::from_secs(config.request_timeout_secs.max(1)),
        keep_alive: Duration::from_secs(config.keep_alive_secs.max(1)),
        // A proxy in front passes bodies up to the bundle limit: that much of
        // a refused body is read, so the proxy gets the answer.
        max_drain_bytes: config.max_bundle_bytes,
        shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
        ..Limits::default()
    }
}

/// Files the registry needs besides its connections: the listening socket,
/// the log, the data directory's lock, and the files each handler may have
/// open at once (a record, its temporary file, a directory to sync), and
/// the refused connections read before they close.
const FILES_BESIDES_CONNECTIONS: u64 = 64 + LINGERING_REFUSALS as u64;
const FILES_PER_HANDLER: u64 = 4;

/// Raises the soft open-files limit to the hard one (each connection is a
/// file), and lowers `wanted` to the connections the limit leaves room for.
fn connections_the_files_allow(wanted: usize, handlers: usize) -> usize {
    let files = match raise_open_files_limit() {
        Ok(files) => files,
        Err(err) => {
            log::warn!("cannot read or raise the open-files limit: {err}");
            return wanted;
        }
    };
    let reserved = FILES_BESIDES_CONNECTIONS + FILES_PER_HANDLER * handlers as u64;
    let room = usize::try_from(files.saturating_sub(reserved))
        .unwrap_or(usize::MAX)
        .max(1);
    if room < wanted {
        log::warn!(
            "the open-files limit ({files}) leaves room for {room} connections, fewer than \
             GREN_REGISTRY_MAX_CONNECTIONS ({wanted}); raise the limit (LimitNOFILE= in systemd) to hold more"
        );
    }
    wanted.min(room)
}

/// The open-files limit, raised to the hard limit first.
fn raise_open_files_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Ok(limit.rlim_cur)
}

/// How e-mails leave, for the start-up line.
fn mail_mode(config: &Config, store: &Store) -> String {
    if config.postmark_server_token.as_deref().is_some_and(|t| !t.is_empty()) {
        "Postmark".to_string()
    } else {
        format!("local sink ({})", store.full_path(&layout::mail_dir()).display())
    }
}

/// Sweeps the temporary files of interrupted writes on a thread of its own:
/// the walk covers the whole data directory and must not delay start-up. It
/// holds the writers' gate from before the first request until it is done,
/// so this returns once the sweep has taken the gate.
fn sweep_in_the_background(app: &Arc<App>) -> std::io::Result<()> {
    let (swept, sweeping) = std::sync::mpsc::channel();
    let process_start = std::time::SystemTime::now();
    let app = app.clone();
    std::thread::Builder::new().name("sweep".into()).spawn(move || {
        let started = std::time::Instant::now();
        match app
            .store
            .sweep_temp_files_then(process_start, || swept.send(()).unwrap_or(()))
        {
            Ok(count) => log::info!(
                "temporary-file sweep done in {} ms: {count} file(s) of interrupted writes removed",
                started.elapsed().as_millis()
            ),
            Err(err) => log::error!("sweeping temporary files failed: {}", Chain(&err)),
        }
    })?;
    let _ = sweeping.recv();
    Ok(())
}
