//! Why the data directory failed us: what was being done, to which file
//! (its full path, so an operator can find it), and what the system said
//! (the `source`). Nothing here is the client's fault: every variant is an
//! internal error at the HTTP edge.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {operation} {}", .path.display())]
    Io {
        operation: Operation,
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
    /// Records that contradict each other in a way nothing but a lost or
    /// edited file explains (a gap in the event log, say): start-up stops
    /// rather than build on it.
    #[error("{problem} (in {}); see `gren-registry admin fsck`, and restore the missing records from a backup", .path.display())]
    Inconsistent { path: PathBuf, problem: String },
    /// A file whose bytes no longer match the SHA-256 its record holds (a
    /// bit flipped on the disk, say): its bytes are never used.
    #[error(
        "{} is damaged: its SHA-256 is {found}, but its record says {expected}; it is not served. Restore it from a backup (see `gren-registry admin fsck`)",
        .path.display()
    )]
    Damaged {
        path: PathBuf,
        expected: String,
        found: String,
    },
}

/// Disk trouble that is not a bug: the client may come back later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFault {
    /// `ENOSPC`, `EDQUOT`: no room until an operator makes some.
    Full,
    /// `EROFS`, `EIO`: the file system refuses writes (remounted read-only
    /// after errors, say).
    Unavailable,
    /// A file read back is not what was written ([`StoreError::Damaged`]):
    /// unavailable until an operator restores it.
    Damaged,
}

/// What the store was doing when the file system failed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    Write,
    Remove,
    List,
    /// Making a directory's entries durable (after creating a directory in it).
    SyncDir,
    /// Removing the temporary files of interrupted writes.
    Sweep,
    /// Taking the writers' gate for a snapshot or a check.
    HoldWriters,
    /// Moving what start-up cannot explain to `quarantine/`.
    Quarantine,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Remove => "remove",
            Operation::List => "list",
            Operation::SyncDir => "fsync the directory",
            Operation::Sweep => "sweep the temporary files of",
            Operation::HoldWriters => "hold off the writers of",
            Operation::Quarantine => "quarantine",
        })
    }
}

impl StoreError {
    /// For `map_err`: `operation` failed on `path`.
    pub fn io(operation: Operation, path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            operation,
            path: path.to_path_buf(),
            source,
        }
    }

    /// What kind of disk trouble this is, for the answer a client gets.
    pub fn fault(&self) -> Option<DiskFault> {
        let source = match self {
            StoreError::Io { source, .. } => source,
            StoreError::Damaged { .. } => return Some(DiskFault::Damaged),
            _ => return None,
        };
        match source.raw_os_error()? {
            libc::ENOSPC | libc::EDQUOT => Some(DiskFault::Full),
            libc::EROFS | libc::EIO => Some(DiskFault::Unavailable),
            _ => None,
        }
    }

    /// Whether the file was not there (a race with its removal, say).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}
