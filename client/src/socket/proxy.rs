//! [`Proxy`]: what the application knows of one proxied socket (docs/proxied.md), and its calls.
//! Runs in the application; shared by the Rust [`super::Socket`] and the C ABI's fd table.
//!
//! Control calls go to the host ([`Link::control`]), which never blocks on them. Blocking
//! semantics are made here, per the fd's `O_NONBLOCK`, by waiting on the application's own fd
//! with no lock held: `connect` waits for `POLLOUT` and then asks `SO_ERROR`; `accept` asks, and
//! while the answer is `EAGAIN` waits for `POLLIN` (a token byte, or EOF if the host died) and
//! asks again. So a blocking call on one socket never holds up another socket or another stack.
//!
//! Datagram framing: an `AF_INET`/`AF_INET6` datagram socket that is not connected, and every
//! `AF_PACKET` socket (packet sockets cannot connect), carries the address header of
//! [`ioth_proto::dgram`] before each payload (a `sockaddr_ll` for `AF_PACKET`); [`Proxy::send_to`] and
//! [`Proxy::recv_from`] add and strip it. `connected` follows the socket's successful
//! `connect`s (an `AF_UNSPEC` address disconnects).
//!
//! Datagram sizes: a UDP datagram larger than the largest UDP payload (65507 bytes to an IPv4
//! address, a v4-mapped one included, 65527 to an IPv6 one) fails with `EMSGSIZE` here
//! ([`Proxy::too_big`]), as on a kernel socket: the pair would take it and the stack drop it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ioth_plugin_sdk::proxied::header::{self, header_from_sockaddr, HDR_LEN};
use ioth_proto::ControlOp;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::MsgFlags;

use super::raw;
use crate::link::Link;
use crate::{Error, Result};

/// One proxied socket, as the application sees it. Dropping the last reference tells the host
/// that the application closed it (`Request::Close`), unless it was [`Proxy::detach`]ed.
#[derive(Debug)]
pub(crate) struct Proxy {
    /// The stack's host (kept up while the socket is open).
    link: Arc<Link>,
    id: u64,
    domain: i32,
    /// A `SOCK_STREAM` socket (else records: a `SOCK_SEQPACKET` pair).
    stream: bool,
    /// An `AF_INET`/`AF_INET6` socket that is not a stream, or an `AF_PACKET` socket: records
    /// carry the address header while not connected.
    framed: bool,
    /// An `AF_INET`/`AF_INET6` `SOCK_DGRAM` socket: datagrams are bounded by the largest UDP
    /// payload.
    udp: bool,
    connected: AtomicBool,
    /// The connected peer's address bytes (what `recvfrom` reports on a connected socket).
    peer: Mutex<Option<Vec<u8>>>,
    detached: AtomicBool,
}

/// Largest UDP payloads: IPv4 (65535 − 20 − 8) and IPv6 (65535 − 8, no jumbograms).
const MAX_UDP_V4: usize = 65507;
const MAX_UDP_V6: usize = 65527;

/// An address the host answered, checked: no longer than any `sockaddr` (`sockaddr_storage`),
/// else `EPROTO` (a caller's `*addrlen` must never be set from a length that cannot be).
fn checked_addr(a: Vec<u8>, what: &str) -> Result<Vec<u8>> {
    if a.len() > ioth_plugin_sdk::proxied::MAX_ADDRLEN {
        return Err(errno(
            libc::EPROTO,
            &format!("{what}: the stack answered a {}-byte address", a.len()),
        ));
    }
    Ok(a)
}

fn errno(e: i32, what: &str) -> Error {
    Error::Stack {
        errno: e,
        message: format!("{what}: {}", io::Error::from_raw_os_error(e)),
    }
}

fn os(op: &'static str) -> impl Fn(io::Error) -> Error {
    move |source| Error::Os { op, source }
}

/// Whether `fd` has `O_NONBLOCK` (the application's choice for its blocking calls).
pub(crate) fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let fl = fcntl(fd, FcntlArg::F_GETFL).map_err(io::Error::from)?;
    Ok(OFlag::from_bits_retain(fl).contains(OFlag::O_NONBLOCK))
}

