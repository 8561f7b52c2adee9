//! UDP sockets: smoltcp `udp::Socket`s behind a `SOCK_SEQPACKET` socketpair, one datagram per
//! record. Runs in the host process under the stack's mutex.
//!
//! - A bound socket has one smoltcp socket in every interface it may receive on (all of them
//!   for the unspecified address); a datagram leaves through the interface
//!   [`crate::net::Net::route`] picks. An unbound socket is bound to an ephemeral port when it
//!   first sends or connects, as in Linux.
//! - Not connected: each record starts with the 28-byte address header (docs/proxied.md): the
//!   destination going out, the source coming in. Connected: bare payloads, and only datagrams
//!   from the peer are delivered. `connect` first takes what the application wrote before it,
//!   with the framing it was written with.
//! - A datagram smoltcp has no room for yet waits in the socket (one), and the pair is not read
//!   until it has left; a received one stays in smoltcp until the pair takes it.
//! - Datagrams up to the largest UDP payload (65507 bytes over IPv4, 65527 over IPv6) go both
//!   ways: smoltcp fragments and reassembles IPv4 (`proto-ipv4-fragmentation`), one fragmented
//!   datagram per interface at a time ([`crate::net::Iface::big4`]); IPv6 is fragmented and
//!   reassembled by [`crate::frag`]. A larger record from the application is dropped (the
//!   client library refuses one with `EMSGSIZE` before it reaches the pair; a plain send(2)
//!   cannot be refused, see docs/proxied.md).
//! - A datagram whose neighbour never answers is given up after [`NEIGH_STALL`], as Linux gives
//!   up an unresolved neighbour's queue: smoltcp keeps it at the head of its socket's transmit
//!   buffer and retries neighbour discovery forever, holding up every later datagram of the
//!   socket. Each smoltcp socket ([`Leg`]) keeps a copy of what it queued there; when the head
//!   has not left for [`NEIGH_STALL`], the smoltcp socket is made anew (same binding), what it
//!   had received is kept (moved to [`Udp::inbox`]), and what was queued behind the head is
//!   queued again, except the datagrams to the head's destination (given up with it).

use std::collections::VecDeque;
use std::io;
use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::fd::AsFd;

use ioth_plugin_sdk::proxied::Handle;
use std::time::Duration;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp::UdpMetadata;
use smoltcp::socket::{udp, Socket as AnySocket};
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpEndpoint, IpListenEndpoint};

use crate::mcast::{self, link_scope, Change};
use crate::net::{Net, LO};
use crate::stack::{errno, Core, Fate, Kind, Opts, Sock};
use crate::tcp::listen_ifaces;
use crate::{addr, sys};

/// Datagrams queued per direction in each smoltcp socket.
const PACKETS: usize = 128;
/// Payload bytes per direction in each smoltcp socket.
const PAYLOAD: usize = 256 * 1024;
/// How long a closed socket may take to send what it still holds.
const LINGER: Duration = Duration::from_secs(2);
/// Largest UDP payloads: IPv4 (65535 − 20 − 8) and IPv6 (65535 − 8).
const MAX_V4: usize = 65507;
const MAX_V6: usize = 65527;
/// IP and UDP headers.
const IPV4_UDP_HDR: usize = 28;
const IPV6_UDP_HDR: usize = 48;
/// How long the head datagram of a smoltcp socket may wait (for a neighbour that never
/// answers) before it is given up: Linux's ARP/NDP gives up after about 3 s (3 probes, 1 s
/// apart). smoltcp retries every second, so a stuck one is given up within 3 to 4 s.
pub const NEIGH_STALL: Duration = Duration::from_secs(3);

/// A copy of one datagram queued in a smoltcp socket's transmit buffer.
struct Queued {
    payload: Vec<u8>,
    dst: UdpMetadata,
    /// The bytes it takes there: the payload, and the padding smoltcp put before it when the
    /// ring wrapped (dropped on its own by a dispatch that fails).
    footprint: usize,
}

/// One smoltcp socket of a UDP socket, in the set of interface `iface`.
struct Leg {
    iface: usize,
    handle: SocketHandle,
    /// Copies of what its transmit buffer holds, oldest first (see the module doc).
    queued: VecDeque<Queued>,
    /// The footprints of `queued`: equal to smoltcp's `send_queue()` after each accounting.
    queued_bytes: usize,
    /// Since when the head of `queued` has been at the head.
    head_since: std::time::Instant,
}

impl Leg {
    fn new(iface: usize, handle: SocketHandle) -> Leg {
        Leg {
            iface,
            handle,
            queued: VecDeque::new(),
            queued_bytes: 0,
            head_since: std::time::Instant::now(),
        }
    }

