//! TCP sockets: smoltcp `tcp::Socket`s behind a `SOCK_STREAM` socketpair. Runs in the host
//! process under the stack's mutex (control calls and the event loop).
//!
//! What smoltcp 0.14's `tcp::Socket` lacks (it is one endpoint: `listen` takes one connection
//! and becomes it, there is no accept queue, ports are the caller's to choose, `connect` only
//! starts the handshake) and this module adds:
//! - **ports**: bind uniqueness (`EADDRINUSE`) and ephemeral ports are the stack's
//!   ([`crate::stack::Core::ephemeral`]);
//! - **listen backlog**: up to [`LISTEN_PER_IFACE`] listening smoltcp sockets per interface on
//!   the port, each replaced as soon as it has connected; connected ones wait in a queue of at
//!   most `backlog`, and each has one token byte in the pair (docs/proxied.md), so the
//!   application's fd is readable exactly when `accept` has something;
//! - **non-blocking connect**: the application's end is made unwritable with filler bytes
//!   until the handshake ends (docs/proxied.md); `SO_ERROR` and a repeated `connect` say how;
//! - **buffers** of `SO_RCVBUF`/`SO_SNDBUF` (defaults 128 KiB and 96 KiB, sized so that a
//!   VDE switch does not drop: [`crate::stack::TCP_RCVBUF`]) fixed before listen/connect, so
//!   the window scale fits them; Nagle off unless `TCP_NODELAY` is cleared.
//!
//! Data: the pair is read only while smoltcp's send buffer has room (straight into it), and
//! smoltcp's receive buffer is written into the pair only while the pair takes it (the rest
//! waits in smoltcp, whose window closes: back-pressure both ways). FIN ↔ EOF both ways; a
//! reset from the peer closes the plug-in's end with an unread byte, so the application's next
//! read fails with `ECONNRESET`.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;

use ioth_plugin_sdk::proxied::filler::{self, Filler};
use ioth_plugin_sdk::proxied::{Handle, ACCEPT_TOKEN, RESET_BYTE};
use std::time::Duration;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self, State};
use smoltcp::wire::{IpAddress, IpListenEndpoint};

use crate::net::{Dev, Net, LO};
use crate::stack::{app_end, errno, new_pair, Core, Fate, Grave, Kind, Opts, Sock};
use crate::{addr, sys};

/// Listening smoltcp sockets per interface and port at most.
pub const LISTEN_PER_IFACE: usize = 16;
/// Longest accept queue.
pub const MAX_BACKLOG: usize = 256;
/// A connection whose peer acknowledges nothing for this long is given up.
const USER_TIMEOUT: Duration = Duration::from_secs(120);
/// Keep-alive interval with `SO_KEEPALIVE`.
const KEEPALIVE: Duration = Duration::from_secs(60);
/// How long a closed socket may take to finish its close.
const LINGER: Duration = Duration::from_secs(60);

/// A TCP socket.
pub struct Tcp {
    /// Bound address (port non-zero), if bound.
    pub local: Option<SocketAddr>,
    pub st: St,
}

/// Its state.
pub enum St {
    Fresh,
    Listen(Listener),
    Conn(Conn),
    /// A connect failed; the pair is shut down.
    Dead,
}

pub struct Listener {
    backlog: usize,
    socks: Vec<(usize, SocketHandle)>,
    ready: VecDeque<Ready>,
    ep: IpListenEndpoint,
}

struct Ready {
    iface: usize,
    h: SocketHandle,
    peer: SocketAddr,
    local: SocketAddr,
}

pub struct Conn {
    iface: usize,
    h: SocketHandle,
    peer: SocketAddr,
    local: SocketAddr,
    filler: Option<Filler>,
    started: std::time::Instant,
    /// The outcome of a non-blocking connect, for the next `connect` call.
    report: Option<i32>,
    /// The application's end reached EOF: smoltcp was told to close.
    app_eof: bool,
    /// The peer's FIN was passed on (shutdown of the plug-in's end).
    fin_to_app: bool,
    last: State,
    /// Closed: nothing more to pump.
    done: bool,
    /// Payload moved each way, for sock_diag ([`crate::diag`]).
    counts: crate::diag::Counts,
}

impl Tcp {
    pub fn new() -> Tcp {
        Tcp {
            local: None,
            st: St::Fresh,
        }
    }

    pub fn is_listening(&self) -> bool {
        matches!(self.st, St::Listen(_))
    }

