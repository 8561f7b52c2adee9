//! Raw `IPPROTO_ICMPV6` and `IPPROTO_ICMP` sockets (router discovery, ping): one smoltcp raw
//! socket per interface, behind a `SOCK_SEQPACKET` pair with the 28-byte address header on
//! every record (docs/proxied.md). Runs in the host process under the stack's mutex.
//!
//! As the kernel's:
//! - ICMPv6 records are ICMPv6 messages (no IP header) both ways; the plug-in fills the
//!   checksum going out (the kernel always does for `IPPROTO_ICMPV6`). ICMPv4 records coming in
//!   are whole IPv4 packets (header included), going out ICMP messages whose checksum is the
//!   application's (no `IP_HDRINCL`).
//! - The source of a received message has port 0 and, when link-local, `sin6_scope_id` = the
//!   interface. smoltcp keeps answering what it answers itself (NDP, echo requests): the raw
//!   socket gets a copy, as on Linux.
//! - Going out: the interface is the destination's `sin6_scope_id`, else `IPV6_MULTICAST_IF`
//!   for a multicast destination, else for a link-scope or multicast destination the first up
//!   VDE interface (the kernel's multicast route), else the route; the source is the bound
//!   address, else the interface's link-local address for a link-scope or multicast
//!   destination, else smoltcp's choice, else `::` (a router solicitation may go from there).
//!   The hop limit is `IPV6_MULTICAST_HOPS` (default 1) to a multicast destination, else
//!   `IPV6_UNICAST_HOPS` (default 64); IPv4 `IP_MULTICAST_TTL`/`IP_TTL` alike.
//! - `ICMP6_FILTER` (32 bytes; a set bit blocks that type) is applied on receipt.
//! - `SO_BINDTODEVICE`: messages leave through that interface (unless a link-scope destination
//!   names another: dropped) and only its messages are received.
//! - A record that cannot be sent (no route) is dropped (the data path cannot report it).

use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsFd;

use ioth_plugin_sdk::proxied::Handle;

use smoltcp::socket::raw;
use smoltcp::wire::{IpProtocol, IpVersion};

use crate::addr;
use crate::kind::rawip::RawIp;
use crate::net::{Net, LO};
use crate::sock::{Core, Fate, Kind, Sock};
use crate::sys;
use ioth_plugin_sdk::errno::io_error;

/// Records read from the pair per turn.
const BATCH: usize = 64;

fn new_raw(v6: bool) -> raw::Socket<'static> {
    let buf = |packets: usize, bytes: usize| {
        raw::PacketBuffer::new(vec![raw::PacketMetadata::EMPTY; packets], vec![0; bytes])
    };
    let (ver, proto) = if v6 {
        (IpVersion::Ipv6, IpProtocol::Icmpv6)
    } else {
        (IpVersion::Ipv4, IpProtocol::Icmp)
    };
    raw::Socket::new(
        Some(ver),
        Some(proto),
        buf(64, 64 * 1024),
        buf(64, 64 * 1024),
    )
}

/// `socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6)` or `socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)`
/// (`EPROTONOSUPPORT` for another protocol: raw sockets of other protocols are not emulated).
pub fn socket(core: &mut Core, domain: i32, protocol: i32, flags: i32) -> io::Result<Handle> {
    let v6 = match (domain, protocol) {
        (libc::AF_INET6, libc::IPPROTO_ICMPV6) => true,
        (libc::AF_INET, libc::IPPROTO_ICMP) => false,
        _ => return Err(io_error(libc::EPROTONOSUPPORT)),
    };
    let legs = (0..core.net.ifaces.len())
        .map(|i| (i, core.net.ifaces[i].sockets.add(new_raw(v6))))
        .collect();
    let r = RawIp::new(v6, legs);
    let (pe, app) = crate::sock::new_pair(libc::SOCK_SEQPACKET, flags)?;
    Ok(core.add(domain, Kind::RawIp(r), pe, app))
}

/// `bind`: a local address (or the unspecified one); the port is ignored, as the kernel does.
pub fn bind(net: &Net, s: &mut Sock, a: &[u8]) -> io::Result<()> {
    let domain = s.domain;
    let Kind::RawIp(r) = &mut s.kind else {
        return Err(io_error(libc::EINVAL));
    };
    let a = addr::from_sockaddr(a, domain)?.ok_or_else(|| io_error(libc::EAFNOSUPPORT))?;
    let ip = a.ip();
    if !ip.is_unspecified() && !net.is_local(ip) {
        return Err(io_error(libc::EADDRNOTAVAIL));
    }
    r.local = (!ip.is_unspecified()).then_some(ip);
    Ok(())
}

