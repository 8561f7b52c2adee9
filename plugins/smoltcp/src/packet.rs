//! `AF_PACKET` sockets (`SOCK_DGRAM` and `SOCK_RAW`): Ethernet frames of the VDE interfaces,
//! beside smoltcp. Runs in the host process under the stack's mutex.
//!
//! - Receiving: while some packet socket may want them, each VDE device keeps a copy of every
//!   frame it receives ([`crate::device::VdeDevice::captured`], before smoltcp processes it, so
//!   smoltcp's own handling — ARP, NDP, IP — is unchanged). After each poll [`collect`] hands
//!   each frame to the packet sockets whose protocol (`ETH_P_ALL` or the frame's ethertype) and
//!   interface (bound one, or all) match: the whole frame for `SOCK_RAW`, what follows the
//!   Ethernet header for `SOCK_DGRAM`, each record led by the sender's `sockaddr_ll` (20 bytes
//!   in the 28-byte header, docs/proxied.md) with `sll_pkttype` host, broadcast, multicast or
//!   other host. A frame the pair has no room for is dropped, as the kernel drops one when the
//!   receive buffer is full. Frames sent (by smoltcp or by packet sockets) are not seen.
//! - Sending: each record's header is the destination `sockaddr_ll`: its interface
//!   (`sll_ifindex`, or the bound one when the record has no address) must be an up VDE
//!   interface; `SOCK_DGRAM` builds the Ethernet header (destination `sll_addr`, the
//!   interface's MAC, `sll_protocol` or the socket's protocol), `SOCK_RAW` sends the record
//!   as the frame. The frame goes straight to the VDE port ([`crate::device::VdeDevice::inject`]).
//!   A record that cannot be sent (no such interface, down, larger than the MTU) is dropped:
//!   the data path has no way back to the caller's `sendto` (docs/proxied.md lists it).
//! - Control: `bind(sockaddr_ll)` as the kernel's (`EINVAL` short or of another family,
//!   `ENODEV` unknown interface; protocol 0 keeps the socket's), `getsockname` the kernel's
//!   12 + 6 bytes (12 while unbound), `connect`/`listen`/`accept`/`shutdown` `EOPNOTSUPP`.

use std::io::{self, IoSlice};
use std::os::fd::AsFd;

use ioth_plugin_sdk::proxied::Handle;

use crate::device::ETH_HLEN;
use crate::kind::packet::Packet;
use crate::net::{Dev, Net};
use crate::sock::{Core, Fate, Kind, Sock};
use crate::sys;
use ioth_plugin_sdk::errno::io_error;

/// `sizeof(struct sockaddr_ll)`.
pub const SLL_LEN: usize = 20;
/// `ARPHRD_ETHER`, `ARPHRD_LOOPBACK`.
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;
/// `PACKET_HOST`, `PACKET_BROADCAST`, `PACKET_MULTICAST`, `PACKET_OTHERHOST`.
const PACKET_HOST: u8 = 0;
const PACKET_BROADCAST: u8 = 1;
const PACKET_MULTICAST: u8 = 2;
const PACKET_OTHERHOST: u8 = 3;
/// Records read from one socket's pair per turn.
const BATCH: usize = 64;

fn packet_of(kind: &mut Kind) -> io::Result<&mut Packet> {
    match kind {
        Kind::Packet(p) => Ok(p),
        _ => Err(io_error(libc::EOPNOTSUPP)),
    }
}

