//! IP-level options of UDP sockets (hop limits, multicast interface and loop, memberships) and
//! the multicast groups each interface has joined for them. Runs in the host process under the
//! stack's mutex; the option parsing is pure code.
//!
//! As Linux:
//! - `IPV6_JOIN_GROUP`/`IPV6_LEAVE_GROUP` take a `struct ipv6_mreq` (20 bytes, else `EINVAL`;
//!   not a multicast group: `EINVAL`); interface 0 is the interface the group routes to (the
//!   first up VDE interface for a link-scope group), `ENODEV` if none or unknown; a second join
//!   of the same group and interface `EADDRINUSE`, a leave of one not joined `EADDRNOTAVAIL`.
//! - `IP_ADD_MEMBERSHIP`/`IP_DROP_MEMBERSHIP` take a `struct ip_mreq` (8 bytes: group, local
//!   address) or `struct ip_mreqn` (12: group, address, interface index), shorter `EINVAL`;
//!   the interface is the index, else the one owning the address, else the route's (`ENODEV`).
//! - The interface joins a group while some socket holds a membership of it there (smoltcp
//!   then sends the MLD/IGMP reports); a socket bound to the port on that interface (to the
//!   unspecified address, or to the group itself) receives the datagrams sent to it, as with
//!   Linux's default `IP_MULTICAST_ALL`/`IPV6_MULTICAST_ALL`; once nobody holds it, none.
//! - `IPV6_MULTICAST_HOPS`/`IPV6_UNICAST_HOPS` `-1..=255` (-1: the default, 1 and 64),
//!   `IP_MULTICAST_TTL` likewise (a byte or an int), `IP_TTL` `1..=255` or -1;
//!   `IPV6_MULTICAST_LOOP` 0 or 1 (else `EINVAL`), `IP_MULTICAST_LOOP` any int;
//!   `IPV6_MULTICAST_IF` an interface index (`ENODEV` if unknown, `EINVAL` if the socket is
//!   bound to another device); `IP_MULTICAST_IF` an `in_addr`, `ip_mreq` or `ip_mreqn`
//!   (`EADDRNOTAVAIL` for an unknown address or index), read back as the `in_addr`.
//! - Options the plug-in knows but does not act on ([`STORED`]: `IP_TOS`, `IPV6_TCLASS`, the
//!   ancillary-data requests `IP_PKTINFO`, `IPV6_RECVPKTINFO`, …) are kept and read back; any
//!   other option of an IP level is `ENOPROTOOPT`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::net::{Net, LO};
use ioth_plugin_sdk::errno::io_error;

/// `IPV6_ADD_MEMBERSHIP`/`IPV6_DROP_MEMBERSHIP` (the same numbers as `IPV6_JOIN_GROUP`/
/// `IPV6_LEAVE_GROUP`).
const IPV6_JOIN_GROUP: i32 = libc::IPV6_ADD_MEMBERSHIP;
const IPV6_LEAVE_GROUP: i32 = libc::IPV6_DROP_MEMBERSHIP;

/// Options accepted, kept and read back without effect on the data path (docs/proxied.md).
pub const STORED: [(i32, i32); 14] = [
    (libc::IPPROTO_IP, libc::IP_TOS),
    (libc::IPPROTO_IP, libc::IP_PKTINFO),
    (libc::IPPROTO_IP, libc::IP_RECVTTL),
    (libc::IPPROTO_IP, libc::IP_RECVTOS),
    (libc::IPPROTO_IP, libc::IP_RECVERR),
    (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER),
    (libc::IPPROTO_IP, libc::IP_MULTICAST_ALL),
    (libc::IPPROTO_IPV6, libc::IPV6_TCLASS),
    (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO),
    (libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT),
    (libc::IPPROTO_IPV6, libc::IPV6_RECVTCLASS),
    (libc::IPPROTO_IPV6, libc::IPV6_RECVERR),
    (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER),
    (libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_ALL),
];

