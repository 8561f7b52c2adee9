//! The stack's interfaces, addresses and routes, and the routing decision that picks the
//! interface of a socket. Runs in the host process, under the stack's mutex.
//!
//! smoltcp polls one `Interface` per device (an `Interface` is tied to one `phy::Device`, and
//! its `poll` serves only the sockets of the `SocketSet` it is given), has no loopback
//! interface and does not forward between interfaces, so each [`Iface`] has its own `Interface` and its own
//! `SocketSet`, and every smoltcp socket lives in the set of the interface it talks through:
//! a connection in the one [`Net::route`] picks, a listener or an unconnected UDP socket in every
//! interface it may receive on.
//!
//! What netlink shows (`addrs`, `routes`) is the configuration; [`Net::sync`] derives from it
//! what each smoltcp `Interface` holds: its own addresses, the routes whose gateway it reaches,
//! and on `lo` also every local address of the other interfaces (as host prefixes), so that a
//! stack can reach its own addresses, as a kernel does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use smoltcp::iface::{Config, Interface, Route, SocketHandle, SocketSet};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

use crate::device::{LoopDevice, VdeDevice, LO_MTU};

/// smoltcp's compile-time limits (features `iface-max-addr-count-8`, `iface-max-route-count-16`).
pub const MAX_ADDRS: usize = 8;
/// See [`MAX_ADDRS`].
pub const MAX_ROUTES: usize = 16;
/// Default MTU of a VDE interface.
pub const DEFAULT_MTU: u32 = 1500;
/// Largest MTU a VDE network carries (`VDE_ETHBUFSIZE` less the Ethernet header and a VLAN tag).
pub const MAX_MTU: u32 = 9216;
/// Smallest MTU (IPv4's minimum).
pub const MIN_MTU: u32 = 68;
/// How long a fragmented datagram may keep the next one of its interface waiting (one whose
/// neighbour never answers is given up, as Linux gives up an unresolved neighbour's queue).
pub const FRAG_STALL: std::time::Duration = std::time::Duration::from_secs(3);
/// Egress passes per poll while smoltcp is sending the fragments of an IPv4 datagram (it sends
/// one fragment per pass; a 64 KiB datagram is 45 fragments at MTU 1500).
const FRAG_PASSES: usize = 64;

/// A device: a VDE port or the loopback.
pub enum Dev {
    /// An Ethernet interface on a VDE network.
    Vde(VdeDevice),
    /// `lo`.
    Lo(LoopDevice),
}

/// An address of an interface, as netlink shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    /// The address.
    pub ip: IpAddr,
    /// Prefix length.
    pub prefix: u8,
    /// `IFA_F_*` flags given when it was added (`IFA_F_PERMANENT` is reported for an address
    /// without lifetimes).
    pub flags: u32,
    /// Lifetimes (`IFA_CACHEINFO`), if it has any.
    pub life: Option<Lifetimes>,
}

/// An address's valid and preferred lifetimes, counted from `since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Seconds, `u32::MAX` for forever.
    pub valid: u32,
    /// Seconds, `u32::MAX` for forever; never more than `valid`.
    pub preferred: u32,
    /// When they were given.
    pub since: std::time::Instant,
}

/// `INFINITY_LIFE_TIME`.
pub const FOREVER: u32 = u32::MAX;

impl Lifetimes {
    /// What is left of (valid, preferred) at `now`, in seconds.
    pub fn left(&self, now: std::time::Instant) -> (u32, u32) {
        let gone = now.saturating_duration_since(self.since).as_secs();
        let left = |x: u32| {
            if x == FOREVER {
                FOREVER
            } else {
                (u64::from(x).saturating_sub(gone)) as u32
            }
        };
        (left(self.valid), left(self.preferred))
    }

    /// When the address expires (`None`: never).
    pub fn expiry(&self) -> Option<std::time::Instant> {
        (self.valid != FOREVER)
            .then(|| self.since + std::time::Duration::from_secs(u64::from(self.valid)))
    }
}

impl Addr {
    fn cidr(&self) -> IpCidr {
        IpCidr::new(IpAddress::from(self.ip), self.prefix)
    }

