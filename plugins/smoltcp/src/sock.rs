//! The types every part of a smoltcp stack shares: a socket ([`Sock`]: its pair, its
//! [`Kind`] with the protocol's state, its options), the state behind the stack's mutex
//! ([`Core`]: interfaces, sockets by id and by handle, ports) and what the loop thread and the
//! control calls share ([`Shared`]). A leaf of the plug-in's module graph: it depends on the
//! interfaces ([`crate::net`]), the protocol states ([`crate::kind`]) and the system calls
//! ([`crate::sys`]); the control calls ([`crate::stack`]) and the protocols that drive the
//! sockets ([`crate::tcp`], [`crate::udp`], …) depend on it.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};

use ioth_plugin_sdk::event::Event;
use ioth_plugin_sdk::proxied::Handle;

use crate::addr;
pub use crate::kind::Kind;
use crate::net::Net;
use crate::sys;
use ioth_plugin_sdk::errno::io_error;

/// Socket options the plug-in keeps (or applies to smoltcp).
#[derive(Debug, Clone, Copy)]
pub struct Opts {
    pub reuseaddr: bool,
    pub keepalive: bool,
    pub nodelay: bool,
    pub v6only: bool,
    /// smoltcp receive buffer of TCP sockets (window), bytes.
    pub rcvbuf: usize,
    /// smoltcp transmit buffer of TCP sockets, bytes.
    pub sndbuf: usize,
    /// `SO_LINGER` with a zero timeout: close resets.
    pub linger0: bool,
    /// `SO_BROADCAST`: a UDP socket may send to an IPv4 broadcast address.
    pub broadcast: bool,
    /// `SO_BINDTODEVICE`: the interface index a UDP socket sends and receives on.
    pub bound_dev: Option<u32>,
}

/// Default smoltcp TCP receive buffer, hence the window a peer may fill (and its scale, 1).
///
/// A VDE switch (`vde_plug null:// switch://`) sends every frame non-blocking on one datagram
/// socket and drops it when that fails, so all frames queued toward its ports share that
/// socket's send budget (`net.core.wmem_default`, 212992 bytes here: about 90 full 1514-byte
/// frames). A window much larger than that makes a sender overflow it whenever the receiver is
/// not scheduled for a moment, and the switch drops a whole run of frames (measured: 256 KiB
/// windows lost runs every few MiB; 128 KiB none in 18 × 32 MiB). A kernel sender recovers
/// with SACK; smoltcp cannot (see [`TCP_SNDBUF`]).
pub const TCP_RCVBUF: usize = 128 * 1024;
/// Default smoltcp TCP send buffer, which bounds the data smoltcp has in flight.
///
/// smoltcp's loss recovery is weak: a fast retransmit resends one segment, and any further
/// segment lost in the same window (the switch drops runs of them) waits for the retransmission
/// timeout, at least 1 s (RFC 6298 minimum, fixed in smoltcp). So the sender must not lose: its
/// flight stays well inside the switch's budget (see [`TCP_RCVBUF`]). Measured smoltcp →
/// vdestack over one switch, 32 MiB transfers: 256 KiB ≈ 240 Mbit/s (1 s stalls),
/// 128 KiB ≈ 2.4 Gbit/s, 96 KiB ≈ 2.1–2.2 Gbit/s, 64 KiB ≈ 2.0 Gbit/s, none with stalls; 96 KiB
/// leaves room for the reverse direction and another flow on the same switch.
pub const TCP_SNDBUF: usize = 96 * 1024;
/// Bounds of `SO_RCVBUF`/`SO_SNDBUF`.
pub const BUF_MIN: usize = 4096;
/// See [`BUF_MIN`].
pub const BUF_MAX: usize = 4 * 1024 * 1024;

impl Default for Opts {
    fn default() -> Self {
        Opts {
            reuseaddr: false,
            keepalive: false,
            nodelay: true,
            v6only: false,
            rcvbuf: TCP_RCVBUF,
            sndbuf: TCP_SNDBUF,
            linger0: false,
            broadcast: false,
            bound_dev: None,
        }
    }
}

