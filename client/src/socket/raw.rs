//! The raw socket calls of [`super::Socket`] that no safe wrapper covers: socket options as
//! bytes, and one record sent or received in two parts (the datagram address header and the
//! payload). Runs in the application.
#![allow(unsafe_code)]

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd};

use std::net::SocketAddr;

use nix::sys::socket::{recvmsg, sendmsg, MsgFlags};
use socket2::SockAddr;

/// Longest socket address handled.
const MAX_ADDR: usize = ioth_proto::MAX_SOCKADDR;

/// The bytes of `a` (its `len()` first bytes).
pub(crate) fn sockaddr_bytes(a: &SockAddr) -> Vec<u8> {
    let len = (a.len() as usize).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: a SockAddr holds a sockaddr_storage, of which its first len() bytes are the
    // initialised address; len is bounded by the storage's size.
    unsafe { std::slice::from_raw_parts(a.as_ptr().cast::<u8>(), len) }.to_vec()
}

/// The socket address of raw bytes `b`, if they are a `sockaddr_in` or `sockaddr_in6`.
pub(crate) fn socket_addr(b: &[u8]) -> Option<SocketAddr> {
    sock_addr(b).and_then(|a| a.as_socket())
}

/// Raw `sockaddr` bytes `b` (of any family) as a [`SockAddr`]; `None` if longer than a
/// `sockaddr_storage`.
pub(crate) fn sock_addr(b: &[u8]) -> Option<SockAddr> {
    if b.len() > size_of::<libc::sockaddr_storage>() {
        return None;
    }
    // SAFETY: try_init hands a zeroed sockaddr_storage and its length; we write b.len() bytes
    // (at most the storage's size, checked above) and set the length to match.
    let r = unsafe {
        SockAddr::try_init(|storage, len| {
            std::ptr::copy_nonoverlapping(b.as_ptr(), storage.cast::<u8>(), b.len());
            *len = b.len() as libc::socklen_t;
            Ok(())
        })
    };
    r.ok().map(|((), a)| a)
}

/// `recvfrom(2)` on a kernel socket: the length and the source's address bytes.
pub(crate) fn recv_from(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<u8>)> {
    let mut a = [0u8; MAX_ADDR];
    let mut l = MAX_ADDR as libc::socklen_t;
    // SAFETY: buf is writable for its length, a for l bytes; l is a live socklen_t.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            a.as_mut_ptr().cast(),
            &mut l,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((n as usize, a[..(l as usize).min(MAX_ADDR)].to_vec()))
}

/// `connect(fd, addr)` with raw address bytes (connect(2)).
pub(crate) fn connect(fd: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
    // SAFETY: addr is readable for its length, passed as addrlen; fd is open (borrowed).
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            addr.as_ptr().cast(),
            addr.len() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `setsockopt(fd, level, name, value)` (setsockopt(2)).
pub(crate) fn setsockopt(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    value: &[u8],
) -> io::Result<()> {
    // SAFETY: value is readable for its length, passed as optlen; fd is open (borrowed).
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `getsockopt(fd, level, name)` with room for `len` bytes: the value's bytes (getsockopt(2)).
pub(crate) fn getsockopt(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    len: usize,
) -> io::Result<Vec<u8>> {
    let mut v = vec![0u8; len];
    let mut l = len as libc::socklen_t;
    // SAFETY: v is writable for l bytes; l is a live socklen_t; fd is open (borrowed).
    let r = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, v.as_mut_ptr().cast(), &mut l) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    v.truncate((l as usize).min(len));
    Ok(v)
}

/// One record made of `head` then `body` (sendmsg(2)); the bytes sent, `head` included.
pub(crate) fn send_parts(
    fd: BorrowedFd<'_>,
    head: &[u8],
    body: &[u8],
    flags: MsgFlags,
) -> io::Result<usize> {
    let iov = [IoSlice::new(head), IoSlice::new(body)];
    loop {
        match sendmsg::<()>(fd.as_raw_fd(), &iov, &[], flags, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return r.map_err(Into::into),
        }
    }
}

/// One record received into `head` then `body` (recvmsg(2)); its length, `head` included (the
/// whole record's with `MSG_TRUNC`).
pub(crate) fn recv_parts(
    fd: BorrowedFd<'_>,
    head: &mut [u8],
    body: &mut [u8],
    flags: MsgFlags,
) -> io::Result<usize> {
    let mut iov = [IoSliceMut::new(head), IoSliceMut::new(body)];
    loop {
        match recvmsg::<()>(fd.as_raw_fd(), &mut iov, None, flags) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return r.map(|m| m.bytes).map_err(Into::into),
        }
    }
}
