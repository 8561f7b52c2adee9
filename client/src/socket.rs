//! [`Socket`]: an fd made by a stack, owned, holding its stack open, with the Berkeley calls of
//! both fd kinds (docs/proxied.md). Runs in the application.

mod proxy;
pub(crate) mod raw;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::MsgFlags;
use socket2::{SockAddr, SockRef};

pub(crate) use proxy::{is_nonblocking, Proxy};

use crate::handle::Hold;
use crate::Error;

/// `fcntl(F_SETFL)` with `O_NONBLOCK` set or cleared.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let fl = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    let new = if on {
        fl | OFlag::O_NONBLOCK
    } else {
        fl - OFlag::O_NONBLOCK
    };
    if new != fl {
        fcntl(fd, FcntlArg::F_SETFL(new))?;
    }
    Ok(())
}

/// An API error as an `io::Error`: a plain errno where the error is one (so that
/// `raw_os_error()` and `kind()` work as for a system call), the whole error otherwise.
fn io_error(e: Error) -> io::Error {
    match e {
        Error::Stack { errno, .. } => io::Error::from_raw_os_error(errno),
        Error::Os { source, .. } => source,
        Error::InvalidArgument(m) => io::Error::new(io::ErrorKind::InvalidInput, m),
        other => other.into(),
    }
}

/// The raw bytes of a socket address (a `sockaddr_in` or `sockaddr_in6`).
fn addr_bytes(a: &SocketAddr) -> Vec<u8> {
    raw::sockaddr_bytes(&SockAddr::from(*a))
}

/// A socket address from raw bytes (`AF_INET`/`AF_INET6`).
fn addr_from(b: &[u8]) -> io::Result<SocketAddr> {
    raw::socket_addr(b).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not an IPv4 or IPv6 address ({} bytes)", b.len()),
        )
    })
}

/// A socket of an ioth stack: a real file descriptor.
///
/// Use it with any fd-based API: it implements [`AsFd`]/[`AsRawFd`], [`Read`] and [`Write`], and
/// `poll`/`epoll` work on it. Its Berkeley calls ([`Socket::bind`], [`Socket::connect`],
/// [`Socket::accept`], …) work for both kinds of fd:
///
/// - a **native** fd (kernel stacks: `kernel`, `vdestack`) is the plug-in's own kernel socket;
///   the methods are the plain system calls;
/// - a **proxied** fd (user-space stacks: `smoltcp`, C plug-ins with their own read/write) is one
///   end of a socketpair whose other end the stack pumps (docs/proxied.md); data moves with plain
///   `read`/`write`/`send`/`recv`, the control calls go to the stack's host. Blocking calls
///   follow the fd's `O_NONBLOCK` ([`Socket::set_nonblocking`]) and never block other sockets or
///   stacks. Datagram sockets: use [`Socket::send_to`]/[`Socket::recv_from`] while not
///   connected (plain `recv` would see the address header).
///
/// While the `Socket` lives it counts as open on its stack; dropping it closes it (for a
/// proxied socket, the host is told; a dead host is not waited for).
///
/// It converts into [`std::net::TcpStream`], [`std::net::TcpListener`], [`std::net::UdpSocket`],
/// [`std::os::unix::net::UnixDatagram`], [`std::os::unix::net::UnixStream`],
/// [`socket2::Socket`] and [`OwnedFd`]. A conversion hands the fd over and ends that count: keep
/// the [`crate::Stack`] (or a clone) alive for as long as you use the converted socket, since a stack's
/// interfaces go away with its last handle. **A converted proxied socket** gives working
/// `read`/`write`/`shutdown`/`poll` (with the limits above), but not `accept`, `peer_addr`,
/// `local_addr`, socket options nor datagram addresses (those are the host's), and the host
/// cannot see it being closed: the stack keeps its side of the socket until the stack is
/// deleted (call `shutdown(Shutdown::Write)` to end a stream). Keep the `Socket` when you can.
#[derive(Debug)]
pub struct Socket {
    // Dropped in this order: the fd (so that the stack sees EOF), the hold, then the proxy
    // (which tells the host).
    fd: OwnedFd,
    hold: Hold,
    proxy: Option<Arc<Proxy>>,
}

impl Socket {
    pub(crate) fn new(fd: OwnedFd, hold: Hold) -> Socket {
        Socket {
            fd,
            hold,
            proxy: None,
        }
    }

    pub(crate) fn proxied(fd: OwnedFd, hold: Hold, proxy: Arc<Proxy>) -> Socket {
        Socket {
            fd,
            hold,
            proxy: Some(proxy),
        }
    }

