//! `ioth_X` for every Berkeley call X of `ioth.h`: same signature, same behaviour as X.
//!
//! Runs in the application, on the data path. Each call looks its fd up once in the fd table
//! ([`fdtable::kind`]): an fd ioth did not create fails with `EBADF` and is not touched; a
//! [`Kind::Native`] fd (a kernel socket the host handed over) gets the very syscall X, so errno
//! and return value are the kernel's. No allocation and no IPC happen on that path (`accept`
//! adds one table entry). A later fd kind, e.g. sockets proxied by their host, adds its own arm to
//! the `match` of each call.
//!
//! `close` is in the module root ([`super::ioth_close`]): it releases the fd's hold on its stack.

use std::ffi::{c_int, c_long, c_ulong, c_void};

use libc::{iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use super::fdtable::{self, Kind};
use super::guard;

/// The kind of an ioth fd, or `EBADF` if ioth did not create it.
fn kind(fd: c_int) -> Result<Kind, c_int> {
    fdtable::kind(fd).ok_or(libc::EBADF)
}

/// Registers `newfd`, just made from the ioth fd `fd` (by accept or dup), as a socket of the same
/// stack. `newfd < 0` (the call failed) is passed through with its errno. If `fd` left the table
/// meanwhile (closed by another thread), `newfd` has no stack to belong to: it is closed and the
/// call fails with `EBADF`.
fn register_born_of(fd: c_int, newfd: c_int) -> Result<c_int, c_int> {
    if newfd < 0 {
        return Ok(newfd);
    }
    match fdtable::another_hold(fd) {
        Some(hold) => {
            fdtable::insert(newfd, hold);
            Ok(newfd)
        }
        None => {
            // SAFETY: newfd was created by this call and has not been handed to anyone yet.
            unsafe { libc::close(newfd) };
            Err(libc::EBADF)
        }
    }
}

/// `int ioth_bind(int fd, const struct sockaddr *addr, socklen_t addrlen)`: bind(2).
///
/// # Safety
/// `addr` points at `addrlen` readable bytes, as for bind(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_bind(fd: c_int, addr: *const sockaddr, addrlen: socklen_t) -> c_int {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; addr/addrlen are the caller's, checked by the kernel.
        Kind::Native => Ok(unsafe { libc::bind(fd, addr, addrlen) }),
    })
}

/// `int ioth_connect(int fd, const struct sockaddr *addr, socklen_t addrlen)`: connect(2).
///
/// # Safety
/// `addr` points at `addrlen` readable bytes, as for connect(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_connect(
    fd: c_int,
    addr: *const sockaddr,
    addrlen: socklen_t,
) -> c_int {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; addr/addrlen are the caller's, checked by the kernel.
        Kind::Native => Ok(unsafe { libc::connect(fd, addr, addrlen) }),
    })
}

/// `int ioth_listen(int fd, int backlog)`: listen(2).
#[no_mangle]
pub extern "C" fn ioth_listen(fd: c_int, backlog: c_int) -> c_int {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; plain integers.
        Kind::Native => Ok(unsafe { libc::listen(fd, backlog) }),
    })
}

/// `int ioth_accept(int fd, struct sockaddr *addr, socklen_t *addrlen)`: accept(2). The new fd is
/// an ioth fd of the same stack (it holds the stack open until `ioth_close`).
///
/// # Safety
/// `addr` and `addrlen` are NULL or valid as for accept(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_accept(
    fd: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> c_int {
    guard(-1, || match kind(fd)? {
        Kind::Native => {
            // SAFETY: fd is an ioth kernel socket; addr/addrlen are the caller's, as accept(2).
            let newfd = unsafe { libc::accept(fd, addr, addrlen) };
            register_born_of(fd, newfd)
        }
    })
}

/// `int ioth_getsockname(int fd, struct sockaddr *addr, socklen_t *addrlen)`: getsockname(2).
///
/// # Safety
/// `addr` and `addrlen` are valid as for getsockname(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_getsockname(
    fd: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> c_int {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; addr/addrlen are the caller's, checked by the kernel.
        Kind::Native => Ok(unsafe { libc::getsockname(fd, addr, addrlen) }),
    })
}

/// `int ioth_getpeername(int fd, struct sockaddr *addr, socklen_t *addrlen)`: getpeername(2).
///
/// # Safety
/// `addr` and `addrlen` are valid as for getpeername(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_getpeername(
    fd: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> c_int {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; addr/addrlen are the caller's, checked by the kernel.
        Kind::Native => Ok(unsafe { libc::getpeername(fd, addr, addrlen) }),
    })
}

/// `int ioth_setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen)`:
/// setsockopt(2).
///
/// # Safety
/// `optval` points at `optlen` readable bytes, as for setsockopt(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_setsockopt(
    fd: c_int,
    level: c_int,
    optname: c_int,
    optval: *const c_void,
    optlen: socklen_t,
) -> c_int {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; optval/optlen are the caller's, as setsockopt(2).
        Kind::Native => Ok(unsafe { libc::setsockopt(fd, level, optname, optval, optlen) }),
    })
}

/// `int ioth_getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen)`:
/// getsockopt(2).
///
/// # Safety
/// `optval` and `optlen` are valid as for getsockopt(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_getsockopt(
    fd: c_int,
    level: c_int,
    optname: c_int,
    optval: *mut c_void,
    optlen: *mut socklen_t,
) -> c_int {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; optval/optlen are the caller's, as getsockopt(2).
        Kind::Native => Ok(unsafe { libc::getsockopt(fd, level, optname, optval, optlen) }),
    })
}