/// One socket of the stack.
pub struct Sock {
    /// The application end's fd number, until the host closes the socket.
    pub handle: Option<Handle>,
    /// The plug-in's end of the pair (gone after a reset).
    pub pe: Option<OwnedFd>,
    /// `AF_INET`, `AF_INET6`, `AF_NETLINK` or `AF_PACKET`.
    pub domain: i32,
    pub kind: Kind,
    pub opts: Opts,
    /// Pending `SO_ERROR`.
    pub so_error: i32,
    /// Events poll reported on `pe` in the last turn.
    pub revents: i16,
    /// The pair was full: wait for `POLLOUT` on `pe`.
    pub want_out: bool,
    /// When the host closed it (it lingers until its data is out).
    pub orphan_since: Option<std::time::Instant>,
}

/// The application's end of a socket, by its handle: the host keeps that fd number open until
/// it has called the plug-in's `close`, which clears the handle under the stack mutex; the
/// borrow is tied to the handle field, so it cannot outlive the mutex guard.
#[allow(unsafe_code)]
pub fn app_end(handle: &Option<Handle>) -> Option<BorrowedFd<'_>> {
    // SAFETY: a handle still set is an fd number the host has not closed (see above), and the
    // borrow ends before the mutex guard that gives access to `handle`.
    handle.map(|h| unsafe { h.borrow() })
}

/// What the event loop must still do for a socket after this turn.
pub enum Fate {
    Keep,
    Remove,
}

impl Sock {
    /// The local port and address this socket holds, for bind uniqueness: (udp?, address,
    /// port, listening).
    fn binding(&self) -> Option<(bool, Option<IpAddr>, u16, bool)> {
        let (udp, local, listening) = match &self.kind {
            Kind::Tcp(t) => (false, t.local, t.is_listening()),
            Kind::Udp(u) => (true, u.local, false),
            Kind::Netlink(_) | Kind::Packet(_) | Kind::RawIp(_) => return None,
        };
        let l = local?;
        let ip = (!l.ip().is_unspecified()).then_some(l.ip());
        Some((udp, ip, l.port(), listening))
    }
}

/// A smoltcp TCP socket no application socket owns any more, kept until it has closed.
pub struct Grave {
    pub iface: usize,
    pub h: smoltcp::iface::SocketHandle,
    pub until: std::time::Instant,
}

/// Everything behind the stack's mutex.
pub struct Core {
    pub net: Net,
    pub socks: HashMap<u64, Sock>,
    /// Handle (application fd number) → socket id.
    pub handles: HashMap<Handle, u64>,
    next_id: u64,
    pub graves: Vec<Grave>,
    pub(crate) next_port: [u16; 2],
    /// Scratch buffer for datagrams (UDP, netlink).
    pub scratch: Vec<u8>,
    base: std::time::Instant,
    pub stopping: bool,
}

/// `SO_BINDTOIFINDEX` (Linux 5.0; not in the libc crate for every target).
pub const SO_BINDTOIFINDEX: i32 = 62;

/// First and last ephemeral port (Linux's default range).
const EPHEMERAL: (u16, u16) = (32768, 60999);

impl Core {
    /// The state of a stack over `net`, without sockets.
    pub fn new(net: Net) -> Core {
        let mut seed = [0u8; 2];
        sys::random_bytes(&mut seed);
        let start = EPHEMERAL.0 + u16::from_ne_bytes(seed) % (EPHEMERAL.1 - EPHEMERAL.0);
        Core {
            net,
            socks: HashMap::new(),
            handles: HashMap::new(),
            next_id: 1,
            graves: Vec::new(),
            next_port: [start, start],
            scratch: vec![0; 65536 + addr::HDR_LEN],
            base: std::time::Instant::now(),
            stopping: false,
        }
    }

