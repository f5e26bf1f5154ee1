//! Per-key mutual exclusion for read-modify-write cycles on records.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A table of locks created on demand, one per key, and dropped again when
/// nobody holds or waits for them (so random keys such as login ids do not
/// accumulate).
#[derive(Default)]
pub struct KeyedLocks {
    table: Mutex<HashMap<String, Arc<Entry>>>,
}

#[derive(Default)]
struct Entry {
    held: Mutex<bool>,
    released: Condvar,
}

/// Holds the lock of one key until dropped.
pub struct KeyGuard<'a> {
    owner: &'a KeyedLocks,
    key: String,
    entry: Arc<Entry>,
}

impl KeyedLocks {
    pub fn lock(&self, key: String) -> KeyGuard<'_> {
        let entry = lock_ignoring_poison(&self.table)
            .entry(key.clone())
            .or_default()
            .clone();
        let mut held = lock_ignoring_poison(&entry.held);
        while *held {
            held = entry
                .released
                .wait(held)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        *held = true;
        drop(held);
        KeyGuard {
            owner: self,
            key,
            entry,
        }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        *lock_ignoring_poison(&self.entry.held) = false;
        self.entry.released.notify_one();
        let mut table = lock_ignoring_poison(&self.owner.table);
        // Only the table and this guard refer to the entry: nobody waits on it.
        // Clones are only taken under the table lock, so this cannot race.
        if Arc::strong_count(&self.entry) == 2 {
            table.remove(&self.key);
        }
    }
}

/// A panic while holding a lock must not take the lock out of service: what it
/// protects lives on disk and is replaced atomically, never left half-done.
pub fn lock_ignoring_poison<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// [`lock_ignoring_poison`] for readers of an `RwLock`.
pub fn read_ignoring_poison<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// [`lock_ignoring_poison`] for writers of an `RwLock`.
pub fn write_ignoring_poison<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_dropped_when_released() {
        let locks = KeyedLocks::default();
        {
            let _a = locks.lock("a".into());
            let _b = locks.lock("b".into());
            assert_eq!(locks.table.lock().unwrap().len(), 2);
        }
        assert!(locks.table.lock().unwrap().is_empty());
    }

    #[test]
    fn a_second_locker_waits_for_the_first() {
        let locks = Arc::new(KeyedLocks::default());
        let guard = locks.lock("k".into());
        let (tx, rx) = std::sync::mpsc::channel();
        let other = {
            let locks = locks.clone();
            std::thread::spawn(move || {
                let _g = locks.lock("k".into());
                tx.send(()).unwrap();
            })
        };
        assert!(rx.recv_timeout(std::time::Duration::from_millis(100)).is_err());
        drop(guard);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        other.join().unwrap();
    }
}
