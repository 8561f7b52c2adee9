//! The netlink configuration functions of `ioth.h` (nlinline's, with a leading stack argument)
//! and `ioth_getifaddrs`/`ioth_freeifaddrs`.
//!
//! Runs in the application. Each function is a thin C skin over the [`Stack`] methods of
//! `crate::netlink`: it reads the C arguments, calls the typed method and returns 0 (or a
//! value), or -1 with `errno` set — the stack's own errno for a NACK, `EINVAL` for an argument
//! refused before sending. A NULL stack means the default stack.
//!
//! Addresses are `void *` to 4 (`AF_INET`) or 16 (`AF_INET6`) bytes in network byte order; any
//! other family is `EINVAL`. A prefix length may carry nlinline's `nl_addrdata2prefix` /
//! `nl_routedata2prefix` packing: bits 0–7 the prefix length, bits 8–15 the address flags
//! (`IFA_F_*`) or route type (`RTN_*`), bits 16–23 the scope (`RT_SCOPE_*`).
//!
//! `ioth_getifaddrs` returns a glibc-compatible `struct ifaddrs` list in **one** `malloc`ed block
//! (nodes, names and sockaddrs together, the head at its start), as glibc does: so both
//! `ioth_freeifaddrs` and glibc's `freeifaddrs` free it, and it must be freed from its head.

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ptr::{self, addr_of_mut};

use super::{errno_of, guard, stack_arg, str_arg, Ioth};
use crate::{IfAddress, Interface};

