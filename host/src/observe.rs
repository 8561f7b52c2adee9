//! What the host can see of its own stack from outside the plug-in: the inet sockets of its
//! network namespace (the kernel's sock_diag netlink interface), its interfaces, addresses and
//! routes (rtnetlink dumps), its own socket fds and its child processes (`/proc/self`, through
//! fds opened before the sandbox). Runs in the host, on the audit thread (or the serving thread
//! for a status answer); nothing here is on the data path of a socket.
//!
//! The same dumps serve a proxied stack that answers them ([`Netlink::Plugin`]): the host then
//! sends them on `AF_NETLINK` sockets it made through the plug-in's own `socket` (smoltcp
//! emulates rtnetlink and sock_diag), so one code path reads native and proxied stacks.
//!
//! sock_diag is parsed by hand (its structures are fixed: `linux/inet_diag.h`, `linux/tcp.h`);
//! rtnetlink with `netlink-packet-route`.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::errno::Errno;
use nix::sys::socket::{
    recv, send, socket, AddressFamily as Af, MsgFlags, SockFlag, SockProtocol, SockType,
};

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `INET_DIAG_INFO`: the `tcp_info` attribute of a TCP socket.
const INET_DIAG_INFO: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;
/// Offsets in `struct tcp_info` (linux/tcp.h, checked against the C header).
const TCPI_BYTES_ACKED: usize = 120;
const TCPI_BYTES_RECEIVED: usize = 128;
const TCPI_SEGS_OUT: usize = 136;
const TCPI_SEGS_IN: usize = 140;
const TCPI_BYTES_SENT: usize = 200;
const TCPI_BYTES_RETRANS: usize = 208;

/// One inet socket of the namespace, as sock_diag shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sock {
    pub inode: u64,
    pub v6: bool,
    pub tcp: bool,
    pub state: &'static str,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// With `INET_DIAG_INFO` (the kernel's TCP sockets, a proxied stack's TCP and UDP ones).
    pub counters: Option<Counters>,
}

/// A socket's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters {
    /// Payload bytes sent (TCP on a kernel: retransmissions not counted again; on a kernel
    /// before 4.19 or a proxied stack: acknowledged by the peer).
    pub sent: u64,
    pub received: u64,
    /// Segments (UDP of a proxied stack: datagrams) out and in, where the stack counts them.
    pub packets: Option<(u64, u64)>,
}

/// Where the netlink dumps go.
pub enum Netlink {
    /// The kernel, for the host's own network namespace (a socket per look).
    Kernel,
    /// A proxied stack's `AF_NETLINK` sockets (`NETLINK_SOCK_DIAG`, `NETLINK_ROUTE`), made
    /// through the plug-in's `socket` when the stack was created (`None`: it has none).
    Plugin {
        diag: Option<OwnedFd>,
        route: Option<OwnedFd>,
    },
}

impl Netlink {
    /// The sockets of the stack, by inode.
    pub fn sockets(&self) -> io::Result<BTreeMap<u64, Sock>> {
        match self {
            Netlink::Kernel => sockets_on(&nl_socket(SockProtocol::NetlinkSockDiag)?),
            Netlink::Plugin { diag: Some(fd), .. } => sockets_on(fd),
            Netlink::Plugin { diag: None, .. } => Err(io::Error::from_raw_os_error(libc::ENOSYS)),
        }
    }

    /// The interfaces of the stack, and its routes.
    pub fn interfaces(&self) -> io::Result<(BTreeMap<u32, Iface>, Vec<Route>)> {
        match self {
            Netlink::Kernel => interfaces_on(&nl_socket(SockProtocol::NetlinkRoute)?),
            Netlink::Plugin {
                route: Some(fd), ..
            } => interfaces_on(fd),
            Netlink::Plugin { route: None, .. } => Err(io::Error::from_raw_os_error(libc::ENOSYS)),
        }
    }
}

