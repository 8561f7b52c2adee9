//! `ioth_smoltcp.so`: a user-space TCP/IP stack (smoltcp 0.14) whose interfaces are VDE ports,
//! for ioth. Runs in the host process (`ioth-host`), which loads it through the libioth plug-in ABI.
//!
//! - `newstack(vnls)` ([`stack::Stack::new`]): one Ethernet interface per VNL, opened with
//!   libvdeplug (same VNL syntax and default names `vde0`, `vde1`, … as vdestack), down and
//!   without address, plus `lo` (index 1, up, 127.0.0.1/8 and ::1/128), and one event-loop
//!   thread ([`evloop`]). The application configures the interfaces with rtnetlink on an
//!   `AF_NETLINK` socket of the stack ([`netlink`]): links up/down, MAC, MTU, addresses (with
//!   lifetimes), routes through a gateway (a default route among them) and on-link routes.
//!   ARP, NDP, MLD/IGMP and ICMP echo replies are smoltcp's; UDP multicast memberships and
//!   options are [`mcast`]'s.
//! - Sockets are "proxied, fd data" (docs/proxied.md): `socket` returns the application's end of
//!   a socketpair (`SOCK_STREAM` for TCP, `SOCK_SEQPACKET` for UDP and netlink) and the plug-in
//!   pumps the other end; the data functions stay libc's. Control calls ([`ffi`]) are
//!   non-blocking: `accept` answers `EAGAIN`, `connect` `EINPROGRESS`.
//! - TCP ([`tcp`]) and UDP ([`udp`]) over IPv4 and IPv6; what smoltcp lacks (ephemeral ports,
//!   a listen backlog, a loopback, routing between interfaces) is added here ([`net`]), and
//!   so is IPv6 fragmentation ([`frag`]; smoltcp fragments IPv4): datagrams up to 64 KiB.
//! - `delstack` stops the loop and closes every socket and VDE connection.
#![deny(unsafe_code)]

mod addr;
mod counts;
mod device;
mod diag;
mod evloop;
mod ffi;
mod frag;
#[doc(hidden)]
pub mod fuzzing;
mod kind;
#[cfg(test)]
mod lo_tests;
mod mcast;
mod net;
mod netlink;
mod packet;
mod rawip;
mod reasm;
mod sock;
mod stack;
mod sys;
mod tcp;
mod udp;