    /// The hold on the socket's stack (its stack is [`Socket::stack`]).
    pub(crate) fn hold(&self) -> &Hold {
        &self.hold
    }

    /// Whether the fd is proxied (its stack's sockets live in user space, docs/proxied.md).
    pub fn is_proxied(&self) -> bool {
        self.proxy.is_some()
    }

    /// The id of a proxied socket in its host (as audit trails name it); `None` for a native fd.
    pub fn proxy_id(&self) -> Option<u64> {
        self.proxy.as_ref().map(|p| p.id())
    }

    /// Splits into the fd, the hold and the proxy (for the C ABI's fd table).
    #[cfg_attr(not(feature = "capi"), allow(dead_code))] // used by the C ABI only
    pub(crate) fn into_parts(self) -> (OwnedFd, Hold, Option<Arc<Proxy>>) {
        (self.fd, self.hold, self.proxy)
    }

    /// The fd alone, for a conversion: a proxied socket is detached (see the type's doc).
    fn into_fd(self) -> OwnedFd {
        if let Some(p) = &self.proxy {
            p.detach();
        }
        self.fd
    }

    fn sock(&self) -> SockRef<'_> {
        SockRef::from(&self.fd)
    }

    /// `bind(2)`.
    pub fn bind(&self, addr: &SocketAddr) -> io::Result<()> {
        match &self.proxy {
            None => self.sock().bind(&(*addr).into()),
            Some(p) => p.bind(&addr_bytes(addr)).map_err(io_error),
        }
    }

    /// `connect(2)`: waits for the connection unless the socket is non-blocking, which then
    /// fails with `EINPROGRESS` (`raw_os_error()`) and turns writable when done
    /// ([`Socket::take_error`] tells the outcome).
    pub fn connect(&self, addr: &SocketAddr) -> io::Result<()> {
        match &self.proxy {
            None => self.sock().connect(&(*addr).into()),
            Some(p) => p
                .connect(self.fd.as_fd(), &addr_bytes(addr))
                .map_err(io_error),
        }
    }

    /// `connect(2)` to an `AF_UNSPEC` address: dissolves a datagram socket's association (it
    /// sends and receives with addresses again).
    pub fn disconnect(&self) -> io::Result<()> {
        let mut unspec = vec![0u8; size_of::<libc::sockaddr>()];
        unspec[..2].copy_from_slice(&(libc::AF_UNSPEC as libc::sa_family_t).to_ne_bytes());
        match &self.proxy {
            None => raw::connect(self.fd.as_fd(), &unspec),
            Some(p) => p.connect(self.fd.as_fd(), &unspec).map_err(io_error),
        }
    }

    /// `listen(2)`.
    pub fn listen(&self, backlog: i32) -> io::Result<()> {
        match &self.proxy {
            None => self.sock().listen(backlog),
            Some(p) => p.listen(backlog).map_err(io_error),
        }
    }

    /// `accept(2)`: the connection (close-on-exec, blocking) and its peer's address. Waits for a
    /// connection unless the socket is non-blocking, which then fails with `WouldBlock`.
    pub fn accept(&self) -> io::Result<(Socket, SocketAddr)> {
        match &self.proxy {
            None => {
                let (s, a) = self.sock().accept()?;
                let peer = a.as_socket().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "peer is not an IP address")
                })?;
                Ok((Socket::new(s.into(), self.hold.another()), peer))
            }
            Some(p) => {
                let (fd, np, peer) = p.accept(self.fd.as_fd()).map_err(io_error)?;
                let peer = addr_from(&peer)?;
                Ok((Socket::proxied(fd, self.hold.another(), np), peer))
            }
        }
    }

    /// `getsockname(2)`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.proxy {
            None => addr_from_sock(self.sock().local_addr()?),
            Some(p) => addr_from(&p.name(false).map_err(io_error)?),
        }
    }

    /// `getsockname(2)` as raw socket address bytes of any family (a `sockaddr_ll` for an
    /// `AF_PACKET` socket, as long as the kernel's: 12 bytes plus the hardware address).
    pub fn local_sockaddr(&self) -> io::Result<SockAddr> {
        match &self.proxy {
            None => self.sock().local_addr(),
            Some(p) => sockaddr_from(&p.name(false).map_err(io_error)?),
        }
    }

    /// `getpeername(2)`.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match &self.proxy {
            None => addr_from_sock(self.sock().peer_addr()?),
            Some(p) => addr_from(&p.name(true).map_err(io_error)?),
        }
    }

    /// `shutdown(2)`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match &self.proxy {
            None => self.sock().shutdown(how),
            Some(p) => {
                let how = match how {
                    Shutdown::Read => libc::SHUT_RD,
                    Shutdown::Write => libc::SHUT_WR,
                    Shutdown::Both => libc::SHUT_RDWR,
                };
                p.shutdown(how).map_err(io_error)
            }
        }
    }

    /// Sets or clears `O_NONBLOCK` on the fd (both kinds: for a proxied socket it decides
    /// whether [`Socket::connect`] and [`Socket::accept`] wait).
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        set_nonblocking(self.fd.as_fd(), on)
    }

    /// Whether `O_NONBLOCK` is set.
    pub fn is_nonblocking(&self) -> io::Result<bool> {
        is_nonblocking(self.fd.as_fd())
    }

    /// `setsockopt(2)` with the value's raw bytes. On a proxied socket `SO_RCVTIMEO` and
    /// `SO_SNDTIMEO` act on the fd itself (they bound the application's reads and writes); every
    /// other option goes to the stack.
    pub fn setsockopt(&self, level: i32, name: i32, value: &[u8]) -> io::Result<()> {
        match &self.proxy {
            Some(p) if !fd_option(level, name) => {
                p.setsockopt(level, name, value).map_err(io_error)
            }
            _ => raw::setsockopt(self.fd.as_fd(), level, name, value),
        }
    }

    /// `getsockopt(2)` with room for `len` bytes: the value's raw bytes (see
    /// [`Socket::setsockopt`] for where the options live).
    pub fn getsockopt(&self, level: i32, name: i32, len: usize) -> io::Result<Vec<u8>> {
        match &self.proxy {
            Some(p) if !fd_option(level, name) => p.getsockopt(level, name, len).map_err(io_error),
            _ => raw::getsockopt(self.fd.as_fd(), level, name, len),
        }
    }

    fn set_int(&self, level: i32, name: i32, v: i32) -> io::Result<()> {
        self.setsockopt(level, name, &v.to_ne_bytes())
    }

    fn get_int(&self, level: i32, name: i32) -> io::Result<i32> {
        let v = self.getsockopt(level, name, 4)?;
        Ok(v.get(..4)
            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]])))
    }

    /// `TCP_NODELAY`.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.set_int(libc::IPPROTO_TCP, libc::TCP_NODELAY, on.into())
    }

    /// `TCP_NODELAY`.
    pub fn nodelay(&self) -> io::Result<bool> {
        Ok(self.get_int(libc::IPPROTO_TCP, libc::TCP_NODELAY)? != 0)
    }

    /// `SO_REUSEADDR`.
    pub fn set_reuse_address(&self, on: bool) -> io::Result<()> {
        self.set_int(libc::SOL_SOCKET, libc::SO_REUSEADDR, on.into())
    }

    /// `SO_REUSEADDR`.
    pub fn reuse_address(&self) -> io::Result<bool> {
        Ok(self.get_int(libc::SOL_SOCKET, libc::SO_REUSEADDR)? != 0)
    }

    /// `SO_ERROR`, taken: the outcome of a non-blocking connect, or a pending error.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        let e = self.get_int(libc::SOL_SOCKET, libc::SO_ERROR)?;
        Ok((e != 0).then(|| io::Error::from_raw_os_error(e)))
    }

    /// `SO_RCVTIMEO` on the fd (both kinds): bounds blocking reads.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.sock().set_read_timeout(t)
    }

    /// `SO_SNDTIMEO` on the fd (both kinds): bounds blocking writes.
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.sock().set_write_timeout(t)
    }

    /// `send(2)` (`MSG_NOSIGNAL`). A datagram socket that is not connected fails with
    /// `EDESTADDRREQ`: use [`Socket::send_to`]. A proxied UDP datagram larger than the largest
    /// UDP payload fails with `EMSGSIZE`, as on a kernel socket.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        match &self.proxy {
            Some(p) if p.framed_now() => Err(io::Error::from_raw_os_error(libc::EDESTADDRREQ)),
            Some(p) if p.too_big(buf.len(), None) => {
                Err(io::Error::from_raw_os_error(libc::EMSGSIZE))
            }
            _ => self.sock().send_with_flags(buf, libc::MSG_NOSIGNAL),
        }
    }

    /// `recv(2)`. On a proxied datagram socket that is not connected, the address header is
    /// stripped (use [`Socket::recv_from`] for the address).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.proxy {
            Some(p) if p.framed_now() => Ok(p.recv_from(self.fd.as_fd(), buf, 0)?.0),
            _ => nix::sys::socket::recv(self.fd.as_raw_fd(), buf, MsgFlags::empty())
                .map_err(Into::into),
        }
    }

    /// `sendto(2)`: one datagram to `addr` (the connected peer once a datagram socket is
    /// connected; a proxied socket then ignores `addr`). A proxied UDP datagram larger than the
    /// largest UDP payload (65507 bytes to IPv4, 65527 to IPv6) fails with `EMSGSIZE`.
    pub fn send_to(&self, buf: &[u8], addr: &SocketAddr) -> io::Result<usize> {
        match &self.proxy {
            None => self
                .sock()
                .send_to_with_flags(buf, &(*addr).into(), libc::MSG_NOSIGNAL),
            Some(p) => p.send_to(self.fd.as_fd(), buf, Some(&addr_bytes(addr)), 0),
        }
    }

    /// `bind(2)` to a socket address of any family: a `sockaddr_ll` (`AF_PACKET`: ifindex and
    /// protocol), or a `sockaddr_in`/`sockaddr_in6` as [`Socket::bind`].
    pub fn bind_sockaddr(&self, addr: &SockAddr) -> io::Result<()> {
        match &self.proxy {
            None => self.sock().bind(addr),
            Some(p) => p.bind(&raw::sockaddr_bytes(addr)).map_err(io_error),
        }
    }

    /// `sendto(2)` to a socket address of any family: a `sockaddr_ll` for an `AF_PACKET` socket
    /// (ifindex, protocol, hardware address: broadcast included), else as [`Socket::send_to`].
    pub fn send_to_sockaddr(&self, buf: &[u8], addr: &SockAddr) -> io::Result<usize> {
        match &self.proxy {
            None => self
                .sock()
                .send_to_with_flags(buf, addr, libc::MSG_NOSIGNAL),
            Some(p) => p.send_to(self.fd.as_fd(), buf, Some(&raw::sockaddr_bytes(addr)), 0),
        }
    }

    /// `recvfrom(2)` with the source as a socket address of any family (an `AF_PACKET` socket:
    /// the sender's `sockaddr_ll`, 20 bytes, as the kernel gives it).
    pub fn recv_from_sockaddr(&self, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
        match &self.proxy {
            None => {
                let (n, a) = raw::recv_from(self.fd.as_fd(), buf)?;
                Ok((n, sockaddr_from(&a)?))
            }
            Some(p) => match p.recv_from(self.fd.as_fd(), buf, 0)? {
                (n, Some(a)) => Ok((n, sockaddr_from(&a)?)),
                (n, None) if p.is_stream() => Ok((n, self.sock().peer_addr()?)),
                (_, None) => Err(io::Error::from_raw_os_error(libc::ECONNRESET)),
            },
        }
    }

    /// `recvfrom(2)`: one datagram and its source (on a stream: what `recv` gives, and the
    /// peer). A proxied datagram socket whose stack is gone fails with `ECONNRESET`.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match &self.proxy {
            None => {
                let (n, a) = raw::recv_from(self.fd.as_fd(), buf)?;
                Ok((n, addr_from(&a)?))
            }
            Some(p) => {
                let (n, from) = p.recv_from(self.fd.as_fd(), buf, 0)?;
                match from {
                    Some(a) => Ok((n, addr_from(&a)?)),
                    // A stream carries no addresses: its peer's.
                    None if p.is_stream() => Ok((n, self.peer_addr()?)),
                    // An unconnected datagram socket whose stack is gone (EOF on its pair).
                    None => Err(io::Error::from_raw_os_error(libc::ECONNRESET)),
                }
            }
        }
    }
}

