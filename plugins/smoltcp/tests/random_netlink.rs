//! Bounded random input for the rtnetlink emulation, in `cargo test`: a few thousand request
//! records — random bytes, and mutations of valid `RTM_NEW`/`DEL`/`GET` `LINK`/`ADDR`/`ROUTE`
//! requests built with netlink-packet-route — from a fixed-seed generator, answered by a stack
//! with `lo` and one `null://` interface. No input may panic, and every answer must be
//! well-formed netlink: messages that parse, an `NLMSG_ERROR` (a NACK or an ACK) for a
//! request, the parts of a dump (`NLM_F_MULTI`) ending with `NLMSG_DONE`. The cargo-fuzz
//! target `netlink` in `fuzz/` runs the same property without a bound.

use std::net::IpAddr;

use ioth_smoltcp::fuzzing::{check_replies, Netlink};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage as M};

/// SplitMix64: small, fixed-seed, good enough to spread inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn encode(m: M, flags: u16, seq: u32) -> Vec<u8> {
    let mut h = NetlinkHeader::default();
    h.flags = NLM_F_REQUEST | flags;
    h.sequence_number = seq;
    let mut m = NetlinkMessage::new(h, NetlinkPayload::InnerMessage(m));
    m.finalize();
    let mut b = vec![0u8; m.buffer_len()];
    m.serialize(&mut b);
    b
}

fn addr(index: u32, ip: &str, prefix: u8) -> AddressMessage {
    let ip: IpAddr = ip.parse().unwrap();
    let mut m = AddressMessage::default();
    m.header.family = if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    m.header.prefix_len = prefix;
    m.header.index = index;
    m.attributes.push(AddressAttribute::Local(ip));
    m
}

fn route(dst: &str, prefix: u8, gw: Option<&str>, oif: Option<u32>) -> RouteMessage {
    let ra = |s: &str| match s.parse::<IpAddr>().unwrap() {
        IpAddr::V4(v) => RouteAddress::Inet(v),
        IpAddr::V6(v) => RouteAddress::Inet6(v),
    };
    let mut m = RouteMessage::default();
    m.header.address_family = if dst.contains(':') {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    m.header.destination_prefix_length = prefix;
    m.header.table = 254;
    m.attributes.push(RouteAttribute::Destination(ra(dst)));
    if let Some(g) = gw {
        m.attributes.push(RouteAttribute::Gateway(ra(g)));
    }
    if let Some(o) = oif {
        m.attributes.push(RouteAttribute::Oif(o));
    }
    m
}

/// Valid requests of every kind the emulation serves (and a few it refuses).
fn requests() -> Vec<Vec<u8>> {
    let mut up = LinkMessage::default();
    up.header.index = 2;
    up.header.flags = LinkFlags::Up;
    up.header.change_mask = LinkFlags::Up;
    let mut named = LinkMessage::default();
    named.attributes.push(LinkAttribute::IfName("vde0".into()));
    let mut mtu = LinkMessage::default();
    mtu.header.index = 2;
    mtu.attributes.push(LinkAttribute::Mtu(1400));
    let mut mac = LinkMessage::default();
    mac.header.index = 2;
    mac.attributes
        .push(LinkAttribute::Address(vec![2, 0, 0, 0, 0, 9]));
    let c = NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK;
    vec![
        encode(M::GetLink(LinkMessage::default()), NLM_F_DUMP, 1),
        encode(M::GetLink(named.clone()), 0, 2),
        encode(M::SetLink(up.clone()), NLM_F_ACK, 3),
        encode(M::NewLink(mtu), NLM_F_ACK, 4),
        encode(M::SetLink(mac), NLM_F_ACK, 5),
        encode(M::DelLink(named), NLM_F_ACK, 6),
        encode(M::NewAddress(addr(2, "10.0.0.1", 24)), c, 7),
        encode(M::NewAddress(addr(2, "fd00::1", 64)), c, 8),
        encode(M::DelAddress(addr(2, "10.0.0.1", 24)), NLM_F_ACK, 9),
        encode(M::GetAddress(AddressMessage::default()), NLM_F_DUMP, 10),
        encode(
            M::NewRoute(route("10.1.0.0", 16, Some("10.0.0.254"), None)),
            c,
            11,
        ),
        encode(
            M::NewRoute(route("0.0.0.0", 0, Some("10.0.0.254"), Some(2))),
            c,
            12,
        ),
        encode(M::NewRoute(route("fd01::", 48, None, Some(2))), c, 13),
        encode(
            M::DelRoute(route("10.1.0.0", 16, None, None)),
            NLM_F_ACK,
            14,
        ),
        encode(M::GetRoute(RouteMessage::default()), NLM_F_DUMP, 15),
    ]
}

fn mutate(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
            2 => b.truncate(rng.below(b.len() + 1)),
            3 => {
                let n = rng.below(32);
                b.extend(rng.bytes(n))
            }
            // The message length, or an attribute's (the first one sits after the 16-byte
            // header and a family header of 8 to 16 bytes).
            4 if b.len() >= 4 => {
                let at = [0, 24, 28, 32][rng.below(4)].min(b.len() - 2);
                let v = rng.below(300) as u16;
                b[at..at + 2].copy_from_slice(&v.to_ne_bytes());
            }
            _ if b.len() >= 8 => {
                // Another type or other flags.
                let v = (16 + rng.below(16)) as u16;
                let at = 4 + 2 * rng.below(2);
                b[at..at + 2].copy_from_slice(&v.to_ne_bytes());
            }
            _ => {}
        }
    }
    b
}

