//! Socket addresses as the C ABI carries them (`struct sockaddr_in`/`sockaddr_in6` bytes) and
//! the 28-byte address header of unconnected datagram sockets (docs/proxied.md). Pure code.
//!
//! Inside the plug-in an address is a `std::net::SocketAddr` in its natural family: an
//! IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) given to an `AF_INET6` socket becomes IPv4, and
//! goes back out mapped ([`to_sockaddr`] with the socket's family).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Size of the datagram address header.
pub const HDR_LEN: usize = 28;
const SIN_LEN: usize = 16;
const SIN6_LEN: usize = 28;

fn einval() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

/// An IPv4-mapped IPv6 address as IPv4; anything else unchanged.
pub fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => a,
        },
        v4 => v4,
    }
}

/// Parses the `sockaddr` bytes a socket of family `family` was given: `Ok(None)` for
/// `AF_UNSPEC` (a datagram socket's disconnect), `EINVAL` for a short address,
/// `EAFNOSUPPORT` for another family.
pub fn from_sockaddr(b: &[u8], family: i32) -> io::Result<Option<SocketAddr>> {
    if b.len() < 2 {
        return Err(einval());
    }
    let fam = i32::from(u16::from_ne_bytes([b[0], b[1]]));
    if fam == libc::AF_UNSPEC {
        return Ok(None);
    }
    if fam != family {
        return Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT));
    }
    // Too short for a port (a 2-byte AF_INET address): EINVAL, as the kernel's bind/connect.
    let Some(&[p0, p1]) = b.get(2..4) else {
        return Err(einval());
    };
    let port = u16::from_be_bytes([p0, p1]);
    match fam {
        libc::AF_INET => {
            if b.len() < SIN_LEN {
                return Err(einval());
            }
            let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            Ok(Some(SocketAddr::V4(SocketAddrV4::new(ip, port))))
        }
        libc::AF_INET6 => {
            // The kernel accepts the 24-byte RFC 2133 form without scope id.
            if b.len() < 24 {
                return Err(einval());
            }
            let flow = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[8..24]);
            let scope = if b.len() >= SIN6_LEN {
                u32::from_ne_bytes([b[24], b[25], b[26], b[27]])
            } else {
                0
            };
            let a = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(o), port, flow, scope));
            Ok(Some(unmap(a)))
        }
        _ => Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT)),
    }
}

/// `a` as the `sockaddr` bytes of a socket of family `family` (IPv4 mapped for `AF_INET6`).
pub fn to_sockaddr(a: SocketAddr, family: i32) -> Vec<u8> {
    let a = match (a, family) {
        (SocketAddr::V4(v4), libc::AF_INET6) => {
            SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
        }
        _ => a,
    };
    match a {
        SocketAddr::V4(v4) => {
            let mut b = vec![0u8; SIN_LEN];
            b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&v4.port().to_be_bytes());
            b[4..8].copy_from_slice(&v4.ip().octets());
            b
        }
        SocketAddr::V6(v6) => {
            let mut b = vec![0u8; SIN6_LEN];
            b[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&v6.port().to_be_bytes());
            b[4..8].copy_from_slice(&v6.flowinfo().to_be_bytes());
            b[8..24].copy_from_slice(&v6.ip().octets());
            b[24..28].copy_from_slice(&v6.scope_id().to_ne_bytes());
            b
        }
    }
}

/// The unspecified address of `family`, port 0 (`getsockname` of an unbound socket).
pub fn unspecified(family: i32) -> SocketAddr {
    if family == libc::AF_INET6 {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)
    } else {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    }
}

/// The datagram header for address `a` on a socket of family `family`:
/// `{u16 family (host order); u16 port (network order); u32 flowinfo; u8 addr[16]; u32 scope_id}`.
pub fn header(a: SocketAddr, family: i32) -> [u8; HDR_LEN] {
    let s = to_sockaddr(a, family);
    let mut h = [0u8; HDR_LEN];
    h[..4].copy_from_slice(&s[..4]);
    if s.len() == SIN_LEN {
        h[8..12].copy_from_slice(&s[4..8]);
    } else {
        h[4..28].copy_from_slice(&s[4..28]);
    }
    h
}

