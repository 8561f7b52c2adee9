//! A configuration server and a configuration client for the tests.
//!
//! [`Server`]: `dnsmasq` (Debian `dnsmasq-base`) in a network namespace the test creates, on a
//! tap device joined to the test's VDE switch by `vde_plug vde://<switch> tap://<tap>` run inside
//! that namespace. It serves DHCPv4 ([`Server::V4_RANGE`]), DHCPv6 and router advertisements
//! for [`Server::V6_PREFIX`], on addresses that exist only inside that namespace. Its lease and
//! pid files live in a temp dir. Drop stops dnsmasq and vde_plug by pid and deletes the
//! namespace and the dir (on failure too).
//!
//! The client is written the way configuration clients (iothconf, udhcpc, …) are, on ioth
//! sockets, the same code for every stack: DHCPv4 on an `AF_PACKET` `SOCK_DGRAM` socket for
//! `ETH_P_IP` (the client builds the IP and UDP headers itself: it has no address yet),
//! broadcast to `ff:ff:ff:ff:ff:ff` ([`dhcpv4`]); router discovery on a raw ICMPv6 socket
//! ([`router_discovery`]); DHCPv6 on a UDP socket of port 546 to `ff02::1:2`
//! ([`dhcpv6`]). [`nl_request`]/[`nl_dump`] speak rtnetlink directly, for what the ioth
//! netlink calls do not say (address lifetimes). Every wait is bounded.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ioth::{Socket, Stack};
use nix::poll::PollFlags;
use socket2::SockAddr;

use crate::netns::NetNs;
use crate::sock::wait_for;
use crate::vde::{Switch, TempDir};

/// How long one exchange (a request and its answer) may take before the client retries.
const ANSWER: Duration = Duration::from_secs(3);
/// Attempts per exchange.
const TRIES: usize = 4;
/// How long the server's addresses may take to leave DAD, and dnsmasq to start.
const SETTLE: Duration = Duration::from_secs(15);

/// `ETH_P_IP`.
pub const ETH_P_IP: u16 = 0x0800;
/// `sizeof(struct sockaddr_ll)`.
pub const SLL_LEN: usize = 20;

/// dnsmasq serving the switch from a namespace of its own (see the module doc).
#[derive(Debug)]
pub struct Server {
    dnsmasq: Option<Child>,
    plug: Option<Child>,
    ns: Option<NetNs>,
    dir: TempDir,
}

impl Server {
    /// The server's own IPv4 address (/24): also the router it announces.
    pub const V4: &'static str = "10.9.0.1";
    /// First and last address of its DHCPv4 range.
    pub const V4_RANGE: (&'static str, &'static str) = ("10.9.0.100", "10.9.0.150");
    /// Its IPv6 address (/64).
    pub const V6: &'static str = "fd09::1";
    /// The prefix it announces (/64) and serves DHCPv6 addresses from.
    pub const V6_PREFIX: &'static str = "fd09::";
    /// First and last address of its DHCPv6 range.
    pub const V6_RANGE: (&'static str, &'static str) = ("fd09::100", "fd09::1ff");
    /// The name server its DHCPv4 answers announce (none runs there).
    pub const DNS: &'static str = "10.9.0.53";
    /// The tap device in its namespace.
    pub const TAP: &'static str = "tap0";

