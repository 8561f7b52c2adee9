//! One pumped socket ([`Entry`]): its state, its two chunks in flight, and the work the pump
//! thread does on it after poll(2) — moving data, tokens, the connect filler, EOF and resets —
//! plus the control calls that change its state (`connect`, `shutdown`). Runs in the host
//! process, always under the pump table's mutex (see [`super`]).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use ioth_plugin_sdk::errno::io_error;
use ioth_plugin_sdk::proxied::filler::{self, Filler};
use ioth_plugin_sdk::proxied::header::{header_from_sockaddr, sockaddr_from_header, HDR_LEN};
use ioth_plugin_sdk::proxied::{ACCEPT_TOKEN, RESET_BYTE};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};

use crate::calls::{self, Calls};

/// Bytes moved per stream read.
const CHUNK: usize = 64 * 1024;
/// Largest datagram record (header included).
const RECORD: usize = 65536 + HDR_LEN;
/// How long a closed stream may take to hand the plug-in what the application wrote.
pub(super) const LINGER: Duration = Duration::from_secs(10);
/// Rounds of work per socket and wake-up (fairness between sockets).
const ROUNDS: usize = 16;

pub(super) fn nix_err(e: nix::errno::Errno) -> io::Error {
    io_error(e as i32)
}

/// Where a socket is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// A stream not yet connected nor listening: nothing to pump.
    Fresh,
    /// `listen` succeeded; `token`: a token byte is in the pair.
    Listening { token: bool },
    /// A non-blocking connect goes on: the filler sits in the pair (its size, and the
    /// application end's `SO_SNDBUF` to restore).
    Connecting(Filler),
    /// Data flows (a connected stream, any datagram socket).
    Open,
    /// The connect failed: the pair is shut down.
    Failed,
}

/// One chunk in flight in one direction.
#[derive(Default)]
struct Buf {
    data: Vec<u8>,
    off: usize,
    len: usize,
    /// Something is in flight (a datagram may be empty).
    full: bool,
    /// The datagram's destination (`None`: the connected peer).
    to: Option<Vec<u8>>,
}

impl Buf {
    fn room(&mut self, size: usize) -> &mut [u8] {
        if self.data.len() < size {
            self.data.resize(size, 0);
        }
        &mut self.data[..size]
    }

    fn fill(&mut self, off: usize, len: usize, to: Option<Vec<u8>>) {
        self.off = off;
        self.len = len;
        self.full = true;
        self.to = to;
    }

    fn rest(&self) -> &[u8] {
        &self.data[self.off..self.len]
    }

    fn advance(&mut self, n: usize) {
        self.off += n;
        if self.off >= self.len {
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.full = false;
        self.off = 0;
        self.len = 0;
        self.to = None;
    }
}

/// One pumped socket.
pub(super) struct Entry {
    /// The plug-in's handle (a pollable fd the plug-in owns until its `close`).
    pub(super) handle: RawFd,
    /// The host's end of the pair; `None` after a reset.
    pub(super) he: Option<OwnedFd>,
    /// The host's copy of the application's end; `None` once the application closed.
    pub(super) app: Option<OwnedFd>,
    /// Records, not a byte stream (a `SOCK_SEQPACKET` pair).
    pub(super) records: bool,
    /// Records carry the address header while not connected (an `AF_INET`/`AF_INET6`
    /// datagram socket).
    pub(super) framed: bool,
    /// A framed socket is connected: bare payloads.
    pub(super) connected: bool,
    pub(super) state: State,
    to_plug: Buf,
    to_app: Buf,
    /// No more reads from `he` (the application shut down or closed).
    pub(super) app_eof: bool,
    /// No more reads from the plug-in.
    pub(super) plug_eof: bool,
    pub(super) shut_plug: bool,
    pub(super) shut_app: bool,
    /// `SO_ERROR` the pump saw (a connect's outcome, a reset), until asked for.
    pub(super) so_error: i32,
    /// When the application closed the socket.
    pub(super) closing: Option<Instant>,
    /// Payload bytes the plug-in took from the application, and gave it (the audit trail).
    pub(super) sent: u64,
    pub(super) received: u64,
}

/// What happened to an entry in one service.
pub(super) enum Fate {
    Keep,
    Close,
}

fn send_nb(fd: &OwnedFd, buf: &[u8]) -> io::Result<usize> {
    socket::send(
        fd.as_raw_fd(),
        buf,
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
    )
    .map_err(nix_err)
}

pub(super) fn recv_nb(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    socket::recv(fd.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT).map_err(nix_err)
}

/// Whether the peer of `fd` has hung up (a zero-length record and EOF look alike on
/// `SOCK_SEQPACKET`).
fn hung_up(fd: &OwnedFd) -> bool {
    let mut p = [libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    }];
    matches!(calls::poll(&mut p, 0), Ok(1)) && p[0].revents & (libc::POLLRDHUP | libc::POLLHUP) != 0
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn interrupted(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINTR)
}

