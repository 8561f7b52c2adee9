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
