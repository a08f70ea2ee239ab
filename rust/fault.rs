//! Deterministic crash points for the fault-injection tests.
//!
//! When the environment variable `ADAPTER_REGISTRY_CRASH_AT` names a step, the process kills
//! itself with SIGKILL on reaching it, leaving the files exactly as a crash there would. With
//! `ADAPTER_REGISTRY_CRASH_SIGNAL=INT` (or `TERM`) it sends itself that signal instead and goes
//! on, as a Ctrl-C at that step would. Every step of a store is named here, the Python layer's
//! too (it calls `crash_point` through `_core.crash_point`), so the list and the mechanism
//! exist once.

use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, Ordering};

pub const CRASH_AT_ENV: &str = "ADAPTER_REGISTRY_CRASH_AT";
pub const CRASH_SIGNAL_ENV: &str = "ADAPTER_REGISTRY_CRASH_SIGNAL";

/// Half-way through copying the weights (after the first chunk is written).
pub const COPYING: &str = "copying";
/// The weights are written, sealed and fsynced; the config is not yet written.
pub const WEIGHTS_SYNCED: &str = "weights-synced";
/// (Python) Staged and validated; nothing is published yet.
pub const STAGED: &str = "staged";
/// The fallback publish has claimed the name with an empty directory; the rename is next.
pub const CLAIMED: &str = "claimed";
/// The record file and the PEFT link exist in staging; the rename has not happened.
pub const BEFORE_RENAME: &str = "before-rename";
/// Renamed into place; the root directory is not yet fsynced.
pub const RENAMED: &str = "renamed";
/// (Python) Published and fsynced; the row is not yet written.
pub const PUBLISHED: &str = "published";
/// (Python) The row is written, its transaction not yet committed.
pub const INSERTED: &str = "inserted";

/// Every crash point, in the order a store reaches them.
pub const STEPS: [&str; 8] = [
    COPYING,
    WEIGHTS_SYNCED,
    STAGED,
    CLAIMED,
    BEFORE_RENAME,
    RENAMED,
    PUBLISHED,
    INSERTED,
];

/// Die here (or take the signal the environment names) if the environment says so.
pub fn crash_point(step: &str) {
    debug_assert!(STEPS.contains(&step), "unknown crash point {step}");
    if std::env::var_os(CRASH_AT_ENV).as_deref() != Some(OsStr::new(step)) {
        return;
    }
    let signal = match std::env::var(CRASH_SIGNAL_ENV).as_deref() {
        Ok("INT") => libc::SIGINT,
        Ok("TERM") => libc::SIGTERM,
        _ => libc::SIGKILL,
    };
    // A step passed many times (each chunk of a copy) sends a catchable signal only once.
    static SENT: AtomicBool = AtomicBool::new(false);
    if signal != libc::SIGKILL && SENT.swap(true, Ordering::Relaxed) {
        return;
    }
    // SAFETY: signalling our own process. SIGKILL never returns; SIGINT and SIGTERM run the
    // handlers installed (Python's sets a flag that it acts on when the interpreter next runs).
    unsafe {
        libc::kill(libc::getpid(), signal);
    }
}