fn link_scope(ip: &Ipv6Addr) -> bool {
    ip.is_multicast() || ip.is_unicast_link_local()
}

/// The first up VDE interface.
fn first_up(net: &Net) -> Option<usize> {
    (0..net.ifaces.len()).find(|&i| i != LO && net.ifaces[i].up && !net.ifaces[i].is_loopback())
}

/// The interface and source address for a message to `dst` (module doc).
fn out_iface(
    net: &mut Net,
    r: &RawIp,
    dev: Option<u32>,
    dst: SocketAddr,
) -> Option<(usize, IpAddr)> {
    let bound = match dev {
        Some(d) => Some(net.by_index(d)?),
        None => None,
    };
    let i = match dst {
        SocketAddr::V6(d) if d.scope_id() != 0 && link_scope(d.ip()) => {
            let i = net.by_index(d.scope_id())?;
            if bound.is_some_and(|b| b != i) {
                return None;
            }
            i
        }
        _ if bound.is_some() => net.route_via(dst.ip(), r.local, bound).or(bound)?,
        SocketAddr::V6(d) if d.ip().is_multicast() && r.multicast_if != 0 => {
            net.by_index(r.multicast_if)?
        }
        SocketAddr::V6(d) if link_scope(d.ip()) => first_up(net)?,
        SocketAddr::V4(d) if d.ip().is_multicast() || d.ip().is_broadcast() => first_up(net)?,
        _ => net.route(dst.ip(), r.local)?,
    };
    if !net.ifaces[i].up {
        return None;
    }
    let src = match (r.local, dst) {
        (Some(l), _) => l,
        (None, SocketAddr::V6(d)) if link_scope(d.ip()) => net.ifaces[i]
            .addrs
            .iter()
            .find_map(|a| match a.ip {
                IpAddr::V6(v) if v.is_unicast_link_local() => Some(IpAddr::V6(v)),
                _ => None,
            })
            .unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        (None, _) => net.source_for(i, dst.ip()).unwrap_or(match dst {
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }),
    };
    Some((i, src))
}

/// The IPv6 packet of ICMPv6 message `msg` (checksum filled).
fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, hops: u8, msg: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(msg.len() as u16).to_be_bytes());
    p[6] = libc::IPPROTO_ICMPV6 as u8;
    p[7] = hops;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    let mut m = msg.to_vec();
    if m.len() >= 4 {
        m[2] = 0;
        m[3] = 0;
        let mut ph = [0u8; 40];
        ph[..32].copy_from_slice(&p[8..40]);
        ph[32..36].copy_from_slice(&(m.len() as u32).to_be_bytes());
        ph[39] = libc::IPPROTO_ICMPV6 as u8;
        let c = !crate::reasm::sum(&[&ph, &m]);
        m[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p.extend_from_slice(&m);
    p
}

/// The IPv4 packet of ICMP message `msg` (smoltcp fills the header checksum).
fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, msg: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + msg.len()) as u16).to_be_bytes());
    p[6] = 0x40; // DF, as Linux sets on ICMP it does not fragment
    p[8] = ttl;
    p[9] = libc::IPPROTO_ICMP as u8;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = !crate::reasm::sum(&[&p]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(msg);
    p
}