    /// Queues `payload` to `dst` (and from its source, if given) in smoltcp socket `k` (this
    /// leg's), keeping a copy.
    fn enqueue(
        &mut self,
        k: &mut udp::Socket<'_>,
        payload: &[u8],
        dst: UdpMetadata,
    ) -> Result<(), udp::SendError> {
        let before = k.send_queue();
        k.send_slice(payload, dst)?;
        let footprint = k.send_queue().saturating_sub(before);
        if self.queued.is_empty() {
            self.head_since = std::time::Instant::now();
        }
        self.queued_bytes += footprint;
        self.queued.push_back(Queued {
            payload: payload.to_vec(),
            dst,
            footprint,
        });
        Ok(())
    }

    /// After smoltcp's poll: forgets the copies of what left (`bytes`: smoltcp's
    /// `send_queue()`). An empty datagram takes no bytes: one at the head is only known to have
    /// left once something after it has (else it is taken as stuck, and given up late).
    fn account(&mut self, bytes: usize) {
        let mut moved = false;
        while self.queued_bytes > bytes {
            let Some(h) = self.queued.front_mut() else {
                break;
            };
            let pad = h.footprint - h.payload.len();
            if pad > 0 && self.queued_bytes - pad == bytes {
                // A dispatch that failed dropped the padding before the head: still there.
                h.footprint -= pad;
                self.queued_bytes -= pad;
                break;
            }
            self.queued_bytes -= h.footprint;
            self.queued.pop_front();
            moved = true;
        }
        if self.queued_bytes != bytes {
            // Out of step (never expected): start over with what smoltcp says.
            self.queued.clear();
            self.queued_bytes = bytes;
        }
        if moved {
            self.head_since = std::time::Instant::now();
        }
    }

    /// Whether the head datagram has waited for longer than [`NEIGH_STALL`].
    fn stuck(&self) -> bool {
        !self.queued.is_empty() && self.head_since.elapsed() >= NEIGH_STALL
    }
}

pub struct Udp {
    /// Bound address (port non-zero).
    pub local: Option<SocketAddr>,
    /// Connected peer.
    pub remote: Option<SocketAddr>,
    socks: Vec<Leg>,
    /// A datagram read from the pair that smoltcp had no room for.
    pending: Option<(Vec<u8>, SocketAddr)>,
    /// Reassembled IPv6 datagrams ([`crate::frag`]) and their sources, for the pair.
    inbox: VecDeque<(Vec<u8>, SocketAddr)>,
    /// Bytes in `inbox`.
    inbox_bytes: usize,
    /// The pair reached EOF.
    eof: bool,
    /// IP-level options and multicast memberships.
    pub ip: mcast::Ip,
    /// Payload and datagrams each way, for sock_diag ([`crate::diag`]).
    pub counts: crate::diag::Counts,
}

impl Udp {
    pub fn new() -> Udp {
        Udp {
            local: None,
            remote: None,
            socks: Vec::new(),
            pending: None,
            inbox: VecDeque::new(),
            inbox_bytes: 0,
            eof: false,
            ip: mcast::Ip::default(),
            counts: Default::default(),
        }
    }

    /// Whether it receives on interface `i`.
    pub fn listens_on(&self, i: usize) -> bool {
        self.socks.iter().any(|l| l.iface == i)
    }

    /// Queues a datagram [`crate::frag`] reassembled for it (dropped when the queue is full,
    /// as smoltcp drops one its socket has no room for).
    pub fn take_reassembled(&mut self, payload: Vec<u8>, src: SocketAddr) {
        if self.inbox_bytes + payload.len() <= PAYLOAD && self.inbox.len() < PACKETS {
            self.inbox_bytes += payload.len();
            self.inbox.push_back((payload, src));
        }
    }
}

fn udp_of(kind: &mut Kind) -> &mut Udp {
    match kind {
        Kind::Udp(u) => u,
        _ => unreachable!("a UDP call on a non-UDP socket"),
    }
}

fn new_socket() -> udp::Socket<'static> {
    udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; PACKETS], vec![0; PAYLOAD]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; PACKETS], vec![0; PAYLOAD]),
    )
}

/// Whether a socket of `domain` (`v6only`, connected to `remote`) takes a datagram from `src`.
fn wanted(domain: i32, v6only: bool, remote: Option<SocketAddr>, src: SocketAddr) -> bool {
    (match domain {
        libc::AF_INET => src.is_ipv4(),
        _ => !(src.is_ipv4() && v6only),
    }) && remote.is_none_or(|r| addr::unmap(r) == src)
}

/// A link-local source with its interface as `sin6_scope_id`, as the kernel reports it.
fn with_scope(a: SocketAddr, index: u32) -> SocketAddr {
    match a {
        SocketAddr::V6(v) if v.ip().is_unicast_link_local() => {
            SocketAddr::V6(SocketAddrV6::new(*v.ip(), v.port(), 0, index))
        }
        a => a,
    }
}

