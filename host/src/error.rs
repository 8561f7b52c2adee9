//! [`HostError`]: every failure the host reports, with its one errno mapping
//! ([`HostError::errno`]) and its kind on the wire ([`HostError::kind`]). Each is created where
//! the host finds it and becomes a [`WireError`] only when it is sent.

use std::io;

use ioth_proto::{ErrorKind, WireError};

/// A failure of the host or of the plug-in it serves.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The plug-in name could leave the plug-in directories (`EINVAL`).
    #[error("invalid plug-in name {0:?}: it must not be empty or contain '/', '..' or NUL")]
    InvalidName(String),
    /// No file of the plug-in in the directories searched (`ENOTSUP`, as the original).
    #[error("plug-in {name:?} not found (looked for {tried})")]
    PluginNotFound {
        /// The plug-in name.
        name: String,
        /// The files tried, comma-separated.
        tried: String,
    },
    /// The plug-in's file exists but the dynamic linker could not load it
    /// ([`crate::plugin::load_errno`] says which errno).
    #[error("cannot load plug-in {path}: {reason}")]
    CannotLoad {
        /// The file.
        path: String,
        /// The dynamic linker's words.
        reason: String,
        /// Why, as an errno.
        errno: i32,
    },
    /// The plug-in has no `ioth_<name>_newstack` (`ENOENT`).
    #[error("plug-in {path} has no ioth_{name}_newstack")]
    NoNewstack {
        /// The file.
        path: String,
        /// The plug-in name.
        name: String,
    },
    /// The plug-in's licence does not allow the application's (`EPERM`).
    #[error(
        "licence refused: plug-in {name:?} is {plugin:?}, the application declares {app:?} \
         (set it with ioth_set_license / StackBuilder::license)"
    )]
    LicenseRefused {
        /// The plug-in name.
        name: String,
        /// Its licence (`""` when it declares none).
        plugin: String,
        /// The application's (`"no licence"` when it declares none).
        app: String,
    },
    /// A malformed argument: options, a VNL, a length, a sandbox declaration (`EINVAL`).
    #[error("{0}")]
    InvalidArgument(String),
    /// The audit trail cannot be opened or kept (the errno of the failed call, `EINVAL` for a
    /// path that cannot be a trail).
    #[error("{message}")]
    Audit {
        /// The errno.
        errno: i32,
        /// What failed.
        message: String,
    },
    /// The host cannot confine itself as the plug-in needs (`EPERM`).
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// A request that breaks the protocol (`EPROTO`).
    #[error("{0}")]
    Protocol(String),
    /// A call of the plug-in or of the system failed with its errno.
    #[error("{message}")]
    Os {
        /// The errno.
        errno: i32,
        /// What failed.
        message: String,
    },
}

impl HostError {
    /// Call `what` failed with `e`: the errno it carries (`EIO` if none), in words.
    pub fn call(what: &str, e: io::Error) -> HostError {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        HostError::Os {
            errno,
            message: format!("{what}: {}", io::Error::from_raw_os_error(errno)),
        }
    }

    /// No proxied socket `id` (`EBADF`).
    pub fn no_socket(id: u64) -> HostError {
        HostError::Os {
            errno: libc::EBADF,
            message: format!("no proxied socket {id} on this stack"),
        }
    }

    /// The errno the application gets.
    pub fn errno(&self) -> i32 {
        match self {
            HostError::InvalidName(_) | HostError::InvalidArgument(_) => libc::EINVAL,
            HostError::PluginNotFound { .. } => libc::ENOTSUP,
            HostError::CannotLoad { errno, .. } => *errno,
            HostError::NoNewstack { .. } => libc::ENOENT,
            HostError::LicenseRefused { .. } | HostError::Sandbox(_) => libc::EPERM,
            HostError::Protocol(_) => libc::EPROTO,
            HostError::Audit { errno, .. } | HostError::Os { errno, .. } => *errno,
        }
    }

    /// The kind the client chooses its error by.
    pub fn kind(&self) -> ErrorKind {
        match self {
            HostError::InvalidName(_) => ErrorKind::InvalidName,
            HostError::PluginNotFound { .. } => ErrorKind::PluginNotFound,
            HostError::CannotLoad { .. } => ErrorKind::CannotLoad,
            HostError::NoNewstack { .. } => ErrorKind::NoNewstack,
            HostError::LicenseRefused { .. } => ErrorKind::LicenseRefused,
            HostError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            HostError::Audit { .. } => ErrorKind::Audit,
            HostError::Sandbox(_) => ErrorKind::Sandbox,
            HostError::Protocol(_) => ErrorKind::Protocol,
            HostError::Os { .. } => ErrorKind::Os,
        }
    }
}

impl From<HostError> for WireError {
    fn from(e: HostError) -> WireError {
        WireError::new(e.kind(), e.errno(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_errnos_cross_the_wire() {
        let cases = [
            (
                HostError::InvalidName("a/b".into()),
                ErrorKind::InvalidName,
                libc::EINVAL,
            ),
            (
                HostError::PluginNotFound {
                    name: "x".into(),
                    tried: "/a".into(),
                },
                ErrorKind::PluginNotFound,
                libc::ENOTSUP,
            ),
            (
                HostError::CannotLoad {
                    path: "/p".into(),
                    reason: "libfoo.so: cannot open shared object file".into(),
                    errno: libc::ELIBACC,
                },
                ErrorKind::CannotLoad,
                libc::ELIBACC,
            ),
            (
                HostError::NoNewstack {
                    path: "/p".into(),
                    name: "x".into(),
                },
                ErrorKind::NoNewstack,
                libc::ENOENT,
            ),
            (
                HostError::LicenseRefused {
                    name: "x".into(),
                    plugin: "GPL-3.0-only".into(),
                    app: "no licence".into(),
                },
                ErrorKind::LicenseRefused,
                libc::EPERM,
            ),
            (
                HostError::Protocol("p".into()),
                ErrorKind::Protocol,
                libc::EPROTO,
            ),
            (
                HostError::call("socket", io::Error::from_raw_os_error(libc::EMFILE)),
                ErrorKind::Os,
                libc::EMFILE,
            ),
            (HostError::no_socket(3), ErrorKind::Os, libc::EBADF),
        ];
        for (e, kind, errno) in cases {
            let text = e.to_string();
            let w = WireError::from(e);
            assert_eq!((w.kind, w.errno), (kind, errno), "{text}");
            assert_eq!(w.message, text);
        }
    }
}
