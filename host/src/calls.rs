//! Calling a loaded plug-in's socket functions, and the raw fds they deal in. Runs in the host
//! process only; all the `unsafe` of proxied sockets is here.
//!
//! [`Calls`] is a copy of the plug-in's `struct ioth_functions` (function pointers, valid for the
//! life of the process: the plug-in is never unloaded). Each method calls one slot with the
//! errno cleared first and returns the errno the plug-in set on failure. An unset (NULL) slot
//! stands for libc's own function, as it does for native plug-ins.
//!
//! A plug-in's socket is named by the `int` its `socket`/`accept` returned (its *handle*). For a
//! "proxied, host pump" plug-in that int is a real, pollable fd the plug-in owns: the host polls
//! it and passes it back, between the plug-in's `socket`/`accept` and its `close`. For a
//! "proxied, fd data" plug-in it is the application's end of a pair, which the host owns
//! ([`Calls::socket_fd`]).
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use ioth_plugin_sdk::abi::IothFunctions;
use ioth_plugin_sdk::errno;
use ioth_proto::{MAX_SOCKADDR, MAX_SOCKOPT};

// The wire's bounds on a control call are the plug-in ABI's (the SDK's proxied-fd contract):
// what the application may send, a plug-in built with the SDK takes whole.
const _: () = assert!(MAX_SOCKOPT == ioth_plugin_sdk::proxied::MAX_OPTLEN);
const _: () = assert!(MAX_SOCKADDR == ioth_plugin_sdk::proxied::MAX_ADDRLEN);

/// The socket functions of a loaded plug-in.
#[derive(Clone, Copy)]
pub struct Calls {
    f: IothFunctions,
}

/// The errno a failed call left, or `default` if it left none.
fn failed(default: i32) -> io::Error {
    io::Error::from_raw_os_error(errno::last_or(default))
}

fn cvt(r: c_int) -> io::Result<c_int> {
    if r < 0 {
        Err(failed(libc::EIO))
    } else {
        Ok(r)
    }
}

fn cvt_size(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(failed(libc::EIO))
    } else {
        Ok(r as usize)
    }
}

/// An address buffer as the `(struct sockaddr *, socklen_t *)` pair of accept(2) and friends.
struct AddrOut {
    buf: [u8; MAX_SOCKADDR],
    len: libc::socklen_t,
}

impl AddrOut {
    fn new() -> AddrOut {
        AddrOut {
            buf: [0; MAX_SOCKADDR],
            len: MAX_SOCKADDR as libc::socklen_t,
        }
    }

    fn ptrs(&mut self) -> (*mut libc::sockaddr, *mut libc::socklen_t) {
        (self.buf.as_mut_ptr().cast(), &mut self.len)
    }

    fn bytes(&self) -> Vec<u8> {
        self.buf[..(self.len as usize).min(MAX_SOCKADDR)].to_vec()
    }
}