    /// Whether `ip` is in this address's network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        same_family(self.ip, ip) && self.cidr().contains_addr(&IpAddress::from(ip))
    }
}

/// A route of the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteEntry {
    /// Destination network (unspecified for a default route).
    pub dst: IpAddr,
    /// Destination prefix length.
    pub prefix: u8,
    /// Gateway; `None` for an on-link route (out of `oif`).
    pub gateway: Option<IpAddr>,
    /// Output interface index, if the request named one.
    pub oif: Option<u32>,
    /// `RTPROT_*` the request gave.
    pub protocol: u8,
}

/// Whether both addresses are of one family.
pub fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// Whether `dst/prefix` contains `ip`.
pub fn prefix_contains(dst: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    same_family(dst, ip)
        && IpCidr::new(IpAddress::from(dst), prefix).contains_addr(&IpAddress::from(ip))
}

/// Whether `ip/prefix` has bits set past the prefix.
pub fn has_host_bits(ip: IpAddr, prefix: u8) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let v = u32::from(a);
            prefix < 32 && v & (u32::MAX >> prefix.min(31)) != 0 && (prefix != 0 || v != 0)
        }
        IpAddr::V6(a) => {
            let v = u128::from(a);
            prefix < 128
                && (if prefix == 0 {
                    v
                } else {
                    v & (u128::MAX >> prefix)
                }) != 0
        }
    }
}

/// One interface of the stack.
pub struct Iface {
    /// Interface index (`lo` is 1).
    pub index: u32,
    /// Name (`lo`, `vde0`, …).
    pub name: String,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// MAC address (zero for `lo`).
    pub mac: [u8; 6],
    /// MTU.
    pub mtu: u32,
    /// Addresses, in the order they were added.
    pub addrs: Vec<Addr>,
    /// smoltcp's interface.
    pub iface: Interface,
    /// Its device.
    pub dev: Dev,
    /// The smoltcp sockets that talk through this interface.
    pub sockets: SocketSet<'static>,
    /// The raw socket for IPv6 fragments in `sockets` ([`crate::frag`]), and when it was last
    /// given a datagram.
    pub frag6: (SocketHandle, std::time::Instant),
    /// The UDP socket holding a datagram smoltcp will cut into IPv4 fragments, until it has
    /// left, and since when (smoltcp 0.14 has one fragmentation buffer per interface: a second
    /// fragmented datagram dispatched before the first is out would overwrite it).
    pub big4: Option<(SocketHandle, std::time::Instant)>,
    /// An empty socket set: [`Iface::fragmenting`] asks smoltcp's poll deadline about itself.
    idle: SocketSet<'static>,
    /// The multicast groups joined for sockets' memberships ([`crate::mcast`]).
    pub groups: Vec<IpAddr>,
}

fn config(hw: HardwareAddress) -> Config {
    let mut seed = [0u8; 8];
    crate::sys::random_bytes(&mut seed);
    let mut c = Config::new(hw);
    c.random_seed = u64::from_ne_bytes(seed);
    c
}

