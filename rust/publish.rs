//! Making a staged directory appear under its final name, atomically and exclusively.
//!
//! First choice: `renameat2(RENAME_NOREPLACE)`, which fails with `EEXIST` when the target
//! exists. Where the filesystem refuses the flag (`EINVAL`/`ENOSYS`: some network and older
//! filesystems), the claim scheme: `mkdir(target)` is an exclusive create (an `O_EXCL` for
//! directories that NFSv4 honours), and a plain `rename` then replaces that empty claim in one
//! step. A plain rename never replaces a non-empty directory, so every published adapter is
//! safe either way, and no reader ever sees a partial directory under the final name.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use crate::error::{CoreError, CoreResult};
use crate::fault::{self, crash_point};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishMode {
    /// `renameat2(RENAME_NOREPLACE)`, falling back to the claim scheme where it is unsupported.
    Auto,
    /// The claim scheme only (what a filesystem without `RENAME_NOREPLACE` gets).
    ExclusiveClaim,
}

/// Rename directory `from` to `to`, failing with `AlreadyExists` if `to` exists.
pub fn rename_exclusive(from: &Path, to: &Path, mode: PublishMode) -> CoreResult<()> {
    if mode == PublishMode::Auto {
        match renameat2_noreplace(from, to) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                return Err(CoreError::AlreadyExists {
                    path: to.to_path_buf(),
                })
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {}
            Err(e) => return Err(CoreError::storage(to, "renaming staging directory to", e)),
        }
    }
    claim_and_rename(from, to)
}

fn renameat2_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let from = CString::new(from.as_os_str().as_bytes())?;
    let to = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: two valid NUL-terminated paths relative to the current directory.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn claim_and_rename(from: &Path, to: &Path) -> CoreResult<()> {
    let exists = || CoreError::AlreadyExists {
        path: to.to_path_buf(),
    };
    match fs::DirBuilder::new().mode(0o755).create(to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists()),
        Err(e) => return Err(CoreError::storage(to, "claiming", e)),
    }
    crash_point(fault::CLAIMED);
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        // Our empty claim was removed and someone else's adapter took the name.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => {
            Err(exists())
        }
        Err(e) => {
            let _ = fs::remove_dir(to); // only ever removes our own empty claim
            Err(CoreError::storage(to, "renaming staging directory to", e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(root: &Path, name: &str, content: &[u8]) -> std::path::PathBuf {
        let d = root.join(name);
        fs::create_dir(&d).unwrap();
        fs::write(d.join("adapter.safetensors"), content).unwrap();
        d
    }

    #[test]
    fn both_modes_publish_and_never_replace() {
        for mode in [PublishMode::Auto, PublishMode::ExclusiveClaim] {
            let root = tempfile::tempdir().unwrap();
            let target = root.path().join("final");
            rename_exclusive(&staged(root.path(), "s1", b"first"), &target, mode).unwrap();
            let second = staged(root.path(), "s2", b"second");
            let err = rename_exclusive(&second, &target, mode).unwrap_err();
            assert!(
                matches!(err, CoreError::AlreadyExists { .. }),
                "{mode:?}: {err}"
            );
            assert_eq!(
                fs::read(target.join("adapter.safetensors")).unwrap(),
                b"first"
            );
            assert!(
                second.exists(),
                "the loser's staging directory is left to its owner"
            );
        }
    }

    #[test]
    fn racing_publishers_have_exactly_one_winner() {
        for mode in [PublishMode::Auto, PublishMode::ExclusiveClaim] {
            let root = tempfile::tempdir().unwrap();
            let target = root.path().join("final");
            let dirs: Vec<_> = (0..8)
                .map(|i| staged(root.path(), &format!("s{i}"), format!("{i}").as_bytes()))
                .collect();
            let wins: usize = std::thread::scope(|s| {
                let handles: Vec<_> = dirs
                    .iter()
                    .map(|d| s.spawn(|| rename_exclusive(d, &target, mode).is_ok()))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap() as usize)
                    .sum()
            });
            assert_eq!(wins, 1, "{mode:?}");
            let content = fs::read(target.join("adapter.safetensors")).unwrap();
            let winner = dirs.iter().filter(|d| !d.exists()).count();
            assert_eq!(winner, 1);
            assert_eq!(content.len(), 1);
        }
    }
}
