//! Admin commands carried out by a running server: what travels over its
//! control socket (`<data dir>/control.sock`, served by
//! `gren_registry_http::control`, which only carries the bytes).
//!
//! A command that changes records finds the data directory's lock held by
//! `serve` and, instead of refusing, sends itself: the request is the
//! parsed [`AdminCommand`] as JSON (bundle paths made absolute, since the
//! server's working directory is not the command's); the answer is
//! `{"Ok": <Report>}` or `{"Err": "<message with its causes>"}`. The server
//! runs it with [`answer`], on its own store and catalog, through the same
//! [`change`](super::change) as a command on a stopped directory: the same
//! records, audit entries and events, which its notifier and purgers then
//! deliver as for the API's changes.

use super::{AdminCommand, AdminError, AdminResult, Report, Workspace, change};
use gren_registry_core::error::Chain;
use gren_registry_core::package::publish::Packages;
use gren_registry_core::store::{CONTROL_SOCKET, OpenError, Store};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

type Answer = Result<Report, String>;

/// Sends `command` to the server that holds `data_dir` (`locked` is how
/// the lock said so) and returns its report.
pub(crate) fn ask(data_dir: &Path, command: &AdminCommand, locked: OpenError) -> AdminResult<Report> {
    let socket = data_dir.join(CONTROL_SOCKET);
    let unreachable = |why| AdminError::NoControl {
        locked,
        socket: socket.clone(),
        why,
    };
    let request = serde_json::to_vec(&absolute_paths(command)).expect("admin commands serialize");
    let answer = exchange(&socket, &request).map_err(unreachable)?;
    match serde_json::from_slice::<Answer>(&answer) {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(message)) => Err(AdminError::ByServer(message)),
        Err(err) => Err(AdminError::ByServer(format!(
            "the running server's answer is not understood ({err}); run the admin command of the server's release"
        ))),
    }
}

fn exchange(socket: &Path, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = UnixStream::connect(socket)?;
    stream.write_all(request)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    // No time limit: an import of a whole history may take a while.
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    if answer.is_empty() {
        return Err(std::io::Error::other(
            "the server closed the connection without an answer",
        ));
    }
    Ok(answer)
}

/// `command` with its bundle paths absolute: the server reads them from its
/// own working directory.
fn absolute_paths(command: &AdminCommand) -> AdminCommand {
    match command {
        AdminCommand::Import {
            bundles,
            private,
            kernel_code_authors,
        } => {
            let here = std::env::current_dir().unwrap_or_default();
            AdminCommand::Import {
                bundles: bundles.iter().map(|path| here.join(path)).collect(),
                private: *private,
                kernel_code_authors: kernel_code_authors.clone(),
            }
        }
        other => other.clone(),
    }
}

/// The server's side: carries out the request on its `store` and
/// `packages`, with its kernel-code authors, and answers (see the header).
pub fn answer(store: &Store, packages: &Packages, kernel_code_authors: &[String], request: &[u8]) -> Vec<u8> {
    let answer: Answer = match serde_json::from_slice::<AdminCommand>(request) {
        Err(err) => Err(format!(
            "the running server does not understand this command ({err}); run the admin command of the server's release"
        )),
        Ok(command) => {
            log::info!("admin {} (over the control socket)", command.label());
            let workspace = Workspace {
                store,
                packages: Some(packages),
                kernel_code_authors: Some(kernel_code_authors),
            };
            change(&workspace, &command).map_err(|err| Chain(&err).to_string())
        }
    };
    serde_json::to_vec(&answer).expect("reports serialize")
}
