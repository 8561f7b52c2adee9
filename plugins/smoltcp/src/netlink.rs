//! rtnetlink, emulated: the requests the ioth client's netlink calls send (client/src/netlink),
//! answered on an `AF_NETLINK` socket's `SOCK_SEQPACKET` pair, one request batch per record.
//! Runs in the host process, on the event-loop thread, under the stack's mutex.
//!
//! Understood (parsed with netlink-packet-route): `RTM_GETLINK` (by index, by `IFLA_IFNAME`,
//! dump), `RTM_NEWLINK`/`RTM_SETLINK` (`IFF_UP` with the change mask, `IFLA_ADDRESS`,
//! `IFLA_MTU`, `IFLA_IFNAME` rename), `RTM_NEWADDR`/`RTM_DELADDR`/`RTM_GETADDR` dump,
//! `IFA_CACHEINFO` lifetimes (kept, reported counting down, the address removed when its valid
//! lifetime ends), `RTM_NEWROUTE`/`RTM_DELROUTE` (routes through a gateway, and on-link routes
//! out of an interface: see [`crate::net::Net::route_iface`])/`RTM_GETROUTE` dump. Errnos are the
//! kernel's (`ENODEV`, `EEXIST`, `EADDRNOTAVAIL`, `ESRCH`, `ENETUNREACH`, `EINVAL`), plus
//! `ENOSPC` past smoltcp's limits and `EOPNOTSUPP` for what smoltcp cannot do (new links of any
//! kind, deleting links, tables other than main) or requests it does
//! not know. Replies echo the request's sequence number and port id; dumps are `NLM_F_MULTI`
//! parts ending with `NLMSG_DONE`; `NLM_F_ACK` gets an ACK; a failure always gets a NACK,
//! capped, with the reason as an extended-ack message where one helps.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;

use netlink_packet_core::{
    DoneMessage, ErrorMessage, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK,
    NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_MULTIPART,
    NLM_F_REPLACE,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope, CacheInfo,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage, State};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::net::{
    self, Addr, Lifetimes, Net, RouteEntry, FOREVER, MAX_ADDRS, MAX_MTU, MAX_ROUTES, MIN_MTU,
};
use crate::stack::Sock;
use crate::sys;

/// Largest reply record.
pub(crate) const MAX_DGRAM: usize = 16 * 1024;
/// `sizeof(struct nlmsghdr)`.
const HDRLEN: usize = 16;
/// `IFA_F_PERMANENT`.
const IFA_F_PERMANENT: u32 = 0x80;
/// `IFA_F_DEPRECATED`.
const IFA_F_DEPRECATED: u32 = 0x20;
/// `NLMSGERR_ATTR_MSG`.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// An `AF_NETLINK` socket: replies waiting for room in the pair.
pub struct Nl {
    out: VecDeque<Vec<u8>>,
    /// A `NETLINK_SOCK_DIAG` socket ([`crate::diag`]), not rtnetlink.
    pub diag: bool,
}

/// A refusal: errno and, optionally, the reason (extended ack).
type Nack = (i32, Option<&'static str>);

impl Nl {
    pub fn new() -> Nl {
        Nl {
            out: VecDeque::new(),
            diag: false,
        }
    }

    /// A `NETLINK_SOCK_DIAG` socket.
    pub fn sock_diag() -> Nl {
        Nl {
            diag: true,
            ..Nl::new()
        }
    }

    /// Its `SO_PROTOCOL`.
    pub fn protocol(&self) -> i32 {
        if self.diag {
            libc::NETLINK_SOCK_DIAG
        } else {
            libc::NETLINK_ROUTE
        }
    }

    /// Requests are read only when every reply has gone out.
    pub fn interest(&self, want_out: bool) -> i16 {
        let mut ev = 0;
        if self.out.is_empty() {
            ev |= libc::POLLIN;
        }
        if want_out {
            ev |= libc::POLLOUT;
        }
        ev
    }
}

/// `struct sockaddr_nl` of our sockets: family `AF_NETLINK`, port id 0, no groups.
pub fn sockaddr_nl() -> Vec<u8> {
    let mut b = vec![0u8; 12];
    b[..2].copy_from_slice(&(libc::AF_NETLINK as u16).to_ne_bytes());
    b
}

/// Reads requests, answers them (a sock_diag socket from `diag`), sends the answers as far as
/// the pair takes them.
pub fn pump(
    net: &mut Net,
    s: &mut Sock,
    scratch: &mut [u8],
    now: smoltcp::time::Instant,
    diag: &[crate::diag::Entry],
) {
    let Sock {
        pe,
        kind,
        revents,
        want_out,
        ..
    } = s;
    let crate::stack::Kind::Netlink(nl) = kind else {
        return;
    };
    let Some(pe) = pe else { return };
    flush(nl, pe, want_out);
    if !nl.out.is_empty() || *revents & libc::POLLIN == 0 {
        return;
    }
    for _ in 0..16 {
        let n = match sys::recv(pe.as_fd(), scratch, 0) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(_) => break,
        };
        let replies = if nl.diag {
            crate::diag::answer(diag, &scratch[..n])
        } else {
            answer(net, &scratch[..n], now)
        };
        nl.out.extend(replies);
        flush(nl, pe, want_out);
        if !nl.out.is_empty() {
            break;
        }
    }
}