/// The value a [`STORED`] option reads back as before it is set (Linux's defaults).
fn stored_default(level: i32, name: i32) -> i32 {
    match (level, name) {
        (libc::IPPROTO_IP, libc::IP_MULTICAST_ALL)
        | (libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_ALL) => 1,
        (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) => 0,
        (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER)
        | (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER) => {
            1 // IP_PMTUDISC_WANT
        }
        _ => 0,
    }
}

/// One membership of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub group: IpAddr,
    /// The interface's position in [`Net::ifaces`].
    pub iface: usize,
}

/// The IP-level state of one UDP socket.
#[derive(Debug, Clone)]
pub struct Ip {
    /// `IPV6_UNICAST_HOPS`, `IPV6_MULTICAST_HOPS`, `IP_TTL`, `IP_MULTICAST_TTL`; -1: default.
    pub hops6: i32,
    pub mhops6: i32,
    pub ttl4: i32,
    pub mttl4: i32,
    /// `IPV6_MULTICAST_IF` (an index; 0: none).
    pub mif6: u32,
    /// `IP_MULTICAST_IF`: an index (0: none) and the local address given.
    pub mif4: u32,
    pub maddr4: Ipv4Addr,
    /// `IPV6_MULTICAST_LOOP`, `IP_MULTICAST_LOOP`.
    pub mloop6: bool,
    pub mloop4: bool,
    pub groups: Vec<Membership>,
    /// Values of [`STORED`] options that were set.
    stored: Vec<((i32, i32), i32)>,
}

impl Default for Ip {
    fn default() -> Ip {
        Ip {
            hops6: -1,
            mhops6: -1,
            ttl4: -1,
            mttl4: -1,
            mif6: 0,
            mif4: 0,
            maddr4: Ipv4Addr::UNSPECIFIED,
            mloop6: true,
            mloop4: true,
            groups: Vec::new(),
            stored: Vec::new(),
        }
    }
}

/// An int option: 4 bytes, or (`byte_ok`, as the IPv4 level) one byte; else `EINVAL`.
fn int(v: &[u8], byte_ok: bool) -> io::Result<i32> {
    match v.len() {
        n if n >= 4 => Ok(i32::from_ne_bytes([v[0], v[1], v[2], v[3]])),
        n if n >= 1 && byte_ok => Ok(i32::from(v[0])),
        _ => Err(io_error(libc::EINVAL)),
    }
}

fn hops(x: i32) -> io::Result<i32> {
    if (-1..=255).contains(&x) {
        Ok(x)
    } else {
        Err(io_error(libc::EINVAL))
    }
}

fn v4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// The first up VDE interface (where a link-scope group routes to).
pub fn first_up(net: &Net) -> Option<usize> {
    (0..net.ifaces.len()).find(|&i| i != LO && net.ifaces[i].up && !net.ifaces[i].is_loopback())
}

/// Whether an IPv6 address is link-scoped (link-local unicast, or multicast of interface or
/// link scope).
pub fn link_scope(ip: &Ipv6Addr) -> bool {
    ip.is_unicast_link_local() || (ip.is_multicast() && ip.octets()[1] & 0x0f <= 2)
}

/// The interface a membership of `group` with interface index `index` (0: none) and, for IPv4,
/// local address `local` means; `ENODEV` when there is none.
fn member_iface(net: &Net, group: IpAddr, index: u32, local: Ipv4Addr) -> io::Result<usize> {
    let enodev = || io_error(libc::ENODEV);
    if index != 0 {
        return net.by_index(index).ok_or_else(enodev);
    }
    if !local.is_unspecified() {
        return net.owner_of(IpAddr::V4(local)).ok_or_else(enodev);
    }
    let scoped = matches!(group, IpAddr::V6(g) if link_scope(&g));
    let routed = if scoped { None } else { net.route(group, None) };
    routed.or_else(|| first_up(net)).ok_or_else(enodev)
}

/// A change of memberships [`Ip::setsockopt`] asks the caller to make.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing beyond the socket's own state.
    None,
    /// Join `Membership` (the interface may have to join the group first).
    Join(Membership),
    /// The membership was dropped (the interface may leave the group).
    Left(Membership),
}

