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

use crate::kind::netlink::Nl;
use crate::net::{
    self, Addr, Lifetimes, Net, RouteEntry, FOREVER, MAX_ADDRS, MAX_MTU, MAX_ROUTES, MIN_MTU,
};
use crate::sock::Sock;
use crate::sys;

mod addr;
mod route;

use self::addr::*;
use self::route::*;

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

/// A refusal: errno and, optionally, the reason (extended ack).
type Nack = (i32, Option<&'static str>);

/// `struct sockaddr_nl` of our sockets: family `AF_NETLINK`, port id 0, no groups.
pub fn sockaddr_nl() -> Vec<u8> {
    let mut b = vec![0u8; 12];
    b[..2].copy_from_slice(&(libc::AF_NETLINK as u16).to_ne_bytes());
    b
}

/// Reads requests, answers them, sends the answers as far as the pair takes them.
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
    let crate::sock::Kind::Netlink(nl) = kind else {
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

#[cfg(test)]
pub(crate) mod tests;
