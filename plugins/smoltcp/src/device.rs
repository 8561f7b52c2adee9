//! The two kinds of smoltcp devices of a stack: a VDE port (Ethernet frames through libvdeplug)
//! and the loopback (IP packets queued in memory). Runs on the stack's event-loop thread.
//!
//! Contract:
//! - `receive` never blocks: on a datagram data fd (vde://, ptp://, udp://, …, made
//!   non-blocking) it reads until `EAGAIN`; on any other kind (switch://, hub://, cmd://) a
//!   zero-timeout poll comes before each `vde_recv`;
//! - at most [`RX_BUDGET`] frames per [`VdeDevice::refill`], so that one busy network cannot
//!   starve the others (poll(2) reports the data fd readable again at once);
//! - a frame the VDE side refuses with `EAGAIN`/`ENOBUFS` is kept (one frame) and `transmit`
//!   says "exhausted" until it leaves: the event loop then polls the data fd for `POLLOUT`
//!   ([`VdeDevice::tx_blocked`]) — back-pressure, not loss;
//! - while [`VdeDevice::tap`] is on (a packet socket may want them, [`crate::packet`]), a copy
//!   of every frame received goes to [`VdeDevice::captured`] before smoltcp sees it; frames a
//!   packet socket sends go out through [`VdeDevice::inject`], past smoltcp.

use std::collections::VecDeque;
use std::io;
use std::os::fd::BorrowedFd;

use ioth_plugin_sdk::vde::vdeplug::{Conn, ETHBUFSIZE};
use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Frames received per device per turn of the event loop.
pub const RX_BUDGET: usize = 128;
/// Socket buffers asked for on a datagram data fd (best effort: `SO_*BUFFORCE` needs
/// CAP_NET_ADMIN, the plain options are capped by `net.core.[rw]mem_max`).
const DATA_SOCK_BUF: libc::c_int = 4 * 1024 * 1024;
/// An Ethernet header.
pub const ETH_HLEN: usize = 14;
/// Frames kept in [`VdeDevice::captured`] at most (the event loop takes them every turn, and
/// a turn receives at most [`RX_BUDGET`]).
const CAPTURED_MAX: usize = 4 * RX_BUDGET;
/// MTU of the loopback interface (IP packets, no link header).
pub const LO_MTU: usize = 65535;

/// A VDE port as a smoltcp Ethernet device.
pub struct VdeDevice {
    conn: Conn,
    /// The data fd carries one frame per datagram and is non-blocking.
    dgram: bool,
    rx_buf: Vec<u8>,
    tx_buf: Vec<u8>,
    /// Length of a frame in `tx_buf` that VDE refused for now.
    pending: Option<usize>,
    /// IP MTU of the interface.
    pub mtu: usize,
    budget: usize,
    /// The network hung up (EOF or an error other than EAGAIN on receive).
    pub dead: bool,
    /// Copy received frames into `captured`.
    pub tap: bool,
    /// Frames received while `tap` was on, oldest first, for packet sockets.
    pub captured: VecDeque<Vec<u8>>,
    /// TCP listening endpoints (address, port) of this interface and how many connection
    /// requests (SYNs) each can still take before smoltcp's next poll: its free listening sockets
    /// ([`crate::tcp::set_syn_gates`]). A request beyond that is dropped here, as Linux drops it
    /// when a listener's queues are full, so that the client sends it again — smoltcp itself
    /// would answer it with a reset (`ECONNREFUSED`).
    pub syn_room: Vec<(Option<std::net::IpAddr>, u16, usize)>,
    /// Frames and bytes each way, for `IFLA_STATS64` ([`crate::diag`]).
    pub counts: crate::counts::IfCounts,
}

