//! The host's pump for "proxied, host pump" plug-ins (docs/proxied.md): plug-ins whose sockets
//! are read and written with their own functions. Runs in the host process: control calls on
//! the serving thread, data on ONE pump thread for all sockets of the stack.
//!
//! Each socket has a socketpair: the application's end (`app`, of which the host keeps a copy
//! until `Close`, for the readiness tricks below) and the host's end (`he`). The pump thread
//! sleeps in one poll(2) over every socket that has something to do and a wake-up eventfd, and
//! moves data between `he` and the plug-in's handle with the plug-in's `read`/`write` (streams)
//! or `recvfrom`/`sendto` (datagrams, with the address header of [`ioth_proto::dgram`] while
//! not connected). At most one chunk per direction is in flight: `he` is read only once the
//! plug-in took the last chunk, the plug-in only once `he` took the last one — back-pressure both
//! ways, and a socket with nothing to do is not in the poll set at all (no busy loop).
//!
//! Readiness, as the contract says:
//! - **listening**: one token byte in the pair while the plug-in's handle polls readable;
//!   `accept` consumes it, and the pump looks again;
//! - **connect**: filler bytes make the application's end unwritable until the plug-in's handle
//!   polls writable; the outcome (`SO_ERROR`, read through the plug-in) is kept for the
//!   application's `getsockopt(SO_ERROR)`;
//! - **EOF** both ways with `shutdown(SHUT_WR)`; a **reset** (the plug-in's read fails) closes
//!   `he` with a byte unread in it, so the application's next read fails with `ECONNRESET`.
//!
//! Every call into the plug-in, from either thread, is made under the table's mutex: the
//! plug-in is never called from two threads at once, and every handle is non-blocking (set
//! through the plug-in's own `fcntl`), so no call holds the mutex for long.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ioth_proto::dgram::{header_from_sockaddr, sockaddr_from_header, HDR_LEN};
use ioth_proto::ControlOp;
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{self, sockopt, AddressFamily, MsgFlags, SockFlag, SockType};

use crate::calls::{self, Calls};

/// Bytes moved per stream read.
const CHUNK: usize = 64 * 1024;
/// Largest datagram record (header included).
const RECORD: usize = 65536 + HDR_LEN;
/// How long a closed stream may take to hand the plug-in what the application wrote.
const LINGER: Duration = Duration::from_secs(10);
/// Rounds of work per socket and wake-up (fairness between sockets).
const ROUNDS: usize = 16;

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

fn nix_err(e: nix::errno::Errno) -> io::Error {
    errno(e as i32)
}

/// Where a socket is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A stream not yet connected nor listening: nothing to pump.
    Fresh,
    /// `listen` succeeded; `token`: a token byte is in the pair.
    Listening { token: bool },
    /// A non-blocking connect goes on: `filler` bytes sit in the pair; `sndbuf` is the
    /// application end's `SO_SNDBUF` to restore.
    Connecting { filler: usize, sndbuf: usize },
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
struct Entry {
    /// The plug-in's handle (a pollable fd the plug-in owns until its `close`).
    handle: RawFd,
    /// The host's end of the pair; `None` after a reset.
    he: Option<OwnedFd>,
    /// The host's copy of the application's end; `None` once the application closed.
    app: Option<OwnedFd>,
    /// Records, not a byte stream (a `SOCK_SEQPACKET` pair).
    records: bool,
    /// Records carry the address header while not connected (an `AF_INET`/`AF_INET6`
    /// datagram socket).
    framed: bool,
    /// A framed socket is connected: bare payloads.
    connected: bool,
    state: State,
    to_plug: Buf,
    to_app: Buf,
    /// No more reads from `he` (the application shut down or closed).
    app_eof: bool,
    /// No more reads from the plug-in.
    plug_eof: bool,
    shut_plug: bool,
    shut_app: bool,
    /// `SO_ERROR` the pump saw (a connect's outcome, a reset), until asked for.
    so_error: i32,
    /// When the application closed the socket.
    closing: Option<Instant>,
}

/// What happened to an entry in one service.
enum Fate {
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

fn recv_nb(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
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
    fn interest(&self) -> (i16, i16) {
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
            let _ = send_nb(app, b"R");
        }
        self.he = None;
        self.to_app.clear();
        self.to_plug.clear();
        self.app_eof = true;
        self.plug_eof = true;
    }

