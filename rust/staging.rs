//! The staging directory of one store: the source is copied in while it is hashed and its
//! header validated (one read of the source), files are sealed read-only and fsynced, and
//! `publish` renames the adapter's directory into place.
//!
//! Layout: `{root}/.staging/{label}.{pid}.{n}.{nanos}.{boot token}/` holds the lock file and
//! the owner record of `owner.rs` and `adapter/`, the directory that `publish` renames to
//! `{root}/{id}`. The lock and the record stay behind the rename until the store clears its
//! staging directory, so at every instant a sweep can tell whether the store is alive
//! (`sweep_stale`, by the rule of `owner::is_stale`), on this host or another, whatever the
//! clock says.
//!
//! Modes do not depend on the writer's umask (they are set with chmod after creating):
//! `.staging` is 1777 like /tmp, so every user's stores can create their staging directories
//! in it and nobody but the owner (or root) can remove another's; a staging directory and the
//! published adapter directory are 0755 (`files::DIR_MODE`), its files 0444.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use crate::error::{CoreError, CoreResult};
use crate::fault::{self, crash_point};
use crate::files::{
    check_plain_name, create_dir_with_mode, create_new, fsync_dir, open_regular, seal,
    write_sealed, DIR_MODE,
};
use crate::hash::{FileDigest, StreamHasher, CHUNK};
use crate::header::{Header, OpenWeights};
use crate::owner::{self, Evidence, Owner, LOCK_FILE, OWNER_FILE};
use crate::publish::{rename_exclusive, PublishMode};

pub const STAGING_DIR: &str = ".staging";
pub const WEIGHTS_FILE: &str = "adapter.safetensors";
pub const PEFT_WEIGHTS_FILE: &str = "adapter_model.safetensors";
pub const CONFIG_FILE: &str = "adapter_config.json";
pub const RECORD_FILE: &str = ".record.json";

/// Start write-back every this many bytes, so the final fsync has little left to do.
const WRITEBACK_EVERY: u64 = 8 << 20;
/// Buffers of `CHUNK` bytes in flight between the copying thread and the hashing one: enough
/// that a stall of either (a write throttled by the disk) does not stop the other at once.
const COPY_BUFFERS: usize = 8;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The directory inside a staging directory that holds the adapter's files and that
/// `publish` renames to `{root}/{id}`.
const ADAPTER_SUBDIR: &str = "adapter";
/// Mode of `{root}/.staging`: every user may create in it, only an entry's owner (or root)
/// may remove or rename it (the sticky bit, as on /tmp).
pub const STAGING_DIR_MODE: u32 = 0o1777;
/// Mode of the lock file and the owner record: readable by all, so that another user's sweep
/// can tell a live store from a dead one.
const OWNER_FILES_MODE: u32 = 0o644;

#[derive(Debug)]
pub struct Staging {
    root: PathBuf,
    /// `{root}/.staging/{name}`: the lock file, the owner record and `dir`.
    home: PathBuf,
    /// `{home}/adapter`: the adapter's files, renamed to `{root}/{id}` by `publish`.
    dir: PathBuf,
    /// `{home}/.lock`, open for writing and locked for the life of this value; `None` once
    /// the staging directory is cleared.
    lock: Option<File>,
    /// `dir` was renamed into place.
    published: bool,
}

