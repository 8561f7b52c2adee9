//! [`Stack`]: the public handle of one TCP/IP stack, over its [`Link`] to a host process (or
//! none: the process's own kernel stack, whose sockets come straight from socket(2)). Requests
//! on one stack are serialised on its channel; requests on different stacks never wait for each
//! other. How faults show (a host that dies, hangs or breaks the protocol, a `fork`) is the
//! link's ([`crate::link`]). Runs in the application.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ioth_proto::FdKind;

use crate::handle::{Hold, StackCore};
use crate::link::Link;
use crate::socket::{set_nonblocking, Proxy, Socket};
use crate::{procfs, sys, Error, Result};

/// One TCP/IP stack. Cheap to clone: clones share the stack.
#[derive(Debug, Clone)]
pub struct Stack {
    core: Arc<StackCore>,
}

impl Stack {
    /// The process's own kernel stack: no host, sockets from socket(2) directly.
    pub fn native() -> Stack {
        Stack::from_core(StackCore::native())
    }

    pub(crate) fn from_core(core: Arc<StackCore>) -> Stack {
        Stack { core }
    }

    /// The plug-in name (`""` for the native stack).
    pub fn plugin(&self) -> &str {
        self.core.plugin()
    }

    /// Pid of the host process (`None` for the native stack).
    pub fn pid(&self) -> Option<u32> {
        self.link().map(|l| l.pid())
    }

    /// Sockets currently open on this stack.
    pub fn open_sockets(&self) -> usize {
        self.core.open()
    }

    /// Whether two handles refer to the same stack.
    pub fn same(&self, other: &Stack) -> bool {
        Arc::ptr_eq(&self.core, &other.core)
    }

    fn link(&self) -> Option<&Arc<Link>> {
        self.core.link()
    }

    /// Whether the stack's host is known to be gone (died, killed after a timeout, or deleted).
    /// A host that died since the last call is noticed by the next call, not here.
    pub fn is_gone(&self) -> bool {
        self.link().is_some_and(|l| l.is_gone())
    }

    /// The file of the stack's audit trail, if it has one ([`crate::StackBuilder::audit`]).
    pub fn audit_file(&self) -> Option<&Path> {
        self.link().and_then(|l| l.audit_file())
    }

    /// A socket on this stack, as socket(2) (`ioth_msocket`): `SOCK_NONBLOCK` and `SOCK_CLOEXEC`
    /// in `ty` are honoured (also for a socket handed over ahead in a batch,
    /// [`crate::StackBuilder::socket_batch`]). On a stack with proxied fds (a user-space stack, docs/proxied.md)
    /// the socket's control calls go to the host: use the [`Socket`] methods.
    pub fn msocket(&self, domain: i32, ty: i32, protocol: i32) -> Result<Socket> {
        let Some(link) = self.link() else {
            let fd = sys::socket(domain, ty, protocol).map_err(|source| Error::Os {
                op: "socket",
                source,
            })?;
            return Ok(Socket::new(fd, Hold::new(&self.core)));
        };
        let (kind, fd) = link.msocket(domain, ty, protocol)?;
        // The fd arrived close-on-exec (MSG_CMSG_CLOEXEC): as socket(2), keep that only if asked.
        if ty & libc::SOCK_CLOEXEC == 0 {
            nix::fcntl::fcntl(
                &fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            )
            .map_err(|e| Error::Os {
                op: "fcntl(F_SETFD)",
                source: e.into(),
            })?;
        }
        match kind {
            FdKind::Native => Ok(Socket::new(fd, Hold::new(&self.core))),
            FdKind::Proxied { id } => {
                // The proxy first: if anything below fails, its drop closes the socket on the
                // host.
                let proxy = Proxy::new(link.clone(), id, domain, ty);
                if ty & libc::SOCK_NONBLOCK != 0 {
                    set_nonblocking(fd.as_fd(), true).map_err(|source| Error::Os {
                        op: "fcntl(O_NONBLOCK)",
                        source,
                    })?;
                }
                Ok(Socket::proxied(fd, Hold::new(&self.core), proxy))
            }
        }
    }

    /// A socket with socket2's typed arguments.
    pub fn socket(
        &self,
        domain: socket2::Domain,
        ty: socket2::Type,
        protocol: Option<socket2::Protocol>,
    ) -> Result<Socket> {
        self.msocket(domain.into(), ty.into(), protocol.map_or(0, Into::into))
    }

