//! `ioth_getifaddrs`/`ioth_freeifaddrs`: getifaddrs(3) on a stack. Runs in the application.
//!
//! The other netlink functions of `ioth.h` (nlinline's, with a leading stack argument) are
//! inline in the header (`include/ioth_nlinline.h`), as in the original: they speak netlink on
//! an `ioth_msocket(stack, AF_NETLINK, ...)` socket through `ioth_bind`/`ioth_send`/`ioth_recv`.
//!
//! `ioth_getifaddrs` returns a glibc-compatible `struct ifaddrs` list in **one** `malloc`ed block
//! (nodes, names and sockaddrs together, the head at its start), as glibc does: so both
//! `ioth_freeifaddrs` and glibc's `freeifaddrs` free it, and it must be freed from its head.

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ptr::{self, addr_of_mut};

use super::{errno_of, guard, stack_arg, Ioth};
use crate::{IfAddress, Interface};

/// Any of the sockaddrs a `getifaddrs` entry points to.
#[repr(C)]
#[derive(Clone, Copy)]
union AnySockaddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
    ll: libc::sockaddr_ll,
}

/// One `struct ifaddrs` with the storage its pointers point to. `ifa` comes first, so a pointer
/// to the node is a pointer to its `struct ifaddrs`.
#[repr(C)]
struct Node {
    ifa: libc::ifaddrs,
    addr: AnySockaddr,
    netmask: AnySockaddr,
    ifu: AnySockaddr,
    name: [c_char; libc::IFNAMSIZ],
}

/// What a node holds, before its pointers are set.
struct Entry {
    name: [c_char; libc::IFNAMSIZ],
    flags: c_uint,
    addr: Option<AnySockaddr>,
    netmask: Option<AnySockaddr>,
    ifu: Option<AnySockaddr>,
}

fn c_name(s: &str) -> [c_char; libc::IFNAMSIZ] {
    let mut out = [0 as c_char; libc::IFNAMSIZ];
    for (o, b) in out.iter_mut().zip(s.bytes().take(libc::IFNAMSIZ - 1)) {
        *o = b as c_char;
    }
    out
}

fn sockaddr_ll(i: &Interface, hw: &[u8]) -> AnySockaddr {
    let mut sll_addr = [0u8; 8];
    let halen = hw.len().min(8);
    sll_addr[..halen].copy_from_slice(&hw[..halen]);
    AnySockaddr {
        ll: libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            sll_protocol: 0,
            sll_ifindex: i.index as c_int,
            sll_hatype: i.link_type,
            sll_pkttype: 0,
            sll_halen: halen as u8,
            sll_addr,
        },
    }
}

fn sockaddr_ip(a: IpAddr, ifindex: u32) -> AnySockaddr {
    match a {
        IpAddr::V4(v4) => AnySockaddr {
            v4: libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.octets()),
                },
                sin_zero: [0; 8],
            },
        },
        IpAddr::V6(v6) => {
            let link_scoped =
                v6.is_unicast_link_local() || (v6.is_multicast() && v6.segments()[0] & 0x000f == 2);
            AnySockaddr {
                v6: libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as u16,
                    sin6_port: 0,
                    sin6_flowinfo: 0,
                    sin6_addr: libc::in6_addr {
                        s6_addr: v6.octets(),
                    },
                    sin6_scope_id: if link_scoped { ifindex } else { 0 },
                },
            }
        }
    }
}

fn netmask(a: &IpAddr, prefix: u8) -> IpAddr {
    match a {
        IpAddr::V4(_) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(m))
        }
        IpAddr::V6(_) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(m))
        }
    }
}

/// The entries of `getifaddrs`, glibc's order: one `AF_PACKET` entry per link, then one per
/// address.
fn entries(links: &[Interface], addrs: &[IfAddress]) -> Vec<Entry> {
    let mut out = Vec::with_capacity(links.len() + addrs.len());
    for i in links {
        out.push(Entry {
            name: c_name(&i.name),
            flags: i.flags,
            addr: Some(sockaddr_ll(i, &i.hwaddr)),
            netmask: None,
            ifu: (!i.broadcast.is_empty()).then(|| sockaddr_ll(i, &i.broadcast)),
        });
    }
    for a in addrs {
        let link = links.iter().find(|l| l.index == a.index);
        let name = a
            .label
            .as_deref()
            .or(link.map(|l| l.name.as_str()))
            .unwrap_or("");
        let ifu = match (a.broadcast, a.peer) {
            (Some(b), _) => Some(sockaddr_ip(IpAddr::V4(b), a.index)),
            (None, Some(p)) => Some(sockaddr_ip(p, a.index)),
            (None, None) => None,
        };
        out.push(Entry {
            name: c_name(name),
            flags: link.map_or(0, |l| l.flags),
            addr: Some(sockaddr_ip(a.addr, a.index)),
            netmask: Some(sockaddr_ip(netmask(&a.addr, a.prefix_len), a.index)),
            ifu,
        });
    }
    out
}

