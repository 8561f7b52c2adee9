//! `ioth_X` for the Berkeley data calls X of `ioth.h` (read … sendmsg): same signature, same
//! behaviour as X.
//!
//! Runs in the application, on the data path: one fd-table lookup ([`super::berkeley::kind`]),
//! then the very syscall X on the fd — for native fds, and for proxied fds (docs/proxied.md),
//! whose data moves through the application's end of their pair with plain syscalls. No IPC.
//!
//! The one exception is a proxied datagram socket that is not connected: each record on its pair
//! starts with the address header of [`ioth_proto::dgram`]. There `recvfrom`/`recvmsg` strip it
//! into the address argument, `read`/`readv`/`recv` strip it, `sendto`/`sendmsg` build it from
//! the address argument (`EDESTADDRREQ` without one), and `write`/`writev`/`send`, which have
//! none, fail with `EDESTADDRREQ`, as on an unconnected UDP socket. Ancillary data given to
//! `sendmsg` there is not sent. Sends on proxied datagram sockets never raise `SIGPIPE`.
//!
//! A UDP datagram larger than the largest UDP payload (65507 bytes to an IPv4 address, 65527
//! to an IPv6 one) fails with `EMSGSIZE` on a proxied socket, as on a kernel one, before it
//! reaches the pair (`write`/`writev`/`send`/`sendto`/`sendmsg`; a plain send(2) on the fd
//! cannot be checked, docs/proxied.md).

use std::ffi::{c_int, c_void};