    /// The peer, once connected.
    pub fn peer(&self) -> Option<SocketAddr> {
        match &self.st {
            St::Conn(c) if c.filler.is_none() => Some(c.peer),
            _ => None,
        }
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.st {
            St::Conn(c) => Some(c.local),
            _ => self.local,
        }
    }

    /// A connection as sock_diag shows it ([`crate::diag`]): smoltcp's state, local and peer
    /// addresses, payload bytes the peer acknowledged (handed to smoltcp and no longer in its
    /// send buffer) and received.
    pub fn diag(&self, net: &Net) -> Option<(State, SocketAddr, SocketAddr, u64, u64)> {
        let St::Conn(c) = &self.st else { return None };
        let k = net
            .ifaces
            .get(c.iface)?
            .sockets
            .iter()
            .find(|(h, _)| *h == c.h)
            .and_then(|(_, s)| <tcp::Socket as smoltcp::socket::AnySocket>::downcast(s))?;
        let acked = c.counts.bytes_out.saturating_sub(k.send_queue() as u64);
        let received = c.counts.bytes_in + k.recv_queue() as u64;
        Some((k.state(), c.local, c.peer, acked, received))
    }
}

fn new_socket(opts: &Opts) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; opts.rcvbuf]),
        tcp::SocketBuffer::new(vec![0; opts.sndbuf]),
    );
    set_opts(&mut s, opts);
    s.set_timeout(Some(smoltcp::time::Duration::from_millis(
        USER_TIMEOUT.as_millis() as u64,
    )));
    s
}

fn set_opts(s: &mut tcp::Socket<'_>, opts: &Opts) {
    s.set_nagle_enabled(!opts.nodelay);
    s.set_keep_alive(
        opts.keepalive
            .then(|| smoltcp::time::Duration::from_millis(KEEPALIVE.as_millis() as u64)),
    );
}

/// Applies changed options to the smoltcp sockets that exist.
pub fn apply_opts(net: &mut Net, t: &mut Tcp, opts: &Opts) {
    match &t.st {
        St::Conn(c) => set_opts(net.ifaces[c.iface].sockets.get_mut(c.h), opts),
        St::Listen(l) => {
            for &(i, h) in &l.socks {
                set_opts(net.ifaces[i].sockets.get_mut(h), opts);
            }
        }
        _ => {}
    }
}

fn tcp_of(kind: &mut Kind) -> &mut Tcp {
    match kind {
        Kind::Tcp(t) => t,
        _ => unreachable!("a TCP call on a non-TCP socket"),
    }
}

fn is_tcp(s: &Sock) -> io::Result<()> {
    match s.kind {
        Kind::Tcp(_) => Ok(()),
        _ => Err(errno(libc::EOPNOTSUPP)),
    }
}

/// The interfaces a listener or unconnected socket bound to `ip` receives on.
pub fn listen_ifaces(net: &Net, ip: Option<IpAddr>) -> Vec<usize> {
    match ip.and_then(|a| net.owner_of(a)) {
        Some(LO) => vec![LO],
        Some(i) => vec![i, LO],
        None => (0..net.ifaces.len()).collect(),
    }
}

/// Before smoltcp's poll: how many connection requests each listening endpoint of each
/// interface can take (its free listening sockets, the others being in a handshake, and no more
/// than the accept queue has room for once the handshakes going on are done), for the device to drop the excess instead of
/// letting smoltcp refuse it ([`crate::device::VdeDevice::syn_room`]). Derived afresh each turn.
pub fn set_syn_gates(net: &mut Net, socks: &std::collections::HashMap<u64, Sock>) {
    for f in &mut net.ifaces {
        if let Dev::Vde(d) = &mut f.dev {
            d.syn_room.clear();
        }
    }
    for s in socks.values() {
        let Kind::Tcp(t) = &s.kind else { continue };
        let St::Listen(l) = &t.st else { continue };
        let ip = l.ep.addr.map(IpAddr::from);
        // Room in the accept queue for handshakes not yet started: a connection that
        // completes when the queue is full is reset, so no more may start than it can take
        // (Linux, too, drops connection requests while the queue is full).
        let state = |j: usize, h| net.ifaces[j].sockets.get::<tcp::Socket>(h).state();
        let in_progress = l
            .socks
            .iter()
            .filter(|&&(j, h)| state(j, h) == State::SynReceived)
            .count();
        let mut room = l.backlog.saturating_sub(l.ready.len() + in_progress);
        // (The loopback has no gate: its requests never wait on a wire.)
        let gates: Vec<(usize, usize)> = listen_ifaces(net, ip)
            .into_iter()
            .filter(|&i| matches!(net.ifaces[i].dev, Dev::Vde(_)))
            .map(|i| {
                let listening = l
                    .socks
                    .iter()
                    .filter(|&&(j, h)| j == i && state(j, h) == State::Listen)
                    .count();
                let free = listening.min(room);
                room -= free;
                (i, free)
            })
            .collect();
        for (i, free) in gates {
            if let Dev::Vde(d) = &mut net.ifaces[i].dev {
                d.syn_room.push((ip, l.ep.port, free));
            }
        }
    }
}