fn flush(nl: &mut Nl, pe: &std::os::fd::OwnedFd, want_out: &mut bool) {
    *want_out = false;
    while let Some(d) = nl.out.front() {
        match sys::send(pe.as_fd(), d) {
            Ok(_) => {
                nl.out.pop_front();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                *want_out = true;
                return;
            }
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(_) => {
                nl.out.clear();
                return;
            }
        }
    }
}

/// Collects reply messages into records of at most [`MAX_DGRAM`] bytes.
struct Out {
    records: Vec<Vec<u8>>,
    cur: Vec<u8>,
    seq: u32,
    port: u32,
}

impl Out {
    fn push(&mut self, flags: u16, payload: NetlinkPayload<RouteNetlinkMessage>) {
        let mut h = NetlinkHeader::default();
        h.flags = flags;
        h.sequence_number = self.seq;
        h.port_number = self.port;
        let mut m = NetlinkMessage::new(h, payload);
        m.finalize();
        let mut b = vec![0u8; m.buffer_len()];
        m.serialize(&mut b);
        if !self.cur.is_empty() && self.cur.len() + b.len() > MAX_DGRAM {
            self.records.push(std::mem::take(&mut self.cur));
        }
        self.cur.extend_from_slice(&b);
        while !self.cur.len().is_multiple_of(4) {
            self.cur.push(0);
        }
    }

    fn ack(&mut self, request: &[u8]) {
        let mut e = ErrorMessage::default();
        e.header = request[..HDRLEN].to_vec();
        self.push(NLM_F_CAPPED, NetlinkPayload::Error(e));
    }

    fn nack(&mut self, request: &[u8], (errno, why): Nack) {
        let mut e = ErrorMessage::default();
        e.code = std::num::NonZeroI32::new(-errno.max(1));
        let mut body = request[..HDRLEN].to_vec();
        let mut flags = NLM_F_CAPPED;
        if let Some(text) = why {
            let mut v = text.as_bytes().to_vec();
            v.push(0);
            let len = (4 + v.len()) as u16;
            body.extend_from_slice(&len.to_ne_bytes());
            body.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
            body.extend_from_slice(&v);
            while !body.len().is_multiple_of(4) {
                body.push(0);
            }
            flags |= NLM_F_ACK_TLVS;
        }
        e.header = body;
        self.push(flags, NetlinkPayload::Error(e));
    }

    fn finish(mut self) -> Vec<Vec<u8>> {
        if !self.cur.is_empty() {
            self.records.push(self.cur);
        }
        self.records
    }
}

/// Answers one record of requests.
pub fn answer(net: &mut Net, data: &[u8], now: smoltcp::time::Instant) -> Vec<Vec<u8>> {
    let mut out = Out {
        records: Vec::new(),
        cur: Vec::new(),
        seq: 0,
        port: 0,
    };
    let mut off = 0;
    while off + HDRLEN <= data.len() {
        let f = &data[off..];
        let len = u32::from_ne_bytes([f[0], f[1], f[2], f[3]]) as usize;
        if len < HDRLEN || len > f.len() {
            break;
        }
        let frame = &f[..len];
        off += (len + 3) & !3;
        let ty = u16::from_ne_bytes([frame[4], frame[5]]);
        let flags = u16::from_ne_bytes([frame[6], frame[7]]);
        out.seq = u32::from_ne_bytes([frame[8], frame[9], frame[10], frame[11]]);
        out.port = u32::from_ne_bytes([frame[12], frame[13], frame[14], frame[15]]);
        if ty < 16 {
            continue; // NOOP, ERROR, DONE, OVERRUN: nothing to answer
        }
        let msg = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(frame) {
            Ok(m) => m,
            Err(_) => {
                // A link, address or route request we cannot parse is malformed; anything else
                // is a request we do not serve.
                let e = if (16..=26).contains(&ty) {
                    libc::EINVAL
                } else {
                    libc::EOPNOTSUPP
                };
                out.nack(frame, (e, None));
                continue;
            }
        };
        let NetlinkPayload::InnerMessage(m) = msg.payload else {
            continue;
        };
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        match request(net, m, flags, dump, now) {
            Ok(replies) => {
                let mflags = if dump { NLM_F_MULTIPART } else { 0 };
                for r in replies {
                    out.push(mflags, NetlinkPayload::InnerMessage(r));
                }
                if dump {
                    out.push(
                        NLM_F_MULTIPART,
                        NetlinkPayload::Done(DoneMessage::default()),
                    );
                } else if flags & NLM_F_ACK != 0 {
                    out.ack(frame);
                }
            }
            Err(nack) => out.nack(frame, nack),
        }
    }
    out.finish()
}

fn request(
    net: &mut Net,
    m: RouteNetlinkMessage,
    flags: u16,
    dump: bool,
    now: smoltcp::time::Instant,
) -> Result<Vec<RouteNetlinkMessage>, Nack> {
    use RouteNetlinkMessage as M;
    match m {
        M::GetLink(_) if dump => Ok(net.ifaces.iter().map(|f| M::NewLink(link_msg(f))).collect()),
        M::GetLink(l) => {
            let i = find_link(net, &l)?.ok_or((libc::ENODEV, None))?;
            Ok(vec![M::NewLink(link_msg(&net.ifaces[i]))])
        }
        M::NewLink(l) | M::SetLink(l) => set_link(net, l, flags, now).map(|()| Vec::new()),
        M::DelLink(l) => {
            find_link(net, &l)?.ok_or((libc::ENODEV, None))?;
            Err((
                libc::EOPNOTSUPP,
                Some("the links of a smoltcp stack cannot be deleted"),
            ))
        }
        M::GetAddress(a) if dump => Ok(addresses(net, &a)),
        M::NewAddress(a) => add_address(net, a, flags).map(|()| Vec::new()),
        M::DelAddress(a) => del_address(net, a).map(|()| Vec::new()),
        M::GetRoute(r) if dump => Ok(routes(net, &r)),
        M::NewRoute(r) => add_route(net, r, flags).map(|()| Vec::new()),
        M::DelRoute(r) => del_route(net, r).map(|()| Vec::new()),
        _ => Err((libc::EOPNOTSUPP, None)),
    }
}

