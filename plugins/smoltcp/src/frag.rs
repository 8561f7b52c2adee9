//! IPv6 fragmentation and reassembly of UDP datagrams, which smoltcp 0.14 lacks (it drops an
//! IPv6 packet larger than the MTU, and answers a Fragment header with an ICMPv6 parameter
//! problem). IPv4 needs none of this: smoltcp's `proto-ipv4-fragmentation` does both ways
//! ([`crate::udp`] only keeps two fragmented IPv4 datagrams of one interface from overlapping).
//! Runs on the event-loop thread, under the stack's mutex.
//!
//! - Out: a UDP datagram whose IPv6 packet exceeds the interface's MTU is cut here into
//!   fragments (RFC 8200 §4.5), whole IPv6 packets queued on the interface's raw socket
//!   (next header 44); smoltcp routes them and resolves the neighbour as for any packet. One
//!   fragmented datagram at a time per interface: the next waits until the raw socket is empty
//!   (at most [`FRAG_STALL`], then what is left there is dropped).
//! - In: the same raw socket receives every packet whose next header is a Fragment header;
//!   the fragments are put together ([`crate::reasm`]: at most a few datagrams at once,
//!   overlapping fragments drop the datagram, RFC 5722), and a complete
//!   UDP datagram with a good checksum goes to the UDP socket bound to its destination on that
//!   interface, as smoltcp would deliver it ([`crate::kind::udp::Udp::take_reassembled`]).

use std::collections::HashMap;
use std::net::SocketAddrV6;
use std::time::Instant;

use smoltcp::socket::raw;

use crate::net::{Net, FRAG_STALL};
use crate::reasm::{
    pseudo, raw_socket, sum, udp, FRAG_HDR, IPV6_HDR, MAX_PAYLOAD, NH_FRAGMENT, NH_UDP, UDP_HDR,
};
use crate::sock::{Kind, Sock};

/// smoltcp's default hop limit.
const HOP_LIMIT: u8 = 64;

/// What became of a datagram handed to [`send`].
pub enum Out {
    /// Queued (or dropped for good: too large for the raw socket, MTU too small).
    Done,
    /// Another fragmented datagram is still leaving this interface: try again later.
    Busy,
}

/// Queues UDP `payload` from `src` to `dst` on interface `i` as IPv6 fragments.
pub fn send(net: &mut Net, i: usize, src: SocketAddrV6, dst: SocketAddrV6, payload: &[u8]) -> Out {
    let ulen = UDP_HDR + payload.len();
    let f = &mut net.ifaces[i];
    // Fragment data: a multiple of 8 bytes, headers included within the MTU.
    let per = (f.mtu as usize).saturating_sub(IPV6_HDR + FRAG_HDR) / 8 * 8;
    if per == 0 || ulen > MAX_PAYLOAD {
        return Out::Done;
    }
    let n = ulen.div_ceil(per);
    if f.sockets.get::<raw::Socket>(f.frag6.0).send_queue() > 0 {
        if f.frag6.1.elapsed() < FRAG_STALL {
            return Out::Busy;
        }
        // Stuck (a neighbour that never answers): its fragments are dropped.
        f.sockets.remove(f.frag6.0);
        f.frag6.0 = f.sockets.add(raw_socket());
    }
    let raw = f.sockets.get_mut::<raw::Socket>(f.frag6.0);
    // An empty ring starts over at its beginning: the fragments fit without padding.
    if n > raw.packet_send_capacity()
        || ulen + n * (IPV6_HDR + FRAG_HDR) > raw.payload_send_capacity()
    {
        return Out::Done;
    }
    let udp = udp_header(&src, &dst, payload);
    net.frag_id = net.frag_id.wrapping_add(1);
    let id = net.frag_id;
    let f = &mut net.ifaces[i];
    f.frag6.1 = Instant::now();
    let raw = f.sockets.get_mut::<raw::Socket>(f.frag6.0);
    let mut off = 0;
    while off < ulen {
        let len = per.min(ulen - off);
        let Ok(b) = raw.send(IPV6_HDR + FRAG_HDR + len) else {
            // Checked above; a datagram cut short is lost, as on a real network.
            return Out::Done;
        };
        fragment(b, &src, &dst, id, off, ulen, &udp, payload);
        off += len;
    }
    Out::Done
}