    /// Starts it on `sw`. Panics on failure (what was started is stopped).
    pub fn start(sw: &Switch) -> Server {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = TempDir::new("dnsmasq");
        let ns = NetNs::add(&format!("ioth-dhcp-{}-{n}", std::process::id()));
        let mut s = Server {
            dnsmasq: None,
            plug: None,
            ns: None,
            dir,
        };
        let tap = Self::TAP;
        ns.ip(&["tuntap", "add", "dev", tap, "mode", "tap"]);
        ns.ip(&["link", "set", "lo", "up"]);
        let plug = Command::new("ip")
            .args(["netns", "exec", ns.name(), "vde_plug"])
            .arg(sw.vnl())
            .arg(format!("tap://{tap}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("vde_plug (Debian package vdeplug)");
        s.plug = Some(plug);
        let name = ns.name().to_owned();
        s.ns = Some(ns);
        let ns = s.ns.as_ref().unwrap();
        ns.ip(&["addr", "add", &format!("{}/24", Self::V4), "dev", tap]);
        ns.ip(&["addr", "add", &format!("{}/64", Self::V6), "dev", tap]);
        ns.ip(&["link", "set", tap, "up"]);
        // The carrier comes when vde_plug opens the tap; RAs need a link-local address and
        // every address done with DAD.
        let deadline = Instant::now() + SETTLE;
        loop {
            let all = ns.ip(&["-6", "addr", "show", "dev", tap]);
            let tentative = ns.ip(&["-6", "addr", "show", "dev", tap, "tentative"]);
            if all.contains("fe80:") && all.contains(Self::V6) && tentative.trim().is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the server's addresses are still tentative: {all}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let d = s.dir.path();
        let child = Command::new("ip")
            .args(["netns", "exec", &name, "dnsmasq", "--keep-in-foreground"])
            .args([
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--port=0",
                "--user=root",
                "--bind-interfaces",
                "--log-dhcp",
            ])
            .arg(format!("--interface={tap}"))
            .arg(format!("--pid-file={}", d.join("pid").display()))
            .arg(format!("--dhcp-leasefile={}", d.join("leases").display()))
            .arg(format!("--log-facility={}", d.join("log").display()))
            .arg(format!(
                "--dhcp-range={},{},255.255.255.0,1h",
                Self::V4_RANGE.0,
                Self::V4_RANGE.1
            ))
            .arg(format!(
                "--dhcp-range={},{},64,1h",
                Self::V6_RANGE.0,
                Self::V6_RANGE.1
            ))
            .arg(format!("--dhcp-option=option:router,{}", Self::V4))
            .arg(format!("--dhcp-option=option:dns-server,{}", Self::DNS))
            .arg("--enable-ra")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("dnsmasq (Debian package dnsmasq-base, see tests/scripts/deps.sh)");
        s.dnsmasq = Some(child);
        // Ready once it wrote its pid file.
        let deadline = Instant::now() + SETTLE;
        while !d.join("pid").exists() {
            if let Some(Ok(Some(st))) = s.dnsmasq.as_mut().map(|c| c.try_wait()) {
                panic!("dnsmasq exited at start: {st}; log: {}", s.log());
            }
            assert!(Instant::now() < deadline, "dnsmasq did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    /// dnsmasq's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// The lease file's contents.
    pub fn leases(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("leases")).unwrap_or_default()
    }

    /// Its namespace.
    pub fn ns(&self) -> &NetNs {
        self.ns.as_ref().expect("namespace")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for c in [self.dnsmasq.take(), self.plug.take()]
            .into_iter()
            .flatten()
        {
            let mut c = c;
            // Child::kill signals this very pid; wait reaps it.
            let _ = c.kill();
            let _ = c.wait();
        }
        self.ns.take();
    }
}

/// A `sockaddr_ll` (20 bytes) for interface `ifindex`, protocol `proto` (host order) and
/// hardware address `mac`.
pub fn sll(ifindex: u32, proto: u16, mac: Option<[u8; 6]>) -> SockAddr {
    let mut b = [0u8; SLL_LEN];
    b[..2].copy_from_slice(&(libc::AF_PACKET as u16).to_ne_bytes());
    b[2..4].copy_from_slice(&proto.to_be_bytes());
    b[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    if let Some(m) = mac {
        b[11] = 6;
        b[12..18].copy_from_slice(&m);
    }
    sockaddr(&b)
}

/// Raw `sockaddr` bytes as a [`SockAddr`].
pub fn sockaddr(b: &[u8]) -> SockAddr {
    assert!(b.len() <= size_of::<libc::sockaddr_storage>());
    // SAFETY: try_init hands a zeroed sockaddr_storage and its length; b.len() bytes (checked
    // to fit) are written and the length set to match.
    let ((), a) = unsafe {
        SockAddr::try_init(|storage, len| {
            std::ptr::copy_nonoverlapping(b.as_ptr(), storage.cast::<u8>(), b.len());
            *len = b.len() as libc::socklen_t;
            Ok(())
        })
    }
    .expect("sockaddr");
    a
}

/// The bytes of a [`SockAddr`].
pub fn bytes(a: &SockAddr) -> Vec<u8> {
    // SAFETY: a SockAddr's first len() bytes are its initialised address.
    unsafe { std::slice::from_raw_parts(a.as_ptr().cast::<u8>(), a.len() as usize) }.to_vec()
}

/// A `sockaddr_ll`'s fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sll {
    /// `sll_protocol` (host order).
    pub protocol: u16,
    /// `sll_ifindex`.
    pub ifindex: i32,
    /// `sll_hatype`.
    pub hatype: u16,
    /// `sll_pkttype`.
    pub pkttype: u8,
    /// `sll_halen`.
    pub halen: u8,
    /// The first 6 bytes of `sll_addr`.
    pub addr: [u8; 6],
}

impl Sll {
    /// The fields of `a`; panics if it is not a `sockaddr_ll` of at least 18 bytes.
    pub fn of(a: &SockAddr) -> Sll {
        let b = bytes(a);
        assert!(b.len() >= 18, "short sockaddr_ll: {b:?}");
        assert_eq!(i32::from(u16::from_ne_bytes([b[0], b[1]])), libc::AF_PACKET);
        Sll {
            protocol: u16::from_be_bytes([b[2], b[3]]),
            ifindex: i32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            hatype: u16::from_ne_bytes([b[8], b[9]]),
            pkttype: b[10],
            halen: b[11],
            addr: b[12..18].try_into().unwrap(),
        }
    }
}

/// Receives one datagram within `bound` (`None` if none came).
pub fn recv_within(s: &Socket, buf: &mut [u8], bound: Duration) -> Option<(usize, SockAddr)> {
    if !wait_for(s.as_fd(), PollFlags::POLLIN, bound).contains(PollFlags::POLLIN) {
        return None;
    }
    Some(s.recv_from_sockaddr(buf).expect("recvfrom"))
}

/// What a DHCPv4 exchange gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease4 {
    /// The leased address.
    pub addr: Ipv4Addr,
    /// Its prefix length (from the subnet mask).
    pub prefix: u8,
    /// The router option.
    pub router: Option<Ipv4Addr>,
    /// The server identifier.
    pub server: Ipv4Addr,
    /// The lease time, seconds.
    pub lease_secs: u32,
    /// The `sockaddr_ll` the ACK came from.
    pub from: Sll,
}

const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const DHCPDISCOVER: u8 = 1;
const DHCPOFFER: u8 = 2;
const DHCPREQUEST: u8 = 3;
const DHCPACK: u8 = 5;
const DHCPNAK: u8 = 6;
const MAGIC: [u8; 4] = [99, 130, 83, 99];

fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in b.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A DHCP message from the client in an IPv4 + UDP packet from 0.0.0.0:68 to
/// 255.255.255.255:67.
fn dhcp_packet(kind: u8, xid: u32, mac: [u8; 6], want: Option<(Ipv4Addr, Ipv4Addr)>) -> Vec<u8> {
    let mut m = vec![0u8; 236];
    m[0] = BOOTREQUEST;
    m[1] = 1; // Ethernet
    m[2] = 6;
    m[4..8].copy_from_slice(&xid.to_be_bytes());
    m[28..34].copy_from_slice(&mac);
    m.extend_from_slice(&MAGIC);
    m.extend_from_slice(&[53, 1, kind]);
    let mut cid = vec![61, 7, 1];
    cid.extend_from_slice(&mac);
    m.extend_from_slice(&cid);
    if let Some((addr, server)) = want {
        m.extend_from_slice(&[50, 4]);
        m.extend_from_slice(&addr.octets());
        m.extend_from_slice(&[54, 4]);
        m.extend_from_slice(&server.octets());
    }
    m.extend_from_slice(&[55, 3, 1, 3, 51, 255]);
    m.resize(300, 0); // BOOTP's minimum
    let udp_len = 8 + m.len();
    let mut p = vec![0u8; 20 + 8];
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
    // UDP checksum 0: none (allowed over IPv4).
    p.extend_from_slice(&m);
    p
}

/// A server's answer: type, yiaddr and the options of interest.
struct Reply {
    kind: u8,
    yiaddr: Ipv4Addr,
    mask: Option<Ipv4Addr>,
    router: Option<Ipv4Addr>,
    server: Option<Ipv4Addr>,
    lease: Option<u32>,
}

/// Parses an IPv4 packet as a DHCP reply to transaction `xid` (`None`: something else).
fn parse_reply(p: &[u8], xid: u32) -> Option<Reply> {
    if p.len() < 20 || p[0] >> 4 != 4 || p[9] != libc::IPPROTO_UDP as u8 {
        return None;
    }
    let ihl = usize::from(p[0] & 15) * 4;
    let u = p.get(ihl..)?;
    if u.len() < 8
        || u16::from_be_bytes([u[0], u[1]]) != 67
        || u16::from_be_bytes([u[2], u[3]]) != 68
    {
        return None;
    }
    let m = &u[8..];
    if m.len() < 240 || m[0] != BOOTREPLY || m[4..8] != xid.to_be_bytes() || m[236..240] != MAGIC {
        return None;
    }
    let ip4 = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    let mut r = Reply {
        kind: 0,
        yiaddr: ip4(&m[16..20]),
        mask: None,
        router: None,
        server: None,
        lease: None,
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
            (54, 4) => r.server = Some(ip4(v)),
            (51, 4) => r.lease = Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
            _ => {}
        }
        o = &rest[len..];
    }
    Some(r)
}

/// Sends `packet` (broadcast) and waits for a reply of `kinds` to `xid`; retries [`TRIES`] times.
fn exchange(s: &Socket, ifindex: u32, packet: &[u8], xid: u32, kinds: &[u8]) -> (Reply, Sll) {
    let to = sll(ifindex, ETH_P_IP, Some([0xff; 6]));
    let mut buf = vec![0u8; 2048];
    for _ in 0..TRIES {
        let n = s.send_to_sockaddr(packet, &to).expect("sendto sockaddr_ll");
        assert_eq!(n, packet.len());
        let deadline = Instant::now() + ANSWER;
        while let Some((n, from)) = recv_within(
            s,
            &mut buf,
            deadline.saturating_duration_since(Instant::now()),
        ) {
            if let Some(r) = parse_reply(&buf[..n], xid) {
                if kinds.contains(&r.kind) {
                    return (r, Sll::of(&from));
                }
            }
        }
    }
    panic!("no DHCP answer of kind {kinds:?} to xid {xid:#x} in {TRIES} tries");
}

/// DHCPv4 on interface `ifindex` of `stack`: DISCOVER, OFFER, REQUEST, ACK, on a packet socket
/// (`AF_PACKET`, `SOCK_DGRAM`, `ETH_P_IP`, bound to the interface). Panics on a NAK or silence.
pub fn dhcpv4(stack: &Stack, ifindex: u32) -> Lease4 {
    let mac = stack.link_get_mac(ifindex).expect("link_get_mac");
    let s = stack
        .msocket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM,
            i32::from(ETH_P_IP.to_be()),
        )
        .expect("socket(AF_PACKET, SOCK_DGRAM, ETH_P_IP)");
    s.bind_sockaddr(&sll(ifindex, ETH_P_IP, None))
        .expect("bind sockaddr_ll");
    let mut x = [0u8; 4];
    x.copy_from_slice(&mac[2..6]);
    let xid = u32::from_ne_bytes(x) ^ std::process::id();
    let (offer, _) = exchange(
        &s,
        ifindex,
        &dhcp_packet(DHCPDISCOVER, xid, mac, None),
        xid,
        &[DHCPOFFER],
    );
    let server = offer.server.expect("the OFFER has a server identifier");
    let req = dhcp_packet(DHCPREQUEST, xid, mac, Some((offer.yiaddr, server)));
    let (ack, from) = exchange(&s, ifindex, &req, xid, &[DHCPACK, DHCPNAK]);
    assert_eq!(ack.kind, DHCPACK, "the server refused the request (NAK)");
    let mask = ack.mask.or(offer.mask).expect("a subnet mask");
    Lease4 {
        addr: ack.yiaddr,
        prefix: u32::from(mask).count_ones() as u8,
        router: ack.router,
        server: ack.server.unwrap_or(server),
        lease_secs: ack.lease.unwrap_or(0),
        from,
    }
}

/// What a router advertisement said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ra {
    /// The router (the advertisement's source: link-local) and its `sin6_scope_id`.
    pub router: std::net::Ipv6Addr,
    /// `sin6_scope_id` of the source.
    pub scope: u32,
    /// Router lifetime, seconds.
    pub lifetime: u16,
    /// The M ("managed": addresses by DHCPv6) flag.
    pub managed: bool,
    /// The first prefix information option: prefix, length, L and A flags, valid lifetime.
    pub prefix: Option<(std::net::Ipv6Addr, u8, bool, bool, u32)>,
}

/// `ICMP6_FILTER` (level `IPPROTO_ICMPV6`).
const ICMP6_FILTER: i32 = 1;
const ND_ROUTER_SOLICIT: u8 = 133;
const ND_ROUTER_ADVERT: u8 = 134;

/// Router discovery on interface `ifindex` of `stack`, as RS/RA clients do: a raw
/// `IPPROTO_ICMPV6` socket passing only advertisements (`ICMP6_FILTER`), hop limit 255
/// (`IPV6_MULTICAST_HOPS`), a router solicitation with the source link-layer address option to
/// `ff02::2` on the interface, the first advertisement back. Panics if none comes.
pub fn router_discovery(stack: &Stack, ifindex: u32) -> Ra {
    let mac = stack.link_get_mac(ifindex).expect("link_get_mac");
    let s = stack
        .msocket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6)
        .expect("socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6)");
    s.setsockopt(
        libc::IPPROTO_IPV6,
        libc::IPV6_MULTICAST_HOPS,
        &255i32.to_ne_bytes(),
    )
    .expect("IPV6_MULTICAST_HOPS");
    let mut filter = [u32::MAX; 8];
    filter[usize::from(ND_ROUTER_ADVERT >> 5)] &= !(1 << (ND_ROUTER_ADVERT & 31));
    let f: Vec<u8> = filter.iter().flat_map(|w| w.to_ne_bytes()).collect();
    s.setsockopt(libc::IPPROTO_ICMPV6, ICMP6_FILTER, &f)
        .expect("ICMP6_FILTER");
    assert_eq!(
        s.getsockopt(libc::IPPROTO_ICMPV6, ICMP6_FILTER, 32)
            .unwrap(),
        f,
        "ICMP6_FILTER reads back"
    );
    let mut rs = vec![ND_ROUTER_SOLICIT, 0, 0, 0, 0, 0, 0, 0, 1, 1];
    rs.extend_from_slice(&mac);
    let to = std::net::SocketAddr::V6(std::net::SocketAddrV6::new(
        "ff02::2".parse().unwrap(),
        0,
        0,
        ifindex,
    ));
    let mut buf = vec![0u8; 2048];
    // Until the interface's link-local address has done DAD, a kernel has no source for the
    // solicitation and says EADDRNOTAVAIL: clients retry.
    let ready = Instant::now() + SETTLE;
    for _ in 0..TRIES {
        loop {
            match s.send_to(&rs, &to) {
                Ok(n) => {
                    assert_eq!(n, rs.len());
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                    assert!(Instant::now() < ready, "no source address for ff02::2");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("sendto ff02::2: {e}"),
            }
        }
        let deadline = Instant::now() + ANSWER;
        while let Some((n, from)) = recv_within(
            &s,
            &mut buf,
            deadline.saturating_duration_since(Instant::now()),
        ) {
            let m = &buf[..n];
            assert_eq!(
                m[0], ND_ROUTER_ADVERT,
                "ICMP6_FILTER let another type through"
            );
            if n < 16 {
                continue;
            }
            let from = from.as_socket_ipv6().expect("an IPv6 source");
            let mut ra = Ra {
                router: *from.ip(),
                scope: from.scope_id(),
                lifetime: u16::from_be_bytes([m[6], m[7]]),
                managed: m[5] & 0x80 != 0,
                prefix: None,
            };
            let mut o = &m[16..];
            while o.len() >= 8 && o[1] != 0 {
                let len = usize::from(o[1]) * 8;
                if o.len() < len {
                    break;
                }
                if o[0] == 3 && len == 32 && ra.prefix.is_none() {
                    let p: [u8; 16] = o[16..32].try_into().unwrap();
                    ra.prefix = Some((
                        std::net::Ipv6Addr::from(p),
                        o[2],
                        o[3] & 0x80 != 0,
                        o[3] & 0x40 != 0,
                        u32::from_be_bytes([o[4], o[5], o[6], o[7]]),
                    ));
                }
                o = &o[len..];
            }
            return ra;
        }
    }
    panic!("no router advertisement in {TRIES} tries");
}

/// The EUI-64 address of `mac` in /64 `prefix` (what SLAAC makes).
pub fn eui64(prefix: std::net::Ipv6Addr, mac: [u8; 6]) -> std::net::Ipv6Addr {
    let mut o = prefix.octets();
    o[8..].copy_from_slice(&[
        mac[0] ^ 2,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]);
    std::net::Ipv6Addr::from(o)
}

/// What a DHCPv6 exchange gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease6 {
    /// The address of the IA_NA.
    pub addr: std::net::Ipv6Addr,
    /// Its preferred and valid lifetimes, seconds.
    pub preferred: u32,
    pub valid: u32,
    /// The server's DUID (`OPTION_SERVERID`).
    pub server_duid: Vec<u8>,
    /// Where the REPLY came from (the server's link-local address, port 547, scope).
    pub from: std::net::SocketAddrV6,
}