/// A `sockaddr_ll`'s 20 bytes.
fn sll(proto: u16, ifindex: u32, hatype: u16, pkttype: u8, mac: Option<&[u8]>) -> [u8; SLL_LEN] {
    let mut b = [0u8; SLL_LEN];
    b[..2].copy_from_slice(&(libc::AF_PACKET as u16).to_ne_bytes());
    b[2..4].copy_from_slice(&proto.to_be_bytes());
    b[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    b[8..10].copy_from_slice(&hatype.to_ne_bytes());
    b[10] = pkttype;
    if let Some(m) = mac {
        b[11] = m.len() as u8;
        b[12..12 + m.len()].copy_from_slice(m);
    }
    b
}

/// `bind(sockaddr_ll)`.
pub fn bind(net: &Net, s: &mut Sock, a: &[u8]) -> io::Result<()> {
    if a.len() < SLL_LEN || i32::from(u16::from_ne_bytes([a[0], a[1]])) != libc::AF_PACKET {
        return Err(io_error(libc::EINVAL));
    }
    let proto = u16::from_be_bytes([a[2], a[3]]);
    let ifindex = i32::from_ne_bytes([a[4], a[5], a[6], a[7]]);
    if ifindex < 0 || (ifindex > 0 && net.by_index(ifindex as u32).is_none()) {
        return Err(io_error(libc::ENODEV));
    }
    let p = packet_of(&mut s.kind)?;
    p.ifindex = ifindex as u32;
    if proto != 0 {
        p.proto = proto;
    }
    Ok(())
}

/// `getsockname`: 12 bytes and the interface's hardware address when bound to one.
pub fn getsockname(net: &Net, ifindex: u32, proto: u16) -> Vec<u8> {
    match net.by_index(ifindex).filter(|_| ifindex != 0) {
        Some(i) => {
            let f = &net.ifaces[i];
            let hatype = if f.is_loopback() {
                ARPHRD_LOOPBACK
            } else {
                ARPHRD_ETHER
            };
            sll(proto, ifindex, hatype, 0, Some(&f.mac))[..12 + 6].to_vec()
        }
        None => sll(proto, 0, 0, 0, None)[..12].to_vec(),
    }
}

/// Switches every VDE device's capture on or off, as packet sockets may want its frames.
pub fn set_taps(net: &mut Net, socks: &std::collections::HashMap<u64, Sock>) {
    for f in &mut net.ifaces {
        let index = f.index;
        if let Dev::Vde(d) = &mut f.dev {
            d.tap = socks.values().any(|s| {
                matches!(&s.kind, Kind::Packet(p) if p.proto != 0
                    && (p.ifindex == 0 || p.ifindex == index))
            });
            if !d.tap {
                d.captured.clear();
            }
        }
    }
}

/// The `sll_pkttype` of a frame to `dst` received by an interface whose MAC is `mac`.
fn pkttype(dst: &[u8], mac: &[u8; 6]) -> u8 {
    if dst == [0xff; 6] {
        PACKET_BROADCAST
    } else if dst[0] & 1 != 0 {
        PACKET_MULTICAST
    } else if dst == mac {
        PACKET_HOST
    } else {
        PACKET_OTHERHOST
    }
}

/// After smoltcp's poll: hands the captured frames to the packet sockets (module doc).
pub fn collect(net: &mut Net, socks: &mut std::collections::HashMap<u64, Sock>) {
    for f in &mut net.ifaces {
        let (index, mac) = (f.index, f.mac);
        let Dev::Vde(d) = &mut f.dev else { continue };
        while let Some(frame) = d.captured.pop_front() {
            let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
            let hdr = sll(
                ethertype,
                index,
                ARPHRD_ETHER,
                pkttype(&frame[..6], &mac),
                Some(&frame[6..12]),
            );
            let mut h28 = [0u8; crate::addr::HDR_LEN];
            h28[..SLL_LEN].copy_from_slice(&hdr);
            for s in socks.values_mut() {
                let Kind::Packet(p) = &s.kind else { continue };
                if !p.wants(index, ethertype) || s.orphan_since.is_some() {
                    continue;
                }
                let body = if p.raw {
                    &frame[..]
                } else {
                    &frame[ETH_HLEN..]
                };
                if let Some(pe) = s.pe.as_ref() {
                    // A full pair drops the frame (as a full receive buffer does).
                    let _ = sys::sendv(pe.as_fd(), &[IoSlice::new(&h28), IoSlice::new(body)]);
                }
            }
        }
    }
}

/// The frame a record asks for, and the interface (position) it leaves through; `None`:
/// dropped (module doc).
fn frame_of(net: &Net, p: &Packet, rec: &[u8]) -> Option<(usize, Vec<u8>)> {
    let h = rec.get(..crate::addr::HDR_LEN)?;
    let payload = &rec[crate::addr::HDR_LEN..];
    if i32::from(u16::from_ne_bytes([h[0], h[1]])) != libc::AF_PACKET {
        return None;
    }
    let mut proto = u16::from_be_bytes([h[2], h[3]]);
    let mut ifindex = i32::from_ne_bytes([h[4], h[5], h[6], h[7]]).max(0) as u32;
    let halen = usize::from(h[11]).min(8);
    if ifindex == 0 && halen == 0 {
        // No address (send(2) on a bound socket): the bound interface and protocol.
        ifindex = p.ifindex;
        proto = p.proto;
    }
    let i = net.by_index(ifindex).filter(|_| ifindex != 0)?;
    let f = &net.ifaces[i];
    if !f.up || f.is_loopback() {
        return None;
    }
    let mtu = f.mtu as usize;
    if p.raw {
        if payload.len() < ETH_HLEN || payload.len() > mtu + ETH_HLEN {
            return None;
        }
        return Some((i, payload.to_vec()));
    }
    if payload.len() > mtu || halen < 6 {
        return None;
    }
    let mut frame = Vec::with_capacity(ETH_HLEN + payload.len());
    frame.extend_from_slice(&h[12..18]);
    frame.extend_from_slice(&f.mac);
    frame.extend_from_slice(&proto.to_be_bytes());
    frame.extend_from_slice(payload);
    Some((i, frame))
}

/// Sends a frame on interface `i`; `false`: its port is still busy with a refused frame.
fn inject(net: &mut Net, i: usize, frame: &[u8]) -> bool {
    match &mut net.ifaces[i].dev {
        Dev::Vde(d) => d.inject(frame),
        Dev::Lo(_) => true,
    }
}

/// Before smoltcp's poll: sends what the application wrote.
pub fn pump_in(net: &mut Net, s: &mut Sock, scratch: &mut [u8]) {
    let orphan = s.orphan_since.is_some();
    let Sock {
        pe, kind, revents, ..
    } = s;
    let Kind::Packet(p) = kind else { return };
    if let Some((i, frame)) = p.pending.take() {
        if !inject(net, i, &frame) {
            p.pending = Some((i, frame));
            return;
        }
    }
    let Some(pe) = pe else { return };
    if p.eof || (!orphan && *revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0) {
        return;
    }
    for _ in 0..BATCH {
        let n = match sys::recv(pe.as_fd(), scratch, libc::MSG_TRUNC) {
            Ok(0) if sys::hung_up(pe.as_fd()) => {
                p.eof = true;
                break;
            }
            Ok(n) if n > scratch.len() => continue,
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(_) => break,
        };
        let Some((i, frame)) = frame_of(net, p, &scratch[..n]) else {
            continue;
        };
        if !inject(net, i, &frame) {
            p.pending = Some((i, frame));
            break;
        }
    }
}

/// After smoltcp's poll: a closed socket goes once its last frame has left.
pub fn after_poll(s: &mut Sock) -> Fate {
    match &s.kind {
        Kind::Packet(p) if s.orphan_since.is_some() && (p.pending.is_none() || p.eof) => {
            Fate::Remove
        }
        _ => Fate::Keep,
    }
}

/// `socket(AF_PACKET, ty, protocol)`: `ESOCKTNOSUPPORT` for a type other than `SOCK_DGRAM` and
/// `SOCK_RAW` (as the kernel).
pub fn socket(core: &mut Core, base: i32, flags: i32, protocol: i32) -> io::Result<Handle> {
    let raw = match base {
        libc::SOCK_RAW => true,
        libc::SOCK_DGRAM => false,
        _ => return Err(io_error(libc::ESOCKTNOSUPPORT)),
    };
    let (pe, app) = crate::sock::new_pair(libc::SOCK_SEQPACKET, flags)?;
    Ok(core.add(
        libc::AF_PACKET,
        Kind::Packet(Packet::new(raw, protocol)),
        pe,
        app,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_ll_layout() {
        let b = sll(
            0x0800,
            2,
            ARPHRD_ETHER,
            PACKET_BROADCAST,
            Some(&[1, 2, 3, 4, 5, 6]),
        );
        assert_eq!(
            b,
            [17, 0, 8, 0, 2, 0, 0, 0, 1, 0, 1, 6, 1, 2, 3, 4, 5, 6, 0, 0]
        );
    }

    #[test]
    fn packet_types() {
        let mac = [2, 0, 0, 0, 0, 1];
        assert_eq!(pkttype(&[0xff; 6], &mac), PACKET_BROADCAST);
        assert_eq!(pkttype(&[0x33, 0x33, 0, 0, 0, 1], &mac), PACKET_MULTICAST);
        assert_eq!(pkttype(&mac, &mac), PACKET_HOST);
        assert_eq!(pkttype(&[2, 0, 0, 0, 0, 2], &mac), PACKET_OTHERHOST);
    }

    #[test]
    fn protocol_and_interface_filter() {
        let mut p = Packet::new(false, i32::from(0x0800u16.to_be()));
        assert_eq!(p.proto, 0x0800);
        assert!(p.wants(2, 0x0800) && !p.wants(2, 0x86dd));
        p.ifindex = 3;
        assert!(!p.wants(2, 0x0800) && p.wants(3, 0x0800));
        let all = Packet::new(true, i32::from(crate::kind::packet::ETH_P_ALL.to_be()));
        assert!(all.wants(2, 0x86dd) && all.wants(5, 0x0806));
        assert!(!Packet::new(true, 0).wants(2, 0x0800));
    }
}
