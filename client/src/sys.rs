//! The few raw system calls of the client that no safe wrapper covers, and [`AppFd`], the C
//! program's fd number borrowed for one call.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// socket(2) on the process's own kernel stack, flags in `ty` honoured as given.
pub(crate) fn socket(domain: i32, ty: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes plain integers and returns a new fd or -1.
    let fd = unsafe { libc::socket(domain, ty, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is new and has no other owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An fd number of the C program that the C ABI's fd table knows: an ioth socket the program
/// holds open for the call it passed it to. Made only by `capi::fdtable::lookup`, after the
/// lookup found it; borrowed for that one call.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "capi"), allow(dead_code))] // used by the C ABI only
pub(crate) struct AppFd(RawFd);

#[cfg_attr(not(feature = "capi"), allow(dead_code))] // used by the C ABI only
impl AppFd {
    /// `fd`, just found in the fd table.
    pub(crate) fn registered(fd: RawFd) -> AppFd {
        AppFd(fd)
    }

    /// The fd, borrowed for the call.
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd is in the ioth table: a socket the C program holds open for the
        // duration of the call it passed it to (closing it meanwhile is the program's error, as
        // with any syscall, and gives EBADF from the calls made on it).
        unsafe { BorrowedFd::borrow_raw(self.0) }
    }
}