    /// Work after poll reported `plug_rev` on the handle and `pair_rev` on `he`.
    fn service(&mut self, c: &Calls, plug_rev: i16) {
        match self.state {
            State::Listening { token: false } if plug_rev != 0 => {
                if let Some(he) = &self.he {
                    if send_nb(he, b"A").is_ok() {
                        self.state = State::Listening { token: true };
                    }
                }
            }
            State::Connecting { filler, sndbuf } if plug_rev != 0 => {
                let e = match c.so_error(self.handle) {
                    Ok(e) => e,
                    Err(e) => e.raw_os_error().unwrap_or(libc::EIO),
                };
                if e == libc::EINPROGRESS || e == libc::EALREADY {
                    return;
                }
                self.unfill(filler, sndbuf);
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

    /// Takes the filler out of `he` and gives the application's end its `SO_SNDBUF` back: the
    /// application's fd turns writable.
    fn unfill(&mut self, filler: usize, sndbuf: usize) {
        if let Some(he) = &self.he {
            let mut left = filler;
            let mut scratch = [0u8; 4096];
            for _ in 0..4096 {
                if left == 0 {
                    break;
                }
                let n = left.min(scratch.len());
                match recv_nb(he, &mut scratch[..n]) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => left -= k,
                }
            }
        }
        if let Some(app) = &self.app {
            // Linux doubles what it is given: give back half of what it reported.
            let _ = socket::setsockopt(app, sockopt::SndBuf, &(sndbuf / 2));
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
    fn fate(&self, now: Instant) -> Fate {
        if self.finished(now) {
            Fate::Close
        } else {
            Fate::Keep
        }
    }
}

/// Makes the application's end unwritable before a non-blocking connect (docs/proxied.md):
/// drops what the application wrote before connecting (a kernel refuses it with `ENOTCONN`),
/// sets its `SO_SNDBUF` to the minimum and writes filler from it until `EAGAIN`. Returns the
/// filler's size and the `SO_SNDBUF` to restore.
fn fill(app: &OwnedFd, he: &OwnedFd) -> io::Result<(usize, usize)> {
    let mut scratch = [0u8; 4096];
    for _ in 0..4096 {
        match recv_nb(he, &mut scratch) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    let sndbuf = socket::getsockopt(app, sockopt::SndBuf).map_err(nix_err)?;
    socket::setsockopt(app, sockopt::SndBuf, &0).map_err(nix_err)?;
    let chunk = [0u8; 512];
    let mut bytes = 0;
    for _ in 0..4096 {
        match send_nb(app, &chunk) {
            Ok(n) => bytes += n,
            Err(_) => break,
        }
    }
    Ok((bytes, sndbuf))
}

/// A new socket's pair: the host's end non-blocking, the application's end with the
/// `SOCK_NONBLOCK` of the request. Both close-on-exec in the host.
fn pair(records: bool, nonblocking: bool) -> io::Result<(OwnedFd, OwnedFd)> {
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

/// What the serving thread and the pump thread share.
struct Shared {
    table: Mutex<HashMap<u64, Entry>>,
    wake: EventFd,
    calls: Calls,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self) {
        let _ = self.wake.write(1);
    }
}

/// The pump of one stack: its table and its thread.
pub struct Pump {
    shared: Arc<Shared>,
}

/// The result of a control call on a pumped socket.
pub enum Done {
    /// The call's bytes (an address, an option value; empty for most).
    Bytes(Vec<u8>),
    /// `accept`: the new socket's handle is in the table under the id given; here its peer and
    /// the application's end.
    Accepted { peer: Vec<u8>, app: OwnedFd },
}

impl Pump {
    /// Starts the pump thread of a stack whose plug-in functions are `calls`.
    pub fn start(calls: Calls) -> io::Result<Pump> {
        let wake = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(nix_err)?;
        let shared = Arc::new(Shared {
            table: Mutex::new(HashMap::new()),
            wake,
            calls,
        });
        let s2 = shared.clone();
        std::thread::Builder::new()
            .name("ioth-pump".into())
            .spawn(move || run(&s2))?;
        Ok(Pump { shared })
    }

    /// `socket(domain, ty, protocol)` on the plug-in, registered as `id`: the application's end
    /// (a copy; the host keeps one).
    pub fn socket(&self, id: u64, domain: i32, ty: i32, protocol: i32) -> io::Result<OwnedFd> {
        let c = self.shared.calls;
        let mut t = self.shared.lock();
        let h = c.socket(domain, ty, protocol)?;
        let base = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
        let records = base != libc::SOCK_STREAM;
        let framed = records && matches!(domain, libc::AF_INET | libc::AF_INET6);
        let made = c
            .set_nonblocking(h)
            .and_then(|()| pair(records, ty & libc::SOCK_NONBLOCK != 0))
            .and_then(|(he, app)| Ok((app.try_clone()?, he, app)));
        let (give, he, app) = match made {
            Ok(v) => v,
            Err(e) => {
                let _ = c.close(h);
                return Err(e);
            }
        };
        t.insert(id, new_entry(h, he, app, records, framed));
        drop(t);
        self.shared.wake();
        Ok(give)
    }

    /// Serves control call `op` on socket `id`; an accepted socket is registered as `new_id`.
    pub fn control(&self, id: u64, op: &ControlOp, new_id: u64) -> io::Result<Done> {
        let c = self.shared.calls;
        let mut t = self.shared.lock();
        let e = t.get_mut(&id).ok_or_else(|| errno(libc::EBADF))?;
        let h = e.handle;
        let none = || Ok(Done::Bytes(Vec::new()));
        let r = match op {
            ControlOp::Bind(a) => c.bind(h, a).and_then(|()| none()),
            ControlOp::Listen(backlog) => {
                c.listen(h, *backlog)?;
                if matches!(e.state, State::Fresh) && !e.records {
                    e.state = State::Listening { token: false };
                }
                none()
            }
            ControlOp::Connect(a) => connect(&c, e, a).and_then(|()| none()),
            ControlOp::Accept => {
                // The token, if there is one, goes with this accept; the pump looks again.
                if let Some(app) = &e.app {
                    let _ = recv_nb(app, &mut [0u8; 1]);
                }
                if let State::Listening { .. } = e.state {
                    e.state = State::Listening { token: false };
                }
                let (nh, peer) = c.accept(h)?;
                let made = c
                    .set_nonblocking(nh)
                    .and_then(|()| pair(false, false))
                    .and_then(|(he, app)| Ok((app.try_clone()?, he, app)));
                match made {
                    Ok((give, he, app)) => {
                        let mut n = new_entry(nh, he, app, false, false);
                        n.state = State::Open;
                        t.insert(new_id, n);
                        Ok(Done::Accepted { peer, app: give })
                    }
                    Err(err) => {
                        let _ = c.close(nh);
                        Err(err)
                    }
                }
            }
            ControlOp::GetSockName => c.name(h, false).map(Done::Bytes),
            ControlOp::GetPeerName => c.name(h, true).map(Done::Bytes),
            ControlOp::SetSockOpt { level, name, value } => {
                c.setsockopt(h, *level, *name, value).and_then(|()| none())
            }
            ControlOp::GetSockOpt { level, name, len }
                if *level == libc::SOL_SOCKET && *name == libc::SO_ERROR && e.so_error != 0 =>
            {
                let v = std::mem::take(&mut e.so_error).to_ne_bytes();
                Ok(Done::Bytes(v[..(*len as usize).min(4)].to_vec()))
            }
            ControlOp::GetSockOpt { level, name, len } => c
                .getsockopt(h, *level, *name, *len as usize)
                .map(Done::Bytes),
            ControlOp::Shutdown(how) => shutdown(&c, e, *how).and_then(|()| none()),
        };
        drop(t);
        self.shared.wake();
        r
    }

    /// The application closed socket `id`: the pump hands the plug-in what is left of the
    /// application's data (bounded by [`LINGER`]), then calls the plug-in's `close`.
    pub fn close(&self, id: u64) -> io::Result<()> {
        let mut t = self.shared.lock();
        let e = t.get_mut(&id).ok_or_else(|| errno(libc::EBADF))?;
        if e.closing.is_some() {
            return Err(errno(libc::EBADF));
        }
        e.closing = Some(Instant::now());
        e.app = None;
        drop(t);
        self.shared.wake();
        Ok(())
    }
}

fn new_entry(handle: RawFd, he: OwnedFd, app: OwnedFd, records: bool, framed: bool) -> Entry {
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
    }
}

/// `connect` on a pumped socket (see the module doc).
fn connect(c: &Calls, e: &mut Entry, addr: &[u8]) -> io::Result<()> {
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
                return Err(errno(libc::EBADF));
            };
            let (filler, sndbuf) = fill(app, he)?;
            e.state = State::Connecting { filler, sndbuf };
            Err(err)
        }
        Err(err) => Err(err),
    }
}

/// `shutdown` on a pumped socket: on the application's end (so that what the application
/// wrote before goes first, then EOF reaches the plug-in), and `SHUT_RD` on the plug-in too.
fn shutdown(c: &Calls, e: &mut Entry, how: i32) -> io::Result<()> {
    let how_ = match how {
        libc::SHUT_RD => socket::Shutdown::Read,
        libc::SHUT_WR => socket::Shutdown::Write,
        libc::SHUT_RDWR => socket::Shutdown::Both,
        _ => return Err(errno(libc::EINVAL)),
    };
    let connected = if e.records {
        !e.framed || e.connected
    } else {
        e.state == State::Open
    };
    if !connected {
        return match e.state {
            State::Listening { .. } => c.shutdown(e.handle, how),
            _ => Err(errno(libc::ENOTCONN)),
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

/// The pump thread (see the module doc).
fn run(shared: &Shared) {
    let c = shared.calls;
    let wake = shared.wake.as_fd().as_raw_fd();
    let mut pfds: Vec<libc::pollfd> = Vec::new();
    let mut keys: Vec<(u64, bool)> = Vec::new();
    let mut ready: Vec<(u64, i16)> = Vec::new();
    loop {
        let timeout = {
            let t = shared.lock();
            pfds.clear();
            keys.clear();
            pfds.push(libc::pollfd {
                fd: wake,
                events: libc::POLLIN,
                revents: 0,
            });
            let mut deadline: Option<Instant> = None;
            for (id, e) in t.iter() {
                let (plug, pair) = e.interest();
                if plug != 0 {
                    pfds.push(libc::pollfd {
                        fd: e.handle,
                        events: plug,
                        revents: 0,
                    });
                    keys.push((*id, true));
                }
                if let (true, Some(he)) = (pair != 0, &e.he) {
                    pfds.push(libc::pollfd {
                        fd: he.as_raw_fd(),
                        events: pair,
                        revents: 0,
                    });
                    keys.push((*id, false));
                }
                if let Some(since) = e.closing {
                    let d = since + LINGER;
                    deadline = Some(deadline.map_or(d, |x| x.min(d)));
                }
            }
            deadline.map_or(-1, |d| {
                d.saturating_duration_since(Instant::now())
                    .as_millis()
                    .saturating_add(1)
                    .min(i32::MAX as u128) as i32
            })
        };
        if let Err(e) = calls::poll(&mut pfds, timeout) {
            eprintln!("ioth-host: pump: poll: {e}");
            return;
        }
        if pfds[0].revents != 0 {
            let _ = shared.wake.read();
        }
        ready.clear();
        for (p, (id, plug)) in pfds[1..].iter().zip(&keys) {
            if p.revents != 0 {
                let rev = if *plug { p.revents } else { 0 };
                match ready.iter_mut().find(|(i, _)| i == id) {
                    Some(r) => r.1 |= rev,
                    None => ready.push((*id, rev)),
                }
            }
        }
        let mut t = shared.lock();
        for (id, plug_rev) in &ready {
            if let Some(e) = t.get_mut(id) {
                e.service(&c, *plug_rev);
            }
        }
        // Closed sockets whose data is all handed over (or that waited long enough) go.
        let now = Instant::now();
        let done: Vec<u64> = t
            .iter()
            .filter(|(_, e)| matches!(e.fate(now), Fate::Close))
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(e) = t.remove(&id) {
                let _ = c.close(e.handle);
            }
        }
    }
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