impl Staging {
    /// Create, lock and record the owner of a fresh staging directory under
    /// `{root}/.staging/`.
    pub fn create(root: &Path, label: &str) -> CoreResult<Staging> {
        check_plain_name(label)?;
        let parent = staging_parent(root)?;
        let here = Owner::current();
        let token = owner::boot_token(&here.boot_id);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let home = parent.join(format!("{label}.{}.{n}.{nanos:08x}.{token}", here.pid));
            match create_dir_with_mode(&home, DIR_MODE) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(CoreError::storage(&home, "creating", e)),
            }
            if let Some(staging) = Staging::own(root, home, &here)? {
                return Ok(staging);
            }
        }
    }

    /// Lock a new staging directory and write its owner record and adapter directory; `None`
    /// if a sweep removed it before we held the lock (the caller starts over).
    fn own(root: &Path, home: PathBuf, here: &Owner) -> CoreResult<Option<Staging>> {
        let lock_path = home.join(LOCK_FILE);
        let lock = match create_new(&lock_path) {
            Ok(lock) => lock,
            Err(CoreError::Storage { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        owner::lock(&lock).map_err(|e| CoreError::storage(&lock_path, "locking", e))?;
        if lock.metadata().map(|m| m.nlink() == 0).unwrap_or(true) {
            return Ok(None); // swept (and unlinked) while we waited for the lock
        }
        // From here on, dropping `staging` clears the directory.
        let staging = Staging {
            root: root.to_path_buf(),
            dir: home.join(ADAPTER_SUBDIR),
            home,
            lock: Some(lock),
            published: false,
        };
        let readable = || fs::Permissions::from_mode(OWNER_FILES_MODE);
        fs::set_permissions(&lock_path, readable())
            .map_err(|e| CoreError::storage(&lock_path, "chmod of", e))?;
        let record = staging.home.join(OWNER_FILE);
        let mut file = create_new(&record)?;
        file.write_all(&here.to_bytes())
            .and_then(|()| file.set_permissions(readable()))
            .map_err(|e| CoreError::storage(&record, "writing", e))?;
        create_dir_with_mode(&staging.dir, DIR_MODE)
            .map_err(|e| CoreError::storage(&staging.dir, "creating", e))?;
        Ok(Some(staging))
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Copy a safetensors source, its header already read and validated, into the staging
    /// directory: the header bytes first, then the rest of the stream, hashing all of it.
    /// `keep_going` is asked after each chunk; `false` stops the copy (`Interrupted`), and
    /// dropping the staging then removes what was written.
    ///
    /// Two threads share the work: a second thread reads each chunk of the source into a
    /// buffer and writes that buffer to the staged file, while this one hashes the same buffer
    /// (and alone calls `keep_going`, so a Python signal check stays on the caller's thread). A
    /// buffer goes back to be refilled only after it is both written and hashed, so the bytes
    /// hashed are the bytes written, whatever the source does meanwhile: each byte is read from
    /// the source once, into memory that nothing else writes.
    pub fn write_weights(
        &self,
        weights: OpenWeights<impl Read + Send>,
        mut keep_going: impl FnMut() -> bool,
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
        let out = create_new(&path)?;
        let written =
            |result: io::Result<()>| result.map_err(|e| CoreError::storage(&path, "writing", e));
        let mut hasher = StreamHasher::default();
        hasher.update(&head);
        written((&out).write_all(&head))?;

        let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(COPY_BUFFERS);
        let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
        for _ in 0..COPY_BUFFERS {
            let _ = free_tx.send(vec![0u8; CHUNK]);
        }
        let (mut out_ref, reader_ref) = (&out, &mut reader);
        let start = head.len() as u64;
        let (stopped, moved) = std::thread::scope(|scope| {
            let mover = scope.spawn(move || -> CoreResult<()> {
                let (mut copied, mut flushed) = (start, 0u64);
                for mut buf in free_rx {
                    let n = loop {
                        match reader_ref.read(&mut buf) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            other => break other.map_err(|e| CoreError::source_io(source, e))?,
                        }
                    };
                    if n == 0 {
                        break;
                    }
                    if copied + n as u64 > size {
                        return Err(CoreError::invalid(
                            source,
                            "the source grew while it was read",
                        ));
                    }
                    written(out_ref.write_all(&buf[..n]))?;
                    copied += n as u64;
                    crash_point(fault::COPYING);
                    if copied - flushed >= WRITEBACK_EVERY {
                        start_writeback(out_ref, flushed, copied - flushed);
                        flushed = copied;
                    }
                    if full_tx.send((buf, n)).is_err() {
                        break; // the hashing side stopped
                    }
                }
                Ok(())
            });
            let mut stopped = false;
            for (buf, n) in &full_rx {
                hasher.update(&buf[..n]);
                let _ = free_tx.send(buf);
                if !keep_going() {
                    stopped = true;
                    break;
                }
            }
            // Either side ending ends the other: the mover's next send or wait for a buffer
            // fails once these are gone.
            drop((full_rx, free_tx));
            let moved = mover.join().unwrap_or_else(|_| {
                Err(CoreError::Internal {
                    what: "the copying thread panicked".to_string(),
                })
            });
            (stopped, moved)
        });
        if stopped {
            return Err(CoreError::Interrupted {
                path: source.to_path_buf(),
            });
        }
        moved?;
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
        fsync_dir(&self.dir)?;
        let target = self.root.join(name);
        crash_point(fault::BEFORE_RENAME);
        rename_exclusive(&self.dir, &target, mode)?;
        self.published = true;
        crash_point(fault::RENAMED);
        fsync_dir(&self.root)?;
        // The lock and the owner record; what a failure leaves, a later sweep removes.
        let _ = self.clear();
        Ok(target)
    }

    /// Remove the staging directory (also done on drop if neither this nor publish ran).
    pub fn discard(mut self) -> CoreResult<()> {
        self.clear()
            .map(|_| ())
            .map_err(|e| CoreError::storage(&self.home, "removing", e))
    }

    /// Remove the staging directory, the lock file last, while still holding its lock.
    fn clear(&mut self) -> io::Result<bool> {
        match self.lock.take() {
            Some(lock) => remove_staging(&self.home, Some(lock)),
            None => Ok(true),
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = self.clear();
    }
}

/// `{root}/.staging`, made (mode 1777 whatever the umask) if it is not there yet. A
/// `.staging` of another mode (made by an earlier release, or by a store killed between its
/// mkdir and its chmod) is opened up by its owner's next store; until then other users'
/// stores get `EACCES` there.
fn staging_parent(root: &Path) -> CoreResult<PathBuf> {
    let parent = root.join(STAGING_DIR);
    match fs::DirBuilder::new().mode(STAGING_DIR_MODE).create(&parent) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(CoreError::storage(&parent, "creating", e)),
    }
    let meta = check_real_directory(&parent)?;
    // SAFETY: geteuid has no preconditions.
    if meta.mode() & 0o7777 != STAGING_DIR_MODE && meta.uid() == unsafe { libc::geteuid() } {
        fs::set_permissions(&parent, fs::Permissions::from_mode(STAGING_DIR_MODE))
            .map_err(|e| CoreError::storage(&parent, "chmod 1777 of", e))?;
    }
    Ok(parent)
}

/// `.staging` must be a directory of its own, never a symlink that would lead the sweep (which
/// deletes) or the copy (which writes) out of the root.
fn check_real_directory(path: &Path) -> CoreResult<fs::Metadata> {
    let meta = fs::symlink_metadata(path).map_err(|e| CoreError::storage(path, "inspecting", e))?;
    if meta.file_type().is_dir() {
        Ok(meta)
    } else {
        Err(CoreError::storage(
            path,
            "using",
            io::Error::from_raw_os_error(libc::ENOTDIR),
        ))
    }
}

/// Remove a staging directory whose lock `lock` holds (`None`: it has no lock file): all but
/// the lock file, then the lock file while still held (so nobody locks a file on its way
/// out), then the directory. `Ok(false)`: the directory could not be removed because
/// something is still in it (an NFS client's `.nfs*` file of a descriptor still open
/// somewhere); a later sweep removes it.
fn remove_staging(home: &Path, lock: Option<File>) -> io::Result<bool> {
    let entries = match fs::read_dir(home) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name() == LOCK_FILE {
            continue;
        }
        let path = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        ignore_missing(if is_dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        })?;
    }
    ignore_missing(fs::remove_file(home.join(LOCK_FILE)))?;
    drop(lock);
    match fs::remove_dir(home) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EBUSY)) => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
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