/// TCP states by number (linux/tcp_states.h); UDP uses 7 (unconnected) and 1 (connected).
fn state_name(tcp: bool, s: u8) -> &'static str {
    match (tcp, s) {
        (false, 1) => "connected",
        (false, 7) => "unconnected",
        (_, 1) => "ESTABLISHED",
        (_, 2) => "SYN_SENT",
        (_, 3) => "SYN_RECV",
        (_, 4) => "FIN_WAIT1",
        (_, 5) => "FIN_WAIT2",
        (_, 6) => "TIME_WAIT",
        (_, 7) => "CLOSE",
        (_, 8) => "CLOSE_WAIT",
        (_, 9) => "LAST_ACK",
        (_, 10) => "LISTEN",
        (_, 11) => "CLOSING",
        _ => "?",
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// A netlink socket of `proto` (`NETLINK_SOCK_DIAG`, `NETLINK_ROUTE`) with a receive timeout.
fn nl_socket(proto: SockProtocol) -> io::Result<OwnedFd> {
    let fd = socket(Af::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, proto)?;
    let tv = nix::sys::time::TimeVal::new(2, 0);
    nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::ReceiveTimeout, &tv)?;
    Ok(fd)
}

/// A netlink socket of `protocol` made through the plug-in's own `socket`, with a receive
/// timeout: the application's end of a pair an fd-data plug-in pumps (smoltcp answers
/// `NETLINK_ROUTE` and `NETLINK_SOCK_DIAG` on it). `None` for other plug-ins, or if it refuses.
/// The host keeps it for its life (the plug-in's `close` is never called on it).
pub fn plugin_netlink(p: &crate::plugin::Plugin, protocol: i32) -> Option<OwnedFd> {
    if p.path() != crate::plugin::DataPath::FdData {
        return None;
    }
    let fd = p
        .calls()
        .socket_fd(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
        .ok()?;
    let tv = nix::sys::time::TimeVal::new(2, 0);
    nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::ReceiveTimeout, &tv).ok()?;
    Some(fd)
}

/// Sends `msg` (a whole netlink message) and collects the payloads (header stripped, with their
/// type) of every message of the dump up to `NLMSG_DONE`.
fn dump_raw(fd: &OwnedFd, msg: &[u8]) -> io::Result<Vec<(u16, Vec<u8>)>> {
    // What an earlier dump left (one that timed out) is not this one's.
    let mut drain = [0u8; 512];
    while recv(fd.as_raw_fd(), &mut drain, MsgFlags::MSG_DONTWAIT).is_ok_and(|n| n > 0) {}
    send(fd.as_raw_fd(), msg, MsgFlags::empty())?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    // Bounded: a dump of more than 100k datagrams is not a namespace we can audit.
    for _ in 0..100_000 {
        let n = match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut at = 0;
        while at + 16 <= n {
            let len = u32_at(&buf, at).unwrap_or(0) as usize;
            let ty = u16_at(&buf, at + 4).unwrap_or(0);
            if len < 16 || at + len > n {
                return Err(io::Error::from_raw_os_error(libc::EPROTO));
            }
            match ty {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let e = u32_at(&buf, at + 16).map_or(libc::EPROTO, |e| -(e as i32));
                    return Err(io::Error::from_raw_os_error(e));
                }
                _ => out.push((ty, buf[at..at + len].to_vec())),
            }
            at += (len + 3) & !3;
        }
    }
    Err(io::Error::from_raw_os_error(libc::E2BIG))
}

fn addr(v6: bool, b: &[u8], port: u16) -> SocketAddr {
    let ip = if v6 {
        let mut o = [0u8; 16];
        o.copy_from_slice(&b[..16]);
        IpAddr::V6(Ipv6Addr::from(o))
    } else {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    };
    SocketAddr::new(ip, port)
}

/// One `inet_diag_msg` (header stripped by the caller) as a [`Sock`].
fn parse_sock(tcp: bool, m: &[u8]) -> Option<Sock> {
    if m.len() < 72 {
        return None;
    }
    let v6 = i32::from(m[0]) == libc::AF_INET6;
    let sport = u16::from_be_bytes([m[4], m[5]]);
    let dport = u16::from_be_bytes([m[6], m[7]]);
    let local = addr(v6, &m[8..24], sport);
    let peer = addr(v6, &m[24..40], dport);
    let inode = u64::from(u32_at(m, 68)?);
    let mut counters = None;
    let mut at = 72;
    while at + 4 <= m.len() {
        let len = usize::from(u16_at(m, at)?);
        let ty = u16_at(m, at + 2)?;
        if len < 4 || at + len > m.len() {
            break;
        }
        // The kernel gives it for TCP only; a proxied stack for UDP too (docs/audit.md).
        if ty == INET_DIAG_INFO {
            let info = &m[at + 4..at + len];
            counters = Some(Counters {
                sent: match (
                    u64_at(info, TCPI_BYTES_SENT),
                    u64_at(info, TCPI_BYTES_RETRANS),
                ) {
                    (Some(s), Some(r)) => s.saturating_sub(r),
                    // A kernel before 4.19, a proxied stack: acknowledged bytes.
                    _ => u64_at(info, TCPI_BYTES_ACKED).unwrap_or(0),
                },
                received: u64_at(info, TCPI_BYTES_RECEIVED).unwrap_or(0),
                packets: match (u32_at(info, TCPI_SEGS_OUT), u32_at(info, TCPI_SEGS_IN)) {
                    (Some(o), Some(i)) => Some((u64::from(o), u64::from(i))),
                    _ => None,
                },
            });
        }
        at += (len + 3) & !3;
    }
    Some(Sock {
        inode,
        v6,
        tcp,
        state: state_name(tcp, m[1]),
        local,
        peer,
        counters,
    })
}

