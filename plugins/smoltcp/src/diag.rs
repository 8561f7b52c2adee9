//! What the stack tells about itself to an observer (the host's audit thread, docs/audit.md):
//! counters of its interfaces and sockets, and `NETLINK_SOCK_DIAG` emulated on an `AF_NETLINK`
//! socket of the stack, so that the host reads a smoltcp stack's sockets with the very dump it
//! sends the kernel for a native stack. Runs in the host process, on the event-loop thread,
//! under the stack's mutex.
//!
//! Understood: `SOCK_DIAG_BY_FAMILY` dumps (`inet_diag_req_v2`: family `AF_INET`/`AF_INET6`,
//! protocol TCP/UDP, the states bitmask). Each socket the application holds is one
//! `inet_diag_msg` (addresses, ports, state in the kernel's numbering, the inode of the
//! application's end of its pair, which is the inode the host sees on the fd it handed out),
//! with, if asked, an `INET_DIAG_INFO` attribute shaped as the first bytes of `struct tcp_info`:
//! state, `tcpi_bytes_acked` (TCP: payload the peer acknowledged; UDP: payload sent),
//! `tcpi_bytes_received` (payload received) and, for UDP only, `tcpi_segs_out`/`tcpi_segs_in`
//! (datagrams: smoltcp does not count TCP segments, so a TCP socket's info ends before them, as
//! an older kernel's would). A socket whose application end is closed has no inode and is not
//! listed (the kernel does the same). Anything else is answered `EOPNOTSUPP`.

use std::net::{IpAddr, SocketAddr};

use crate::net::{Dev, Net};
use crate::sock::{app_end, Kind, Sock};

/// The `IFLA_STATS64` of an interface's device.
pub fn stats64(dev: &Dev) -> netlink_packet_route::link::Stats64 {
    let c = match dev {
        Dev::Vde(d) => d.counts,
        Dev::Lo(l) => l.counts,
    };
    let mut s = netlink_packet_route::link::Stats64::default();
    s.rx_packets = c.rx_packets;
    s.tx_packets = c.tx_packets;
    s.rx_bytes = c.rx_bytes;
    s.tx_bytes = c.tx_bytes;
    s.rx_dropped = c.rx_dropped;
    s.tx_dropped = c.tx_dropped;
    s.rx_errors = c.rx_errors;
    s.tx_errors = c.tx_errors;
    s
}

/// One inet socket as a sock_diag dump shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub family: i32,
    pub tcp: bool,
    /// The kernel's state number (`linux/tcp_states.h`; UDP: 7 unconnected, 1 connected).
    pub state: u8,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub inode: u32,
    /// TCP: acknowledged bytes; UDP: bytes sent.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// UDP: datagrams out and in.
    pub dgrams: Option<(u64, u64)>,
}

/// The kernel's number of a smoltcp TCP state.
fn tcp_state(s: smoltcp::socket::tcp::State) -> u8 {
    use smoltcp::socket::tcp::State as S;
    match s {
        S::Established => 1,
        S::SynSent => 2,
        S::SynReceived => 3,
        S::FinWait1 => 4,
        S::FinWait2 => 5,
        S::TimeWait => 6,
        S::Closed => 7,
        S::CloseWait => 8,
        S::LastAck => 9,
        S::Listen => 10,
        S::Closing => 11,
    }
}

fn unspecified(family: i32) -> SocketAddr {
    if family == libc::AF_INET6 {
        SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0)
    } else {
        SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0)
    }
}

