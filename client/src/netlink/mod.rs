//! Network configuration of a stack over rtnetlink: the nlinline functions (`if_nametoindex`,
//! `linksetupdown`, `ipaddr_add/del`, `iproute_add/del`, `iplink_add/del`,
//! `linksetaddr/linkgetaddr`, `linksetmtu`) and the dumps behind `getifaddrs`, as methods of
//! [`Stack`].
//!
//! Runs in the application. Every call opens an `AF_NETLINK`/`NETLINK_ROUTE` socket **on the
//! stack** with [`Stack::msocket`], so it configures whatever network that stack's plug-in
//! serves: the kernel stack of the host's network namespace, or a user-space stack that speaks
//! rtnetlink. Messages are built and parsed with `netlink-packet-route`.
//!
//! Contract: arguments are checked before anything is sent (a prefix longer than the address,
//! mixed address families, a malformed interface name: `EINVAL`, [`Error::InvalidArgument`]);
//! everything else is the stack's decision, and a NACK comes back as [`Error::Stack`] with the
//! stack's errno (`ENODEV` for an unknown interface, `EEXIST`, `EADDRNOTAVAIL`, …) and a message
//! naming the call, its arguments and, when the kernel gave one, its reason.

mod conn;
mod msg;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use self::conn::{nl_error, Conn};
use self::msg::*;
use crate::{Error, Result, Stack};

/// `IFNAMSIZ`: interface names are at most 15 bytes.
const IFNAMSIZ: usize = 16;

/// One network interface of a stack ([`Stack::interfaces`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Interface index.
    pub index: u32,
    /// Name (`lo`, `vde0`, …).
    pub name: String,
    /// `IFF_*` flags (`IFF_UP`, `IFF_RUNNING`, `IFF_LOOPBACK`, …).
    pub flags: u32,
    /// Link-layer type, an `ARPHRD_*` value (1 = Ethernet, 772 = loopback).
    pub link_type: u16,
    /// MTU in bytes.
    pub mtu: u32,
    /// Hardware address (6 bytes for Ethernet; empty if the link has none).
    pub hwaddr: Vec<u8>,
    /// Hardware broadcast address (empty if none).
    pub broadcast: Vec<u8>,
    /// Link kind (`bridge`, `veth`, `tun`, …) when the stack reports one.
    pub kind: Option<String>,
}

impl Interface {
    /// The MAC address, when the hardware address is 6 bytes long.
    pub fn mac(&self) -> Option<[u8; 6]> {
        self.hwaddr.as_slice().try_into().ok()
    }

    /// Whether the interface is administratively up (`IFF_UP`).
    pub fn is_up(&self) -> bool {
        self.flags & libc::IFF_UP as u32 != 0
    }
}

/// One IP address of an interface ([`Stack::addresses`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddress {
    /// Index of the interface it belongs to.
    pub index: u32,
    /// `IFA_LABEL` (IPv4 only: the interface name or an alias such as `eth0:1`).
    pub label: Option<String>,
    /// The address (`IFA_LOCAL`, or `IFA_ADDRESS` when there is no local address).
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// The peer of a point-to-point address (`IFA_ADDRESS` when it differs from the local one).
    pub peer: Option<IpAddr>,
    /// IPv4 broadcast address, if set.
    pub broadcast: Option<Ipv4Addr>,
    /// `IFA_F_*` flags (`IFA_F_PERMANENT`, `IFA_F_NODAD`, `IFA_F_TENTATIVE`, …).
    pub flags: u32,
    /// Scope, an `RT_SCOPE_*` value (0 universe, 253 link, 254 host).
    pub scope: u8,
}

/// One route of the main table ([`Stack::routes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination network (the unspecified address for a default route).
    pub dst: IpAddr,
    /// Destination prefix length (0 for a default route).
    pub prefix_len: u8,
    /// Gateway, if any.
    pub gateway: Option<IpAddr>,
    /// Output interface index, if any.
    pub ifindex: Option<u32>,
    /// Routing table.
    pub table: u32,
    /// `RTPROT_*` origin (2 kernel, 3 boot, 4 static).
    pub protocol: u8,
    /// `RT_SCOPE_*` scope.
    pub scope: u8,
    /// `RTN_*` type (1 unicast, 2 local, …).
    pub kind: u8,
}

