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
        /// Plug-in name: `kernel` loads `ioth_kernel.so`. Never contains `/` or `..`.
        plugin: String,
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
}

/// How the application uses a socket fd handed over by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FdKind {
    /// The fd is the plug-in's own kernel socket: use it with plain syscalls.
    Native,
}

/// An error as it crosses the wire: an errno and a message that says what failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// The errno the failed call reports.
    pub errno: i32,
    /// Human-readable account of what failed.
    pub message: String,
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
    /// Any request failed, no fds.
    Error(WireError),
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
            Reply::Error(_) => "Error",
        }
    }

    /// How many fds travel with this reply.
    pub fn fd_count(&self) -> usize {
        match self {
            Reply::Socket { .. } => 1,
            _ => 0,
        }
    }
}
