//! The address header of an unconnected proxied datagram socket (docs/proxied.md), in bytes.
//!
//! While a proxied `SOCK_DGRAM` socket is not connected, every record on its `SOCK_SEQPACKET`
//! pair starts with [`HDR_LEN`] bytes laid out as a `struct sockaddr_in6`:
//!
//! ```c
//! struct { uint16_t family;   /* AF_INET or AF_INET6, host order */
//!          uint16_t port;     /* network order */
//!          uint32_t flowinfo; /* network order, 0 for AF_INET */
//!          uint8_t  addr[16]; /* an IPv4 address in the first 4 bytes */
//!          uint32_t scope_id; /* host order, 0 for AF_INET */ };
//! ```
//!
//! followed by the payload: the destination of an outgoing datagram, the source of an incoming
//! one. An `AF_PACKET` socket (always unconnected) uses the same 28 bytes for a
//! `struct sockaddr_ll` (20 bytes: family, protocol, ifindex, hatype, pkttype, halen, addr[8]),
//! zero-padded: the family sits at the same place, so the header says which it is. The
//! functions here convert between that header and the raw `sockaddr` bytes the Berkeley calls
//! carry; [`header`] and [`parse_header`] the header of a [`SocketAddr`]. Pure code, used by the
//! client (C ABI, Rust `Socket`, the preload library), by the host's pump and by plug-ins.

use std::io;
use std::net::SocketAddr;

use super::sockaddr::{from_sockaddr, to_sockaddr};

/// Size of the header.
pub const HDR_LEN: usize = 28;

use super::sockaddr::{SIN6_LEN, SIN_LEN};
/// The RFC 2133 `sockaddr_in6` without `scope_id`, which the kernel accepts.
const SIN6_LEN_OLD: usize = 24;
/// `sizeof(struct sockaddr_ll)`: what the kernel requires of a packet socket's `sendto`
/// address, and the length `recvfrom` reports.
pub const SLL_LEN: usize = 20;

fn family_of(b: &[u8]) -> Option<i32> {
    (b.len() >= 2).then(|| i32::from(u16::from_ne_bytes([b[0], b[1]])))
}

/// The header for the `sockaddr` bytes `sa` (a `sockaddr_in`, `sockaddr_in6` or
/// `sockaddr_ll`); `Err(errno)`: `EINVAL` for a short address (a `sockaddr_ll` shorter than 20
/// bytes, as the kernel's packet `sendto`), `EAFNOSUPPORT` for another family.
pub fn header_from_sockaddr(sa: &[u8]) -> Result<[u8; HDR_LEN], i32> {
    let mut h = [0u8; HDR_LEN];
    match family_of(sa) {
        Some(libc::AF_INET) if sa.len() >= SIN_LEN => {
            h[..4].copy_from_slice(&sa[..4]);
            h[8..12].copy_from_slice(&sa[4..8]);
            Ok(h)
        }
        Some(libc::AF_INET6) if sa.len() >= SIN6_LEN_OLD => {
            let n = sa.len().min(SIN6_LEN);
            h[..n].copy_from_slice(&sa[..n]);
            Ok(h)
        }
        Some(libc::AF_PACKET) if sa.len() >= SLL_LEN => {
            h[..SLL_LEN].copy_from_slice(&sa[..SLL_LEN]);
            Ok(h)
        }
        Some(libc::AF_INET | libc::AF_INET6 | libc::AF_PACKET) | None => Err(libc::EINVAL),
        Some(_) => Err(libc::EAFNOSUPPORT),
    }
}

