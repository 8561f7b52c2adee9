//! Framing: one bincode message per `SOCK_SEQPACKET` datagram, with its fds.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{fdpass, Reply, MAX_FDS, MAX_FRAME};

/// What can go wrong on a channel.
#[derive(Debug)]
pub enum ProtoError {
    /// The peer closed the channel (EOF).
    Closed,
    /// The socket call failed.
    Io(io::Error),
    /// A datagram longer than [`MAX_FRAME`] (or an encoding that would be).
    Oversized(usize),
    /// The datagram or its fds were cut by the kernel.
    Truncated,
    /// A whole message came, but the fds it carried could not be installed in this process
    /// (it is at its fd limit): `EMFILE`. The channel is still in step.
    FdsDropped,
    /// The bytes are not a valid message (trailing bytes included).
    Decode(String),
    /// A message came with a different number of fds than its variant declares.
    FdCount {
        /// The message that arrived.
        message: &'static str,
        /// Fds it declares.
        expected: usize,
        /// Fds that came.
        got: usize,
    },
    /// A reply that does not answer the request sent.
    Unexpected {
        /// The reply variant the request calls for.
        expected: &'static str,
        /// The variant that came.
        got: &'static str,
    },
    /// The peers speak different protocol versions.
    Version {
        /// Ours.
        ours: u32,
        /// Theirs.
        theirs: u32,
    },
}

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtoError::Closed => write!(f, "channel closed by peer"),
            ProtoError::Io(e) => write!(f, "channel i/o: {e}"),
            ProtoError::Oversized(n) => {
                write!(f, "message of {n} bytes exceeds the {MAX_FRAME}-byte limit")
            }
            ProtoError::Truncated => write!(f, "message or its fds truncated"),
            ProtoError::FdsDropped => write!(
                f,
                "the fds of a message could not be received: too many open files"
            ),
            ProtoError::Decode(e) => write!(f, "malformed message: {e}"),
            ProtoError::FdCount {
                message,
                expected,
                got,
            } => write!(f, "{message} carries {expected} fd(s), {got} came"),
            ProtoError::Unexpected { expected, got } => {
                write!(f, "protocol error: expected reply {expected}, got {got}")
            }
            ProtoError::Version { ours, theirs } => {
                write!(f, "protocol version mismatch: ours {ours}, peer {theirs}")
            }
        }
    }
}

impl std::error::Error for ProtoError {}

impl ProtoError {
    /// The errno that best reports this error at a C boundary.
    pub fn errno(&self) -> i32 {
        match self {
            ProtoError::Closed => libc::ENETDOWN,
            ProtoError::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
            ProtoError::Oversized(_) | ProtoError::Truncated => libc::EMSGSIZE,
            ProtoError::FdsDropped => libc::EMFILE,
            _ => libc::EPROTO,
        }
    }
}

impl From<io::Error> for ProtoError {
    fn from(e: io::Error) -> Self {
        ProtoError::Io(e)
    }
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_limit(MAX_FRAME as u64)
        .reject_trailing_bytes()
}

/// Encodes a message exactly as it travels (without fds).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtoError> {
    options().serialize(msg).map_err(|e| match *e {
        bincode::ErrorKind::SizeLimit => ProtoError::Oversized(MAX_FRAME + 1),
        other => ProtoError::Decode(other.to_string()),
    })
}

/// Decodes one whole datagram; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtoError> {
    if bytes.len() > MAX_FRAME {
        return Err(ProtoError::Oversized(bytes.len()));
    }
    options()
        .deserialize(bytes)
        .map_err(|e| ProtoError::Decode(e.to_string()))
}