/// Parses a datagram header (see [`header`]); `EINVAL` if short or of an unknown family.
pub fn parse_header(h: &[u8]) -> io::Result<SocketAddr> {
    if h.len() < HDR_LEN {
        return Err(einval());
    }
    let fam = i32::from(u16::from_ne_bytes([h[0], h[1]]));
    let port = u16::from_be_bytes([h[2], h[3]]);
    match fam {
        libc::AF_INET => Ok(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::new(h[8], h[9], h[10], h[11]),
            port,
        ))),
        libc::AF_INET6 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&h[8..24]);
            let flow = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
            let scope = u32::from_ne_bytes([h[24], h[25], h[26], h[27]]);
            Ok(unmap(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(o),
                port,
                flow,
                scope,
            ))))
        }
        _ => Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT)),
    }
}

/// The destination `connect` really aims at: `ENETUNREACH` for an IPv4 address on an
/// `IPV6_V6ONLY` socket, and the unspecified address meaning the loopback, as in Linux.
pub fn connect_target(dst: SocketAddr, domain: i32, v6only: bool) -> io::Result<SocketAddr> {
    if domain == libc::AF_INET6 && dst.is_ipv4() && v6only {
        return Err(io::Error::from_raw_os_error(libc::ENETUNREACH));
    }
    if !dst.ip().is_unspecified() {
        return Ok(dst);
    }
    let lo = match dst.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    Ok(SocketAddr::new(lo, dst.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trips() {
        let a: SocketAddr = "10.1.2.3:80".parse().unwrap();
        let b = to_sockaddr(a, libc::AF_INET);
        assert_eq!(b.len(), 16);
        assert_eq!(from_sockaddr(&b, libc::AF_INET).unwrap(), Some(a));
        // IPv4 on an AF_INET6 socket goes out mapped and comes back as IPv4.
        let m = to_sockaddr(a, libc::AF_INET6);
        assert_eq!(m.len(), 28);
        assert_eq!(from_sockaddr(&m, libc::AF_INET6).unwrap(), Some(a));
        let v6: SocketAddr = "[fd00::1]:5000".parse().unwrap();
        let b = to_sockaddr(v6, libc::AF_INET6);
        assert_eq!(from_sockaddr(&b, libc::AF_INET6).unwrap(), Some(v6));
        assert_eq!(
            from_sockaddr(&b[..10], libc::AF_INET6)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EINVAL)
        );
        assert_eq!(
            from_sockaddr(&b, libc::AF_INET).unwrap_err().raw_os_error(),
            Some(libc::EAFNOSUPPORT)
        );
        let unspec = (libc::AF_UNSPEC as u16).to_ne_bytes();
        assert_eq!(from_sockaddr(&unspec, libc::AF_INET).unwrap(), None);
        // Just a family, or a family and half a port: EINVAL, never a panic.
        let fam = (libc::AF_INET as u16).to_ne_bytes();
        for b in [&fam[..], &[fam[0], fam[1], 0][..]] {
            assert_eq!(
                from_sockaddr(b, libc::AF_INET).unwrap_err().raw_os_error(),
                Some(libc::EINVAL)
            );
        }
    }

    #[test]
    fn header_layout() {
        let a: SocketAddr = "10.0.0.1:7000".parse().unwrap();
        let h = header(a, libc::AF_INET);
        assert_eq!(u16::from_ne_bytes([h[0], h[1]]), libc::AF_INET as u16);
        assert_eq!(&h[2..4], &7000u16.to_be_bytes());
        assert_eq!(&h[8..12], &[10, 0, 0, 1]);
        assert_eq!(parse_header(&h).unwrap(), a);
        let v6: SocketAddr = "[fd00::2]:53".parse().unwrap();
        assert_eq!(parse_header(&header(v6, libc::AF_INET6)).unwrap(), v6);
        assert!(parse_header(&h[..20]).is_err());
    }
}