use ioth_plugin_sdk::proxied::header::{self, header_from_sockaddr, HDR_LEN};
use libc::{iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use super::berkeley::{addr_in, addr_out, kind};
use super::fdtable::Kind;
use super::guard;
use crate::socket::Proxy;

/// Most iovecs in one call (`UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

fn last_errno() -> c_int {
    ioth_plugin_sdk::errno::last_or(libc::EIO)
}

/// The caller's iovecs.
///
/// # Safety
/// `iov` is NULL (with `n == 0`) or points at `n` iovecs.
unsafe fn iovecs<'a>(iov: *const iovec, n: c_int) -> Result<&'a [iovec], c_int> {
    if n < 0 || n as usize > IOV_MAX - 1 {
        return Err(if n < 0 { libc::EINVAL } else { libc::EMSGSIZE });
    }
    if n == 0 {
        return Ok(&[]);
    }
    if iov.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: per the contract, iov points at n iovecs.
    Ok(unsafe { std::slice::from_raw_parts(iov, n as usize) })
}

/// The total length of `bufs`.
fn iov_len(bufs: &[iovec]) -> usize {
    bufs.iter().fold(0usize, |n, b| n.saturating_add(b.iov_len))
}

/// What [`recv_framed`] received: the payload's length (the whole payload's with `MSG_TRUNC`),
/// the source's address bytes (`None` at EOF), and the kernel's `msg_flags` and
/// `msg_controllen`.
type Framed = (ssize_t, Option<Vec<u8>>, c_int, size_t);

/// One record of an unconnected proxied datagram socket received into the header and the
/// caller's buffers.
///
/// # Safety
/// Every iovec of `bufs` is writable; `control` is NULL or writable for `controllen` bytes.
unsafe fn recv_framed(
    fd: c_int,
    bufs: &[iovec],
    flags: c_int,
    control: *mut c_void,
    controllen: size_t,
) -> Result<Framed, c_int> {
    let mut hdr = [0u8; HDR_LEN];
    let mut iov = Vec::with_capacity(bufs.len() + 1);
    iov.push(iovec {
        iov_base: hdr.as_mut_ptr().cast(),
        iov_len: HDR_LEN,
    });
    iov.extend_from_slice(bufs);
    // SAFETY: msghdr is plain data; zero is a valid empty header.
    let mut m: msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = iov.as_mut_ptr();
    m.msg_iovlen = iov.len();
    m.msg_control = control;
    m.msg_controllen = controllen;
    // SAFETY: m describes live, writable buffers: hdr and the caller's (contract).
    let n = unsafe { libc::recvmsg(fd, &mut m, flags) };
    if n < 0 {
        return Err(last_errno());
    }
    let (n, from) = header::record(n as usize, &hdr)?;
    Ok((n as ssize_t, from, m.msg_flags, m.msg_controllen))
}

/// One record of an unconnected proxied datagram socket: the header for `to`, then the
/// caller's buffers. The payload bytes sent.
///
/// # Safety
/// Every iovec of `bufs` is readable.
unsafe fn send_framed(
    fd: c_int,
    to: &[u8],
    bufs: &[iovec],
    flags: c_int,
) -> Result<ssize_t, c_int> {
    let hdr = header_from_sockaddr(to)?;
    let mut iov = Vec::with_capacity(bufs.len() + 1);
    iov.push(iovec {
        iov_base: hdr.as_ptr() as *mut c_void,
        iov_len: HDR_LEN,
    });
    iov.extend_from_slice(bufs);
    // SAFETY: msghdr is plain data; zero is a valid empty header.
    let mut m: msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = iov.as_mut_ptr();
    m.msg_iovlen = iov.len();
    // SAFETY: m describes live, readable buffers (the header; the caller's by contract).
    let n = unsafe { libc::sendmsg(fd, &m, flags | libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(last_errno());
    }
    Ok((n as usize).saturating_sub(HDR_LEN) as ssize_t)
}

/// The address a received datagram of a proxied socket that is not framed now reports: the
/// connected peer, an `AF_NETLINK` kernel address, or none (a stream).
fn unframed_source(p: &Proxy) -> Option<Vec<u8>> {
    if let Some(peer) = p.connected_peer() {
        return Some(peer);
    }
    (p.domain() == libc::AF_NETLINK).then(|| {
        let mut nl = vec![0u8; size_of::<libc::sockaddr_nl>()];
        nl[..2].copy_from_slice(&(libc::AF_NETLINK as u16).to_ne_bytes());
        nl
    })
}

/// Reports source `from` into the caller's `(addr, *len)`: the address, or a zero length.
///
/// # Safety
/// `addr` is NULL or writable for `*len` bytes; `len` is NULL or a valid `socklen_t`.
unsafe fn report_source(
    from: Option<Vec<u8>>,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> Result<(), c_int> {
    match from {
        // SAFETY: caller's contract.
        Some(a) => unsafe { addr_out(&a, addr, len) },
        None => {
            if !addr.is_null() && !len.is_null() {
                // SAFETY: len is a valid socklen_t (contract).
                unsafe { *len = 0 };
            }
            Ok(())
        }
    }
}

/// `ssize_t ioth_read(int fd, void *buf, size_t len)`: read(2).
///
/// # Safety
/// `buf` points at `len` writable bytes, as for read(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_read(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t {
    guard(-1, || match kind(fd)? {
        Kind::Proxied(p) if p.framed_now() => {
            let b = [iovec {
                iov_base: buf,
                iov_len: len,
            }];
            // SAFETY: buf is writable for len bytes (caller's contract).
            Ok(unsafe { recv_framed(fd, &b, 0, std::ptr::null_mut(), 0) }?.0)
        }
        // SAFETY: fd is an ioth socket; buf/len are the caller's, as read(2).
        _ => Ok(unsafe { libc::read(fd, buf, len) }),
    })
}

/// `ssize_t ioth_readv(int fd, const struct iovec *iov, int iovcnt)`: readv(2).
///
/// # Safety
/// `iov` points at `iovcnt` iovecs of writable buffers, as for readv(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_readv(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    guard(-1, || match kind(fd)? {
        Kind::Proxied(p) if p.framed_now() => {
            // SAFETY: iov points at iovcnt iovecs of writable buffers (caller's contract).
            let bufs = unsafe { iovecs(iov, iovcnt) }?;
            // SAFETY: as above.
            Ok(unsafe { recv_framed(fd, bufs, 0, std::ptr::null_mut(), 0) }?.0)
        }
        // SAFETY: fd is an ioth socket; iov/iovcnt are the caller's, as readv(2).
        _ => Ok(unsafe { libc::readv(fd, iov, iovcnt) }),
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
    // SAFETY: the caller's contract is recvfrom's without an address.
    unsafe {
        ioth_recvfrom(
            fd,
            buf,
            len,
            flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }
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
        Kind::Proxied(p) => {
            if !from.is_null() && fromlen.is_null() {
                return Err(libc::EFAULT);
            }
            let (n, source) = if p.framed_now() {
                let b = [iovec {
                    iov_base: buf,
                    iov_len: len,
                }];
                // SAFETY: buf is writable for len bytes (caller's contract).
                let (n, source, _, _) =
                    unsafe { recv_framed(fd, &b, flags, std::ptr::null_mut(), 0) }?;
                (n, source)
            } else {
                // SAFETY: fd is an ioth socket; buf/len are the caller's, as recv(2).
                let n = unsafe { libc::recv(fd, buf, len, flags) };
                if n < 0 {
                    return Err(last_errno());
                }
                (n, unframed_source(&p))
            };
            // SAFETY: from/fromlen are NULL or valid (caller's contract).
            unsafe { report_source(source, from, fromlen) }?;
            Ok(n)
        }
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
        Kind::Proxied(p) => {
            if msg.is_null() {
                return Err(libc::EFAULT);
            }
            // SAFETY: msg is a valid msghdr (caller's contract).
            let m = unsafe { &mut *msg };
            let (n, source) = if p.framed_now() {
                // SAFETY: msg_iov points at msg_iovlen writable iovecs (caller's contract).
                let bufs = unsafe { iovecs(m.msg_iov, m.msg_iovlen as c_int) }?;
                // SAFETY: the buffers and the control buffer are the caller's, writable.
                let (n, source, mflags, clen) =
                    unsafe { recv_framed(fd, bufs, flags, m.msg_control, m.msg_controllen) }?;
                m.msg_flags = mflags;
                m.msg_controllen = clen;
                (n, source)
            } else {
                let (name, namelen) = (m.msg_name, m.msg_namelen);
                m.msg_name = std::ptr::null_mut();
                m.msg_namelen = 0;
                // SAFETY: fd is an ioth socket; m is the caller's msghdr, without its name.
                let n = unsafe { libc::recvmsg(fd, m, flags) };
                m.msg_name = name;
                m.msg_namelen = namelen;
                if n < 0 {
                    return Err(last_errno());
                }
                (n, unframed_source(&p))
            };
            // SAFETY: msg_name is NULL or writable for msg_namelen bytes (caller's contract).
            unsafe { report_source(source, m.msg_name.cast(), &mut m.msg_namelen) }?;
            Ok(n)
        }
    })
}