impl Ip {
    /// `setsockopt` of an IP level on a UDP socket of `domain`; `bound_dev` is the socket's
    /// `SO_BINDTODEVICE` interface index. A join is only checked here: the caller joins the
    /// interface and then records it ([`Ip::groups`]).
    pub fn setsockopt(
        &mut self,
        net: &Net,
        domain: i32,
        bound_dev: Option<u32>,
        level: i32,
        name: i32,
        v: &[u8],
    ) -> io::Result<Change> {
        if level == libc::IPPROTO_IPV6 && domain != libc::AF_INET6 {
            return Err(io_error(libc::ENOPROTOOPT));
        }
        match (level, name) {
            (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS) => self.hops6 = hops(int(v, false)?)?,
            (libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS) => self.mhops6 = hops(int(v, false)?)?,
            (libc::IPPROTO_IP, libc::IP_TTL) => {
                let x = int(v, false)?;
                if x != -1 && !(1..=255).contains(&x) {
                    return Err(io_error(libc::EINVAL));
                }
                self.ttl4 = x;
            }
            (libc::IPPROTO_IP, libc::IP_MULTICAST_TTL) => self.mttl4 = hops(int(v, true)?)?,
            (libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP) => match int(v, false)? {
                x @ (0 | 1) => self.mloop6 = x == 1,
                _ => return Err(io_error(libc::EINVAL)),
            },
            (libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP) => self.mloop4 = int(v, true)? != 0,
            (libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF) => {
                let x = int(v, false)?;
                if x != 0 {
                    if x < 0 || net.by_index(x as u32).is_none() {
                        return Err(io_error(libc::ENODEV));
                    }
                    if bound_dev.is_some_and(|b| b != x as u32) {
                        return Err(io_error(libc::EINVAL));
                    }
                }
                self.mif6 = x as u32;
            }
            (libc::IPPROTO_IP, libc::IP_MULTICAST_IF) => {
                // ip_mreqn (12), ip_mreq (8: its second address is the interface's) or in_addr.
                let (addr, index) = match v.len() {
                    n if n >= 12 => (v4(&v[4..8]), u32::from_ne_bytes([v[8], v[9], v[10], v[11]])),
                    n if n >= 8 => (v4(&v[4..8]), 0),
                    n if n >= 4 => (v4(&v[..4]), 0),
                    _ => return Err(io_error(libc::EINVAL)),
                };
                if index == 0 && addr.is_unspecified() {
                    self.mif4 = 0;
                    self.maddr4 = addr;
                    return Ok(Change::None);
                }
                let i = if index != 0 {
                    net.by_index(index)
                } else {
                    net.owner_of(IpAddr::V4(addr))
                }
                .ok_or_else(|| io_error(libc::EADDRNOTAVAIL))?;
                let index = net.ifaces[i].index;
                if bound_dev.is_some_and(|b| b != index) {
                    return Err(io_error(libc::EINVAL));
                }
                self.mif4 = index;
                self.maddr4 = addr;
            }
            (libc::IPPROTO_IPV6, IPV6_JOIN_GROUP | IPV6_LEAVE_GROUP) => {
                if v.len() < 20 {
                    return Err(io_error(libc::EINVAL));
                }
                let mut o = [0u8; 16];
                o.copy_from_slice(&v[..16]);
                let group = Ipv6Addr::from(o);
                let index = u32::from_ne_bytes([v[16], v[17], v[18], v[19]]);
                if !group.is_multicast() {
                    return Err(io_error(libc::EINVAL));
                }
                let group = IpAddr::V6(group);
                if name == IPV6_LEAVE_GROUP {
                    let at = self.groups.iter().position(|m| {
                        m.group == group && (index == 0 || net.ifaces[m.iface].index == index)
                    });
                    let at = at.ok_or_else(|| io_error(libc::EADDRNOTAVAIL))?;
                    return Ok(Change::Left(self.groups.remove(at)));
                }
                let iface = member_iface(net, group, index, Ipv4Addr::UNSPECIFIED)?;
                return self.join(Membership { group, iface });
            }
            (libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP | libc::IP_DROP_MEMBERSHIP) => {
                if v.len() < 8 {
                    return Err(io_error(libc::EINVAL));
                }
                let group = v4(&v[..4]);
                let local = v4(&v[4..8]);
                let index = if v.len() >= 12 {
                    u32::from_ne_bytes([v[8], v[9], v[10], v[11]])
                } else {
                    0
                };
                if !group.is_multicast() {
                    return Err(io_error(libc::EINVAL));
                }
                let group = IpAddr::V4(group);
                if name == libc::IP_DROP_MEMBERSHIP {
                    let found = member_iface(net, group, index, local);
                    if index == 0 && local.is_unspecified() && found.is_err() {
                        return Err(io_error(libc::ENODEV));
                    }
                    let at = self.groups.iter().position(|m| {
                        m.group == group
                            && (index == 0 && local.is_unspecified()
                                || found.as_ref().is_ok_and(|&i| i == m.iface))
                    });
                    let at = at.ok_or_else(|| io_error(libc::EADDRNOTAVAIL))?;
                    return Ok(Change::Left(self.groups.remove(at)));
                }
                let iface = member_iface(net, group, index, local)?;
                return self.join(Membership { group, iface });
            }
            (l, n) if STORED.contains(&(l, n)) => {
                let x = int(v, l == libc::IPPROTO_IP)?;
                self.stored.retain(|(k, _)| *k != (l, n));
                self.stored.push(((l, n), x));
            }
            _ => return Err(io_error(libc::ENOPROTOOPT)),
        }
        Ok(Change::None)
    }

