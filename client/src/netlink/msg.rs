//! The rtnetlink messages of [`super`]'s calls: checks of their arguments, requests built from
//! them, and the public types ([`super::Interface`], [`super::IfAddress`], [`super::Route`])
//! read from the answers.

use super::*;

pub(super) fn family_of(a: &IpAddr) -> AddressFamily {
    match a {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

pub(super) fn max_prefix(a: &IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

pub(super) fn check_prefix(op: &str, a: &IpAddr, prefix_len: u8) -> Result<()> {
    let max = max_prefix(a);
    if prefix_len > max {
        let v = if max == 32 { "IPv4" } else { "IPv6" };
        return Err(Error::InvalidArgument(format!(
            "{op}: prefix length {prefix_len} is longer than {max} bits ({v} {a})"
        )));
    }
    Ok(())
}

/// Checks a name for a new interface as the kernel's `dev_valid_name` does.
pub(super) fn check_new_ifname(op: &str, name: &str) -> Result<()> {
    let bad = if name.is_empty() {
        Some("it is empty")
    } else if name.len() >= IFNAMSIZ {
        Some("it is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("it is '.' or '..'")
    } else if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        Some("it contains '/', ':', a NUL byte or white space")
    } else {
        None
    };
    match bad {
        Some(why) => Err(Error::InvalidArgument(format!(
            "{op}: invalid interface name {name:?}: {why}"
        ))),
        None => Ok(()),
    }
}

pub(super) fn mac_string(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub(super) fn link_msg(index: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m
}

pub(super) fn interface_of(m: LinkMessage) -> Interface {
    let mut i = Interface {
        index: m.header.index,
        name: String::new(),
        flags: m.header.flags.bits(),
        link_type: m.header.link_layer_type.into(),
        mtu: 0,
        hwaddr: Vec::new(),
        broadcast: Vec::new(),
        kind: None,
    };
    for a in m.attributes {
        match a {
            LinkAttribute::IfName(n) => i.name = n,
            LinkAttribute::Mtu(v) => i.mtu = v,
            LinkAttribute::Address(v) => i.hwaddr = v,
            LinkAttribute::Broadcast(v) => i.broadcast = v,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        i.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    i
}

pub(super) fn address_of(m: AddressMessage) -> Option<IfAddress> {
    let mut local = None;
    let mut address = None;
    let mut a = IfAddress {
        index: m.header.index,
        label: None,
        addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        prefix_len: m.header.prefix_len,
        peer: None,
        broadcast: None,
        flags: u32::from(m.header.flags.bits()),
        scope: m.header.scope.into(),
    };
    for attr in m.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(ip),
            AddressAttribute::Address(ip) => address = Some(ip),
            AddressAttribute::Label(l) => a.label = Some(l),
            AddressAttribute::Broadcast(b) => a.broadcast = Some(b),
            AddressAttribute::Flags(f) => a.flags = f.bits(),
            _ => {}
        }
    }
    a.addr = local.or(address)?;
    a.peer = address.filter(|p| local.is_some_and(|l| l != *p));
    Some(a)
}

pub(super) fn route_of(m: RouteMessage) -> Option<Route> {
    let unspecified = match m.header.address_family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let ip = |a: RouteAddress| match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(v)),
        _ => None,
    };
    let mut r = Route {
        dst: unspecified,
        prefix_len: m.header.destination_prefix_length,
        gateway: None,
        ifindex: None,
        table: u32::from(m.header.table),
        protocol: m.header.protocol.into(),
        scope: m.header.scope.into(),
        kind: m.header.kind.into(),
    };
    for a in m.attributes {
        match a {
            RouteAttribute::Destination(d) => r.dst = ip(d).unwrap_or(unspecified),
            RouteAttribute::Gateway(g) => r.gateway = ip(g),
            RouteAttribute::Oif(i) => r.ifindex = Some(i),
            RouteAttribute::Table(t) => r.table = t,
            _ => {}
        }
    }
    Some(r)
}

/// Describes a route for messages: `10.0.0.0/24 via 10.0.0.1 dev 3`, `default via …`.
pub(super) fn route_string(
    dst: Option<(IpAddr, u8)>,
    gw: Option<IpAddr>,
    ifindex: Option<u32>,
) -> String {
    let mut s = match dst {
        Some((a, p)) if p > 0 => format!("{a}/{p}"),
        _ => "default".to_owned(),
    };
    if let Some(g) = gw {
        s += &format!(" via {g}");
    }
    if let Some(i) = ifindex {
        s += &format!(" dev {i}");
    }
    s
}

pub(super) fn addr_msg(
    addr: IpAddr,
    prefix_len: u8,
    ifindex: u32,
    flags: u32,
    scope: u8,
) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = family_of(&addr);
    m.header.prefix_len = prefix_len;
    m.header.index = ifindex;
    m.header.scope = AddressScope::from(scope);
    m.header.flags = AddressHeaderFlags::from_bits_retain(flags as u8);
    m.attributes.push(AddressAttribute::Local(addr));
    m.attributes.push(AddressAttribute::Address(addr));
    if flags > 0xff {
        m.attributes
            .push(AddressAttribute::Flags(AddressFlags::from_bits_retain(
                flags,
            )));
    }
    m
}

#[allow(clippy::too_many_arguments)]
pub(super) fn route_msg(
    op: &str,
    family: Option<AddressFamily>,
    dst: Option<(IpAddr, u8)>,
    gw: Option<IpAddr>,
    ifindex: Option<u32>,
    add: bool,
    kind: u8,
    scope: u8,
) -> Result<RouteMessage> {
    let Some(family) = dst.map(|d| d.0).or(gw).map(|a| family_of(&a)).or(family) else {
        return Err(Error::InvalidArgument(format!(
            "{op}: a default route needs a gateway to know its address family"
        )));
    };
    for a in dst.map(|d| d.0).iter().chain(gw.iter()) {
        if family_of(a) != family {
            return Err(Error::InvalidArgument(format!(
                "{op}: addresses of different families"
            )));
        }
    }
    if let Some((d, p)) = dst {
        check_prefix(op, &d, p)?;
    }
    let prefix = dst.map_or(0, |d| d.1);
    let mut m = RouteMessage::default();
    m.header = RouteHeader {
        address_family: family,
        destination_prefix_length: prefix,
        table: RouteHeader::RT_TABLE_MAIN,
        // Deletion matches any origin and scope, as `ip route del`.
        protocol: if add {
            RouteProtocol::Boot
        } else {
            RouteProtocol::Unspec
        },
        scope: match (scope, add, gw) {
            (s, _, _) if s != 0 => RouteScope::from(s),
            (_, false, _) => RouteScope::NoWhere,
            (_, true, Some(_)) => RouteScope::Universe,
            (_, true, None) => RouteScope::Link,
        },
        kind: if kind == 0 {
            RouteType::Unicast
        } else {
            RouteType::from(kind)
        },
        ..Default::default()
    };
    if let Some((d, p)) = dst {
        if p > 0 {
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(d)));
        }
    }
    if let Some(g) = gw {
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(g)));
    }
    if let Some(i) = ifindex.filter(|i| *i != 0) {
        m.attributes.push(RouteAttribute::Oif(i));
    }
    Ok(m)
}
