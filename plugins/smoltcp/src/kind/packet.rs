//! The state of an `AF_PACKET` socket ([`crate::packet`] drives it).

/// `ETH_P_ALL`: every protocol.
pub(crate) const ETH_P_ALL: u16 = 0x0003;

/// One packet socket.
pub struct Packet {
    /// `SOCK_RAW` (whole frames), else `SOCK_DGRAM` (payloads).
    pub raw: bool,
    /// Ethertype (host order) it receives; 0: nothing (until bound with one).
    pub proto: u16,
    /// Interface index it is bound to; 0: every interface.
    pub ifindex: u32,
    /// The protocol socket(2) was given (`SO_PROTOCOL`, which `bind` does not change).
    pub protocol: i32,
    /// A frame the interface's VDE port had no room for yet (its interface position).
    pub(crate) pending: Option<(usize, Vec<u8>)>,
    /// The pair reached EOF.
    pub(crate) eof: bool,
}

impl Packet {
    /// A packet socket of type `raw`/dgram for the `protocol` socket(2) was given (an ethertype
    /// in network order).
    pub fn new(raw: bool, protocol: i32) -> Packet {
        Packet {
            raw,
            proto: u16::from_be(protocol as u16),
            ifindex: 0,
            protocol,
            pending: None,
            eof: false,
        }
    }

    /// Whether it takes frames of `ethertype` from interface `index`.
    pub(crate) fn wants(&self, index: u32, ethertype: u16) -> bool {
        (self.ifindex == 0 || self.ifindex == index)
            && self.proto != 0
            && (self.proto == ETH_P_ALL || self.proto == ethertype)
    }

    /// The events to poll the plug-in's end for.
    pub fn interest(&self) -> i16 {
        if self.pending.is_none() && !self.eof {
            libc::POLLIN
        } else {
            0
        }
    }
}
