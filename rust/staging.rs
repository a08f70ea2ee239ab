//! The staging directory of one store: the source is copied in while it is hashed and its
//! header validated (one read of the source), files are sealed read-only and fsynced, and
//! `publish` renames the whole directory into place.
//!
//! Each staging directory is locked (`flock`) by the process that owns it for as long as it
//! exists, so `sweep_stale` can tell a live store from a dead one whatever the clock says:
//! the kernel drops the lock when its owner dies, SIGKILL included.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{CoreError, CoreResult};
use crate::fault::{self, crash_point};
use crate::files::{check_plain_name, create_new, fsync_dir, seal, write_sealed};
use crate::hash::{FileDigest, StreamHasher, CHUNK};
use crate::header::{Header, OpenWeights};
use crate::publish::{rename_exclusive, PublishMode};

pub const STAGING_DIR: &str = ".staging";
pub const WEIGHTS_FILE: &str = "adapter.safetensors";
pub const PEFT_WEIGHTS_FILE: &str = "adapter_model.safetensors";
pub const CONFIG_FILE: &str = "adapter_config.json";
pub const RECORD_FILE: &str = ".record.json";

/// Start write-back every this many bytes, so the final fsync has little left to do.
const WRITEBACK_EVERY: u64 = 8 << 20;

static COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
pub struct Staging {
    root: PathBuf,
    dir: PathBuf,
    /// The staging directory, open and `flock`ed for the life of this value.
    lock: File,
    done: bool,
}