// ---------------------------------------------------------------- links

/// The link a request names: by index, else by `IFLA_IFNAME`; `Ok(None)` if it names one that
/// does not exist, `ENODEV`-free; `EINVAL` if it names none.
fn find_link(net: &Net, l: &LinkMessage) -> Result<Option<usize>, Nack> {
    if l.header.index != 0 {
        return Ok(net.by_index(l.header.index));
    }
    let name = l.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    });
    match name {
        Some(n) => Ok(net.by_name(n)),
        None => Err((libc::EINVAL, Some("no interface index or name"))),
    }
}

fn link_msg(f: &net::Iface) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = f.index;
    let mut flags = if f.is_loopback() {
        m.header.link_layer_type = LinkLayerType::Loopback;
        LinkFlags::Loopback
    } else {
        m.header.link_layer_type = LinkLayerType::Ether;
        LinkFlags::Broadcast | LinkFlags::Multicast
    };
    if f.up {
        flags |= LinkFlags::Up | LinkFlags::Running | LinkFlags::LowerUp;
    }
    m.header.flags = flags;
    let state = match (f.is_loopback(), f.up) {
        (true, _) => State::Unknown,
        (false, true) => State::Up,
        (false, false) => State::Down,
    };
    let broadcast = if f.is_loopback() {
        vec![0; 6]
    } else {
        vec![0xff; 6]
    };
    m.attributes.extend([
        LinkAttribute::IfName(f.name.clone()),
        LinkAttribute::TxQueueLen(1000),
        LinkAttribute::OperState(state),
        LinkAttribute::Mtu(f.mtu),
        LinkAttribute::Address(f.mac.to_vec()),
        LinkAttribute::Broadcast(broadcast),
        LinkAttribute::Carrier(u8::from(f.up)),
        LinkAttribute::Stats64(crate::diag::stats64(&f.dev)),
    ]);
    m
}

fn valid_ifname(n: &str) -> bool {
    !n.is_empty()
        && n.len() < 16
        && n != "."
        && n != ".."
        && !n
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
}

fn set_link(
    net: &mut Net,
    l: LinkMessage,
    flags: u16,
    now: smoltcp::time::Instant,
) -> Result<(), Nack> {
    if l.attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::LinkInfo(_)))
    {
        return Err((
            libc::EOPNOTSUPP,
            Some("a smoltcp stack cannot create links: its interfaces are its VNLs"),
        ));
    }
    let Some(i) = find_link(net, &l)? else {
        return Err(if flags & NLM_F_CREATE != 0 {
            (
                libc::EOPNOTSUPP,
                Some("a smoltcp stack cannot create links"),
            )
        } else {
            (libc::ENODEV, None)
        });
    };
    let lo = net.ifaces[i].is_loopback();
    let (mut mtu, mut mac, mut rename) = (None, None, None);
    for a in &l.attributes {
        match a {
            LinkAttribute::Mtu(m) => {
                let max = if lo { 65535 } else { MAX_MTU };
                if !(MIN_MTU..=max).contains(m) {
                    return Err((libc::EINVAL, Some("MTU out of range")));
                }
                mtu = Some(*m);
            }
            LinkAttribute::Address(a) => {
                if lo {
                    return Err((libc::EOPNOTSUPP, Some("lo has no hardware address")));
                }
                let m: [u8; 6] = a
                    .as_slice()
                    .try_into()
                    .map_err(|_| (libc::EINVAL, Some("a MAC address has 6 bytes")))?;
                if m[0] & 1 != 0 || m == [0; 6] {
                    return Err((libc::EADDRNOTAVAIL, None));
                }
                mac = Some(m);
            }
            LinkAttribute::IfName(n) if l.header.index != 0 && *n != net.ifaces[i].name => {
                if !valid_ifname(n) {
                    return Err((libc::EINVAL, Some("invalid interface name")));
                }
                if net.by_name(n).is_some() {
                    return Err((libc::EEXIST, None));
                }
                rename = Some(n.clone());
            }
            _ => {}
        }
    }
    let change = l.header.change_mask.bits();
    let want = l.header.flags.bits();
    let up = if change != 0 {
        (change & libc::IFF_UP as u32 != 0).then_some(want & libc::IFF_UP as u32 != 0)
    } else if want != 0 {
        Some(want & libc::IFF_UP as u32 != 0)
    } else {
        None
    };
    let f = &mut net.ifaces[i];
    if let Some(n) = rename {
        f.name = n;
    }
    if let Some(m) = mac {
        f.set_mac(m);
    }
    if let Some(m) = mtu {
        if m != f.mtu {
            f.set_mtu(m, now);
        }
    }
    if let Some(u) = up {
        if u && !f.up && !f.is_loopback() {
            add_link_local(f);
        }
        f.up = u;
    }
    net.sync();
    Ok(())
}