/// The UDP header of `payload` from `src` to `dst`, its checksum computed.
fn udp_header(src: &SocketAddrV6, dst: &SocketAddrV6, payload: &[u8]) -> [u8; UDP_HDR] {
    let ulen = UDP_HDR + payload.len();
    let mut udp = [0u8; UDP_HDR];
    udp[..2].copy_from_slice(&src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&(ulen as u16).to_be_bytes());
    let c = !sum(&[&pseudo(src.ip(), dst.ip(), ulen), &udp, payload]);
    udp[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    udp
}

/// Writes into `b` (its length: the headers and this fragment's data) the IPv6 fragment at
/// offset `off` of the `ulen`-byte upper-layer packet `udp` + `payload`.
#[allow(clippy::too_many_arguments)]
fn fragment(
    b: &mut [u8],
    src: &SocketAddrV6,
    dst: &SocketAddrV6,
    id: u32,
    off: usize,
    ulen: usize,
    udp: &[u8; UDP_HDR],
    payload: &[u8],
) {
    let len = b.len() - IPV6_HDR - FRAG_HDR;
    let more = off + len < ulen;
    b[..IPV6_HDR].fill(0);
    b[0] = 0x60;
    b[4..6].copy_from_slice(&((FRAG_HDR + len) as u16).to_be_bytes());
    b[6] = NH_FRAGMENT;
    b[7] = HOP_LIMIT;
    b[8..24].copy_from_slice(&src.ip().octets());
    b[24..40].copy_from_slice(&dst.ip().octets());
    let h = &mut b[IPV6_HDR..IPV6_HDR + FRAG_HDR];
    h[0] = NH_UDP;
    h[1] = 0;
    h[2..4].copy_from_slice(&((off as u16) | u16::from(more)).to_be_bytes());
    h[4..8].copy_from_slice(&id.to_be_bytes());
    // The upper-layer packet is the UDP header followed by the payload.
    for (k, d) in b[IPV6_HDR + FRAG_HDR..].iter_mut().enumerate() {
        let at = off + k;
        *d = if at < UDP_HDR {
            udp[at]
        } else {
            payload[at - UDP_HDR]
        };
    }
}

/// After smoltcp's poll: takes the fragments every interface received, and hands each
/// completed UDP datagram to its socket.
pub fn collect(net: &mut Net, socks: &mut HashMap<u64, Sock>) {
    let now = Instant::now();
    let Net { ifaces, reasm, .. } = net;
    let mut done = Vec::new();
    for (i, f) in ifaces.iter_mut().enumerate() {
        let raw = f.sockets.get_mut::<raw::Socket>(f.frag6.0);
        while let Ok(pkt) = raw.recv() {
            if let Some((src, dst, next, b)) = reasm.add(pkt, now) {
                done.extend(udp(i, src, dst, next, b));
            }
        }
    }
    for d in done {
        let to = socks
            .values_mut()
            .filter(|s| s.domain == libc::AF_INET6 && s.pe.is_some())
            .filter_map(|s| match &mut s.kind {
                Kind::Udp(u) => Some(u),
                _ => None,
            })
            .filter(|u| {
                u.local.is_some_and(|l| {
                    l.port() == d.dst.port() && (l.ip().is_unspecified() || l.ip() == d.dst.ip())
                }) && u.listens_on(d.iface)
                    && u.remote.is_none_or(|r| r == d.src)
            })
            // A socket bound to the very address before one bound to any.
            .max_by_key(|u| u.local.is_some_and(|l| !l.ip().is_unspecified()));
        if let Some(u) = to {
            u.take_reassembled(d.payload, d.src);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reasm::{Datagram, Reasm, REASM_MAX};
    use std::net::SocketAddr;

    fn cut(payload: &[u8], per: usize, id: u32) -> (Vec<Vec<u8>>, SocketAddrV6, SocketAddrV6) {
        let src = SocketAddrV6::new("fd00::1".parse().unwrap(), 4000, 0, 0);
        let dst = SocketAddrV6::new("fd00::2".parse().unwrap(), 5000, 0, 0);
        let udp = udp_header(&src, &dst, payload);
        let ulen = UDP_HDR + payload.len();
        let mut out = Vec::new();
        let mut off = 0;
        while off < ulen {
            let len = per.min(ulen - off);
            let mut b = vec![0u8; IPV6_HDR + FRAG_HDR + len];
            fragment(&mut b, &src, &dst, id, off, ulen, &udp, payload);
            out.push(b);
            off += len;
        }
        (out, src, dst)
    }

    fn whole(r: &mut Reasm, frags: &[Vec<u8>]) -> Option<Datagram> {
        let now = Instant::now();
        let mut got = None;
        for f in frags {
            assert!(got.is_none(), "complete before the last fragment");
            got = r.add(f, now);
        }
        let (src, dst, next, b) = got?;
        udp(2, src, dst, next, b)
    }

    #[test]
    fn cut_and_put_together_in_any_order() {
        let payload: Vec<u8> = (0..65527u32).map(|i| (i * 7 + 3) as u8).collect();
        for (per, len) in [
            (1448, 65527),
            (1448, 1453),
            (1232, 8000),
            (8, 9),
            (65480, 65527),
        ] {
            let (mut frags, src, dst) = cut(&payload[..len], per, 9);
            assert_eq!(frags.len(), (len + UDP_HDR).div_ceil(per));
            assert!(frags.iter().all(|f| f.len() <= IPV6_HDR + FRAG_HDR + per));
            let mut r = Reasm::default();
            let d = whole(&mut r, &frags).expect("in order");
            assert_eq!(d.payload, payload[..len]);
            assert_eq!((d.src, d.dst), (SocketAddr::V6(src), SocketAddr::V6(dst)));
            frags.reverse();
            let d = whole(&mut r, &frags).expect("reversed");
            assert_eq!(d.payload, payload[..len]);
            assert!(r.parts.is_empty());
        }
    }

    #[test]
    fn overlaps_bad_checksums_and_strays_are_dropped() {
        let payload = vec![0x5a; 5000];
        let (frags, ..) = cut(&payload, 1448, 1);
        let mut r = Reasm::default();
        // A duplicate overlaps: the whole datagram goes.
        assert!(r.add(&frags[0], Instant::now()).is_none());
        assert!(r.add(&frags[0], Instant::now()).is_none());
        assert!(r.parts.is_empty());
        // One payload byte changed: the checksum fails.
        let mut bad = frags.clone();
        let last = bad.last_mut().unwrap();
        *last.last_mut().unwrap() ^= 1;
        assert!(whole(&mut r, &bad).is_none());
        // A fragment missing: nothing, kept until it times out.
        assert!(whole(&mut r, &frags[1..]).is_none());
        assert_eq!(r.parts.len(), 1);
        // Short or not a fragment: ignored.
        assert!(r.add(&frags[0][..40], Instant::now()).is_none());
        let mut not = frags[0].clone();
        not[6] = NH_UDP;
        assert!(r.add(&not, Instant::now()).is_none());
        // At most REASM_MAX datagrams at once.
        for id in 100..100 + 2 * REASM_MAX as u32 {
            let (f, ..) = cut(&payload, 1448, id);
            assert!(r.add(&f[0], Instant::now()).is_none());
        }
        assert_eq!(r.parts.len(), REASM_MAX);
    }

    #[test]
    fn checksum_of_odd_lengths() {
        let src = SocketAddrV6::new("fd00::1".parse().unwrap(), 1, 0, 0);
        let dst = SocketAddrV6::new("fd00::2".parse().unwrap(), 2, 0, 0);
        for p in [&b""[..], b"a", b"ab", b"abc"] {
            let h = udp_header(&src, &dst, p);
            let ulen = UDP_HDR + p.len();
            assert_eq!(sum(&[&pseudo(src.ip(), dst.ip(), ulen), &h, p]), 0xffff);
        }
    }
}

#[cfg(test)]
mod send_tests {
    use super::*;

    fn queued(net: &mut Net) -> usize {
        let f = &mut net.ifaces[1];
        f.sockets.get::<raw::Socket>(f.frag6.0).send_queue()
    }

    fn ends() -> (SocketAddrV6, SocketAddrV6) {
        (
            SocketAddrV6::new("fd00::1".parse().unwrap(), 4000, 0, 0),
            SocketAddrV6::new("fd00::2".parse().unwrap(), 5000, 0, 0),
        )
    }

    #[test]
    fn a_datagram_is_queued_as_fragments_within_the_mtu_one_at_a_time() {
        let mut net = crate::netlink::tests::net_up();
        let (src, dst) = ends();
        let payload = vec![7u8; 4000];
        let id = net.frag_id;
        assert!(matches!(send(&mut net, 1, src, dst, &payload), Out::Done));
        assert_eq!(net.frag_id, id.wrapping_add(1), "a new identification");
        // (8 + 4000) bytes in fragments of (1500 - 48) / 8 * 8 = 1448.
        let bytes = queued(&mut net);
        let per = 1448;
        let n = (UDP_HDR + payload.len()).div_ceil(per);
        assert_eq!(bytes, UDP_HDR + payload.len() + n * (IPV6_HDR + FRAG_HDR));
        // The next one waits until these have left.
        assert!(matches!(send(&mut net, 1, src, dst, &payload), Out::Busy));
        assert_eq!(queued(&mut net), bytes);
    }

    #[test]
    fn too_large_or_no_room_in_the_mtu_is_dropped() {
        let mut net = crate::netlink::tests::net_up();
        let (src, dst) = ends();
        assert!(matches!(
            send(&mut net, 1, src, dst, &vec![0; MAX_PAYLOAD]),
            Out::Done
        ));
        assert_eq!(queued(&mut net), 0);
        net.ifaces[1].mtu = (IPV6_HDR + FRAG_HDR + 7) as u32;
        assert!(matches!(send(&mut net, 1, src, dst, &[1; 100]), Out::Done));
        assert_eq!(queued(&mut net), 0);
    }
}