impl Iface {
    /// `lo`, index 1: up, with 127.0.0.1/8 and ::1/128 (as vdestack's `lo`).
    pub fn loopback(now: smoltcp::time::Instant) -> Iface {
        let mut dev = LoopDevice::new();
        let iface = Interface::new(config(HardwareAddress::Ip), &mut dev, now);
        let (sockets, frag6) = Self::sockets();
        let host = |ip: IpAddr, prefix| Addr {
            ip,
            prefix,
            flags: 0,
            life: None,
        };
        Iface {
            index: 1,
            name: "lo".into(),
            up: true,
            mac: [0; 6],
            mtu: LO_MTU as u32,
            addrs: vec![
                host(IpAddr::V4(Ipv4Addr::LOCALHOST), 8),
                host(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
            ],
            iface,
            dev: Dev::Lo(dev),
            sockets,
            frag6,
            big4: None,
            idle: SocketSet::new(Vec::new()),
            groups: Vec::new(),
        }
    }

    /// A VDE interface: down, no address, a random locally administered MAC.
    pub fn vde(index: u32, name: &str, dev: VdeDevice, now: smoltcp::time::Instant) -> Iface {
        let mut mac = [0u8; 6];
        crate::sys::random_bytes(&mut mac);
        mac[0] = (mac[0] & 0xfe) | 0x02;
        let mut dev = Dev::Vde(dev);
        let iface = Self::new_interface(&mut dev, mac, now);
        let (sockets, frag6) = Self::sockets();
        Iface {
            index,
            name: name.to_owned(),
            up: false,
            mac,
            mtu: DEFAULT_MTU,
            addrs: Vec::new(),
            iface,
            dev,
            sockets,
            frag6,
            big4: None,
            idle: SocketSet::new(Vec::new()),
            groups: Vec::new(),
        }
    }

    /// The socket set of a new interface, with the raw socket for IPv6 fragments in it.
    fn sockets() -> (SocketSet<'static>, (SocketHandle, std::time::Instant)) {
        let mut sockets = SocketSet::new(Vec::new());
        let frag6 = sockets.add(crate::reasm::raw_socket());
        (sockets, (frag6, std::time::Instant::now()))
    }

    /// Whether smoltcp is still sending the fragments of an IPv4 datagram (its only deadline
    /// without sockets is "now" while its fragmentation buffer is in use).
    pub fn fragmenting(&mut self, now: smoltcp::time::Instant) -> bool {
        self.iface.poll_at(now, &self.idle).is_some()
    }

    fn new_interface(dev: &mut Dev, mac: [u8; 6], now: smoltcp::time::Instant) -> Interface {
        match dev {
            Dev::Vde(d) => Interface::new(
                config(HardwareAddress::Ethernet(EthernetAddress(mac))),
                d,
                now,
            ),
            Dev::Lo(d) => Interface::new(config(HardwareAddress::Ip), d, now),
        }
    }

    /// Whether this is `lo`.
    pub fn is_loopback(&self) -> bool {
        matches!(self.dev, Dev::Lo(_))
    }

    /// Sets the MAC address (already checked unicast and non-zero).
    pub fn set_mac(&mut self, mac: [u8; 6]) {
        self.mac = mac;
        self.iface
            .set_hardware_addr(HardwareAddress::Ethernet(EthernetAddress(mac)));
    }

    /// Sets the MTU. smoltcp reads a device's capabilities once, so the `Interface` is made
    /// anew (addresses and routes are put back by the next [`Net::sync`]).
    pub fn set_mtu(&mut self, mtu: u32, now: smoltcp::time::Instant) {
        self.mtu = mtu;
        if let Dev::Vde(d) = &mut self.dev {
            d.mtu = mtu as usize;
        }
        self.iface = Self::new_interface(&mut self.dev, self.mac, now);
    }

    /// One smoltcp poll of this interface (receive, timers, transmit).
    pub fn poll(&mut self, now: smoltcp::time::Instant) {
        match &mut self.dev {
            Dev::Vde(d) => {
                self.iface.poll(now, d, &mut self.sockets);
                // The rest of a fragmented IPv4 datagram now, not one fragment per turn.
                for _ in 0..FRAG_PASSES {
                    if d.tx_blocked() || self.iface.poll_at(now, &self.idle).is_none() {
                        break;
                    }
                    self.iface.poll_egress(now, d, &mut self.sockets);
                }
            }
            Dev::Lo(d) => {
                self.iface.poll(now, d, &mut self.sockets);
            }
        }
    }

    /// Whether this interface needs another poll at once (frames left over from a spent
    /// budget, packets on the loopback queue).
    pub fn busy(&self) -> bool {
        match &self.dev {
            Dev::Vde(d) => d.rx_exhausted(),
            Dev::Lo(d) => d.has_pending(),
        }
    }

    /// A new turn of the event loop.
    pub fn refill(&mut self) {
        match &mut self.dev {
            Dev::Vde(d) => d.refill(),
            Dev::Lo(d) => d.refill(),
        }
    }

    /// Whether `ip` is the broadcast address of one of this interface's IPv4 networks.
    pub fn is_subnet_broadcast(&self, ip: IpAddr) -> bool {
        let IpAddr::V4(v) = ip else { return false };
        self.addrs.iter().any(|a| match a.ip {
            IpAddr::V4(x) if a.prefix < 31 => {
                let host = u32::MAX >> a.prefix;
                (u32::from(x) | host) == u32::from(v)
            }
            _ => false,
        })
    }

    /// Its first IPv6 link-local address.
    pub fn link_local(&self) -> Option<Ipv6Addr> {
        self.addrs.iter().find_map(|a| match a.ip {
            IpAddr::V6(v) if v.is_unicast_link_local() => Some(v),
            _ => None,
        })
    }

    /// Whether `ip` is one of this interface's addresses.
    pub fn has_addr(&self, ip: IpAddr) -> bool {
        self.addrs.iter().any(|a| a.ip == ip)
    }
}

/// Interfaces and routes.
pub struct Net {
    /// `lo` first, then one per VNL.
    pub ifaces: Vec<Iface>,
    /// The main table's routes (through a gateway, or on-link).
    pub routes: Vec<RouteEntry>,
    /// Identification of the last IPv6 fragmented datagram sent ([`crate::frag`]).
    pub frag_id: u32,
    /// IPv6 datagrams being reassembled ([`crate::reasm`]).
    pub reasm: crate::reasm::Reasm,
    /// Multicast datagrams sent with `IP_MULTICAST_LOOP`/`IPV6_MULTICAST_LOOP` for the
    /// stack's own sockets: (interface, source, group and port, payload) ([`crate::udp`]).
    pub looped: Vec<(usize, SocketAddr, SocketAddr, Vec<u8>)>,
}

/// `lo`'s position in [`Net::ifaces`].
pub const LO: usize = 0;

impl Net {
    /// Interfaces `ifaces` (`lo` first) without routes, their addresses given to smoltcp.
    pub fn new(ifaces: Vec<Iface>) -> Net {
        let mut id = [0u8; 4];
        crate::sys::random_bytes(&mut id);
        let mut net = Net {
            ifaces,
            routes: Vec::new(),
            frag_id: u32::from_ne_bytes(id),
            reasm: Default::default(),
            looped: Vec::new(),
        };
        net.sync();
        net
    }