/// `listen(backlog)`.
pub fn listen(core: &mut Core, handle: Handle, backlog: i32) -> io::Result<()> {
    let (id, s) = core.sock(handle)?;
    is_tcp(s)?;
    let backlog = (backlog.max(1) as usize).min(MAX_BACKLOG);
    let t = tcp_of(&mut s.kind);
    match &mut t.st {
        St::Listen(l) => {
            l.backlog = backlog;
            return Ok(());
        }
        St::Conn(_) | St::Dead => return Err(errno(libc::EINVAL)),
        St::Fresh => {}
    }
    let local = match t.local {
        Some(l) => l,
        None => {
            let unspec = addr::unspecified(s.domain);
            let port = core.ephemeral(id, false, None)?;
            SocketAddr::new(unspec.ip(), port)
        }
    };
    let (_, s) = core.sock(handle)?;
    let ip = (!local.ip().is_unspecified()).then_some(local.ip());
    let ep = IpListenEndpoint {
        addr: ip.map(IpAddress::from),
        port: local.port(),
    };
    let mut l = Listener {
        backlog,
        socks: Vec::new(),
        ready: VecDeque::new(),
        ep,
    };
    let opts = s.opts;
    replenish(&mut core.net, &mut l, &opts);
    let (_, s) = core.sock(handle)?;
    let t = tcp_of(&mut s.kind);
    t.local = Some(local);
    t.st = St::Listen(l);
    Ok(())
}

/// Tops the listening sockets up to what the backlog allows.
fn replenish(net: &mut Net, l: &mut Listener, opts: &Opts) {
    if l.ready.len() >= l.backlog {
        return;
    }
    let per = l.backlog.min(LISTEN_PER_IFACE);
    let ip = l.ep.addr.map(IpAddr::from);
    let dev = opts.bound_dev;
    let ifaces = listen_ifaces(net, ip)
        .into_iter()
        .filter(|&i| dev.is_none_or(|d| net.ifaces[i].index == d))
        .collect::<Vec<_>>();
    for i in ifaces {
        let have = l.socks.iter().filter(|(j, _)| *j == i).count();
        for _ in have..per {
            let mut s = new_socket(opts);
            if s.listen(l.ep).is_ok() {
                let h = net.ifaces[i].sockets.add(s);
                l.socks.push((i, h));
            }
        }
    }
}

fn id_of(core: &Core, handle: Handle) -> io::Result<u64> {
    core.handles
        .get(&handle)
        .copied()
        .ok_or_else(|| errno(libc::EBADF))
}

/// `accept`: the next connection of the queue, as a new socket; `EAGAIN` if none.
pub fn accept(core: &mut Core, handle: Handle) -> io::Result<(Handle, Vec<u8>)> {
    let id = id_of(core, handle)?;
    let s = core.socks.get_mut(&id).ok_or_else(|| errno(libc::EBADF))?;
    is_tcp(s)?;
    let domain = s.domain;
    let opts = s.opts;
    let St::Listen(l) = &mut tcp_of(&mut s.kind).st else {
        return Err(errno(libc::EINVAL));
    };
    let Some(r) = l.ready.pop_front() else {
        return Err(errno(libc::EAGAIN));
    };
    // Consume the connection's token from the application's end.
    if let Some(app) = app_end(&s.handle) {
        let _ = sys::recv(app, &mut [0u8; 1], 0);
    }
    let (pe, app) = match new_pair(libc::SOCK_STREAM, libc::SOCK_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            l.ready.push_front(r);
            return Err(e);
        }
    };
    let t = Tcp {
        local: Some(r.local),
        st: St::Conn(Conn {
            iface: r.iface,
            h: r.h,
            peer: r.peer,
            local: r.local,
            filler: None,
            started: std::time::Instant::now(),
            report: None,
            app_eof: false,
            fin_to_app: false,
            last: State::Established,
            done: false,
            counts: Default::default(),
        }),
    };
    let peer = addr::to_sockaddr(r.peer, domain);
    let h = core.add(domain, Kind::Tcp(t), pe, app);
    if let Some(s) = core.handles.get(&h).and_then(|id| core.socks.get_mut(id)) {
        s.opts = opts;
    }
    Ok((h, peer))
}