/// As a kernel does when an Ethernet interface comes up: an IPv6 link-local address derived
/// from the MAC (EUI-64), needed to answer neighbour solicitations sent from link-local
/// addresses.
fn add_link_local(f: &mut net::Iface) {
    let m = f.mac;
    let ll = Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
        u16::from_be_bytes([m[2], 0xff]),
        u16::from_be_bytes([0xfe, m[3]]),
        u16::from_be_bytes([m[4], m[5]]),
    );
    let ip = IpAddr::V6(ll);
    if !f.has_addr(ip) && f.addrs.len() < MAX_ADDRS {
        f.addrs.push(Addr {
            ip,
            prefix: 64,
            flags: 0,
            life: None,
        });
    }
}

// ---------------------------------------------------------------- addresses

fn family_of(ip: &IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn max_prefix(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn scope_of(ip: &IpAddr) -> AddressScope {
    match ip {
        a if a.is_loopback() => AddressScope::Host,
        IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => AddressScope::Link,
        _ => AddressScope::Universe,
    }
}

fn address_msg(f: &net::Iface, a: &Addr) -> AddressMessage {
    let mut m = AddressMessage::default();
    let (valid, preferred) = a
        .life
        .map_or((FOREVER, FOREVER), |l| l.left(std::time::Instant::now()));
    let mut flags = a.flags;
    if valid == FOREVER {
        flags |= IFA_F_PERMANENT;
    }
    if preferred == 0 {
        flags |= IFA_F_DEPRECATED;
    }
    m.header.family = family_of(&a.ip);
    m.header.prefix_len = a.prefix;
    m.header.flags = AddressHeaderFlags::from_bits_retain(flags as u8);
    m.header.scope = scope_of(&a.ip);
    m.header.index = f.index;
    m.attributes.push(AddressAttribute::Address(a.ip));
    if let IpAddr::V4(v4) = a.ip {
        m.attributes.push(AddressAttribute::Local(a.ip));
        m.attributes.push(AddressAttribute::Label(f.name.clone()));
        if a.prefix < 31 {
            let host = u32::MAX >> a.prefix;
            m.attributes
                .push(AddressAttribute::Broadcast(Ipv4Addr::from(
                    u32::from(v4) | host,
                )));
        }
    }
    let mut ci = CacheInfo::default();
    ci.ifa_valid = valid;
    ci.ifa_preferred = preferred;
    m.attributes.push(AddressAttribute::CacheInfo(ci));
    m.attributes
        .push(AddressAttribute::Flags(AddressFlags::from_bits_retain(
            flags,
        )));
    m
}

fn addresses(net: &Net, q: &AddressMessage) -> Vec<RouteNetlinkMessage> {
    let mut v = Vec::new();
    for f in &net.ifaces {
        if q.header.index != 0 && q.header.index != f.index {
            continue;
        }
        for a in &f.addrs {
            if q.header.family != AddressFamily::Unspec && q.header.family != family_of(&a.ip) {
                continue;
            }
            v.push(RouteNetlinkMessage::NewAddress(address_msg(f, a)));
        }
    }
    v
}

/// The interface, address, prefix and flags of an address request.
fn address_of(net: &Net, m: &AddressMessage) -> Result<(usize, IpAddr, u8, u32), Nack> {
    let i = net.by_index(m.header.index).ok_or((libc::ENODEV, None))?;
    let mut local = None;
    let mut address = None;
    let mut flags = u32::from(m.header.flags.bits());
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Flags(f) => flags = f.bits(),
            _ => {}
        }
    }
    let flags = flags & !(IFA_F_DEPRECATED);
    let ip = local
        .or(address)
        .ok_or((libc::EINVAL, Some("no address")))?;
    if m.header.family != AddressFamily::Unspec && m.header.family != family_of(&ip) {
        return Err((libc::EINVAL, Some("address of another family")));
    }
    if m.header.prefix_len > max_prefix(&ip) {
        return Err((libc::EINVAL, Some("prefix longer than the address")));
    }
    Ok((i, ip, m.header.prefix_len, flags & !IFA_F_PERMANENT))
}

fn same_addr(a: &Addr, ip: IpAddr, prefix: u8) -> bool {
    a.ip == ip && (a.prefix == prefix || (ip.is_ipv6() && prefix == 0))
}

/// The lifetimes of an address request (`IFA_CACHEINFO`): `None` for forever; the kernel's
/// `EINVAL` for a zero valid lifetime or a preferred one longer than it.
fn lifetimes_of(m: &AddressMessage) -> Result<Option<Lifetimes>, Nack> {
    let Some(ci) = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::CacheInfo(c) => Some(*c),
        _ => None,
    }) else {
        return Ok(None);
    };
    if ci.ifa_valid == 0 {
        return Err((libc::EINVAL, Some("valid_lft is zero")));
    }
    if ci.ifa_preferred > ci.ifa_valid {
        return Err((
            libc::EINVAL,
            Some("preferred_lft is greater than valid_lft"),
        ));
    }
    if ci.ifa_valid == FOREVER && ci.ifa_preferred == FOREVER {
        return Ok(None);
    }
    Ok(Some(Lifetimes {
        valid: ci.ifa_valid,
        preferred: ci.ifa_preferred,
        since: std::time::Instant::now(),
    }))
}

