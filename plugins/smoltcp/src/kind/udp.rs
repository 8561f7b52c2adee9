//! The state of a UDP socket ([`crate::udp`] drives it): its smoltcp sockets ([`Leg`]) with
//! copies of what they queued, datagrams waiting either way, IP-level options.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp::{self, UdpMetadata};

use crate::mcast;

/// Datagrams queued per direction in each smoltcp socket.
pub(crate) const PACKETS: usize = 128;
/// Payload bytes per direction in each smoltcp socket.
pub(crate) const PAYLOAD: usize = 256 * 1024;

/// How long the head datagram of a smoltcp socket may wait (for a neighbour that never
/// answers) before it is given up: Linux's ARP/NDP gives up after about 3 s (3 probes, 1 s
/// apart). smoltcp retries every second, so a stuck one is given up within 3 to 4 s.
pub const NEIGH_STALL: Duration = Duration::from_secs(3);

/// A copy of one datagram queued in a smoltcp socket's transmit buffer.
pub(crate) struct Queued {
    pub(crate) payload: Vec<u8>,
    pub(crate) dst: UdpMetadata,
    /// The bytes it takes there: the payload, and the padding smoltcp put before it when the
    /// ring wrapped (dropped on its own by a dispatch that fails).
    pub(crate) footprint: usize,
}

/// One smoltcp socket of a UDP socket, in the set of interface `iface`.
pub(crate) struct Leg {
    pub(crate) iface: usize,
    pub(crate) handle: SocketHandle,
    /// Copies of what its transmit buffer holds, oldest first (see the module doc).
    pub(crate) queued: VecDeque<Queued>,
    /// The footprints of `queued`: equal to smoltcp's `send_queue()` after each accounting.
    pub(crate) queued_bytes: usize,
    /// Since when the head of `queued` has been at the head.
    pub(crate) head_since: std::time::Instant,
}

impl Leg {
    pub(crate) fn new(iface: usize, handle: SocketHandle) -> Leg {
        Leg {
            iface,
            handle,
            queued: VecDeque::new(),
            queued_bytes: 0,
            head_since: std::time::Instant::now(),
        }
    }

    /// Queues `payload` to `dst` (and from its source, if given) in smoltcp socket `k` (this
    /// leg's), keeping a copy.
    pub(crate) fn enqueue(
        &mut self,
        k: &mut udp::Socket<'_>,
        payload: &[u8],
        dst: UdpMetadata,
    ) -> Result<(), udp::SendError> {
        let before = k.send_queue();
        k.send_slice(payload, dst)?;
        let footprint = k.send_queue().saturating_sub(before);
        if self.queued.is_empty() {
            self.head_since = std::time::Instant::now();
        }
        self.queued_bytes += footprint;
        self.queued.push_back(Queued {
            payload: payload.to_vec(),
            dst,
            footprint,
        });
        Ok(())
    }

    /// After smoltcp's poll: forgets the copies of what left (`bytes`: smoltcp's
    /// `send_queue()`). An empty datagram takes no bytes: one at the head is only known to have
    /// left once something after it has (else it is taken as stuck, and given up late).
    pub(crate) fn account(&mut self, bytes: usize) {
        let mut moved = false;
        while self.queued_bytes > bytes {
            let Some(h) = self.queued.front_mut() else {
                break;
            };
            let pad = h.footprint - h.payload.len();
            if pad > 0 && self.queued_bytes - pad == bytes {
                // A dispatch that failed dropped the padding before the head: still there.
                h.footprint -= pad;
                self.queued_bytes -= pad;
                break;
            }
            self.queued_bytes -= h.footprint;
            self.queued.pop_front();
            moved = true;
        }
        if self.queued_bytes != bytes {
            // Out of step (never expected): start over with what smoltcp says.
            self.queued.clear();
            self.queued_bytes = bytes;
        }
        if moved {
            self.head_since = std::time::Instant::now();
        }
    }

    /// Whether the head datagram has waited for longer than [`NEIGH_STALL`].
    pub(crate) fn stuck(&self) -> bool {
        !self.queued.is_empty() && self.head_since.elapsed() >= NEIGH_STALL
    }
}

pub struct Udp {
    /// Bound address (port non-zero).
    pub local: Option<SocketAddr>,
    /// Connected peer.
    pub remote: Option<SocketAddr>,
    pub(crate) socks: Vec<Leg>,
    /// A datagram read from the pair that smoltcp had no room for.
    pub(crate) pending: Option<(Vec<u8>, SocketAddr)>,
    /// Reassembled IPv6 datagrams ([`crate::frag`]) and their sources, for the pair.
    pub(crate) inbox: VecDeque<(Vec<u8>, SocketAddr)>,
    /// Bytes in `inbox`.
    pub(crate) inbox_bytes: usize,
    /// The pair reached EOF.
    pub(crate) eof: bool,
    /// IP-level options and multicast memberships.
    pub ip: mcast::Ip,
    /// Payload and datagrams each way, for sock_diag ([`crate::diag`]).
    pub counts: crate::counts::Counts,
}

impl Udp {
    pub fn new() -> Udp {
        Udp {
            local: None,
            remote: None,
            socks: Vec::new(),
            pending: None,
            inbox: VecDeque::new(),
            inbox_bytes: 0,
            eof: false,
            ip: mcast::Ip::default(),
            counts: Default::default(),
        }
    }

    /// Whether it receives on interface `i`.
    pub fn listens_on(&self, i: usize) -> bool {
        self.socks.iter().any(|l| l.iface == i)
    }

    /// Queues a datagram [`crate::frag`] reassembled for it (dropped when the queue is full,
    /// as smoltcp drops one its socket has no room for).
    pub fn take_reassembled(&mut self, payload: Vec<u8>, src: SocketAddr) {
        if self.inbox_bytes + payload.len() <= PAYLOAD && self.inbox.len() < PACKETS {
            self.inbox_bytes += payload.len();
            self.inbox.push_back((payload, src));
        }
    }
}