const DHCPV6_SOLICIT: u8 = 1;
const DHCPV6_ADVERTISE: u8 = 2;
const DHCPV6_REQUEST: u8 = 3;
const DHCPV6_REPLY: u8 = 7;
const OPT_CLIENTID: u16 = 1;
const OPT_SERVERID: u16 = 2;
const OPT_IA_NA: u16 = 3;
const OPT_IAADDR: u16 = 5;
const OPT_ELAPSED_TIME: u16 = 8;
const OPT_STATUS_CODE: u16 = 13;

fn opt(out: &mut Vec<u8>, code: u16, v: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(v.len() as u16).to_be_bytes());
    out.extend_from_slice(v);
}

/// The options of a DHCPv6 message body (code, value), in order; `None` if malformed.
fn options(mut b: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut v = Vec::new();
    while !b.is_empty() {
        if b.len() < 4 {
            return None;
        }
        let code = u16::from_be_bytes([b[0], b[1]]);
        let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        let val = b.get(4..4 + len)?;
        v.push((code, val));
        b = &b[4 + len..];
    }
    Some(v)
}

/// A client message: `kind`, transaction `xid`, the client's DUID-LL, an IA_NA `iaid`
/// (asking for `addr` if given) and, for a REQUEST, the server's DUID.
fn dhcpv6_msg(
    kind: u8,
    xid: [u8; 3],
    duid: &[u8],
    iaid: u32,
    addr: Option<std::net::Ipv6Addr>,
    server: Option<&[u8]>,
) -> Vec<u8> {
    let mut m = vec![kind, xid[0], xid[1], xid[2]];
    opt(&mut m, OPT_CLIENTID, duid);
    if let Some(s) = server {
        opt(&mut m, OPT_SERVERID, s);
    }
    opt(&mut m, OPT_ELAPSED_TIME, &[0, 0]);
    let mut ia = Vec::new();
    ia.extend_from_slice(&iaid.to_be_bytes());
    ia.extend_from_slice(&[0; 8]); // T1, T2: the server's choice
    if let Some(a) = addr {
        let mut ad = a.octets().to_vec();
        ad.extend_from_slice(&[0; 8]); // lifetimes: the server's choice
        opt(&mut ia, OPT_IAADDR, &ad);
    }
    opt(&mut m, OPT_IA_NA, &ia);
    m
}

