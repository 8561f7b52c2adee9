//! Typed errors of the Rust API. Each says what failed and carries the errno the C ABI reports.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use ioth_proto::{ErrorKind, ProtoError, WireError};

/// Result of the ioth Rust API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong. [`Error::errno`] gives the errno the C ABI sets for it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The plug-in name is empty of meaning or could escape the plug-in directories (`EINVAL`).
    #[error("invalid plug-in name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A VNL or other argument is malformed (`EINVAL`).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No `ioth_<name>.so` in the search path (`ENOTSUP`, as the original).
    #[error("{message}")]
    PluginNotFound {
        /// Plug-in name.
        name: String,
        /// Where it was looked for.
        message: String,
    },
    /// The plug-in's file was found but cannot be loaded: `errno` says why (`ELIBACC`: a
    /// library it needs is missing; `ELIBBAD`: not a loadable shared object; `EMFILE`,
    /// `ENFILE`, `ENOMEM`, `EACCES`).
    #[error("{message}")]
    CannotLoad {
        /// Plug-in name.
        name: String,
        /// Why, as an errno.
        errno: i32,
        /// The dynamic linker's words.
        message: String,
    },
    /// The plug-in has no `ioth_<name>_newstack` (`ENOENT`, as the original).
    #[error("{message}")]
    NoNewstack {
        /// Plug-in name.
        name: String,
        /// Details.
        message: String,
    },
    /// The plug-in's licence does not allow this application (`EPERM`).
    #[error("{message}")]
    LicenseRefused {
        /// Plug-in name.
        name: String,
        /// Details.
        message: String,
    },
    /// The host reported a failure of the plug-in or of a request (its errno).
    #[error("{message}")]
    Stack {
        /// The errno.
        errno: i32,
        /// What failed.
        message: String,
    },
    /// The `ioth-host` binary was not found (`ENOENT`).
    /// Its `Debug` form (what `fn main() -> Result<(), ioth::Error>` prints) says the same.
    #[error("ioth-host not found (looked for {}): {hint}", .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    HostNotFound {
        /// Paths tried, in order.
        searched: Vec<PathBuf>,
        /// What to do: the one command that installs the host.
        hint: &'static str,
    },
    /// The host process could not be started.
    #[error("cannot start {}: {source}", .path.display())]
    Spawn {
        /// The host binary.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The stack's host process is gone (`ENETDOWN`).
    #[error("stack {plugin:?} (host pid {pid}) is gone: {how}")]
    StackDied {
        /// Plug-in name.
        plugin: String,
        /// Host pid.
        pid: u32,
        /// How it ended: exit status, signal, or deletion.
        how: String,
    },
    /// The host did not answer in time; it was killed (`ETIMEDOUT`).
    #[error(
        "stack {plugin:?} (host pid {pid}) did not answer {what} within {timeout:?}; its host was killed"
    )]
    Timeout {
        /// Plug-in name.
        plugin: String,
        /// Host pid (killed and reaped).
        pid: u32,
        /// The request that timed out.
        what: &'static str,
        /// The limit.
        timeout: Duration,
    },
    /// `delstack` while sockets are open (`EBUSY`).
    #[error("stack {plugin:?} still has {open} open socket(s)")]
    Busy {
        /// Plug-in name.
        plugin: String,
        /// Sockets still open.
        open: usize,
    },
    /// A system call failed.
    #[error("{op}: {source}")]
    Os {
        /// The call.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The host broke the protocol (`EPROTO`).
    #[error("protocol error with ioth-host: {0}")]
    Protocol(ProtoError),
}

impl Error {
    /// The errno the C ABI sets for this error.
    pub fn errno(&self) -> i32 {
        match self {
            Error::InvalidName { .. } | Error::InvalidArgument(_) => libc::EINVAL,
            Error::PluginNotFound { .. } => libc::ENOTSUP,
            Error::NoNewstack { .. } | Error::HostNotFound { .. } => libc::ENOENT,
            Error::LicenseRefused { .. } => libc::EPERM,
            Error::Stack { errno, .. } | Error::CannotLoad { errno, .. } => *errno,
            Error::Spawn { source, .. } | Error::Os { source, .. } => {
                source.raw_os_error().unwrap_or(libc::EIO)
            }
            Error::StackDied { .. } => libc::ENETDOWN,
            Error::Timeout { .. } => libc::ETIMEDOUT,
            Error::Busy { .. } => libc::EBUSY,
            Error::Protocol(e) => e.errno(),
        }
    }
}

impl Error {
    /// A request's failure as the host reported it: its errno and message.
    pub(crate) fn from_wire(e: WireError) -> Error {
        Error::Stack {
            errno: e.errno,
            message: e.message,
        }
    }

    /// The failure of `NewStack` for `plugin`, chosen by the kind the host gave it (never by
    /// its text).
    pub(crate) fn newstack(plugin: &str, e: WireError) -> Error {
        let name = plugin.to_owned();
        let message = e.message;
        match e.kind {
            ErrorKind::PluginNotFound => Error::PluginNotFound { name, message },
            ErrorKind::NoNewstack => Error::NoNewstack { name, message },
            ErrorKind::CannotLoad => Error::CannotLoad {
                name,
                errno: e.errno,
                message,
            },
            ErrorKind::LicenseRefused => Error::LicenseRefused { name, message },
            ErrorKind::InvalidName
            | ErrorKind::InvalidArgument
            | ErrorKind::Audit
            | ErrorKind::Sandbox
            | ErrorKind::Protocol
            | ErrorKind::Os => Error::Stack {
                errno: e.errno,
                message,
            },
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = io::Error::from_raw_os_error(e.errno()).kind();
        io::Error::new(kind, e)
    }
}
