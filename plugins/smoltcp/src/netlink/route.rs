//! `RTM_NEWROUTE`/`RTM_DELROUTE`/`RTM_GETROUTE` of the rtnetlink emulation ([`super`]): the
//! main table's routes through a gateway and on-link, as messages and as changes.

use super::*;

pub(super) fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

pub(super) fn network(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn route_msg(
    family: AddressFamily,
    dst: IpAddr,
    prefix: u8,
    gw: Option<IpAddr>,
    oif: Option<u32>,
    proto: RouteProtocol,
    scope: RouteScope,
    src: Option<IpAddr>,
) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header = RouteHeader {
        address_family: family,
        destination_prefix_length: prefix,
        table: RouteHeader::RT_TABLE_MAIN,
        protocol: proto,
        scope,
        kind: RouteType::Unicast,
        ..Default::default()
    };
    m.attributes.push(RouteAttribute::Table(254));
    if prefix > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst)));
    }
    if let Some(s) = src {
        m.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::from(s)));
    }
    if let Some(g) = gw {
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(g)));
    }
    if let Some(o) = oif {
        m.attributes.push(RouteAttribute::Oif(o));
    }
    m
}

pub(super) fn routes(net: &Net, q: &RouteMessage) -> Vec<RouteNetlinkMessage> {
    let fam = q.header.address_family;
    let wanted = |ip: &IpAddr| fam == AddressFamily::Unspec || fam == family_of(ip);
    let mut v = Vec::new();
    for f in net.ifaces.iter().filter(|f| !f.is_loopback()) {
        for a in f.addrs.iter().filter(|a| wanted(&a.ip)) {
            let src = a.ip.is_ipv4().then_some(a.ip);
            v.push(RouteNetlinkMessage::NewRoute(route_msg(
                family_of(&a.ip),
                network(a.ip, a.prefix),
                a.prefix,
                None,
                Some(f.index),
                RouteProtocol::Kernel,
                RouteScope::Link,
                src,
            )));
        }
    }
    for r in net.routes.iter().filter(|r| wanted(&r.dst)) {
        let oif = net.route_iface(r).map(|i| net.ifaces[i].index).or(r.oif);
        let scope = if r.gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        v.push(RouteNetlinkMessage::NewRoute(route_msg(
            family_of(&r.dst),
            r.dst,
            r.prefix,
            r.gateway,
            oif,
            RouteProtocol::from(r.protocol),
            scope,
            None,
        )));
    }
    v
}

/// Family, destination, prefix, gateway and output interface of a route request.
pub(super) type RouteKey = (AddressFamily, IpAddr, u8, Option<IpAddr>, Option<u32>);

pub(super) fn route_of(m: &RouteMessage) -> Result<RouteKey, Nack> {
    let fam = m.header.address_family;
    let unspec = match fam {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return Err((libc::EAFNOSUPPORT, None)),
    };
    let mut table = u32::from(m.header.table);
    let (mut dst, mut gw, mut oif) = (None, None, None);
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = route_ip(d),
            RouteAttribute::Gateway(g) => gw = route_ip(g),
            RouteAttribute::Oif(o) => oif = Some(*o),
            RouteAttribute::Table(t) => table = *t,
            _ => {}
        }
    }
    if table != 0 && table != 254 {
        return Err((libc::EOPNOTSUPP, Some("only the main table")));
    }
    let dst = dst.unwrap_or(unspec);
    let prefix = m.header.destination_prefix_length;
    if !net::same_family(dst, unspec) || gw.is_some_and(|g| !net::same_family(g, unspec)) {
        return Err((libc::EINVAL, Some("addresses of different families")));
    }
    if prefix > max_prefix(&dst) {
        return Err((libc::EINVAL, Some("Invalid prefix length")));
    }
    Ok((fam, dst, prefix, gw, oif))
}