/// `connect`: starts the handshake and answers `EINPROGRESS` (docs/proxied.md).
pub fn connect(core: &mut Core, handle: Handle, a: &[u8]) -> io::Result<()> {
    let (id, s) = core.sock(handle)?;
    is_tcp(s)?;
    let domain = s.domain;
    let dst = addr::from_sockaddr(a, domain)?.ok_or_else(|| errno(libc::EAFNOSUPPORT))?;
    let v6only = s.opts.v6only;
    let dev = s.opts.bound_dev;
    let t = tcp_of(&mut s.kind);
    match &mut t.st {
        St::Listen(_) => return Err(errno(libc::EISCONN)),
        St::Conn(c) if c.filler.is_some() => return Err(errno(libc::EALREADY)),
        St::Conn(c) => {
            return match c.report.take() {
                Some(0) => Ok(()),
                Some(e) if e > 0 => Err(errno(e)),
                _ => Err(errno(libc::EISCONN)),
            }
        }
        St::Dead => return Err(errno(libc::EINVAL)),
        St::Fresh => {}
    }
    if dst.port() == 0 {
        return Err(errno(libc::ECONNREFUSED));
    }
    let dst = addr::connect_target(dst, domain, v6only)?;
    let bound = t.local;
    let from = bound.map(|l| l.ip()).filter(|ip| !ip.is_unspecified());
    if from.is_some_and(|f| !crate::net::same_family(f, dst.ip())) {
        return Err(errno(libc::EAFNOSUPPORT));
    }
    // SO_BINDTODEVICE: only through that interface.
    let only = match dev {
        Some(d) => Some(
            core.net
                .by_index(d)
                .ok_or_else(|| errno(libc::ENETUNREACH))?,
        ),
        None => None,
    };
    let iface = core
        .net
        .route_via(dst.ip(), from, only)
        .ok_or_else(|| errno(libc::ENETUNREACH))?;
    let src = match from {
        Some(f) => f,
        None => core
            .net
            .source_for(iface, dst.ip())
            .ok_or_else(|| errno(libc::EADDRNOTAVAIL))?,
    };
    let port = match bound {
        Some(b) => b.port(),
        None => core.ephemeral(id, false, Some(src))?,
    };
    let s = core.socks.get_mut(&id).ok_or_else(|| errno(libc::EBADF))?;
    let mut sock = new_socket(&s.opts);
    sock.connect(core.net.ifaces[iface].iface.context(), dst, (src, port))
        .map_err(|e| match e {
            tcp::ConnectError::InvalidState => errno(libc::EISCONN),
            tcp::ConnectError::Unaddressable => errno(libc::EADDRNOTAVAIL),
        })?;
    let pe = s.pe.as_ref().ok_or_else(|| errno(libc::EINVAL))?;
    let app = app_end(&s.handle).ok_or_else(|| errno(libc::EBADF))?;
    let filler = filler::fill(app, pe.as_fd())?;
    let h = core.net.ifaces[iface].sockets.add(sock);
    let t = tcp_of(&mut s.kind);
    t.local = Some(SocketAddr::new(bound.map_or(src, |b| b.ip()), port));
    t.st = St::Conn(Conn {
        iface,
        h,
        peer: dst,
        local: SocketAddr::new(src, port),
        filler: Some(filler),
        started: std::time::Instant::now(),
        report: None,
        app_eof: false,
        fin_to_app: false,
        last: State::SynSent,
        done: false,
        counts: Default::default(),
    });
    Err(errno(libc::EINPROGRESS))
}

/// Takes the filler back out of the plug-in's end and restores `SO_SNDBUF`
/// ([`filler::unfill`]): the application's end turns writable.
fn unfill(handle: &Option<Handle>, pe: Option<&std::os::fd::OwnedFd>, f: Filler) {
    filler::unfill(app_end(handle), pe.map(|p| p.as_fd()), f);
}

/// The events to poll the plug-in's end for.
pub fn interest(t: &Tcp, s: &Sock, net: &Net) -> i16 {
    let mut ev = 0;
    if let St::Conn(c) = &t.st {
        if c.filler.is_none() && !c.app_eof && !c.done {
            let k = net.ifaces[c.iface].sockets.get::<tcp::Socket>(c.h);
            if k.may_send() && k.send_queue() < k.send_capacity() {
                ev |= libc::POLLIN;
            }
        }
    }
    if s.want_out {
        ev |= libc::POLLOUT;
    }
    ev
}

