//! One smoltcp stack: its interfaces ([`Net`]), its sockets, and the control calls the host
//! makes on them. Runs in the host process: control calls on the host's thread, everything
//! else on the stack's event-loop thread ([`crate::evloop`]); both hold [`Shared::core`] while
//! they work, and a control call that changes anything wakes the loop through [`Shared::wake`].
//!
//! Sockets are "proxied, fd data" (docs/proxied.md): `socket`/`accept` return the application's
//! end of a socketpair, whose fd number is the socket's handle in every later call; the plug-in
//! keeps the other end and pumps it. All control calls are non-blocking.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use ioth_plugin_sdk::error;
use ioth_plugin_sdk::event::Event;
use ioth_plugin_sdk::proxied::Handle;
use ioth_plugin_sdk::vde::{vdeplug, vnl};

use crate::device::VdeDevice;
use crate::net::{Iface, Net};
use crate::netlink::Nl;
use crate::packet::Packet;
use crate::rawip::RawIp;
use crate::sys;
use crate::tcp::Tcp;
use crate::udp::Udp;
use crate::{addr, netlink, packet, rawip, tcp, udp};

pub(crate) fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

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

/// What kind of socket.
pub enum Kind {
    Tcp(Tcp),
    Udp(Udp),
    Netlink(Nl),
    /// `AF_PACKET` ([`crate::packet`]).
    Packet(Packet),
    /// Raw `IPPROTO_ICMPV6`/`IPPROTO_ICMP` ([`crate::rawip`]).
    RawIp(RawIp),
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
    /// The events to poll `pe` for.
    pub fn interest(&self, net: &Net) -> i16 {
        match &self.kind {
            Kind::Tcp(t) => tcp::interest(t, self, net),
            Kind::Udp(u) => udp::interest(u, self),
            Kind::Netlink(n) => n.interest(self.want_out),
            Kind::Packet(p) => p.interest(),
            Kind::RawIp(r) => r.interest(),
        }
    }

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
            .ok_or_else(|| errno(libc::EBADF))?;
        let s = self.socks.get_mut(&id).ok_or_else(|| errno(libc::EBADF))?;
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
        Err(errno(libc::EADDRNOTAVAIL))
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