impl Stack {
    fn nl(&self, op: &str) -> Result<Conn> {
        Conn::open(self, op)
    }

    /// One link of the stack, by index (`RTM_GETLINK`): `ENODEV` if there is none.
    pub fn interface(&self, ifindex: u32) -> Result<Interface> {
        let op = format!("interface {ifindex}");
        let replies =
            self.nl(&op)?
                .request(RouteNetlinkMessage::GetLink(link_msg(ifindex)), 0, &op)?;
        replies
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(interface_of(l)),
                _ => None,
            })
            .ok_or_else(|| nl_error(&op, libc::ENODEV, Some("no link in the reply")))
    }

    /// The index of interface `name` (`if_nametoindex`, `RTM_GETLINK` by `IFLA_IFNAME`):
    /// `ENODEV` if the stack has no such interface.
    pub fn if_nametoindex(&self, name: &str) -> Result<u32> {
        let op = format!("if_nametoindex {name:?}");
        if name.is_empty() || name.len() >= IFNAMSIZ || name.contains('\0') {
            return Err(nl_error(
                &op,
                libc::ENODEV,
                Some("no interface can have this name"),
            ));
        }
        let mut m = link_msg(0);
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let replies = self
            .nl(&op)?
            .request(RouteNetlinkMessage::GetLink(m), 0, &op)?;
        replies
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })
            .ok_or_else(|| nl_error(&op, libc::ENODEV, Some("no link in the reply")))
    }

    /// Brings interface `ifindex` up or down (`linksetupdown`, `RTM_SETLINK` on `IFF_UP`).
    pub fn link_set_up(&self, ifindex: u32, up: bool) -> Result<()> {
        let op = format!(
            "link_set_up dev {ifindex} {}",
            if up { "up" } else { "down" }
        );
        let mut m = link_msg(ifindex);
        m.header.flags = if up {
            LinkFlags::Up
        } else {
            LinkFlags::empty()
        };
        m.header.change_mask = LinkFlags::Up;
        self.nl(&op)?
            .request(RouteNetlinkMessage::SetLink(m), 0, &op)
            .map(drop)
    }

    /// Sets the MAC address of interface `ifindex` (`linksetaddr`).
    pub fn link_set_mac(&self, ifindex: u32, mac: [u8; 6]) -> Result<()> {
        let op = format!("link_set_mac dev {ifindex} {}", mac_string(&mac));
        let mut m = link_msg(ifindex);
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        self.nl(&op)?
            .request(RouteNetlinkMessage::NewLink(m), 0, &op)
            .map(drop)
    }

    /// The MAC address of interface `ifindex` (`linkgetaddr`): `ENOENT` if its hardware address
    /// is not a 6-byte one.
    pub fn link_get_mac(&self, ifindex: u32) -> Result<[u8; 6]> {
        let i = self.interface(ifindex)?;
        i.hwaddr
            .get(..6)
            .and_then(|m| <[u8; 6]>::try_from(m).ok())
            .ok_or_else(|| {
                nl_error(
                    &format!("link_get_mac dev {ifindex}"),
                    libc::ENOENT,
                    Some("the link has no 6-byte hardware address"),
                )
            })
    }

    /// Sets the MTU of interface `ifindex` (`linksetmtu`).
    pub fn link_set_mtu(&self, ifindex: u32, mtu: u32) -> Result<()> {
        let op = format!("link_set_mtu dev {ifindex} mtu {mtu}");
        let mut m = link_msg(ifindex);
        m.attributes.push(LinkAttribute::Mtu(mtu));
        self.nl(&op)?
            .request(RouteNetlinkMessage::NewLink(m), 0, &op)
            .map(drop)
    }

    /// Adds `addr/prefix_len` to interface `ifindex` (`ipaddr_add`). `EEXIST` if it is there.
    pub fn ipaddr_add(&self, addr: IpAddr, prefix_len: u8, ifindex: u32) -> Result<()> {
        self.ipaddr_add_flags(addr, prefix_len, ifindex, 0, 0)
    }

    /// [`Stack::ipaddr_add`] with `IFA_F_*` flags (e.g. `IFA_F_NODAD` for an IPv6 address that is
    /// usable at once, without duplicate address detection) and an `RT_SCOPE_*` scope (0 =
    /// universe): nlinline's `nl_addrdata2prefix`.
    pub fn ipaddr_add_flags(
        &self,
        addr: IpAddr,
        prefix_len: u8,
        ifindex: u32,
        flags: u32,
        scope: u8,
    ) -> Result<()> {
        let op = format!("ipaddr_add {addr}/{prefix_len} dev {ifindex}");
        check_prefix(&op, &addr, prefix_len)?;
        let m = addr_msg(addr, prefix_len, ifindex, flags, scope);
        self.nl(&op)?
            .request(
                RouteNetlinkMessage::NewAddress(m),
                NLM_F_CREATE | NLM_F_EXCL,
                &op,
            )
            .map(drop)
    }

    /// Removes `addr/prefix_len` from interface `ifindex` (`ipaddr_del`). `EADDRNOTAVAIL` if it
    /// is not there.
    pub fn ipaddr_del(&self, addr: IpAddr, prefix_len: u8, ifindex: u32) -> Result<()> {
        let op = format!("ipaddr_del {addr}/{prefix_len} dev {ifindex}");
        check_prefix(&op, &addr, prefix_len)?;
        let m = addr_msg(addr, prefix_len, ifindex, 0, 0);
        self.nl(&op)?
            .request(RouteNetlinkMessage::DelAddress(m), 0, &op)
            .map(drop)
    }

    /// Adds a route (`iproute_add`) to `dst` (network address and prefix length; `None` or a
    /// prefix of 0 = the default route), through gateway `gw` and/or out of interface `ifindex`
    /// (needed for a link-local IPv6 gateway, or alone for an on-link route). The addresses must
    /// be of one family. `EEXIST` if the route is there.
    pub fn iproute_add(
        &self,
        dst: Option<(IpAddr, u8)>,
        gw: Option<IpAddr>,
        ifindex: Option<u32>,
    ) -> Result<()> {
        self.iproute_ext(true, None, dst, gw, ifindex, 0, 0)
    }

    /// Removes a route (`iproute_del`); arguments as [`Stack::iproute_add`]. The route is matched
    /// whatever its scope and origin (as `ip route del`). `ESRCH` if there is no such route.
    pub fn iproute_del(
        &self,
        dst: Option<(IpAddr, u8)>,
        gw: Option<IpAddr>,
        ifindex: Option<u32>,
    ) -> Result<()> {
        self.iproute_ext(false, None, dst, gw, ifindex, 0, 0)
    }

    /// `iproute_add`/`iproute_del` with everything the C ABI can say: the address family when
    /// neither `dst` nor `gw` gives it (`Some(true)` = IPv6), an `RTN_*` route type and an
    /// `RT_SCOPE_*` scope (0 = the default for the request: unicast; universe with a gateway,
    /// link without; any scope for a deletion).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn iproute_ext(
        &self,
        add: bool,
        v6: Option<bool>,
        dst: Option<(IpAddr, u8)>,
        gw: Option<IpAddr>,
        ifindex: Option<u32>,
        kind: u8,
        scope: u8,
    ) -> Result<()> {
        let verb = if add { "iproute_add" } else { "iproute_del" };
        let op = format!("{verb} {}", route_string(dst, gw, ifindex));
        let family = v6.map(|v6| {
            if v6 {
                AddressFamily::Inet6
            } else {
                AddressFamily::Inet
            }
        });
        let m = route_msg(&op, family, dst, gw, ifindex, add, kind, scope)?;
        let (msg, flags) = if add {
            (RouteNetlinkMessage::NewRoute(m), NLM_F_CREATE | NLM_F_EXCL)
        } else {
            (RouteNetlinkMessage::DelRoute(m), 0)
        };
        self.nl(&op)?.request(msg, flags, &op).map(drop)
    }

    /// Creates a link of kind `kind` (`iplink_add`): `"bridge"`, `"veth"` (`data` = the peer's
    /// name; `None` lets the stack name it), or any kind the stack knows, with `data` passed as a
    /// string in `IFLA_INFO_DATA` (as nlinline does). `name` `None` lets the stack choose one;
    /// `ifindex` asks for that index. Returns the new link's index (from the stack's echo of the
    /// request, or looked up by name), or 0 if the stack said neither.
    pub fn iplink_add(
        &self,
        name: Option<&str>,
        ifindex: Option<u32>,
        kind: &str,
        data: Option<&str>,
    ) -> Result<u32> {
        let op = format!(
            "iplink_add {} type {kind}{}",
            name.unwrap_or("(unnamed)"),
            data.map(|d| format!(" {d}")).unwrap_or_default()
        );
        if kind.is_empty() || kind.contains('\0') {
            return Err(Error::InvalidArgument(format!(
                "{op}: the link kind is empty or has a NUL byte"
            )));
        }
        if let Some(n) = name {
            check_new_ifname(&op, n)?;
        }
        let mut m = link_msg(ifindex.unwrap_or(0));
        if let Some(n) = name {
            m.attributes.push(LinkAttribute::IfName(n.to_owned()));
        }
        let mut info = vec![LinkInfo::Kind(InfoKind::from(kind))];
        match (kind, data) {
            ("veth", Some(peer)) => {
                check_new_ifname(&op, peer)?;
                let mut p = link_msg(0);
                p.attributes.push(LinkAttribute::IfName(peer.to_owned()));
                info.push(LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))));
            }
            (_, Some(d)) => {
                if d.contains('\0') {
                    return Err(Error::InvalidArgument(format!("{op}: data has a NUL byte")));
                }
                let mut bytes = d.as_bytes().to_vec();
                bytes.push(0);
                info.push(LinkInfo::Data(InfoData::Other(bytes)));
            }
            (_, None) => {}
        }
        m.attributes.push(LinkAttribute::LinkInfo(info));
        let replies = self.nl(&op)?.request(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
            &op,
        )?;
        let echoed = replies.into_iter().find_map(|r| match r {
            RouteNetlinkMessage::NewLink(l) => {
                let i = interface_of(l);
                (name.is_none() || name == Some(i.name.as_str())).then_some(i.index)
            }
            _ => None,
        });
        match (echoed, name, ifindex) {
            (Some(i), _, _) => Ok(i),
            (None, _, Some(i)) if i != 0 => Ok(i),
            (None, Some(n), _) => self.if_nametoindex(n).or(Ok(0)),
            _ => Ok(0),
        }
    }

    /// Deletes a link (`iplink_del`), named by `name`, by `ifindex`, or both (then they must
    /// agree). `ENODEV` if there is no such link; `EINVAL` if neither is given.
    pub fn iplink_del(&self, name: Option<&str>, ifindex: Option<u32>) -> Result<()> {
        let op = format!(
            "iplink_del {}{}",
            name.unwrap_or(""),
            ifindex.map(|i| format!(" dev {i}")).unwrap_or_default()
        );
        if name.is_none() && ifindex.unwrap_or(0) == 0 {
            return Err(Error::InvalidArgument(format!(
                "{op}: neither a name nor an index"
            )));
        }
        let mut m = link_msg(ifindex.unwrap_or(0));
        if let Some(n) = name {
            if n.is_empty() || n.len() >= IFNAMSIZ || n.contains('\0') {
                return Err(nl_error(
                    &op,
                    libc::ENODEV,
                    Some("no interface can have this name"),
                ));
            }
            m.attributes.push(LinkAttribute::IfName(n.to_owned()));
        }
        self.nl(&op)?
            .request(RouteNetlinkMessage::DelLink(m), 0, &op)
            .map(drop)
    }

    /// Every interface of the stack (`RTM_GETLINK` dump).
    pub fn interfaces(&self) -> Result<Vec<Interface>> {
        let op = "interfaces";
        let replies = self
            .nl(op)?
            .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()), op)?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(interface_of(l)),
                _ => None,
            })
            .collect())
    }

    /// Every IPv4 and IPv6 address of the stack (`RTM_GETADDR` dump).
    pub fn addresses(&self) -> Result<Vec<IfAddress>> {
        let op = "addresses";
        let replies = self.nl(op)?.dump(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            op,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => address_of(a),
                _ => None,
            })
            .collect())
    }

    /// The IPv4 and IPv6 routes of the main table (`RTM_GETROUTE` dump).
    pub fn routes(&self) -> Result<Vec<Route>> {
        let op = "routes";
        let mut out = Vec::new();
        let mut conn = self.nl(op)?;
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut m = RouteMessage::default();
            m.header.address_family = family;
            for r in conn.dump(RouteNetlinkMessage::GetRoute(m), op)? {
                if let RouteNetlinkMessage::NewRoute(r) = r {
                    out.extend(route_of(r).filter(|r| r.table == 254));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