    fn join(&self, m: Membership) -> io::Result<Change> {
        if self.groups.contains(&m) {
            return Err(io_error(libc::EADDRINUSE));
        }
        Ok(Change::Join(m))
    }

    /// `getsockopt` of an IP level on a UDP socket of `domain`.
    pub fn getsockopt(&self, domain: i32, level: i32, name: i32) -> io::Result<Vec<u8>> {
        if level == libc::IPPROTO_IPV6 && domain != libc::AF_INET6 {
            return Err(io_error(libc::ENOPROTOOPT));
        }
        let def = |x: i32, d: i32| if x < 0 { d } else { x };
        let v = match (level, name) {
            (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS) => def(self.hops6, 64),
            (libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS) => def(self.mhops6, 1),
            (libc::IPPROTO_IP, libc::IP_TTL) => def(self.ttl4, 64),
            (libc::IPPROTO_IP, libc::IP_MULTICAST_TTL) => def(self.mttl4, 1),
            (libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP) => i32::from(self.mloop6),
            (libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP) => i32::from(self.mloop4),
            (libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF) => self.mif6 as i32,
            (libc::IPPROTO_IP, libc::IP_MULTICAST_IF) => return Ok(self.maddr4.octets().to_vec()),
            (l, n) if STORED.contains(&(l, n)) => self
                .stored
                .iter()
                .find(|(k, _)| *k == (l, n))
                .map_or_else(|| stored_default(l, n), |(_, x)| *x),
            _ => return Err(io_error(libc::ENOPROTOOPT)),
        };
        Ok(v.to_ne_bytes().to_vec())
    }

    /// The hop limit of a datagram to `dst` (0: it does not leave the stack).
    pub fn hop_limit(&self, dst: IpAddr) -> u8 {
        let def = |x: i32, d: i32| if x < 0 { d } else { x } as u8;
        match (dst, dst.is_multicast()) {
            (IpAddr::V6(_), true) => def(self.mhops6, 1),
            (IpAddr::V6(_), false) => def(self.hops6, 64),
            (IpAddr::V4(_), true) => def(self.mttl4, 1),
            (IpAddr::V4(_), false) => def(self.ttl4, 64),
        }
    }

