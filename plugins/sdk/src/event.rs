//! An eventfd to wake a plug-in's own threads (an event loop, pumps): one signals, the others
//! poll it for `POLLIN`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// An eventfd (`EFD_CLOEXEC | EFD_NONBLOCK`).
#[derive(Debug)]
pub struct Event(OwnedFd);

impl Event {
    /// A new, unsignalled event.
    pub fn new() -> io::Result<Event> {
        // SAFETY: eventfd takes integers and returns a new fd or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is new and owned by nobody else.
        Ok(Event(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the event readable until [`Event::drain`] (never blocks: the counter saturates
    /// long after any use).
    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes the 8 bytes of a live u64, as eventfd(2) requires.
        unsafe { libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    /// Resets the event to unsignalled.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads into a live u64 of 8 bytes; non-blocking.
        unsafe { libc::read(self.0.as_raw_fd(), (&raw mut v).cast(), 8) };
    }
}

impl AsFd for Event {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(e: &Event) -> bool {
        let mut p = [libc::pollfd {
            fd: e.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd, no wait.
        unsafe { libc::poll(p.as_mut_ptr(), 1, 0) };
        p[0].revents & libc::POLLIN != 0
    }

    #[test]
    fn signal_and_drain() {
        let e = Event::new().unwrap();
        assert!(!readable(&e));
        e.signal();
        e.signal();
        assert!(readable(&e));
        e.drain();
        assert!(!readable(&e));
    }
}
