//! `RTM_NEWADDR`/`RTM_DELADDR`/`RTM_GETADDR` of the rtnetlink emulation ([`super`]): an
//! interface's addresses, with their lifetimes, as messages and as changes.

use super::*;

pub(super) fn family_of(ip: &IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

pub(super) fn max_prefix(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

pub(super) fn scope_of(ip: &IpAddr) -> AddressScope {
    match ip {
        a if a.is_loopback() => AddressScope::Host,
        IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => AddressScope::Link,
        _ => AddressScope::Universe,
    }
}

pub(super) fn address_msg(f: &net::Iface, a: &Addr) -> AddressMessage {
    let mut m = AddressMessage::default();
    let (valid, preferred) = a
        .life
        .map_or((FOREVER, FOREVER), |l| l.left(std::time::Instant::now()));
    let mut flags = a.flags;
    if valid == FOREVER {
        flags |= IFA_F_PERMANENT;
    }
    if preferred == 0 {
        flags |= IFA_F_DEPRECATED;
    }
    m.header.family = family_of(&a.ip);
    m.header.prefix_len = a.prefix;
    m.header.flags = AddressHeaderFlags::from_bits_retain(flags as u8);
    m.header.scope = scope_of(&a.ip);
    m.header.index = f.index;
    m.attributes.push(AddressAttribute::Address(a.ip));
    if let IpAddr::V4(v4) = a.ip {
        m.attributes.push(AddressAttribute::Local(a.ip));
        m.attributes.push(AddressAttribute::Label(f.name.clone()));
        if a.prefix < 31 {
            let host = u32::MAX >> a.prefix;
            m.attributes
                .push(AddressAttribute::Broadcast(Ipv4Addr::from(
                    u32::from(v4) | host,
                )));
        }
    }
    let mut ci = CacheInfo::default();
    ci.ifa_valid = valid;
    ci.ifa_preferred = preferred;
    m.attributes.push(AddressAttribute::CacheInfo(ci));
    m.attributes
        .push(AddressAttribute::Flags(AddressFlags::from_bits_retain(
            flags,
        )));
    m
}

pub(super) fn addresses(net: &Net, q: &AddressMessage) -> Vec<RouteNetlinkMessage> {
    let mut v = Vec::new();
    for f in &net.ifaces {
        if q.header.index != 0 && q.header.index != f.index {
            continue;
        }
        for a in &f.addrs {
            if q.header.family != AddressFamily::Unspec && q.header.family != family_of(&a.ip) {
                continue;
            }
            v.push(RouteNetlinkMessage::NewAddress(address_msg(f, a)));
        }
    }
    v
}

/// The interface, address, prefix and flags of an address request.
pub(super) fn address_of(net: &Net, m: &AddressMessage) -> Result<(usize, IpAddr, u8, u32), Nack> {
    let i = net.by_index(m.header.index).ok_or((libc::ENODEV, None))?;
    let mut local = None;
    let mut address = None;
    let mut flags = u32::from(m.header.flags.bits());
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Flags(f) => flags = f.bits(),
            _ => {}
        }
    }
    let flags = flags & !(IFA_F_DEPRECATED);
    let ip = local
        .or(address)
        .ok_or((libc::EINVAL, Some("no address")))?;
    if m.header.family != AddressFamily::Unspec && m.header.family != family_of(&ip) {
        return Err((libc::EINVAL, Some("address of another family")));
    }
    if m.header.prefix_len > max_prefix(&ip) {
        return Err((libc::EINVAL, Some("prefix longer than the address")));
    }
    Ok((i, ip, m.header.prefix_len, flags & !IFA_F_PERMANENT))
}

pub(super) fn same_addr(a: &Addr, ip: IpAddr, prefix: u8) -> bool {
    a.ip == ip && (a.prefix == prefix || (ip.is_ipv6() && prefix == 0))
}

/// The lifetimes of an address request (`IFA_CACHEINFO`): `None` for forever; the kernel's
/// `EINVAL` for a zero valid lifetime or a preferred one longer than it.
pub(super) fn lifetimes_of(m: &AddressMessage) -> Result<Option<Lifetimes>, Nack> {
    let Some(ci) = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::CacheInfo(c) => Some(*c),
        _ => None,
    }) else {
        return Ok(None);
    };
    if ci.ifa_valid == 0 {
        return Err((libc::EINVAL, Some("valid_lft is zero")));
    }
    if ci.ifa_preferred > ci.ifa_valid {
        return Err((
            libc::EINVAL,
            Some("preferred_lft is greater than valid_lft"),
        ));
    }
    if ci.ifa_valid == FOREVER && ci.ifa_preferred == FOREVER {
        return Ok(None);
    }
    Ok(Some(Lifetimes {
        valid: ci.ifa_valid,
        preferred: ci.ifa_preferred,
        since: std::time::Instant::now(),
    }))
}

pub(super) fn add_address(net: &mut Net, m: AddressMessage, flags: u16) -> Result<(), Nack> {
    let (i, ip, prefix, aflags) = address_of(net, &m)?;
    let life = lifetimes_of(&m)?;
    let unicast = match ip {
        IpAddr::V4(v4) => !(v4.is_multicast() || v4.is_unspecified() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_multicast() || v6.is_unspecified()),
    };
    if !unicast {
        return Err((libc::EINVAL, Some("not a unicast address")));
    }
    let f = &mut net.ifaces[i];
    let key = |a: &Addr| a.ip == ip && (ip.is_ipv6() || a.prefix == prefix);
    if let Some(a) = f.addrs.iter_mut().find(|a| key(a)) {
        if flags & NLM_F_EXCL != 0 {
            return Err((libc::EEXIST, None));
        }
        a.prefix = prefix;
        a.flags = aflags;
        a.life = life;
    } else {
        if f.addrs.len() >= MAX_ADDRS {
            return Err((
                libc::ENOSPC,
                Some("smoltcp holds at most 8 addresses per interface"),
            ));
        }
        f.addrs.push(Addr {
            ip,
            prefix,
            flags: aflags,
            life,
        });
    }
    net.sync();
    Ok(())
}

pub(super) fn del_address(net: &mut Net, m: AddressMessage) -> Result<(), Nack> {
    let (i, ip, prefix, _) = address_of(net, &m)?;
    let f = &mut net.ifaces[i];
    let k = f
        .addrs
        .iter()
        .position(|a| same_addr(a, ip, prefix) || (ip.is_ipv4() && prefix == 0 && a.ip == ip))
        .ok_or((libc::EADDRNOTAVAIL, None))?;
    f.addrs.remove(k);
    net.sync();
    Ok(())
}

// ---------------------------------------------------------------- routes
