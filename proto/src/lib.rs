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
//! * the address header of unconnected proxied datagram sockets ([`dgram`]).
//!
//! Both the client and the host depend on this crate; it depends on neither.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod channel;
pub mod dgram;
pub mod fdpass;
mod message;

pub use channel::{Channel, ProtoError};
pub use message::{
    ControlOp, FdKind, Limits, Reply, Request, StackStats, WireError, MAX_SOCKADDR, MAX_SOCKOPT,
};

/// Version of this protocol. Client and host must agree exactly. 3 added proxied sockets
/// ([`FdKind::Proxied`], [`Request::Control`], [`Request::Close`]).
pub const PROTO_VERSION: u32 = 4;

/// Largest encoded message, in bytes. A bigger datagram is a protocol error.
pub const MAX_FRAME: usize = 64 * 1024;

/// Most file descriptors that travel with one message.
pub const MAX_FDS: usize = 4;

/// The fd number at which a freshly started host finds its end of the channel.
pub const HOST_CHANNEL_FD: i32 = 3;