    /// The host's namespace of kind `kind` (`/proc/<host>/ns/net` or `…/user`), as an fd for
    /// `setns(2)`: how `ioth-run` runs a program inside a native-namespace stack (vdestack). The
    /// native stack has no host: [`Error::InvalidArgument`].
    pub fn namespace(&self, kind: ioth_proto::NsKind) -> Result<std::os::fd::OwnedFd> {
        let Some(link) = self.link() else {
            return Err(Error::InvalidArgument(
                "the native kernel stack has no host, so no namespace of its own".into(),
            ));
        };
        link.namespace(kind)
    }

    /// Usage figures of the stack's host.
    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats {
            open_sockets: self.open_sockets(),
            ..Stats::default()
        };
        let Some(link) = self.link() else {
            return Ok(s);
        };
        let h = link.stats()?;
        s.spare_sockets = link.spare_count();
        s.requests = h.requests;
        s.sockets_created = h.sockets_created;
        s.protections = h.protections;
        let p = procfs::figures(link.pid());
        s.rss_bytes = p.rss_bytes;
        s.pss_bytes = p.pss_bytes;
        s.host_fds = p.fds;
        s.cpu_time = p.cpu_time;
        Ok(s)
    }

    /// Deletes the stack (`ioth_delstack`): fails with [`Error::Busy`] while sockets are open,
    /// handing the stack back in the [`DeleteError`] (which `?` turns into an [`Error`]). A
    /// stack whose host already died (or was killed after a timeout, this `DelStack` included)
    /// is deleted without error. In a child made by `fork()` it leaves the parent's host alone.
    pub fn delete(self) -> std::result::Result<(), DeleteError> {
        let open = self.open_sockets();
        if open > 0 {
            let error = Error::Busy {
                plugin: self.plugin().to_owned(),
                open,
            };
            return Err(DeleteError { stack: self, error });
        }
        match self.link().map(|l| l.delstack()) {
            None | Some(Ok(())) => Ok(()),
            Some(Err(error)) => Err(DeleteError { stack: self, error }),
        }
    }
}

/// A failed [`Stack::delete`]: why, and the stack, still alive, for a caller who wants to retry
/// (close its sockets, then delete again). `?` turns it into its [`Error`].
#[derive(Debug)]
pub struct DeleteError {
    stack: Stack,
    error: Error,
}

impl DeleteError {
    /// Why the stack was not deleted.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The stack back.
    pub fn into_stack(self) -> Stack {
        self.stack
    }

    /// The stack and the error.
    pub fn into_parts(self) -> (Stack, Error) {
        (self.stack, self.error)
    }
}

impl std::fmt::Display for DeleteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot delete the stack: {}", self.error)
    }
}

impl std::error::Error for DeleteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<DeleteError> for Error {
    fn from(e: DeleteError) -> Error {
        e.error
    }
}

impl From<DeleteError> for std::io::Error {
    fn from(e: DeleteError) -> std::io::Error {
        e.error.into()
    }
}

impl Socket {
    /// The stack this socket belongs to.
    pub fn stack(&self) -> Stack {
        Stack::from_core(self.hold().core().clone())
    }
}

/// Usage figures of one stack ([`Stack::stats`]). More figures may come: match with `..`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Requests the host has served.
    pub requests: u64,
    /// Sockets the host has created.
    pub sockets_created: u64,
    /// Sockets open now in this application.
    pub open_sockets: usize,
    /// Native sockets received ahead of demand and not yet handed out
    /// ([`crate::StackBuilder::socket_batch`]): counted in `sockets_created`, not in
    /// `open_sockets`; each an fd of this application.
    pub spare_sockets: usize,
    /// Resident memory of the host, in bytes (VmRSS: shared pages counted in full).
    pub rss_bytes: u64,
    /// Proportional resident memory of the host, in bytes (Pss: shared pages divided among the
    /// processes that share them); 0 where the kernel does not report it.
    pub pss_bytes: u64,
    /// File descriptors the host has open.
    pub host_fds: usize,
    /// CPU time (user + system) the host has used.
    pub cpu_time: Duration,
    /// The host's protections in force (bits of [`ioth_proto::protections`], names in
    /// `ioth_proto::protections::NAMES`; docs/security.md). 0 for the native stack.
    pub protections: u32,
}