#[test]
fn random_and_mutated_requests_get_well_formed_answers() {
    let mut rng = Rng(0x10_7b_5e_ed);
    let valid = requests();
    let mut nl = Netlink::new();
    // The valid requests, unmutated, are answered as their kind says.
    for r in &valid {
        let replies = nl.answer(r);
        assert!(!replies.is_empty(), "every valid request is answered");
        check_replies(&replies).unwrap();
    }
    for n in 0..4000 {
        if n % 500 == 0 {
            nl = Netlink::new();
        }
        let input = match rng.below(4) {
            0 => {
                let n = rng.below(96);
                rng.bytes(n)
            }
            1 => {
                let r = valid[rng.below(valid.len())].clone();
                mutate(&mut rng, r)
            }
            2 => {
                // A batch of several, one of them mutated.
                let mut b = Vec::new();
                for k in 0..2 + rng.below(3) {
                    let r = valid[rng.below(valid.len())].clone();
                    b.extend(if k == 1 { mutate(&mut rng, r) } else { r });
                }
                b
            }
            _ => valid[rng.below(valid.len())].clone(),
        };
        let replies = nl.answer(&input);
        if let Err(e) = check_replies(&replies) {
            panic!("input {n} ({input:02x?}): {e}");
        }
    }
}

/// A `SOCK_DIAG_BY_FAMILY` dump request for `family`/`proto`, all states, with INET_DIAG_INFO.
fn diag_request(family: u8, proto: u8, seq: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(16u32 + 56).to_ne_bytes());
    b.extend_from_slice(&20u16.to_ne_bytes()); // SOCK_DIAG_BY_FAMILY
    b.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    // inet_diag_req_v2: family, protocol, ext (1 << (INET_DIAG_INFO - 1)), pad, states, id.
    b.extend_from_slice(&[family, proto, 1 << 1, 0]);
    b.extend_from_slice(&u32::MAX.to_ne_bytes());
    b.extend_from_slice(&[0u8; 48]);
    b
}

/// The messages of reply records: each within its record, of a sock_diag kind.
fn check_diag_replies(records: &[Vec<u8>]) -> Result<usize, String> {
    let mut n = 0;
    for r in records {
        let mut off = 0;
        while off < r.len() {
            let f = &r[off..];
            if f.len() < 16 {
                return Err(format!("{} bytes left over at {off}", f.len()));
            }
            let len = u32::from_ne_bytes(f[..4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(f[4..6].try_into().unwrap());
            if len < 16 || len > f.len() {
                return Err(format!("message length {len} of {} at {off}", f.len()));
            }
            if ![2, 3, 20].contains(&ty) {
                return Err(format!("message type {ty}"));
            }
            off += (len + 3) & !3;
            n += 1;
        }
    }
    Ok(n)
}

#[test]
fn random_and_mutated_sock_diag_requests_get_well_formed_answers() {
    use ioth_smoltcp::fuzzing::SockDiag;
    let mut rng = Rng(0x5d_1a_60_0d);
    let d = SockDiag::new();
    let valid: Vec<Vec<u8>> = [(2, 6), (2, 17), (10, 6), (10, 17)]
        .iter()
        .enumerate()
        .map(|(i, (f, p))| diag_request(*f, *p, i as u32))
        .collect();
    // Each valid dump lists its one socket and ends with NLMSG_DONE.
    for r in &valid {
        assert_eq!(check_diag_replies(&d.answer(r)), Ok(2));
    }
    for _ in 0..4000 {
        let input = match rng.below(3) {
            0 => {
                let n = rng.below(96);
                rng.bytes(n)
            }
            1 => {
                let r = valid[rng.below(valid.len())].clone();
                mutate(&mut rng, r)
            }
            _ => {
                let mut b = Vec::new();
                for _ in 0..2 + rng.below(3) {
                    b.extend(valid[rng.below(valid.len())].clone());
                }
                mutate(&mut rng, b)
            }
        };
        check_diag_replies(&d.answer(&input)).unwrap_or_else(|e| panic!("{e}: {input:?}"));
    }
}