impl Entry {
    /// Events wanted on the plug-in's handle and on `he` now (0: leave it out of the poll set).
    pub(super) fn interest(&self) -> (i16, i16) {
        let mut plug = 0;
        let mut pair = 0;
        match self.state {
            State::Listening { token: false } if self.closing.is_none() => plug |= libc::POLLIN,
            State::Connecting { .. } => plug |= libc::POLLOUT,
            State::Open if self.he.is_some() => {
                if self.to_plug.full {
                    plug |= libc::POLLOUT;
                } else if !self.app_eof {
                    pair |= libc::POLLIN;
                }
                if self.closing.is_none() {
                    if self.to_app.full {
                        pair |= libc::POLLOUT;
                    } else if !self.plug_eof {
                        plug |= libc::POLLIN;
                    }
                }
            }
            _ => {}
        }
        (plug, pair)
    }

    /// Whether a closed socket is done: nothing of the application's is left to hand over.
    fn finished(&self, now: Instant) -> bool {
        let Some(since) = self.closing else {
            return false;
        };
        now.duration_since(since) >= LINGER
            || self.state != State::Open
            || self.he.is_none()
            || (self.app_eof && !self.to_plug.full)
    }

    /// Closes the pair with a byte unread in the host's end: the application's next read
    /// fails with `ECONNRESET` (docs/proxied.md, "Reset").
    fn reset(&mut self, err: i32) {
        self.so_error = err;
        if let Some(app) = &self.app {
            let _ = send_nb(app, &[RESET_BYTE]);
        }
        self.he = None;
        self.to_app.clear();
        self.to_plug.clear();
        self.app_eof = true;
        self.plug_eof = true;
    }

    /// Work after poll reported `plug_rev` on the handle and `pair_rev` on `he`.
    pub(super) fn service(&mut self, c: &Calls, plug_rev: i16) {
        match self.state {
            State::Listening { token: false } if plug_rev != 0 => {
                if let Some(he) = &self.he {
                    if send_nb(he, &[ACCEPT_TOKEN]).is_ok() {
                        self.state = State::Listening { token: true };
                    }
                }
            }
            State::Connecting(f) if plug_rev != 0 => {
                let e = match c.so_error(self.handle) {
                    Ok(e) => e,
                    Err(e) => e.raw_os_error().unwrap_or(libc::EIO),
                };
                if e == libc::EINPROGRESS || e == libc::EALREADY {
                    return;
                }
                filler::unfill(
                    self.app.as_ref().map(|a| a.as_fd()),
                    self.he.as_ref().map(|h| h.as_fd()),
                    f,
                );
                if e == 0 {
                    self.state = State::Open;
                    self.pump(c);
                } else {
                    self.so_error = e;
                    self.state = State::Failed;
                    if let Some(he) = &self.he {
                        let _ = socket::shutdown(he.as_raw_fd(), socket::Shutdown::Both);
                    }
                }
            }
            State::Open => self.pump(c),
            _ => {}
        }
    }

    /// Moves data both ways until nothing moves (at most [`ROUNDS`] rounds).
    fn pump(&mut self, c: &Calls) {
        for _ in 0..ROUNDS {
            let mut moved = self.app_to_plugin(c);
            if self.closing.is_none() {
                moved |= self.plugin_to_app(c);
            }
            if !moved {
                break;
            }
        }
    }

