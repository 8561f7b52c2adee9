//! `ioth::Socket` helpers for the proxied-fd tests: bounded poll waits, TCP listeners,
//! connections and accepts that never hang (every wait is bounded by [`WAIT`]).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use ioth::{Socket, Stack};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::dad::retry_unavailable;
use crate::stacks::domain;

/// Upper bound of any single wait.
pub const WAIT: Duration = Duration::from_secs(30);

/// Waits (bounded) until `fd` reports one of `ev`; the events, empty if the wait ran out.
pub fn wait_for(fd: BorrowedFd<'_>, ev: PollFlags, bound: Duration) -> PollFlags {
    let deadline = Instant::now() + bound;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut p = [PollFd::new(fd, ev)];
        match poll(
            &mut p,
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(n) if n > 0 => return p[0].revents().unwrap_or(PollFlags::empty()),
            Ok(_) => return PollFlags::empty(),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// Whether `fd` reports one of `ev` right now.
pub fn ready_now(fd: BorrowedFd<'_>, ev: PollFlags) -> bool {
    wait_for(fd, ev, Duration::ZERO).intersects(ev)
}

/// A TCP socket of `stack` in the family of `a`.
pub fn stream(stack: &Stack, a: &SocketAddr) -> Socket {
    stack
        .msocket(domain(a), libc::SOCK_STREAM, 0)
        .expect("msocket")
}

/// A TCP listener of `stack` at `at` (SO_REUSEADDR, backlog 64).
pub fn listener(stack: &Stack, at: SocketAddr) -> Socket {
    listener_backlog(stack, at, 64)
}

/// A TCP listener of `stack` at `at` (SO_REUSEADDR) with `backlog`; the bind is retried while
/// `at` is in duplicate address detection.
pub fn listener_backlog(stack: &Stack, at: SocketAddr, backlog: i32) -> Socket {
    let l = stream(stack, &at);
    l.set_reuse_address(true).expect("SO_REUSEADDR");
    retry_unavailable(|| l.bind(&at)).unwrap_or_else(|e| panic!("bind {at}: {e}"));
    l.listen(backlog).expect("listen");
    l
}

/// A connection from `stack` to `to`, waited for at most [`WAIT`] (a non-blocking connect, then
/// POLLOUT and SO_ERROR); blocking afterwards, with read and write timeouts. A connect that fails
/// with `EADDRNOTAVAIL` (no usable source address yet: duplicate address detection) is retried
/// on a fresh socket.
pub fn try_connect(stack: &Stack, to: SocketAddr) -> io::Result<Socket> {
    retry_unavailable(|| connect_once(stack, to))
}

/// One attempt of [`try_connect`].
fn connect_once(stack: &Stack, to: SocketAddr) -> io::Result<Socket> {
    let c = stream(stack, &to);
    c.set_nonblocking(true)?;
    match c.connect(&to) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            let ev = wait_for(c.as_fd(), PollFlags::POLLOUT, WAIT);
            assert!(!ev.is_empty(), "connect {to}: not done within {WAIT:?}");
            if let Some(e) = c.take_error()? {
                return Err(e);
            }
        }
        Err(e) => return Err(e),
    }
    c.set_nonblocking(false)?;
    c.set_read_timeout(Some(WAIT))?;
    c.set_write_timeout(Some(WAIT))?;
    Ok(c)
}

/// [`try_connect`]; panics if the connection fails.
pub fn connect(stack: &Stack, to: SocketAddr) -> Socket {
    try_connect(stack, to).unwrap_or_else(|e| panic!("connect {to}: {e}"))
}

/// Accepts one connection, waiting at most [`WAIT`] for it; the connection has read and write
/// timeouts of [`WAIT`].
pub fn accept(l: &Socket) -> (Socket, SocketAddr) {
    let ev = wait_for(l.as_fd(), PollFlags::POLLIN, WAIT);
    assert!(
        ev.contains(PollFlags::POLLIN),
        "no connection within {WAIT:?}"
    );
    let (c, peer) = l.accept().expect("accept after POLLIN");
    c.set_read_timeout(Some(WAIT)).unwrap();
    c.set_write_timeout(Some(WAIT)).unwrap();
    (c, peer)
}
