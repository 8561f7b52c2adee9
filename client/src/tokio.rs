//! Async sockets on any stack, for tokio (feature `tokio`): [`TcpListener`], [`TcpStream`] and
//! [`UdpSocket`], with the shape of tokio's own `tokio::net` types.
//!
//! Each wraps an [`ioth::Socket`](crate::Socket) in non-blocking mode, registered with tokio's
//! reactor ([`AsyncFd`]). That works for native *and* proxied sockets (docs/proxied.md): a proxied
//! fd's readiness is truthful (a listener is readable exactly when a connection is pending, a
//! connecting socket turns writable when the connection is set up), and the operations that need
//! the stack's host — accept, connect, datagram addresses, options — are the `Socket` methods,
//! which answer at once on a non-blocking socket (`WouldBlock`, `EINPROGRESS`) and never wait on
//! the network in the runtime's threads.
//!
//! Cancel safety is tokio's: `accept`, `recv`, `recv_from`, `send` and `send_to` do their work
//! in one non-blocking call after the wait, so a future dropped while waiting loses nothing;
//! dropping `connect` drops the half-open socket.
//!
//! Runs in the application; needs a tokio runtime with I/O enabled (`rt` + `net`).
#![allow(unsafe_code)]

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use ::tokio::io::unix::AsyncFd;
use ::tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

use crate::{Socket, Stack};

/// Registers `socket` (made non-blocking) with the current runtime's reactor.
fn register(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    socket.set_nonblocking(true)?;
    // SAFETY: the fd is the Socket's own OwnedFd, open for as long as the Socket lives; the
    // AsyncFd owns the Socket, so the fd stays open and the same until the registration ends
    // (AsyncFd deregisters before it drops the Socket), and Socket::as_raw_fd always returns it.
    unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE | Interest::WRITABLE) }
        .map_err(|e| e.into_parts().1)
}

fn domain_of(addr: &SocketAddr) -> socket2::Domain {
    match addr {
        SocketAddr::V4(_) => socket2::Domain::IPV4,
        SocketAddr::V6(_) => socket2::Domain::IPV6,
    }
}

/// A TCP listener on a stack.
#[derive(Debug)]
pub struct TcpListener {
    io: AsyncFd<Socket>,
}

impl TcpListener {
    /// A listener on `stack` bound to `addr` (`SO_REUSEADDR` set, as tokio's, backlog 1024).
    pub async fn bind(stack: &Stack, addr: SocketAddr) -> io::Result<TcpListener> {
        let s = stack.socket(domain_of(&addr), socket2::Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        s.bind(&addr)?;
        s.listen(1024)?;
        TcpListener::from_socket(s)
    }

    /// Takes a listening `Socket` (made non-blocking). Needs a runtime.
    pub fn from_socket(socket: Socket) -> io::Result<TcpListener> {
        Ok(TcpListener {
            io: register(socket)?,
        })
    }

    /// Waits for a connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (s, peer) = self.io.async_io(Interest::READABLE, |s| s.accept()).await?;
        Ok((TcpStream::from_socket(s)?, peer))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    /// The `Socket` back (still non-blocking).
    pub fn into_socket(self) -> Socket {
        self.io.into_inner()
    }
}

/// A TCP connection on a stack: [`AsyncRead`] + [`AsyncWrite`].
#[derive(Debug)]
pub struct TcpStream {
    io: AsyncFd<Socket>,
}

impl TcpStream {
    /// Connects to `addr` from `stack`.
    pub async fn connect(stack: &Stack, addr: SocketAddr) -> io::Result<TcpStream> {
        let s = stack.socket(domain_of(&addr), socket2::Type::STREAM, None)?;
        s.set_nonblocking(true)?;
        let pending = match s.connect(&addr) {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => true,
            Err(e) => return Err(e),
        };
        // Registered once the connection is under way: before, an unconnected socket polls as
        // hung up, which the reactor would take for "writable".
        let stream = TcpStream::from_socket(s)?;
        if !pending {
            return Ok(stream);
        }
        loop {
            let mut guard = stream.io.writable().await?;
            if let Some(e) = guard.get_inner().take_error()? {
                return Err(e);
            }
            match guard.get_inner().peer_addr() {
                Ok(_) => return Ok(stream),
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => guard.clear_ready(),
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes a connected `Socket` (made non-blocking). Needs a runtime.
    pub fn from_socket(socket: Socket) -> io::Result<TcpStream> {
        Ok(TcpStream {
            io: register(socket)?,
        })
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().peer_addr()
    }

    /// `TCP_NODELAY`.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.io.get_ref().set_nodelay(on)
    }

    /// The `Socket` back (still non-blocking).
    pub fn into_socket(self) -> Socket {
        self.io.into_inner()
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.io.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|io| io.get_ref().recv(unfilled)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.io.poll_write_ready(cx))?;
            match guard.try_io(|io| io.get_ref().send(buf)) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.io.get_ref().shutdown(Shutdown::Write))
    }
}

/// A UDP socket on a stack.
#[derive(Debug)]
pub struct UdpSocket {
    io: AsyncFd<Socket>,
}

impl UdpSocket {
    /// A socket on `stack` bound to `addr`.
    pub async fn bind(stack: &Stack, addr: SocketAddr) -> io::Result<UdpSocket> {
        let s = stack.socket(domain_of(&addr), socket2::Type::DGRAM, None)?;
        s.bind(&addr)?;
        UdpSocket::from_socket(s)
    }

    /// Takes a datagram `Socket` (made non-blocking). Needs a runtime.
    pub fn from_socket(socket: Socket) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            io: register(socket)?,
        })
    }

    /// Sets the default peer ([`UdpSocket::send`], [`UdpSocket::recv`]).
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<()> {
        self.io.get_ref().connect(&addr)
    }

    /// Sends one datagram to `addr`.
    pub async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> io::Result<usize> {
        self.io
            .async_io(Interest::WRITABLE, |s| s.send_to(buf, &addr))
            .await
    }

    /// Waits for one datagram; its length and sender.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io
            .async_io(Interest::READABLE, |s| s.recv_from(buf))
            .await
    }

    /// Sends one datagram to the connected peer.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.io.async_io(Interest::WRITABLE, |s| s.send(buf)).await
    }

    /// Waits for one datagram from the connected peer.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.async_io(Interest::READABLE, |s| s.recv(buf)).await
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().peer_addr()
    }

    /// The `Socket` back (still non-blocking).
    pub fn into_socket(self) -> Socket {
        self.io.into_inner()
    }
}

macro_rules! fd_of {
    ($($t:ty),*) => {$(
        impl AsFd for $t {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.io.get_ref().as_fd()
            }
        }
        impl AsRawFd for $t {
            fn as_raw_fd(&self) -> RawFd {
                self.io.get_ref().as_raw_fd()
            }
        }
    )*};
}
fd_of!(TcpListener, TcpStream, UdpSocket);