/// Options that live on the application's fd itself, not in the stack.
fn fd_option(level: i32, name: i32) -> bool {
    level == libc::SOL_SOCKET && matches!(name, libc::SO_RCVTIMEO | libc::SO_SNDTIMEO)
}

fn sockaddr_from(b: &[u8]) -> io::Result<SockAddr> {
    raw::sock_addr(b)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "socket address too long"))
}

fn addr_from_sock(a: SockAddr) -> io::Result<SocketAddr> {
    a.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP address"))
}

impl Read for &Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Socket::recv(self, buf)
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Socket::recv(self, buf)
    }
}

impl Write for &Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Socket::send(self, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Socket::send(self, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl IntoRawFd for Socket {
    fn into_raw_fd(self) -> RawFd {
        self.into_fd().into_raw_fd()
    }
}

impl From<Socket> for OwnedFd {
    fn from(s: Socket) -> OwnedFd {
        s.into_fd()
    }
}

macro_rules! into_std {
    ($($t:ty),*) => {$(
        impl From<Socket> for $t {
            fn from(s: Socket) -> $t {
                <$t>::from(s.into_fd())
            }
        }
    )*};
}

into_std!(
    std::net::TcpStream,
    std::net::TcpListener,
    std::net::UdpSocket,
    std::os::unix::net::UnixDatagram,
    std::os::unix::net::UnixStream,
    socket2::Socket
);