/// `ssize_t ioth_write(int fd, const void *buf, size_t len)`: write(2).
///
/// # Safety
/// `buf` points at `len` readable bytes, as for write(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t {
    guard(-1, || match kind(fd)? {
        Kind::Proxied(p) if p.framed_now() => Err(libc::EDESTADDRREQ),
        Kind::Proxied(p) if p.too_big(len, None) => Err(libc::EMSGSIZE),
        Kind::Proxied(p) if !p.is_stream() => {
            // SAFETY: fd is an ioth socket; buf/len are the caller's, as send(2).
            Ok(unsafe { libc::send(fd, buf, len, libc::MSG_NOSIGNAL) })
        }
        // SAFETY: fd is an ioth socket; buf/len are the caller's, as write(2).
        _ => Ok(unsafe { libc::write(fd, buf, len) }),
    })
}

/// `ssize_t ioth_writev(int fd, const struct iovec *iov, int iovcnt)`: writev(2).
///
/// # Safety
/// `iov` points at `iovcnt` iovecs of readable buffers, as for writev(2).
#[no_mangle]
pub unsafe extern "C" fn ioth_writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    guard(-1, || match kind(fd)? {
        Kind::Proxied(p) if p.framed_now() => Err(libc::EDESTADDRREQ),
        Kind::Proxied(p) if !p.is_stream() => {
            // SAFETY: iov points at iovcnt readable iovecs (caller's contract).
            let bufs = unsafe { iovecs(iov, iovcnt) }?;
            if p.too_big(iov_len(bufs), None) {
                return Err(libc::EMSGSIZE);
            }
            // SAFETY: msghdr is plain data; zero is a valid empty header.
            let mut m: msghdr = unsafe { std::mem::zeroed() };
            m.msg_iov = bufs.as_ptr().cast_mut();
            m.msg_iovlen = bufs.len();
            // SAFETY: fd is an ioth socket; m describes the caller's readable buffers.
            Ok(unsafe { libc::sendmsg(fd, &m, libc::MSG_NOSIGNAL) })
        }
        // SAFETY: fd is an ioth socket; iov/iovcnt are the caller's, as writev(2).
        _ => Ok(unsafe { libc::writev(fd, iov, iovcnt) }),
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
        Kind::Proxied(p) if p.framed_now() => Err(libc::EDESTADDRREQ),
        Kind::Proxied(p) if p.too_big(len, None) => Err(libc::EMSGSIZE),
        Kind::Proxied(p) if !p.is_stream() => {
            // SAFETY: fd is an ioth socket; buf/len are the caller's, as send(2).
            Ok(unsafe { libc::send(fd, buf, len, flags | libc::MSG_NOSIGNAL) })
        }
        // SAFETY: fd is an ioth socket; buf/len are the caller's, as send(2).
        _ => Ok(unsafe { libc::send(fd, buf, len, flags) }),
    })
}