    /// smoltcp's clock: monotonic, from the stack's start.
    pub fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.base.elapsed().as_micros() as i64)
    }

    pub fn sock(&mut self, handle: Handle) -> io::Result<(u64, &mut Sock)> {
        let id = *self
            .handles
            .get(&handle)
            .ok_or_else(|| io_error(libc::EBADF))?;
        let s = self
            .socks
            .get_mut(&id)
            .ok_or_else(|| io_error(libc::EBADF))?;
        Ok((id, s))
    }

    /// Whether `port` (with address `ip`, `None` = any) is taken for a new binding of socket
    /// `me`.
    pub fn port_taken(&self, me: u64, udp: bool, ip: Option<IpAddr>, port: u16) -> bool {
        let reuse = self.socks.get(&me).is_some_and(|s| s.opts.reuseaddr);
        self.socks.iter().any(|(id, s)| {
            if *id == me {
                return false;
            }
            let Some((u, a, p, listening)) = s.binding() else {
                return false;
            };
            let overlap = match (a, ip) {
                (None, _) | (_, None) => true,
                (Some(x), Some(y)) => x == y,
            };
            // Two TCP sockets may share a port when both say SO_REUSEADDR and neither listens.
            let shared = !udp && reuse && s.opts.reuseaddr && !listening;
            u == udp && p == port && overlap && !shared
        })
    }

    /// Makes the interfaces leave the multicast groups no socket holds a membership of.
    pub fn release_groups(&mut self) {
        let held: Vec<crate::mcast::Membership> = self
            .socks
            .values()
            .filter_map(|s| match &s.kind {
                Kind::Udp(u) => Some(u.ip.groups.iter().copied()),
                _ => None,
            })
            .flatten()
            .collect();
        crate::mcast::release(&mut self.net, &held);
    }

    /// A free ephemeral port for socket `me`.
    pub fn ephemeral(&mut self, me: u64, udp: bool, ip: Option<IpAddr>) -> io::Result<u16> {
        let k = usize::from(udp);
        let span = u32::from(EPHEMERAL.1 - EPHEMERAL.0) + 1;
        for _ in 0..span {
            let p = self.next_port[k];
            self.next_port[k] = if p >= EPHEMERAL.1 { EPHEMERAL.0 } else { p + 1 };
            if !self.port_taken(me, udp, ip, p) {
                return Ok(p);
            }
        }
        Err(io_error(libc::EADDRNOTAVAIL))
    }

    /// Registers a new socket whose application end is `app`; returns its handle.
    pub fn add(&mut self, domain: i32, kind: Kind, pe: OwnedFd, app: OwnedFd) -> Handle {
        let handle = Handle::give(app);
        let id = self.next_id;
        self.next_id += 1;
        self.socks.insert(
            id,
            Sock {
                handle: Some(handle),
                pe: Some(pe),
                domain,
                kind,
                opts: Opts::default(),
                so_error: 0,
                revents: 0,
                want_out: false,
                orphan_since: None,
            },
        );
        self.handles.insert(handle, id);
        handle
    }
}

/// The interface index `SO_BINDTODEVICE` (a name, `""` or nothing to unbind) or
/// `SO_BINDTOIFINDEX` (an index, 0 to unbind) names: `ENODEV` for an unknown one, `EINVAL` for
/// a short index, as Linux.
pub fn bound_device(net: &Net, name: i32, v: &[u8]) -> io::Result<Option<u32>> {
    if name == SO_BINDTOIFINDEX {
        let b = v.get(..4).ok_or_else(|| io_error(libc::EINVAL))?;
        let x = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        return match x {
            0 => Ok(None),
            x if x > 0 && net.by_index(x as u32).is_some() => Ok(Some(x as u32)),
            _ => Err(io_error(libc::ENODEV)),
        };
    }
    // Linux reads at most IFNAMSIZ - 1 bytes, up to the first NUL.
    let v = &v[..v.len().min(libc::IFNAMSIZ - 1)];
    let v = v.split(|b| *b == 0).next().unwrap_or_default();
    if v.is_empty() {
        return Ok(None);
    }
    let name = std::str::from_utf8(v).map_err(|_| io_error(libc::ENODEV))?;
    let i = net.by_name(name).ok_or_else(|| io_error(libc::ENODEV))?;
    Ok(Some(net.ifaces[i].index))
}

/// A socketpair for a new socket: the plug-in's end non-blocking; the application's end with
/// the `SOCK_NONBLOCK`/`SOCK_CLOEXEC` flags of the request.
pub fn new_pair(ty: i32, flags: i32) -> io::Result<(OwnedFd, OwnedFd)> {
    let (pe, app) = sys::socketpair(ty)?;
    sys::set_nonblocking(pe.as_fd(), true)?;
    if flags & libc::SOCK_NONBLOCK != 0 {
        sys::set_nonblocking(app.as_fd(), true)?;
    }
    if flags & libc::SOCK_CLOEXEC == 0 {
        sys::clear_cloexec(app.as_fd())?;
    }
    Ok((pe, app))
}

/// What the loop thread and the control calls share.
pub struct Shared {
    pub core: Mutex<Core>,
    /// Wakes the event loop.
    pub wake: Event,
}

impl Shared {
    /// The core, even if a panic poisoned the mutex (every change is complete before a call
    /// can panic, and the loop re-derives its state each turn).
    pub fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}