/// The `sockaddr` bytes a header names (16 for `AF_INET`, 28 for `AF_INET6`, 20 for
/// `AF_PACKET`); `Err(EINVAL)` for a short header or an unknown family.
pub fn sockaddr_from_header(h: &[u8]) -> Result<Vec<u8>, i32> {
    if h.len() < HDR_LEN {
        return Err(libc::EINVAL);
    }
    match family_of(h) {
        Some(libc::AF_INET) => {
            let mut sa = vec![0u8; SIN_LEN];
            sa[..4].copy_from_slice(&h[..4]);
            sa[4..8].copy_from_slice(&h[8..12]);
            Ok(sa)
        }
        Some(libc::AF_INET6) => Ok(h[..SIN6_LEN].to_vec()),
        Some(libc::AF_PACKET) => Ok(h[..SLL_LEN].to_vec()),
        _ => Err(libc::EINVAL),
    }
}

/// One record read from an unconnected datagram socket's pair: `n` bytes, the first
/// [`HDR_LEN`] of them in `hdr`. Returns the payload's length and its source's `sockaddr`
/// bytes. `n == 0` is the end (the other end is gone: `(0, None)`); a record shorter than the
/// header, or whose header names no address, breaks the contract (`EPROTO`) and is never taken
/// for a datagram of 0 bytes; a zero-length datagram is a header alone: `(0, Some(source))`.
pub fn record(n: usize, hdr: &[u8; HDR_LEN]) -> Result<(usize, Option<Vec<u8>>), i32> {
    if n == 0 {
        return Ok((0, None));
    }
    if n < HDR_LEN {
        return Err(libc::EPROTO);
    }
    let from = sockaddr_from_header(hdr).map_err(|_| libc::EPROTO)?;
    Ok((n - HDR_LEN, Some(from)))
}

/// The header for address `a` on a socket of family `family` (an IPv4 address mapped on an
/// `AF_INET6` socket).
pub fn header(a: SocketAddr, family: i32) -> [u8; HDR_LEN] {
    header_from_sockaddr(&to_sockaddr(a, family))
        .unwrap_or_else(|_| unreachable!("to_sockaddr makes a whole AF_INET or AF_INET6 address"))
}

