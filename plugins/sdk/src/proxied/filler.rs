//! The connect filler (docs/proxied.md): while a non-blocking `connect` of a proxied stream
//! socket goes on, the application's end of the pair must not poll writable. Whoever serves the
//! pair (a plug-in's event loop, or the host's pump for a plug-in with fds of its own) sets the
//! application end's `SO_SNDBUF` to its minimum and writes filler bytes *from* it until the pair
//! is full; when the connection is made (or fails), it reads them back out of its own end and
//! restores `SO_SNDBUF`, and the application's fd turns writable.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Bounds on the loops below (a pair holds far fewer chunks).
const ROUNDS: usize = 4096;

/// What [`fill`] put in the pair, for [`unfill`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filler {
    /// Filler bytes written from the application's end.
    pub bytes: usize,
    /// The application end's `SO_SNDBUF` before (as the kernel reported it).
    pub sndbuf: i32,
}

fn cvt(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// `recv(fd, buf, MSG_DONTWAIT)`.
fn recv_nb(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is writable for buf.len() bytes.
    cvt(unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    })
}

/// `send(fd, buf, MSG_DONTWAIT | MSG_NOSIGNAL)`.
fn send_nb(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is readable for buf.len() bytes.
    cvt(unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    })
}

fn sndbuf(fd: BorrowedFd<'_>) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are valid for getsockopt to write an int and its length.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&raw mut v).cast(),
            &mut len,
        )
    };
    cvt(r as isize).map(|_| v)
}

fn set_sndbuf(fd: BorrowedFd<'_>, v: i32) -> io::Result<()> {
    // SAFETY: v is a readable int of the length given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&raw const v).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    cvt(r as isize).map(|_| ())
}

/// Makes the application's end `app` unwritable before a non-blocking connect: drops what the
/// application wrote before connecting (from `end`, the server's end: a kernel refuses such
/// writes with `ENOTCONN`), sets `app`'s `SO_SNDBUF` to the minimum and writes filler from it
/// until `EAGAIN`.
pub fn fill(app: BorrowedFd<'_>, end: BorrowedFd<'_>) -> io::Result<Filler> {
    let mut scratch = [0u8; 4096];
    for _ in 0..ROUNDS {
        match recv_nb(end, &mut scratch) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    let before = sndbuf(app)?;
    set_sndbuf(app, 0)?;
    let chunk = [0u8; 512];
    let mut bytes = 0;
    for _ in 0..ROUNDS {
        match send_nb(app, &chunk) {
            Ok(n) => bytes += n,
            Err(_) => break,
        }
    }
    Ok(Filler {
        bytes,
        sndbuf: before,
    })
}

/// Takes the filler back out of `end` (if the pair is still open) and gives `app` (if the
/// application end is still there) its `SO_SNDBUF` back: the application's fd turns writable.
pub fn unfill(app: Option<BorrowedFd<'_>>, end: Option<BorrowedFd<'_>>, f: Filler) {
    if let Some(end) = end {
        let mut left = f.bytes;
        let mut scratch = [0u8; 4096];
        for _ in 0..ROUNDS {
            if left == 0 {
                break;
            }
            let n = left.min(scratch.len());
            match recv_nb(end, &mut scratch[..n]) {
                Ok(0) | Err(_) => break,
                Ok(k) => left -= k,
            }
        }
    }
    if let Some(app) = app {
        // Linux doubles what it is given: give back half of what it reported.
        let _ = set_sndbuf(app, f.sndbuf / 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, OwnedFd};

    fn pair() -> (OwnedFd, OwnedFd) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        (a.into(), b.into())
    }

    fn writable(fd: BorrowedFd<'_>) -> bool {
        let mut p = [libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        }];
        // SAFETY: one valid pollfd, no wait.
        unsafe { libc::poll(p.as_mut_ptr(), 1, 0) };
        p[0].revents & libc::POLLOUT != 0
    }

    #[test]
    fn fill_makes_the_application_end_unwritable_and_unfill_undoes_it() {
        let (app, end) = pair();
        send_nb(app.as_fd(), b"early").unwrap();
        let before = sndbuf(app.as_fd()).unwrap();
        let f = fill(app.as_fd(), end.as_fd()).unwrap();
        assert!(f.bytes > 0);
        assert_eq!(f.sndbuf, before);
        assert!(!writable(app.as_fd()), "filled");
        unfill(Some(app.as_fd()), Some(end.as_fd()), f);
        assert!(writable(app.as_fd()), "unfilled");
        assert_eq!(sndbuf(app.as_fd()).unwrap(), before);
        // Nothing is left in the server's end: neither the early bytes nor the filler.
        let mut b = [0u8; 16];
        assert_eq!(
            recv_nb(end.as_fd(), &mut b).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }
}
