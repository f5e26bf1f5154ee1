//! A real full disk: a small tmpfs mounted by the test, which needs root.
//! A test that cannot mount one says it skipped, and fails under CI.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of a few MiB, unmounted when dropped.
pub struct SmallDisk {
    mount: tempfile::TempDir,
}

impl SmallDisk {
    pub fn path(&self) -> &Path {
        self.mount.path()
    }

    /// Fills the disk to its last byte with one file, which [`Filler`] removes.
    pub fn fill(&self) -> Filler {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) if err.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(err) => panic!("filling the disk: {err}"),
            }
        }
        // The last partial page, byte by byte.
        while file.write(&[0]).is_ok_and(|written| written == 1) {}
        Filler(path)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.mount.path()).status();
    }
}

/// The file that holds the disk full; removing it frees the space.
pub struct Filler(PathBuf);

impl Filler {
    pub fn free(self) {
        std::fs::remove_file(&self.0).unwrap();
    }
}

/// A tmpfs of `mib` MiB, or `None` (skipped) where it cannot be mounted.
pub fn small_disk_or_skip(mib: u32) -> Option<SmallDisk> {
    let mount = tempfile::Builder::new().prefix("gren-full-disk-").tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0700"), "tmpfs"])
        .arg(mount.path())
        .output()
        .is_ok_and(|out| out.status.success());
    if !mounted {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root and must be able to mount a tmpfs for the full-disk tests"
        );
        eprintln!("SKIPPED: cannot mount a tmpfs (needs root)");
        return None;
    }
    Some(SmallDisk { mount })
}
