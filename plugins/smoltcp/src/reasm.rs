//! IPv6 reassembly of UDP datagrams, which smoltcp 0.14 lacks, and what fragmenting them
//! going out ([`crate::frag`]) shares with it: the interface's raw socket for fragments, the
//! header sizes, the checksum. A leaf of the plug-in's module graph: the interfaces
//! ([`crate::net::Net::reasm`]) hold its state. Fragments put together: at most [`REASM_MAX`]
//! datagrams at once, dropped after [`REASM_TIMEOUT`]; overlapping fragments drop the datagram
//! (RFC 5722).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use smoltcp::socket::raw;
use smoltcp::wire::{IpProtocol, IpVersion};

pub(crate) const IPV6_HDR: usize = 40;
pub(crate) const FRAG_HDR: usize = 8;
pub(crate) const UDP_HDR: usize = 8;
pub(crate) const NH_FRAGMENT: u8 = 44;
pub(crate) const NH_UDP: u8 = 17;
/// Datagrams being reassembled at once (per stack); the oldest gives way.
pub(crate) const REASM_MAX: usize = 16;
/// How long the fragments of one datagram may take (Linux's `ipfrag_time`).
pub(crate) const REASM_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest upper-layer payload of an IPv6 packet (no jumbograms).
pub(crate) const MAX_PAYLOAD: usize = 65535;

/// The raw socket of an interface for fragments: room for one datagram of 64 KiB cut for an
/// MTU of 1280 or more going out, and for a turn's worth of incoming frames.
pub fn raw_socket() -> raw::Socket<'static> {
    let buf = |packets: usize, bytes: usize| {
        raw::PacketBuffer::new(vec![raw::PacketMetadata::EMPTY; packets], vec![0; bytes])
    };
    raw::Socket::new(
        Some(IpVersion::Ipv6),
        Some(IpProtocol::Ipv6Frag),
        buf(crate::device::RX_BUDGET, 192 * 1024),
        buf(64, 96 * 1024),
    )
}

