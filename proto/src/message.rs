//! The messages. One enum per direction; each variant says when it is legal and how many fds
//! travel with it.

use serde::{Deserialize, Serialize};

/// A request from the client to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// First message on a new channel, no fds. Answered by [`Reply::Hello`].
    Hello {
        /// The client's [`crate::PROTO_VERSION`].
        version: u32,
    },
    /// Second message: load a plug-in and create its stack, no fds. Answered by
    /// [`Reply::StackReady`] or [`Reply::Error`] (after which the host exits).
    NewStack {
        /// Plug-in name: `kernel` loads `ioth_kernel-r.so` or `ioth_kernel.so`. Never contains
        /// `/`, `..` or `,`.
        plugin: String,
        /// The options for the plug-in: what followed the first comma of the stack name
        /// (`"vdestack,a,b"` gives `"a,b"`), handed to its `newstack` verbatim; `""` when none.
        options: String,
        /// The virtual network locators, one interface each.
        vnls: Vec<String>,
        /// Directories searched for the plug-in, in order, before the host's own directory.
        search_path: Vec<String>,
        /// The application's licence (SPDX), as given to `ioth_set_license`.
        app_license: Option<String>,
        /// Resource limits the host sets on itself before it loads the plug-in.
        limits: Limits,
        /// Audit trail: `None` for none; else an absolute path. An existing directory receives
        /// one file per stack, `<plugin>-<host pid>.jsonl`; any other path is a file the host
        /// creates (mode 0600) or appends to. The host opens it before it loads the plug-in and
        /// writes one JSON line per request it served, this `NewStack` and the `Hello` before it
        /// included. A file that cannot be opened fails `NewStack`.
        audit: Option<String>,
        /// The audit thread's interval between two looks at the stack, in milliseconds (0: only
        /// at its start and end); `None`: the host's `IOTH_AUDIT_INTERVAL`, else 1000.
        audit_interval_ms: Option<u64>,
    },
    /// Create a socket on the stack, no fds. Answered by [`Reply::Socket`] with one fd.
    Socket {
        /// `domain` of socket(2).
        domain: i32,
        /// `type` of socket(2), flags included.
        ty: i32,
        /// `protocol` of socket(2).
        protocol: i32,
    },
    /// Report usage figures, no fds. Answered by [`Reply::Stats`].
    Stats,
    /// Delete the stack (plug-in `delstack`), no fds. Answered by [`Reply::Deleted`]; the host exits
    /// right after a successful reply.
    DelStack,
    /// A control call on proxied socket `id` (docs/proxied.md), no fds. Never blocks the host:
    /// the plug-in's function is called non-blocking. Answered by [`Reply::Control`], by
    /// [`Reply::Accepted`] (with one fd) for [`ControlOp::Accept`], or by [`Reply::Error`] with
    /// the plug-in's errno (`EAGAIN` for an accept with nothing pending, `EINPROGRESS` for a
    /// connect that goes on, `EBADF` for an unknown id).
    Control {
        /// The socket, as [`FdKind::Proxied`] named it.
        id: u64,
        /// The call.
        op: ControlOp,
    },
    /// The application closed proxied socket `id`, no fds: the host calls the plug-in's `close`
    /// and drops its own copies. Answered by [`Reply::Closed`] (or [`Reply::Error`] with `EBADF`).
    Close {
        /// The socket.
        id: u64,
    },
    /// The host's own namespace of kind `kind`, no fds: answered by [`Reply::Namespace`] with
    /// one fd, the host's `/proc/self/ns/<kind>` opened read-only (what `setns(2)` takes), or
    /// [`Reply::Error`]. `ioth-run` uses it to run a program inside a native-namespace stack
    /// (vdestack): its network namespace, and its user namespace when the host made one.
    Namespace {
        /// Which namespace.
        kind: NsKind,
    },
    /// Create up to `count` sockets alike on a native stack (docs/architecture.md, "Sockets
    /// handed over ahead"), no fds: `count` is 1 to [`MAX_SOCKETS_BATCH`], else the request is
    /// refused (`EINVAL`). Answered by [`Reply::Sockets`] with between 1 and `count` fds, all
    /// [`FdKind::Native`] (when a socket after the first cannot be made, those already made go),
    /// or by [`Reply::Error`] when not even the first can be, as for [`Request::Socket`]. A
    /// stack with proxied fds refuses it (`EOPNOTSUPP`): its sockets are made one at a time.
    Sockets {
        /// `domain` of socket(2).
        domain: i32,
        /// `type` of socket(2), flags included.
        ty: i32,
        /// `protocol` of socket(2).
        protocol: i32,
        /// How many sockets the client asks for.
        count: u32,
    },
}