    /// The interface with index `index`.
    pub fn by_index(&self, index: u32) -> Option<usize> {
        self.ifaces.iter().position(|i| i.index == index)
    }

    /// The interface named `name`.
    pub fn by_name(&self, name: &str) -> Option<usize> {
        self.ifaces.iter().position(|i| i.name == name)
    }

    /// Whether `ip` is an address of this stack (any interface) or a loopback address.
    pub fn is_local(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.ifaces.iter().any(|i| i.has_addr(ip))
    }

    /// The interface that owns address `ip`.
    pub fn owner_of(&self, ip: IpAddr) -> Option<usize> {
        if ip.is_loopback() {
            return Some(LO);
        }
        self.ifaces.iter().position(|i| i.has_addr(ip))
    }

    /// The interface whose network holds gateway `gw` (an interface given by index `oif` must).
    pub fn gateway_iface(&self, gw: IpAddr, oif: Option<u32>) -> Option<usize> {
        let reaches = |i: &Iface| !i.is_loopback() && i.addrs.iter().any(|a| a.contains(gw));
        match oif {
            Some(o) => self.by_index(o).filter(|&i| reaches(&self.ifaces[i])),
            None => self.ifaces.iter().position(reaches),
        }
    }

    /// The interface a packet to `dst` leaves through: `lo` for local addresses; otherwise the
    /// longest prefix among the networks of the up interfaces and the routes. With `from` (a
    /// socket bound to an address), only the interface owning that address qualifies.
    pub fn route(&self, dst: IpAddr, from: Option<IpAddr>) -> Option<usize> {
        self.route_via(dst, from, None)
    }