/// What a sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Staging directories of dead stores (and anything planted in `.staging`), removed.
    pub removed: Vec<String>,
    /// Entries the sweep may not touch (`EACCES`, `EPERM`: another user's dead store), left
    /// as they are, each with the reason.
    pub skipped: Vec<(String, String)>,
}

/// Remove the staging directories under `root` whose stores are gone, by the rule of
/// `owner::is_stale` applied with their lock held; live stores keep theirs, on any host.
/// What this user may not remove is reported in `skipped`, never raised, so one user's
/// crashed store does not stop another user's sweep.
pub fn sweep_stale(root: &Path) -> CoreResult<Sweep> {
    let parent = root.join(STAGING_DIR);
    let mut sweep = Sweep::default();
    match fs::symlink_metadata(&parent) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(sweep),
        _ => check_real_directory(&parent)?,
    };
    let entries = match fs::read_dir(&parent) {
        Ok(entries) => entries,
        Err(e) if denied(&e) => {
            sweep
                .skipped
                .push((STAGING_DIR.to_string(), format!("cannot list it: {e}")));
            return Ok(sweep);
        }
        Err(e) => return Err(CoreError::storage(&parent, "listing", e)),
    };
    let here = Owner::current();
    for entry in entries {
        let entry = entry.map_err(|e| CoreError::storage(&parent, "listing", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let outcome = if is_dir {
            match judge(&path, &name, &here)? {
                Judgement::Live => continue,
                Judgement::Stale(lock) => remove_staging(&path, lock),
                Judgement::NotOurs(why) => {
                    sweep.skipped.push((name, why));
                    continue;
                }
            }
        } else {
            // Nothing of ours is a plain file or a link here: something planted. Unlinking a
            // symlink never follows it.
            fs::remove_file(&path).map(|()| true)
        };
        match outcome {
            Ok(true) => sweep.removed.push(name),
            Ok(false) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {} // another sweep got there first
            Err(e) if denied(&e) => {
                let why = format!("{}; not ours to remove: {e}", describe_owner(&path));
                sweep.skipped.push((name, why));
            }
            Err(e) => return Err(CoreError::storage(&path, "removing", e)),
        }
    }
    Ok(sweep)
}

enum Judgement {
    Live,
    /// Stale; its lock is held (`None`: it has no lock file).
    Stale(Option<File>),
    /// Stale or undecidable, and not ours to lock: the reason.
    NotOurs(String),
}

/// Decide one staging directory, taking its lock first where there is one.
fn judge(home: &Path, name: &str, here: &Owner) -> CoreResult<Judgement> {
    let lock_path = home.join(LOCK_FILE);
    let mut not_ours = None;
    let lock = match open_lock(&lock_path) {
        Ok(lock) => match owner::try_lock(&lock) {
            // Held; or cleared by its owner or another sweep before we got it.
            Ok(false) => return Ok(Judgement::Live),
            Ok(true) if lock.metadata().map(|m| m.nlink() == 0).unwrap_or(true) => {
                return Ok(Judgement::Live)
            }
            Ok(true) => Some(lock),
            Err(e) => return Err(CoreError::storage(&lock_path, "locking", e)),
        },
        // No lock file (a store's first instants, or its clearing), or something planted.
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP) => {
            None
        }
        // Another user's: we may look whether it is held, not take it.
        Err(e) if denied(&e) => {
            match File::open(&lock_path).and_then(|f| owner::is_locked(&f)) {
                Ok(true) => return Ok(Judgement::Live),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Judgement::Live),
                Ok(false) => not_ours = Some(format!("{}; its lock is free", describe_owner(home))),
                Err(e) => {
                    let why = format!("{}; cannot tell if it is alive: {e}", describe_owner(home));
                    return Ok(Judgement::NotOurs(why));
                }
            }
            None
        }
        Err(e) => return Err(CoreError::storage(&lock_path, "opening", e)),
    };
    let evidence = Evidence {
        owner: read_owner(&home.join(OWNER_FILE)),
        named: owner_in_name(name),
        age: age(home),
    };
    if !owner::is_stale(&evidence, here, owner::process_alive) {
        return Ok(Judgement::Live);
    }
    Ok(match not_ours {
        Some(why) => Judgement::NotOurs(format!("{why}, its store is dead; not ours to remove")),
        None => Judgement::Stale(lock),
    })
}

