//! `dhcp` in a configuration: a DHCPv4 client (RFC 2131) on an `AF_PACKET` `SOCK_DGRAM`
//! socket of the stack for `ETH_P_IP`, bound to the interface, the same code for every stack.
//! It has no address yet, so it builds the IPv4 and UDP headers itself (from 0.0.0.0:68 to
//! 255.255.255.255:67, broadcast to `ff:ff:ff:ff:ff:ff`): DISCOVER, OFFER, REQUEST, ACK. Each
//! message is sent at most [`TRIES`] times, [`ANSWER`] apart. The lease is applied by the caller
//! ([`Config::apply`](super::Config::apply)); it is not renewed (the program runs on the
//! address for the lease's time and beyond).

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::socket::raw;
use crate::{Error, Result, Socket, Stack};

/// How long each message waits for its answer.
const ANSWER: Duration = Duration::from_secs(2);
/// How many times each message is sent.
const TRIES: usize = 4;

const ETH_P_IP: u16 = 0x0800;
const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const ACK: u8 = 5;
const NAK: u8 = 6;
const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// What the server leased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) addr: Ipv4Addr,
    pub(crate) prefix: u8,
    pub(crate) router: Option<Ipv4Addr>,
    pub(crate) dns: Vec<Ipv4Addr>,
    pub(crate) domain: Option<String>,
}

/// A `sockaddr_ll` for `ifindex`, `ETH_P_IP` and, if given, a hardware address.
fn sll(ifindex: u32, mac: Option<[u8; 6]>) -> Vec<u8> {
    let mut b = vec![0u8; 20];
    b[..2].copy_from_slice(&(libc::AF_PACKET as u16).to_ne_bytes());
    b[2..4].copy_from_slice(&ETH_P_IP.to_be_bytes());
    b[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    if let Some(m) = mac {
        b[11] = 6;
        b[12..18].copy_from_slice(&m);
    }
    b
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A client message of type `kind` in its IPv4 and UDP headers; `want`: the address and server
/// a REQUEST asks for.
fn packet(kind: u8, xid: u32, mac: [u8; 6], want: Option<(Ipv4Addr, Ipv4Addr)>) -> Vec<u8> {
    let mut m = vec![0u8; 236];
    m[0] = BOOTREQUEST;
    m[1] = 1; // htype: Ethernet
    m[2] = 6; // hlen
    m[4..8].copy_from_slice(&xid.to_be_bytes());
    m[10] = 0x80; // broadcast: we cannot receive unicast before we have the address
    m[28..34].copy_from_slice(&mac);
    m.extend_from_slice(&MAGIC);
    m.extend_from_slice(&[53, 1, kind]);
    m.extend_from_slice(&[61, 7, 1]);
    m.extend_from_slice(&mac);
    if let Some((addr, server)) = want {
        m.extend_from_slice(&[50, 4]);
        m.extend_from_slice(&addr.octets());
        m.extend_from_slice(&[54, 4]);
        m.extend_from_slice(&server.octets());
    }
    // Parameters: mask, router, DNS, domain, lease time.
    m.extend_from_slice(&[55, 5, 1, 3, 6, 15, 51, 255]);
    m.resize(300, 0); // BOOTP's minimum size
    let udp_len = 8 + m.len();
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    p[8] = 64;
    p[9] = libc::IPPROTO_UDP as u8;
    p[16..20].copy_from_slice(&[255; 4]);
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&68u16.to_be_bytes());
    p[22..24].copy_from_slice(&67u16.to_be_bytes());
    p[24..26].copy_from_slice(&(udp_len as u16).to_be_bytes());
    // UDP checksum 0: none, as IPv4 allows.
    p.extend_from_slice(&m);
    p
}

/// A server's message: its type, yiaddr and the options we use.
#[derive(Debug, Default)]
struct Reply {
    kind: u8,
    yiaddr: Option<Ipv4Addr>,
    mask: Option<Ipv4Addr>,
    router: Option<Ipv4Addr>,
    server: Option<Ipv4Addr>,
    dns: Vec<Ipv4Addr>,
    domain: Option<String>,
}

/// An IPv4 packet as a server's message to transaction `xid`, else `None`.
fn parse(p: &[u8], xid: u32) -> Option<Reply> {
    if p.len() < 20 || p[0] >> 4 != 4 || p[9] != libc::IPPROTO_UDP as u8 {
        return None;
    }
    let u = p.get(usize::from(p[0] & 15) * 4..)?;
    if u.len() < 8 || u[..4] != [0, 67, 0, 68] {
        return None;
    }
    let m = &u[8..];
    if m.len() < 240 || m[0] != BOOTREPLY || m[4..8] != xid.to_be_bytes() || m[236..240] != MAGIC {
        return None;
    }
    let ip4 = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    let mut r = Reply {
        yiaddr: Some(ip4(&m[16..20])),
        ..Reply::default()
    };
    let mut o = &m[240..];
    while let [code, rest @ ..] = o {
        match *code {
            0 => {
                o = rest;
                continue;
            }
            255 => break,
            _ => {}
        }
        let [len, rest @ ..] = rest else { break };
        let len = usize::from(*len);
        let v = rest.get(..len)?;
        match (*code, len) {
            (53, 1) => r.kind = v[0],
            (1, 4) => r.mask = Some(ip4(v)),
            (3, l) if l >= 4 => r.router = Some(ip4(v)),
            (6, l) if l >= 4 => r.dns = v.chunks_exact(4).map(ip4).collect(),
            (15, l) if l > 0 => {
                r.domain = std::str::from_utf8(v)
                    .ok()
                    .map(|d| d.trim_end_matches('\0').to_owned())
                    .filter(|d| !d.is_empty() && !d.contains(char::is_whitespace))
            }
            (54, 4) => r.server = Some(ip4(v)),
            _ => {}
        }
        o = &rest[len..];
    }
    Some(r)
}

fn os(op: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::Os { op, source }
}

/// Broadcasts `p` and waits for a message of `kinds` to `xid`, [`TRIES`] times.
fn exchange(s: &Socket, ifindex: u32, p: &[u8], xid: u32, kinds: &[u8]) -> Result<Reply> {
    let to = raw::sock_addr(&sll(ifindex, Some([0xff; 6])))
        .ok_or_else(|| Error::InvalidArgument("sockaddr_ll".into()))?;
    let mut buf = vec![0u8; 2048];
    for _ in 0..TRIES {
        s.send_to_sockaddr(p, &to).map_err(os("DHCP: sendto"))?;
        let deadline = Instant::now() + ANSWER;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds = [PollFd::new(s.as_fd(), PollFlags::POLLIN)];
            let t = PollTimeout::try_from(left).unwrap_or(PollTimeout::NONE);
            match poll(&mut fds, t) {
                Ok(0) => break,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(os("DHCP: poll")(e.into())),
            }
            let (n, _) = s
                .recv_from_sockaddr(&mut buf)
                .map_err(os("DHCP: recvfrom"))?;
            if let Some(r) = parse(&buf[..n], xid).filter(|r| kinds.contains(&r.kind)) {
                return Ok(r);
            }
        }
    }
    Err(Error::Stack {
        errno: libc::ETIMEDOUT,
        message: format!(
            "DHCP: no {} from a server ({TRIES} tries)",
            if kinds.contains(&OFFER) {
                "OFFER"
            } else {
                "ACK"
            }
        ),
    })
}