/// Most sockets one [`Request::Sockets`] may ask for (and one [`Reply::Sockets`] carry).
pub const MAX_SOCKETS_BATCH: u32 = 16;

/// A kind of namespace ([`Request::Namespace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NsKind {
    /// `/proc/self/ns/net`.
    Net,
    /// `/proc/self/ns/user`.
    User,
}

impl NsKind {
    /// The name under `/proc/self/ns/`.
    pub fn name(self) -> &'static str {
        match self {
            NsKind::Net => "net",
            NsKind::User => "user",
        }
    }
}

/// Longest socket address accepted on the wire (`sizeof(struct sockaddr_storage)`).
pub const MAX_SOCKADDR: usize = 128;

/// Longest socket option value accepted on the wire, in either direction.
pub const MAX_SOCKOPT: usize = 1024;

/// A control call on a proxied socket: the Berkeley call of the same name. Addresses travel as
/// the raw bytes of a `struct sockaddr_*` (at least 2, at most [`MAX_SOCKADDR`]); option values as
/// raw bytes (at most [`MAX_SOCKOPT`]). [`ControlOp::check`] says whether the lengths are legal;
/// the host refuses an illegal one with `EINVAL` before calling the plug-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlOp {
    /// `bind(addr)`. Reply: empty.
    Bind(Vec<u8>),
    /// `connect(addr)` (an `AF_UNSPEC` address disconnects a datagram socket). Reply: empty, or
    /// the error `EINPROGRESS` while a stream connection is being set up.
    Connect(Vec<u8>),
    /// `listen(backlog)`. Reply: empty.
    Listen(i32),
    /// `accept()`, non-blocking. Reply: [`Reply::Accepted`] with the new socket's fd.
    Accept,
    /// `getsockname()`. Reply: the address bytes.
    GetSockName,
    /// `getpeername()`. Reply: the address bytes.
    GetPeerName,
    /// `setsockopt(level, name, value)`. Reply: empty.
    SetSockOpt {
        /// `level` of setsockopt(2).
        level: i32,
        /// `optname` of setsockopt(2).
        name: i32,
        /// The option value's bytes.
        value: Vec<u8>,
    },
    /// `getsockopt(level, name)` with a buffer of `len` bytes. Reply: the value's bytes (at most
    /// `len`).
    GetSockOpt {
        /// `level` of getsockopt(2).
        level: i32,
        /// `optname` of getsockopt(2).
        name: i32,
        /// Room the caller has for the value.
        len: u32,
    },
    /// `shutdown(how)`. Reply: empty.
    Shutdown(i32),
}