/// A server message's type, server DUID and IA_NA address with its lifetimes, if it answers
/// transaction `xid` of client `duid` (`None`: something else). Panics on a status code other
/// than success inside the IA_NA (the server has no address for us).
/// A server's DHCPv6 answer: its type, the server's DUID and the IA_NA address with its
/// preferred and valid lifetimes.
type Answer6 = (u8, Vec<u8>, (std::net::Ipv6Addr, u32, u32));

fn dhcpv6_answer(m: &[u8], xid: [u8; 3], duid: &[u8]) -> Option<Answer6> {
    if m.len() < 4 || m[1..4] != xid {
        return None;
    }
    let opts = options(&m[4..])?;
    if !opts.iter().any(|(c, v)| *c == OPT_CLIENTID && *v == duid) {
        return None;
    }
    let server = opts.iter().find(|(c, _)| *c == OPT_SERVERID)?.1.to_vec();
    let ia = opts
        .iter()
        .find(|(c, v)| *c == OPT_IA_NA && v.len() >= 12)?
        .1;
    let mut addr = None;
    for (c, v) in options(&ia[12..])? {
        match c {
            OPT_IAADDR if v.len() >= 24 => {
                let o: [u8; 16] = v[..16].try_into().unwrap();
                let pref = u32::from_be_bytes(v[16..20].try_into().unwrap());
                let valid = u32::from_be_bytes(v[20..24].try_into().unwrap());
                addr = Some((std::net::Ipv6Addr::from(o), pref, valid));
            }
            OPT_STATUS_CODE if v.len() >= 2 && v[..2] != [0, 0] => {
                panic!(
                    "DHCPv6 status {} in the IA_NA: {}",
                    u16::from_be_bytes([v[0], v[1]]),
                    String::from_utf8_lossy(&v[2..])
                );
            }
            _ => {}
        }
    }
    Some((m[0], server, addr?))
}