fn add_address(net: &mut Net, m: AddressMessage, flags: u16) -> Result<(), Nack> {
    let (i, ip, prefix, aflags) = address_of(net, &m)?;
    let life = lifetimes_of(&m)?;
    let unicast = match ip {
        IpAddr::V4(v4) => !(v4.is_multicast() || v4.is_unspecified() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_multicast() || v6.is_unspecified()),
    };
    if !unicast {
        return Err((libc::EINVAL, Some("not a unicast address")));
    }
    let f = &mut net.ifaces[i];
    let key = |a: &Addr| a.ip == ip && (ip.is_ipv6() || a.prefix == prefix);
    if let Some(a) = f.addrs.iter_mut().find(|a| key(a)) {
        if flags & NLM_F_EXCL != 0 {
            return Err((libc::EEXIST, None));
        }
        a.prefix = prefix;
        a.flags = aflags;
        a.life = life;
    } else {
        if f.addrs.len() >= MAX_ADDRS {
            return Err((
                libc::ENOSPC,
                Some("smoltcp holds at most 8 addresses per interface"),
            ));
        }
        f.addrs.push(Addr {
            ip,
            prefix,
            flags: aflags,
            life,
        });
    }
    net.sync();
    Ok(())
}

fn del_address(net: &mut Net, m: AddressMessage) -> Result<(), Nack> {
    let (i, ip, prefix, _) = address_of(net, &m)?;
    let f = &mut net.ifaces[i];
    let k = f
        .addrs
        .iter()
        .position(|a| same_addr(a, ip, prefix) || (ip.is_ipv4() && prefix == 0 && a.ip == ip))
        .ok_or((libc::EADDRNOTAVAIL, None))?;
    f.addrs.remove(k);
    net.sync();
    Ok(())
}

// ---------------------------------------------------------------- routes

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

fn network(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn route_msg(
    family: AddressFamily,
    dst: IpAddr,
    prefix: u8,
    gw: Option<IpAddr>,
    oif: Option<u32>,
    proto: RouteProtocol,
    scope: RouteScope,
    src: Option<IpAddr>,
) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header = RouteHeader {
        address_family: family,
        destination_prefix_length: prefix,
        table: RouteHeader::RT_TABLE_MAIN,
        protocol: proto,
        scope,
        kind: RouteType::Unicast,
        ..Default::default()
    };
    m.attributes.push(RouteAttribute::Table(254));
    if prefix > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst)));
    }
    if let Some(s) = src {
        m.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::from(s)));
    }
    if let Some(g) = gw {
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(g)));
    }
    if let Some(o) = oif {
        m.attributes.push(RouteAttribute::Oif(o));
    }
    m
}

fn routes(net: &Net, q: &RouteMessage) -> Vec<RouteNetlinkMessage> {
    let fam = q.header.address_family;
    let wanted = |ip: &IpAddr| fam == AddressFamily::Unspec || fam == family_of(ip);
    let mut v = Vec::new();
    for f in net.ifaces.iter().filter(|f| !f.is_loopback()) {
        for a in f.addrs.iter().filter(|a| wanted(&a.ip)) {
            let src = a.ip.is_ipv4().then_some(a.ip);
            v.push(RouteNetlinkMessage::NewRoute(route_msg(
                family_of(&a.ip),
                network(a.ip, a.prefix),
                a.prefix,
                None,
                Some(f.index),
                RouteProtocol::Kernel,
                RouteScope::Link,
                src,
            )));
        }
    }
    for r in net.routes.iter().filter(|r| wanted(&r.dst)) {
        let oif = net.route_iface(r).map(|i| net.ifaces[i].index).or(r.oif);
        let scope = if r.gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        v.push(RouteNetlinkMessage::NewRoute(route_msg(
            family_of(&r.dst),
            r.dst,
            r.prefix,
            r.gateway,
            oif,
            RouteProtocol::from(r.protocol),
            scope,
            None,
        )));
    }
    v
}

/// Family, destination, prefix, gateway and output interface of a route request.
type RouteKey = (AddressFamily, IpAddr, u8, Option<IpAddr>, Option<u32>);

fn route_of(m: &RouteMessage) -> Result<RouteKey, Nack> {
    let fam = m.header.address_family;
    let unspec = match fam {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return Err((libc::EAFNOSUPPORT, None)),
    };
    let mut table = u32::from(m.header.table);
    let (mut dst, mut gw, mut oif) = (None, None, None);
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = route_ip(d),
            RouteAttribute::Gateway(g) => gw = route_ip(g),
            RouteAttribute::Oif(o) => oif = Some(*o),
            RouteAttribute::Table(t) => table = *t,
            _ => {}
        }
    }
    if table != 0 && table != 254 {
        return Err((libc::EOPNOTSUPP, Some("only the main table")));
    }
    let dst = dst.unwrap_or(unspec);
    let prefix = m.header.destination_prefix_length;
    if !net::same_family(dst, unspec) || gw.is_some_and(|g| !net::same_family(g, unspec)) {
        return Err((libc::EINVAL, Some("addresses of different families")));
    }
    if prefix > max_prefix(&dst) {
        return Err((libc::EINVAL, Some("Invalid prefix length")));
    }
    Ok((fam, dst, prefix, gw, oif))
}