/// The destination of a TCP connection request (SYN without ACK) in Ethernet frame `f`, IPv4 or
/// IPv6 (no extension headers, not a fragment); `None` for any other frame.
fn syn_destination(f: &[u8]) -> Option<(std::net::IpAddr, u16)> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ethertype = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    let (l4, proto, dst) = match ethertype {
        0x0800 => {
            let ihl = usize::from(*f.get(14)? & 0x0f) * 4;
            let frag = u16::from_be_bytes([*f.get(20)?, *f.get(21)?]) & 0x3fff;
            let dst: [u8; 4] = f.get(30..34)?.try_into().ok()?;
            if ihl < 20 || frag != 0 {
                return None;
            }
            (ETH_HLEN + ihl, *f.get(23)?, IpAddr::V4(Ipv4Addr::from(dst)))
        }
        0x86dd => {
            let dst: [u8; 16] = f.get(38..54)?.try_into().ok()?;
            (ETH_HLEN + 40, *f.get(20)?, IpAddr::V6(Ipv6Addr::from(dst)))
        }
        _ => return None,
    };
    let flags = *f.get(l4 + 13)?;
    if proto != 6 || flags & 0x12 != 0x02 {
        return None;
    }
    Some((dst, u16::from_be_bytes([*f.get(l4 + 2)?, *f.get(l4 + 3)?])))
}

fn is_datagram_socket(fd: BorrowedFd<'_>) -> bool {
    use nix::sys::socket::{getsockopt, sockopt, SockType};
    matches!(
        getsockopt(&fd, sockopt::SockType),
        Ok(SockType::Datagram | SockType::SeqPacket)
    )
}

fn readable(fd: BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = [libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    matches!(crate::sys::poll(&mut p, 0), Ok(1)) && p[0].revents & libc::POLLIN != 0
}

fn is_full(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR)
    )
}

impl VdeDevice {
    /// Wraps an open VDE connection.
    pub fn new(conn: Conn, mtu: usize) -> io::Result<VdeDevice> {
        let Some(datafd) = conn.datafd() else {
            return Err(ioth_plugin_sdk::error(
                libc::EIO,
                "the VDE connection has no data fd",
            ));
        };
        let dgram = is_datagram_socket(datafd);
        if dgram {
            crate::sys::set_nonblocking(datafd, true)?;
            for (force, plain) in [
                (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
                (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
            ] {
                if crate::sys::setsockopt_int(datafd, libc::SOL_SOCKET, force, DATA_SOCK_BUF)
                    .is_err()
                {
                    let _ =
                        crate::sys::setsockopt_int(datafd, libc::SOL_SOCKET, plain, DATA_SOCK_BUF);
                }
            }
        }
        Ok(VdeDevice {
            conn,
            dgram,
            rx_buf: vec![0; ETHBUFSIZE],
            tx_buf: vec![0; ETHBUFSIZE],
            pending: None,
            mtu,
            budget: RX_BUDGET,
            dead: false,
            tap: false,
            syn_room: Vec::new(),
            counts: Default::default(),
            captured: VecDeque::new(),
        })
    }

    /// Sends `frame` (a whole Ethernet frame from a packet socket) past smoltcp. `false`: a
    /// refused frame is still waiting (try again once [`VdeDevice::tx_blocked`] clears); a frame
    /// VDE refuses for now is kept like smoltcp's own.
    pub fn inject(&mut self, frame: &[u8]) -> bool {
        if self.pending.is_some() {
            return false;
        }
        match self.conn.send(frame) {
            Ok(_) => self.counts.tx(frame.len()),
            Err(e) if is_full(&e) && frame.len() <= self.tx_buf.len() => {
                self.tx_buf[..frame.len()].copy_from_slice(frame);
                self.pending = Some(frame.len());
            }
            Err(_) => self.counts.tx_dropped += 1,
        }
        true
    }

    /// The fd to poll for incoming frames.
    pub fn datafd(&self) -> Option<BorrowedFd<'_>> {
        self.conn.datafd()
    }

    /// The control fd (hangs up when the switch goes away), if the network has one.
    pub fn ctlfd(&self) -> Option<BorrowedFd<'_>> {
        self.conn.ctlfd()
    }

