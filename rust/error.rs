//! The one error type of the core. Every variant names the path it is about; the binding
//! (`lib.rs`) maps each variant to one class of `adapter_registry.errors`, in one place.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum CoreError {
    /// The caller's input could not be read (missing, not a regular file, unreadable).
    Source {
        path: PathBuf,
        what: String,
        source: Option<io::Error>,
    },
    /// The bytes are not a safetensors file the registry accepts.
    InvalidSafetensors { path: PathBuf, reason: String },
    /// Something the registry asked of its own storage failed (disk full, permissions, ...).
    Storage {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    /// The publish target already exists; it was left untouched.
    AlreadyExists { path: PathBuf },
    /// A name that would leave its directory (`..`, `/`, NUL, a leading dot).
    BadName { name: String },
    /// The caller asked the work to stop (Ctrl-C) before it was done; nothing was kept.
    Interrupted { path: PathBuf },
    /// A bug in the core (a panic, caught at the binding): never a crash of the interpreter.
    Internal { what: String },
}

pub type CoreResult<T> = Result<T, CoreError>;

impl CoreError {
    pub fn storage(path: &Path, op: &'static str, source: io::Error) -> Self {
        CoreError::Storage {
            path: path.to_path_buf(),
            op,
            source,
        }
    }

    pub fn source_io(path: &Path, source: io::Error) -> Self {
        let what = match source.kind() {
            io::ErrorKind::NotFound => "does not exist".to_string(),
            io::ErrorKind::PermissionDenied => "is not readable (permission denied)".to_string(),
            _ => format!("cannot be read: {source}"),
        };
        CoreError::Source {
            path: path.to_path_buf(),
            what,
            source: Some(source),
        }
    }

    pub fn invalid(path: &Path, reason: impl Into<String>) -> Self {
        CoreError::InvalidSafetensors {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// The OS error number behind the error, where there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            CoreError::Storage { source, .. } => source.raw_os_error(),
            CoreError::Source {
                source: Some(source),
                ..
            } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::Source { path, what, .. } => {
                write!(f, "source {} {what}", path.display())
            }
            CoreError::InvalidSafetensors { path, reason } => {
                write!(
                    f,
                    "{} is not a valid safetensors file: {reason}",
                    path.display()
                )
            }
            CoreError::Storage { path, op, source } => {
                write!(f, "{op} {} failed: {source}", path.display())
            }
            CoreError::AlreadyExists { path } => {
                write!(f, "{} already exists", path.display())
            }
            CoreError::BadName { name } => {
                write!(f, "{name:?} is not a plain directory entry name")
            }
            CoreError::Interrupted { path } => {
                write!(f, "copying {} was interrupted", path.display())
            }
            CoreError::Internal { what } => write!(f, "internal error in the core: {what}"),
        }
    }
}

impl std::error::Error for CoreError {}