/// Every TCP and UDP socket, v4 and v6, that sock_diag on `fd` lists with an inode (a socket
/// its owner closed has none: it is gone for the audit), by inode.
fn sockets_on(fd: &OwnedFd) -> io::Result<BTreeMap<u64, Sock>> {
    let mut out = BTreeMap::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        for proto in [libc::IPPROTO_TCP, libc::IPPROTO_UDP] {
            // nlmsghdr (16) + inet_diag_req_v2 (56).
            let mut m = vec![0u8; 16 + 56];
            m[0..4].copy_from_slice(&(72u32).to_ne_bytes());
            m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
            m[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
            m[16] = family as u8;
            m[17] = proto as u8;
            m[18] = 1 << (INET_DIAG_INFO - 1);
            m[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
            let tcp = proto == libc::IPPROTO_TCP;
            match dump_raw(fd, &m) {
                Ok(msgs) => {
                    for (_, b) in msgs {
                        if let Some(s) = parse_sock(tcp, &b[16..]) {
                            if s.inode != 0 {
                                out.insert(s.inode, s);
                            }
                        }
                    }
                }
                // No IPv6 in this kernel or namespace: nothing to list.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

/// One interface: its identity, its addresses and its counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Iface {
    pub index: u32,
    pub name: String,
    pub up: bool,
    pub mtu: u32,
    pub mac: String,
    pub addresses: Vec<String>,
    /// rx/tx bytes, rx/tx packets, rx/tx dropped, rx/tx errors (IFLA_STATS64).
    pub counters: [u64; 8],
}

/// One route of the main table: `dst/len via gw dev N`.
pub type Route = String;

fn rt_dump(fd: &OwnedFd, msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
    let mut hdr = NetlinkHeader::default();
    hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
    hdr.sequence_number = 1;
    let mut nl = NetlinkMessage::new(hdr, NetlinkPayload::from(msg));
    nl.finalize();
    let mut out = vec![0u8; nl.buffer_len()];
    nl.serialize(&mut out);
    let mut msgs = Vec::new();
    for (_, b) in dump_raw(fd, &out)? {
        if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&b) {
            if let NetlinkPayload::InnerMessage(m) = m.payload {
                msgs.push(m);
            }
        }
    }
    Ok(msgs)
}

fn mac_text(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The interfaces rtnetlink on `fd` lists, with their addresses, and the routes.
fn interfaces_on(fd: &OwnedFd) -> io::Result<(BTreeMap<u32, Iface>, Vec<Route>)> {
    let mut ifs = BTreeMap::new();
    for m in rt_dump(fd, RouteNetlinkMessage::GetLink(LinkMessage::default()))? {
        let RouteNetlinkMessage::NewLink(l) = m else {
            continue;
        };
        let mut i = Iface {
            index: l.header.index,
            up: l.header.flags.contains(LinkFlags::Up),
            ..Iface::default()
        };
        for a in l.attributes {
            match a {
                LinkAttribute::IfName(n) => i.name = n,
                LinkAttribute::Mtu(v) => i.mtu = v,
                LinkAttribute::Address(v) => i.mac = mac_text(&v),
                LinkAttribute::Stats64(s) => {
                    i.counters = [
                        s.rx_bytes,
                        s.tx_bytes,
                        s.rx_packets,
                        s.tx_packets,
                        s.rx_dropped,
                        s.tx_dropped,
                        s.rx_errors,
                        s.tx_errors,
                    ]
                }
                _ => {}
            }
        }
        ifs.insert(i.index, i);
    }
    for m in rt_dump(
        fd,
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
    )? {
        let RouteNetlinkMessage::NewAddress(a) = m else {
            continue;
        };
        let mut ip = None;
        for at in &a.attributes {
            match at {
                AddressAttribute::Local(x) => ip = Some(*x),
                AddressAttribute::Address(x) if ip.is_none() => ip = Some(*x),
                _ => {}
            }
        }
        if let (Some(ip), Some(i)) = (ip, ifs.get_mut(&a.header.index)) {
            i.addresses.push(format!("{ip}/{}", a.header.prefix_len));
        }
    }
    let mut routes = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut q = RouteMessage::default();
        q.header.address_family = family;
        for m in rt_dump(fd, RouteNetlinkMessage::GetRoute(q))? {
            let RouteNetlinkMessage::NewRoute(r) = m else {
                continue;
            };
            let (mut dst, mut gw, mut oif, mut table) =
                (None, None, None, u32::from(r.header.table));
            for a in &r.attributes {
                match a {
                    RouteAttribute::Destination(d) => dst = route_ip(d),
                    RouteAttribute::Gateway(g) => gw = route_ip(g),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    RouteAttribute::Table(t) => table = *t,
                    _ => {}
                }
            }
            // The main table only (local and multicast routes are the kernel's own).
            if table != 254 {
                continue;
            }
            let dst = match dst {
                Some(d) => format!("{d}/{}", r.header.destination_prefix_length),
                None => "default".into(),
            };
            let mut t = dst;
            if let Some(g) = gw {
                t.push_str(&format!(" via {g}"));
            }
            if let Some(i) = oif.and_then(|i| ifs.get(&i)) {
                t.push_str(&format!(" dev {}", i.name));
            }
            routes.push(t);
        }
    }
    Ok((ifs, routes))
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(x) => Some(IpAddr::V4(*x)),
        RouteAddress::Inet6(x) => Some(IpAddr::V6(*x)),
        _ => None,
    }
}

/// `/proc/self/fd`, opened before the sandbox (which then refuses to open anything under
/// `/proc` but the host's own task directory; reading an fd already open is allowed).
pub struct ProcView {
    fd_dir: Option<nix::dir::Dir>,
}

impl ProcView {
    /// Opens the view; what cannot be opened is simply not observed.
    pub fn open() -> ProcView {
        use nix::fcntl::OFlag;
        use nix::sys::stat::Mode;
        let fd_dir = nix::dir::Dir::open(
            "/proc/self/fd",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok();
        ProcView { fd_dir }
    }

    /// The inodes of the sockets in the host's fd table.
    pub fn socket_inodes(&mut self) -> Vec<u64> {
        let Some(d) = self.fd_dir.as_mut() else {
            return Vec::new();
        };
        let names: Vec<std::ffi::CString> = d
            .iter()
            .flatten()
            .map(|e| e.file_name().to_owned())
            .collect();
        let mut out = Vec::new();
        for n in names {
            if let Ok(t) = nix::fcntl::readlinkat(&*d, n.as_c_str()) {
                let t = t.to_string_lossy();
                if let Some(i) = t
                    .strip_prefix("socket:[")
                    .and_then(|r| r.strip_suffix(']'))
                    .and_then(|r| r.parse().ok())
                {
                    out.push(i);
                }
            }
        }
        out
    }

    /// The pids of the host's child processes, of every thread (the sandbox leaves the host's
    /// own `/proc/<pid>/task` readable).
    pub fn children(&mut self) -> Vec<u32> {
        let mut out = Vec::new();
        let task = format!("/proc/{}/task", std::process::id());
        for t in std::fs::read_dir(task).into_iter().flatten().flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// [`ProcView::children`], each with the program it runs (`/proc/<pid>/exe`). None until it
    /// has run one: a child that has not called `execve` is a copy of the host, not dumpable,
    /// so its link cannot be read. Reading a link is not an access Landlock governs, and the
    /// child is in the host's domain.
    pub fn programs(&mut self) -> BTreeMap<u32, Option<String>> {
        let program = |pid: u32| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        };
        self.children()
            .into_iter()
            .map(|p| (p, program(p)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_its_own_tcp_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut v = ProcView::open();
        let mine = v.socket_inodes();
        let all = Netlink::Kernel.sockets().unwrap();
        let s = all
            .values()
            .find(|s| s.tcp && s.local.port() == port && s.state == "LISTEN")
            .expect("the listener");
        assert!(mine.contains(&s.inode), "{s:?} {mine:?}");
        let (ifs, _) = Netlink::Kernel.interfaces().unwrap();
        assert!(ifs.values().any(|i| i.name == "lo"));
    }
}
