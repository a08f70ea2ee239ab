//! Who owns a staging directory, told in a way that holds across hosts sharing one root (NFS).
//!
//! A store keeps two things in its staging directory for as long as it lives:
//!
//! - `.lock`, opened for writing and locked with an open-file-description lock
//!   (`fcntl(F_OFD_SETLK)`, whole file, exclusive). The kernel drops it when its owner dies,
//!   SIGKILL included. OFD locks rather than `flock`: NFS clients either emulate `flock` with a
//!   POSIX lock (which, exclusive, needs a file open for writing) or keep it host-local
//!   (`local_lock=flock`); fcntl-family locks are the ones the NFS client sends to the server
//!   (NFSv4 LOCK, NLM on v3), so another host sees them. OFD rather than classic POSIX
//!   (`F_SETLK`) locks: a POSIX lock belongs to the process, so a sweep in the same process as a
//!   live store would be granted it, and closing any descriptor of the file would drop it.
//! - `.owner`, the owner record: host name, pid, boot id, and the process's start time (in
//!   clock ticks since boot, as /proc gives it, so a reused pid is not mistaken for the owner).
//!
//! The staging directory's name also carries the pid and a token of the boot id, so that a
//! directory whose record is not written yet (its first microseconds) can still be judged.
//! `is_stale` is the one rule the sweep applies; see it for the whole of it.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// The lock file inside each staging directory.
pub const LOCK_FILE: &str = ".lock";
/// The owner record inside each staging directory.
pub const OWNER_FILE: &str = ".owner";
/// How long a staging directory that no rule can judge (its record names another host, or it
/// has none) must have been untouched before it counts as stale: no store takes that long.
pub const STALE_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

const RECORD_HEADER: &str = "adapter-registry staging owner v1";

/// The owner of a staging directory, as its record gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub host: String,
    /// Empty where /proc/sys/kernel/random/boot_id could not be read.
    pub boot_id: String,
    pub pid: u32,
    /// Field 22 of /proc/{pid}/stat; 0 where it could not be read.
    pub start_ticks: u64,
}

impl Owner {
    /// This process on this host.
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner {
            host: hostname(),
            boot_id: boot_id(),
            pid,
            start_ticks: process_start(pid).unwrap_or(0),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        format!(
            "{RECORD_HEADER}\nhost={}\nboot_id={}\npid={}\nstart_ticks={}\n",
            self.host, self.boot_id, self.pid, self.start_ticks
        )
        .into_bytes()
    }

    /// The record written by `to_bytes`; `None` for anything else (no record, then).
    pub fn parse(bytes: &[u8]) -> Option<Owner> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != RECORD_HEADER {
            return None;
        }
        let mut field = |key: &str| {
            let line = lines.next()?;
            line.strip_prefix(key)?
                .strip_prefix('=')
                .map(str::to_string)
        };
        let host = field("host")?;
        let boot_id = field("boot_id")?;
        let pid = field("pid")?.parse().ok()?;
        let start_ticks = field("start_ticks")?.parse().ok()?;
        (!host.is_empty()).then_some(Owner {
            host,
            boot_id,
            pid,
            start_ticks,
        })
    }
}

/// What the sweep knows of one staging directory, with its lock held (or no lock file there).
#[derive(Debug)]
pub struct Evidence {
    /// The parsed owner record, if there is one.
    pub owner: Option<Owner>,
    /// (pid, boot token) from the directory's name, if it has that form.
    pub named: Option<(u32, String)>,
    /// Since the newest mtime of the directory and its contents.
    pub age: Duration,
}