/// `int ioth_shutdown(int fd, int how)`: shutdown(2).
#[no_mangle]
pub extern "C" fn ioth_shutdown(fd: c_int, how: c_int) -> c_int {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; plain integers.
        Kind::Native => Ok(unsafe { libc::shutdown(fd, how) }),
    })
}

/// `int ioth_ioctl(int fd, unsigned long cmd, void *argp)`: ioctl(2).
///
/// # Safety
/// `argp` is what request `cmd` expects, as for ioctl(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_ioctl(fd: c_int, cmd: c_ulong, argp: *mut c_void) -> c_int {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; argp is the caller's, as ioctl(2) with cmd wants.
        Kind::Native => Ok(unsafe { libc::ioctl(fd, cmd, argp) }),
    })
}

/// `int ioth_fcntl(int fd, int cmd, long val)`: fcntl(2). The fd `F_DUPFD`/`F_DUPFD_CLOEXEC`
/// make is an ioth fd of the same stack, like one from `ioth_accept`.
///
/// # Safety
/// When `cmd` takes a pointer, `val` carries a valid one, as for fcntl(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_fcntl(fd: c_int, cmd: c_int, val: c_long) -> c_int {
    guard(-1, || match kind(fd)? {
        Kind::Native => {
            // SAFETY: fd is an ioth kernel socket; val is the caller's third argument of
            // fcntl(2), passed in the same register whether it is an integer or a pointer.
            let r = unsafe { libc::fcntl(fd, cmd, val) };
            match cmd {
                libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => register_born_of(fd, r),
                _ => Ok(r),
            }
        }
    })
}

/// `ssize_t ioth_read(int fd, void *buf, size_t len)`: read(2).
///
/// # Safety
/// `buf` points at `len` writable bytes, as for read(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_read(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; buf/len are the caller's, as read(2).
        Kind::Native => Ok(unsafe { libc::read(fd, buf, len) }),
    })
}

/// `ssize_t ioth_readv(int fd, const struct iovec *iov, int iovcnt)`: readv(2).
///
/// # Safety
/// `iov` points at `iovcnt` iovecs of writable buffers, as for readv(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_readv(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; iov/iovcnt are the caller's, as readv(2).
        Kind::Native => Ok(unsafe { libc::readv(fd, iov, iovcnt) }),
    })
}

/// `ssize_t ioth_recv(int fd, void *buf, size_t len, int flags)`: recv(2).
///
/// # Safety
/// `buf` points at `len` writable bytes, as for recv(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_recv(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
) -> ssize_t {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; buf/len are the caller's, as recv(2).
        Kind::Native => Ok(unsafe { libc::recv(fd, buf, len, flags) }),
    })
}

/// `ssize_t ioth_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from,
/// socklen_t *fromlen)`: recvfrom(2).
///
/// # Safety
/// `buf` points at `len` writable bytes; `from`/`fromlen` are NULL or valid, as for recvfrom(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    from: *mut sockaddr,
    fromlen: *mut socklen_t,
) -> ssize_t {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; the pointers are the caller's, as recvfrom(2).
        Kind::Native => Ok(unsafe { libc::recvfrom(fd, buf, len, flags, from, fromlen) }),
    })
}

/// `ssize_t ioth_recvmsg(int fd, struct msghdr *msg, int flags)`: recvmsg(2).
///
/// # Safety
/// `msg` is a valid `msghdr`, as for recvmsg(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; msg is the caller's, as recvmsg(2).
        Kind::Native => Ok(unsafe { libc::recvmsg(fd, msg, flags) }),
    })
}

/// `ssize_t ioth_write(int fd, const void *buf, size_t len)`: write(2).
///
/// # Safety
/// `buf` points at `len` readable bytes, as for write(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; buf/len are the caller's, as write(2).
        Kind::Native => Ok(unsafe { libc::write(fd, buf, len) }),
    })
}

/// `ssize_t ioth_writev(int fd, const struct iovec *iov, int iovcnt)`: writev(2).
///
/// # Safety
/// `iov` points at `iovcnt` iovecs of readable buffers, as for writev(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; iov/iovcnt are the caller's, as writev(2).
        Kind::Native => Ok(unsafe { libc::writev(fd, iov, iovcnt) }),
    })
}

/// `ssize_t ioth_send(int fd, const void *buf, size_t len, int flags)`: send(2).
///
/// # Safety
/// `buf` points at `len` readable bytes, as for send(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_send(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
) -> ssize_t {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; buf/len are the caller's, as send(2).
        Kind::Native => Ok(unsafe { libc::send(fd, buf, len, flags) }),
    })
}

/// `ssize_t ioth_sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr
/// *to, socklen_t tolen)`: sendto(2).
///
/// # Safety
/// `buf` points at `len` readable bytes; `to` is NULL or points at `tolen` bytes, as for
/// sendto(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    to: *const sockaddr,
    tolen: socklen_t,
) -> ssize_t {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; the pointers are the caller's, as sendto(2).
        Kind::Native => Ok(unsafe { libc::sendto(fd, buf, len, flags, to, tolen) }),
    })
}

/// `ssize_t ioth_sendmsg(int fd, const struct msghdr *msg, int flags)`: sendmsg(2).
///
/// # Safety
/// `msg` is a valid `msghdr`, as for sendmsg(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; msg is the caller's, as sendmsg(2).
        Kind::Native => Ok(unsafe { libc::sendmsg(fd, msg, flags) }),
    })
}
