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
//! - A datagram whose neighbour never answers is given up after [`NEIGH_STALL`](crate::kind::udp::NEIGH_STALL), as Linux gives
//!   up an unresolved neighbour's queue: smoltcp keeps it at the head of its socket's transmit
//!   buffer and retries neighbour discovery forever, holding up every later datagram of the
//!   socket. Each smoltcp socket ([`Leg`](crate::kind::udp::Leg)) keeps a copy of what it queued there; when the head
//!   has not left for [`NEIGH_STALL`](crate::kind::udp::NEIGH_STALL), the smoltcp socket is made anew (same binding), what it
//!   had received is kept (moved to [`Udp::inbox`](crate::kind::udp::Udp)), and what was queued behind the head is
//!   queued again, except the datagrams to the head's destination (given up with it).

use std::io;
use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::fd::AsFd;

use ioth_plugin_sdk::proxied::Handle;
use std::time::Duration;

use smoltcp::socket::udp::UdpMetadata;
use smoltcp::socket::{udp, Socket as AnySocket};
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpEndpoint, IpListenEndpoint};

use crate::addr;
use crate::kind::udp::{Leg, Udp, PACKETS, PAYLOAD};
use crate::mcast::{self, link_scope, Change};
use crate::net::{Net, LO};
use crate::sock::{Core, Fate, Kind, Opts, Sock};
use crate::sys;
use crate::tcp::listen_ifaces;
use ioth_plugin_sdk::errno::io_error;

mod pump;

use self::pump::out_iface;
pub use self::pump::{after_poll, deliver_looped, interest, pump_in};

/// How long a closed socket may take to send what it still holds.
const LINGER: Duration = Duration::from_secs(2);
/// Largest UDP payloads: IPv4 (65535 − 20 − 8) and IPv6 (65535 − 8).
const MAX_V4: usize = 65507;
const MAX_V6: usize = 65527;
/// IP and UDP headers.
const IPV4_UDP_HDR: usize = 28;
const IPV6_UDP_HDR: usize = 48;
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
        (libc::SOL_SOCKET, libc::SO_BINDTODEVICE | crate::sock::SO_BINDTOIFINDEX) => {
            let r = crate::sock::bound_device(net, name, v).map(|d| {
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
        return Err(io_error(libc::EBADF));
    };
    if !scope_ok(u, &opts, dst) {
        return Err(io_error(libc::EINVAL));
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
        return Err(io_error(libc::ENETUNREACH));
    }
    if bcast && !opts.broadcast {
        return Err(io_error(libc::EACCES));
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

#[cfg(test)]
mod tests;