    /// Whether a refused frame waits for the data fd to become writable.
    pub fn tx_blocked(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether the receive budget of this turn is spent (frames may be waiting).
    pub fn rx_exhausted(&self) -> bool {
        self.budget == 0
    }

    /// A new turn of the event loop: a fresh receive budget.
    pub fn refill(&mut self) {
        self.budget = RX_BUDGET;
    }

    /// Tries the refused frame again.
    pub fn flush(&mut self) {
        if let Some(n) = self.pending {
            match self.conn.send(&self.tx_buf[..n]) {
                Err(e) if is_full(&e) => {}
                Ok(_) => {
                    self.counts.tx(n);
                    self.pending = None;
                }
                // Refused for good (lost, as on a real link).
                Err(_) => {
                    self.counts.tx_dropped += 1;
                    self.pending = None;
                }
            }
        }
    }
}

/// A received frame, borrowed from the device's buffer.
pub struct VdeRx<'a>(&'a [u8]);

/// Room for one frame to send.
pub struct VdeTx<'a> {
    conn: &'a Conn,
    buf: &'a mut [u8],
    pending: &'a mut Option<usize>,
    counts: &'a mut crate::counts::IfCounts,
}

impl phy::RxToken for VdeRx<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.0)
    }
}

impl phy::TxToken for VdeTx<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let len = len.min(self.buf.len());
        let r = f(&mut self.buf[..len]);
        match self.conn.send(&self.buf[..len]) {
            Ok(_) => self.counts.tx(len),
            Err(e) if is_full(&e) => *self.pending = Some(len),
            Err(_) => self.counts.tx_dropped += 1,
        }
        r
    }
}

impl phy::Device for VdeDevice {
    type RxToken<'a> = VdeRx<'a>;
    type TxToken<'a> = VdeTx<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(VdeRx<'_>, VdeTx<'_>)> {
        if self.pending.is_some() || self.dead {
            // Answers (ARP replies, ACKs) need the transmit side: wait until it is free.
            return None;
        }
        let Self {
            conn,
            dgram,
            rx_buf,
            tx_buf,
            pending,
            budget,
            dead,
            tap,
            captured,
            syn_room,
            counts,
            ..
        } = self;
        while *budget > 0 {
            let datafd = conn.datafd()?;
            if !*dgram && !readable(datafd) {
                return None;
            }
            *budget -= 1;
            match conn.recv(rx_buf) {
                Ok(0) => {
                    *dead = !*dgram;
                    return None;
                }
                // Shorter than a header: an event libvdeplug handled itself.
                Ok(n) if n < ETH_HLEN => continue,
                Ok(n) => {
                    counts.rx(n);
                    if !syn_room.is_empty() {
                        let room = syn_destination(&rx_buf[..n]).and_then(|(ip, port)| {
                            syn_room
                                .iter_mut()
                                .find(|(a, p, _)| *p == port && a.is_none_or(|a| a == ip))
                        });
                        match room {
                            Some((_, _, 0)) => {
                                counts.rx_dropped += 1;
                                continue;
                            }
                            Some((_, _, left)) => *left -= 1,
                            None => {}
                        }
                    }
                    if *tap && captured.len() < CAPTURED_MAX {
                        captured.push_back(rx_buf[..n].to_vec());
                    }
                    return Some((
                        VdeRx(&rx_buf[..n]),
                        VdeTx {
                            conn,
                            buf: tx_buf,
                            pending,
                            counts,
                        },
                    ));
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                // EAGAIN: drained; anything else was consumed by this recv.
                Err(_) => return None,
            }
        }
        None
    }