/// RFC 1071 sum of `parts` (each of even length but the last), not yet complemented.
pub(crate) fn sum(parts: &[&[u8]]) -> u16 {
    let mut s: u32 = 0;
    for p in parts {
        let mut c = p.chunks_exact(2);
        for w in &mut c {
            s += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [b] = c.remainder() {
            s += u32::from(*b) << 8;
        }
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
    }
    s as u16
}

/// The IPv6 pseudo-header of an upper-layer packet of `len` bytes.
pub(crate) fn pseudo(src: &Ipv6Addr, dst: &Ipv6Addr, len: usize) -> [u8; 40] {
    let mut p = [0u8; 40];
    p[..16].copy_from_slice(&src.octets());
    p[16..32].copy_from_slice(&dst.octets());
    p[32..36].copy_from_slice(&(len as u32).to_be_bytes());
    p[39] = NH_UDP;
    p
}

/// One datagram being put together.
pub(crate) struct Part {
    pub(crate) next: Option<u8>,
    pub(crate) buf: Vec<u8>,
    /// One bit per 8-byte block received.
    pub(crate) blocks: Vec<u64>,
    pub(crate) filled: usize,
    pub(crate) total: Option<usize>,
    pub(crate) since: Instant,
}

impl Part {
    pub(crate) fn has(&self, b: usize) -> bool {
        self.blocks[b / 64] & (1 << (b % 64)) != 0
    }
}

/// Datagrams being reassembled, by (source, destination, identification).
#[derive(Default)]
pub struct Reasm {
    pub(crate) parts: HashMap<(Ipv6Addr, Ipv6Addr, u32), Part>,
}

/// A reassembled UDP datagram.
pub(crate) struct Datagram {
    pub(crate) iface: usize,
    pub(crate) src: SocketAddr,
    pub(crate) dst: SocketAddr,
    pub(crate) payload: Vec<u8>,
}

pub(crate) fn addr16(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    Ipv6Addr::from(o)
}

impl Reasm {
    /// Adds one packet a raw socket received (an IPv6 header whose next header is a Fragment
    /// header); the upper-layer packet, once complete.
    pub(crate) fn add(
        &mut self,
        pkt: &[u8],
        now: Instant,
    ) -> Option<(Ipv6Addr, Ipv6Addr, u8, Vec<u8>)> {
        self.parts
            .retain(|_, p| now.duration_since(p.since) < REASM_TIMEOUT);
        if pkt.len() < IPV6_HDR + FRAG_HDR || pkt[0] >> 4 != 6 || pkt[6] != NH_FRAGMENT {
            return None;
        }
        let plen = usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
        let end = (IPV6_HDR + plen).min(pkt.len());
        if end < IPV6_HDR + FRAG_HDR {
            return None;
        }
        let (src, dst) = (addr16(&pkt[8..]), addr16(&pkt[24..]));
        let h = &pkt[IPV6_HDR..IPV6_HDR + FRAG_HDR];
        let field = u16::from_be_bytes([h[2], h[3]]);
        let off = usize::from(field & !7);
        let more = field & 1 != 0;
        let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        let data = &pkt[IPV6_HDR + FRAG_HDR..end];
        if (more && !data.len().is_multiple_of(8)) || off + data.len() > MAX_PAYLOAD {
            return None;
        }
        if off == 0 && !more {
            // An atomic fragment (RFC 6946): complete by itself.
            return Some((src, dst, h[0], data.to_vec()));
        }
        if more && data.is_empty() {
            return None;
        }
        let key = (src, dst, id);
        if !self.parts.contains_key(&key) && self.parts.len() >= REASM_MAX {
            let oldest = self
                .parts
                .iter()
                .min_by_key(|(_, p)| p.since)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.parts.remove(&k);
            }
        }
        let p = self.parts.entry(key).or_insert_with(|| Part {
            next: None,
            buf: Vec::new(),
            blocks: vec![0; MAX_PAYLOAD.div_ceil(8).div_ceil(64)],
            filled: 0,
            total: None,
            since: now,
        });
        let last = off + data.len();
        let (first_b, end_b) = (off / 8, last.div_ceil(8));
        let bad = (!more && p.total.is_some_and(|t| t != last))
            || p.total.is_some_and(|t| last > t)
            || (!more && p.filled > 0 && (p.buf.len() > last))
            || (first_b..end_b).any(|b| p.has(b));
        if bad {
            self.parts.remove(&key);
            return None;
        }
        if !more {
            p.total = Some(last);
        }
        if off == 0 {
            p.next = Some(h[0]);
        }
        if p.buf.len() < last {
            p.buf.resize(last, 0);
        }
        p.buf[off..last].copy_from_slice(data);
        for b in first_b..end_b {
            p.blocks[b / 64] |= 1 << (b % 64);
        }
        p.filled += end_b - first_b;
        let done = p.total.is_some_and(|t| p.filled == t.div_ceil(8));
        if !done {
            return None;
        }
        let p = self.parts.remove(&key)?;
        Some((src, dst, p.next?, p.buf))
    }
}

/// Parses a reassembled upper-layer packet as UDP (length and checksum checked).
pub(crate) fn udp(
    iface: usize,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: u8,
    mut b: Vec<u8>,
) -> Option<Datagram> {
    if next != NH_UDP || b.len() < UDP_HDR {
        return None;
    }
    let ulen = usize::from(u16::from_be_bytes([b[4], b[5]]));
    if ulen < UDP_HDR || ulen > b.len() || b[6..8] == [0, 0] {
        return None;
    }
    b.truncate(ulen);
    if sum(&[&pseudo(&src, &dst, ulen), &b]) != 0xffff {
        return None;
    }
    let sport = u16::from_be_bytes([b[0], b[1]]);
    let dport = u16::from_be_bytes([b[2], b[3]]);
    b.drain(..UDP_HDR);
    Some(Datagram {
        iface,
        src: SocketAddr::new(IpAddr::V6(src), sport),
        dst: SocketAddr::new(IpAddr::V6(dst), dport),
        payload: b,
    })
}