/// Before smoltcp's poll: what the application wrote goes into smoltcp.
pub fn pump_in(net: &mut Net, s: &mut Sock, scratch: &mut [u8]) {
    let orphan = s.orphan_since.is_some();
    let dev = s.opts.bound_dev;
    let Sock {
        pe, kind, revents, ..
    } = s;
    let Kind::RawIp(r) = kind else { return };
    let Some(pe) = pe else { return };
    if r.eof || (!orphan && *revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0) {
        return;
    }
    for _ in 0..BATCH {
        let n = match sys::recv(pe.as_fd(), scratch, libc::MSG_TRUNC) {
            Ok(0) if sys::hung_up(pe.as_fd()) => {
                r.eof = true;
                break;
            }
            Ok(n) if n > scratch.len() => continue,
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(_) => break,
        };
        let Ok(dst) = addr::parse_header(&scratch[..n.min(addr::HDR_LEN)]) else {
            continue;
        };
        if n < addr::HDR_LEN || dst.is_ipv4() == r.v6 {
            continue;
        }
        let msg = scratch[addr::HDR_LEN..n].to_vec();
        let Some((i, src)) = out_iface(net, r, dev, dst) else {
            continue;
        };
        let multicast = dst.ip().is_multicast();
        let hops = if multicast {
            if r.multicast_hops < 0 {
                1
            } else {
                r.multicast_hops
            }
        } else if r.unicast_hops < 0 {
            64
        } else {
            r.unicast_hops
        } as u8;
        let pkt = match (src, dst) {
            (IpAddr::V6(s6), SocketAddr::V6(d)) => ipv6_packet(s6, *d.ip(), hops, &msg),
            (IpAddr::V4(s4), SocketAddr::V4(d)) => ipv4_packet(s4, *d.ip(), hops, &msg),
            _ => continue,
        };
        let Some(&(_, h)) = r.legs.iter().find(|(k, _)| *k == i) else {
            continue;
        };
        // A full smoltcp buffer drops it (as a full device queue does).
        let _ = net.ifaces[i]
            .sockets
            .get_mut::<raw::Socket>(h)
            .send_slice(&pkt);
    }
}

/// After smoltcp's poll: received messages go to the pair.
pub fn after_poll(net: &mut Net, s: &mut Sock) -> Fate {
    let domain = s.domain;
    let orphan = s.orphan_since.is_some();
    let dev = s.opts.bound_dev;
    let Sock { pe, kind, .. } = s;
    let Kind::RawIp(r) = kind else {
        return Fate::Keep;
    };
    if orphan {
        for (i, h) in r.legs.drain(..) {
            net.ifaces[i].sockets.remove(h);
        }
        return Fate::Remove;
    }
    let Some(pe) = pe.as_ref() else {
        return Fate::Keep;
    };
    for &(i, h) in &r.legs {
        let index = net.ifaces[i].index;
        let k = net.ifaces[i].sockets.get_mut::<raw::Socket>(h);
        for _ in 0..BATCH {
            let Ok(p) = k.recv() else { break };
            if dev.is_some_and(|d| d != index) {
                continue; // SO_BINDTODEVICE: another interface's
            }
            let (src, body) = if r.v6 {
                if p.len() < 40 {
                    continue;
                }
                let mut o = [0u8; 16];
                o.copy_from_slice(&p[8..24]);
                let ip = Ipv6Addr::from(o);
                let scope = if ip.is_unicast_link_local() { index } else { 0 };
                (SocketAddr::V6(SocketAddrV6::new(ip, 0, 0, scope)), &p[40..])
            } else {
                if p.len() < 20 {
                    continue;
                }
                let ip = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
                (SocketAddr::V4(SocketAddrV4::new(ip, 0)), p)
            };
            if r.v6 && (body.is_empty() || !r.passes(body[0])) {
                continue;
            }
            if r.local.is_some_and(|l| {
                let d: IpAddr = if r.v6 {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(&p[24..40]);
                    IpAddr::V6(Ipv6Addr::from(o))
                } else {
                    IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19]))
                };
                d != l && !d.is_multicast()
            }) {
                continue;
            }
            let hdr = addr::header(src, domain);
            // A full pair drops it (as a full receive buffer does).
            let _ = sys::sendv(pe.as_fd(), &[IoSlice::new(&hdr), IoSlice::new(body)]);
        }
    }
    Fate::Keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmpv6_checksum_is_filled() {
        // A router solicitation from :: to ff02::2: checksum over the pseudo-header.
        let msg = [133u8, 0, 0xaa, 0xbb, 0, 0, 0, 0];
        let p = ipv6_packet(Ipv6Addr::UNSPECIFIED, "ff02::2".parse().unwrap(), 255, &msg);
        assert_eq!(p.len(), 48);
        assert_eq!(p[7], 255);
        let mut ph = [0u8; 40];
        ph[..32].copy_from_slice(&p[8..40]);
        ph[32..36].copy_from_slice(&8u32.to_be_bytes());
        ph[39] = 58;
        assert_eq!(crate::reasm::sum(&[&ph, &p[40..]]), 0xffff, "verifies");
    }

    #[test]
    fn filter_blocks_by_type() {
        let mut r = RawIp::new(true, Vec::new());
        assert!(r.passes(134));
        r.filter = [u32::MAX; 8];
        r.filter[134 >> 5] &= !(1 << (134 & 31));
        assert!(r.passes(134) && !r.passes(135) && !r.passes(1));
    }
}
