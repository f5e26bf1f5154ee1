//! The control socket: `<data dir>/control.sock`, a Unix socket through
//! which `gren-registry admin` commands change records while the server
//! runs. The server holds the data directory's lock and keeps the package
//! catalog in memory, so a second process must not write beside it; instead
//! the command is carried out here, by the same code (`crates/admin`) on
//! this process's store and catalog, so that the server's next answer shows
//! it and its events reach the packages site and the caches as the API's do.
//!
//! Only the data directory's owner can use it: the directory is `0700`, the
//! socket `0600`, and a peer whose uid is neither the directory's owner's
//! nor this process's is turned away before anything is read. One exchange a connection: the command writes
//! its request and shuts its half down; the answer is written and the
//! connection closed. What the bytes mean is the admin crate's
//! ([`Handler`]); this module only carries them, one command at a time.

use crate::app::App;
use gren_registry_core::package::publish::Packages;
use gren_registry_core::store::{CONTROL_SOCKET, Store};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Carries out one request (the admin crate's bytes) on the running
/// server's store and catalog, with the server's kernel-code authors, and
/// answers with bytes of its own.
pub type Handler = Box<dyn Fn(&Store, &Packages, &[String], &[u8]) -> Vec<u8> + Send + Sync>;

/// A request larger than this is refused: a command is a few hundred bytes.
const MAX_REQUEST_BYTES: u64 = 1024 * 1024;
/// How long a connected command may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The socket, removed when the server stops.
pub struct ControlSocket {
    path: PathBuf,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the control socket and serves it on a thread of its own. A socket
/// left by a server that was killed is replaced (this process holds the
/// data directory's lock, so nobody else serves it); anything else by that
/// name is left alone and the socket is not offered. Without it, changing
/// admin commands refuse while the server runs, as they did before it
/// existed: a warning, not a reason to stop serving.
pub fn start(app: &Arc<App>, handler: Handler) -> Option<ControlSocket> {
    let path = app.store.root().join(CONTROL_SOCKET);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_socket() => {
            let _ = std::fs::remove_file(&path);
        }
        Ok(_) => {
            log::warn!(
                "{} exists and is not a socket: admin commands that change records need the server stopped",
                path.display()
            );
            return None;
        }
        Err(_) => {}
    }
    let listener = match bind_owner_only(&path) {
        Ok(listener) => listener,
        Err(err) => {
            log::warn!(
                "cannot offer {} ({err}): admin commands that change records need the server stopped",
                path.display()
            );
            return None;
        }
    };
    let app = app.clone();
    let spawned = std::thread::Builder::new()
        .name("control".into())
        .spawn(move || serve(&app, &listener, &handler));
    match spawned {
        Ok(_) => Some(ControlSocket { path }),
        Err(err) => {
            log::warn!("cannot start the control socket's thread: {err}");
            let _ = std::fs::remove_file(&path);
            None
        }
    }
}

/// Binds `path` and makes it `0600` before anyone can have connected: the
/// directory is `0700`, and the mode is set before the first `accept`.
fn bind_owner_only(path: &std::path::Path) -> std::io::Result<UnixListener> {
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

fn serve(app: &App, listener: &UnixListener, handler: &Handler) {
    for stream in listener.incoming() {
        if app.is_stopping() {
            return;
        }
        match stream {
            Ok(stream) => {
                if let Err(err) = exchange(app, stream, handler) {
                    log::warn!("admin command over the control socket: {err}");
                }
            }
            Err(err) => {
                log::warn!("control socket: {err}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn exchange(app: &App, mut stream: UnixStream, handler: &Handler) -> std::io::Result<()> {
    let peer = peer_uid(&stream)?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    // The directory's owner is who admin commands run as (they refuse any
    // other user); the server's own user is the same one, unless it was
    // started as another (root, say), which may then speak for itself.
    let owner = std::fs::metadata(app.store.root())
        .map(|meta| std::os::unix::fs::MetadataExt::uid(&meta))
        .unwrap_or(me);
    if peer != me && peer != owner {
        return Err(std::io::Error::other(format!(
            "refused a connection from uid {peer}: only the data directory's owner (uid {owner}) may use it"
        )));
    }
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let mut request = Vec::new();
    (&mut stream).take(MAX_REQUEST_BYTES + 1).read_to_end(&mut request)?;
    if request.len() as u64 > MAX_REQUEST_BYTES {
        return Err(std::io::Error::other("refused a request over 1 MiB"));
    }
    let answer = handler(&app.store, &app.packages, &app.config.kernel_code_authors, &request);
    stream.write_all(&answer)?;
    stream.shutdown(std::net::Shutdown::Both)
}

/// The uid of the process at the other end of `stream` (`SO_PEERCRED`).
fn peer_uid(stream: &UnixStream) -> std::io::Result<libc::uid_t> {
    use std::os::fd::AsRawFd;
    let mut credentials = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut length = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `length` bytes into `credentials`,
    // which is a `ucred` of that size, on a socket this function borrows.
    let status = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut credentials as *mut libc::ucred).cast(),
            &mut length,
        )
    };
    if status != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(credentials.uid)
}