fn add_route(net: &mut Net, m: RouteMessage, flags: u16) -> Result<(), Nack> {
    let (_, dst, prefix, gw, oif) = route_of(&m)?;
    if !matches!(m.header.kind, RouteType::Unicast | RouteType::Unspec) {
        return Err((libc::EOPNOTSUPP, Some("only unicast routes")));
    }
    if net::has_host_bits(dst, prefix) {
        return Err((libc::EINVAL, Some("Invalid prefix for given prefix length")));
    }
    if let Some(o) = oif {
        net.by_index(o).ok_or((libc::ENODEV, None))?;
    }
    let Some(o) = oif.filter(|_| gw.is_none()) else {
        return add_gateway_route(net, m, flags, dst, prefix, gw, oif);
    };
    // On-link: the kernel's own prefix route of an address is there already.
    let i = net.by_index(o).ok_or((libc::ENODEV, None))?;
    if net.ifaces[i].is_loopback() {
        return Err((libc::EOPNOTSUPP, Some("no routes on lo")));
    }
    if !net.ifaces[i].up {
        return Err((libc::ENETDOWN, Some("Nexthop device is not up")));
    }
    let own = net.ifaces[i]
        .addrs
        .iter()
        .any(|a| a.prefix == prefix && network(a.ip, a.prefix) == dst);
    let entry = RouteEntry {
        dst,
        prefix,
        gateway: None,
        oif,
        protocol: m.header.protocol.into(),
    };
    let existing = net
        .routes
        .iter()
        .position(|r| r.dst == dst && r.prefix == prefix);
    match existing {
        Some(k) if flags & NLM_F_REPLACE != 0 => net.routes[k] = entry,
        Some(_) => return Err((libc::EEXIST, None)),
        None if own => return Err((libc::EEXIST, None)),
        None => net.routes.push(entry),
    }
    net.sync();
    Ok(())
}

/// A route through gateway `gw`.
fn add_gateway_route(
    net: &mut Net,
    m: RouteMessage,
    flags: u16,
    dst: IpAddr,
    prefix: u8,
    gw: Option<IpAddr>,
    oif: Option<u32>,
) -> Result<(), Nack> {
    let Some(gw) = gw else {
        // As the kernel: a route with neither a gateway nor a device has nowhere to go.
        return Err((libc::ENODEV, Some("No gateway and no device")));
    };
    let i = net
        .gateway_iface(gw, oif)
        .ok_or((libc::ENETUNREACH, Some("Nexthop has invalid gateway")))?;
    let entry = RouteEntry {
        dst,
        prefix,
        gateway: Some(gw),
        oif,
        protocol: m.header.protocol.into(),
    };
    let existing = net
        .routes
        .iter()
        .position(|r| r.dst == dst && r.prefix == prefix);
    match existing {
        Some(k) if flags & NLM_F_REPLACE != 0 => net.routes[k] = entry,
        Some(_) => return Err((libc::EEXIST, None)),
        None => {
            if net.routes_of(i).count() >= MAX_ROUTES {
                return Err((
                    libc::ENOSPC,
                    Some("smoltcp holds at most 16 routes per interface"),
                ));
            }
            net.routes.push(entry);
        }
    }
    net.sync();
    Ok(())
}

