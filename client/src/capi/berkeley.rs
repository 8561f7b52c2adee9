//! `ioth_X` for the Berkeley control calls X of `ioth.h` (bind … fcntl): same signature, same
//! behaviour as X. The data calls (read … sendmsg) are in [`super::data`].
//!
//! Runs in the application. Each call looks its fd up once in the fd table ([`fdtable::kind`]):
//! an fd ioth did not create fails with `EBADF` and is not touched. A [`Kind::Native`] fd (a
//! kernel socket the host handed over) gets the very syscall X, so errno and return value are the
//! kernel's; no allocation and no IPC happen on that path (`accept` adds one table entry).
//!
//! A [`Kind::Proxied`] fd (docs/proxied.md) sends the call to its stack's host, with the
//! blocking rules of [`crate::socket::Proxy`]: `connect` and `accept` wait (on the fd itself, no
//! lock held) unless the fd has `O_NONBLOCK`. `ioctl` and `fcntl` act on the fd itself (its
//! `O_NONBLOCK`, its `FIONREAD`), as do the options `SO_RCVTIMEO`/`SO_SNDTIMEO`. Argument
//! checks come first, as the kernel's: a NULL address is `EFAULT`, an address longer than a
//! `sockaddr_storage` or shorter than its family `EINVAL`.
//!
//! `close` is in the module root ([`super::ioth_close`]): it releases the fd's hold on its stack.

use std::ffi::{c_int, c_long, c_ulong, c_void};
use std::os::fd::IntoRawFd;

use ioth_proto::{MAX_SOCKADDR, MAX_SOCKOPT};
use libc::{sockaddr, socklen_t};

use super::fdtable::{self, Kind};
use super::{errno_of, guard};
use crate::sys::AppFd;

/// The kind of an ioth fd, or `EBADF` if ioth did not create it.
pub(super) fn kind(fd: c_int) -> Result<Kind, c_int> {
    fdtable::kind(fd).ok_or(libc::EBADF)
}

/// The kind of an ioth fd and the fd as a typed handle, or `EBADF` if ioth did not create it.
fn lookup(fd: c_int) -> Result<(AppFd, Kind), c_int> {
    fdtable::lookup(fd).ok_or(libc::EBADF)
}

/// The bytes of a caller's address argument.
///
/// # Safety
/// `addr` is NULL or readable for `len` bytes.
pub(super) unsafe fn addr_in(addr: *const sockaddr, len: socklen_t) -> Result<Vec<u8>, c_int> {
    if addr.is_null() {
        return Err(libc::EFAULT);
    }
    let len = len as usize;
    if !(2..=MAX_SOCKADDR).contains(&len) {
        return Err(libc::EINVAL);
    }
    // SAFETY: per the contract, addr is readable for len bytes.
    Ok(unsafe { std::slice::from_raw_parts(addr.cast::<u8>(), len) }.to_vec())
}

/// Copies address bytes `v` to a caller's `(addr, *len)` pair as the kernel does: at most `*len`
/// bytes, and `*len` set to the full length. Nothing when `addr` is NULL.
///
/// # Safety
/// `addr` is NULL or writable for `*len` bytes; `len` is NULL or a valid `socklen_t`.
pub(super) unsafe fn addr_out(
    v: &[u8],
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> Result<(), c_int> {
    if addr.is_null() {
        return Ok(());
    }
    if len.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: len is a valid socklen_t (contract).
    let room = unsafe { *len } as usize;
    let n = room.min(v.len());
    // SAFETY: addr is writable for room >= n bytes; v is readable for n; distinct memory.
    unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), addr.cast::<u8>(), n) };
    // SAFETY: as above.
    unsafe { *len = v.len() as socklen_t };
    Ok(())
}