/// DHCPv4 on interface `ifindex` of `stack` (up already): the lease, or `ETIMEDOUT` (no server
/// answered), `ECONNREFUSED` (a NAK), `EPROTO` (an ACK without address or mask).
pub(crate) fn dhcpv4(stack: &Stack, ifindex: u32) -> Result<Lease> {
    let mac = stack.link_get_mac(ifindex)?;
    let s = stack.msocket(
        libc::AF_PACKET,
        libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
        i32::from(ETH_P_IP.to_be()),
    )?;
    let bind = raw::sock_addr(&sll(ifindex, None))
        .ok_or_else(|| Error::InvalidArgument("sockaddr_ll".into()))?;
    s.bind_sockaddr(&bind).map_err(os("DHCP: bind"))?;
    let xid =
        u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]) ^ std::process::id().rotate_left(16);
    let offer = exchange(
        &s,
        ifindex,
        &packet(DISCOVER, xid, mac, None),
        xid,
        &[OFFER],
    )?;
    let proto = |what: &str| Error::Stack {
        errno: libc::EPROTO,
        message: format!("DHCP: the server's answer has no {what}"),
    };
    let server = offer.server.ok_or_else(|| proto("server identifier"))?;
    let want = offer.yiaddr.ok_or_else(|| proto("address"))?;
    let ack = exchange(
        &s,
        ifindex,
        &packet(REQUEST, xid, mac, Some((want, server))),
        xid,
        &[ACK, NAK],
    )?;
    if ack.kind == NAK {
        return Err(Error::Stack {
            errno: libc::ECONNREFUSED,
            message: format!("DHCP: {server} refused the request for {want} (NAK)"),
        });
    }
    let mask = ack
        .mask
        .or(offer.mask)
        .ok_or_else(|| proto("subnet mask"))?;
    let addr = ack
        .yiaddr
        .filter(|a| !a.is_unspecified())
        .ok_or_else(|| proto("address"))?;
    Ok(Lease {
        addr,
        prefix: u32::from(mask).leading_ones() as u8,
        router: ack.router.or(offer.router),
        dns: if ack.dns.is_empty() {
            offer.dns
        } else {
            ack.dns
        },
        domain: ack.domain.or(offer.domain),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_parses_back_with_its_options() {
        let mac = [2, 0, 0, 0, 0, 9];
        let want = (Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 1));
        let p = packet(REQUEST, 0x1234_5678, mac, Some(want));
        assert_eq!(p.len(), 328);
        assert_eq!(checksum(&p[..20]), 0, "the IPv4 header checksum");
        // The same bytes, turned into a server's reply, parse.
        let mut r = p.clone();
        r[20..24].copy_from_slice(&[0, 67, 0, 68]);
        r[28] = BOOTREPLY;
        r[28 + 16..28 + 20].copy_from_slice(&[10, 0, 0, 5]);
        let got = parse(&r, 0x1234_5678).unwrap();
        assert_eq!(got.kind, REQUEST);
        assert_eq!(got.yiaddr, Some(want.0));
        assert_eq!(got.server, Some(want.1));
        assert!(parse(&r, 0x1234_5679).is_none(), "another transaction");
        assert!(parse(&p, 0x1234_5678).is_none(), "a request is no reply");
    }
}