/// Whether a staging directory whose lock the caller could take is stale. The rule:
///
/// - a record naming this host: stale if the boot id differs (the host rebooted since) or the
///   pid is not alive with the recorded start time;
/// - a record naming another host: stale only once untouched for `STALE_AFTER`, since a lock
///   that looks free may be a host-local one (an NFS mount with `local_lock`);
/// - no record, but a name whose boot token is this kernel's: stale if the named pid is gone
///   (a store that died before writing its record);
/// - otherwise (no record, an unknown name, or this host's boot id unreadable): `STALE_AFTER`.
///
/// `alive(pid, start_ticks)` says whether that process runs here (start 0: any start time).
pub fn is_stale(evidence: &Evidence, here: &Owner, alive: impl Fn(u32, u64) -> bool) -> bool {
    let old = evidence.age >= STALE_AFTER;
    if here.boot_id.is_empty() {
        return old;
    }
    match &evidence.owner {
        Some(o) if o.host == here.host => o.boot_id != here.boot_id || !alive(o.pid, o.start_ticks),
        Some(_) => old,
        None => match &evidence.named {
            Some((pid, token)) if *token == boot_token(&here.boot_id) => !alive(*pid, 0),
            _ => old,
        },
    }
}

/// Whether process `pid` runs on this host, started at `start_ticks` (0: at any time).
pub fn process_alive(pid: u32, start_ticks: u64) -> bool {
    match process_start(pid) {
        Some(start) => start_ticks == 0 || start == start_ticks,
        // /proc hidden (hidepid) or unreadable: ask the kernel whether the pid exists at all.
        None => {
            // SAFETY: signal 0 only checks for existence and permission.
            let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
            rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        }
    }
}

/// The boot id's first 12 hex digits, carried in staging directory names.
pub fn boot_token(boot_id: &str) -> String {
    let hex: String = boot_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(12)
        .collect();
    if hex.len() == 12 {
        hex
    } else {
        "noboot".to_string()
    }
}

/// Start time of `pid` in clock ticks since boot (field 22 of /proc/{pid}/stat).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is ours and its length is given.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]);
    // A name that would break the record's lines is kept out of it.
    if rc == 0 && !name.is_empty() && !name.contains(['\n', '\r', '=']) {
        name.into_owned()
    } else {
        "unknown-host".to_string()
    }
}

fn whole_file_lock(kind: libc::c_int) -> libc::flock {
    // SAFETY: an all-zero flock is valid (offset 0, length 0: the whole file; l_pid must be 0
    // for OFD locks).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock
}