/// Registers `newfd`, just made from the ioth fd `fd` (by accept or dup), as a socket of the same
/// stack; a dup of a proxied fd is the same socket (`proxy` is that of `fd`), an accepted one a
/// new socket (`proxy` given). `newfd < 0` (the call failed) is passed through with its errno. If
/// `fd` left the table meanwhile (closed by another thread), `newfd` has no stack to belong to:
/// it is closed and the call fails with `EBADF`.
fn register_born_of(
    fd: c_int,
    newfd: c_int,
    accepted: Option<std::sync::Arc<crate::socket::Proxy>>,
) -> Result<c_int, c_int> {
    if newfd < 0 {
        return Ok(newfd);
    }
    match fdtable::same_socket(fd) {
        Some((hold, proxy)) => {
            fdtable::insert(newfd, hold, accepted.or(proxy));
            Ok(newfd)
        }
        None => {
            // SAFETY: newfd was created by this call and has not been handed to anyone yet.
            unsafe { libc::close(newfd) };
            Err(libc::EBADF)
        }
    }
}

/// Options that live on a proxied socket's fd itself, not in the stack.
fn fd_option(level: c_int, name: c_int) -> bool {
    level == libc::SOL_SOCKET && matches!(name, libc::SO_RCVTIMEO | libc::SO_SNDTIMEO)
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
        Kind::Proxied(p) => {
            // SAFETY: addr is readable for addrlen bytes (caller's contract).
            let a = unsafe { addr_in(addr, addrlen) }?;
            p.bind(&a).map_err(errno_of)?;
            Ok(0)
        }
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
    guard(-1, || match lookup(fd)? {
        // SAFETY: fd is an ioth kernel socket; addr/addrlen are the caller's, checked by the kernel.
        (_, Kind::Native) => Ok(unsafe { libc::connect(fd, addr, addrlen) }),
        (app, Kind::Proxied(p)) => {
            // SAFETY: addr is readable for addrlen bytes (caller's contract).
            let a = unsafe { addr_in(addr, addrlen) }?;
            p.connect(app.as_fd(), &a).map_err(errno_of)?;
            Ok(0)
        }
    })
}

/// `int ioth_listen(int fd, int backlog)`: listen(2).
#[no_mangle]
pub extern "C" fn ioth_listen(fd: c_int, backlog: c_int) -> c_int {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; plain integers.
        Kind::Native => Ok(unsafe { libc::listen(fd, backlog) }),
        Kind::Proxied(p) => {
            p.listen(backlog).map_err(errno_of)?;
            Ok(0)
        }
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
    guard(-1, || match lookup(fd)? {
        (_, Kind::Native) => {
            // SAFETY: fd is an ioth kernel socket; addr/addrlen are the caller's, as accept(2).
            let newfd = unsafe { libc::accept(fd, addr, addrlen) };
            register_born_of(fd, newfd, None)
        }
        (app, Kind::Proxied(p)) => {
            if !addr.is_null() && addrlen.is_null() {
                return Err(libc::EFAULT);
            }
            let (nfd, np, peer) = p.accept(app.as_fd()).map_err(errno_of)?;
            // As accept(2): no close-on-exec (it came with one, from SCM_RIGHTS).
            let _ = nix::fcntl::fcntl(
                &nfd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            );
            let newfd = register_born_of(fd, nfd.into_raw_fd(), Some(np))?;
            // SAFETY: addr/addrlen are NULL or valid (caller's contract; NULL length refused above).
            unsafe { addr_out(&peer, addr, addrlen) }?;
            Ok(newfd)
        }
    })
}

