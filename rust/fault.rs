//! Deterministic crash points for the fault-injection tests.
//!
//! When the environment variable `ADAPTER_REGISTRY_CRASH_AT` names a step, the process kills
//! itself with SIGKILL on reaching it, leaving the files exactly as a crash there would. Every
//! step of a store is named here, the Python layer's too (it calls `crash_point` through
//! `_core.crash_point`), so the list and the mechanism exist once.

use std::ffi::OsStr;

pub const CRASH_AT_ENV: &str = "ADAPTER_REGISTRY_CRASH_AT";

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

/// Die here if the environment says so.
pub fn crash_point(step: &str) {
    debug_assert!(STEPS.contains(&step), "unknown crash point {step}");
    if std::env::var_os(CRASH_AT_ENV).as_deref() == Some(OsStr::new(step)) {
        // SAFETY: signalling our own process; SIGKILL cannot be caught, so this never returns.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
