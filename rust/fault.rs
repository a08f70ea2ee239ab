//! Deterministic crash points for the fault-injection tests.
//!
//! When the environment variable `ADAPTER_REGISTRY_CRASH_AT` names a step, the process kills
//! itself with SIGKILL on reaching it, leaving the files exactly as a crash there would. The
//! Python layer has points of its own under the same variable (`staged`, `published`,
//! `inserted`); these are the ones inside the byte work.

use std::ffi::OsStr;

pub const CRASH_AT_ENV: &str = "ADAPTER_REGISTRY_CRASH_AT";

/// Half-way through copying the weights (after the first chunk is written).
pub const COPYING: &str = "copying";
/// The weights are written, sealed and fsynced; the config is not yet written.
pub const WEIGHTS_SYNCED: &str = "weights-synced";
/// The record file and the PEFT link exist in staging; the rename has not happened.
pub const BEFORE_RENAME: &str = "before-rename";
/// The fallback publish has claimed the name with an empty directory; the rename is next.
pub const CLAIMED: &str = "claimed";
/// Renamed into place; the root directory is not yet fsynced.
pub const RENAMED: &str = "renamed";

/// Die here if the environment says so.
pub fn crash_point(step: &str) {
    if std::env::var_os(CRASH_AT_ENV).as_deref() == Some(OsStr::new(step)) {
        // SAFETY: signalling our own process; SIGKILL cannot be caught, so this never returns.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