impl ControlOp {
    /// Short name of the call, for error messages and audit lines.
    pub fn name(&self) -> &'static str {
        match self {
            ControlOp::Bind(_) => "bind",
            ControlOp::Connect(_) => "connect",
            ControlOp::Listen(_) => "listen",
            ControlOp::Accept => "accept",
            ControlOp::GetSockName => "getsockname",
            ControlOp::GetPeerName => "getpeername",
            ControlOp::SetSockOpt { .. } => "setsockopt",
            ControlOp::GetSockOpt { .. } => "getsockopt",
            ControlOp::Shutdown(_) => "shutdown",
        }
    }

    /// Whether the lengths are legal (see the type's doc); the error says which is not.
    pub fn check(&self) -> Result<(), String> {
        let addr = |a: &[u8]| {
            if a.len() < 2 || a.len() > MAX_SOCKADDR {
                Err(format!(
                    "{}: address of {} bytes (legal: 2 to {MAX_SOCKADDR})",
                    self.name(),
                    a.len()
                ))
            } else {
                Ok(())
            }
        };
        match self {
            ControlOp::Bind(a) | ControlOp::Connect(a) => addr(a),
            ControlOp::SetSockOpt { value, .. } if value.len() > MAX_SOCKOPT => Err(format!(
                "setsockopt: value of {} bytes (at most {MAX_SOCKOPT})",
                value.len()
            )),
            ControlOp::GetSockOpt { len, .. } if *len as usize > MAX_SOCKOPT => Err(format!(
                "getsockopt: buffer of {len} bytes (at most {MAX_SOCKOPT})"
            )),
            _ => Ok(()),
        }
    }
}

/// How the application uses a socket fd handed over by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FdKind {
    /// The fd is the plug-in's own kernel socket: use it with plain syscalls.
    Native,
    /// The fd is one end of a socketpair whose other end the plug-in or the host pumps
    /// (docs/proxied.md): data with plain syscalls, control calls with [`Request::Control`].
    Proxied {
        /// Names the socket in [`Request::Control`] and [`Request::Close`]; unique per host.
        id: u64,
    },
}

/// What kind of failure a [`WireError`] reports: the client chooses its typed error by this,
/// never by the message, which is for people only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// No file of the plug-in in the search path (`ENOTSUP`).
    PluginNotFound,
    /// The plug-in has no `ioth_<name>_newstack` (`ENOENT`).
    NoNewstack,
    /// The plug-in's licence does not allow the application's (`EPERM`).
    LicenseRefused,
    /// The plug-in name could leave the plug-in directories (`EINVAL`).
    InvalidName,
    /// A malformed argument: an option the plug-in refuses, a length on the wire, a sandbox
    /// declaration (`EINVAL` mostly).
    InvalidArgument,
    /// The audit trail could not be opened or is not a regular file.
    Audit,
    /// The host cannot confine itself as the plug-in declared it needs (`EPERM`).
    Sandbox,
    /// The request broke the protocol: wrong version, illegal in the host's state, malformed
    /// (`EPROTO`).
    Protocol,
    /// A call failed with its errno: the plug-in's (`newstack`, `msocket`, a control call) or a
    /// system call of the host.
    Os,
    /// The plug-in's file was found but the dynamic linker could not load it; the errno says
    /// why: `EMFILE`/`ENFILE`, `ENOMEM`, `ELIBACC` (a library it needs is missing), `ELIBBAD`
    /// (not a loadable shared object), `EACCES`.
    CannotLoad,
}

/// An error as it crosses the wire: its kind, an errno and a message that says what failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// The errno the failed call reports.
    pub errno: i32,
    /// Human-readable account of what failed.
    pub message: String,
}

impl WireError {
    /// An error of `kind` with `errno` and `message`.
    pub fn new(kind: ErrorKind, errno: i32, message: impl Into<String>) -> WireError {
        WireError {
            kind,
            errno,
            message: message.into(),
        }
    }

    /// A failed call's errno ([`ErrorKind::Os`]).
    pub fn os(errno: i32, message: impl Into<String>) -> WireError {
        WireError::new(ErrorKind::Os, errno, message)
    }
}

/// Resource limits of one host, each applied with setrlimit(2) as both the soft and the hard
/// limit (so the plug-in cannot raise it again), before the plug-in is loaded. `None` leaves the
/// limit the host inherited from the application.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// `RLIMIT_AS`: address space, in bytes.
    pub address_space: Option<u64>,
    /// `RLIMIT_NOFILE`: one more than the highest fd number the host may open.
    pub open_files: Option<u64>,
    /// `RLIMIT_CPU`: CPU time in seconds; past it the kernel sends `SIGXCPU`, then `SIGKILL`.
    pub cpu_seconds: Option<u64>,
    /// `RLIMIT_CORE`: largest core dump, in bytes (0: none).
    pub core_size: Option<u64>,
}

