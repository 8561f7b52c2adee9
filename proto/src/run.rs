//! The wire between a runner (`ioth-run`, or `ioth_run` in an application) and the processes it
//! runs on a proxied stack through the preload library (`libioth_preload.so`, docs/run.md).
//!
//! Each process (each thread of it, in fact) connects to the runner's private `SOCK_SEQPACKET`
//! socket and sends [`RunRequest`]s, one at a time, each answered by exactly one [`RunReply`]
//! ([`crate::Channel`] framing). A socket is named by the inode number of its fd (`st_ino` of
//! `fstat`): the same in every process that holds the fd (after `dup`, `fork` and `exec`), so a
//! process needs no table from its parent to use the sockets it inherited.

use serde::{Deserialize, Serialize};

use crate::ControlOp;

/// What a process knows of one socket of the stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SockInfo {
    /// The inode number of the socket's fd.
    pub ino: u64,
    /// `domain` of socket(2).
    pub domain: i32,
    /// `type` of socket(2), without `SOCK_NONBLOCK`/`SOCK_CLOEXEC`.
    pub ty: i32,
    /// `protocol` of socket(2).
    pub protocol: i32,
    /// A datagram socket that is connected: records carry bare payloads.
    pub connected: bool,
    /// The connected peer's address bytes (empty when not connected).
    pub peer: Vec<u8>,
}

impl SockInfo {
    /// Whether records on the fd carry the 28-byte address header now (docs/proxied.md).
    pub fn framed(&self) -> bool {
        self.ty != libc::SOCK_STREAM
            && (self.domain == libc::AF_PACKET
                || (matches!(self.domain, libc::AF_INET | libc::AF_INET6) && !self.connected))
    }
}

/// A request of a preloaded process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunRequest {
    /// socket(2) on the stack. Answered by [`RunReply::Socket`] with one fd (close-on-exec; the
    /// process clears that unless it asked for `SOCK_CLOEXEC`).
    Socket {
        /// `domain`.
        domain: i32,
        /// `type`, `SOCK_NONBLOCK` honoured.
        ty: i32,
        /// `protocol`.
        protocol: i32,
    },
    /// Is the socket whose fd has inode `ino` one of the stack's? Answered by
    /// [`RunReply::Info`].
    Info {
        /// The inode.
        ino: u64,
    },
    /// A control call on socket `ino` (every [`ControlOp`] but `Accept`); blocking as the fd
    /// is. Answered by [`RunReply::Control`] (connect: with the socket's new info in
    /// [`RunReply::Connected`]) or [`RunReply::Error`].
    Control {
        /// The socket.
        ino: u64,
        /// The call.
        op: ControlOp,
    },
    /// accept(2) on socket `ino`, blocking as the fd is. Answered by [`RunReply::Accepted`]
    /// with one fd, or [`RunReply::Error`] (`EAGAIN` when non-blocking and nothing waits).
    Accept {
        /// The listening socket.
        ino: u64,
    },
    /// The process closed an fd of socket `ino` (close, dup2 over it): the runner releases the
    /// socket once no process holds it. Answered by [`RunReply::Done`].
    Closed {
        /// The socket.
        ino: u64,
    },
}

/// The runner's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunReply {
    /// A new socket, with its fd.
    Socket(SockInfo),
    /// The socket of an [`RunRequest::Info`], or `None`: not the stack's.
    Info(Option<SockInfo>),
    /// The bytes a control call gives back (an address, an option value; empty for most).
    Control(Vec<u8>),
    /// A successful connect: the socket's info now.
    Connected(SockInfo),
    /// A new connection, with its fd, and the peer's address bytes.
    Accepted {
        /// The new socket.
        info: SockInfo,
        /// The peer's address.
        peer: Vec<u8>,
    },
    /// Answer to [`RunRequest::Closed`].
    Done,
    /// The call failed with this errno.
    Error(i32),
}

impl RunReply {
    /// How many fds travel with this reply.
    pub fn fd_count(&self) -> usize {
        match self {
            RunReply::Socket(_) | RunReply::Accepted { .. } => 1,
            _ => 0,
        }
    }
}

/// The environment variable that names the runner's socket (an absolute path).
pub const RUN_SOCKET_ENV: &str = "IOTH_RUN_SOCKET";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Channel;
    use std::os::fd::AsFd;

    #[test]
    fn requests_and_replies_round_trip() {
        let (a, mut b) = Channel::pair().unwrap();
        let info = SockInfo {
            ino: 77,
            domain: libc::AF_INET,
            ty: libc::SOCK_DGRAM,
            protocol: 0,
            connected: false,
            peer: vec![],
        };
        assert!(info.framed());
        let reqs = [
            RunRequest::Socket {
                domain: libc::AF_INET6,
                ty: libc::SOCK_STREAM,
                protocol: 0,
            },
            RunRequest::Info { ino: 3 },
            RunRequest::Control {
                ino: 4,
                op: ControlOp::Listen(5),
            },
            RunRequest::Accept { ino: 5 },
            RunRequest::Closed { ino: 6 },
        ];
        for r in &reqs {
            a.send(r, &[]).unwrap();
            assert_eq!(&b.recv::<RunRequest>().unwrap().0, r);
        }
        let reply = RunReply::Socket(info.clone());
        a.send(&reply, &[a.as_fd()]).unwrap();
        let (got, fds) = b.recv::<RunReply>().unwrap();
        assert_eq!(got, reply);
        assert_eq!(fds.len(), got.fd_count());
        let connected = SockInfo {
            connected: true,
            ..info
        };
        assert!(!connected.framed());
    }
}
