//! Small filesystem primitives the other modules share: opening a regular file without
//! hanging on a FIFO, creating a read-only file durably, fsyncing a directory, plain names.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{CoreError, CoreResult};

/// Mode of every published file: nobody writes an adapter after it is stored. Exported to
/// Python as `_core.SEALED_MODE`.
pub const SEALED_MODE: u32 = 0o444;

/// Mode of every published adapter directory (and of a staging directory): every user may
/// list and read it, only its writer may change it. Set with chmod after the mkdir, so the
/// writer's umask (077 would make it 0700) never decides who can verify an adapter. Exported to
/// Python as `_core.DIR_MODE`.
pub const DIR_MODE: u32 = 0o755;

/// Open `path` for reading only if it is a regular file, with its status (two system calls:
/// open and fstat). `O_NONBLOCK` keeps a FIFO from blocking the open, and stays set (a regular
/// file ignores it); `follow_links = false` refuses a symlink in the last component.
pub fn open_regular_file(path: &Path, follow_links: bool) -> io::Result<(File, fs::Metadata)> {
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
    if !follow_links {
        flags |= libc::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok((file, meta))
}

/// `open_regular_file`, then `O_NONBLOCK` cleared, so that nothing depends on a regular file
/// ignoring it; returns the size.
pub fn open_regular(path: &Path, follow_links: bool) -> io::Result<(File, u64)> {
    let (file, meta) = open_regular_file(path, follow_links)?;
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    unsafe {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
    Ok((file, meta.len()))
}

/// Create `path` exclusively (never through a symlink) for writing.
pub fn create_new(path: &Path) -> CoreResult<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| CoreError::storage(path, "creating", e))
}

/// Make a written file read-only and durable.
pub fn seal(file: &File, path: &Path) -> CoreResult<()> {
    file.set_permissions(fs::Permissions::from_mode(SEALED_MODE))
        .map_err(|e| CoreError::storage(path, "chmod 0444 of", e))?;
    file.sync_all()
        .map_err(|e| CoreError::storage(path, "fsync of", e))
}

/// Write `bytes` to a new read-only file and fsync it.
pub fn write_sealed(path: &Path, bytes: &[u8]) -> CoreResult<()> {
    let mut file = create_new(path)?;
    file.write_all(bytes)
        .map_err(|e| CoreError::storage(path, "writing", e))?;
    seal(&file, path)
}

/// Create the directory `path` (exclusively) with exactly `mode`, whatever the umask.
pub fn create_dir_with_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs::DirBuilder::new().mode(mode).create(path)?;
    // mkdir's mode is masked by the umask; chmod's is not. The directory is new and ours: a
    // name in it cannot have been swapped for a symlink by anyone who may not write it.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// fsync a directory, so that the entries created or renamed in it survive a power loss.
pub fn fsync_dir(path: &Path) -> CoreResult<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| CoreError::storage(path, "fsync of directory", e))
}

/// A single directory entry name of ours: no separator, no NUL, no leading dot, not too long.
pub fn check_plain_name(name: &str) -> CoreResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.contains('\0');
    if ok {
        Ok(())
    } else {
        Err(CoreError::BadName {
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names() {
        assert!(check_plain_name("a1b2c3d4-e5f6-4890-abcd-ef1234567890").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            ".staging",
            "a\0b",
            &"x".repeat(201),
        ] {
            assert!(check_plain_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn open_regular_refuses_fifos_directories_and_symlinks_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(open_regular(&fifo, true).is_err());
        assert!(open_regular(dir.path(), true).is_err());

        let target = dir.path().join("f");
        fs::write(&target, b"x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(open_regular(&link, true).unwrap().1, 1);
        assert!(open_regular(&link, false).is_err());
    }

    #[test]
    fn directories_get_their_mode_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: umask has no preconditions; restored below. (Threads of this test binary
        // creating files meanwhile get a stricter mode at worst.)
        let before = unsafe { libc::umask(0o077) };
        let made = create_dir_with_mode(&dir.path().join("d"), DIR_MODE);
        unsafe { libc::umask(before) };
        made.unwrap();
        let mode = fs::metadata(dir.path().join("d"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, DIR_MODE);
        assert!(create_dir_with_mode(&dir.path().join("d"), DIR_MODE).is_err());
    }

    #[test]
    fn write_sealed_is_read_only_and_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_sealed(&p, b"abc").unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            SEALED_MODE
        );
        assert!(matches!(
            write_sealed(&p, b"x"),
            Err(CoreError::Storage { .. })
        ));
        assert_eq!(fs::read(&p).unwrap(), b"abc");
    }
}
