//! TCP sockets: smoltcp `tcp::Socket`s behind a `SOCK_STREAM` socketpair. Runs in the host
//! process under the stack's mutex (control calls and the event loop).
//!
//! What smoltcp 0.14's `tcp::Socket` lacks (it is one endpoint: `listen` takes one connection
//! and becomes it, there is no accept queue, ports are the caller's to choose, `connect` only
//! starts the handshake) and this module adds:
//! - **ports**: bind uniqueness (`EADDRINUSE`) and ephemeral ports are the stack's
//!   ([`crate::sock::Core::ephemeral`]);
//! - **listen backlog**: up to [`LISTEN_PER_IFACE`] listening smoltcp sockets per interface on
//!   the port, each replaced as soon as it has connected; connected ones wait in a queue of at
//!   most `backlog`, and each has one token byte in the pair (docs/proxied.md), so the
//!   application's fd is readable exactly when `accept` has something;
//! - **non-blocking connect**: the application's end is made unwritable with filler bytes
//!   until the handshake ends (docs/proxied.md); `SO_ERROR` and a repeated `connect` say how;
//! - **buffers** of `SO_RCVBUF`/`SO_SNDBUF` (defaults 128 KiB and 96 KiB, sized so that a
//!   VDE switch does not drop: [`crate::sock::TCP_RCVBUF`]) fixed before listen/connect, so
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

use crate::addr;
use crate::kind::tcp::{Conn, Listener, Ready, St, Tcp};
use crate::net::Dev;
use crate::net::{Net, LO};
use crate::sock::{app_end, new_pair, Core, Fate, Grave, Kind, Opts, Sock};
use crate::sys;
use ioth_plugin_sdk::errno::io_error;

mod pump;

pub use self::pump::{after_poll, bury, close, interest, pump_in};

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
        _ => Err(io_error(libc::EOPNOTSUPP)),
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
        St::Conn(_) | St::Dead => return Err(io_error(libc::EINVAL)),
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
        .ok_or_else(|| io_error(libc::EBADF))
}

/// `accept`: the next connection of the queue, as a new socket; `EAGAIN` if none.
pub fn accept(core: &mut Core, handle: Handle) -> io::Result<(Handle, Vec<u8>)> {
    let id = id_of(core, handle)?;
    let s = core
        .socks
        .get_mut(&id)
        .ok_or_else(|| io_error(libc::EBADF))?;
    is_tcp(s)?;
    let domain = s.domain;
    let opts = s.opts;
    let St::Listen(l) = &mut tcp_of(&mut s.kind).st else {
        return Err(io_error(libc::EINVAL));
    };
    let Some(r) = l.ready.pop_front() else {
        return Err(io_error(libc::EAGAIN));
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
    let dst = addr::from_sockaddr(a, domain)?.ok_or_else(|| io_error(libc::EAFNOSUPPORT))?;
    let v6only = s.opts.v6only;
    let dev = s.opts.bound_dev;
    let t = tcp_of(&mut s.kind);
    match &mut t.st {
        St::Listen(_) => return Err(io_error(libc::EISCONN)),
        St::Conn(c) if c.filler.is_some() => return Err(io_error(libc::EALREADY)),
        St::Conn(c) => {
            return match c.report.take() {
                Some(0) => Ok(()),
                Some(e) if e > 0 => Err(io_error(e)),
                _ => Err(io_error(libc::EISCONN)),
            }
        }
        St::Dead => return Err(io_error(libc::EINVAL)),
        St::Fresh => {}
    }
    if dst.port() == 0 {
        return Err(io_error(libc::ECONNREFUSED));
    }
    let dst = addr::connect_target(dst, domain, v6only)?;
    let bound = t.local;
    let from = bound.map(|l| l.ip()).filter(|ip| !ip.is_unspecified());
    if from.is_some_and(|f| !crate::net::same_family(f, dst.ip())) {
        return Err(io_error(libc::EAFNOSUPPORT));
    }
    // SO_BINDTODEVICE: only through that interface.
    let only = match dev {
        Some(d) => Some(
            core.net
                .by_index(d)
                .ok_or_else(|| io_error(libc::ENETUNREACH))?,
        ),
        None => None,
    };
    let iface = core
        .net
        .route_via(dst.ip(), from, only)
        .ok_or_else(|| io_error(libc::ENETUNREACH))?;
    let src = match from {
        Some(f) => f,
        None => core
            .net
            .source_for(iface, dst.ip())
            .ok_or_else(|| io_error(libc::EADDRNOTAVAIL))?,
    };
    let port = match bound {
        Some(b) => b.port(),
        None => core.ephemeral(id, false, Some(src))?,
    };
    let s = core
        .socks
        .get_mut(&id)
        .ok_or_else(|| io_error(libc::EBADF))?;
    let mut sock = new_socket(&s.opts);
    sock.connect(core.net.ifaces[iface].iface.context(), dst, (src, port))
        .map_err(|e| match e {
            tcp::ConnectError::InvalidState => io_error(libc::EISCONN),
            tcp::ConnectError::Unaddressable => io_error(libc::EADDRNOTAVAIL),
        })?;
    let pe = s.pe.as_ref().ok_or_else(|| io_error(libc::EINVAL))?;
    let app = app_end(&s.handle).ok_or_else(|| io_error(libc::EBADF))?;
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
    Err(io_error(libc::EINPROGRESS))
}

/// Takes the filler back out of the plug-in's end and restores `SO_SNDBUF`
/// ([`filler::unfill`]): the application's end turns writable.
fn unfill(handle: &Option<Handle>, pe: Option<&std::os::fd::OwnedFd>, f: Filler) {
    filler::unfill(app_end(handle), pe.map(|p| p.as_fd()), f);
}

#[cfg(test)]
mod tests;