/// Waits (no bound: a blocking call) until `fd` reports `events`, or an error or hang-up.
fn wait(fd: BorrowedFd<'_>, events: PollFlags) -> io::Result<PollFlags> {
    loop {
        let mut p = [PollFd::new(fd, events)];
        match poll(&mut p, PollTimeout::NONE) {
            Ok(n) if n > 0 => return Ok(p[0].revents().unwrap_or(PollFlags::empty())),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

impl Proxy {
    /// The proxy of socket `id` of the stack served over `link`, made by `socket(domain, ty)`.
    pub(crate) fn new(link: Arc<Link>, id: u64, domain: i32, ty: i32) -> Arc<Proxy> {
        let base = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
        Arc::new(Proxy {
            link,
            id,
            domain,
            stream: base == libc::SOCK_STREAM,
            framed: base != libc::SOCK_STREAM
                && matches!(domain, libc::AF_INET | libc::AF_INET6 | libc::AF_PACKET),
            udp: base == libc::SOCK_DGRAM && matches!(domain, libc::AF_INET | libc::AF_INET6),
            connected: AtomicBool::new(false),
            peer: Mutex::new(None),
            detached: AtomicBool::new(false),
        })
    }

    /// The id the host knows the socket by.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The socket's domain.
    #[cfg_attr(not(feature = "capi"), allow(dead_code))] // used by the C ABI only
    pub(crate) fn domain(&self) -> i32 {
        self.domain
    }

    /// Whether the socket is a stream (else its pair carries records).
    pub(crate) fn is_stream(&self) -> bool {
        self.stream
    }

    /// Whether records carry the address header now (a datagram socket not connected).
    pub(crate) fn framed_now(&self) -> bool {
        self.framed && !self.connected.load(Ordering::Acquire)
    }

    /// Whether this is a connected framed socket (then `recvfrom` reports the peer).
    pub(crate) fn connected_peer(&self) -> Option<Vec<u8>> {
        if self.framed && self.connected.load(Ordering::Acquire) {
            self.peer.lock().unwrap_or_else(|e| e.into_inner()).clone()
        } else {
            None
        }
    }

    /// Whether a `len`-byte datagram is larger than a UDP datagram to `to` (raw `sockaddr`
    /// bytes; the peer once connected) may be: then its send fails with `EMSGSIZE`, as on a
    /// kernel socket. Always false for a socket that is not UDP.
    pub(crate) fn too_big(&self, len: usize, to: Option<&[u8]>) -> bool {
        if !self.udp || len <= MAX_UDP_V4 {
            return false;
        }
        let peer = self.connected_peer();
        let dst = peer.as_deref().or(to);
        let v4 = match dst {
            Some(a) if a.len() >= 2 => {
                match i32::from(u16::from_ne_bytes([a[0], a[1]])) {
                    libc::AF_INET => true,
                    // sockaddr_in6: family, port, flowinfo, then the address at 8..24.
                    libc::AF_INET6 if a.len() >= 24 => {
                        a[8..18].iter().all(|b| *b == 0) && a[18] == 0xff && a[19] == 0xff
                    }
                    _ => self.domain == libc::AF_INET,
                }
            }
            _ => self.domain == libc::AF_INET,
        };
        len > if v4 { MAX_UDP_V4 } else { MAX_UDP_V6 }
    }

    /// Whether the stack says `SO_BROADCAST` is set (asked only before a send to
    /// 255.255.255.255, which needs it: `EACCES` otherwise, as on a kernel socket).
    fn may_broadcast(&self) -> bool {
        self.getsockopt(libc::SOL_SOCKET, libc::SO_BROADCAST, 4)
            .ok()
            .and_then(|v| {
                v.get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            })
            .is_some_and(|x| x != 0)
    }

    /// Forgets the socket without telling the host: its fd was handed to code that closes it
    /// with close(2) (a std type); the host's side stays until the stack is deleted.
    pub(crate) fn detach(&self) {
        self.detached.store(true, Ordering::Release);
    }

    fn control(&self, op: ControlOp) -> Result<Vec<u8>> {
        if let Err(m) = op.check() {
            return Err(Error::InvalidArgument(m));
        }
        self.link.control(self.id, op)
    }

    /// `bind(addr)`.
    pub(crate) fn bind(&self, addr: &[u8]) -> Result<()> {
        self.control(ControlOp::Bind(addr.to_vec())).map(drop)
    }

    /// `listen(backlog)`.
    pub(crate) fn listen(&self, backlog: i32) -> Result<()> {
        self.control(ControlOp::Listen(backlog)).map(drop)
    }

    /// `connect(addr)` on the socket whose application end is `fd`: blocking unless `fd` has
    /// `O_NONBLOCK` (then `EINPROGRESS` while a stream connection is set up, as connect(2)).
    pub(crate) fn connect(&self, fd: BorrowedFd<'_>, addr: &[u8]) -> Result<()> {
        match self.control(ControlOp::Connect(addr.to_vec())) {
            Ok(_) => {
                self.connected_to(addr);
                Ok(())
            }
            Err(e) if e.errno() == libc::EINPROGRESS => {
                if is_nonblocking(fd).map_err(os("fcntl(F_GETFL)"))? {
                    return Err(e);
                }
                wait(fd, PollFlags::POLLOUT).map_err(os("poll"))?;
                match self.so_error()? {
                    0 => {
                        self.connected_to(addr);
                        Ok(())
                    }
                    err => Err(errno(err, "connect")),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn connected_to(&self, addr: &[u8]) {
        let unspec =
            addr.len() >= 2 && i32::from(u16::from_ne_bytes([addr[0], addr[1]])) == libc::AF_UNSPEC;
        *self.peer.lock().unwrap_or_else(|e| e.into_inner()) = (!unspec).then(|| addr.to_vec());
        self.connected.store(!unspec, Ordering::Release);
    }

    /// `getsockopt(SOL_SOCKET, SO_ERROR)`.
    pub(crate) fn so_error(&self) -> Result<i32> {
        let v = self.getsockopt(libc::SOL_SOCKET, libc::SO_ERROR, 4)?;
        Ok(v.get(..4)
            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]])))
    }

    /// `accept()` on the listening socket whose application end is `fd`: blocking unless `fd`
    /// has `O_NONBLOCK` (then `EAGAIN` when nothing is pending). The new socket's application
    /// end (close-on-exec), its proxy and the peer's address bytes.
    pub(crate) fn accept(&self, fd: BorrowedFd<'_>) -> Result<(OwnedFd, Arc<Proxy>, Vec<u8>)> {
        let nonblocking = is_nonblocking(fd).map_err(os("fcntl(F_GETFL)"))?;
        // Ask first (a socket that does not listen fails at once, as accept(2) does); wait for
        // a token only when nothing is pending.
        let mut hung_up = false;
        loop {
            match self.link.accept(self.id) {
                Ok((newfd, id, peer)) => {
                    let p = Proxy::new(self.link.clone(), id, self.domain, libc::SOCK_STREAM);
                    return Ok((newfd, p, checked_addr(peer, "accept")?));
                }
                // A listening socket whose pair hung up will never have a connection.
                Err(e) if e.errno() == libc::EAGAIN && hung_up => {
                    return Err(errno(libc::EINVAL, "accept: the listening socket is gone"))
                }
                Err(e) if e.errno() == libc::EAGAIN && !nonblocking => {
                    let r = wait(fd, PollFlags::POLLIN).map_err(os("poll"))?;
                    hung_up = r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `getsockname()` (`peer`: `getpeername()`): the address bytes.
    pub(crate) fn name(&self, peer: bool) -> Result<Vec<u8>> {
        let a = self.control(if peer {
            ControlOp::GetPeerName
        } else {
            ControlOp::GetSockName
        })?;
        checked_addr(a, "getsockname")
    }

    /// `setsockopt(level, name, value)`.
    pub(crate) fn setsockopt(&self, level: i32, name: i32, value: &[u8]) -> Result<()> {
        self.control(ControlOp::SetSockOpt {
            level,
            name,
            value: value.to_vec(),
        })
        .map(drop)
    }

    /// `getsockopt(level, name)` with room for `len` bytes.
    pub(crate) fn getsockopt(&self, level: i32, name: i32, len: usize) -> Result<Vec<u8>> {
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        self.control(ControlOp::GetSockOpt { level, name, len })
    }

    /// `shutdown(how)`.
    pub(crate) fn shutdown(&self, how: i32) -> Result<()> {
        self.control(ControlOp::Shutdown(how)).map(drop)
    }

    /// Sends `payload` as one datagram to `to` (raw `sockaddr` bytes) on application end `fd`:
    /// with the address header while not connected (`to` required: `EDESTADDRREQ`), bare once
    /// connected (`to` ignored: the peer). Returns the payload bytes sent. A UDP datagram too
    /// large for its destination fails with `EMSGSIZE`.
    pub(crate) fn send_to(
        &self,
        fd: BorrowedFd<'_>,
        payload: &[u8],
        to: Option<&[u8]>,
        flags: i32,
    ) -> io::Result<usize> {
        if self.too_big(payload.len(), to) {
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        let flags = MsgFlags::from_bits_retain(flags) | MsgFlags::MSG_NOSIGNAL;
        if !self.framed_now() {
            return nix::sys::socket::send(fd.as_raw_fd(), payload, flags).map_err(Into::into);
        }
        let to = to.ok_or_else(|| io::Error::from_raw_os_error(libc::EDESTADDRREQ))?;
        let hdr = header_from_sockaddr(to).map_err(io::Error::from_raw_os_error)?;
        if self.udp && limited_broadcast(to) && !self.may_broadcast() {
            return Err(io::Error::from_raw_os_error(libc::EACCES));
        }
        let n = raw::send_parts(fd, &hdr, payload, flags)?;
        Ok(n.saturating_sub(HDR_LEN))
    }

    /// Receives one datagram on application end `fd` into `buf`: its length (the whole
    /// payload's with `MSG_TRUNC`) and its source address bytes (the peer once connected; `None`
    /// for a socket that has none).
    pub(crate) fn recv_from(
        &self,
        fd: BorrowedFd<'_>,
        buf: &mut [u8],
        flags: i32,
    ) -> io::Result<(usize, Option<Vec<u8>>)> {
        let flags = MsgFlags::from_bits_retain(flags);
        if !self.framed_now() {
            let n = nix::sys::socket::recv(fd.as_raw_fd(), buf, flags)?;
            return Ok((n, self.connected_peer()));
        }
        let mut hdr = [0u8; HDR_LEN];
        let n = raw::recv_parts(fd, &mut hdr, buf, flags)?;
        let (n, from) = header::record(n, &hdr).map_err(io::Error::from_raw_os_error)?;
        match &from {
            Some(a) if i32::from(u16::from_ne_bytes([a[0], a[1]])) != self.domain => {
                // An address of another family than the socket's: the server broke the contract.
                Err(io::Error::from_raw_os_error(libc::EPROTO))
            }
            _ => Ok((n, from)),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if !self.detached.load(Ordering::Acquire) {
            // A dead host answers at once; its socket went with it.
            let _ = self.link.close_socket(self.id);
        }
    }
}

/// Whether raw `sockaddr` bytes are 255.255.255.255 (`AF_INET`, or v4-mapped `AF_INET6`).
fn limited_broadcast(a: &[u8]) -> bool {
    if a.len() < 2 {
        return false;
    }
    match i32::from(u16::from_ne_bytes([a[0], a[1]])) {
        libc::AF_INET => a.len() >= 8 && a[4..8] == [255; 4],
        libc::AF_INET6 => {
            a.len() >= 24 && a[8..18].iter().all(|b| *b == 0) && a[18..24] == [0xff; 6]
        }
        _ => false,
    }
}