fn open_lock(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

fn read_owner(path: &Path) -> Option<Owner> {
    let (file, _) = open_regular(path, false).ok()?;
    let mut bytes = Vec::new();
    file.take(4096).read_to_end(&mut bytes).ok()?;
    Owner::parse(&bytes)
}

/// (pid, boot token) from a staging directory's name, `{label}.{pid}.{n}.{nanos}.{token}`.
fn owner_in_name(name: &str) -> Option<(u32, String)> {
    let parts: Vec<&str> = name.rsplitn(5, '.').collect();
    match parts.as_slice() {
        [token, _nanos, _n, pid, _label] => Some((pid.parse().ok()?, token.to_string())),
        _ => None,
    }
}

/// Time since anything in a staging directory last changed: the newest mtime of the
/// directory, its entries and the adapter directory's entries (a long copy keeps its file's
/// fresh). On NFS these are the server's clock; a skew between it and this host's shifts the
/// age by as much.
fn age(home: &Path) -> Duration {
    let mut newest = None;
    let mut see = |path: &Path| {
        if let Ok(modified) = fs::symlink_metadata(path).and_then(|m| m.modified()) {
            newest = newest.max(Some(modified));
        }
    };
    see(home);
    for dir in [home.to_path_buf(), home.join(ADAPTER_SUBDIR)] {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            see(&entry.path());
        }
    }
    newest
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or(Duration::ZERO)
}

fn denied(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
}

fn describe_owner(path: &Path) -> String {
    match fs::symlink_metadata(path) {
        Ok(meta) => format!("owned by uid {}", meta.uid()),
        Err(_) => "owner unknown".to_string(),
    }
}

#[cfg(test)]
#[path = "tests/staging.rs"]
mod tests;
