//! Entry points for fuzzing and the bounded random-input tests: the parts of the plug-in that
//! parse bytes from another process, over a stack that needs no network (not part of the
//! plug-in's ABI).

use crate::device::VdeDevice;
use crate::net::{Iface, Net, DEFAULT_MTU};

/// A stack's interfaces without a network: `lo` and `vdes` Ethernet interfaces `vde0`, … on
/// libvdeplug's `null://` (frames sent are dropped, none arrive).
pub(crate) fn offline_net(vdes: usize) -> std::io::Result<Net> {
    let now = smoltcp::time::Instant::from_micros(0);
    let mut ifaces = vec![Iface::loopback(now)];
    if vdes > 0 {
        ioth_plugin_sdk::vde::vdeplug::ensure_loaded()?;
    }
    for k in 0..vdes {
        let conn = ioth_plugin_sdk::vde::vdeplug::Conn::open("null://", "ioth smoltcp offline")?;
        let dev = VdeDevice::new(conn, DEFAULT_MTU as usize)?;
        ifaces.push(Iface::vde(k as u32 + 2, &format!("vde{k}"), dev, now));
    }
    Ok(Net::new(ifaces))
}

/// An rtnetlink emulation: answers request records as an `AF_NETLINK` socket of the stack does.
pub struct Netlink {
    net: Net,
    start: std::time::Instant,
}

impl Netlink {
    /// A stack with `lo` and one Ethernet interface `vde0` (on `null://`; only `lo` if
    /// libvdeplug cannot be loaded).
    pub fn new() -> Netlink {
        let net = offline_net(1).unwrap_or_else(|_| {
            Net::new(vec![Iface::loopback(smoltcp::time::Instant::from_micros(
                0,
            ))])
        });
        Netlink {
            net,
            start: std::time::Instant::now(),
        }
    }

    /// The reply records to one request record.
    pub fn answer(&mut self, record: &[u8]) -> Vec<Vec<u8>> {
        let now = smoltcp::time::Instant::from_micros(self.start.elapsed().as_micros() as i64);
        crate::netlink::answer(&mut self.net, record, now)
    }
}

impl Default for Netlink {
    fn default() -> Self {
        Netlink::new()
    }
}

/// Checks that reply records are well-formed rtnetlink: each message's length within its
/// record, 4-byte aligned, parsed by netlink-packet-route; every part of a dump
/// (`NLM_F_MULTI`) followed by the dump's `NLMSG_DONE` before any other answer; the answers
/// ending with an `NLMSG_ERROR`, an `NLMSG_DONE` or the reply to a `GET`.
pub fn check_replies(records: &[Vec<u8>]) -> Result<(), String> {
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_MULTIPART};
    use netlink_packet_route::RouteNetlinkMessage;
    let mut in_dump = false;
    for r in records {
        if r.is_empty() || r.len() > crate::netlink::MAX_DGRAM {
            return Err(format!("a record of {} bytes", r.len()));
        }
        let mut off = 0;
        while off < r.len() {
            let Some(h) = r.get(off..off + 16) else {
                return Err(format!("{} bytes after the last message", r.len() - off));
            };
            let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
            if len < 16 || off + len > r.len() {
                return Err(format!("message length {len} at {off} of {}", r.len()));
            }
            let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&r[off..off + len])
                .map_err(|e| format!("message at {off}: {e}"))?;
            let multi = m.header.flags & NLM_F_MULTIPART != 0;
            match m.payload {
                NetlinkPayload::Done(_) => {
                    if !multi {
                        return Err("NLMSG_DONE without NLM_F_MULTI".into());
                    }
                    in_dump = false;
                }
                NetlinkPayload::Error(_) if in_dump => {
                    return Err("NLMSG_ERROR inside a dump".into());
                }
                NetlinkPayload::Error(_) => {}
                NetlinkPayload::InnerMessage(i) => {
                    use RouteNetlinkMessage as M;
                    if !matches!(i, M::NewLink(_) | M::NewAddress(_) | M::NewRoute(_)) {
                        return Err(format!("a reply of type {}", m.header.message_type));
                    }
                    if multi {
                        in_dump = true;
                    } else if in_dump {
                        return Err("a single reply inside a dump".into());
                    }
                }
                other => return Err(format!("unexpected payload {other:?}")),
            }
            off += (len + 3) & !3;
        }
        if off != r.len() {
            return Err("a record not ending on a message".into());
        }
    }
    if in_dump {
        return Err("a dump without NLMSG_DONE".into());
    }
    Ok(())
}

/// The sock_diag emulation (`NETLINK_SOCK_DIAG`) over a fixed table: a TCP connection and a UDP
/// socket, IPv4 and IPv6 (the audit thread's questions, or an application's).
pub struct SockDiag {
    table: Vec<crate::diag::Entry>,
}

impl SockDiag {
    pub fn new() -> SockDiag {
        use crate::diag::Entry;
        let e = |family, tcp, state, local: &str, peer: &str, inode| Entry {
            family,
            tcp,
            state,
            local: local.parse().unwrap(),
            peer: peer.parse().unwrap(),
            inode,
            bytes_sent: 1000,
            bytes_received: 2000,
            dgrams: (!tcp).then_some((3, 4)),
        };
        SockDiag {
            table: vec![
                e(libc::AF_INET, true, 1, "10.0.0.1:4000", "10.0.0.2:80", 11),
                e(libc::AF_INET, false, 7, "10.0.0.1:53", "0.0.0.0:0", 12),
                e(libc::AF_INET6, true, 10, "[fd00::1]:80", "[::]:0", 13),
                e(
                    libc::AF_INET6,
                    false,
                    1,
                    "[fd00::1]:5000",
                    "[fd00::2]:53",
                    14,
                ),
            ],
        }
    }

    /// The reply records to one request record.
    pub fn answer(&self, record: &[u8]) -> Vec<Vec<u8>> {
        crate::diag::answer(&self.table, record)
    }
}

impl Default for SockDiag {
    fn default() -> Self {
        SockDiag::new()
    }
}