/// Whether a socket bound to `bound` (`None`: the unspecified address) takes a datagram sent
/// to `to` on an interface that joined `groups`: one bound to an address only what is sent to
/// that address (a unicast one, or the group it is bound to); a multicast datagram only while
/// the interface holds its group for some socket (smoltcp may still accept one while it is
/// leaving).
fn receives(bound: Option<IpAddr>, groups: &[IpAddr], to: Option<IpAddr>) -> bool {
    let Some(to) = to.map(|t| addr::unmap(SocketAddr::new(t, 0)).ip()) else {
        return true;
    };
    if bound.is_some_and(|b| b != to) {
        return false;
    }
    !to.is_multicast() || mcast::always_joined(to) || groups.contains(&to)
}

/// Makes the smoltcp socket of `leg` anew, giving up its head datagram and every datagram
/// queued to the same destination (a neighbour that never answered), and queueing the others
/// again; what it had received goes to `inbox`, as far as there is room.
fn unstick(net: &mut Net, u: &mut Udp, leg: usize, domain: i32, v6only: bool) {
    let remote = u.remote;
    let l = &mut u.socks[leg];
    let f = &mut net.ifaces[l.iface];
    let AnySocket::Udp(mut old) = f.sockets.remove(l.handle) else {
        unreachable!("a UDP leg holds a UDP socket")
    };
    if f.big4.is_some_and(|(b, _)| b == l.handle) {
        f.big4 = None;
    }
    let mut k = new_socket();
    let _ = k.bind(old.endpoint());
    k.set_hop_limit(old.hop_limit());
    while let Ok((payload, meta)) = old.recv() {
        let src = SocketAddr::from(meta.endpoint);
        if wanted(domain, v6only, remote, src)
            && u.inbox_bytes + payload.len() <= PAYLOAD
            && u.inbox.len() < PACKETS
        {
            u.inbox_bytes += payload.len();
            u.inbox.push_back((payload.to_vec(), src));
        }
    }
    drop(old);
    let queued = std::mem::take(&mut l.queued);
    l.queued_bytes = 0;
    let mut rest = queued.into_iter();
    let given_up = rest.next().map(|q| q.dst.endpoint.addr);
    for q in rest.filter(|q| Some(q.dst.endpoint.addr) != given_up) {
        let _ = l.enqueue(&mut k, &q.payload, q.dst);
    }
    l.head_since = std::time::Instant::now();
    l.handle = f.sockets.add(k);
}

/// The interfaces a socket bound to `local` (`SO_BINDTODEVICE` `dev`) receives on, and the
/// address its smoltcp sockets bind to (none for a multicast group: [`after_poll`] keeps the
/// group's datagrams only).
fn leg_plan(net: &Net, local: SocketAddr, dev: Option<u32>) -> (Vec<usize>, Option<IpAddr>) {
    let ip = (!local.ip().is_unspecified() && !local.ip().is_multicast()).then_some(local.ip());
    let mut ifaces = listen_ifaces(net, ip);
    if let Some(d) = dev {
        ifaces.retain(|&i| net.ifaces[i].index == d);
    }
    (ifaces, ip)
}

/// Binds to `local` (port already chosen and checked).
pub fn bind(net: &mut Net, s: &mut Sock, local: SocketAddr) {
    let dev = s.opts.bound_dev;
    let u = udp_of(&mut s.kind);
    u.local = Some(local);
    relegs(net, u, dev);
}

/// Makes the smoltcp sockets of a bound socket match its binding and device: new ones where
/// it now receives, none left where it no longer does (what those held is dropped).
fn relegs(net: &mut Net, u: &mut Udp, dev: Option<u32>) {
    let Some(local) = u.local else { return };
    let (ifaces, ip) = leg_plan(net, local, dev);
    u.socks.retain(|l| {
        let keep = ifaces.contains(&l.iface);
        if !keep {
            let f = &mut net.ifaces[l.iface];
            if f.big4.is_some_and(|(b, _)| b == l.handle) {
                f.big4 = None;
            }
            f.sockets.remove(l.handle);
        }
        keep
    });
    let ep = IpListenEndpoint {
        addr: ip.map(IpAddress::from),
        port: local.port(),
    };
    for i in ifaces {
        if u.socks.iter().any(|l| l.iface == i) {
            continue;
        }
        let mut k = new_socket();
        if k.bind(ep).is_ok() {
            u.socks.push(Leg::new(i, net.ifaces[i].sockets.add(k)));
        }
    }
}

