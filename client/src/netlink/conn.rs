//! One rtnetlink conversation on a stack: an `AF_NETLINK`/`NETLINK_ROUTE` socket made with
//! [`Stack::msocket`], requests sent with a fresh sequence number, replies read back (multi-part
//! dumps included) and NACKs turned into errors that name the call and carry the kernel's errno.
//!
//! Runs in the application. Each conversation opens its own socket and closes it at the end, as
//! nlinline does, so no stale reply or notification can ever be mistaken for an answer.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED,
    NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;
use nix::sys::socket::{recv, send, setsockopt, sockopt, MsgFlags};
use nix::sys::time::TimeVal;

use crate::{Error, Result, Socket, Stack};

/// Receive buffer: one page of kernel dump output fits many times over (the kernel sizes dump
/// datagrams by the largest buffer it has seen, up to 32 KiB); bigger datagrams are measured
/// with `MSG_PEEK|MSG_TRUNC` first and the buffer grows to fit.
const RECV_BUF: usize = 64 * 1024;

/// How long a stack's netlink may take to answer one datagram.
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// `NETLINK_CAP_ACK` and `NETLINK_EXT_ACK` (linux/netlink.h; not in the libc crate for glibc).
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;
/// `NLMSGERR_ATTR_MSG`: the kernel's extended-ack text.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;

/// Sequence numbers of the whole process: a reply is matched by the number of its request.
static SEQ: AtomicU32 = AtomicU32::new(1);

/// An error of netlink call `op` with `errno`, and the kernel's own words when it gave some.
pub(crate) fn nl_error(op: &str, errno: i32, detail: Option<&str>) -> Error {
    let e = Errno::from_raw(errno);
    let message = match detail {
        Some(d) if !d.is_empty() => format!("{op}: {d}: {} ({e:?})", e.desc()),
        _ => format!("{op}: {} ({e:?})", e.desc()),
    };
    Error::Stack { errno, message }
}

/// An open rtnetlink socket on a stack.
pub(crate) struct Conn {
    sock: Socket,
    buf: Vec<u8>,
}

impl Conn {
    /// Opens `socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_ROUTE)` on `stack`.
    pub(crate) fn open(stack: &Stack, op: &str) -> Result<Conn> {
        let sock = stack
            .msocket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
            .map_err(|e| match e {
                // The stack refused: say which call wanted the socket. A dead host, a timeout
                // or a protocol error keeps its own variant.
                Error::Stack { errno, message } => Error::Stack {
                    errno,
                    message: format!("{op}: netlink socket: {message}"),
                },
                Error::Os { source, .. } => nl_error(
                    &format!("{op}: netlink socket"),
                    source.raw_os_error().unwrap_or(libc::EIO),
                    None,
                ),
                other => other,
            })?;
        // A stack that never answers must not hang the caller.
        let tv = TimeVal::new(ANSWER_TIMEOUT.as_secs() as _, 0);
        let _ = setsockopt(&sock.as_fd(), sockopt::ReceiveTimeout, &tv);
        // Best effort: ask for the kernel's error text, and for acks without our request in them.
        // A user-space stack that does not know these options just refuses them.
        for opt in [NETLINK_EXT_ACK, NETLINK_CAP_ACK] {
            let one: libc::c_int = 1;
            // SAFETY: the fd is open (owned by `sock`); optval points to a live c_int whose size
            // is passed as optlen; the kernel only reads it.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_NETLINK,
                    opt,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
        Ok(Conn {
            sock,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Sends `msg` with `NLM_F_REQUEST | flags` and a fresh sequence number, which it returns.
    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16, op: &str) -> Result<u32> {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | flags;
        hdr.sequence_number = seq;
        let mut nl = NetlinkMessage::new(hdr, NetlinkPayload::from(msg));
        nl.finalize();
        let mut out = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut out);
        loop {
            match send(self.sock.as_raw_fd(), &out, MsgFlags::MSG_NOSIGNAL) {
                Ok(n) if n == out.len() => return Ok(seq),
                Ok(_) => return Err(nl_error(op, libc::EMSGSIZE, Some("short send"))),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(nl_error(op, e as i32, Some("send"))),
            }
        }
    }

    /// Receives one whole datagram into `self.buf`; returns its length.
    fn recv_datagram(&mut self, op: &str) -> Result<usize> {
        let fd = self.sock.as_raw_fd();
        let timeout = |e: Errno| {
            if e == Errno::EAGAIN {
                nl_error(
                    op,
                    libc::ETIMEDOUT,
                    Some(&format!(
                        "no answer from the stack's netlink within {ANSWER_TIMEOUT:?}"
                    )),
                )
            } else {
                nl_error(op, e as i32, Some("recv"))
            }
        };
        // Measure first: MSG_TRUNC makes recv report the datagram's real length.
        let size = loop {
            match recv(fd, &mut self.buf, MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC) {
                Ok(n) => break n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(timeout(e)),
            }
        };
        if size > self.buf.len() {
            self.buf.resize(size, 0);
        }
        loop {
            match recv(fd, &mut self.buf, MsgFlags::MSG_TRUNC) {
                Ok(n) if n > self.buf.len() => {
                    return Err(nl_error(op, libc::EMSGSIZE, Some("reply truncated")))
                }
                Ok(0) => return Err(nl_error(op, libc::EPROTO, Some("empty reply"))),
                Ok(n) => return Ok(n),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(timeout(e)),
            }
        }
    }

    /// A request answered by an ACK (or a NACK), possibly preceded by reply messages (a `GET`
    /// of one object, an `NLM_F_ECHO`): returns those messages.
    pub(crate) fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(msg, flags | NLM_F_ACK, op)?;
        self.collect(seq, false, op)
    }

    /// A dump (`NLM_F_DUMP`): every message up to `NLMSG_DONE`, across as many datagrams as the
    /// stack sends. A dump interrupted by a concurrent change (`NLM_F_DUMP_INTR`) is redone.
    pub(crate) fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        op: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let mut tries = 0;
        loop {
            let seq = self.send(msg.clone(), NLM_F_DUMP, op)?;
            match self.collect(seq, true, op) {
                Err(Error::Stack { errno, .. }) if errno == libc::EINTR && tries < 3 => {
                    tries += 1;
                }
                r => return r,
            }
        }
    }

