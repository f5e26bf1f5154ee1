//! Recently downloaded bundles, in memory. Bundles never change (a revoked
//! one is removed), so the cache needs no invalidation beyond revocation,
//! and popular downloads cost no file system calls.

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
    /// The bytes of the bundle at `path`, from memory when possible.
    pub fn read(&self, path: &Path) -> Result<Arc<Vec<u8>>, StoreError> {
        if let Some(bytes) = lock_ignoring_poison(&self.entries).bundles.get(path) {
            return Ok(bytes.clone());
        }
        let bytes = Arc::new(std::fs::read(path).map_err(StoreError::io(Operation::Read, path))?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_from_memory_until_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.pkg.gz");
        std::fs::write(&path, b"first").unwrap();
        let cache = BundleCache::default();
        assert_eq!(*cache.read(&path).unwrap(), b"first");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(*cache.read(&path).unwrap(), b"first", "served from memory");
        cache.forget(&path);
        assert!(cache.read(&path).unwrap_err().is_not_found());
    }
}
