//! The few raw system calls of the client that no safe wrapper covers.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

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
