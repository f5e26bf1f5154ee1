//! Why the data directory failed us: what was being done, to which file
//! (its full path, so an operator can find it), and what the system said
//! (the `source`). Nothing here is the client's fault: every variant is an
//! internal error at the HTTP edge.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A record that is not the JSON it should be.
    #[error("corrupt record {}", .path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove {}", .path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot list {}", .path.display())]
    List {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot sweep the temporary files of {}", .path.display())]
    Sweep {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot hold off the writers of {}", .path.display())]
    HoldWriters {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl StoreError {
    /// For `map_err`: a failure to read `path`.
    pub fn reading(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
        move |source| StoreError::Read {
            path: path.to_path_buf(),
            source,
        }
    }

    /// For `map_err`: a failure to write `path`.
    pub fn writing(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
        move |source| StoreError::Write {
            path: path.to_path_buf(),
            source,
        }
    }

    /// For `map_err`: a failure to remove `path`.
    pub fn removing(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
        move |source| StoreError::Remove {
            path: path.to_path_buf(),
            source,
        }
    }

    /// For `map_err`: a failure to list the directory `path`.
    pub fn listing(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
        move |source| StoreError::List {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether the file was not there (a race with its removal, say).
    pub fn is_not_found(&self) -> bool {
        let source = match self {
            StoreError::Corrupt { .. } => return false,
            StoreError::Read { source, .. }
            | StoreError::Write { source, .. }
            | StoreError::Remove { source, .. }
            | StoreError::List { source, .. }
            | StoreError::Sweep { source, .. }
            | StoreError::HoldWriters { source, .. } => source,
        };
        source.kind() == io::ErrorKind::NotFound
    }
}