/// DHCPv6 on interface `ifindex` of `stack`, as stateful clients do: a UDP socket bound to
/// `[::]:546` on the interface (`SO_BINDTODEVICE`), `IPV6_MULTICAST_IF` and
/// `IPV6_MULTICAST_HOPS` 1, SOLICIT to `ff02::1:2` port 547 (from the link-local address),
/// ADVERTISE, REQUEST for the address offered, REPLY; the client's DUID is a DUID-LL of the
/// interface's MAC. Panics on silence.
pub fn dhcpv6(stack: &Stack, ifindex: u32) -> Lease6 {
    use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
    let mac = stack.link_get_mac(ifindex).expect("link_get_mac");
    let name = stack.interface(ifindex).expect("the interface").name;
    let s = stack
        .msocket(libc::AF_INET6, libc::SOCK_DGRAM, 0)
        .expect("socket(AF_INET6, SOCK_DGRAM)");
    s.setsockopt(libc::SOL_SOCKET, libc::SO_BINDTODEVICE, name.as_bytes())
        .expect("SO_BINDTODEVICE");
    s.setsockopt(
        libc::IPPROTO_IPV6,
        libc::IPV6_MULTICAST_IF,
        &(ifindex as i32).to_ne_bytes(),
    )
    .expect("IPV6_MULTICAST_IF");
    s.setsockopt(
        libc::IPPROTO_IPV6,
        libc::IPV6_MULTICAST_HOPS,
        &1i32.to_ne_bytes(),
    )
    .expect("IPV6_MULTICAST_HOPS");
    s.bind(&SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::UNSPECIFIED,
        546,
        0,
        0,
    )))
    .expect("bind [::]:546");
    let mut duid = vec![0, 3, 0, 1];
    duid.extend_from_slice(&mac);
    let iaid = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]);
    let xid = [
        mac[5],
        (std::process::id() >> 8) as u8,
        std::process::id() as u8,
    ];
    let to = SocketAddr::V6(SocketAddrV6::new(
        "ff02::1:2".parse().unwrap(),
        547,
        0,
        ifindex,
    ));
    let mut buf = vec![0u8; 2048];
    let mut exchange = |msg: &[u8], want: u8| {
        let ready = Instant::now() + SETTLE;
        for _ in 0..TRIES {
            // No source until the link-local address has done DAD (EADDRNOTAVAIL): retry.
            loop {
                match s.send_to(msg, &to) {
                    Ok(n) => {
                        assert_eq!(n, msg.len());
                        break;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                        assert!(Instant::now() < ready, "no source address for ff02::1:2");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => panic!("sendto ff02::1:2: {e}"),
                }
            }
            let deadline = Instant::now() + ANSWER;
            while let Some((n, from)) = recv_within(
                &s,
                &mut buf,
                deadline.saturating_duration_since(Instant::now()),
            ) {
                let from = from.as_socket_ipv6().expect("an IPv6 source");
                if let Some((kind, server, addr)) = dhcpv6_answer(&buf[..n], xid, &duid) {
                    if kind == want {
                        return (server, addr, from);
                    }
                }
            }
        }
        panic!("no DHCPv6 message {want} in {TRIES} tries");
    };
    let solicit = dhcpv6_msg(DHCPV6_SOLICIT, xid, &duid, iaid, None, None);
    let (server, (offered, _, _), _) = exchange(&solicit, DHCPV6_ADVERTISE);
    let request = dhcpv6_msg(
        DHCPV6_REQUEST,
        xid,
        &duid,
        iaid,
        Some(offered),
        Some(&server),
    );
    let (server_duid, (addr, preferred, valid), from) = exchange(&request, DHCPV6_REPLY);
    Lease6 {
        addr,
        preferred,
        valid,
        server_duid,
        from,
    }
}