/// Before smoltcp's poll: moves what the application wrote into smoltcp's send buffer.
pub fn pump_in(net: &mut Net, s: &mut Sock) {
    let Sock {
        pe, kind, revents, ..
    } = s;
    let Some(pe) = pe else { return };
    let St::Conn(c) = &mut tcp_of(kind).st else {
        return;
    };
    if c.filler.is_some() || c.app_eof || c.done {
        return;
    }
    if *revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 {
        return;
    }
    let k = net.ifaces[c.iface].sockets.get_mut::<tcp::Socket>(c.h);
    for _ in 0..8 {
        if !k.may_send() || k.send_queue() >= k.send_capacity() {
            break;
        }
        let r = k.send(|buf| {
            if buf.is_empty() {
                return (0, Err(io::ErrorKind::WouldBlock.into()));
            }
            match sys::recv(pe.as_fd(), buf, 0) {
                Ok(n) => (n, Ok(n)),
                Err(e) => (0, Err(e)),
            }
        });
        match r {
            Ok(Ok(0)) => {
                c.app_eof = true;
                k.close();
                break;
            }
            Ok(Ok(n)) => c.counts.sent(n, false),
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EINTR) => {}
            Ok(Err(_)) => {
                // ECONNRESET: the application closed with data unread; reset as a kernel would.
                c.app_eof = true;
                k.abort();
                break;
            }
            Err(_) => break,
        }
    }
}

/// Writes smoltcp's received data into the pair, as far as it takes it.
fn pump_out(
    k: &mut tcp::Socket<'_>,
    pe: &std::os::fd::OwnedFd,
    want_out: &mut bool,
    counts: &mut crate::diag::Counts,
) {
    *want_out = false;
    for _ in 0..8 {
        if !k.can_recv() {
            break;
        }
        let r = k.recv(|buf| match sys::send(pe.as_fd(), buf) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        });
        match r {
            Ok(Ok(n)) => counts.received(n, false),
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                *want_out = true;
                break;
            }
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EINTR) => {}
            Ok(Err(_)) => {
                // EPIPE: nobody reads the application's end any more; drop what arrives.
                while k.can_recv() {
                    if k.recv(|b| (b.len(), ())).is_err() {
                        break;
                    }
                }
                break;
            }
            Err(_) => break,
        }
    }
}

/// Closes the plug-in's end with a byte unread in it: the application reads `ECONNRESET`.
fn reset_pair(s: &mut Sock) {
    if let Some(app) = app_end(&s.handle) {
        let _ = sys::send(app, &[RESET_BYTE]);
    }
    s.pe = None;
}

/// After smoltcp's poll: handshakes, received data, FIN, resets, new connections.
pub fn after_poll(core_net: &mut Net, s: &mut Sock, graves: &mut Vec<Grave>) -> Fate {
    let opts = s.opts;
    let t = tcp_of(&mut s.kind);
    match &mut t.st {
        St::Listen(l) => {
            listener_turn(core_net, l, s.domain, &opts, s.pe.as_ref(), graves);
            Fate::Keep
        }
        St::Conn(_) => conn_turn(core_net, s, graves),
        St::Fresh | St::Dead => {
            if s.orphan_since.is_some() {
                Fate::Remove
            } else {
                Fate::Keep
            }
        }
    }
}

fn listener_turn(
    net: &mut Net,
    l: &mut Listener,
    domain: i32,
    opts: &Opts,
    pe: Option<&std::os::fd::OwnedFd>,
    graves: &mut Vec<Grave>,
) {
    let mut k = 0;
    while k < l.socks.len() {
        let (i, h) = l.socks[k];
        let sock = net.ifaces[i].sockets.get_mut::<tcp::Socket>(h);
        match sock.state() {
            State::Listen | State::SynReceived => k += 1,
            State::Closed => {
                let _ = sock.listen(l.ep);
                k += 1;
            }
            _ => {
                l.socks.swap_remove(k);
                let (Some(peer), Some(local)) = (sock.remote_endpoint(), sock.local_endpoint())
                else {
                    sock.abort();
                    graves.push(grave(i, h));
                    continue;
                };
                let peer = SocketAddr::from(peer);
                let local = SocketAddr::from(local);
                let wrong_family = match domain {
                    libc::AF_INET => peer.is_ipv6(),
                    _ => peer.is_ipv4() && opts.v6only,
                };
                if wrong_family || l.ready.len() >= l.backlog {
                    sock.abort();
                    graves.push(grave(i, h));
                    continue;
                }
                l.ready.push_back(Ready {
                    iface: i,
                    h,
                    peer,
                    local,
                });
                if let Some(pe) = pe {
                    let _ = sys::send(pe.as_fd(), &[ACCEPT_TOKEN]);
                }
            }
        }
    }
    // Cheap when nothing is missing; also refills after `accept` made room in the queue.
    replenish(net, l, opts);
}