    /// Whether a multicast datagram to `dst` is looped back to the stack's own sockets.
    pub fn loops(&self, dst: IpAddr) -> bool {
        match dst {
            IpAddr::V6(_) => self.mloop6,
            IpAddr::V4(_) => self.mloop4,
        }
    }

    /// The multicast interface index for `dst`'s family (0: none) and, for IPv4, the address.
    pub fn multicast_if(&self, dst: IpAddr) -> (u32, Option<Ipv4Addr>) {
        match dst {
            IpAddr::V6(_) => (self.mif6, None),
            IpAddr::V4(_) => (
                self.mif4,
                (!self.maddr4.is_unspecified()).then_some(self.maddr4),
            ),
        }
    }
}

/// Whether every interface hears `group` anyway (all nodes / all systems).
pub fn always_joined(group: IpAddr) -> bool {
    match group {
        IpAddr::V6(g) => g == Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
        IpAddr::V4(g) => g == Ipv4Addr::new(224, 0, 0, 1),
    }
}

/// Makes interface `i` join `group` (if it has not yet): `ENOBUFS` when smoltcp's group table
/// is full.
pub fn join(net: &mut Net, i: usize, group: IpAddr) -> io::Result<()> {
    let f = &mut net.ifaces[i];
    if f.groups.contains(&group) {
        return Ok(());
    }
    f.iface
        .join_multicast_group(smoltcp::wire::IpAddress::from(group))
        .map_err(|_| io_error(libc::ENOBUFS))?;
    f.groups.push(group);
    Ok(())
}

/// Makes every interface leave the groups no membership in `held` names any more.
pub fn release(net: &mut Net, held: &[Membership]) {
    for (i, f) in net.ifaces.iter_mut().enumerate() {
        let gone: Vec<IpAddr> = f
            .groups
            .iter()
            .copied()
            .filter(|g| !held.iter().any(|m| m.iface == i && m.group == *g))
            .collect();
        for g in gone {
            let _ = f
                .iface
                .leave_multicast_group(smoltcp::wire::IpAddress::from(g));
            f.groups.retain(|x| *x != g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values_as_linux() {
        let mut ip = Ip::default();
        assert_eq!(ip.hop_limit("ff02::1:2".parse().unwrap()), 1);
        assert_eq!(ip.hop_limit("fd00::1".parse().unwrap()), 64);
        assert_eq!(ip.hop_limit("239.1.2.3".parse().unwrap()), 1);
        let e = |r: io::Result<i32>| r.unwrap_err().raw_os_error();
        assert_eq!(e(hops(256)), Some(libc::EINVAL));
        assert_eq!(e(hops(-2)), Some(libc::EINVAL));
        assert_eq!(e(int(&[1, 0], false)), Some(libc::EINVAL));
        assert_eq!(int(&[7], true).unwrap(), 7);
        ip.mhops6 = 5;
        ip.mttl4 = 0;
        assert_eq!(ip.hop_limit("ff05::1".parse().unwrap()), 5);
        assert_eq!(ip.hop_limit("224.0.0.9".parse().unwrap()), 0);
        assert_eq!(
            ip.getsockopt(libc::AF_INET, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENOPROTOOPT),
            "IPv6 options on an AF_INET socket"
        );
        assert_eq!(
            ip.getsockopt(libc::AF_INET6, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_ALL)
                .unwrap(),
            1i32.to_ne_bytes()
        );
        assert_eq!(
            ip.getsockopt(libc::AF_INET, libc::IPPROTO_IP, 4242)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENOPROTOOPT)
        );
    }

    #[test]
    fn scopes() {
        assert!(link_scope(&"ff02::1:2".parse().unwrap()));
        assert!(link_scope(&"fe80::1".parse().unwrap()));
        assert!(!link_scope(&"ff05::1:3".parse().unwrap()));
        assert!(!link_scope(&"fd00::1".parse().unwrap()));
        assert!(always_joined("ff02::1".parse().unwrap()));
        assert!(!always_joined("ff02::1:2".parse().unwrap()));
    }
}