pub(super) fn add_route(net: &mut Net, m: RouteMessage, flags: u16) -> Result<(), Nack> {
    let (_, dst, prefix, gw, oif) = route_of(&m)?;
    if !matches!(m.header.kind, RouteType::Unicast | RouteType::Unspec) {
        return Err((libc::EOPNOTSUPP, Some("only unicast routes")));
    }
    if net::has_host_bits(dst, prefix) {
        return Err((libc::EINVAL, Some("Invalid prefix for given prefix length")));
    }
    if let Some(o) = oif {
        net.by_index(o).ok_or((libc::ENODEV, None))?;
    }
    let Some(o) = oif.filter(|_| gw.is_none()) else {
        return add_gateway_route(net, m, flags, dst, prefix, gw, oif);
    };
    // On-link: the kernel's own prefix route of an address is there already.
    let i = net.by_index(o).ok_or((libc::ENODEV, None))?;
    if net.ifaces[i].is_loopback() {
        return Err((libc::EOPNOTSUPP, Some("no routes on lo")));
    }
    if !net.ifaces[i].up {
        return Err((libc::ENETDOWN, Some("Nexthop device is not up")));
    }
    let own = net.ifaces[i]
        .addrs
        .iter()
        .any(|a| a.prefix == prefix && network(a.ip, a.prefix) == dst);
    let entry = RouteEntry {
        dst,
        prefix,
        gateway: None,
        oif,
        protocol: m.header.protocol.into(),
    };
    place(net, entry, flags, |_| {
        if own {
            Err((libc::EEXIST, None))
        } else {
            Ok(())
        }
    })
}

/// Puts `entry` in the table: over the route to the same destination if `flags` say
/// `NLM_F_REPLACE` (`EEXIST` if they do not), else as a new route once `new` allows it.
fn place(
    net: &mut Net,
    entry: RouteEntry,
    flags: u16,
    new: impl FnOnce(&Net) -> Result<(), Nack>,
) -> Result<(), Nack> {
    let existing = net
        .routes
        .iter()
        .position(|r| r.dst == entry.dst && r.prefix == entry.prefix);
    match existing {
        Some(k) if flags & NLM_F_REPLACE != 0 => net.routes[k] = entry,
        Some(_) => return Err((libc::EEXIST, None)),
        None => {
            new(net)?;
            net.routes.push(entry);
        }
    }
    net.sync();
    Ok(())
}

/// A route through gateway `gw`.
pub(super) fn add_gateway_route(
    net: &mut Net,
    m: RouteMessage,
    flags: u16,
    dst: IpAddr,
    prefix: u8,
    gw: Option<IpAddr>,
    oif: Option<u32>,
) -> Result<(), Nack> {
    let Some(gw) = gw else {
        // As the kernel: a route with neither a gateway nor a device has nowhere to go.
        return Err((libc::ENODEV, Some("No gateway and no device")));
    };
    let i = net
        .gateway_iface(gw, oif)
        .ok_or((libc::ENETUNREACH, Some("Nexthop has invalid gateway")))?;
    let entry = RouteEntry {
        dst,
        prefix,
        gateway: Some(gw),
        oif,
        protocol: m.header.protocol.into(),
    };
    place(net, entry, flags, |net| {
        if net.routes_of(i).count() >= MAX_ROUTES {
            Err((
                libc::ENOSPC,
                Some("smoltcp holds at most 16 routes per interface"),
            ))
        } else {
            Ok(())
        }
    })
}

pub(super) fn del_route(net: &mut Net, m: RouteMessage) -> Result<(), Nack> {
    let (_, dst, prefix, gw, oif) = route_of(&m)?;
    let k = net
        .routes
        .iter()
        .position(|r| {
            r.dst == dst
                && r.prefix == prefix
                && gw.is_none_or(|g| Some(g) == r.gateway)
                && oif.is_none_or(|o| {
                    r.oif == Some(o) || net.route_iface(r).map(|i| net.ifaces[i].index) == Some(o)
                })
        })
        .ok_or((libc::ESRCH, None))?;
    net.routes.remove(k);
    net.sync();
    Ok(())
}
