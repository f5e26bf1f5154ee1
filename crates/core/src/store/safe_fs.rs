//! File-system calls that keep the data directory private and never follow
//! a symbolic link inside it.
//!
//! Every directory the registry creates is `0700` and every file `0600`,
//! whatever the umask: records name users and private packages, pending
//! logins and local e-mails hold live codes. A symbolic link below the data
//! directory (planted, or left by a careless copy) is an error naming it,
//! never followed: directories on the way to a record are checked with
//! `lstat`, and records are opened with `O_NOFOLLOW`. The data directory
//! itself may be a link (an operator's choice).

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// The error for a symbolic link found at `path`.
pub fn symlink_refused(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "refusing to follow the symbolic link {} inside the data directory (it must hold only plain files and directories)",
            path.display()
        ),
    )
}

/// Refuses `relative` (below `root`) when one of its existing components is
/// a symbolic link. Components from the first missing one on cannot be.
pub fn refuse_symlinks(root: &Path, relative: &Path) -> io::Result<()> {
    let mut current = root.to_path_buf();
    for component in relative.components() {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => return Err(symlink_refused(&current)),
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Opens the file `relative` below `root` for reading, refusing symbolic
/// links on the way and in its place (`O_NOFOLLOW`, so a link planted after
/// the check is refused too).
pub fn open_for_reading(root: &Path, relative: &Path) -> io::Result<File> {
    if let Some(parent) = relative.parent() {
        refuse_symlinks(root, parent)?;
    }
    open_nofollow(OpenOptions::new().read(true), 0, &root.join(relative))
}

/// Opens a lock file for `flock`, refusing a link. An existing one is
/// opened read-only (`flock` needs no write access, so nothing depends on
/// who may write it) and made private again when it is ours; a missing one
/// is created `0600`.
pub fn open_lock_file(path: &Path) -> io::Result<File> {
    match open_nofollow(OpenOptions::new().read(true), 0, path) {
        Ok(file) => {
            // A lock file others can open is a lock others can hold (and
            // so block every writer): take their access away when we can.
            let meta = file.metadata()?;
            if meta.mode() & 0o077 != 0 && meta.uid() == current_uid() {
                make_private(&file)?;
            }
            Ok(file)
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let mut options = OpenOptions::new();
            options.create(true).truncate(false).write(true).mode(FILE_MODE);
            let file = open_nofollow(&mut options, 0, path)?;
            make_private(&file)?;
            Ok(file)
        }
        Err(err) => Err(err),
    }
}

/// What is wrong with who may reach the data directory `root`: others than
/// its owner may enter or list it (its records would be theirs to read, and
/// plant), or it belongs to another user than this process's (then root, or
/// a wrong `sudo`, is writing records its owner's server cannot read).
pub fn exposure(root: &Path) -> io::Result<Vec<String>> {
    let meta = fs::metadata(root)?;
    let mut concerns = Vec::new();
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        concerns.push(format!(
            "the data directory {} is accessible to other users (mode {mode:03o}); make it private: chmod 700 {}",
            root.display(),
            root.display()
        ));
    }
    if meta.uid() != current_uid() {
        concerns.push(format!(
            "the data directory {} is owned by uid {}, not by this process's uid {}; run the registry as its owner",
            root.display(),
            meta.uid(),
            current_uid()
        ));
    }
    Ok(concerns)
}

/// The login name of `uid`, when the system knows one.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buffer = vec![0 as libc::c_char; 4096];
    // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids).
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the sizes given; `getpwuid_r` only
    // writes into `entry` and `buffer`, which outlive the strings read below.
    let status = unsafe { libc::getpwuid_r(uid, &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
    if status != 0 || found.is_null() {
        return None;
    }
    // SAFETY: on success `pw_name` points at a NUL-terminated string in `buffer`.
    let name = unsafe { std::ffi::CStr::from_ptr(entry.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// The effective user id of this process.
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Gives a file the registry just created exactly [`FILE_MODE`] (the umask
/// may have taken bits away; nothing may add any).
pub fn make_private(file: &File) -> io::Result<()> {
    file.set_permissions(Permissions::from_mode(FILE_MODE))
}

/// Creates the directory `relative` below `root` and every missing one on
/// the way, `0700`, refusing links and anything that is not a directory.
/// Returns the directories it created (or found created by another thread
/// just now), whose parents the caller must make durable.
pub fn create_dirs(root: &Path, relative: &Path) -> io::Result<Vec<PathBuf>> {
    let mut created = Vec::new();
    let mut dir = root.to_path_buf();
    for component in relative.components() {
        dir.push(component);
        if is_plain_dir(&dir)? {
            continue;
        }
        match DirBuilder::new().mode(DIR_MODE).create(&dir) {
            Ok(()) => {
                // Exact, whatever the umask; through the directory itself,
                // which is not a link (O_NOFOLLOW).
                open_nofollow(OpenOptions::new().read(true), libc::O_DIRECTORY, &dir)?
                    .set_permissions(Permissions::from_mode(DIR_MODE))?;
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists && is_plain_dir(&dir)? => {}
            Err(err) => return Err(err),
        }
        created.push(dir.clone());
    }
    Ok(created)
}

/// Whether `dir` is a directory (not a link to one); `false` when missing;
/// an error naming it when it is a link or a file.
fn is_plain_dir(dir: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(true),
        Ok(meta) if meta.file_type().is_symlink() => Err(symlink_refused(dir)),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} should be a directory, but is a file", dir.display()),
        )),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

/// Opens with `O_NOFOLLOW` (plus `flags`): a link in `path`'s place is
/// refused with an error naming it.
fn open_nofollow(options: &mut OpenOptions, flags: i32, path: &Path) -> io::Result<File> {
    options
        .custom_flags(libc::O_NOFOLLOW | flags)
        .open(path)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ELOOP) => symlink_refused(path),
            _ => err,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn access_mode(file: &File) -> i32 {
        // SAFETY: F_GETFL on an open descriptor only reads its flags.
        unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) & libc::O_ACCMODE }
    }

    #[test]
    fn an_existing_lock_file_is_opened_read_only_and_made_private_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.lock");
        fs::write(&path, b"").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
        let file = open_lock_file(&path).unwrap();
        assert_eq!(access_mode(&file), libc::O_RDONLY);
        file.try_lock().expect("flock works on a read-only descriptor");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, FILE_MODE);
    }

    #[test]
    fn a_missing_lock_file_is_created_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.lock");
        open_lock_file(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, FILE_MODE);
    }
}
