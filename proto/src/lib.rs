//! The wire protocol between an ioth application (the *client*) and one stack host process.
//!
//! This crate knows no processes. It defines:
//!
//! * [`Request`] and [`Reply`], the only messages; every request is answered by exactly one reply,
//!   and each request expects a given reply variant (anything else is a [`ProtoError::Unexpected`]);
//! * [`Channel`], the framing: one message per `SOCK_SEQPACKET` datagram, at most [`MAX_FRAME`]
//!   bytes, bincode with a byte limit that rejects trailing bytes, file descriptors attached with
//!   `SCM_RIGHTS` (all fd passing lives in [`fdpass`]);
//! * the version handshake ([`PROTO_VERSION`]): the client's first request is [`Request::Hello`];
//!   a host of another version answers it with [`Reply::Error`] ("protocol version mismatch"),
//!   so `Hello` and `Error` keep their places in the encoding across versions and new variants
//!   of either enum are added last;
//! * the messages between a runner and the processes it preloads ([`run`]).
//!
//! Both the client and the host depend on this crate; it depends on neither.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod channel;
pub mod fdpass;
mod message;
pub mod run;
pub mod status;

pub use channel::{Channel, ProtoError};
pub use message::{
    ControlOp, ErrorKind, FdKind, Limits, NsKind, Reply, Request, StackStats, WireError,
    MAX_SOCKADDR, MAX_SOCKETS_BATCH, MAX_SOCKOPT,
};

/// Version of this protocol. Client and host must agree exactly. 3 added proxied sockets
/// ([`FdKind::Proxied`], [`Request::Control`], [`Request::Close`]); 4 the host's protections
/// ([`StackStats::protections`]); 5 the plug-in's options in [`Request::NewStack`]; 6 the kind of
/// an error ([`WireError::kind`]); 7 the host's namespaces ([`Request::Namespace`]); 8 a plug-in
/// found but not loadable ([`ErrorKind::CannotLoad`]); 9 a stack's own audit interval in
/// [`Request::NewStack`]; 10 native sockets handed over in batches ([`Request::Sockets`],
/// [`Reply::Sockets`]).
pub const PROTO_VERSION: u32 = 10;

/// The bits of [`StackStats::protections`]: which parts of the host's sandbox are in force
/// (docs/security.md).
pub mod protections {
    /// `PR_SET_DUMPABLE` 0: no same-uid access to the host's memory or `/proc` files.
    pub const NOT_DUMPABLE: u32 = 1 << 0;
    /// `no_new_privs` on every thread.
    pub const NO_NEW_PRIVS: u32 = 1 << 1;
    /// Every capability dropped but those the plug-in declared.
    pub const CAPS_DROPPED: u32 = 1 << 2;
    /// Landlock: the filesystem limited to the host's code and the plug-in's declarations.
    pub const LANDLOCK_FS: u32 = 1 << 3;
    /// Landlock: no `ptrace` of, or `/proc/<pid>` access to, processes outside the host.
    pub const LANDLOCK_PTRACE: u32 = 1 << 4;
    /// Landlock scoping (ABI 6): no signals to, no abstract Unix sockets of, other processes.
    pub const LANDLOCK_SCOPE: u32 = 1 << 5;
    /// The seccomp deny-list on every thread.
    pub const SECCOMP: u32 = 1 << 6;
    /// Names of the bits, in order.
    pub const NAMES: [(u32, &str); 7] = [
        (NOT_DUMPABLE, "not_dumpable"),
        (NO_NEW_PRIVS, "no_new_privs"),
        (CAPS_DROPPED, "caps_dropped"),
        (LANDLOCK_FS, "landlock_fs"),
        (LANDLOCK_PTRACE, "landlock_ptrace"),
        (LANDLOCK_SCOPE, "landlock_scope"),
        (SECCOMP, "seccomp"),
    ];
}

/// Largest encoded message, in bytes. A bigger datagram is a protocol error.
pub const MAX_FRAME: usize = 64 * 1024;

/// Most file descriptors that travel with one message (a [`Reply::Sockets`] of
/// [`MAX_SOCKETS_BATCH`]).
pub const MAX_FDS: usize = MAX_SOCKETS_BATCH as usize;

/// The fd number at which a freshly started host finds its end of the channel.
pub const HOST_CHANNEL_FD: i32 = 3;