/// `setsockopt` of a UDP socket: every IP-level option ([`mcast::Ip::setsockopt`]) and
/// `SO_BINDTODEVICE`/`SO_BINDTOIFINDEX`; `None` for the others. `Ok(true)`: a membership was
/// dropped (the caller lets interfaces leave groups nobody holds).
pub fn setsockopt(
    net: &mut Net,
    s: &mut Sock,
    level: i32,
    name: i32,
    v: &[u8],
) -> Option<io::Result<bool>> {
    let domain = s.domain;
    let dev = s.opts.bound_dev;
    match (level, name) {
        (libc::SOL_SOCKET, libc::SO_BINDTODEVICE | crate::stack::SO_BINDTOIFINDEX) => {
            let r = crate::stack::bound_device(net, name, v).map(|d| {
                s.opts.bound_dev = d;
                relegs(net, udp_of(&mut s.kind), d);
                false
            });
            Some(r)
        }
        (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) => None,
        (libc::IPPROTO_IP | libc::IPPROTO_IPV6, _) => {
            let u = udp_of(&mut s.kind);
            Some(match u.ip.setsockopt(net, domain, dev, level, name, v) {
                Ok(Change::None) => Ok(false),
                Ok(Change::Join(m)) => mcast::join(net, m.iface, m.group).map(|()| {
                    u.ip.groups.push(m);
                    false
                }),
                Ok(Change::Left(_)) => Ok(true),
                Err(e) => Err(e),
            })
        }
        _ => None,
    }
}

/// Binds socket `id` to an ephemeral port on the unspecified address, if it is not bound.
pub fn autobind(core: &mut Core, id: u64) -> io::Result<()> {
    let Some(s) = core.socks.get(&id) else {
        return Ok(());
    };
    let Kind::Udp(u) = &s.kind else {
        return Ok(());
    };
    if u.local.is_some() {
        return Ok(());
    }
    let domain = s.domain;
    let port = core.ephemeral(id, true, None)?;
    let local = SocketAddr::new(addr::unspecified(domain).ip(), port);
    if let Some(s) = core.socks.get_mut(&id) {
        bind(&mut core.net, s, local);
    }
    Ok(())
}

/// Moves into smoltcp what the application wrote on socket `id` and the event loop has not
/// read yet, with the framing it was written with: before a `connect` changes it (a record
/// read afterwards would be taken for a bare payload, or the other way round, and dropped).
fn drain(core: &mut Core, id: u64) {
    let now = core.now();
    let Core {
        net,
        socks,
        scratch,
        ..
    } = core;
    if let Some(s) = socks.get_mut(&id) {
        let revents = s.revents;
        s.revents |= libc::POLLIN;
        pump_in(net, s, scratch, now);
        s.revents = revents;
    }
}

/// Before an option that changes how datagrams leave (IP-level options, `SO_BROADCAST`,
/// `SO_BINDTODEVICE`): moves what the application wrote before the call into smoltcp with the
/// options it was written under, as the kernel applies options to later sends only (an unbound
/// socket that wrote something is bound first, as the event loop would).
pub fn flush_written(core: &mut Core, id: u64) {
    let Some(s) = core.socks.get(&id) else { return };
    let Kind::Udp(u) = &s.kind else { return };
    if u.local.is_none() {
        let Some(pe) = s.pe.as_ref() else { return };
        let mut probe = [0u8; 1];
        let written = match sys::recv(pe.as_fd(), &mut probe, libc::MSG_PEEK | libc::MSG_TRUNC) {
            Ok(0) => !sys::hung_up(pe.as_fd()),
            Ok(_) => true,
            Err(_) => false,
        };
        if !written || autobind(core, id).is_err() {
            return;
        }
    }
    drain(core, id);
}

/// `connect`: sets (or, with `AF_UNSPEC`, clears) the peer.
pub fn connect(core: &mut Core, handle: Handle, a: &[u8]) -> io::Result<()> {
    let (id, s) = core.sock(handle)?;
    let domain = s.domain;
    let v6only = s.opts.v6only;
    let dst = addr::from_sockaddr(a, domain)?;
    let Some(dst) = dst else {
        drain(core, id);
        let (_, s) = core.sock(handle)?;
        udp_of(&mut s.kind).remote = None;
        return Ok(());
    };
    let dst = addr::connect_target(dst, domain, v6only)?;
    // As Linux: no route ENETUNREACH first, then a broadcast without SO_BROADCAST EACCES.
    let opts = s.opts;
    let Some(Sock {
        kind: Kind::Udp(u), ..
    }) = core.socks.get(&id)
    else {
        return Err(errno(libc::EBADF));
    };
    if !scope_ok(u, &opts, dst) {
        return Err(errno(libc::EINVAL));
    }
    let lbcast = matches!(dst.ip(), IpAddr::V4(a) if a.is_broadcast());
    let bcast = lbcast
        || core
            .net
            .ifaces
            .iter()
            .any(|f| f.is_subnet_broadcast(dst.ip()));
    let mut probe = opts;
    probe.broadcast = true;
    if out_iface(&core.net, u, &probe, dst).is_none() {
        return Err(errno(libc::ENETUNREACH));
    }
    if bcast && !opts.broadcast {
        return Err(errno(libc::EACCES));
    }
    autobind(core, id)?;
    drain(core, id);
    let (_, s) = core.sock(handle)?;
    udp_of(&mut s.kind).remote = Some(dst);
    Ok(())
}

