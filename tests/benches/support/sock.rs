//! One socket type for workloads that run over plain sockets, native ioth fds and proxied ioth
//! fds alike: [`Sock`]. Control calls (bind, connect, listen, accept, options, shutdown,
//! datagram addresses) go through `ioth::Socket`'s methods for an ioth socket — the only way
//! that works on a proxied fd (docs/proxied.md) — and through socket2 for a plain one. Reads and
//! writes are plain syscalls on the fd either way.
//!
//! Every wait is bounded: [`Sock::connect`] and [`Sock::accept`] poll for at most the time they
//! are given, and [`Sock::set_timeouts`] bounds blocking reads and writes.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use nix::poll::PollFlags;
use nix::sys::socket::{SockaddrLike, SockaddrStorage};

/// A plain socket or a socket of an ioth stack (native or proxied).
pub enum Sock {
    /// `socket(2)` of the bench's own namespace.
    Plain(socket2::Socket),
    /// Made by `Stack::msocket`.
    Ioth(ioth::Socket),
}

fn ip_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    s.as_sockaddr_in6()
        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
}

/// Waits (bounded) until `fd` reports one of `ev`; false if the time ran out.
fn wait_for(fd: BorrowedFd<'_>, ev: PollFlags, bound: Duration) -> bool {
    !ioth_tests::sock::wait_for(fd, ev, bound).is_empty()
}

impl Sock {
    /// A plain IPv4 socket of type `ty` (`socket2::Type::STREAM`, `DGRAM`).
    pub fn plain(ty: socket2::Type) -> Sock {
        Sock::Plain(socket2::Socket::new(socket2::Domain::IPV4, ty, None).expect("socket"))
    }

    /// An IPv4 socket of `stack` (`libc::SOCK_STREAM`, `SOCK_DGRAM`).
    pub fn of(stack: &ioth::Stack, ty: i32) -> Sock {
        Sock::Ioth(
            stack
                .msocket(libc::AF_INET, ty, 0)
                .unwrap_or_else(|e| panic!("msocket on {}: {e}", stack.plugin())),
        )
    }

    /// Whether the fd is proxied (a user-space stack's, docs/proxied.md).
    pub fn is_proxied(&self) -> bool {
        matches!(self, Sock::Ioth(s) if s.is_proxied())
    }

    pub fn bind(&self, a: &SocketAddr) -> io::Result<()> {
        match self {
            Sock::Plain(s) => s.bind(&(*a).into()),
            Sock::Ioth(s) => s.bind(a),
        }
    }

    pub fn set_reuse_address(&self) -> io::Result<()> {
        match self {
            Sock::Plain(s) => s.set_reuse_address(true),
            Sock::Ioth(s) => s.set_reuse_address(true),
        }
    }

    pub fn listen(&self, backlog: i32) -> io::Result<()> {
        match self {
            Sock::Plain(s) => s.listen(backlog),
            Sock::Ioth(s) => s.listen(backlog),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Sock::Plain(s) => s
                .local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::other("not an IP address")),
            Sock::Ioth(s) => s.local_addr(),
        }
    }

    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Sock::Plain(s) => s.set_nonblocking(on),
            Sock::Ioth(s) => s.set_nonblocking(on),
        }
    }

    fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Sock::Plain(s) => s.take_error(),
            Sock::Ioth(s) => s.take_error(),
        }
    }

    /// `connect`, waiting at most `bound` (non-blocking connect, POLLOUT, `SO_ERROR`); the
    /// socket is blocking afterwards.
    pub fn connect(&self, to: &SocketAddr, bound: Duration) -> io::Result<()> {
        self.set_nonblocking(true)?;
        let r = match self {
            Sock::Plain(s) => s.connect(&(*to).into()),
            Sock::Ioth(s) => s.connect(to),
        };
        match r {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                if !wait_for(self.as_fd(), PollFlags::POLLOUT, bound) {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connect {to}: not done within {bound:?}"),
                    ));
                }
                if let Some(e) = self.take_error()? {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        self.set_nonblocking(false)
    }

    /// One connection, waited for at most `bound`.
    pub fn accept(&self, bound: Duration) -> io::Result<Sock> {
        if !wait_for(self.as_fd(), PollFlags::POLLIN, bound) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection within {bound:?}"),
            ));
        }
        match self {
            Sock::Plain(s) => Ok(Sock::Plain(s.accept()?.0)),
            Sock::Ioth(s) => Ok(Sock::Ioth(s.accept()?.0)),
        }
    }

    /// `SO_RCVTIMEO` and `SO_SNDTIMEO` (on the fd itself for both kinds).
    pub fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        match self {
            Sock::Plain(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
            Sock::Ioth(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
        }
    }

    /// `SO_RCVTIMEO` alone.
    pub fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            Sock::Plain(s) => s.set_read_timeout(Some(t)),
            Sock::Ioth(s) => s.set_read_timeout(Some(t)),
        }
    }

    /// `TCP_NODELAY` (through the stack for a proxied socket).
    pub fn set_nodelay(&self) -> io::Result<()> {
        match self {
            Sock::Plain(s) => s.set_tcp_nodelay(true),
            Sock::Ioth(s) => s.set_nodelay(true),
        }
    }

    /// `shutdown(SHUT_WR)` (through the stack for a proxied socket).
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Sock::Plain(s) => s.shutdown(Shutdown::Write),
            Sock::Ioth(s) => s.shutdown(Shutdown::Write),
        }
    }

    /// `send(2)` with `MSG_NOSIGNAL`.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Plain(s) => s.send_with_flags(buf, libc::MSG_NOSIGNAL),
            Sock::Ioth(s) => s.send(buf),
        }
    }

    /// `recv(2)`.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Plain(s) => {
                let mut r: &socket2::Socket = s;
                r.read(buf)
            }
            Sock::Ioth(s) => s.recv(buf),
        }
    }

    /// `sendto(2)`; on an unconnected proxied datagram socket the address travels in the
    /// datagram header (`Socket::send_to`).
    pub fn send_to(&self, buf: &[u8], to: &SocketAddr) -> io::Result<usize> {
        match self {
            Sock::Plain(s) => s.send_to_with_flags(buf, &(*to).into(), libc::MSG_NOSIGNAL),
            Sock::Ioth(s) => s.send_to(buf, to),
        }
    }

    /// `recvfrom(2)`.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match self {
            Sock::Plain(s) => {
                let (n, a) = nix::sys::socket::recvfrom::<SockaddrStorage>(s.as_raw_fd(), buf)?;
                let a = a
                    .filter(|a| a.family().is_some())
                    .and_then(|a| ip_addr(&a))
                    .ok_or_else(|| io::Error::other("datagram without an IP source"))?;
                Ok((n, a))
            }
            Sock::Ioth(s) => s.recv_from(buf),
        }
    }
}

impl AsFd for Sock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Sock::Plain(s) => s.as_fd(),
            Sock::Ioth(s) => s.as_fd(),
        }
    }
}

impl Read for &Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf)
    }
}

impl Write for &Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