    /// `socket(domain, ty, protocol)`.
    pub fn socket(&mut self, domain: i32, ty: i32, protocol: i32) -> io::Result<Handle> {
        let flags = ty & (libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
        let base = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
        let (kind, pair_ty) = match (domain, base) {
            (libc::AF_INET | libc::AF_INET6, libc::SOCK_STREAM) => {
                if protocol != 0 && protocol != libc::IPPROTO_TCP {
                    return Err(errno(libc::EPROTONOSUPPORT));
                }
                (Kind::Tcp(Tcp::new()), libc::SOCK_STREAM)
            }
            (libc::AF_INET | libc::AF_INET6, libc::SOCK_DGRAM) => {
                if protocol != 0 && protocol != libc::IPPROTO_UDP {
                    return Err(errno(libc::EPROTONOSUPPORT));
                }
                (Kind::Udp(Udp::new()), libc::SOCK_SEQPACKET)
            }
            (libc::AF_INET | libc::AF_INET6, libc::SOCK_RAW) => {
                return rawip::socket(self, domain, protocol, flags)
            }
            (libc::AF_INET | libc::AF_INET6, _) => return Err(errno(libc::EPROTONOSUPPORT)),
            (libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_DGRAM) => match protocol {
                libc::NETLINK_ROUTE => (Kind::Netlink(Nl::new()), libc::SOCK_SEQPACKET),
                libc::NETLINK_SOCK_DIAG => (Kind::Netlink(Nl::sock_diag()), libc::SOCK_SEQPACKET),
                _ => return Err(errno(libc::EPROTONOSUPPORT)),
            },
            (libc::AF_NETLINK, _) => return Err(errno(libc::ESOCKTNOSUPPORT)),
            (libc::AF_PACKET, _) => return packet::socket(self, base, flags, protocol),
            _ => return Err(errno(libc::EAFNOSUPPORT)),
        };
        let (pe, app) = new_pair(pair_ty, flags)?;
        Ok(self.add(domain, kind, pe, app))
    }

    /// `close(handle)`: the host is done with the socket. Data the application wrote still
    /// goes out; a connection closes with FIN once the application's end is gone.
    pub fn close(&mut self, handle: Handle) -> io::Result<()> {
        let id = self
            .handles
            .remove(&handle)
            .ok_or_else(|| errno(libc::EBADF))?;
        let Some(s) = self.socks.get_mut(&id) else {
            return Ok(());
        };
        s.handle = None;
        s.orphan_since = Some(std::time::Instant::now());
        let remove = match &mut s.kind {
            Kind::Tcp(_) => tcp::close(&mut self.net, s, &mut self.graves),
            Kind::Udp(_) | Kind::Packet(_) | Kind::RawIp(_) => false,
            Kind::Netlink(_) => true,
        };
        if remove {
            self.socks.remove(&id);
        }
        Ok(())
    }

    /// `bind`.
    pub fn bind(&mut self, handle: Handle, a: &[u8]) -> io::Result<()> {
        let (id, s) = self.sock(handle)?;
        if matches!(s.kind, Kind::Netlink(_)) {
            return Ok(());
        }
        if matches!(s.kind, Kind::Packet(_)) {
            let s = self.socks.get_mut(&id).ok_or_else(|| errno(libc::EBADF))?;
            return packet::bind(&self.net, s, a);
        }
        if matches!(s.kind, Kind::RawIp(_)) {
            let s = self.socks.get_mut(&id).ok_or_else(|| errno(libc::EBADF))?;
            return rawip::bind(&self.net, s, a);
        }
        let domain = s.domain;
        let a = addr::from_sockaddr(a, domain)?.ok_or_else(|| errno(libc::EAFNOSUPPORT))?;
        if domain == libc::AF_INET6 && a.is_ipv4() && s.opts.v6only {
            return Err(errno(libc::EADDRNOTAVAIL));
        }
        let (udp, already) = match &s.kind {
            Kind::Tcp(t) => (false, t.local.is_some()),
            Kind::Udp(u) => (true, u.local.is_some()),
            Kind::Netlink(_) | Kind::Packet(_) | Kind::RawIp(_) => unreachable!(),
        };
        if already {
            return Err(errno(libc::EINVAL));
        }
        let ip = (!a.ip().is_unspecified()).then_some(a.ip());
        if let Some(ip) = ip {
            // A UDP socket may bind to a multicast group (it then receives that group's).
            if !(self.net.is_local(ip) || udp && ip.is_multicast()) {
                return Err(errno(libc::EADDRNOTAVAIL));
            }
        }
        let port = if a.port() == 0 {
            self.ephemeral(id, udp, ip)?
        } else {
            if self.port_taken(id, udp, ip, a.port()) {
                return Err(errno(libc::EADDRINUSE));
            }
            a.port()
        };
        let local = SocketAddr::new(a.ip(), port);
        let s = self.socks.get_mut(&id).ok_or_else(|| errno(libc::EBADF))?;
        match &mut s.kind {
            Kind::Tcp(t) => t.local = Some(local),
            Kind::Udp(_) => udp::bind(&mut self.net, s, local),
            Kind::Netlink(_) | Kind::Packet(_) | Kind::RawIp(_) => {}
        }
        Ok(())
    }

    /// `getsockname`.
    pub fn getsockname(&mut self, handle: Handle) -> io::Result<Vec<u8>> {
        let (_, s) = self.sock(handle)?;
        let local = match &s.kind {
            Kind::Tcp(t) => t.local_addr(),
            Kind::Udp(u) => u.local,
            Kind::Netlink(_) => return Ok(netlink::sockaddr_nl()),
            Kind::Packet(p) => {
                let (ifindex, proto) = (p.ifindex, p.proto);
                return Ok(packet::getsockname(&self.net, ifindex, proto));
            }
            Kind::RawIp(r) => r.local.map(|ip| SocketAddr::new(ip, 0)),
        };
        Ok(addr::to_sockaddr(
            local.unwrap_or_else(|| addr::unspecified(s.domain)),
            s.domain,
        ))
    }

    /// `getpeername`.
    pub fn getpeername(&mut self, handle: Handle) -> io::Result<Vec<u8>> {
        let (_, s) = self.sock(handle)?;
        let peer = match &s.kind {
            Kind::Tcp(t) => t.peer(),
            Kind::Udp(u) => u.remote,
            Kind::Netlink(_) => return Ok(netlink::sockaddr_nl()),
            Kind::Packet(_) => return Err(errno(libc::EOPNOTSUPP)),
            Kind::RawIp(_) => None,
        };
        let peer = peer.ok_or_else(|| errno(libc::ENOTCONN))?;
        Ok(addr::to_sockaddr(peer, s.domain))
    }

    /// `shutdown`: acts on the application's end, so that the plug-in's end sees EOF after the
    /// data already written (SHUT_WR → FIN) and the application reads EOF (SHUT_RD).
    pub fn shutdown(&mut self, handle: Handle, how: i32) -> io::Result<()> {
        if !matches!(how, libc::SHUT_RD | libc::SHUT_WR | libc::SHUT_RDWR) {
            return Err(errno(libc::EINVAL));
        }
        let (_, s) = self.sock(handle)?;
        let connected = match &s.kind {
            Kind::Tcp(t) => t.peer().is_some(),
            Kind::Udp(u) => u.remote.is_some(),
            Kind::Netlink(_) => true,
            Kind::Packet(_) => return Err(errno(libc::EOPNOTSUPP)),
            Kind::RawIp(_) => false,
        };
        if !connected {
            return Err(errno(libc::ENOTCONN));
        }
        let app = app_end(&s.handle).ok_or_else(|| errno(libc::EBADF))?;
        sys::shutdown(app, how)
    }

    /// `setsockopt`.
    pub fn setsockopt(
        &mut self,
        handle: Handle,
        level: i32,
        name: i32,
        v: &[u8],
    ) -> io::Result<()> {
        let id = *self
            .handles
            .get(&handle)
            .ok_or_else(|| errno(libc::EBADF))?;
        let sending = matches!(level, libc::IPPROTO_IP | libc::IPPROTO_IPV6)
            || (level == libc::SOL_SOCKET
                && matches!(
                    name,
                    libc::SO_BROADCAST | libc::SO_BINDTODEVICE | SO_BINDTOIFINDEX
                ));
        if sending {
            udp::flush_written(self, id);
        }
        let s = self.socks.get_mut(&id).ok_or_else(|| errno(libc::EBADF))?;
        let int = || -> io::Result<i32> {
            v.get(..4)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| errno(libc::EINVAL))
        };
        if matches!(s.kind, Kind::Netlink(_)) {
            return match level {
                libc::SOL_SOCKET => Ok(()),
                _ => Err(errno(libc::ENOPROTOOPT)),
            };
        }
        if matches!(s.kind, Kind::Packet(_)) && level != libc::SOL_SOCKET {
            // SOL_PACKET options (memberships, rings, fanout, …) are not emulated; the IP
            // levels are not a packet socket's (the kernel says ENOPROTOOPT for both).
            return Err(errno(libc::ENOPROTOOPT));
        }
        if let Kind::RawIp(r) = &mut s.kind {
            if let Some(res) = r.setsockopt(&self.net, level, name, v) {
                return res;
            }
        }
        if matches!(s.kind, Kind::Udp(_)) {
            // Ok(true): a membership was dropped, the interface may leave the group.
            if let Some(r) = udp::setsockopt(&mut self.net, s, level, name, v) {
                if matches!(r, Ok(true)) {
                    self.release_groups();
                }
                return r.map(|_| ());
            }
        }
        let buf = |v: i32| (v.max(0) as usize).clamp(BUF_MIN, BUF_MAX);
        match (level, name) {
            (libc::SOL_SOCKET, libc::SO_REUSEADDR) => s.opts.reuseaddr = int()? != 0,
            (libc::SOL_SOCKET, libc::SO_REUSEPORT) => s.opts.reuseaddr = int()? != 0,
            (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => s.opts.keepalive = int()? != 0,
            (libc::SOL_SOCKET, libc::SO_RCVBUF) => s.opts.rcvbuf = buf(int()?),
            (libc::SOL_SOCKET, libc::SO_SNDBUF) => s.opts.sndbuf = buf(int()?),
            (libc::SOL_SOCKET, libc::SO_LINGER) => {
                if v.len() < 8 {
                    return Err(errno(libc::EINVAL));
                }
                let on = i32::from_ne_bytes([v[0], v[1], v[2], v[3]]);
                let secs = i32::from_ne_bytes([v[4], v[5], v[6], v[7]]);
                s.opts.linger0 = on != 0 && secs == 0;
            }
            (libc::SOL_SOCKET, libc::SO_BROADCAST) => s.opts.broadcast = int()? != 0,
            (libc::SOL_SOCKET, libc::SO_BINDTODEVICE | SO_BINDTOIFINDEX) => {
                s.opts.bound_dev = bound_device(&self.net, name, v)?
            }
            (libc::SOL_SOCKET, libc::SO_RCVTIMEO | libc::SO_SNDTIMEO) => {}
            (libc::IPPROTO_TCP, libc::TCP_NODELAY) if matches!(s.kind, Kind::Tcp(_)) => {
                s.opts.nodelay = int()? != 0
            }
            (libc::IPPROTO_TCP, _) if matches!(s.kind, Kind::Tcp(_)) => {}
            (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) if s.domain == libc::AF_INET6 => {
                s.opts.v6only = int()? != 0
            }
            (libc::IPPROTO_IP | libc::IPPROTO_IPV6, _) => {}
            _ => return Err(errno(libc::ENOPROTOOPT)),
        }
        let opts = s.opts;
        if let Kind::Tcp(t) = &mut s.kind {
            tcp::apply_opts(&mut self.net, t, &opts);
        }
        Ok(())
    }

    /// `getsockopt`: the value's bytes (the caller truncates them to the length it was given).
    pub fn getsockopt(&mut self, handle: Handle, level: i32, name: i32) -> io::Result<Vec<u8>> {
        let id = *self
            .handles
            .get(&handle)
            .ok_or_else(|| errno(libc::EBADF))?;
        let s = self.socks.get_mut(&id).ok_or_else(|| errno(libc::EBADF))?;
        let (ty, proto) = match &s.kind {
            Kind::Tcp(_) => (libc::SOCK_STREAM, libc::IPPROTO_TCP),
            Kind::Udp(_) => (libc::SOCK_DGRAM, libc::IPPROTO_UDP),
            Kind::Netlink(n) => (libc::SOCK_RAW, n.protocol()),
            Kind::Packet(p) => (
                if p.raw {
                    libc::SOCK_RAW
                } else {
                    libc::SOCK_DGRAM
                },
                p.protocol,
            ),
            Kind::RawIp(r) => {
                if let Some(v) = r.getsockopt(level, name) {
                    return v;
                }
                (libc::SOCK_RAW, r.protocol())
            }
        };
        if let Kind::Udp(u) = &s.kind {
            if matches!(level, libc::IPPROTO_IP | libc::IPPROTO_IPV6) {
                return u.ip.getsockopt(s.domain, level, name);
            }
        }
        let b = |v: bool| i32::from(v);
        let v: i32 = match (level, name) {
            (libc::SOL_SOCKET, libc::SO_ERROR) => std::mem::take(&mut s.so_error),
            (libc::SOL_SOCKET, libc::SO_TYPE) => ty,
            (libc::SOL_SOCKET, libc::SO_DOMAIN) => s.domain,
            (libc::SOL_SOCKET, libc::SO_PROTOCOL) => proto,
            (libc::SOL_SOCKET, libc::SO_ACCEPTCONN) => {
                b(matches!(&s.kind, Kind::Tcp(t) if t.is_listening()))
            }
            (libc::SOL_SOCKET, libc::SO_REUSEADDR | libc::SO_REUSEPORT) => b(s.opts.reuseaddr),
            (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => b(s.opts.keepalive),
            (libc::SOL_SOCKET, libc::SO_RCVBUF) => s.opts.rcvbuf as i32,
            (libc::SOL_SOCKET, libc::SO_SNDBUF) => s.opts.sndbuf as i32,
            (libc::SOL_SOCKET, libc::SO_LINGER) => {
                let mut v = b(s.opts.linger0).to_ne_bytes().to_vec();
                v.extend_from_slice(&0i32.to_ne_bytes());
                return Ok(v);
            }
            (libc::SOL_SOCKET, libc::SO_BROADCAST) => b(s.opts.broadcast),
            (libc::SOL_SOCKET, libc::SO_BINDTODEVICE) => {
                // The name with its NUL, as Linux; nothing when not bound.
                let name = s.opts.bound_dev.and_then(|x| self.net.by_index(x));
                return Ok(name.map_or_else(Vec::new, |i| {
                    let mut n = self.net.ifaces[i].name.as_bytes().to_vec();
                    n.push(0);
                    n
                }));
            }
            (libc::SOL_SOCKET, SO_BINDTOIFINDEX) => s.opts.bound_dev.unwrap_or(0) as i32,
            (libc::IPPROTO_TCP, libc::TCP_NODELAY) if ty == libc::SOCK_STREAM => b(s.opts.nodelay),
            (libc::IPPROTO_TCP, libc::TCP_MAXSEG) if ty == libc::SOCK_STREAM => 1460,
            (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) if s.domain == libc::AF_INET6 => {
                b(s.opts.v6only)
            }
            _ => return Err(errno(libc::ENOPROTOOPT)),
        };
        Ok(v.to_ne_bytes().to_vec())
    }
}

/// The interface index `SO_BINDTODEVICE` (a name, `""` or nothing to unbind) or
/// `SO_BINDTOIFINDEX` (an index, 0 to unbind) names: `ENODEV` for an unknown one, `EINVAL` for
/// a short index, as Linux.
pub fn bound_device(net: &Net, name: i32, v: &[u8]) -> io::Result<Option<u32>> {
    if name == SO_BINDTOIFINDEX {
        let b = v.get(..4).ok_or_else(|| errno(libc::EINVAL))?;
        let x = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        return match x {
            0 => Ok(None),
            x if x > 0 && net.by_index(x as u32).is_some() => Ok(Some(x as u32)),
            _ => Err(errno(libc::ENODEV)),
        };
    }
    // Linux reads at most IFNAMSIZ - 1 bytes, up to the first NUL.
    let v = &v[..v.len().min(libc::IFNAMSIZ - 1)];
    let v = v.split(|b| *b == 0).next().unwrap_or_default();
    if v.is_empty() {
        return Ok(None);
    }
    let name = std::str::from_utf8(v).map_err(|_| errno(libc::ENODEV))?;
    let i = net.by_name(name).ok_or_else(|| errno(libc::ENODEV))?;
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

/// A stack: its shared state and its event-loop thread.
pub struct Stack {
    pub shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Stack {
    /// `newstack(vnls)`: one VDE interface per VNL plus `lo`; starts the event loop.
    pub fn new(vnls: &[&str]) -> io::Result<Stack> {
        let parsed = vnl::parse_all(vnls)?;
        if !parsed.is_empty() {
            vdeplug::ensure_loaded()?;
        }
        let now = smoltcp::time::Instant::from_micros(0);
        let mut ifaces = vec![Iface::loopback(now)];
        for (k, v) in parsed.iter().enumerate() {
            if v.ifname == "lo" {
                return Err(error(
                    libc::EINVAL,
                    "malformed VNL list: interface name \"lo\" is the loopback's",
                ));
            }
            let conn = vdeplug::Conn::open(&v.url, &format!("ioth smoltcp {}", v.ifname))?;
            let dev = VdeDevice::new(conn, crate::net::DEFAULT_MTU as usize)?;
            ifaces.push(Iface::vde(k as u32 + 2, &v.ifname, dev, now));
        }
        let core = Core::new(Net::new(ifaces));
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            wake: Event::new()?,
        });
        let s2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ioth-smoltcp".into())
            .spawn(move || crate::evloop::run(&s2))?;
        Ok(Stack {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the event loop and closes every socket and VDE connection.
    pub fn stop(&self) {
        self.shared.lock().stopping = true;
        self.shared.wake.signal();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        let mut core = self.shared.lock();
        core.handles.clear();
        core.socks.clear();
        core.net.ifaces.clear();
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
    }
}