/// One rtnetlink request on a netlink socket of `stack`, with `NLM_F_REQUEST | NLM_F_ACK` and
/// `flags`: `Ok` on the ACK, the errno of a NACK.
pub fn nl_request(
    stack: &Stack,
    msg: netlink_packet_route::RouteNetlinkMessage,
    flags: u16,
) -> Result<(), i32> {
    nl_exchange(stack, msg, flags | netlink_packet_core::NLM_F_ACK).map(drop)
}

/// An rtnetlink dump (`NLM_F_DUMP`) on a netlink socket of `stack`: the messages.
pub fn nl_dump(
    stack: &Stack,
    msg: netlink_packet_route::RouteNetlinkMessage,
) -> Vec<netlink_packet_route::RouteNetlinkMessage> {
    nl_exchange(stack, msg, netlink_packet_core::NLM_F_DUMP).expect("dump")
}

fn nl_exchange(
    stack: &Stack,
    msg: netlink_packet_route::RouteNetlinkMessage,
    flags: u16,
) -> Result<Vec<netlink_packet_route::RouteNetlinkMessage>, i32> {
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
    let s = stack
        .msocket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)
        .expect("netlink socket");
    let mut m = NetlinkMessage::from(msg);
    m.header.flags = NLM_F_REQUEST | flags;
    m.header.sequence_number = 7;
    m.finalize();
    let mut out = vec![0u8; m.buffer_len()];
    m.serialize(&mut out);
    s.send(&out).expect("netlink send");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + ANSWER;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            wait_for(s.as_fd(), PollFlags::POLLIN, left).contains(PollFlags::POLLIN),
            "no netlink answer"
        );
        let n = s.recv(&mut buf).expect("netlink recv");
        let mut b = &buf[..n];
        while !b.is_empty() {
            let r = NetlinkMessage::<netlink_packet_route::RouteNetlinkMessage>::deserialize(b)
                .expect("a netlink message");
            let len = r.header.length as usize;
            match r.payload {
                NetlinkPayload::InnerMessage(x) => got.push(x),
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        None => Ok(got),
                        Some(c) => Err(-c.get()),
                    }
                }
                NetlinkPayload::Done(_) => return Ok(got),
                _ => {}
            }
            let step = (len + 3) & !3;
            if len < 16 || step > b.len() {
                break;
            }
            b = &b[step..];
        }
    }
}

