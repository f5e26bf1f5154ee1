//! Test-only fault injection: `GREN_REGISTRY_TEST_FAULTS` makes chosen store
//! operations fail with a chosen errno for paths under a prefix (relative to
//! the data directory), so the integration tests can drive the real binary
//! into a full, read-only or failing disk. Read once; inert (one load of an
//! empty list) unless set. Compiled in always, rather than behind a cargo
//! feature, so the tests exercise the very binary that ships and the
//! production path has no `cfg` forks; a server started with it set says so
//! in its log.
//!
//! Syntax: `op:ERRNO@prefix`, several separated by `,`. `op` is `write`
//! (before anything is written), `temp-file` (the temporary file's creation,
//! inside `tempfile`'s call, as the system would fail it), `commit-sync`
//! (the directory fsync after a rename or a removal), `dir-sync` (the fsync
//! of the parent of a directory the store created, the prefix matching the
//! new directory) or `remove`; `ERRNO` is `ENOSPC`, `EDQUOT`, `EROFS` or
//! `EIO`.

use std::io;
use std::path::Path;
use std::sync::OnceLock;

pub const ENV: &str = "GREN_REGISTRY_TEST_FAULTS";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Point {
    Write,
    TempFile,
    CommitSync,
    DirSync,
    Remove,
}

struct Fault {
    point: Point,
    errno: i32,
    prefix: String,
}

/// Reads the variable now, so a server started with it says so at once.
pub(super) fn load() {
    faults();
}

fn faults() -> &'static [Fault] {
    static FAULTS: OnceLock<Vec<Fault>> = OnceLock::new();
    FAULTS.get_or_init(|| {
        let Ok(spec) = std::env::var(ENV) else {
            return Vec::new();
        };
        let faults: Vec<Fault> = spec.split(',').filter_map(parse).collect();
        log::warn!("{ENV} is set: {} injected storage fault(s) ({spec})", faults.len());
        faults
    })
}

fn parse(item: &str) -> Option<Fault> {
    let (point, rest) = item.trim().split_once(':')?;
    let (errno, prefix) = rest.split_once('@')?;
    let point = match point {
        "write" => Point::Write,
        "temp-file" => Point::TempFile,
        "commit-sync" => Point::CommitSync,
        "dir-sync" => Point::DirSync,
        "remove" => Point::Remove,
        _ => return None,
    };
    let errno = match errno {
        "ENOSPC" => libc::ENOSPC,
        "EDQUOT" => libc::EDQUOT,
        "EROFS" => libc::EROFS,
        "EIO" => libc::EIO,
        _ => return None,
    };
    Some(Fault {
        point,
        errno,
        prefix: prefix.to_string(),
    })
}

/// The injected failure of `point` on `relative` (a path below the data
/// directory), if one is asked for.
pub(super) fn check(point: Point, relative: &Path) -> io::Result<()> {
    let relative = relative.to_string_lossy();
    match faults()
        .iter()
        .find(|fault| fault.point == point && relative.starts_with(&fault.prefix))
    {
        Some(fault) => Err(io::Error::from_raw_os_error(fault.errno)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_is_parsed_from_its_operation_errno_and_prefix() {
        let fault = parse("commit-sync:EIO@packages/").unwrap();
        assert_eq!(
            (fault.point, fault.errno, fault.prefix.as_str()),
            (Point::CommitSync, libc::EIO, "packages/")
        );
        assert!(parse("write:EPERM@x").is_none() && parse("nonsense").is_none());
    }
}