/// `ssize_t ioth_sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr
/// *to, socklen_t tolen)`: sendto(2). On a connected or stream proxied socket `to` is ignored.
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
        Kind::Proxied(p) if p.framed_now() => {
            if to.is_null() {
                return Err(libc::EDESTADDRREQ);
            }
            // SAFETY: to is readable for tolen bytes (caller's contract).
            let a = unsafe { addr_in(to, tolen) }?;
            if p.too_big(len, Some(&a)) {
                return Err(libc::EMSGSIZE);
            }
            let b = [iovec {
                iov_base: buf as *mut c_void,
                iov_len: len,
            }];
            // SAFETY: buf is readable for len bytes (caller's contract).
            unsafe { send_framed(fd, &a, &b, flags) }
        }
        Kind::Proxied(p) if p.too_big(len, None) => Err(libc::EMSGSIZE),
        Kind::Proxied(p) => {
            let flags = if p.is_stream() {
                flags
            } else {
                flags | libc::MSG_NOSIGNAL
            };
            // SAFETY: fd is an ioth socket; buf/len are the caller's, as send(2).
            Ok(unsafe { libc::send(fd, buf, len, flags) })
        }
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
        Kind::Proxied(p) => {
            if msg.is_null() {
                return Err(libc::EFAULT);
            }
            // SAFETY: msg is a valid msghdr (caller's contract).
            let m = unsafe { &*msg };
            if p.framed_now() {
                if m.msg_name.is_null() {
                    return Err(libc::EDESTADDRREQ);
                }
                // SAFETY: msg_name is readable for msg_namelen bytes (caller's contract).
                let a = unsafe { addr_in(m.msg_name.cast(), m.msg_namelen) }?;
                // SAFETY: msg_iov points at msg_iovlen readable iovecs (caller's contract).
                let bufs = unsafe { iovecs(m.msg_iov, m.msg_iovlen as c_int) }?;
                if p.too_big(iov_len(bufs), Some(&a)) {
                    return Err(libc::EMSGSIZE);
                }
                // SAFETY: as above.
                return unsafe { send_framed(fd, &a, bufs, flags) };
            }
            if !p.is_stream() {
                // SAFETY: msg_iov points at msg_iovlen readable iovecs (caller's contract).
                let bufs = unsafe { iovecs(m.msg_iov, m.msg_iovlen as c_int) }?;
                if p.too_big(iov_len(bufs), None) {
                    return Err(libc::EMSGSIZE);
                }
            }
            // The pair is connected: no address (a Unix socket would refuse one).
            let mut copy = *m;
            copy.msg_name = std::ptr::null_mut();
            copy.msg_namelen = 0;
            let flags = if p.is_stream() {
                flags
            } else {
                flags | libc::MSG_NOSIGNAL
            };
            // SAFETY: fd is an ioth socket; copy is the caller's msghdr without its name.
            Ok(unsafe { libc::sendmsg(fd, &copy, flags) })
        }
    })
}