fn del_route(net: &mut Net, m: RouteMessage) -> Result<(), Nack> {
    let (_, dst, prefix, gw, oif) = route_of(&m)?;
    let k = net
        .routes
        .iter()
        .position(|r| {
            r.dst == dst
                && r.prefix == prefix
                && gw.is_none_or(|g| Some(g) == r.gateway)
                && oif.is_none_or(|o| {
                    r.oif == Some(o) || net.route_iface(r).map(|i| net.ifaces[i].index) == Some(o)
                })
        })
        .ok_or((libc::ESRCH, None))?;
    net.routes.remove(k);
    net.sync();
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use netlink_packet_core::NLM_F_REQUEST;

    pub(crate) fn now() -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(0)
    }

    /// One request message, sequence number 7.
    pub(crate) fn req(m: RouteNetlinkMessage, flags: u16) -> Vec<u8> {
        let mut h = NetlinkHeader::default();
        h.flags = NLM_F_REQUEST | flags;
        h.sequence_number = 7;
        let mut m = NetlinkMessage::new(h, NetlinkPayload::InnerMessage(m));
        m.finalize();
        let mut b = vec![0u8; m.buffer_len()];
        m.serialize(&mut b);
        b
    }

    /// Every message of every reply record; panics on a malformed one.
    pub(crate) fn parse(records: &[Vec<u8>]) -> Vec<NetlinkMessage<RouteNetlinkMessage>> {
        let mut out = Vec::new();
        for r in records {
            assert!(r.len() <= MAX_DGRAM);
            let mut off = 0;
            while off < r.len() {
                let len = u32::from_ne_bytes(r[off..off + 4].try_into().unwrap()) as usize;
                assert!(len >= HDRLEN && off + len <= r.len(), "bad length {len}");
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&r[off..off + len])
                    .expect("a reply that parses");
                assert_eq!(m.header.sequence_number, 7);
                out.push(m);
                off += (len + 3) & !3;
            }
        }
        out
    }

    /// The errno of a request's single answer (0 for an ACK).
    fn errno(net: &mut Net, m: RouteNetlinkMessage, flags: u16) -> i32 {
        let replies = parse(&answer(net, &req(m, flags | NLM_F_ACK), now()));
        assert_eq!(replies.len(), 1, "one answer");
        match &replies[0].payload {
            NetlinkPayload::Error(e) => e.code.map_or(0, |c| -c.get()),
            other => panic!("not an ACK: {other:?}"),
        }
    }

    /// The messages of a dump, checked to end with `NLMSG_DONE`.
    fn dump(net: &mut Net, m: RouteNetlinkMessage) -> Vec<RouteNetlinkMessage> {
        let mut replies = parse(&answer(net, &req(m, NLM_F_DUMP), now()));
        let last = replies.pop().expect("a reply");
        assert!(matches!(last.payload, NetlinkPayload::Done(_)));
        replies
            .into_iter()
            .map(|m| match m.payload {
                NetlinkPayload::InnerMessage(i) => {
                    assert_eq!(m.header.flags & NLM_F_MULTIPART, NLM_F_MULTIPART);
                    i
                }
                other => panic!("not a dump part: {other:?}"),
            })
            .collect()
    }

    pub(crate) fn addr_msg(index: u32, ip: &str, prefix: u8) -> AddressMessage {
        let ip: IpAddr = ip.parse().unwrap();
        let mut m = AddressMessage::default();
        m.header.family = family_of(&ip);
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(ip));
        m.attributes.push(AddressAttribute::Address(ip));
        m
    }

    pub(crate) fn route_msg_to(
        dst: &str,
        prefix: u8,
        gw: Option<&str>,
        oif: Option<u32>,
    ) -> RouteMessage {
        let ip: IpAddr = dst.parse().unwrap();
        let ra = |ip: IpAddr| match ip {
            IpAddr::V4(v) => RouteAddress::Inet(v),
            IpAddr::V6(v) => RouteAddress::Inet6(v),
        };
        let mut m = RouteMessage::default();
        m.header.address_family = family_of(&ip);
        m.header.destination_prefix_length = prefix;
        m.header.table = 254;
        m.header.kind = RouteType::Unicast;
        m.header.protocol = RouteProtocol::Static;
        m.header.scope = RouteScope::Universe;
        m.attributes.push(RouteAttribute::Destination(ra(ip)));
        if let Some(g) = gw {
            m.attributes
                .push(RouteAttribute::Gateway(ra(g.parse().unwrap())));
        }
        if let Some(o) = oif {
            m.attributes.push(RouteAttribute::Oif(o));
        }
        m
    }

    pub(crate) fn up(index: u32) -> LinkMessage {
        let mut l = LinkMessage::default();
        l.header.index = index;
        l.header.flags = LinkFlags::Up;
        l.header.change_mask = LinkFlags::Up;
        l
    }

    fn net() -> Net {
        crate::fuzzing::offline_net(1).expect("lo and vde0 on null://")
    }

    /// A stack's interfaces without a network: `lo`, and `vde0` (on `null://`) up with
    /// 10.0.0.1/24 and fd00::1/64, configured through this emulation.
    pub(crate) fn net_up() -> Net {
        let mut n = net();
        assert_eq!(errno(&mut n, M::SetLink(up(2)), 0), 0);
        for (ip, p) in [("10.0.0.1", 24), ("fd00::1", 64)] {
            assert_eq!(
                errno(&mut n, M::NewAddress(addr_msg(2, ip, p)), NLM_F_CREATE),
                0
            );
        }
        n
    }

    use RouteNetlinkMessage as M;

    #[test]
    fn addresses_added_dumped_and_deleted() {
        let mut n = net();
        let a = || addr_msg(2, "10.0.0.1", 24);
        assert_eq!(
            errno(&mut n, M::NewAddress(a()), NLM_F_CREATE | NLM_F_EXCL),
            0
        );
        assert!(n.ifaces[1].has_addr("10.0.0.1".parse().unwrap()));
        assert_eq!(
            errno(&mut n, M::NewAddress(a()), NLM_F_CREATE | NLM_F_EXCL),
            libc::EEXIST
        );
        let listed = dump(&mut n, M::GetAddress(AddressMessage::default()));
        let ours = listed.iter().filter(
            |m| matches!(m, M::NewAddress(x) if x.header.index == 2 && x.header.prefix_len == 24),
        );
        assert_eq!(ours.count(), 1);
        // lo's two and ours.
        assert_eq!(listed.len(), 3);
        assert_eq!(errno(&mut n, M::DelAddress(a()), 0), 0);
        assert!(!n.ifaces[1].has_addr("10.0.0.1".parse().unwrap()));
        assert_eq!(errno(&mut n, M::DelAddress(a()), 0), libc::EADDRNOTAVAIL);
    }

    #[test]
    fn address_requests_refused_with_the_kernels_errnos() {
        let mut n = net();
        let cases = [
            (addr_msg(9, "10.0.0.1", 24), libc::ENODEV),
            (addr_msg(2, "10.0.0.1", 33), libc::EINVAL),
            (addr_msg(2, "fd00::1", 129), libc::EINVAL),
            (addr_msg(2, "224.0.0.1", 24), libc::EINVAL),
            (addr_msg(2, "::", 64), libc::EINVAL),
        ];
        for (m, e) in cases {
            assert_eq!(errno(&mut n, M::NewAddress(m), NLM_F_CREATE), e);
        }
        let mut life = addr_msg(2, "10.0.0.1", 24);
        let mut ci = CacheInfo::default();
        ci.ifa_preferred = 100;
        ci.ifa_valid = 10;
        life.attributes.push(AddressAttribute::CacheInfo(ci));
        assert_eq!(
            errno(&mut n, M::NewAddress(life), NLM_F_CREATE),
            libc::EINVAL
        );
        assert!(n.ifaces[1].addrs.is_empty(), "a refusal changes nothing");
        assert_eq!(
            errno(&mut n, M::DelAddress(addr_msg(9, "10.0.0.1", 24)), 0),
            libc::ENODEV
        );
    }

    #[test]
    fn routes_added_dumped_and_deleted() {
        let mut n = net();
        assert_eq!(errno(&mut n, M::SetLink(up(2)), 0), 0);
        assert!(n.ifaces[1].up);
        assert_eq!(
            errno(
                &mut n,
                M::NewAddress(addr_msg(2, "10.0.0.1", 24)),
                NLM_F_CREATE
            ),
            0
        );
        let r = || route_msg_to("10.1.0.0", 16, Some("10.0.0.254"), None);
        assert_eq!(
            errno(&mut n, M::NewRoute(r()), NLM_F_CREATE | NLM_F_EXCL),
            0
        );
        assert_eq!(n.routes.len(), 1);
        assert_eq!(
            errno(&mut n, M::NewRoute(r()), NLM_F_CREATE | NLM_F_EXCL),
            libc::EEXIST
        );
        let listed = dump(&mut n, M::GetRoute(RouteMessage::default()));
        assert!(listed.iter().any(|m| matches!(m,
            M::NewRoute(x) if x.header.destination_prefix_length == 16
                && x.attributes.contains(&RouteAttribute::Gateway(RouteAddress::Inet("10.0.0.254".parse().unwrap()))))));
        assert_eq!(errno(&mut n, M::DelRoute(r()), 0), 0);
        assert!(n.routes.is_empty());
        assert_eq!(errno(&mut n, M::DelRoute(r()), 0), libc::ESRCH);
    }

    #[test]
    fn route_requests_refused_with_the_kernels_errnos() {
        let mut n = net();
        assert_eq!(errno(&mut n, M::SetLink(up(2)), 0), 0);
        assert_eq!(
            errno(
                &mut n,
                M::NewAddress(addr_msg(2, "10.0.0.1", 24)),
                NLM_F_CREATE
            ),
            0
        );
        let cases = [
            // host bits set, prefix too long
            (
                route_msg_to("10.1.0.1", 16, Some("10.0.0.254"), None),
                libc::EINVAL,
            ),
            (
                route_msg_to("10.1.0.0", 33, Some("10.0.0.254"), None),
                libc::EINVAL,
            ),
            (
                route_msg_to("fd01::", 129, Some("fd00::1"), None),
                libc::EINVAL,
            ),
            // no such device; a gateway on no network of ours; neither gateway nor device
            (route_msg_to("10.1.0.0", 16, None, Some(9)), libc::ENODEV),
            (
                route_msg_to("10.1.0.0", 16, Some("192.168.9.1"), None),
                libc::ENETUNREACH,
            ),
            (route_msg_to("10.1.0.0", 16, None, None), libc::ENODEV),
            // the address's own prefix route exists already
            (route_msg_to("10.0.0.0", 24, None, Some(2)), libc::EEXIST),
        ];
        for (m, e) in cases {
            let want = (m.header.destination_prefix_length, e);
            assert_eq!((want.0, errno(&mut n, M::NewRoute(m), NLM_F_CREATE)), want);
        }
        let mut other = route_msg_to("10.1.0.0", 16, Some("10.0.0.254"), None);
        other.header.table = 100;
        assert_eq!(
            errno(&mut n, M::NewRoute(other), NLM_F_CREATE),
            libc::EOPNOTSUPP
        );
        assert!(n.routes.is_empty(), "a refusal changes nothing");
    }

    #[test]
    fn links_by_index_name_and_dump() {
        let mut n = net();
        let names: Vec<String> = dump(&mut n, M::GetLink(LinkMessage::default()))
            .into_iter()
            .map(|m| match m {
                M::NewLink(l) => l
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        LinkAttribute::IfName(s) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["lo", "vde0"]);
        let mut l = LinkMessage::default();
        l.header.index = 9;
        assert_eq!(errno(&mut n, M::GetLink(l), 0), libc::ENODEV);
        let mut by_name = LinkMessage::default();
        by_name
            .attributes
            .push(LinkAttribute::IfName("vde0".into()));
        let got = parse(&answer(&mut n, &req(M::GetLink(by_name), 0), now()));
        assert!(
            matches!(&got[0].payload, NetlinkPayload::InnerMessage(M::NewLink(x)) if x.header.index == 2)
        );
        let mut del = LinkMessage::default();
        del.header.index = 2;
        assert_eq!(errno(&mut n, M::DelLink(del), 0), libc::EOPNOTSUPP);
    }

    #[test]
    fn malformed_requests_get_a_nack_and_a_batch_is_answered_in_order() {
        let mut n = net();
        let mut bad = req(M::NewAddress(addr_msg(2, "10.0.0.1", 24)), NLM_F_ACK);
        bad.truncate(HDRLEN + 4);
        bad[..4].copy_from_slice(&((HDRLEN + 4) as u32).to_ne_bytes());
        let mut batch = bad.clone();
        batch.extend(req(
            M::NewAddress(addr_msg(2, "10.0.0.2", 24)),
            NLM_F_ACK | NLM_F_CREATE,
        ));
        let replies = parse(&answer(&mut n, &batch, now()));
        let codes: Vec<i32> = replies
            .iter()
            .map(|m| match &m.payload {
                NetlinkPayload::Error(e) => e.code.map_or(0, |c| -c.get()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(codes, [libc::EINVAL, 0]);
        // A record shorter than a header, or with a length past its end: nothing.
        assert!(answer(&mut n, &bad[..10], now()).is_empty());
        let mut long = bad.clone();
        long[..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(answer(&mut n, &long, now()).is_empty());
    }
}