impl Limits {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// Usage figures of one host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackStats {
    /// Requests served since start (this one excluded).
    pub requests: u64,
    /// Sockets created since start.
    pub sockets_created: u64,
    /// The host's protections in force (bits of [`crate::protections`]).
    pub protections: u32,
}

/// A reply from the host to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Answer to [`Request::Hello`], no fds.
    Hello {
        /// The host's [`crate::PROTO_VERSION`].
        version: u32,
    },
    /// Answer to [`Request::NewStack`]: the stack exists, no fds.
    StackReady {
        /// Path of the plug-in that was loaded.
        plugin_path: String,
        /// The plug-in's licence string, if it declares one.
        license: Option<String>,
    },
    /// Answer to [`Request::Socket`], exactly one fd.
    Socket {
        /// How to use the fd.
        kind: FdKind,
    },
    /// Answer to [`Request::Stats`], no fds.
    Stats(StackStats),
    /// Answer to [`Request::DelStack`], no fds.
    Deleted,
    /// Answer to a [`Request::Control`] other than accept, no fds: the bytes the call gives back
    /// (an address, an option value), empty for calls that give none.
    Control(Vec<u8>),
    /// Answer to [`ControlOp::Accept`], exactly one fd: the new connection, a proxied socket.
    Accepted {
        /// The new socket's id.
        id: u64,
        /// The peer's address bytes.
        peer: Vec<u8>,
    },
    /// Answer to [`Request::Close`], no fds.
    Closed,
    /// Answer to [`Request::Namespace`], exactly one fd: the namespace file.
    Namespace,
    /// Any request failed, no fds.
    Error(WireError),
    // New variants go after this line: a peer of another version must still decode `Hello` and
    // `Error` (which says "protocol version mismatch"), so their places in the encoding never
    // change (`reply_places_that_never_change` below).
    /// Answer to [`Request::Sockets`]: `count` fds (1 to [`MAX_SOCKETS_BATCH`], never more
    /// than asked), each a native socket ([`FdKind::Native`]) of the type asked for.
    Sockets {
        /// How many fds travel with the reply.
        count: u32,
    },
}

impl Request {
    /// Short name of the variant, for error messages and audit lines.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Hello { .. } => "Hello",
            Request::NewStack { .. } => "NewStack",
            Request::Socket { .. } => "Socket",
            Request::Stats => "Stats",
            Request::DelStack => "DelStack",
            Request::Control { .. } => "Control",
            Request::Close { .. } => "Close",
            Request::Namespace { .. } => "Namespace",
            Request::Sockets { .. } => "Sockets",
        }
    }
}

impl Reply {
    /// Short name of the variant, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Reply::Hello { .. } => "Hello",
            Reply::StackReady { .. } => "StackReady",
            Reply::Socket { .. } => "Socket",
            Reply::Stats(_) => "Stats",
            Reply::Deleted => "Deleted",
            Reply::Control(_) => "Control",
            Reply::Accepted { .. } => "Accepted",
            Reply::Closed => "Closed",
            Reply::Namespace => "Namespace",
            Reply::Sockets { .. } => "Sockets",
            Reply::Error(_) => "Error",
        }
    }

    /// How many fds travel with this reply (for [`Reply::Sockets`], the count it declares,
    /// which [`Reply::check`] bounds).
    pub fn fd_count(&self) -> usize {
        match self {
            Reply::Socket { .. } | Reply::Accepted { .. } | Reply::Namespace => 1,
            Reply::Sockets { count } => *count as usize,
            _ => 0,
        }
    }

    /// Whether the reply is legal in itself (whatever the request): a [`Reply::Sockets`] carries
    /// 1 to [`MAX_SOCKETS_BATCH`] fds. The error says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Reply::Sockets { count } if *count == 0 || *count > MAX_SOCKETS_BATCH => Err(format!(
                "Sockets reply declaring {count} fds (legal: 1 to {MAX_SOCKETS_BATCH})"
            )),
            _ => Ok(()),
        }
    }
}
