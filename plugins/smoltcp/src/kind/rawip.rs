//! The state of a raw ICMP/ICMPv6 socket ([`crate::rawip`] drives it) and its IP-level options.

use std::io;
use std::net::IpAddr;

use smoltcp::iface::SocketHandle;

use crate::net::Net;
use ioth_plugin_sdk::errno::io_error;

/// `ICMP6_FILTER` (level `IPPROTO_ICMPV6`).
pub(crate) const ICMP6_FILTER: i32 = 1;

/// One raw socket.
pub struct RawIp {
    /// IPv6 (`IPPROTO_ICMPV6`), else IPv4 (`IPPROTO_ICMP`).
    pub(crate) v6: bool,
    /// One smoltcp raw socket per interface: (interface position, handle).
    pub(crate) legs: Vec<(usize, SocketHandle)>,
    /// The bound address (`None`: any).
    pub local: Option<IpAddr>,
    /// `IPV6_UNICAST_HOPS`/`IP_TTL`; -1: the default (64).
    pub(crate) unicast_hops: i32,
    /// `IPV6_MULTICAST_HOPS`/`IP_MULTICAST_TTL`; -1: the default (1).
    pub(crate) multicast_hops: i32,
    /// `IPV6_MULTICAST_IF`/`IP_MULTICAST_IF` (an interface index; 0: none).
    pub(crate) multicast_if: u32,
    /// `IPV6_MULTICAST_LOOP`/`IP_MULTICAST_LOOP`.
    pub(crate) multicast_loop: bool,
    /// `ICMP6_FILTER`: a set bit blocks that ICMPv6 type.
    pub(crate) filter: [u32; 8],
    pub(crate) eof: bool,
}

impl RawIp {
    /// A socket with one smoltcp raw socket per interface (`legs`), unbound, with the default
    /// hop limits and options and no ICMPv6 type filtered.
    pub(crate) fn new(v6: bool, legs: Vec<(usize, SocketHandle)>) -> RawIp {
        RawIp {
            v6,
            legs,
            local: None,
            unicast_hops: -1,
            multicast_hops: -1,
            multicast_if: 0,
            multicast_loop: true,
            filter: [0; 8],
            eof: false,
        }
    }

    /// The events to poll the plug-in's end for.
    pub fn interest(&self) -> i16 {
        if self.eof {
            0
        } else {
            libc::POLLIN
        }
    }

    /// `SO_PROTOCOL`.
    pub fn protocol(&self) -> i32 {
        if self.v6 {
            libc::IPPROTO_ICMPV6
        } else {
            libc::IPPROTO_ICMP
        }
    }

    /// `setsockopt` of an IP level; `None`: not a raw-socket option (the caller goes on).
    pub fn setsockopt(
        &mut self,
        net: &Net,
        level: i32,
        name: i32,
        v: &[u8],
    ) -> Option<io::Result<()>> {
        let int = || -> io::Result<i32> {
            match v.len() {
                0 => Err(io_error(libc::EINVAL)),
                1..=3 => Ok(i32::from(v[0])),
                _ => Ok(i32::from_ne_bytes([v[0], v[1], v[2], v[3]])),
            }
        };
        let hops = |x: i32| {
            if (-1..=255).contains(&x) {
                Ok(x)
            } else {
                Err(io_error(libc::EINVAL))
            }
        };
        let r = match (self.v6, level, name) {
            (true, libc::IPPROTO_ICMPV6, ICMP6_FILTER) => {
                let mut f = [0u8; 32];
                let n = v.len().min(32);
                f[..n].copy_from_slice(&v[..n]);
                for (k, w) in self.filter.iter_mut().enumerate() {
                    *w = u32::from_ne_bytes([f[4 * k], f[4 * k + 1], f[4 * k + 2], f[4 * k + 3]]);
                }
                Ok(())
            }
            (false, libc::IPPROTO_ICMPV6, _) => Err(io_error(libc::ENOPROTOOPT)),
            (true, libc::IPPROTO_IPV6, libc::IPV6_CHECKSUM) => Err(io_error(libc::EINVAL)),
            (true, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS)
            | (false, libc::IPPROTO_IP, libc::IP_TTL) => int().and_then(hops).map(|h| {
                self.unicast_hops = h;
            }),
            (true, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS)
            | (false, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL) => {
                int().and_then(hops).map(|h| self.multicast_hops = h)
            }
            (true, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP) => match int() {
                Ok(x @ (0 | 1)) => {
                    self.multicast_loop = x == 1;
                    Ok(())
                }
                Ok(_) => Err(io_error(libc::EINVAL)),
                Err(e) => Err(e),
            },
            (false, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP) => {
                int().map(|x| self.multicast_loop = x != 0)
            }
            (true, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF) => int().and_then(|x| {
                if x != 0 && net.by_index(x as u32).is_none() {
                    return Err(io_error(libc::ENODEV));
                }
                self.multicast_if = x as u32;
                Ok(())
            }),
            _ => return None,
        };
        Some(r)
    }

    /// `getsockopt` of an IP level; `None`: not a raw-socket option.
    pub fn getsockopt(&self, level: i32, name: i32) -> Option<io::Result<Vec<u8>>> {
        let int = |x: i32| Some(Ok(x.to_ne_bytes().to_vec()));
        let def = |x: i32, d: i32| if x < 0 { d } else { x };
        match (self.v6, level, name) {
            (true, libc::IPPROTO_ICMPV6, ICMP6_FILTER) => Some(Ok(self
                .filter
                .iter()
                .flat_map(|w| w.to_ne_bytes())
                .collect())),
            (true, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS)
            | (false, libc::IPPROTO_IP, libc::IP_TTL) => int(def(self.unicast_hops, 64)),
            (true, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS)
            | (false, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL) => int(def(self.multicast_hops, 1)),
            (true, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP)
            | (false, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP) => {
                int(i32::from(self.multicast_loop))
            }
            (true, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF) => int(self.multicast_if as i32),
            _ => None,
        }
    }

    /// Whether `ICMP6_FILTER` passes ICMPv6 type `t`.
    pub(crate) fn passes(&self, t: u8) -> bool {
        !self.v6 || self.filter[usize::from(t >> 5)] & (1 << (t & 31)) == 0
    }
}