    fn transmit(&mut self, _now: Instant) -> Option<VdeTx<'_>> {
        if self.pending.is_some() {
            self.flush();
            if self.pending.is_some() {
                return None;
            }
        }
        Some(VdeTx {
            conn: &self.conn,
            buf: &mut self.tx_buf,
            pending: &mut self.pending,
            counts: &mut self.counts,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + ETH_HLEN;
        // No `max_burst_size`: smoltcp 0.14 compares it (× MSS, in bytes) with the *scaled*
        // window field, so with window scaling it never bites; the windows are bounded by the
        // TCP buffer sizes instead (crate::sock::TCP_RCVBUF).
        caps
    }
}

/// The loopback: IP packets sent are queued and received on the next poll.
pub struct LoopDevice {
    queue: VecDeque<Vec<u8>>,
    budget: usize,
    /// Packets and bytes (sent and received alike), for `IFLA_STATS64` ([`crate::diag`]).
    pub counts: crate::counts::IfCounts,
}

impl LoopDevice {
    /// An empty loopback.
    pub fn new() -> LoopDevice {
        LoopDevice {
            queue: VecDeque::new(),
            budget: RX_BUDGET,
            counts: Default::default(),
        }
    }

    /// Whether packets wait to be received.
    pub fn has_pending(&self) -> bool {
        !self.queue.is_empty()
    }

    /// A new turn of the event loop.
    pub fn refill(&mut self) {
        self.budget = RX_BUDGET;
    }
}

/// A packet taken from the loopback queue.
pub struct LoopRx(Vec<u8>);

/// Room for one packet on the loopback queue.
pub struct LoopTx<'a>(&'a mut VecDeque<Vec<u8>>, &'a mut crate::counts::IfCounts);

impl phy::RxToken for LoopRx {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

impl phy::TxToken for LoopTx<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut p = vec![0; len];
        let r = f(&mut p);
        self.1.tx(len);
        self.0.push_back(p);
        r
    }
}

impl phy::Device for LoopDevice {
    type RxToken<'a> = LoopRx;
    type TxToken<'a> = LoopTx<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(LoopRx, LoopTx<'_>)> {
        if self.budget == 0 {
            return None;
        }
        let p = self.queue.pop_front()?;
        self.budget -= 1;
        self.counts.rx(p.len());
        Some((LoopRx(p), LoopTx(&mut self.queue, &mut self.counts)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<LoopTx<'_>> {
        Some(LoopTx(&mut self.queue, &mut self.counts))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = LO_MTU;
        caps.checksum = ChecksumCapabilities::ignored();
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::syn_destination;

    /// An Ethernet frame with an IPv4 (or IPv6) header and TCP flags `flags` to port 5000.
    fn frame(v6: bool, flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        if v6 {
            f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
            let mut ip = vec![0u8; 40];
            ip[0] = 0x60;
            ip[6] = 6;
            ip[24..40].copy_from_slice(&"fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
            f.extend(ip);
        } else {
            f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            let mut ip = vec![0u8; 20];
            ip[0] = 0x45;
            ip[9] = 6;
            ip[16..20].copy_from_slice(&[10, 0, 0, 1]);
            f.extend(ip);
        }
        let mut tcp = vec![0u8; 20];
        tcp[2..4].copy_from_slice(&5000u16.to_be_bytes());
        tcp[13] = flags;
        f.extend(tcp);
        f
    }

    #[test]
    fn connection_requests_are_recognised() {
        let v4 = syn_destination(&frame(false, 0x02)).unwrap();
        assert_eq!(v4, ("10.0.0.1".parse().unwrap(), 5000));
        let v6 = syn_destination(&frame(true, 0x02)).unwrap();
        assert_eq!(v6, ("fd00::1".parse().unwrap(), 5000));
        // SYN+ACK, a plain ACK, and a truncated frame are not requests.
        assert_eq!(syn_destination(&frame(false, 0x12)), None);
        assert_eq!(syn_destination(&frame(true, 0x10)), None);
        assert_eq!(syn_destination(&frame(false, 0x02)[..40]), None);
        // A fragment is not looked into.
        let mut frag = frame(false, 0x02);
        frag[20] = 0x20;
        assert_eq!(syn_destination(&frag), None);
    }
}
