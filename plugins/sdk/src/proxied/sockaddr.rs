//! Socket addresses as the C ABI carries them: the bytes of a `struct sockaddr_in` or
//! `sockaddr_in6`, to and from [`SocketAddr`]. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`)
//! given to an `AF_INET6` socket becomes IPv4, and goes back out mapped ([`to_sockaddr`] with
//! the socket's family). Pure code.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// `sizeof(struct sockaddr_in)`.
pub const SIN_LEN: usize = 16;
/// `sizeof(struct sockaddr_in6)`.
pub const SIN6_LEN: usize = 28;

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
}