impl Staging {
    /// Create and lock a fresh staging directory under `{root}/.staging/`.
    pub fn create(root: &Path, label: &str) -> CoreResult<Staging> {
        check_plain_name(label)?;
        let parent = root.join(STAGING_DIR);
        match fs::DirBuilder::new().mode(0o755).create(&parent) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CoreError::storage(&parent, "creating", e)),
        }
        check_real_directory(&parent)?;
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let dir = parent.join(format!("{label}.{}.{n}.{nanos:08x}", std::process::id()));
            match fs::DirBuilder::new().mode(0o755).create(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(CoreError::storage(&dir, "creating", e)),
            }
            // A sweep may remove the directory between our mkdir and our lock: then the open
            // fails, or the locked directory has no links left, and we start over.
            let lock = match File::open(&dir) {
                Ok(lock) => lock,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CoreError::storage(&dir, "opening", e)),
            };
            flock(&lock, libc::LOCK_EX).map_err(|e| CoreError::storage(&dir, "locking", e))?;
            let alive = lock.metadata().map(|m| m.nlink() > 0).unwrap_or(false);
            if alive {
                return Ok(Staging {
                    root: root.to_path_buf(),
                    dir,
                    lock,
                    done: false,
                });
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Copy a safetensors source, its header already read and validated, into the staging
    /// directory: the header bytes first, then the rest of the stream, hashing all of it.
    pub fn write_weights(
        &self,
        weights: OpenWeights<impl Read>,
    ) -> CoreResult<(FileDigest, Header)> {
        let OpenWeights {
            mut reader,
            size,
            source,
            header,
            head,
        } = weights;
        let source = source.as_path();
        let path = self.dir.join(WEIGHTS_FILE);
        let mut out = create_new(&path)?;
        let mut hasher = StreamHasher::default();
        let write = |out: &mut File, bytes: &[u8]| {
            out.write_all(bytes)
                .map_err(|e| CoreError::storage(&path, "writing", e))
        };
        hasher.update(&head);
        write(&mut out, &head)?;

        let mut buf = vec![0u8; CHUNK];
        let mut flushed = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CoreError::source_io(source, e)),
            };
            if hasher.len() + n as u64 > size {
                return Err(CoreError::invalid(
                    source,
                    "the source grew while it was read",
                ));
            }
            hasher.update(&buf[..n]);
            write(&mut out, &buf[..n])?;
            crash_point(fault::COPYING);
            if hasher.len() - flushed >= WRITEBACK_EVERY {
                start_writeback(&out, flushed, hasher.len() - flushed);
                flushed = hasher.len();
            }
        }
        if hasher.len() != size {
            return Err(CoreError::invalid(
                source,
                format!(
                    "the source ended after {} of {size} bytes (truncated while read)",
                    hasher.len()
                ),
            ));
        }
        seal(&out, &path)?;
        crash_point(fault::WEIGHTS_SYNCED);
        Ok((hasher.finish(), header))
    }

    /// Write the adapter's config as given; returns its digest.
    pub fn write_config(&self, bytes: &[u8]) -> CoreResult<FileDigest> {
        write_sealed(&self.dir.join(CONFIG_FILE), bytes)?;
        let mut hasher = StreamHasher::default();
        hasher.update(bytes);
        Ok(hasher.finish())
    }

    /// Write the record file, link the PEFT file name, and rename the directory to
    /// `{root}/{name}`. On `AlreadyExists` the existing directory is untouched.
    pub fn publish(mut self, name: &str, record: &[u8], mode: PublishMode) -> CoreResult<PathBuf> {
        check_plain_name(name)?;
        write_sealed(&self.dir.join(RECORD_FILE), record)?;
        let peft = self.dir.join(PEFT_WEIGHTS_FILE);
        fs::hard_link(self.dir.join(WEIGHTS_FILE), &peft)
            .map_err(|e| CoreError::storage(&peft, "linking", e))?;
        self.lock
            .sync_all()
            .map_err(|e| CoreError::storage(&self.dir, "fsync of directory", e))?;
        let target = self.root.join(name);
        crash_point(fault::BEFORE_RENAME);
        rename_exclusive(&self.dir, &target, mode)?;
        self.done = true;
        crash_point(fault::RENAMED);
        fsync_dir(&self.root)?;
        Ok(target)
    }

    /// Remove the staging directory (also done on drop if neither this nor publish ran).
    pub fn discard(mut self) -> CoreResult<()> {
        self.done = true;
        fs::remove_dir_all(&self.dir).map_err(|e| CoreError::storage(&self.dir, "removing", e))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// `.staging` must be a directory of its own, never a symlink that would lead the sweep (which
/// deletes) or the copy (which writes) out of the root.
fn check_real_directory(path: &Path) -> CoreResult<()> {
    let meta = fs::symlink_metadata(path).map_err(|e| CoreError::storage(path, "inspecting", e))?;
    if meta.file_type().is_dir() {
        Ok(())
    } else {
        Err(CoreError::storage(
            path,
            "using",
            io::Error::from_raw_os_error(libc::ENOTDIR),
        ))
    }
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn start_writeback(file: &File, offset: u64, len: u64) {
    // SAFETY: a hint to the kernel on a descriptor we own; failure only loses the overlap.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Remove the staging directories under `root` whose owners are gone (their lock is free).
/// Live stores keep theirs. Returns the names removed.
pub fn sweep_stale(root: &Path) -> CoreResult<Vec<String>> {
    let parent = root.join(STAGING_DIR);
    match fs::symlink_metadata(&parent) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        _ => check_real_directory(&parent)?,
    }
    let entries = fs::read_dir(&parent).map_err(|e| CoreError::storage(&parent, "listing", e))?;
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CoreError::storage(&parent, "listing", e))?;
        let path = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let outcome = if is_dir {
            let Ok(dir) = File::open(&path) else { continue };
            match flock(&dir, libc::LOCK_EX | libc::LOCK_NB) {
                // Published, discarded or swept by someone else before we got the lock.
                Ok(()) if dir.metadata().map(|m| m.nlink() == 0).unwrap_or(true) => continue,
                // Removed while we hold the lock: an owner that locks later sees it gone.
                Ok(()) => fs::remove_dir_all(&path),
                Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => continue,
                Err(e) => return Err(CoreError::storage(&path, "locking", e)),
            }
        } else {
            // Nothing of ours is a plain file or a link here: something planted. Unlinking a
            // symlink never follows it.
            fs::remove_file(&path)
        };
        match outcome {
            Ok(()) => removed.push(entry.file_name().to_string_lossy().into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {} // another sweep got there first
            Err(e) => return Err(CoreError::storage(&path, "removing", e)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_files::one_tensor;
    use std::io::Cursor;
    use std::os::unix::fs::PermissionsExt;

    /// A file of one F32 tensor of two values.
    fn sample() -> Vec<u8> {
        one_tensor("F32", &[2], 8)
    }

    fn stage(root: &Path, bytes: &[u8]) -> CoreResult<(Staging, FileDigest)> {
        let s = Staging::create(root, "a")?;
        let weights = OpenWeights::read(Cursor::new(bytes), bytes.len() as u64, Path::new("src"))?;
        let (d, _) = s.write_weights(weights)?;
        s.write_config(b"{}")?;
        Ok((s, d))
    }

    #[test]
    fn stage_then_publish_lays_out_a_sealed_directory() {
        let root = tempfile::tempdir().unwrap();
        let bytes = sample();
        let (s, digest) = stage(root.path(), &bytes).unwrap();
        assert_eq!(digest.size, bytes.len() as u64);
        let target = s.publish("id1", b"{\"id\":1}", PublishMode::Auto).unwrap();
        assert_eq!(fs::read(target.join(WEIGHTS_FILE)).unwrap(), bytes);
        let a = fs::metadata(target.join(WEIGHTS_FILE)).unwrap();
        let b = fs::metadata(target.join(PEFT_WEIGHTS_FILE)).unwrap();
        assert_eq!(a.ino(), b.ino(), "the PEFT name is a hard link");
        assert_eq!(a.permissions().mode() & 0o777, 0o444);
        assert!(target.join(RECORD_FILE).exists());
        assert_eq!(
            fs::read_dir(root.path().join(STAGING_DIR)).unwrap().count(),
            0
        );
    }

    #[test]
    fn invalid_or_changing_sources_leave_nothing_behind() {
        let root = tempfile::tempdir().unwrap();
        let bytes = sample();
        let s = Staging::create(root.path(), "a").unwrap();
        // A stream shorter than the size it claims: truncated while read.
        let short = Cursor::new(&bytes[..bytes.len() - 1]);
        let weights = OpenWeights::read(short, bytes.len() as u64, Path::new("src")).unwrap();
        let err = s.write_weights(weights).unwrap_err();
        assert!(err.to_string().contains("src"), "{err}");
        drop(s);
        let err = stage(root.path(), b"garbage!").unwrap_err();
        assert!(matches!(err, CoreError::InvalidSafetensors { .. }));
        assert_eq!(
            fs::read_dir(root.path().join(STAGING_DIR)).unwrap().count(),
            0
        );
    }

    #[test]
    fn publish_onto_an_existing_adapter_fails_and_keeps_it() {
        let root = tempfile::tempdir().unwrap();
        let (s, _) = stage(root.path(), &sample()).unwrap();
        s.publish("id1", b"{}", PublishMode::Auto).unwrap();
        let before = fs::read(root.path().join("id1").join(WEIGHTS_FILE)).unwrap();
        let (s, _) = stage(root.path(), &sample()).unwrap();
        let err = s.publish("id1", b"{}", PublishMode::Auto).unwrap_err();
        assert!(matches!(err, CoreError::AlreadyExists { .. }));
        assert_eq!(
            fs::read(root.path().join("id1").join(WEIGHTS_FILE)).unwrap(),
            before
        );
        assert_eq!(
            fs::read_dir(root.path().join(STAGING_DIR)).unwrap().count(),
            0
        );
    }

    #[test]
    fn sweep_keeps_live_staging_and_removes_dead_or_planted_entries() {
        let root = tempfile::tempdir().unwrap();
        let (live, _) = stage(root.path(), &sample()).unwrap();
        let dead = root.path().join(STAGING_DIR).join("a.1.2.3");
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join(WEIGHTS_FILE), b"partial").unwrap();
        std::os::unix::fs::symlink("/etc", root.path().join(STAGING_DIR).join("planted")).unwrap();
        let mut removed = sweep_stale(root.path()).unwrap();
        removed.sort();
        assert_eq!(removed, ["a.1.2.3", "planted"]);
        assert!(live.path().exists());
        assert!(Path::new("/etc").exists());
        live.publish("id1", b"{}", PublishMode::Auto).unwrap();
    }

    #[test]
    fn a_symlinked_staging_directory_is_never_followed() {
        let root = tempfile::tempdir().unwrap();
        let victim = tempfile::tempdir().unwrap();
        fs::create_dir(victim.path().join("important")).unwrap();
        std::os::unix::fs::symlink(victim.path(), root.path().join(STAGING_DIR)).unwrap();
        assert!(matches!(
            sweep_stale(root.path()),
            Err(CoreError::Storage { .. })
        ));
        assert!(matches!(
            stage(root.path(), &sample()),
            Err(CoreError::Storage { .. })
        ));
        assert!(victim.path().join("important").exists());
        assert_eq!(fs::read_dir(victim.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_open_staging_directory_is_locked_by_its_owner() {
        let root = tempfile::tempdir().unwrap();
        let s = Staging::create(root.path(), "a").unwrap();
        assert!(fs::metadata(s.path()).is_ok());
        let lock = File::open(s.path()).unwrap();
        assert!(
            flock(&lock, libc::LOCK_EX | libc::LOCK_NB).is_err(),
            "held by its owner"
        );
    }
}