/// The address a header names (an IPv4-mapped one as IPv4); `EINVAL` if short, `EAFNOSUPPORT`
/// for a family other than `AF_INET`/`AF_INET6`.
pub fn parse_header(h: &[u8]) -> io::Result<SocketAddr> {
    if h.len() < HDR_LEN {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let family = i32::from(u16::from_ne_bytes([h[0], h[1]]));
    if family != libc::AF_INET && family != libc::AF_INET6 {
        return Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT));
    }
    let sa = sockaddr_from_header(h).map_err(io::Error::from_raw_os_error)?;
    from_sockaddr(&sa, family)?.ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sin(port: u16, ip: [u8; 4]) -> Vec<u8> {
        let mut b = vec![0u8; SIN_LEN];
        b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[4..8].copy_from_slice(&ip);
        b
    }

    #[test]
    fn ipv4_round_trip_and_layout() {
        let sa = sin(7000, [10, 0, 0, 1]);
        let h = header_from_sockaddr(&sa).unwrap();
        assert_eq!(u16::from_ne_bytes([h[0], h[1]]), libc::AF_INET as u16);
        assert_eq!(&h[2..4], &7000u16.to_be_bytes());
        assert_eq!(&h[4..8], &[0; 4]);
        assert_eq!(&h[8..12], &[10, 0, 0, 1]);
        assert_eq!(sockaddr_from_header(&h).unwrap(), sa);
    }

    #[test]
    fn ipv6_round_trip_is_the_sockaddr_itself() {
        let mut sa = vec![0u8; SIN6_LEN];
        sa[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        sa[2..4].copy_from_slice(&53u16.to_be_bytes());
        sa[4..8].copy_from_slice(&5u32.to_be_bytes());
        sa[8] = 0xfd;
        sa[23] = 2;
        sa[24..28].copy_from_slice(&3u32.to_ne_bytes());
        let h = header_from_sockaddr(&sa).unwrap();
        assert_eq!(&h[..], &sa[..]);
        assert_eq!(sockaddr_from_header(&h).unwrap(), sa);
        // The 24-byte form gets a zero scope.
        let h = header_from_sockaddr(&sa[..24]).unwrap();
        assert_eq!(&h[24..], &[0; 4]);
    }

    #[test]
    fn packet_round_trip() {
        let mut sll = vec![0u8; SLL_LEN];
        sll[..2].copy_from_slice(&(libc::AF_PACKET as u16).to_ne_bytes());
        sll[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
        sll[4..8].copy_from_slice(&2i32.to_ne_bytes());
        sll[11] = 6;
        sll[12..18].copy_from_slice(&[0xff; 6]);
        let h = header_from_sockaddr(&sll).unwrap();
        assert_eq!(&h[..SLL_LEN], &sll[..]);
        assert_eq!(&h[SLL_LEN..], &[0; HDR_LEN - SLL_LEN]);
        assert_eq!(sockaddr_from_header(&h).unwrap(), sll);
        // A longer buffer (a sockaddr_storage) is cut to the sockaddr_ll; a shorter one fails
        // as the kernel's sendto does.
        let mut long = sll.clone();
        long.resize(128, 7);
        assert_eq!(header_from_sockaddr(&long).unwrap(), h);
        assert_eq!(header_from_sockaddr(&sll[..18]), Err(libc::EINVAL));
    }

    #[test]
    fn malformed_addresses_and_headers_are_errors() {
        assert_eq!(header_from_sockaddr(&[]), Err(libc::EINVAL));
        assert_eq!(
            header_from_sockaddr(&sin(1, [1; 4])[..8]),
            Err(libc::EINVAL)
        );
        let mut unix = vec![0u8; 16];
        unix[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(header_from_sockaddr(&unix), Err(libc::EAFNOSUPPORT));
        assert_eq!(sockaddr_from_header(&[0u8; 10]), Err(libc::EINVAL));
        assert_eq!(sockaddr_from_header(&[0u8; HDR_LEN]), Err(libc::EINVAL));
    }

    #[test]
    fn records_short_or_unknown_are_protocol_errors() {
        let h = header("10.0.0.1:7".parse().unwrap(), libc::AF_INET);
        assert_eq!(record(0, &h), Ok((0, None)));
        assert_eq!(record(HDR_LEN, &h), Ok((0, Some(sin(7, [10, 0, 0, 1])))));
        assert_eq!(record(HDR_LEN + 5, &h).unwrap().0, 5);
        for n in [1, 2, HDR_LEN - 1] {
            assert_eq!(record(n, &h), Err(libc::EPROTO));
        }
        let mut unix = [0u8; HDR_LEN];
        unix[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(record(HDR_LEN + 3, &unix), Err(libc::EPROTO));
    }

    #[test]
    fn socket_address_headers() {
        let a: SocketAddr = "10.0.0.1:7000".parse().unwrap();
        let h = header(a, libc::AF_INET);
        assert_eq!(u16::from_ne_bytes([h[0], h[1]]), libc::AF_INET as u16);
        assert_eq!(&h[2..4], &7000u16.to_be_bytes());
        assert_eq!(&h[8..12], &[10, 0, 0, 1]);
        assert_eq!(parse_header(&h).unwrap(), a);
        // Mapped on an AF_INET6 socket, IPv4 again when parsed.
        let m = header(a, libc::AF_INET6);
        assert_eq!(u16::from_ne_bytes([m[0], m[1]]), libc::AF_INET6 as u16);
        assert_eq!(parse_header(&m).unwrap(), a);
        let v6: SocketAddr = "[fe80::2%3]:53".parse().unwrap();
        assert_eq!(parse_header(&header(v6, libc::AF_INET6)).unwrap(), v6);
        assert!(parse_header(&h[..20]).is_err());
        let mut p = [0u8; HDR_LEN];
        p[..2].copy_from_slice(&(libc::AF_PACKET as u16).to_ne_bytes());
        assert_eq!(
            parse_header(&p).unwrap_err().raw_os_error(),
            Some(libc::EAFNOSUPPORT)
        );
    }
}
