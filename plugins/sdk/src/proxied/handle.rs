//! The handle of a proxied socket.
#![allow(unsafe_code)]

use std::os::fd::{BorrowedFd, IntoRawFd, OwnedFd, RawFd};

/// A proxied socket as the host and its plug-in name it: the fd number, in the host process,
/// of the application's end of the socket's pair. The plug-in creates that end and hands it to
/// the host ([`Handle::give`]); the host sends a copy to the application, keeps the number open
/// and passes it to every control call, and closes it only after the plug-in's `close`. So a
/// handle the plug-in has not been told to close names an open fd (see [`Handle::borrow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(RawFd);

impl Handle {
    /// The handle the C ABI passes as `fd`.
    pub fn from_raw(fd: RawFd) -> Handle {
        Handle(fd)
    }

    /// Hands the application's end of a new socket to the host: its fd number is the handle
    /// (the host owns the fd from now on).
    pub fn give(app: OwnedFd) -> Handle {
        Handle(app.into_raw_fd())
    }

    /// The fd number, for the C ABI.
    pub fn raw(self) -> RawFd {
        self.0
    }

    /// The application's end, borrowed.
    ///
    /// # Safety
    /// The host has not yet been answered a `close` of this handle, and the borrow ends before
    /// the plug-in could answer one (for instance: it is tied to a lock that `close` takes).
    pub unsafe fn borrow<'a>(self) -> BorrowedFd<'a> {
        // SAFETY: the caller's contract: the host keeps the fd open until after `close`.
        unsafe { BorrowedFd::borrow_raw(self.0) }
    }
}

impl std::fmt::Display for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "handle {}", self.0)
    }
}