/// Reads an address of `family` at `p`.
///
/// # Safety
/// `p` is NULL or points to at least 4 (`AF_INET`) or 16 (`AF_INET6`) readable bytes.
unsafe fn ip_arg(family: c_int, p: *const c_void) -> Result<IpAddr, c_int> {
    if p.is_null() {
        return Err(libc::EINVAL);
    }
    match family {
        libc::AF_INET => {
            // SAFETY: per the contract, p points to 4 readable bytes; no alignment is assumed.
            let b = unsafe { ptr::read_unaligned(p.cast::<[u8; 4]>()) };
            Ok(IpAddr::V4(Ipv4Addr::from(b)))
        }
        libc::AF_INET6 => {
            // SAFETY: per the contract, p points to 16 readable bytes; no alignment is assumed.
            let b = unsafe { ptr::read_unaligned(p.cast::<[u8; 16]>()) };
            Ok(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => Err(libc::EINVAL),
    }
}

/// Splits nlinline's packed prefix argument into (prefix length, flags or type, scope).
fn unpack_prefix(packed: c_int) -> Result<(u8, u8, u8), c_int> {
    if !(0..1 << 24).contains(&packed) {
        return Err(libc::EINVAL);
    }
    Ok((
        (packed & 0xff) as u8,
        ((packed >> 8) & 0xff) as u8,
        ((packed >> 16) & 0xff) as u8,
    ))
}

/// `int ioth_if_nametoindex(struct ioth *stack, const char *ifname)`: the index, or -1.
///
/// # Safety
/// `stack` is NULL or live; `ifname` is NULL or a C string.
#[no_mangle]
pub unsafe extern "C" fn ioth_if_nametoindex(stack: *mut Ioth, ifname: *const c_char) -> c_int {
    guard(-1, || {
        // SAFETY: caller's contract.
        let name = unsafe { str_arg(ifname) }?.ok_or(libc::EINVAL)?;
        // SAFETY: caller's contract.
        let stack = unsafe { stack_arg(stack) }?;
        let i = stack.if_nametoindex(name).map_err(errno_of)?;
        c_int::try_from(i).map_err(|_| libc::EOVERFLOW)
    })
}

/// `int ioth_linksetupdown(struct ioth *stack, unsigned int ifindex, int updown)`.
///
/// # Safety
/// `stack` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ioth_linksetupdown(
    stack: *mut Ioth,
    ifindex: c_uint,
    updown: c_int,
) -> c_int {
    guard(-1, || {
        // SAFETY: caller's contract.
        let stack = unsafe { stack_arg(stack) }?;
        stack.link_set_up(ifindex, updown != 0).map_err(errno_of)?;
        Ok(0)
    })
}

/// `int ioth_ipaddr_add(struct ioth *stack, int family, void *addr, int prefixlen,
/// unsigned int ifindex)`.
///
/// # Safety
/// `stack` is NULL or live; `addr` as in the module doc.
#[no_mangle]
pub unsafe extern "C" fn ioth_ipaddr_add(
    stack: *mut Ioth,
    family: c_int,
    addr: *mut c_void,
    prefixlen: c_int,
    ifindex: c_uint,
) -> c_int {
    guard(-1, || {
        // SAFETY: caller's contract.
        let ip = unsafe { ip_arg(family, addr) }?;
        let (prefix, flags, scope) = unpack_prefix(prefixlen)?;
        // SAFETY: caller's contract.
        let stack = unsafe { stack_arg(stack) }?;
        stack
            .ipaddr_add_flags(ip, prefix, ifindex, u32::from(flags), scope)
            .map_err(errno_of)?;
        Ok(0)
    })
}

/// `int ioth_ipaddr_del(struct ioth *stack, int family, void *addr, int prefixlen,
/// unsigned int ifindex)`.
///
/// # Safety
/// `stack` is NULL or live; `addr` as in the module doc.
#[no_mangle]
pub unsafe extern "C" fn ioth_ipaddr_del(
    stack: *mut Ioth,
    family: c_int,
    addr: *mut c_void,
    prefixlen: c_int,
    ifindex: c_uint,
) -> c_int {
    guard(-1, || {
        // SAFETY: caller's contract.
        let ip = unsafe { ip_arg(family, addr) }?;
        let (prefix, _, _) = unpack_prefix(prefixlen)?;
        // SAFETY: caller's contract.
        let stack = unsafe { stack_arg(stack) }?;
        stack.ipaddr_del(ip, prefix, ifindex).map_err(errno_of)?;
        Ok(0)
    })
}

/// Common part of `ioth_iproute_add`/`del`.
///
/// # Safety
/// `stack` is NULL or live; `dst` and `gw` are NULL or addresses as in the module doc.
unsafe fn iproute(
    add: bool,
    stack: *mut Ioth,
    family: c_int,
    dst: *mut c_void,
    dst_prefixlen: c_int,
    gw: *mut c_void,
    ifindex: c_uint,
) -> Result<c_int, c_int> {
    if family != libc::AF_INET && family != libc::AF_INET6 {
        return Err(libc::EINVAL);
    }
    let (prefix, kind, scope) = unpack_prefix(dst_prefixlen)?;
    let dst = if dst.is_null() {
        None
    } else {
        // SAFETY: caller's contract.
        Some((unsafe { ip_arg(family, dst) }?, prefix))
    };
    let gw = if gw.is_null() {
        None
    } else {
        // SAFETY: caller's contract.
        Some(unsafe { ip_arg(family, gw) }?)
    };
    if dst.is_none() && gw.is_none() && ifindex == 0 {
        return Err(libc::EINVAL);
    }
    let ifindex = (ifindex != 0).then_some(ifindex);
    // SAFETY: caller's contract.
    let stack = unsafe { stack_arg(stack) }?;
    let is_v6 = family == libc::AF_INET6;
    stack
        .iproute_ext(add, Some(is_v6), dst, gw, ifindex, kind, scope)
        .map_err(errno_of)?;
    Ok(0)
}

/// `int ioth_iproute_add(struct ioth *stack, int family, void *dst_addr, int dst_prefixlen,
/// void *gw_addr, unsigned int ifindex)`: `dst_addr` NULL = default route; `gw_addr` NULL = no
/// gateway (an on-link route via `ifindex`); `ifindex` 0 = none.
///
/// # Safety
/// `stack` is NULL or live; `dst_addr` and `gw_addr` are NULL or addresses of `family`.
#[no_mangle]
pub unsafe extern "C" fn ioth_iproute_add(
    stack: *mut Ioth,
    family: c_int,
    dst_addr: *mut c_void,
    dst_prefixlen: c_int,
    gw_addr: *mut c_void,
    ifindex: c_uint,
) -> c_int {
    // SAFETY: caller's contract.
    guard(-1, || unsafe {
        iproute(
            true,
            stack,
            family,
            dst_addr,
            dst_prefixlen,
            gw_addr,
            ifindex,
        )
    })
}

/// `int ioth_iproute_del(struct ioth *stack, int family, void *dst_addr, int dst_prefixlen,
/// void *gw_addr, unsigned int ifindex)`: arguments as `ioth_iproute_add`.
///
/// # Safety
/// As `ioth_iproute_add`.
#[no_mangle]
pub unsafe extern "C" fn ioth_iproute_del(
    stack: *mut Ioth,
    family: c_int,
    dst_addr: *mut c_void,
    dst_prefixlen: c_int,
    gw_addr: *mut c_void,
    ifindex: c_uint,
) -> c_int {
    // SAFETY: caller's contract.
    guard(-1, || unsafe {
        iproute(
            false,
            stack,
            family,
            dst_addr,
            dst_prefixlen,
            gw_addr,
            ifindex,
        )
    })
}

/// `int ioth_iplink_add(struct ioth *stack, const char *ifname, unsigned int ifindex,
/// const char *type, const char *data)`: `ifname` NULL lets the stack name the link; `ifindex`
/// 0 lets it pick the index, `(unsigned)-1` too and then the new index is returned (else 0);
/// `data` is the peer's name for `veth`, else passed as a string.
///
/// # Safety
/// `stack` is NULL or live; the strings are NULL or C strings.
#[no_mangle]
pub unsafe extern "C" fn ioth_iplink_add(
    stack: *mut Ioth,
    ifname: *const c_char,
    ifindex: c_uint,
    ty: *const c_char,
    data: *const c_char,
) -> c_int {
    guard(-1, || {
        // SAFETY: caller's contract (each).
        let (name, ty, data) = unsafe { (str_arg(ifname)?, str_arg(ty)?, str_arg(data)?) };
        let ty = ty.ok_or(libc::EINVAL)?;
        let want_index = ifindex == c_uint::MAX;
        let index = (ifindex != 0 && !want_index).then_some(ifindex);
        // SAFETY: caller's contract.
        let stack = unsafe { stack_arg(stack) }?;
        let new = stack.iplink_add(name, index, ty, data).map_err(errno_of)?;
        Ok(if want_index {
            c_int::try_from(new).unwrap_or(0)
        } else {
            0
        })
    })
}

/// `int ioth_iplink_del(struct ioth *stack, const char *ifname, unsigned int ifindex)`: by
/// name, by index (0 = none), or both.
///
/// # Safety
/// `stack` is NULL or live; `ifname` is NULL or a C string.
#[no_mangle]
pub unsafe extern "C" fn ioth_iplink_del(
    stack: *mut Ioth,
    ifname: *const c_char,
    ifindex: c_uint,
) -> c_int {
    guard(-1, || {
        // SAFETY: caller's contract.
        let name = unsafe { str_arg(ifname) }?;
        // SAFETY: caller's contract.
        let stack = unsafe { stack_arg(stack) }?;
        stack
            .iplink_del(name, (ifindex != 0).then_some(ifindex))
            .map_err(errno_of)?;
        Ok(0)
    })
}

/// `int ioth_linksetaddr(struct ioth *stack, unsigned int ifindex, void *macaddr)`: 6 bytes.
///
/// # Safety
/// `stack` is NULL or live; `macaddr` is NULL or points to 6 readable bytes.
#[no_mangle]
pub unsafe extern "C" fn ioth_linksetaddr(
    stack: *mut Ioth,
    ifindex: c_uint,
    macaddr: *mut c_void,
) -> c_int {
    guard(-1, || {
        if macaddr.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: macaddr points to 6 readable bytes (caller's contract); no alignment assumed.
        let mac = unsafe { ptr::read_unaligned(macaddr.cast::<[u8; 6]>()) };
        // SAFETY: caller's contract.
        let stack = unsafe { stack_arg(stack) }?;
        stack.link_set_mac(ifindex, mac).map_err(errno_of)?;
        Ok(0)
    })
}

/// `int ioth_linkgetaddr(struct ioth *stack, unsigned int ifindex, void *macaddr)`: writes 6
/// bytes.
///
/// # Safety
/// `stack` is NULL or live; `macaddr` is NULL or points to 6 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn ioth_linkgetaddr(
    stack: *mut Ioth,
    ifindex: c_uint,
    macaddr: *mut c_void,
) -> c_int {
    guard(-1, || {
        if macaddr.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: caller's contract.
        let stack = unsafe { stack_arg(stack) }?;
        let mac = stack.link_get_mac(ifindex).map_err(errno_of)?;
        // SAFETY: macaddr points to 6 writable bytes (caller's contract); no alignment assumed.
        unsafe { ptr::write_unaligned(macaddr.cast::<[u8; 6]>(), mac) };
        Ok(0)
    })
}

/// `int ioth_linksetmtu(struct ioth *stack, unsigned int ifindex, unsigned int mtu)`.
///
/// # Safety
/// `stack` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ioth_linksetmtu(stack: *mut Ioth, ifindex: c_uint, mtu: c_uint) -> c_int {
    guard(-1, || {
        // SAFETY: caller's contract.
        let stack = unsafe { stack_arg(stack) }?;
        stack.link_set_mtu(ifindex, mtu).map_err(errno_of)?;
        Ok(0)
    })
}

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
    fn packed_prefixes_unpack_like_nlinline() {
        assert_eq!(unpack_prefix(24), Ok((24, 0, 0)));
        assert_eq!(unpack_prefix(64 | (2 << 8)), Ok((64, 2, 0)));
        assert_eq!(unpack_prefix(8 | (1 << 8) | (253 << 16)), Ok((8, 1, 253)));
        assert_eq!(unpack_prefix(-1), Err(libc::EINVAL));
        assert_eq!(unpack_prefix(1 << 24), Err(libc::EINVAL));
    }

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
