//! Socket addresses: the SDK's `sockaddr` bytes and datagram header (the proxied-fd contract,
//! [`ioth_plugin_sdk::proxied`]) and what `connect` aims at. Pure code.
//!
//! Inside the plug-in an address is a `std::net::SocketAddr` in its natural family: an
//! IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) given to an `AF_INET6` socket becomes IPv4, and
//! goes back out mapped ([`to_sockaddr`] with the socket's family).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub use ioth_plugin_sdk::proxied::header::{header, parse_header, HDR_LEN};
pub use ioth_plugin_sdk::proxied::sockaddr::{from_sockaddr, to_sockaddr, unmap, unspecified};

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
    fn connect_targets() {
        let v4: SocketAddr = "10.0.0.1:80".parse().unwrap();
        assert_eq!(connect_target(v4, libc::AF_INET, false).unwrap(), v4);
        assert_eq!(connect_target(v4, libc::AF_INET6, false).unwrap(), v4);
        assert_eq!(
            connect_target(v4, libc::AF_INET6, true)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENETUNREACH)
        );
        let any6: SocketAddr = "[::]:7".parse().unwrap();
        assert_eq!(
            connect_target(any6, libc::AF_INET6, false).unwrap(),
            "[::1]:7".parse().unwrap()
        );
        let any4: SocketAddr = "0.0.0.0:7".parse().unwrap();
        assert_eq!(
            connect_target(any4, libc::AF_INET, false).unwrap(),
            "127.0.0.1:7".parse().unwrap()
        );
    }
}