    /// [`Net::route`] through interface `only` alone, when given (`SO_BINDTODEVICE`, a
    /// multicast interface).
    pub fn route_via(
        &self,
        dst: IpAddr,
        from: Option<IpAddr>,
        only: Option<usize>,
    ) -> Option<usize> {
        if self.is_local(dst) {
            return (self.ifaces[LO].up && only.is_none_or(|o| o == LO)).then_some(LO);
        }
        let allowed = |i: usize| {
            let f = &self.ifaces[i];
            f.up && !f.is_loopback()
                && from.is_none_or(|a| f.has_addr(a))
                && only.is_none_or(|o| o == i)
        };
        let mut best: Option<(u8, usize)> = None;
        let mut consider = |prefix: u8, i: usize| {
            if allowed(i) && best.is_none_or(|(p, _)| prefix > p) {
                best = Some((prefix, i));
            }
        };
        for (i, f) in self.ifaces.iter().enumerate() {
            for a in &f.addrs {
                if a.contains(dst) {
                    consider(a.prefix, i);
                }
            }
        }
        for r in &self.routes {
            if prefix_contains(r.dst, r.prefix, dst) {
                if let Some(i) = self.route_iface(r) {
                    consider(r.prefix, i);
                }
            }
        }
        best.map(|(_, i)| i)
    }

    /// The source address for `dst` out of interface `i`.
    pub fn source_for(&mut self, i: usize, dst: IpAddr) -> Option<IpAddr> {
        if i == LO && !dst.is_loopback() && self.is_local(dst) {
            return Some(dst);
        }
        self.ifaces[i]
            .iface
            .get_source_address(&IpAddress::from(dst))
            .map(IpAddr::from)
    }

    /// The interface route `r` leaves through: the one reaching its gateway, or for an on-link
    /// route its interface while that has an address in the route's prefix (smoltcp reaches
    /// a network directly only through an address of the interface in it: [`Net::sync`]).
    pub fn route_iface(&self, r: &RouteEntry) -> Option<usize> {
        match r.gateway {
            Some(g) => self.gateway_iface(g, r.oif),
            None => self.by_index(r.oif?).filter(|&i| {
                let f = &self.ifaces[i];
                !f.is_loopback()
                    && f.addrs
                        .iter()
                        .any(|a| prefix_contains(r.dst, r.prefix, a.ip))
            }),
        }
    }

    /// Gateway routes that interface `i` would hold (those whose gateway it reaches).
    pub fn routes_of(&self, i: usize) -> impl Iterator<Item = &RouteEntry> + '_ {
        self.routes
            .iter()
            .filter(move |r| r.gateway.is_some() && self.route_iface(r) == Some(i))
    }

    /// The prefix smoltcp is given for address `a` of interface `i`: its own, or that of the
    /// widest on-link route of `i` holding it (smoltcp then reaches that network directly).
    fn smoltcp_prefix(&self, i: usize, a: &Addr) -> u8 {
        let index = self.ifaces[i].index;
        self.routes
            .iter()
            .filter(|r| {
                r.gateway.is_none()
                    && r.oif == Some(index)
                    && prefix_contains(r.dst, r.prefix, a.ip)
            })
            .map(|r| r.prefix)
            .fold(a.prefix, u8::min)
    }

    /// Removes the addresses whose valid lifetime is over; whether any was.
    pub fn expire(&mut self, now: std::time::Instant) -> bool {
        let mut gone = false;
        for f in &mut self.ifaces {
            let before = f.addrs.len();
            f.addrs
                .retain(|a| a.life.and_then(|l| l.expiry()).is_none_or(|t| t > now));
            gone |= f.addrs.len() != before;
        }
        if gone {
            self.sync();
        }
        gone
    }

    /// The next time an address expires.
    pub fn next_expiry(&self) -> Option<std::time::Instant> {
        self.ifaces
            .iter()
            .flat_map(|f| f.addrs.iter())
            .filter_map(|a| a.life.and_then(|l| l.expiry()))
            .min()
    }

