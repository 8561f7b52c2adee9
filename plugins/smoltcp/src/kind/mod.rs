//! What kind of socket a [`crate::sock::Sock`] is, with each protocol's state. A leaf of the
//! plug-in's module graph: these types depend on the interfaces ([`crate::net`]) and the
//! multicast options ([`crate::mcast`]) only; the modules that drive them ([`crate::tcp`],
//! [`crate::udp`], …) depend on these.

pub mod netlink;
pub mod packet;
pub mod rawip;
pub mod tcp;
pub mod udp;

/// What kind of socket.
pub enum Kind {
    Tcp(tcp::Tcp),
    Udp(udp::Udp),
    Netlink(netlink::Nl),
    /// `AF_PACKET` ([`crate::packet`]).
    Packet(packet::Packet),
    /// Raw `IPPROTO_ICMPV6`/`IPPROTO_ICMP` ([`crate::rawip`]).
    RawIp(rawip::RawIp),
}