/// The entry of socket `s`, if it is an inet socket the application still holds.
fn entry(net: &Net, s: &Sock) -> Option<Entry> {
    let inode = nix::sys::stat::fstat(app_end(&s.handle)?).ok()?.st_ino as u32;
    let family = s.domain;
    let none = unspecified(family);
    let e = match &s.kind {
        Kind::Tcp(t) => {
            let (state, local, peer, sent, received) = match t.diag(net) {
                Some(d) => (tcp_state(d.0), d.1, d.2, d.3, d.4),
                None if t.is_listening() => (10, t.local.unwrap_or(none), none, 0, 0),
                None => (7, t.local.unwrap_or(none), none, 0, 0),
            };
            Entry {
                family,
                tcp: true,
                state,
                local,
                peer,
                inode,
                bytes_sent: sent,
                bytes_received: received,
                dgrams: None,
            }
        }
        Kind::Udp(u) => Entry {
            family,
            tcp: false,
            state: if u.remote.is_some() { 1 } else { 7 },
            local: u.local.unwrap_or(none),
            peer: u.remote.unwrap_or(none),
            inode,
            bytes_sent: u.counts.bytes_out,
            bytes_received: u.counts.bytes_in,
            dgrams: Some((u.counts.dgrams_out, u.counts.dgrams_in)),
        },
        _ => return None,
    };
    Some(e)
}

/// The table a diag socket answers from; empty unless one of `socks` is a diag socket with a
/// request waiting (the event loop builds it once per turn, before the sockets are pumped).
pub fn table_if_asked<'a>(net: &Net, socks: impl Iterator<Item = &'a Sock> + Clone) -> Vec<Entry> {
    let asked = socks
        .clone()
        .any(|s| matches!(&s.kind, Kind::Netlink(n) if n.diag) && s.revents & libc::POLLIN != 0);
    if !asked {
        return Vec::new();
    }
    socks.filter_map(|s| entry(net, s)).collect()
}

/// Largest reply record (as rtnetlink's).
const MAX_DGRAM: usize = 16 * 1024;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_MULTI: u16 = 2;
const NLM_F_DUMP: u16 = 0x300;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const INET_DIAG_INFO: u16 = 2;
/// `sizeof(struct inet_diag_req_v2)`, `sizeof(struct inet_diag_msg)`.
const REQ_LEN: usize = 56;
const MSG_LEN: usize = 72;
/// Length of the `tcp_info` prefix written: up to `tcpi_bytes_received` for TCP, up to
/// `tcpi_segs_in` for UDP.
const INFO_TCP: usize = 136;
const INFO_UDP: usize = 144;

fn header(out: &mut Vec<u8>, len: usize, ty: u16, flags: u16, seq: u32, port: u32) {
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&port.to_ne_bytes());
}

fn put_addr(m: &mut [u8], a: &SocketAddr, v6: bool) {
    match a.ip() {
        IpAddr::V4(x) if v6 => m[..16].copy_from_slice(&x.to_ipv6_mapped().octets()),
        IpAddr::V4(x) => m[..4].copy_from_slice(&x.octets()),
        IpAddr::V6(x) => m[..16].copy_from_slice(&x.octets()),
    }
}

/// One `inet_diag_msg` message (with its header) for `e`.
fn message(e: &Entry, info: bool, seq: u32, port: u32) -> Vec<u8> {
    let v6 = e.family == libc::AF_INET6;
    let mut m = vec![0u8; MSG_LEN];
    m[0] = e.family as u8;
    m[1] = e.state;
    m[4..6].copy_from_slice(&e.local.port().to_be_bytes());
    m[6..8].copy_from_slice(&e.peer.port().to_be_bytes());
    put_addr(&mut m[8..24], &e.local, v6);
    put_addr(&mut m[24..40], &e.peer, v6);
    // idiag_if, idiag_cookie: 0; expires, rqueue, wqueue, uid: 0 (the host's own user).
    m[68..72].copy_from_slice(&e.inode.to_ne_bytes());
    if info {
        let n = if e.tcp { INFO_TCP } else { INFO_UDP };
        let mut t = vec![0u8; n];
        t[0] = e.state;
        t[120..128].copy_from_slice(&e.bytes_sent.to_ne_bytes());
        t[128..136].copy_from_slice(&e.bytes_received.to_ne_bytes());
        if let Some((o, i)) = e.dgrams {
            t[136..140].copy_from_slice(&(o.min(u64::from(u32::MAX)) as u32).to_ne_bytes());
            t[140..144].copy_from_slice(&(i.min(u64::from(u32::MAX)) as u32).to_ne_bytes());
        }
        m.extend_from_slice(&((4 + n) as u16).to_ne_bytes());
        m.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
        m.extend_from_slice(&t);
    }
    let mut out = Vec::with_capacity(16 + m.len());
    header(
        &mut out,
        16 + m.len(),
        SOCK_DIAG_BY_FAMILY,
        NLM_F_MULTI,
        seq,
        port,
    );
    out.extend_from_slice(&m);
    out
}