    /// Reads replies to request `seq` until its ACK/NACK (`dump == false`) or `NLMSG_DONE`.
    fn collect(&mut self, seq: u32, dump: bool, op: &str) -> Result<Vec<RouteNetlinkMessage>> {
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            let n = self.recv_datagram(op)?;
            let mut off = 0;
            while off + NLMSG_HDRLEN <= n {
                let frame = &self.buf[off..n];
                let len = u32::from_ne_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
                if len < NLMSG_HDRLEN || len > frame.len() {
                    return Err(nl_error(
                        op,
                        libc::EPROTO,
                        Some(&format!("malformed reply: message length {len}")),
                    ));
                }
                let frame = &frame[..len];
                off += (len + 3) & !3;
                let flags = u16::from_ne_bytes([frame[6], frame[7]]);
                let mseq = u32::from_ne_bytes([frame[8], frame[9], frame[10], frame[11]]);
                if mseq != seq {
                    continue; // not ours: a notification or a late answer
                }
                if flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                let msg =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(frame).map_err(|e| {
                        nl_error(op, libc::EPROTO, Some(&format!("undecodable reply: {e}")))
                    })?;
                match msg.payload {
                    NetlinkPayload::Error(e) => match e.code {
                        None if !dump => return Ok(out),
                        None => {}
                        Some(code) => {
                            let text = ext_ack_text(flags, &e.header);
                            return Err(nl_error(op, -code.get(), text.as_deref()));
                        }
                    },
                    NetlinkPayload::Done(d) => {
                        if d.code < 0 {
                            return Err(nl_error(op, -d.code, None));
                        }
                        if dump {
                            if interrupted {
                                return Err(nl_error(op, libc::EINTR, Some("dump interrupted")));
                            }
                            return Ok(out);
                        }
                    }
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    NetlinkPayload::Overrun(_) => {
                        return Err(nl_error(op, libc::ENOBUFS, Some("overrun")))
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The kernel's extended-ack message (`NLMSGERR_ATTR_MSG`) of an `NLMSG_ERROR`, if any. `rest`
/// is what follows the error code: the request's header (and body unless `NLM_F_CAPPED`), then
/// the TLVs when `NLM_F_ACK_TLVS` is set.
fn ext_ack_text(flags: u16, rest: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 || rest.len() < NLMSG_HDRLEN {
        return None;
    }
    let orig = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize
    };
    let mut off = (orig + 3) & !3;
    while off + 4 <= rest.len() {
        let len = u16::from_ne_bytes([rest[off], rest[off + 1]]) as usize;
        let kind = u16::from_ne_bytes([rest[off + 2], rest[off + 3]]) & 0x3fff;
        if len < 4 || off + len > rest.len() {
            break;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let v = &rest[off + 4..off + len];
            let v = v.split(|b| *b == 0).next().unwrap_or(v);
            return Some(String::from_utf8_lossy(v).into_owned());
        }
        off += (len + 3) & !3;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_ack_message_is_found_after_a_capped_header() {
        let mut rest = vec![0u8; NLMSG_HDRLEN];
        rest[..4].copy_from_slice(&60u32.to_ne_bytes());
        let text = b"Invalid prefix\0";
        let len = (4 + text.len()) as u16;
        rest.extend_from_slice(&len.to_ne_bytes());
        rest.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        rest.extend_from_slice(text);
        assert_eq!(
            ext_ack_text(NLM_F_ACK_TLVS | NLM_F_CAPPED, &rest).as_deref(),
            Some("Invalid prefix")
        );
        assert_eq!(ext_ack_text(0, &rest), None);
    }

    #[test]
    fn errors_name_the_call_and_the_errno() {
        let e = nl_error("ipaddr_add 10.0.0.1/24 dev 2", libc::EEXIST, None);
        assert_eq!(e.errno(), libc::EEXIST);
        let s = e.to_string();
        assert!(s.starts_with("ipaddr_add 10.0.0.1/24 dev 2: "), "{s}");
        assert!(s.contains("EEXIST"), "{s}");
    }
}