    /// One round of application → plug-in; whether anything moved.
    fn app_to_plugin(&mut self, c: &Calls) -> bool {
        let mut moved = false;
        if self.to_plug.full {
            let r = if self.records {
                let to = if self.framed && !self.connected {
                    self.to_plug.to.as_deref()
                } else {
                    None
                };
                c.sendto(self.handle, self.to_plug.rest(), to)
            } else {
                c.write(self.handle, self.to_plug.rest())
            };
            match r {
                Ok(n) => {
                    moved = true;
                    self.sent += n as u64;
                    if self.records {
                        self.to_plug.clear();
                    } else {
                        self.to_plug.advance(n);
                    }
                }
                Err(e) if would_block(&e) || interrupted(&e) => {}
                // A datagram the plug-in refuses is lost, as on a network; a stream the
                // plug-in cannot take any more is done (its read side reports why).
                Err(_) if self.records => {
                    moved = true;
                    self.to_plug.clear();
                }
                Err(_) => {
                    self.to_plug.clear();
                    self.app_eof = true;
                    self.shut_plug = true;
                }
            }
        }
        if !self.to_plug.full && !self.app_eof {
            if let Some(he) = &self.he {
                let size = if self.records { RECORD } else { CHUNK };
                let r = recv_nb(he, self.to_plug.room(size));
                match r {
                    Ok(0) if !self.records || hung_up(he) => {
                        self.app_eof = true;
                        moved = true;
                    }
                    Ok(n) if self.framed && !self.connected => {
                        moved = true;
                        // A malformed header: the record is dropped.
                        if let Ok(sa) = sockaddr_from_header(&self.to_plug.data[..n]) {
                            self.to_plug.fill(HDR_LEN, n, Some(sa));
                        }
                    }
                    Ok(n) => {
                        moved = true;
                        self.to_plug.fill(0, n, None);
                    }
                    Err(e) if would_block(&e) || interrupted(&e) => {}
                    Err(_) => {
                        self.app_eof = true;
                        moved = true;
                    }
                }
            }
        }
        if self.app_eof && !self.to_plug.full && !self.shut_plug && !self.records {
            self.shut_plug = true;
            let _ = c.shutdown(self.handle, libc::SHUT_WR);
        }
        moved
    }

    /// One round of plug-in → application; whether anything moved.
    fn plugin_to_app(&mut self, c: &Calls) -> bool {
        let mut moved = false;
        if self.to_app.full {
            if let Some(he) = &self.he {
                match send_nb(he, self.to_app.rest()) {
                    Ok(n) => {
                        moved = true;
                        if self.records {
                            self.to_app.clear();
                        } else {
                            self.to_app.advance(n);
                        }
                    }
                    Err(e) if would_block(&e) || interrupted(&e) => {}
                    // EPIPE: nobody reads the application's end any more; drop what comes.
                    Err(_) if self.records => {
                        moved = true;
                        self.to_app.clear();
                    }
                    Err(_) => {
                        self.to_app.clear();
                        self.plug_eof = true;
                        self.shut_app = true;
                    }
                }
            }
        }
        if !self.to_app.full && !self.plug_eof && self.he.is_some() {
            if self.records {
                let hdr = if self.framed && !self.connected {
                    HDR_LEN
                } else {
                    0
                };
                let buf = self.to_app.room(RECORD);
                match c.recvfrom(self.handle, &mut buf[hdr..]) {
                    Ok((n, from)) => {
                        moved = true;
                        self.received += n as u64;
                        if hdr == 0 {
                            self.to_app.fill(0, n, None);
                        } else if let Ok(h) = header_from_sockaddr(&from) {
                            self.to_app.data[..HDR_LEN].copy_from_slice(&h);
                            self.to_app.fill(0, HDR_LEN + n, None);
                        }
                    }
                    Err(e) if would_block(&e) || interrupted(&e) => {}
                    Err(e) => {
                        // An ICMP error of an earlier datagram: kept for SO_ERROR.
                        moved = true;
                        self.so_error = e.raw_os_error().unwrap_or(libc::EIO);
                    }
                }
            } else {
                match c.read(self.handle, self.to_app.room(CHUNK)) {
                    Ok(0) => {
                        moved = true;
                        self.plug_eof = true;
                    }
                    Ok(n) => {
                        moved = true;
                        self.received += n as u64;
                        self.to_app.fill(0, n, None);
                    }
                    Err(e) if would_block(&e) || interrupted(&e) => {}
                    Err(e) => {
                        self.reset(e.raw_os_error().unwrap_or(libc::ECONNRESET));
                        return true;
                    }
                }
            }
        }
        if self.plug_eof && !self.to_app.full && !self.shut_app && !self.records {
            self.shut_app = true;
            if let Some(he) = &self.he {
                let _ = socket::shutdown(he.as_raw_fd(), socket::Shutdown::Write);
            }
        }
        moved
    }