/// Whether `connect` to `dst` knows its interface, as Linux requires of a link-scope
/// destination (link-local unicast, interface- or link-local multicast): its scope id (which
/// must be the bound device, if any), else `SO_BINDTODEVICE`, else for multicast
/// `IPV6_MULTICAST_IF`. Linux refuses the others with `EINVAL`.
fn scope_ok(u: &Udp, opts: &Opts, dst: SocketAddr) -> bool {
    let SocketAddr::V6(d) = dst else { return true };
    if !link_scope(d.ip()) {
        return true;
    }
    match (d.scope_id(), opts.bound_dev) {
        (0, Some(_)) => true,
        (0, None) => d.ip().is_multicast() && u.ip.multicast_if(dst.ip()).0 != 0,
        (sc, Some(b)) => sc == b,
        (_, None) => true,
    }
}

/// The events to poll the plug-in's end for.
pub fn interest(u: &Udp, s: &Sock) -> i16 {
    let mut ev = 0;
    if u.pending.is_none() && !u.eof {
        ev |= libc::POLLIN;
    }
    if s.want_out {
        ev |= libc::POLLOUT;
    }
    ev
}

enum Sent {
    Done,
    Full,
}

/// The interface a datagram to `dst` leaves through and the source address to give it (`None`:
/// the bound one, or smoltcp's choice), as Linux picks them: the destination's
/// `sin6_scope_id` for a link-scope one, else `SO_BINDTODEVICE`, else for multicast (and IPv4
/// limited broadcast) the multicast interface, else the route (for a link-scope group, the
/// first up interface: the kernel's `ff00::/8` route). A link-scope destination leaves from
/// the interface's link-local address, IPv4 multicast from `IP_MULTICAST_IF`'s address.
/// `None`: it cannot leave (no route, the interface down, a broadcast without
/// `SO_BROADCAST`, a scope that is not the bound device): dropped.
fn out_iface(net: &Net, u: &Udp, opts: &Opts, dst: SocketAddr) -> Option<(usize, Option<IpAddr>)> {
    let ip = dst.ip();
    let from = u
        .local
        .map(|l| l.ip())
        .filter(|ip| !ip.is_unspecified() && !ip.is_multicast());
    let bound = match opts.bound_dev {
        Some(d) => Some(net.by_index(d)?),
        None => None,
    };
    let lbcast = matches!(ip, IpAddr::V4(a) if a.is_broadcast());
    let bcast = lbcast || net.ifaces.iter().any(|f| f.is_subnet_broadcast(ip));
    if bcast && !opts.broadcast {
        return None; // the kernel's EACCES
    }
    let scoped = match dst {
        SocketAddr::V6(d) if link_scope(d.ip()) => Some(d.scope_id()),
        _ => None,
    };
    let oif = match scoped {
        Some(sc) if sc != 0 => {
            let i = net.by_index(sc)?;
            if bound.is_some_and(|b| b != i) {
                return None;
            }
            Some(i)
        }
        _ if bound.is_some() => bound,
        _ if ip.is_multicast() || lbcast => match u.ip.multicast_if(ip) {
            (0, None) => None,
            (0, Some(a)) => net.owner_of(IpAddr::V4(a)),
            (x, _) => net.by_index(x),
        },
        _ => None,
    };
    let i = match oif {
        Some(i) if ip.is_multicast() || lbcast || scoped.is_some() => i,
        Some(i) => net.route_via(ip, from, Some(i))?,
        // IPv6 multicast: each interface's ff00::/8 route; IPv4 multicast and limited
        // broadcast: only a route (a default one) says where, as in Linux.
        None if scoped.is_some() || (ip.is_ipv6() && ip.is_multicast()) => {
            net.route(ip, from).or_else(|| mcast::first_up(net))?
        }
        None => net.route(ip, from)?,
    };
    if !net.ifaces[i].up {
        return None;
    }
    let src = match (from, scoped, u.ip.multicast_if(ip)) {
        (Some(_), _, _) => None,
        (None, Some(_), _) if i != LO => net.ifaces[i].link_local().map(IpAddr::V6),
        (None, None, (_, Some(a))) if ip.is_multicast() => Some(IpAddr::V4(a)),
        _ => None,
    };
    Some((i, src))
}

/// Queues one datagram in smoltcp (or drops it: no route, too large, as a lossy network may).
/// One that needs fragments waits while the interface is still sending another's; one whose
/// hop limit differs from the one smoltcp's socket sends with waits until the socket's queue
/// is empty (smoltcp has one hop limit per socket, read as it sends).
fn send(
    net: &mut Net,
    u: &mut Udp,
    opts: &Opts,
    dst: SocketAddr,
    payload: &[u8],
    now: Instant,
) -> Sent {
    let from = u.local.map(|l| l.ip()).filter(|ip| !ip.is_unspecified());
    let Some((i, src)) = out_iface(net, u, opts, dst) else {
        return Sent::Done;
    };
    let from = src.or(from);
    let port = u.local.map_or(0, |l| l.port());
    let f = &net.ifaces[i];
    let group = dst.ip();
    let looped = (group.is_multicast()
        && u.ip.loops(group)
        && (mcast::always_joined(group) || f.groups.contains(&group)))
    .then(|| from.or_else(|| net.source_for(i, group)))
    .flatten()
    .map(|ip| with_scope(SocketAddr::new(ip, port), net.ifaces[i].index));
    let sent = transmit(net, u, i, src, from, port, dst, payload, now);
    if let Sent::Done = sent {
        u.counts.sent(payload.len(), true);
    }
    // The copy for the stack's own members: once, when the datagram is done with (a datagram
    // that waits for room is sent again later).
    if let (Sent::Done, Some(lsrc)) = (&sent, looped) {
        net.looped.push((i, lsrc, dst, payload.to_vec()));
    }
    sent
}

