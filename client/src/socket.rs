//! [`Socket`]: an fd made by a stack, owned, holding its stack open.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::stack::{Inner, Stack};

/// A hold of one open socket on a stack: while it lives, the stack counts it as open
/// (`delstack` fails with `EBUSY`) and its host stays up.
#[derive(Debug)]
pub(crate) struct Hold(Arc<Inner>);

impl Hold {
    pub(crate) fn new(inner: &Arc<Inner>) -> Hold {
        inner.open.fetch_add(1, Ordering::AcqRel);
        Hold(inner.clone())
    }

    pub(crate) fn stack(&self) -> Stack {
        Stack::from_inner(self.0.clone())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A socket of an ioth stack: a real file descriptor.
///
/// Use it with any fd-based API: it implements [`AsFd`]/[`AsRawFd`] and converts into
/// [`std::net::TcpStream`], [`std::net::TcpListener`], [`std::net::UdpSocket`],
/// [`std::os::unix::net::UnixDatagram`], [`socket2::Socket`] and [`OwnedFd`]. While the `Socket` lives it counts
/// as open on its stack. A conversion hands the fd over and ends that count: keep the [`Stack`]
/// (or a clone) alive for as long as you use the converted socket, since a stack's interfaces go
/// away with its last handle.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    hold: Hold,
}

impl Socket {
    pub(crate) fn new(fd: OwnedFd, hold: Hold) -> Socket {
        Socket { fd, hold }
    }

    /// The stack this socket belongs to.
    pub fn stack(&self) -> Stack {
        self.hold.stack()
    }

    /// Splits into the fd and the hold (for the C ABI's fd table).
    pub(crate) fn into_parts(self) -> (OwnedFd, Hold) {
        (self.fd, self.hold)
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
        self.fd.into_raw_fd()
    }
}

impl From<Socket> for OwnedFd {
    fn from(s: Socket) -> OwnedFd {
        s.fd
    }
}

macro_rules! into_std {
    ($($t:ty),*) => {$(
        impl From<Socket> for $t {
            fn from(s: Socket) -> $t {
                <$t>::from(s.fd)
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

impl Hold {
    /// One more hold on the same stack (for an fd born of another, e.g. by accept).
    pub(crate) fn another(&self) -> Hold {
        Hold::new(&self.0)
    }
}