fn error(request: &[u8], errno: i32) -> Vec<u8> {
    let mut out = Vec::new();
    let seq = u32::from_ne_bytes([request[8], request[9], request[10], request[11]]);
    let port = u32::from_ne_bytes([request[12], request[13], request[14], request[15]]);
    header(&mut out, 16 + 4 + 16, NLMSG_ERROR, 0, seq, port);
    out.extend_from_slice(&(-errno).to_ne_bytes());
    out.extend_from_slice(&request[..16]);
    out
}

/// Answers one record of sock_diag requests from `table`: records of at most
/// [`MAX_DGRAM`] bytes.
pub fn answer(table: &[Entry], data: &[u8]) -> Vec<Vec<u8>> {
    let mut records = Vec::new();
    let mut cur = Vec::new();
    let mut push = |cur: &mut Vec<u8>, m: Vec<u8>| {
        if !cur.is_empty() && cur.len() + m.len() > MAX_DGRAM {
            records.push(std::mem::take(cur));
        }
        cur.extend_from_slice(&m);
    };
    let mut off = 0;
    while off + 16 <= data.len() {
        let f = &data[off..];
        let len = u32::from_ne_bytes([f[0], f[1], f[2], f[3]]) as usize;
        if len < 16 || len > f.len() {
            break;
        }
        let frame = &f[..len];
        off += (len + 3) & !3;
        let ty = u16::from_ne_bytes([frame[4], frame[5]]);
        let flags = u16::from_ne_bytes([frame[6], frame[7]]);
        if ty < 16 {
            continue;
        }
        if ty != SOCK_DIAG_BY_FAMILY || flags & NLM_F_DUMP != NLM_F_DUMP {
            push(&mut cur, error(frame, libc::EOPNOTSUPP));
            continue;
        }
        let Some(q) = frame.get(16..16 + REQ_LEN) else {
            push(&mut cur, error(frame, libc::EINVAL));
            continue;
        };
        let (family, proto, ext) = (i32::from(q[0]), i32::from(q[1]), q[2]);
        let states = u32::from_ne_bytes([q[4], q[5], q[6], q[7]]);
        let tcp = match proto {
            libc::IPPROTO_TCP => true,
            libc::IPPROTO_UDP => false,
            _ => {
                push(&mut cur, error(frame, libc::EOPNOTSUPP));
                continue;
            }
        };
        if family != libc::AF_INET && family != libc::AF_INET6 {
            push(&mut cur, error(frame, libc::EINVAL));
            continue;
        }
        let seq = u32::from_ne_bytes([frame[8], frame[9], frame[10], frame[11]]);
        let port = u32::from_ne_bytes([frame[12], frame[13], frame[14], frame[15]]);
        let info = ext & (1 << (INET_DIAG_INFO - 1)) != 0;
        for e in table.iter().filter(|e| {
            e.family == family && e.tcp == tcp && states & (1u32 << u32::from(e.state)) != 0
        }) {
            push(&mut cur, message(e, info, seq, port));
        }
        let mut done = Vec::new();
        header(&mut done, 20, NLMSG_DONE, NLM_F_MULTI, seq, port);
        done.extend_from_slice(&0i32.to_ne_bytes());
        push(&mut cur, done);
    }
    if !cur.is_empty() {
        records.push(cur);
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(family: u8, proto: u8, states: u32) -> Vec<u8> {
        let mut m = Vec::new();
        header(
            &mut m,
            16 + REQ_LEN,
            SOCK_DIAG_BY_FAMILY,
            1 | NLM_F_DUMP,
            7,
            0,
        );
        let mut q = vec![0u8; REQ_LEN];
        q[0] = family;
        q[1] = proto;
        q[2] = 1 << (INET_DIAG_INFO - 1);
        q[4..8].copy_from_slice(&states.to_ne_bytes());
        m.extend_from_slice(&q);
        m
    }

    fn entry(tcp: bool, state: u8) -> Entry {
        Entry {
            family: libc::AF_INET,
            tcp,
            state,
            local: "10.0.0.3:40000".parse().unwrap(),
            peer: "10.0.0.2:5001".parse().unwrap(),
            inode: 4242,
            bytes_sent: 20_000,
            bytes_received: 30,
            dgrams: (!tcp).then_some((3, 4)),
        }
    }

    /// The messages of one reply record: (type, payload).
    fn split(r: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut v = Vec::new();
        let mut off = 0;
        while off + 16 <= r.len() {
            let len = u32::from_ne_bytes(r[off..off + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes([r[off + 4], r[off + 5]]);
            assert_eq!(
                u32::from_ne_bytes(r[off + 8..off + 12].try_into().unwrap()),
                7
            );
            v.push((ty, r[off + 16..off + len].to_vec()));
            off += (len + 3) & !3;
        }
        v
    }

    #[test]
    fn a_dump_lists_matching_sockets_with_their_counters() {
        let table = [entry(true, 1), entry(true, 10), entry(false, 1)];
        let r = answer(
            &table,
            &req(libc::AF_INET as u8, libc::IPPROTO_TCP as u8, 1 << 1),
        );
        let m = split(&r.concat());
        assert_eq!(m.len(), 2, "one established TCP socket and DONE");
        assert_eq!(m[0].0, SOCK_DIAG_BY_FAMILY);
        let b = &m[0].1;
        assert_eq!((b[0], b[1]), (libc::AF_INET as u8, 1));
        assert_eq!(u16::from_be_bytes([b[4], b[5]]), 40000);
        assert_eq!(&b[24..28], &[10, 0, 0, 2]);
        assert_eq!(u32::from_ne_bytes(b[68..72].try_into().unwrap()), 4242);
        let info = &b[MSG_LEN + 4..];
        assert_eq!(info.len(), INFO_TCP);
        assert_eq!(
            u64::from_ne_bytes(info[120..128].try_into().unwrap()),
            20_000
        );
        assert_eq!(u64::from_ne_bytes(info[128..136].try_into().unwrap()), 30);
        assert_eq!(m[1].0, NLMSG_DONE);
        // UDP: datagram counts too.
        let r = answer(
            &table,
            &req(libc::AF_INET as u8, libc::IPPROTO_UDP as u8, !0),
        );
        let m = split(&r.concat());
        let info = &m[0].1[MSG_LEN + 4..];
        assert_eq!(info.len(), INFO_UDP);
        assert_eq!(u32::from_ne_bytes(info[136..140].try_into().unwrap()), 3);
        // No IPv6 socket.
        let r = answer(
            &table,
            &req(libc::AF_INET6 as u8, libc::IPPROTO_TCP as u8, !0),
        );
        assert_eq!(split(&r.concat()).len(), 1);
    }

    #[test]
    fn other_requests_are_refused() {
        let mut q = req(libc::AF_INET as u8, libc::IPPROTO_ICMP as u8, !0);
        let m = split(&answer(&[], &q).concat());
        assert_eq!(m[0].0, NLMSG_ERROR);
        assert_eq!(
            i32::from_ne_bytes(m[0].1[..4].try_into().unwrap()),
            -libc::EOPNOTSUPP
        );
        q[6..8].copy_from_slice(&1u16.to_ne_bytes()); // not a dump
        let m = split(&answer(&[], &q).concat());
        assert_eq!(m[0].0, NLMSG_ERROR);
        let short = &req(libc::AF_INET as u8, libc::IPPROTO_TCP as u8, !0)[..40];
        let mut s = short.to_vec();
        s[0..4].copy_from_slice(&40u32.to_ne_bytes());
        let m = split(&answer(&[], &s).concat());
        assert_eq!(
            i32::from_ne_bytes(m[0].1[..4].try_into().unwrap()),
            -libc::EINVAL
        );
    }
}