/// `poll(2)` on raw pollfds (the pump's set: plug-in handles and the host's own fds); a
/// negative `fd` is skipped, as poll(2) does. Retries on `EINTR`.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: c_int) -> io::Result<usize> {
    loop {
        // SAFETY: fds is a live, writable array of fds.len() pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

impl Calls {
    /// The functions `f` holds.
    pub fn new(f: &IothFunctions) -> Calls {
        Calls { f: *f }
    }

    /// Whether the plug-in set `close` to a function of its own (not libc's `close`, not NULL).
    pub fn own_close(&self, libc_close: Option<*const c_void>) -> bool {
        match self.f.close {
            None => false,
            Some(c) => Some(c as *const c_void) != libc_close,
        }
    }

    /// `socket(domain, ty, protocol)`: the new handle.
    pub fn socket(&self, domain: i32, ty: i32, protocol: i32) -> io::Result<RawFd> {
        let Some(socket) = self.f.socket else {
            return Err(io::Error::from_raw_os_error(libc::ENOSYS));
        };
        errno::clear();
        // SAFETY: socket has the socket(2) signature by the ABI; plain integers.
        cvt(unsafe { socket(domain, ty, protocol) })
    }

    /// `socket` of a "proxied, fd data" plug-in, whose handle is the application's end of a pair
    /// the plug-in hands to the host: the host owns that fd from now on.
    pub fn socket_fd(&self, domain: i32, ty: i32, protocol: i32) -> io::Result<OwnedFd> {
        let h = self.socket(domain, ty, protocol)?;
        // SAFETY: by the fd-data contract (docs/proxied.md) the handle the plug-in's socket just
        // returned is a new fd, the application's end of its pair, which nothing else in the
        // host owns.
        Ok(unsafe { OwnedFd::from_raw_fd(h) })
    }

    /// `accept` of a "proxied, fd data" plug-in: the new handle as an fd the host owns (see
    /// [`Calls::socket_fd`]) and the peer's address bytes.
    pub fn accept_fd(&self, fd: RawFd) -> io::Result<(OwnedFd, Vec<u8>)> {
        let (h, peer) = self.accept(fd)?;
        // SAFETY: as in socket_fd: a new fd the plug-in hands to the host.
        Ok((unsafe { OwnedFd::from_raw_fd(h) }, peer))
    }

    /// `close(fd)`: the plug-in's, else libc's.
    pub fn close(&self, fd: RawFd) -> io::Result<()> {
        errno::clear();
        let r = match self.f.close {
            // SAFETY: close(2)'s signature by the ABI; the handle is not used after this.
            Some(close) => unsafe { close(fd) },
            // SAFETY: as above, libc's own.
            None => unsafe { libc::close(fd) },
        };
        cvt(r).map(drop)
    }

    /// `bind(fd, addr)`.
    pub fn bind(&self, fd: RawFd, addr: &[u8]) -> io::Result<()> {
        let bind = self.f.bind.unwrap_or(libc::bind);
        errno::clear();
        // SAFETY: addr is readable for its length, passed as addrlen.
        cvt(unsafe { bind(fd, addr.as_ptr().cast(), addr.len() as libc::socklen_t) }).map(drop)
    }

    /// `connect(fd, addr)`.
    pub fn connect(&self, fd: RawFd, addr: &[u8]) -> io::Result<()> {
        let connect = self.f.connect.unwrap_or(libc::connect);
        errno::clear();
        // SAFETY: addr is readable for its length, passed as addrlen.
        cvt(unsafe { connect(fd, addr.as_ptr().cast(), addr.len() as libc::socklen_t) }).map(drop)
    }

    /// `listen(fd, backlog)`.
    pub fn listen(&self, fd: RawFd, backlog: i32) -> io::Result<()> {
        let listen = self.f.listen.unwrap_or(libc::listen);
        errno::clear();
        // SAFETY: plain integers.
        cvt(unsafe { listen(fd, backlog) }).map(drop)
    }

    /// `accept(fd)`: the new handle and the peer's address bytes.
    pub fn accept(&self, fd: RawFd) -> io::Result<(RawFd, Vec<u8>)> {
        let accept = self.f.accept.unwrap_or(libc::accept);
        let mut a = AddrOut::new();
        let (p, l) = a.ptrs();
        errno::clear();
        // SAFETY: p is writable for *l bytes; l is a live socklen_t.
        let h = cvt(unsafe { accept(fd, p, l) })?;
        Ok((h, a.bytes()))
    }

    /// `getsockname(fd)` (`peer`: `getpeername`): the address bytes.
    pub fn name(&self, fd: RawFd, peer: bool) -> io::Result<Vec<u8>> {
        let f = if peer {
            self.f.getpeername.unwrap_or(libc::getpeername)
        } else {
            self.f.getsockname.unwrap_or(libc::getsockname)
        };
        let mut a = AddrOut::new();
        let (p, l) = a.ptrs();
        errno::clear();
        // SAFETY: p is writable for *l bytes; l is a live socklen_t.
        cvt(unsafe { f(fd, p, l) })?;
        Ok(a.bytes())
    }

    /// `setsockopt(fd, level, name, value)`.
    pub fn setsockopt(&self, fd: RawFd, level: i32, name: i32, value: &[u8]) -> io::Result<()> {
        let f = self.f.setsockopt.unwrap_or(libc::setsockopt);
        let p = if value.is_empty() {
            std::ptr::null()
        } else {
            value.as_ptr().cast()
        };
        errno::clear();
        // SAFETY: p is NULL (length 0) or readable for value.len() bytes.
        cvt(unsafe { f(fd, level, name, p, value.len() as libc::socklen_t) }).map(drop)
    }

    /// `getsockopt(fd, level, name)` with room for `len` bytes: the value's bytes.
    pub fn getsockopt(&self, fd: RawFd, level: i32, name: i32, len: usize) -> io::Result<Vec<u8>> {
        let f = self.f.getsockopt.unwrap_or(libc::getsockopt);
        let mut buf = [0u8; MAX_SOCKOPT];
        let mut l = len.min(MAX_SOCKOPT) as libc::socklen_t;
        errno::clear();
        // SAFETY: buf is writable for l <= MAX_SOCKOPT bytes; l is a live socklen_t.
        cvt(unsafe { f(fd, level, name, buf.as_mut_ptr().cast(), &mut l) })?;
        Ok(buf[..(l as usize).min(len.min(MAX_SOCKOPT))].to_vec())
    }

    /// `getsockopt(fd, SOL_SOCKET, SO_ERROR)`.
    pub fn so_error(&self, fd: RawFd) -> io::Result<i32> {
        let v = self.getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, 4)?;
        Ok(v.get(..4)
            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]])))
    }

    /// `shutdown(fd, how)`.
    pub fn shutdown(&self, fd: RawFd, how: i32) -> io::Result<()> {
        let f = self.f.shutdown.unwrap_or(libc::shutdown);
        errno::clear();
        // SAFETY: plain integers.
        cvt(unsafe { f(fd, how) }).map(drop)
    }

    /// Puts the handle in non-blocking mode with the plug-in's own `fcntl`
    /// (`F_GETFL`, then `F_SETFL | O_NONBLOCK`).
    pub fn set_nonblocking(&self, fd: RawFd) -> io::Result<()> {
        let fcntl = self.f.fcntl.unwrap_or(libc::fcntl);
        errno::clear();
        // SAFETY: fcntl(2)'s variadic signature by the ABI; F_GETFL takes no third argument.
        let flags = cvt(unsafe { fcntl(fd, libc::F_GETFL) })?;
        if flags & libc::O_NONBLOCK != 0 {
            return Ok(());
        }
        errno::clear();
        // SAFETY: as above; F_SETFL takes an int.
        cvt(unsafe { fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
    }

    /// Reads stream data: the plug-in's `read`, else `recv`, else `recvfrom`, else libc's
    /// `read`.
    pub fn read(&self, fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
        let (p, n) = (buf.as_mut_ptr().cast::<c_void>(), buf.len());
        errno::clear();
        // SAFETY: every variant gets a buffer writable for n bytes (and NULL address pointers).
        let r = unsafe {
            if let Some(f) = self.f.read {
                f(fd, p, n)
            } else if let Some(f) = self.f.recv {
                f(fd, p, n, 0)
            } else if let Some(f) = self.f.recvfrom {
                f(fd, p, n, 0, std::ptr::null_mut(), std::ptr::null_mut())
            } else {
                libc::read(fd, p, n)
            }
        };
        cvt_size(r)
    }

    /// Writes stream data: the plug-in's `write`, else `send`, else `sendto`, else libc's
    /// `write`. `MSG_NOSIGNAL` where a flag can be given.
    pub fn write(&self, fd: RawFd, buf: &[u8]) -> io::Result<usize> {
        let (p, n) = (buf.as_ptr().cast::<c_void>(), buf.len());
        errno::clear();
        // SAFETY: every variant gets a buffer readable for n bytes (and a NULL address).
        let r = unsafe {
            if let Some(f) = self.f.write {
                f(fd, p, n)
            } else if let Some(f) = self.f.send {
                f(fd, p, n, libc::MSG_NOSIGNAL)
            } else if let Some(f) = self.f.sendto {
                f(fd, p, n, libc::MSG_NOSIGNAL, std::ptr::null(), 0)
            } else {
                libc::send(fd, p, n, libc::MSG_NOSIGNAL)
            }
        };
        cvt_size(r)
    }

    /// Receives one datagram and its source address bytes: the plug-in's `recvfrom`, else
    /// libc's.
    pub fn recvfrom(&self, fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<u8>)> {
        let f = self.f.recvfrom.unwrap_or(libc::recvfrom);
        let mut a = AddrOut::new();
        let (ap, al) = a.ptrs();
        errno::clear();
        // SAFETY: buf is writable for its length; ap for *al bytes.
        let n = cvt_size(unsafe { f(fd, buf.as_mut_ptr().cast(), buf.len(), 0, ap, al) })?;
        Ok((n, a.bytes()))
    }

    /// Sends one datagram to `to` (`None`: the connected peer): the plug-in's `sendto`, else
    /// libc's.
    pub fn sendto(&self, fd: RawFd, buf: &[u8], to: Option<&[u8]>) -> io::Result<usize> {
        let f = self.f.sendto.unwrap_or(libc::sendto);
        let (tp, tl) = match to {
            Some(a) => (a.as_ptr().cast(), a.len() as libc::socklen_t),
            None => (std::ptr::null(), 0),
        };
        errno::clear();
        // SAFETY: buf is readable for its length; tp is NULL or readable for tl bytes.
        cvt_size(unsafe {
            f(
                fd,
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
                tp,
                tl,
            )
        })
    }
}