fn ofd_fcntl(file: &File, cmd: libc::c_int, lock: &mut libc::flock) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own with a flock we own.
    if unsafe { libc::fcntl(file.as_raw_fd(), cmd, lock as *mut libc::flock) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Take the exclusive lock of `file` (open for writing), waiting for a sweep that holds it.
pub fn lock(file: &File) -> io::Result<()> {
    loop {
        match ofd_fcntl(
            file,
            libc::F_OFD_SETLKW,
            &mut whole_file_lock(libc::F_WRLCK),
        ) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Try the exclusive lock of `file` (open for writing): `Ok(false)` if someone holds it.
pub fn try_lock(file: &File) -> io::Result<bool> {
    match ofd_fcntl(file, libc::F_OFD_SETLK, &mut whole_file_lock(libc::F_WRLCK)) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether someone holds a lock on `file`, which may be open read-only (a file we may not
/// lock ourselves: another user's).
pub fn is_locked(file: &File) -> io::Result<bool> {
    let mut probe = whole_file_lock(libc::F_WRLCK);
    ofd_fcntl(file, libc::F_OFD_GETLK, &mut probe)?;
    Ok(probe.l_type != libc::F_UNLCK as libc::c_short)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn here() -> Owner {
        Owner {
            host: "here".into(),
            boot_id: "0123456789ab-cdef".into(),
            pid: 10,
            start_ticks: 5,
        }
    }

    fn evidence(owner: Option<Owner>, named: Option<(u32, String)>, age_s: u64) -> Evidence {
        Evidence {
            owner,
            named,
            age: Duration::from_secs(age_s),
        }
    }

    const FRESH: u64 = 60;
    const OLD: u64 = 24 * 60 * 60 + 1;

    #[test]
    fn a_record_survives_its_round_trip_and_nothing_else_parses() {
        let me = Owner::current();
        assert_eq!(Owner::parse(&me.to_bytes()), Some(me.clone()));
        assert_eq!(me.pid, std::process::id());
        assert!(me.start_ticks > 0 && !me.boot_id.is_empty());
        for bad in [&b""[..], b"host=x\n", b"\xff\xfe", &me.to_bytes()[..20]] {
            assert_eq!(Owner::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn another_hosts_record_is_kept_until_it_is_old() {
        let other = Owner {
            host: "there".into(),
            ..here()
        };
        let never_alive = |_, _| false;
        assert!(!is_stale(
            &evidence(Some(other.clone()), None, FRESH),
            &here(),
            never_alive
        ));
        assert!(is_stale(
            &evidence(Some(other), None, OLD),
            &here(),
            never_alive
        ));
    }

    #[test]
    fn this_hosts_record_is_stale_at_once_when_its_process_is_gone_or_the_host_rebooted() {
        let alive = |pid, start| pid == 10 && start == 5;
        let mine = here();
        assert!(!is_stale(
            &evidence(Some(mine.clone()), None, OLD),
            &here(),
            alive
        ));
        let dead = Owner { pid: 11, ..here() };
        assert!(is_stale(&evidence(Some(dead), None, FRESH), &here(), alive));
        let reused = Owner {
            start_ticks: 6,
            ..here()
        };
        assert!(is_stale(
            &evidence(Some(reused), None, FRESH),
            &here(),
            alive
        ));
        let rebooted = Owner {
            boot_id: "another-boot".into(),
            ..here()
        };
        assert!(is_stale(
            &evidence(Some(rebooted), None, FRESH),
            &here(),
            alive
        ));
    }

    #[test]
    fn without_a_record_the_name_or_the_age_decides() {
        let token = boot_token(&here().boot_id);
        assert_eq!(token, "0123456789ab");
        let alive = |pid, _| pid == 10;
        let named = |pid: u32, token: &str| Some((pid, token.to_string()));
        assert!(is_stale(
            &evidence(None, named(11, &token), FRESH),
            &here(),
            alive
        ));
        assert!(!is_stale(
            &evidence(None, named(10, &token), FRESH),
            &here(),
            alive
        ));
        assert!(!is_stale(
            &evidence(None, named(11, "ffffffffffff"), FRESH),
            &here(),
            alive
        ));
        assert!(is_stale(
            &evidence(None, named(11, "ffffffffffff"), OLD),
            &here(),
            alive
        ));
        assert!(!is_stale(&evidence(None, None, FRESH), &here(), alive));
        assert!(is_stale(&evidence(None, None, OLD), &here(), alive));
        // This host's boot id unknown: nothing can be told apart but by age.
        let blind = Owner {
            boot_id: String::new(),
            ..here()
        };
        assert!(!is_stale(
            &evidence(
                Some(Owner {
                    pid: 11,
                    ..blind.clone()
                }),
                None,
                FRESH
            ),
            &blind,
            alive
        ));
        assert!(is_stale(&evidence(None, None, OLD), &blind, alive));
    }

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        let me = Owner::current();
        assert!(process_alive(me.pid, me.start_ticks));
        assert!(process_alive(me.pid, 0));
        assert!(!process_alive(me.pid, me.start_ticks + 1));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_alive(pid, 0));
    }

    #[test]
    fn ofd_locks_conflict_between_two_opens_in_one_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .unwrap()
        };
        let (a, b) = (open(), open());
        let reader = File::open(&path).unwrap();
        assert!(!is_locked(&reader).unwrap());
        assert!(try_lock(&a).unwrap());
        assert!(
            !try_lock(&b).unwrap(),
            "a classic POSIX lock would be granted here"
        );
        assert!(is_locked(&reader).unwrap());
        drop(File::open(&path).unwrap()); // closing another descriptor keeps the lock
        assert!(!try_lock(&b).unwrap());
        drop(a);
        assert!(try_lock(&b).unwrap());
    }
}