/// One end of a `SOCK_SEQPACKET` channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl Channel {
    /// A connected pair of channel ends, both close-on-exec (socketpair(2)).
    pub fn pair() -> io::Result<(Channel, Channel)> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Channel::from_fd(a), Channel::from_fd(b)))
    }

    /// Wraps an fd that is one end of a `SOCK_SEQPACKET` socketpair.
    pub fn from_fd(fd: OwnedFd) -> Channel {
        Channel {
            fd,
            // Capacity only: fdpass::recv_vec touches just the pages a message fills.
            buf: Vec::with_capacity(MAX_FRAME + 1),
        }
    }

    /// Gives the fd back.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Sends one message with its fds.
    pub fn send<T: Serialize>(&self, msg: &T, fds: &[BorrowedFd<'_>]) -> Result<(), ProtoError> {
        if fds.len() > MAX_FDS {
            return Err(ProtoError::Oversized(fds.len()));
        }
        let bytes = encode(msg)?;
        fdpass::send(self.fd.as_fd(), &bytes, fds).map_err(|e| {
            if e.raw_os_error() == Some(libc::EPIPE) || e.raw_os_error() == Some(libc::ECONNRESET) {
                ProtoError::Closed
            } else {
                ProtoError::Io(e)
            }
        })
    }

    /// Receives one message and the fds that came with it. EOF is [`ProtoError::Closed`].
    /// On any error every fd that came is closed.
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<(T, Vec<OwnedFd>), ProtoError> {
        match self.recv_cut()? {
            (_, _, true) => Err(ProtoError::FdsDropped),
            (msg, fds, false) => Ok((msg, fds)),
        }
    }

    /// [`Channel::recv`], but a whole message whose fds the kernel could not all install (this
    /// process is at its fd limit) comes with those that were, and `true`.
    fn recv_cut<T: DeserializeOwned>(&mut self) -> Result<(T, Vec<OwnedFd>, bool), ProtoError> {
        let r = fdpass::recv_vec(self.fd.as_fd(), &mut self.buf).map_err(|e| {
            if e.raw_os_error() == Some(libc::ECONNRESET) {
                ProtoError::Closed
            } else {
                ProtoError::Io(e)
            }
        })?;
        if r.fds_cut && r.len <= MAX_FRAME && r.fds.len() <= MAX_FDS {
            if let Ok(msg) = decode::<T>(&self.buf[..r.len]) {
                return Ok((msg, r.fds, true));
            }
        }
        if r.truncated {
            return Err(ProtoError::Truncated);
        }
        if r.len == 0 && r.fds.is_empty() {
            return Err(ProtoError::Closed);
        }
        if r.len > MAX_FRAME {
            return Err(ProtoError::Oversized(r.len));
        }
        if r.fds.len() > MAX_FDS {
            return Err(ProtoError::FdCount {
                message: "message",
                expected: MAX_FDS,
                got: r.fds.len(),
            });
        }
        let msg = decode(&self.buf[..r.len])?;
        Ok((msg, r.fds, false))
    }

    /// Receives a reply and checks that it carries the fds its variant declares
    /// ([`Reply::fd_count`], [`Reply::check`]). Under the fd limit: a [`Reply::Sockets`] of
    /// which at least one fd could be installed comes with those; any other reply whose fds
    /// were dropped is [`ProtoError::FdsDropped`] (`EMFILE`; the channel is still in step).
    pub fn recv_reply(&mut self) -> Result<(Reply, Vec<OwnedFd>), ProtoError> {
        let (reply, fds, cut) = self.recv_cut::<Reply>()?;
        reply.check().map_err(ProtoError::Decode)?;
        if cut {
            return match reply {
                Reply::Sockets { count } if !fds.is_empty() && fds.len() < count as usize => {
                    Ok((reply, fds))
                }
                _ => Err(ProtoError::FdsDropped),
            };
        }
        if fds.len() != reply.fd_count() {
            return Err(ProtoError::FdCount {
                message: reply.name(),
                expected: reply.fd_count(),
                got: fds.len(),
            });
        }
        Ok((reply, fds))
    }

    /// Waits until a message (or EOF) can be received; `false` when `timeout` passed first.
    pub fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let left = match deadline {
                None => PollTimeout::NONE,
                Some(d) => {
                    let ms = d
                        .saturating_duration_since(std::time::Instant::now())
                        .as_millis();
                    PollTimeout::try_from(ms.min(i32::MAX as u128) as i32)
                        .unwrap_or(PollTimeout::MAX)
                }
            };
            let mut pfd = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut pfd, left) {
                Ok(0) => return Ok(false),
                Ok(_) => return Ok(true),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Channel {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Request, WireError};

    /// A host of protocol 9 answering a client of another version, as it travels: its Hello
    /// reply, and the Error it sends for the version mismatch. Every later version must decode
    /// both, so that an application meeting an older or newer installed host is told so.
    #[test]
    fn reply_places_that_never_change() {
        assert_eq!(
            decode::<Reply>(&[0, 9]).unwrap(),
            Reply::Hello { version: 9 },
            "Hello is the first reply"
        );
        let mut bytes = vec![9u8, 7, 142, 42];
        bytes.extend_from_slice(b"protocol version mismatch: ours 9, peer 10");
        match decode::<Reply>(&bytes).unwrap() {
            Reply::Error(e) => {
                assert_eq!(e.errno, libc::EPROTO);
                assert!(e.message.contains("version mismatch"), "{e:?}");
            }
            other => panic!("the tenth reply is no longer Error: {other:?}"),
        }
    }

    #[test]
    fn round_trip_every_request() {
        let (a, mut b) = Channel::pair().unwrap();
        let reqs = vec![
            Request::Hello { version: 1 },
            Request::NewStack {
                plugin: "kernel".into(),
                options: "eth,x=1".into(),
                vnls: vec!["vde:///tmp/sw".into()],
                search_path: vec!["/x".into()],
                app_license: Some("SPDX-License-Identifier: MIT".into()),
                limits: crate::Limits {
                    address_space: Some(1 << 30),
                    open_files: Some(64),
                    cpu_seconds: None,
                    core_size: Some(0),
                },
                audit: Some("/tmp/audit \"x\".jsonl".into()),
                audit_interval_ms: Some(250),
            },
            Request::Socket {
                domain: 2,
                ty: 1,
                protocol: 0,
            },
            Request::Stats,
            Request::DelStack,
            Request::Namespace {
                kind: crate::NsKind::Net,
            },
            Request::Namespace {
                kind: crate::NsKind::User,
            },
            Request::Control {
                id: 7,
                op: crate::ControlOp::Bind(vec![2, 0, 0x13, 0x88, 10, 0, 0, 1]),
            },
            Request::Control {
                id: u64::MAX,
                op: crate::ControlOp::Connect(vec![10, 0]),
            },
            Request::Control {
                id: 1,
                op: crate::ControlOp::Listen(-1),
            },
            Request::Control {
                id: 1,
                op: crate::ControlOp::Accept,
            },
            Request::Control {
                id: 1,
                op: crate::ControlOp::GetSockName,
            },
            Request::Control {
                id: 1,
                op: crate::ControlOp::GetPeerName,
            },
            Request::Control {
                id: 1,
                op: crate::ControlOp::SetSockOpt {
                    level: 1,
                    name: 2,
                    value: vec![1, 0, 0, 0],
                },
            },
            Request::Control {
                id: 1,
                op: crate::ControlOp::GetSockOpt {
                    level: 6,
                    name: 1,
                    len: 4,
                },
            },
            Request::Control {
                id: 1,
                op: crate::ControlOp::Shutdown(1),
            },
            Request::Close { id: 3 },
            Request::Sockets {
                domain: 10,
                ty: libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                protocol: 17,
                count: crate::MAX_SOCKETS_BATCH,
            },
        ];
        for r in &reqs {
            a.send(r, &[]).unwrap();
            let (got, fds) = b.recv::<Request>().unwrap();
            assert_eq!(&got, r);
            assert!(fds.is_empty());
        }
    }

    #[test]
    fn reply_with_fd_round_trips_and_fd_count_is_checked() {
        let (a, mut b) = Channel::pair().unwrap();
        let (x, _y) = Channel::pair().unwrap();
        let reply = Reply::Socket {
            kind: crate::FdKind::Native,
        };
        a.send(&reply, &[x.as_fd()]).unwrap();
        let (got, fds) = b.recv_reply().unwrap();
        assert_eq!(got, reply);
        assert_eq!(fds.len(), 1);
        // The same reply without its fd is a protocol error.
        a.send(&reply, &[]).unwrap();
        assert!(matches!(
            b.recv_reply(),
            Err(ProtoError::FdCount {
                expected: 1,
                got: 0,
                ..
            })
        ));
        // An Error reply with a stray fd too.
        let err = Reply::Error(WireError::os(1, "x"));
        a.send(&err, &[x.as_fd()]).unwrap();
        assert!(matches!(b.recv_reply(), Err(ProtoError::FdCount { .. })));
    }

    #[test]
    fn every_reply_round_trips_with_its_fds() {
        let (a, mut b) = Channel::pair().unwrap();
        let (x, _y) = Channel::pair().unwrap();
        let replies = vec![
            Reply::Socket {
                kind: crate::FdKind::Proxied { id: 42 },
            },
            Reply::Accepted {
                id: 43,
                peer: vec![2, 0, 1, 2, 3, 4, 5, 6],
            },
            Reply::Control(vec![]),
            Reply::Control(vec![9; crate::MAX_SOCKOPT]),
            Reply::Closed,
            Reply::Namespace,
        ];
        let kinds = [
            crate::ErrorKind::PluginNotFound,
            crate::ErrorKind::NoNewstack,
            crate::ErrorKind::LicenseRefused,
            crate::ErrorKind::InvalidName,
            crate::ErrorKind::InvalidArgument,
            crate::ErrorKind::Audit,
            crate::ErrorKind::Sandbox,
            crate::ErrorKind::Protocol,
            crate::ErrorKind::Os,
        ];
        let replies: Vec<Reply> = replies
            .into_iter()
            .chain(
                kinds
                    .iter()
                    .map(|k| Reply::Error(WireError::new(*k, 5, format!("{k:?}")))),
            )
            .collect();
        for r in &replies {
            let fds: Vec<BorrowedFd<'_>> = (0..r.fd_count()).map(|_| x.as_fd()).collect();
            a.send(r, &fds).unwrap();
            let (got, fds) = b.recv_reply().unwrap();
            assert_eq!(&got, r);
            assert_eq!(fds.len(), r.fd_count());
        }
        // Accepted without its fd is a protocol error.
        a.send(
            &Reply::Accepted {
                id: 1,
                peer: vec![],
            },
            &[],
        )
        .unwrap();
        assert!(matches!(
            b.recv_reply(),
            Err(ProtoError::FdCount {
                message: "Accepted",
                expected: 1,
                got: 0
            })
        ));
    }

    #[test]
    fn sockets_replies_carry_their_count_of_fds_and_bad_counts_are_refused() {
        let (a, mut b) = Channel::pair().unwrap();
        let (x, _y) = Channel::pair().unwrap();
        for n in [1, 2, crate::MAX_SOCKETS_BATCH] {
            let fds: Vec<BorrowedFd<'_>> = (0..n).map(|_| x.as_fd()).collect();
            a.send(&Reply::Sockets { count: n }, &fds).unwrap();
            let (got, fds) = b.recv_reply().unwrap();
            assert_eq!(got, Reply::Sockets { count: n });
            assert_eq!(fds.len(), n as usize);
        }
        // Fewer or more fds than declared.
        a.send(&Reply::Sockets { count: 3 }, &[x.as_fd(), x.as_fd()])
            .unwrap();
        assert!(matches!(
            b.recv_reply(),
            Err(ProtoError::FdCount {
                message: "Sockets",
                expected: 3,
                got: 2
            })
        ));
        a.send(&Reply::Sockets { count: 1 }, &[x.as_fd(), x.as_fd()])
            .unwrap();
        assert!(matches!(b.recv_reply(), Err(ProtoError::FdCount { .. })));
        // A count of 0, or beyond the batch limit, is no legal reply, whatever fds come.
        let zero = Reply::Sockets { count: 0 };
        assert!(zero.check().is_err());
        a.send(&zero, &[]).unwrap();
        assert!(matches!(b.recv_reply(), Err(ProtoError::Decode(_))));
        let big = Reply::Sockets {
            count: crate::MAX_SOCKETS_BATCH + 1,
        };
        assert!(big.check().is_err());
        let fds: Vec<BorrowedFd<'_>> = (0..crate::MAX_FDS).map(|_| x.as_fd()).collect();
        a.send(&Reply::Stats(Default::default()), &[]).unwrap();
        let bytes = encode(&big).unwrap();
        fdpass::send(a.as_fd(), &bytes, &fds).unwrap();
        assert!(matches!(
            b.recv_reply(),
            Ok((Reply::Stats(_), ref f)) if f.is_empty()
        ));
        assert!(matches!(b.recv_reply(), Err(ProtoError::Decode(_))));
        // The channel is still usable.
        a.send(&Reply::Closed, &[]).unwrap();
        assert_eq!(b.recv_reply().unwrap().0, Reply::Closed);
    }

    #[test]
    fn control_lengths_are_checked() {
        use crate::{ControlOp, MAX_SOCKADDR, MAX_SOCKOPT};
        assert!(ControlOp::Bind(vec![0; 16]).check().is_ok());
        assert!(ControlOp::Bind(vec![0; MAX_SOCKADDR]).check().is_ok());
        assert!(ControlOp::Bind(vec![0; 1]).check().is_err());
        assert!(ControlOp::Connect(vec![]).check().is_err());
        assert!(ControlOp::Connect(vec![0; MAX_SOCKADDR + 1])
            .check()
            .unwrap_err()
            .contains("connect"));
        let set = |n| ControlOp::SetSockOpt {
            level: 1,
            name: 1,
            value: vec![0; n],
        };
        assert!(set(0).check().is_ok());
        assert!(set(MAX_SOCKOPT).check().is_ok());
        assert!(set(MAX_SOCKOPT + 1).check().is_err());
        let get = |len| ControlOp::GetSockOpt {
            level: 1,
            name: 1,
            len,
        };
        assert!(get(MAX_SOCKOPT as u32).check().is_ok());
        assert!(get(u32::MAX).check().is_err());
        assert!(ControlOp::Accept.check().is_ok());
    }

    #[test]
    fn malformed_control_requests_are_errors_not_panics() {
        let (a, mut b) = Channel::pair().unwrap();
        let full = encode(&Request::Control {
            id: 5,
            op: crate::ControlOp::SetSockOpt {
                level: 1,
                name: 2,
                value: vec![1, 2, 3, 4],
            },
        })
        .unwrap();
        // Every truncation of a valid Control request fails to decode.
        for cut in 0..full.len() {
            fdpass::send(a.as_fd(), &full[..cut], &[]).unwrap();
            assert!(b.recv::<Request>().is_err(), "cut at {cut}");
        }
        // An unknown ControlOp tag.
        let mut bad = encode(&Request::Control {
            id: 5,
            op: crate::ControlOp::Accept,
        })
        .unwrap();
        let last = bad.len() - 1;
        bad[last] = 0x7f;
        fdpass::send(a.as_fd(), &bad, &[]).unwrap();
        assert!(matches!(b.recv::<Request>(), Err(ProtoError::Decode(_))));
        // An address length beyond the frame.
        let mut huge = encode(&Request::Control {
            id: 5,
            op: crate::ControlOp::Bind(vec![]),
        })
        .unwrap();
        huge.pop(); // the empty vec's length
        huge.push(0xfc);
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        fdpass::send(a.as_fd(), &huge, &[]).unwrap();
        assert!(b.recv::<Request>().is_err());
        a.send(&Request::Close { id: 1 }, &[]).unwrap();
        assert_eq!(b.recv::<Request>().unwrap().0, Request::Close { id: 1 });
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let (a, mut b) = Channel::pair().unwrap();
        // Garbage variant tag.
        fdpass::send(a.as_fd(), &[0xff, 0xff, 0xff, 0xff, 0xff], &[]).unwrap();
        assert!(matches!(b.recv::<Request>(), Err(ProtoError::Decode(_))));
        // Truncated: a NewStack cut short.
        let full = encode(&Request::NewStack {
            plugin: "kernel".into(),
            options: String::new(),
            vnls: vec![],
            search_path: vec![],
            app_license: None,
            limits: crate::Limits::default(),
            audit: None,
            audit_interval_ms: None,
        })
        .unwrap();
        fdpass::send(a.as_fd(), &full[..full.len() - 2], &[]).unwrap();
        assert!(matches!(b.recv::<Request>(), Err(ProtoError::Decode(_))));
        // Trailing bytes.
        let mut long = encode(&Request::Stats).unwrap();
        long.push(0);
        fdpass::send(a.as_fd(), &long, &[]).unwrap();
        assert!(matches!(b.recv::<Request>(), Err(ProtoError::Decode(_))));
        // A string length that claims more than the frame limit.
        let mut huge = vec![1u8]; // NewStack tag
        huge.push(0xfc); // varint u32 marker
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        fdpass::send(a.as_fd(), &huge, &[]).unwrap();
        assert!(b.recv::<Request>().is_err());
        // Still usable afterwards.
        a.send(&Request::Stats, &[]).unwrap();
        assert_eq!(b.recv::<Request>().unwrap().0, Request::Stats);
    }

    #[test]
    fn oversized_frames_are_rejected() {
        let (a, mut b) = Channel::pair().unwrap();
        let big = Request::NewStack {
            plugin: "x".repeat(MAX_FRAME + 10),
            options: String::new(),
            vnls: vec![],
            search_path: vec![],
            app_license: None,
            limits: crate::Limits::default(),
            audit: None,
            audit_interval_ms: None,
        };
        assert!(matches!(a.send(&big, &[]), Err(ProtoError::Oversized(_))));
        fdpass::send(a.as_fd(), &vec![0u8; MAX_FRAME + 100], &[]).unwrap();
        assert!(matches!(b.recv::<Request>(), Err(ProtoError::Truncated)));
    }

    #[test]
    fn too_many_fds_are_closed_and_rejected() {
        let (a, mut b) = Channel::pair().unwrap();
        let (x, _y) = Channel::pair().unwrap();
        let many: Vec<BorrowedFd<'_>> = (0..MAX_FDS + 1).map(|_| x.as_fd()).collect();
        let bytes = encode(&Request::Stats).unwrap();
        fdpass::send(a.as_fd(), &bytes, &many).unwrap();
        assert!(matches!(
            b.recv::<Request>(),
            Err(ProtoError::FdCount { .. })
        ));
    }

    #[test]
    fn eof_is_closed() {
        let (a, mut b) = Channel::pair().unwrap();
        drop(a);
        assert!(matches!(b.recv::<Request>(), Err(ProtoError::Closed)));
    }
}