fn grave(iface: usize, h: SocketHandle) -> Grave {
    Grave {
        iface,
        h,
        until: std::time::Instant::now() + LINGER,
    }
}

fn conn_turn(net: &mut Net, s: &mut Sock, graves: &mut Vec<Grave>) -> Fate {
    let orphan = s.orphan_since.is_some();
    let mut reset = false;
    {
        let Sock {
            pe,
            kind,
            so_error,
            want_out,
            handle,
            ..
        } = &mut *s;
        let St::Conn(c) = &mut tcp_of(kind).st else {
            return Fate::Keep;
        };
        let k = net.ifaces[c.iface].sockets.get_mut::<tcp::Socket>(c.h);
        let st = k.state();
        if let Some(f) = c.filler.take() {
            match st {
                State::SynSent | State::SynReceived => {
                    c.filler = Some(f);
                    if orphan {
                        k.abort();
                        graves.push(grave(c.iface, c.h));
                        return Fate::Remove;
                    }
                    return Fate::Keep;
                }
                State::Closed | State::TimeWait => {
                    unfill(handle, pe.as_ref(), f);
                    let e = if c.started.elapsed() >= USER_TIMEOUT {
                        libc::ETIMEDOUT
                    } else {
                        libc::ECONNREFUSED
                    };
                    *so_error = e;
                    if let Some(pe) = pe.as_ref() {
                        let _ = sys::shutdown(pe.as_fd(), libc::SHUT_RDWR);
                    }
                    let (iface, h) = (c.iface, c.h);
                    net.ifaces[iface].sockets.remove(h);
                    tcp_of(kind).st = St::Dead;
                    return if orphan { Fate::Remove } else { Fate::Keep };
                }
                _ => {
                    unfill(handle, pe.as_ref(), f);
                    c.report = Some(0);
                }
            }
        }
        if let Some(p) = pe.as_ref() {
            pump_out(k, p, want_out, &mut c.counts);
            let fin = matches!(
                st,
                State::CloseWait | State::LastAck | State::Closing | State::TimeWait
            ) || (st == State::Closed
                && matches!(
                    c.last,
                    State::CloseWait | State::LastAck | State::Closing | State::TimeWait
                ));
            if fin && !c.fin_to_app && !k.can_recv() {
                let _ = sys::shutdown(p.as_fd(), libc::SHUT_WR);
                c.fin_to_app = true;
            }
        }
        if st == State::Closed && !c.done && !k.can_recv() {
            c.done = true;
            let graceful = matches!(
                c.last,
                State::LastAck | State::TimeWait | State::Closing | State::Closed
            );
            if !graceful {
                *so_error = libc::ECONNRESET;
                reset = true;
            }
        }
        c.last = st;
    }
    if reset {
        reset_pair(s);
    }
    finish_if_orphan(net, s, graves)
}

/// A socket the host closed leaves the table once the application's data is all in smoltcp
/// (its end reached EOF, or was reset); smoltcp's socket lingers in the graves until closed.
fn finish_if_orphan(net: &mut Net, s: &mut Sock, graves: &mut Vec<Grave>) -> Fate {
    let Some(since) = s.orphan_since else {
        return Fate::Keep;
    };
    let gone = s.pe.is_none();
    let St::Conn(c) = &mut tcp_of(&mut s.kind).st else {
        return Fate::Remove;
    };
    let k = net.ifaces[c.iface].sockets.get_mut::<tcp::Socket>(c.h);
    if c.done {
        net.ifaces[c.iface].sockets.remove(c.h);
        return Fate::Remove;
    }
    if since.elapsed() > LINGER {
        k.abort();
        graves.push(grave(c.iface, c.h));
        return Fate::Remove;
    }
    if c.app_eof || gone {
        if !c.app_eof {
            k.close();
        }
        graves.push(grave(c.iface, c.h));
        return Fate::Remove;
    }
    Fate::Keep
}