/// An `RTM_NEWADDR` for `addr/prefix` on `ifindex` with lifetimes (`IFA_CACHEINFO`), no flags
/// (so IPv6 does duplicate address detection).
pub fn addr_with_lifetimes(
    addr: std::net::IpAddr,
    prefix: u8,
    ifindex: u32,
    valid: u32,
    preferred: u32,
) -> netlink_packet_route::RouteNetlinkMessage {
    use netlink_packet_route::address::{AddressAttribute, AddressMessage, CacheInfo};
    use netlink_packet_route::AddressFamily;
    let mut m = AddressMessage::default();
    m.header.family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    m.header.prefix_len = prefix;
    m.header.index = ifindex;
    m.attributes.push(AddressAttribute::Local(addr));
    m.attributes.push(AddressAttribute::Address(addr));
    let mut ci = CacheInfo::default();
    ci.ifa_valid = valid;
    ci.ifa_preferred = preferred;
    m.attributes.push(AddressAttribute::CacheInfo(ci));
    netlink_packet_route::RouteNetlinkMessage::NewAddress(m)
}

/// The valid and preferred lifetimes and `IFA_F_*` flags an `RTM_GETADDR` dump of `stack`
/// reports for `addr`.
pub fn lifetimes_of(stack: &Stack, addr: std::net::IpAddr) -> Option<(u32, u32, u32)> {
    use netlink_packet_route::address::{AddressAttribute, AddressMessage};
    use netlink_packet_route::RouteNetlinkMessage as R;
    let all = nl_dump(stack, R::GetAddress(AddressMessage::default()));
    all.into_iter().find_map(|m| {
        let R::NewAddress(a) = m else { return None };
        let mine = a.attributes.iter().any(|x| {
            matches!(x, AddressAttribute::Address(ip) | AddressAttribute::Local(ip) if *ip == addr)
        });
        if !mine {
            return None;
        }
        let mut flags = u32::from(a.header.flags.bits());
        let mut life = None;
        for x in &a.attributes {
            match x {
                AddressAttribute::Flags(f) => flags = f.bits(),
                AddressAttribute::CacheInfo(c) => life = Some((c.ifa_valid, c.ifa_preferred)),
                _ => {}
            }
        }
        life.map(|(v, p)| (v, p, flags))
    })
}