/// `getsockname`/`getpeername` of a proxied fd into the caller's buffer.
///
/// # Safety
/// `addr` and `addrlen` are valid as for getsockname(2).
unsafe fn proxied_name(
    p: &crate::socket::Proxy,
    peer: bool,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> Result<c_int, c_int> {
    if addr.is_null() || addrlen.is_null() {
        return Err(libc::EFAULT);
    }
    let v = p.name(peer).map_err(errno_of)?;
    // SAFETY: caller's contract.
    unsafe { addr_out(&v, addr, addrlen) }?;
    Ok(0)
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
        // SAFETY: addr/addrlen are the caller's, valid as for getsockname(2).
        Kind::Proxied(p) => unsafe { proxied_name(&p, false, addr, addrlen) },
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
        // SAFETY: addr/addrlen are the caller's, valid as for getpeername(2).
        Kind::Proxied(p) => unsafe { proxied_name(&p, true, addr, addrlen) },
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
        Kind::Proxied(p) if !fd_option(level, optname) => {
            let len = optlen as usize;
            if len > MAX_SOCKOPT {
                return Err(libc::EINVAL);
            }
            let v: &[u8] = match (optval.is_null(), len) {
                (_, 0) => &[],
                (true, _) => return Err(libc::EFAULT),
                // SAFETY: optval is readable for optlen bytes (caller's contract).
                (false, _) => unsafe { std::slice::from_raw_parts(optval.cast::<u8>(), len) },
            };
            p.setsockopt(level, optname, v).map_err(errno_of)?;
            Ok(0)
        }
        // SAFETY: fd is an ioth socket (a kernel socket, or a proxied fd's own option);
        // optval/optlen are the caller's, as setsockopt(2).
        _ => Ok(unsafe { libc::setsockopt(fd, level, optname, optval, optlen) }),
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
        Kind::Proxied(p) if !fd_option(level, optname) => {
            if optlen.is_null() {
                return Err(libc::EFAULT);
            }
            // SAFETY: optlen is a valid socklen_t (caller's contract).
            let room = (unsafe { *optlen } as usize).min(MAX_SOCKOPT);
            if optval.is_null() && room > 0 {
                return Err(libc::EFAULT);
            }
            let v = p.getsockopt(level, optname, room).map_err(errno_of)?;
            let n = v.len().min(room);
            // SAFETY: optval is writable for *optlen >= n bytes; v is readable for n.
            unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), optval.cast::<u8>(), n) };
            // SAFETY: as above.
            unsafe { *optlen = n as socklen_t };
            Ok(0)
        }
        // SAFETY: fd is an ioth socket (a kernel socket, or a proxied fd's own option);
        // optval/optlen are the caller's, as getsockopt(2).
        _ => Ok(unsafe { libc::getsockopt(fd, level, optname, optval, optlen) }),
    })
}

/// `int ioth_shutdown(int fd, int how)`: shutdown(2).
#[no_mangle]
pub extern "C" fn ioth_shutdown(fd: c_int, how: c_int) -> c_int {
    guard(-1, || match kind(fd)? {
        // SAFETY: fd is an ioth kernel socket; plain integers.
        Kind::Native => Ok(unsafe { libc::shutdown(fd, how) }),
        Kind::Proxied(p) => {
            p.shutdown(how).map_err(errno_of)?;
            Ok(0)
        }
    })
}

/// `int ioth_ioctl(int fd, unsigned long cmd, void *argp)`: ioctl(2), on the fd itself for both
/// kinds (`FIONREAD` of an unconnected proxied datagram socket leaves out the address header).
///
/// # Safety
/// `argp` is what request `cmd` expects, as for ioctl(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_ioctl(fd: c_int, cmd: c_ulong, argp: *mut c_void) -> c_int {
    guard(-1, || {
        let k = kind(fd)?;
        // SAFETY: fd is an ioth socket; argp is the caller's, as ioctl(2) with cmd wants.
        let r = unsafe { libc::ioctl(fd, cmd, argp) };
        if let Kind::Proxied(p) = k {
            if r == 0 && cmd == libc::FIONREAD && !argp.is_null() && p.framed_now() {
                // SAFETY: FIONREAD wrote an int at argp (it succeeded).
                let n = unsafe { &mut *argp.cast::<c_int>() };
                *n = n
                    .saturating_sub(ioth_plugin_sdk::proxied::header::HDR_LEN as c_int)
                    .max(0);
            }
        }
        Ok(r)
    })
}

/// `int ioth_fcntl(int fd, int cmd, long val)`: fcntl(2), on the fd itself for both kinds. The
/// fd `F_DUPFD`/`F_DUPFD_CLOEXEC` make is an ioth fd of the same stack (of a proxied fd: the
/// same socket, closed on the host when its last fd is `ioth_close`d).
///
/// # Safety
/// When `cmd` takes a pointer, `val` carries a valid one, as for fcntl(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_fcntl(fd: c_int, cmd: c_int, val: c_long) -> c_int {
    guard(-1, || {
        kind(fd)?;
        // SAFETY: fd is an ioth socket; val is the caller's third argument of fcntl(2), passed
        // in the same register whether it is an integer or a pointer.
        let r = unsafe { libc::fcntl(fd, cmd, val) };
        match cmd {
            libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => register_born_of(fd, r, None),
            _ => Ok(r),
        }
    })
}