/// The host closed the socket: listeners stop at once (connections waiting in the queue are
/// reset); a connection goes on until the application's end is drained. Returns whether the
/// socket can leave the table now.
pub fn close(net: &mut Net, s: &mut Sock, graves: &mut Vec<Grave>) -> bool {
    let linger0 = s.opts.linger0;
    let t = tcp_of(&mut s.kind);
    match &mut t.st {
        St::Fresh | St::Dead => true,
        St::Listen(l) => {
            for (i, h) in l.socks.drain(..) {
                net.ifaces[i].sockets.remove(h);
            }
            for r in l.ready.drain(..) {
                net.ifaces[r.iface]
                    .sockets
                    .get_mut::<tcp::Socket>(r.h)
                    .abort();
                graves.push(grave(r.iface, r.h));
            }
            true
        }
        St::Conn(c) => {
            let k = net.ifaces[c.iface].sockets.get_mut::<tcp::Socket>(c.h);
            if c.done {
                net.ifaces[c.iface].sockets.remove(c.h);
                true
            } else if linger0 || c.filler.is_some() {
                k.abort();
                graves.push(grave(c.iface, c.h));
                true
            } else {
                false
            }
        }
    }
}

/// Removes the smoltcp sockets of the graves that have closed (or waited too long).
pub fn bury(net: &mut Net, graves: &mut Vec<Grave>) {
    let now = std::time::Instant::now();
    graves.retain(|g| {
        let Some(f) = net.ifaces.get_mut(g.iface) else {
            return false;
        };
        let st = f.sockets.get::<tcp::Socket>(g.h).state();
        if matches!(st, State::Closed | State::TimeWait) || now > g.until {
            f.sockets.remove(g.h);
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core() -> Core {
        Core::new(crate::netlink::tests::net_up())
    }

    fn sa(s: &str) -> Vec<u8> {
        let a: SocketAddr = s.parse().unwrap();
        let domain = if a.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        addr::to_sockaddr(a, domain)
    }

    fn tcp4(c: &mut Core) -> Handle {
        c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap()
    }

    fn local(c: &mut Core, h: Handle) -> SocketAddr {
        let b = c.getsockname(h).unwrap();
        addr::from_sockaddr(&b, libc::AF_INET).unwrap().unwrap()
    }

    fn listener(c: &mut Core, h: Handle) -> &Listener {
        let (_, s) = c.sock(h).unwrap();
        match &tcp_of(&mut s.kind).st {
            St::Listen(l) => l,
            _ => panic!("not listening"),
        }
    }

    fn code(r: io::Result<()>) -> i32 {
        r.unwrap_err().raw_os_error().unwrap()
    }

    #[test]
    fn bind_is_unique_per_protocol_and_address() {
        let mut c = core();
        let (a, b) = (tcp4(&mut c), tcp4(&mut c));
        c.bind(a, &sa("127.0.0.1:5000")).unwrap();
        assert_eq!(code(c.bind(b, &sa("127.0.0.1:5000"))), libc::EADDRINUSE);
        // The wildcard overlaps every address; another address of ours does not.
        assert_eq!(code(c.bind(b, &sa("0.0.0.0:5000"))), libc::EADDRINUSE);
        c.bind(b, &sa("10.0.0.1:5000")).unwrap();
        // UDP has its own ports.
        let u = c.socket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
        c.bind(u, &sa("127.0.0.1:5000")).unwrap();
        // Not an address of the stack; bound twice.
        let d = tcp4(&mut c);
        assert_eq!(code(c.bind(d, &sa("10.0.0.2:5001"))), libc::EADDRNOTAVAIL);
        assert_eq!(code(c.bind(a, &sa("127.0.0.1:5002"))), libc::EINVAL);
        // SO_REUSEADDR on both and neither listening: shared.
        let (e, f) = (tcp4(&mut c), tcp4(&mut c));
        for h in [e, f] {
            c.setsockopt(h, libc::SOL_SOCKET, libc::SO_REUSEADDR, &1i32.to_ne_bytes())
                .unwrap();
        }
        c.bind(e, &sa("127.0.0.1:6000")).unwrap();
        c.bind(f, &sa("127.0.0.1:6000")).unwrap();
        listen(&mut c, e, 1).unwrap();
        let g = tcp4(&mut c);
        c.setsockopt(g, libc::SOL_SOCKET, libc::SO_REUSEADDR, &1i32.to_ne_bytes())
            .unwrap();
        assert_eq!(
            code(c.bind(g, &sa("127.0.0.1:6000"))),
            libc::EADDRINUSE,
            "one listens"
        );
    }

    #[test]
    fn ephemeral_ports_are_in_range_distinct_and_skip_taken_ones() {
        let mut c = core();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let h = tcp4(&mut c);
            c.bind(h, &sa("127.0.0.1:0")).unwrap();
            let p = local(&mut c, h).port();
            assert!((32768..=60999).contains(&p), "{p}");
            assert!(seen.insert(p), "{p} twice");
        }
        // The next one the counter gives is taken: skipped.
        let taken = tcp4(&mut c);
        c.bind(taken, &sa("0.0.0.0:0")).unwrap();
        let p = local(&mut c, taken).port();
        let h = tcp4(&mut c);
        let id = c.handles[&h];
        c.next_port[0] = p;
        let q = c.ephemeral(id, false, None).unwrap();
        assert_ne!(q, p);
        // The counter wraps at the end of the range.
        c.next_port[0] = 60999;
        let h2 = tcp4(&mut c);
        let id2 = c.handles[&h2];
        assert_eq!(c.ephemeral(id2, false, None).unwrap(), 60999);
        assert_eq!(c.next_port[0], 32768);
    }

    #[test]
    fn listen_backlog_bounds_the_listening_sockets() {
        let mut c = core();
        let h = tcp4(&mut c);
        c.bind(h, &sa("127.0.0.1:7000")).unwrap();
        listen(&mut c, h, 3).unwrap();
        let l = listener(&mut c, h);
        assert_eq!(l.backlog, 3);
        // An address of lo: listening sockets on lo only, as many as the backlog.
        assert_eq!(l.socks.len(), 3);
        assert!(l.socks.iter().all(|(i, _)| *i == LO));
        // listen again changes the backlog only; 0 is 1, the maximum is MAX_BACKLOG.
        listen(&mut c, h, 100_000).unwrap();
        assert_eq!(listener(&mut c, h).backlog, MAX_BACKLOG);
        let any = tcp4(&mut c);
        listen(&mut c, any, 0).unwrap();
        let l = listener(&mut c, any);
        assert_eq!(l.backlog, 1);
        // Unbound: an ephemeral port on every interface, one listening socket each.
        assert_eq!(l.socks.len(), 2);
        assert!((32768..=60999).contains(&l.ep.port));
        // A large backlog: at most LISTEN_PER_IFACE per interface.
        let big = tcp4(&mut c);
        c.bind(big, &sa("10.0.0.1:7001")).unwrap();
        listen(&mut c, big, 64).unwrap();
        let l = listener(&mut c, big);
        assert_eq!(l.socks.len(), 2 * LISTEN_PER_IFACE, "vde0 and lo");
        // Not on a connected or UDP socket.
        let u = c.socket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
        assert!(listen(&mut c, u, 1).is_err());
    }

    fn room(c: &Core) -> Vec<(Option<IpAddr>, u16, usize)> {
        match &c.net.ifaces[1].dev {
            Dev::Vde(d) => d.syn_room.clone(),
            Dev::Lo(_) => unreachable!(),
        }
    }

    #[test]
    fn syn_room_is_the_backlog_left_and_the_free_listening_sockets() {
        let mut c = core();
        let h = tcp4(&mut c);
        c.bind(h, &sa("0.0.0.0:8000")).unwrap();
        listen(&mut c, h, 2).unwrap();
        set_syn_gates(&mut c.net, &c.socks);
        assert_eq!(room(&c), [(None, 8000, 2)]);
        // A listener on lo's address has no gate on vde0; one on vde0's address has.
        let lo = tcp4(&mut c);
        c.bind(lo, &sa("127.0.0.1:8001")).unwrap();
        listen(&mut c, lo, 4).unwrap();
        let v = tcp4(&mut c);
        c.bind(v, &sa("10.0.0.1:8002")).unwrap();
        listen(&mut c, v, 40).unwrap();
        set_syn_gates(&mut c.net, &c.socks);
        let mut r = room(&c);
        r.sort_by_key(|e| e.1);
        // 40 allowed by the backlog, but vde0 has LISTEN_PER_IFACE listening sockets.
        let ten = Some("10.0.0.1".parse().unwrap());
        assert_eq!(r, [(None, 8000, 2), (ten, 8002, LISTEN_PER_IFACE)]);
        // Connections waiting to be accepted take room from the accept queue.
        let (_, s) = c.sock(h).unwrap();
        let St::Listen(l) = &mut tcp_of(&mut s.kind).st else {
            unreachable!()
        };
        let (iface, hh) = l.socks[0];
        let peer: SocketAddr = "10.0.0.9:1".parse().unwrap();
        l.ready.push_back(Ready {
            iface,
            h: hh,
            peer,
            local: peer,
        });
        set_syn_gates(&mut c.net, &c.socks);
        assert!(room(&c).contains(&(None, 8000, 1)));
    }
}