/// The part of [`send`] after the route: out of interface `i`, from `src` (`None`: the bound
/// address or smoltcp's choice; `from`: the address it will have, for fragments), port `port`.
#[allow(clippy::too_many_arguments)]
fn transmit(
    net: &mut Net,
    u: &mut Udp,
    i: usize,
    src: Option<IpAddr>,
    from: Option<IpAddr>,
    port: u16,
    dst: SocketAddr,
    payload: &[u8],
    now: Instant,
) -> Sent {
    let hops = u.ip.hop_limit(dst.ip());
    if hops == 0 {
        return Sent::Done; // it may not leave the stack
    }
    let Some(leg) = u.socks.iter_mut().find(|l| l.iface == i) else {
        return Sent::Done;
    };
    let h = leg.handle;
    let f = &mut net.ifaces[i];
    let mtu = f.mtu as usize;
    let fragmented = match dst {
        SocketAddr::V4(_) if payload.len() > MAX_V4 => return Sent::Done,
        SocketAddr::V6(_) if payload.len() > MAX_V6 => return Sent::Done,
        SocketAddr::V4(_) => payload.len() + IPV4_UDP_HDR > mtu,
        SocketAddr::V6(d) if payload.len() + IPV6_UDP_HDR > mtu => {
            let Some(IpAddr::V6(src)) = from.or_else(|| net.source_for(i, dst.ip())) else {
                return Sent::Done;
            };
            let src = SocketAddrV6::new(src, port, 0, 0);
            return match crate::frag::send(net, i, src, d, payload) {
                crate::frag::Out::Done => Sent::Done,
                crate::frag::Out::Busy => Sent::Full,
            };
        }
        SocketAddr::V6(_) => false,
    };
    if fragmented {
        if let Some((b, since)) = f.big4 {
            let queued = f.sockets.get::<udp::Socket>(b).send_queue() > 0;
            if queued && since.elapsed() < crate::net::FRAG_STALL {
                return Sent::Full;
            }
            f.big4 = None;
        }
        if f.fragmenting(now) {
            return Sent::Full;
        }
    }
    let k = f.sockets.get_mut::<udp::Socket>(h);
    if payload.len() > k.payload_send_capacity() {
        return Sent::Done;
    }
    if k.hop_limit() != Some(hops) {
        if !leg.queued.is_empty() || k.send_queue() > 0 {
            return Sent::Full;
        }
        k.set_hop_limit(Some(hops));
    }
    let meta = UdpMetadata {
        endpoint: IpEndpoint::from(dst),
        local_address: src.map(IpAddress::from),
        meta: Default::default(),
    };
    match leg.enqueue(k, payload, meta) {
        Err(udp::SendError::BufferFull) => Sent::Full,
        Ok(()) if fragmented => {
            f.big4 = Some((h, std::time::Instant::now()));
            Sent::Done
        }
        _ => Sent::Done,
    }
}

/// Hands the multicast datagrams looped back by [`send`] to the sockets that receive them on
/// their interface (bound to the group's port there, the group joined), the sender included.
pub fn deliver_looped(net: &mut Net, socks: &mut std::collections::HashMap<u64, Sock>) {
    for (i, src, dst, payload) in std::mem::take(&mut net.looped) {
        let groups = &net.ifaces[i].groups;
        for s in socks.values_mut() {
            let (domain, v6only) = (s.domain, s.opts.v6only);
            let Kind::Udp(u) = &mut s.kind else { continue };
            let Some(local) = u.local else { continue };
            let bound = Some(local.ip()).filter(|ip| !ip.is_unspecified());
            if local.port() == dst.port()
                && u.listens_on(i)
                && receives(bound, groups, Some(dst.ip()))
                && wanted(domain, v6only, u.remote, src)
            {
                u.take_reassembled(payload.clone(), src);
            }
        }
    }
}