    /// What the pump does with an entry after servicing it.
    pub(super) fn fate(&self, now: Instant) -> Fate {
        if self.finished(now) {
            Fate::Close
        } else {
            Fate::Keep
        }
    }
}

/// A new socket's pair: the host's end non-blocking, the application's end with the
/// `SOCK_NONBLOCK` of the request. Both close-on-exec in the host.
pub(super) fn pair(records: bool, nonblocking: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    let ty = if records {
        SockType::SeqPacket
    } else {
        SockType::Stream
    };
    let (he, app) = socket::socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC)
        .map_err(nix_err)?;
    set_nonblocking(&he)?;
    if nonblocking {
        set_nonblocking(&app)?;
    }
    Ok((he, app))
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let fl = fcntl(fd, FcntlArg::F_GETFL).map_err(nix_err)?;
    fcntl(
        fd,
        FcntlArg::F_SETFL(OFlag::from_bits_retain(fl) | OFlag::O_NONBLOCK),
    )
    .map_err(nix_err)
    .map(drop)
}

pub(super) fn new_entry(
    handle: RawFd,
    he: OwnedFd,
    app: OwnedFd,
    records: bool,
    framed: bool,
) -> Entry {
    Entry {
        handle,
        he: Some(he),
        app: Some(app),
        records,
        framed,
        connected: false,
        // Datagram sockets send and receive from the start.
        state: if records { State::Open } else { State::Fresh },
        to_plug: Buf::default(),
        to_app: Buf::default(),
        app_eof: false,
        plug_eof: false,
        shut_plug: false,
        shut_app: false,
        so_error: 0,
        closing: None,
        sent: 0,
        received: 0,
    }
}

/// `connect` on a pumped socket (see the module doc).
pub(super) fn connect(c: &Calls, e: &mut Entry, addr: &[u8]) -> io::Result<()> {
    if e.records {
        c.connect(e.handle, addr)?;
        let unspec =
            addr.len() >= 2 && i32::from(u16::from_ne_bytes([addr[0], addr[1]])) == libc::AF_UNSPEC;
        e.connected = !unspec;
        return Ok(());
    }
    if e.state != State::Fresh {
        // EALREADY, EISCONN, or the outcome: the plug-in says.
        return c.connect(e.handle, addr);
    }
    match c.connect(e.handle, addr) {
        Ok(()) => {
            e.state = State::Open;
            Ok(())
        }
        Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => {
            let (Some(app), Some(he)) = (&e.app, &e.he) else {
                return Err(io_error(libc::EBADF));
            };
            e.state = State::Connecting(filler::fill(app.as_fd(), he.as_fd())?);
            Err(err)
        }
        Err(err) => Err(err),
    }
}

/// `shutdown` on a pumped socket: on the application's end (so that what the application
/// wrote before goes first, then EOF reaches the plug-in), and `SHUT_RD` on the plug-in too.
pub(super) fn shutdown(c: &Calls, e: &mut Entry, how: i32) -> io::Result<()> {
    let how_ = match how {
        libc::SHUT_RD => socket::Shutdown::Read,
        libc::SHUT_WR => socket::Shutdown::Write,
        libc::SHUT_RDWR => socket::Shutdown::Both,
        _ => return Err(io_error(libc::EINVAL)),
    };
    let connected = if e.records {
        !e.framed || e.connected
    } else {
        e.state == State::Open
    };
    if !connected {
        return match e.state {
            State::Listening { .. } => c.shutdown(e.handle, how),
            _ => Err(io_error(libc::ENOTCONN)),
        };
    }
    if let Some(app) = &e.app {
        socket::shutdown(app.as_raw_fd(), how_).map_err(nix_err)?;
    }
    if how != libc::SHUT_WR {
        let _ = c.shutdown(e.handle, libc::SHUT_RD);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buf_tracks_partial_writes_and_empty_datagrams() {
        let mut b = Buf::default();
        assert!(!b.full);
        b.room(10)[..4].copy_from_slice(b"abcd");
        b.fill(0, 4, None);
        assert_eq!(b.rest(), b"abcd");
        b.advance(3);
        assert_eq!(b.rest(), b"d");
        b.advance(1);
        assert!(!b.full);
        // An empty datagram is still something in flight.
        b.fill(0, 0, Some(vec![2, 0]));
        assert!(b.full);
        assert_eq!(b.rest(), b"");
    }
}