    /// Pushes the configuration into the smoltcp interfaces (see the module doc).
    pub fn sync(&mut self) {
        let mut host_addrs: Vec<IpCidr> = Vec::new();
        for f in self.ifaces.iter().skip(1) {
            for a in &f.addrs {
                let p = if a.ip.is_ipv4() { 32 } else { 128 };
                host_addrs.push(IpCidr::new(IpAddress::from(a.ip), p));
            }
        }
        let routes: Vec<Vec<Route>> = (0..self.ifaces.len())
            .map(|i| {
                self.routes_of(i)
                    .map(|r| Route {
                        cidr: IpCidr::new(IpAddress::from(r.dst), r.prefix),
                        via_router: IpAddress::from(r.gateway.expect("a gateway route")),
                        preferred_until: None,
                        expires_at: None,
                    })
                    .collect()
            })
            .collect();
        let prefixes: Vec<Vec<u8>> = (0..self.ifaces.len())
            .map(|i| {
                let f = &self.ifaces[i];
                f.addrs.iter().map(|a| self.smoltcp_prefix(i, a)).collect()
            })
            .collect();
        for (i, f) in self.ifaces.iter_mut().enumerate() {
            let mut cidrs: Vec<IpCidr> = f
                .addrs
                .iter()
                .zip(&prefixes[i])
                .map(|(a, p)| IpCidr::new(IpAddress::from(a.ip), *p))
                .collect();
            if i == LO {
                cidrs.extend(host_addrs.iter().copied());
            }
            f.iface.update_ip_addrs(|v| {
                v.clear();
                for c in cidrs {
                    if v.push(c).is_err() {
                        break;
                    }
                }
            });
            // A new `Interface` (after an MTU change) joins the groups again.
            for g in &f.groups {
                let _ = f.iface.join_multicast_group(IpAddress::from(*g));
            }
            let rs = &routes[i];
            f.iface.routes_mut().update(|v| {
                v.clear();
                for r in rs {
                    if v.push(*r).is_err() {
                        break;
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_bits() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(!has_host_bits(ip("10.5.0.0"), 16));
        assert!(has_host_bits(ip("10.5.0.1"), 16));
        assert!(!has_host_bits(ip("0.0.0.0"), 0));
        assert!(has_host_bits(ip("10.0.0.0"), 0));
        assert!(!has_host_bits(ip("10.0.0.1"), 32));
        assert!(!has_host_bits(ip("fd00:88::"), 48));
        assert!(has_host_bits(ip("fd00:88::1"), 48));
        assert!(!has_host_bits(ip("::"), 0));
        assert!(prefix_contains(ip("10.0.0.0"), 8, ip("10.1.2.3")));
        assert!(!prefix_contains(ip("10.0.0.0"), 8, ip("fd00::1")));
    }

    #[test]
    fn lifetimes_count_down() {
        let t0 = std::time::Instant::now();
        let l = Lifetimes {
            valid: 100,
            preferred: 40,
            since: t0,
        };
        assert_eq!(l.left(t0), (100, 40));
        let later = t0 + std::time::Duration::from_secs(50);
        assert_eq!(l.left(later), (50, 0));
        assert_eq!(l.left(t0 + std::time::Duration::from_secs(500)), (0, 0));
        assert_eq!(l.expiry(), Some(t0 + std::time::Duration::from_secs(100)));
        let forever = Lifetimes {
            valid: FOREVER,
            preferred: FOREVER,
            since: t0,
        };
        assert_eq!(forever.left(later), (FOREVER, FOREVER));
        assert_eq!(forever.expiry(), None);
    }

    #[test]
    fn subnet_broadcast_and_link_local() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut f = Iface::loopback(smoltcp::time::Instant::from_micros(0));
        let add = |ip, prefix| Addr {
            ip,
            prefix,
            flags: 0,
            life: None,
        };
        f.addrs = vec![
            add(ip("10.9.0.7"), 24),
            add(ip("fe80::1"), 64),
            add(ip("10.1.1.1"), 32),
        ];
        assert!(f.is_subnet_broadcast(ip("10.9.0.255")));
        assert!(!f.is_subnet_broadcast(ip("10.9.0.254")));
        assert!(!f.is_subnet_broadcast(ip("10.1.1.1")), "a /32 has none");
        assert_eq!(f.link_local(), Some("fe80::1".parse().unwrap()));
    }
}