/// Before smoltcp's poll: moves datagrams the application wrote into smoltcp.
pub fn pump_in(net: &mut Net, s: &mut Sock, scratch: &mut [u8], now: Instant) {
    let orphan = s.orphan_since.is_some();
    let opts = s.opts;
    let Sock {
        pe, kind, revents, ..
    } = s;
    let u = udp_of(kind);
    if let Some((p, dst)) = u.pending.take() {
        match send(net, u, &opts, dst, &p, now) {
            Sent::Full => {
                u.pending = Some((p, dst));
                return;
            }
            Sent::Done => {}
        }
    }
    let Some(pe) = pe else { return };
    if u.eof || (!orphan && *revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0) {
        return;
    }
    if u.local.is_none() {
        return; // the event loop binds it first
    }
    for _ in 0..64 {
        // MSG_TRUNC: the record's real length, to drop one larger than any datagram.
        let n = match sys::recv(pe.as_fd(), scratch, libc::MSG_TRUNC) {
            Ok(0) if sys::hung_up(pe.as_fd()) => {
                u.eof = true;
                break;
            }
            Ok(n) if n > scratch.len() => continue,
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(_) => break,
        };
        let (dst, payload) = match u.remote {
            Some(r) => (r, &scratch[..n]),
            None => match addr::parse_header(&scratch[..n]) {
                Ok(d) => (d, &scratch[addr::HDR_LEN..n]),
                Err(_) => continue, // malformed: dropped
            },
        };
        if dst.port() == 0 || dst.ip().is_unspecified() {
            continue;
        }
        if let Sent::Full = send(net, u, &opts, dst, payload, now) {
            u.pending = Some((payload.to_vec(), dst));
            break;
        }
    }
}