/// Lays `entries` out in one `calloc`ed block of linked `struct ifaddrs`; NULL for none.
fn build_list(entries: Vec<Entry>) -> Result<*mut libc::ifaddrs, c_int> {
    let n = entries.len();
    if n == 0 {
        return Ok(ptr::null_mut());
    }
    // SAFETY: calloc takes plain sizes; the result is checked for NULL below.
    let base = unsafe { libc::calloc(n, std::mem::size_of::<Node>()) }.cast::<Node>();
    if base.is_null() {
        return Err(libc::ENOMEM);
    }
    let zero = AnySockaddr {
        v6: libc::sockaddr_in6 {
            sin6_family: 0,
            sin6_port: 0,
            sin6_flowinfo: 0,
            sin6_addr: libc::in6_addr { s6_addr: [0; 16] },
            sin6_scope_id: 0,
        },
    };
    for (k, e) in entries.into_iter().enumerate() {
        // SAFETY: k < n, so node is inside the block of n Nodes that calloc returned (suitably
        // aligned for any type); the block is ours alone until it is handed to the caller.
        unsafe {
            let node = base.add(k);
            let next = if k + 1 < n {
                base.add(k + 1).cast::<libc::ifaddrs>()
            } else {
                ptr::null_mut()
            };
            node.write(Node {
                ifa: libc::ifaddrs {
                    ifa_next: next,
                    ifa_name: ptr::null_mut(),
                    ifa_flags: e.flags,
                    ifa_addr: ptr::null_mut(),
                    ifa_netmask: ptr::null_mut(),
                    ifa_ifu: ptr::null_mut(),
                    ifa_data: ptr::null_mut(),
                },
                addr: e.addr.unwrap_or(zero),
                netmask: e.netmask.unwrap_or(zero),
                ifu: e.ifu.unwrap_or(zero),
                name: e.name,
            });
            (*node).ifa.ifa_name = addr_of_mut!((*node).name).cast::<c_char>();
            if e.addr.is_some() {
                (*node).ifa.ifa_addr = addr_of_mut!((*node).addr).cast::<libc::sockaddr>();
            }
            if e.netmask.is_some() {
                (*node).ifa.ifa_netmask = addr_of_mut!((*node).netmask).cast::<libc::sockaddr>();
            }
            if e.ifu.is_some() {
                (*node).ifa.ifa_ifu = addr_of_mut!((*node).ifu).cast::<libc::sockaddr>();
            }
        }
    }
    Ok(base.cast::<libc::ifaddrs>())
}

/// `int ioth_getifaddrs(struct ioth *stack, struct ifaddrs **ifap)`: the stack's interfaces as
/// getifaddrs(3) — an `AF_PACKET` entry per link (`sockaddr_ll` with its hardware address and
/// broadcast address), then an `AF_INET`/`AF_INET6` entry per address (address, netmask, and the
/// broadcast or point-to-point peer address in the `ifa_ifu` union); `ifa_flags` are the link's
/// `IFF_*` flags, `ifa_data` is NULL. Free the list with `ioth_freeifaddrs`.
///
/// # Safety
/// `stack` is NULL or live; `ifap` is NULL or points to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn ioth_getifaddrs(stack: *mut Ioth, ifap: *mut *mut libc::ifaddrs) -> c_int {
    guard(-1, || {
        if ifap.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: caller's contract.
        let stack = unsafe { stack_arg(stack) }?;
        let links = stack.interfaces().map_err(errno_of)?;
        let addrs = stack.addresses().map_err(errno_of)?;
        let list = build_list(entries(&links, &addrs))?;
        // SAFETY: ifap points to a writable pointer (caller's contract).
        unsafe { *ifap = list };
        Ok(0)
    })
}

/// `void ioth_freeifaddrs(struct ifaddrs *ifa)`: frees a whole list from `ioth_getifaddrs`
/// (NULL is fine).
///
/// # Safety
/// `ifa` is NULL or the head of a list returned by `ioth_getifaddrs`, not freed yet.
#[no_mangle]
pub unsafe extern "C" fn ioth_freeifaddrs(ifa: *mut libc::ifaddrs) {
    // SAFETY: the whole list is the one calloc block that starts at its head (build_list).
    unsafe { libc::free(ifa.cast::<c_void>()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(netmask(&v4, 24), "255.255.255.0".parse::<IpAddr>().unwrap());
        assert_eq!(netmask(&v4, 0), "0.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(
            netmask(&v4, 32),
            "255.255.255.255".parse::<IpAddr>().unwrap()
        );
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(
            netmask(&v6, 64),
            "ffff:ffff:ffff:ffff::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(netmask(&v6, 0), "::".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_list_is_one_block_and_walks_in_order() {
        let lo = Interface {
            index: 1,
            name: "lo".into(),
            flags: libc::IFF_UP as u32 | libc::IFF_LOOPBACK as u32,
            link_type: 772,
            mtu: 65536,
            hwaddr: vec![0; 6],
            broadcast: vec![0; 6],
            kind: None,
        };
        let a = IfAddress {
            index: 1,
            label: Some("lo".into()),
            addr: "127.0.0.1".parse().unwrap(),
            prefix_len: 8,
            peer: None,
            broadcast: None,
            flags: 0x80,
            scope: 254,
        };
        let list = build_list(entries(&[lo], &[a])).unwrap();
        let mut names = Vec::new();
        let mut p = list;
        while !p.is_null() {
            // SAFETY: p walks the list build_list just made; each node is initialised.
            unsafe {
                let name = std::ffi::CStr::from_ptr((*p).ifa_name).to_str().unwrap();
                let fam = (*(*p).ifa_addr).sa_family as c_int;
                names.push((name.to_owned(), fam, (*p).ifa_netmask.is_null()));
                p = (*p).ifa_next;
            }
        }
        assert_eq!(
            names,
            vec![
                ("lo".to_owned(), libc::AF_PACKET, true),
                ("lo".to_owned(), libc::AF_INET, false)
            ]
        );
        // SAFETY: list came from build_list and is freed once.
        unsafe { ioth_freeifaddrs(list) };
    }
}
