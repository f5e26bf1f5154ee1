//! Recently downloaded bundles, in memory. Bundles never change (a revoked
//! one is removed), so the cache needs no invalidation beyond revocation,
//! and popular downloads cost no file system calls.
//!
//! A bundle is checked against the SHA-256 its version record holds when it
//! is read from disk, before it is kept or served ([`verify`]): a damaged one
//! (a bit flipped on the disk) is a [`StoreError::Damaged`] naming the file,
//! never kept, so each request looks again and a bundle restored from a
//! backup is served at once.

use crate::auth::secret::sha256_hex;
use crate::store::{Operation, StoreError, lock_ignoring_poison};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Enough for the popular packages; small next to the memory budget.
const CAPACITY_BYTES: usize = 32 * 1024 * 1024;

#[derive(Default)]
pub struct BundleCache {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    bundles: HashMap<PathBuf, Arc<Vec<u8>>>,
    bytes: usize,
}

impl BundleCache {
    /// The bytes of the bundle at `path`, whose record says their SHA-256
    /// (hex) is `sha256`, from memory when possible.
    pub fn read(&self, path: &Path, sha256: &str) -> Result<Arc<Vec<u8>>, StoreError> {
        if let Some(bytes) = lock_ignoring_poison(&self.entries).bundles.get(path) {
            return Ok(bytes.clone());
        }
        let bytes = Arc::new(std::fs::read(path).map_err(StoreError::io(Operation::Read, path))?);
        verify(path, &bytes, sha256)?;
        let mut entries = lock_ignoring_poison(&self.entries);
        if entries.bytes + bytes.len() > CAPACITY_BYTES {
            // Starting over is simpler than LRU bookkeeping, and the popular
            // bundles come back at once.
            entries.bundles.clear();
            entries.bytes = 0;
        }
        if bytes.len() <= CAPACITY_BYTES && entries.bundles.insert(path.to_path_buf(), bytes.clone()).is_none() {
            entries.bytes += bytes.len();
        }
        Ok(bytes)
    }

    /// Forgets a bundle (it is being revoked).
    pub fn forget(&self, path: &Path) {
        let mut entries = lock_ignoring_poison(&self.entries);
        if let Some(bytes) = entries.bundles.remove(path) {
            entries.bytes -= bytes.len();
        }
    }
}

/// Checks `bytes`, read from `path`, against the SHA-256 (hex) their version
/// record holds: anything that reads a bundle to hand on its content (a
/// download, a git repository's build) calls this first.
pub fn verify(path: &Path, bytes: &[u8], sha256: &str) -> Result<(), StoreError> {
    let found = sha256_hex(bytes);
    if found.eq_ignore_ascii_case(sha256) {
        return Ok(());
    }
    Err(StoreError::Damaged {
        path: path.to_path_buf(),
        expected: sha256.to_string(),
        found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_from_memory_until_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.pkg.gz");
        std::fs::write(&path, b"first").unwrap();
        let sha256 = sha256_hex(b"first");
        let cache = BundleCache::default();
        assert_eq!(*cache.read(&path, &sha256).unwrap(), b"first");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(*cache.read(&path, &sha256).unwrap(), b"first", "served from memory");
        cache.forget(&path);
        assert!(cache.read(&path, &sha256).unwrap_err().is_not_found());
    }

    #[test]
    fn a_bundle_that_does_not_match_its_record_is_refused_naming_it_and_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.pkg.gz");
        std::fs::write(&path, b"firsT").unwrap();
        let sha256 = sha256_hex(b"first");
        let cache = BundleCache::default();
        let err = cache.read(&path, &sha256).unwrap_err();
        assert!(matches!(err, StoreError::Damaged { .. }), "{err:?}");
        assert!(err.to_string().contains("a.pkg.gz"), "{err}");
        assert_eq!(err.fault(), Some(crate::store::DiskFault::Damaged));
        // Restored from a backup: served at once.
        std::fs::write(&path, b"first").unwrap();
        assert_eq!(*cache.read(&path, &sha256).unwrap(), b"first");
    }
}