/// After smoltcp's poll: moves received datagrams into the pair.
pub fn after_poll(net: &mut Net, s: &mut Sock, now: Instant) -> Fate {
    let orphan = s.orphan_since;
    let domain = s.domain;
    let v6only = s.opts.v6only;
    let opts = s.opts;
    let Sock {
        pe, kind, want_out, ..
    } = s;
    let u = udp_of(kind);
    *want_out = false;
    // What left; a head datagram that never does is given up.
    for leg in 0..u.socks.len() {
        let l = &mut u.socks[leg];
        l.account(
            net.ifaces[l.iface]
                .sockets
                .get::<udp::Socket>(l.handle)
                .send_queue(),
        );
        if l.stuck() {
            unstick(net, u, leg, domain, v6only);
        }
    }
    // A datagram that waited for room: smoltcp's poll (or a socket made anew) may just have
    // made some.
    if let Some((p, dst)) = u.pending.take() {
        if let Sent::Full = send(net, u, &opts, dst, &p, now) {
            u.pending = Some((p, dst));
        }
    }
    if let Some(pe) = pe.as_ref() {
        while let Some((payload, src)) = u.inbox.front() {
            let hdr = addr::header(*src, domain);
            let r = if u.remote.is_some() {
                sys::sendv(pe.as_fd(), &[IoSlice::new(payload)])
            } else {
                sys::sendv(pe.as_fd(), &[IoSlice::new(&hdr), IoSlice::new(payload)])
            };
            if matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
                *want_out = true;
                break;
            }
            if r.is_ok() {
                u.counts.received(payload.len(), true);
            }
            u.inbox_bytes -= payload.len();
            u.inbox.pop_front();
        }
        let bound = u.local.map(|l| l.ip()).filter(|ip| !ip.is_unspecified());
        'socks: for l in &u.socks {
            if *want_out {
                break;
            }
            let f = &mut net.ifaces[l.iface];
            let (index, groups) = (f.index, &f.groups);
            let k = f.sockets.get_mut::<udp::Socket>(l.handle);
            for _ in 0..64 {
                let Ok((payload, meta)) = k.peek() else { break };
                let src = with_scope(SocketAddr::from(meta.endpoint), index);
                let to = meta.local_address.map(IpAddr::from);
                if wanted(domain, v6only, u.remote, src) && receives(bound, groups, to) {
                    let hdr = addr::header(src, domain);
                    let parts_connected = [IoSlice::new(payload)];
                    let parts = [IoSlice::new(&hdr), IoSlice::new(payload)];
                    let r = if u.remote.is_some() {
                        sys::sendv(pe.as_fd(), &parts_connected)
                    } else {
                        sys::sendv(pe.as_fd(), &parts)
                    };
                    match r {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            *want_out = true;
                            break 'socks;
                        }
                        Err(_) => {}
                        Ok(_) => u.counts.received(payload.len(), true),
                    }
                }
                let _ = k.recv();
            }
        }
    }
    let Some(since) = orphan else {
        return Fate::Keep;
    };
    let queued = u.pending.is_some()
        || u.socks.iter().any(|l| {
            let k = net.ifaces[l.iface].sockets.get::<udp::Socket>(l.handle);
            k.send_queue() > 0
        });
    if queued && since.elapsed() < LINGER {
        return Fate::Keep;
    }
    for l in u.socks.drain(..) {
        let f = &mut net.ifaces[l.iface];
        if f.big4.is_some_and(|(b, _)| b == l.handle) {
            f.big4 = None;
        }
        f.sockets.remove(l.handle);
    }
    Fate::Remove
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(c: &mut Core, domain: i32) -> Handle {
        c.socket(domain, libc::SOCK_DGRAM, 0).unwrap()
    }

    fn mreqn(group: &str, index: u32) -> Vec<u8> {
        let g: std::net::Ipv4Addr = group.parse().unwrap();
        let mut v = g.octets().to_vec();
        v.extend([0; 4]);
        v.extend(index.to_ne_bytes());
        v
    }

    fn mreq6(group: &str, index: u32) -> Vec<u8> {
        let g: std::net::Ipv6Addr = group.parse().unwrap();
        let mut v = g.octets().to_vec();
        v.extend(index.to_ne_bytes());
        v
    }

    fn code(r: io::Result<()>) -> i32 {
        r.unwrap_err().raw_os_error().unwrap()
    }

    fn joined(c: &Core, group: &str) -> bool {
        c.net.ifaces[1].groups.contains(&group.parse().unwrap())
    }

    const IP: i32 = libc::IPPROTO_IP;
    const IP6: i32 = libc::IPPROTO_IPV6;

    #[test]
    fn ipv4_memberships_are_counted_per_socket_and_interface() {
        let mut c = Core::new(crate::netlink::tests::net_up());
        let (a, b) = (udp(&mut c, libc::AF_INET), udp(&mut c, libc::AF_INET));
        let g = mreqn("239.1.2.3", 2);
        c.setsockopt(a, IP, libc::IP_ADD_MEMBERSHIP, &g).unwrap();
        assert!(joined(&c, "239.1.2.3"));
        assert_eq!(
            code(c.setsockopt(a, IP, libc::IP_ADD_MEMBERSHIP, &g)),
            libc::EADDRINUSE
        );
        c.setsockopt(b, IP, libc::IP_ADD_MEMBERSHIP, &g).unwrap();
        // The interface stays in the group while one socket holds it.
        c.setsockopt(a, IP, libc::IP_DROP_MEMBERSHIP, &g).unwrap();
        assert!(joined(&c, "239.1.2.3"));
        assert_eq!(
            code(c.setsockopt(a, IP, libc::IP_DROP_MEMBERSHIP, &g)),
            libc::EADDRNOTAVAIL
        );
        c.setsockopt(b, IP, libc::IP_DROP_MEMBERSHIP, &g).unwrap();
        assert!(!joined(&c, "239.1.2.3"));
        // By the interface's address (struct ip_mreq); bad requests.
        let mut by_addr = "239.1.2.4"
            .parse::<std::net::Ipv4Addr>()
            .unwrap()
            .octets()
            .to_vec();
        by_addr.extend([10, 0, 0, 1]);
        c.setsockopt(a, IP, libc::IP_ADD_MEMBERSHIP, &by_addr)
            .unwrap();
        assert!(joined(&c, "239.1.2.4"));
        let cases = [
            (mreqn("10.0.0.9", 2), libc::EINVAL),
            (mreqn("239.1.2.5", 9), libc::ENODEV),
            (g[..7].to_vec(), libc::EINVAL),
        ];
        for (v, e) in cases {
            assert_eq!(code(c.setsockopt(a, IP, libc::IP_ADD_MEMBERSHIP, &v)), e);
        }
        assert!(!joined(&c, "239.1.2.5"));
    }

    #[test]
    fn ipv6_memberships_join_the_routed_interface_and_leave() {
        let mut c = Core::new(crate::netlink::tests::net_up());
        let a = udp(&mut c, libc::AF_INET6);
        // Interface 0, a link-scope group: the first VDE interface up.
        c.setsockopt(a, IP6, libc::IPV6_ADD_MEMBERSHIP, &mreq6("ff02::1:3", 0))
            .unwrap();
        assert!(joined(&c, "ff02::1:3"));
        assert_eq!(
            code(c.setsockopt(a, IP6, libc::IPV6_ADD_MEMBERSHIP, &mreq6("ff02::1:3", 2))),
            libc::EADDRINUSE
        );
        let cases = [
            (mreq6("ff02::1:4", 9), libc::ENODEV),
            (mreq6("fd00::5", 2), libc::EINVAL),
            (mreq6("ff02::1:4", 2)[..19].to_vec(), libc::EINVAL),
        ];
        for (v, e) in cases {
            assert_eq!(code(c.setsockopt(a, IP6, libc::IPV6_ADD_MEMBERSHIP, &v)), e);
        }
        c.setsockopt(a, IP6, libc::IPV6_DROP_MEMBERSHIP, &mreq6("ff02::1:3", 2))
            .unwrap();
        assert!(!joined(&c, "ff02::1:3"));
        assert_eq!(
            code(c.setsockopt(a, IP6, libc::IPV6_DROP_MEMBERSHIP, &mreq6("ff02::1:3", 0))),
            libc::EADDRNOTAVAIL
        );
    }
}
