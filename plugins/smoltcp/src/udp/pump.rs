//! The event loop's side of UDP sockets ([`super`]): datagrams read from the pair and sent
//! through the interface the route picks (fragmented when larger than its MTU), datagrams
//! received handed to the pair, multicast looped back, stuck neighbours given up.

use super::*;

/// The events to poll the plug-in's end for.
pub fn interest(u: &Udp, s: &Sock) -> i16 {
    let mut ev = 0;
    if u.pending.is_none() && !u.eof {
        ev |= libc::POLLIN;
    }
    if s.want_out {
        ev |= libc::POLLOUT;
    }
    ev
}

enum Sent {
    Done,
    Full,
}

/// The interface a datagram to `dst` leaves through and the source address to give it (`None`:
/// the bound one, or smoltcp's choice), as Linux picks them: the destination's
/// `sin6_scope_id` for a link-scope one, else `SO_BINDTODEVICE`, else for multicast (and IPv4
/// limited broadcast) the multicast interface, else the route (for a link-scope group, the
/// first up interface: the kernel's `ff00::/8` route). A link-scope destination leaves from
/// the interface's link-local address, IPv4 multicast from `IP_MULTICAST_IF`'s address.
/// `None`: it cannot leave (no route, the interface down, a broadcast without
/// `SO_BROADCAST`, a scope that is not the bound device): dropped.
pub(super) fn out_iface(
    net: &Net,
    u: &Udp,
    opts: &Opts,
    dst: SocketAddr,
) -> Option<(usize, Option<IpAddr>)> {
    let ip = dst.ip();
    let from = u
        .local
        .map(|l| l.ip())
        .filter(|ip| !ip.is_unspecified() && !ip.is_multicast());
    let bound = match opts.bound_dev {
        Some(d) => Some(net.by_index(d)?),
        None => None,
    };
    let lbcast = matches!(ip, IpAddr::V4(a) if a.is_broadcast());
    let bcast = lbcast || net.ifaces.iter().any(|f| f.is_subnet_broadcast(ip));
    if bcast && !opts.broadcast {
        return None; // the kernel's EACCES
    }
    let scoped = match dst {
        SocketAddr::V6(d) if link_scope(d.ip()) => Some(d.scope_id()),
        _ => None,
    };
    let oif = match scoped {
        Some(sc) if sc != 0 => {
            let i = net.by_index(sc)?;
            if bound.is_some_and(|b| b != i) {
                return None;
            }
            Some(i)
        }
        _ if bound.is_some() => bound,
        _ if ip.is_multicast() || lbcast => match u.ip.multicast_if(ip) {
            (0, None) => None,
            (0, Some(a)) => net.owner_of(IpAddr::V4(a)),
            (x, _) => net.by_index(x),
        },
        _ => None,
    };
    let i = match oif {
        Some(i) if ip.is_multicast() || lbcast || scoped.is_some() => i,
        Some(i) => net.route_via(ip, from, Some(i))?,
        // IPv6 multicast: each interface's ff00::/8 route; IPv4 multicast and limited
        // broadcast: only a route (a default one) says where, as in Linux.
        None if scoped.is_some() || (ip.is_ipv6() && ip.is_multicast()) => {
            net.route(ip, from).or_else(|| mcast::first_up(net))?
        }
        None => net.route(ip, from)?,
    };
    if !net.ifaces[i].up {
        return None;
    }
    let src = match (from, scoped, u.ip.multicast_if(ip)) {
        (Some(_), _, _) => None,
        (None, Some(_), _) if i != LO => net.ifaces[i].link_local().map(IpAddr::V6),
        (None, None, (_, Some(a))) if ip.is_multicast() => Some(IpAddr::V4(a)),
        _ => None,
    };
    Some((i, src))
}

/// Queues one datagram in smoltcp (or drops it: no route, too large, as a lossy network may).
/// One that needs fragments waits while the interface is still sending another's; one whose
/// hop limit differs from the one smoltcp's socket sends with waits until the socket's queue
/// is empty (smoltcp has one hop limit per socket, read as it sends).
fn send(
    net: &mut Net,
    u: &mut Udp,
    opts: &Opts,
    dst: SocketAddr,
    payload: &[u8],
    now: Instant,
) -> Sent {
    let from = u.local.map(|l| l.ip()).filter(|ip| !ip.is_unspecified());
    let Some((i, src)) = out_iface(net, u, opts, dst) else {
        return Sent::Done;
    };
    let from = src.or(from);
    let port = u.local.map_or(0, |l| l.port());
    let f = &net.ifaces[i];
    let group = dst.ip();
    let looped = (group.is_multicast()
        && u.ip.loops(group)
        && (mcast::always_joined(group) || f.groups.contains(&group)))
    .then(|| from.or_else(|| net.source_for(i, group)))
    .flatten()
    .map(|ip| with_scope(SocketAddr::new(ip, port), net.ifaces[i].index));
    let sent = transmit(net, u, i, src, from, port, dst, payload, now);
    if let Sent::Done = sent {
        u.counts.sent(payload.len(), true);
    }
    // The copy for the stack's own members: once, when the datagram is done with (a datagram
    // that waits for room is sent again later).
    if let (Sent::Done, Some(lsrc)) = (&sent, looped) {
        net.looped.push((i, lsrc, dst, payload.to_vec()));
    }
    sent
}

/// The part of [`send`] after the route: out of interface `i`, from `src` (`None`: the bound
/// address or smoltcp's choice; `from`: the address it will have, for fragments), port `port`.
#[allow(clippy::too_many_arguments)]
fn transmit(
    net: &mut Net,
    u: &mut Udp,
    i: usize,
    src: Option<IpAddr>,
    from: Option<IpAddr>,
    port: u16,
    dst: SocketAddr,
    payload: &[u8],
    now: Instant,
) -> Sent {
    let hops = u.ip.hop_limit(dst.ip());
    if hops == 0 {
        return Sent::Done; // it may not leave the stack
    }
    let Some(leg) = u.socks.iter_mut().find(|l| l.iface == i) else {
        return Sent::Done;
    };
    let h = leg.handle;
    let f = &mut net.ifaces[i];
    let mtu = f.mtu as usize;
    let fragmented = match dst {
        SocketAddr::V4(_) if payload.len() > MAX_V4 => return Sent::Done,
        SocketAddr::V6(_) if payload.len() > MAX_V6 => return Sent::Done,
        SocketAddr::V4(_) => payload.len() + IPV4_UDP_HDR > mtu,
        SocketAddr::V6(d) if payload.len() + IPV6_UDP_HDR > mtu => {
            let Some(IpAddr::V6(src)) = from.or_else(|| net.source_for(i, dst.ip())) else {
                return Sent::Done;
            };
            let src = SocketAddrV6::new(src, port, 0, 0);
            return match crate::frag::send(net, i, src, d, payload) {
                crate::frag::Out::Done => Sent::Done,
                crate::frag::Out::Busy => Sent::Full,
            };
        }
        SocketAddr::V6(_) => false,
    };
    if fragmented {
        if let Some((b, since)) = f.big4 {
            let queued = f.sockets.get::<udp::Socket>(b).send_queue() > 0;
            if queued && since.elapsed() < crate::net::FRAG_STALL {
                return Sent::Full;
            }
            f.big4 = None;
        }
        if f.fragmenting(now) {
            return Sent::Full;
        }
    }
    let k = f.sockets.get_mut::<udp::Socket>(h);
    if payload.len() > k.payload_send_capacity() {
        return Sent::Done;
    }
    if k.hop_limit() != Some(hops) {
        if !leg.queued.is_empty() || k.send_queue() > 0 {
            return Sent::Full;
        }
        k.set_hop_limit(Some(hops));
    }
    let meta = UdpMetadata {
        endpoint: IpEndpoint::from(dst),
        local_address: src.map(IpAddress::from),
        meta: Default::default(),
    };
    match leg.enqueue(k, payload, meta) {
        Err(udp::SendError::BufferFull) => Sent::Full,
        Ok(()) if fragmented => {
            f.big4 = Some((h, std::time::Instant::now()));
            Sent::Done
        }
        _ => Sent::Done,
    }
}

/// Hands the multicast datagrams looped back by [`send`] to the sockets that receive them on
/// their interface (bound to the group's port there, the group joined), the sender included.
pub fn deliver_looped(net: &mut Net, socks: &mut std::collections::HashMap<u64, Sock>) {
    for (i, src, dst, payload) in std::mem::take(&mut net.looped) {
        let groups = &net.ifaces[i].groups;
        for s in socks.values_mut() {
            let (domain, v6only) = (s.domain, s.opts.v6only);
            let Kind::Udp(u) = &mut s.kind else { continue };
            let Some(local) = u.local else { continue };
            let bound = Some(local.ip()).filter(|ip| !ip.is_unspecified());
            if local.port() == dst.port()
                && u.listens_on(i)
                && receives(bound, groups, Some(dst.ip()))
                && wanted(domain, v6only, u.remote, src)
            {
                u.take_reassembled(payload.clone(), src);
            }
        }
    }
}

/// Before smoltcp's poll: moves datagrams the application wrote into smoltcp.
pub fn pump_in(net: &mut Net, s: &mut Sock, scratch: &mut [u8], now: Instant) {
    let orphan = s.orphan_since.is_some();
    let opts = s.opts;
    let Sock {
        pe, kind, revents, ..
    } = s;
    let u = udp_of(kind);
    if let Some((p, dst)) = u.pending.take() {
        match send(net, u, &opts, dst, &p, now) {
            Sent::Full => {
                u.pending = Some((p, dst));
                return;
            }
            Sent::Done => {}
        }
    }
    let Some(pe) = pe else { return };
    if u.eof || (!orphan && *revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0) {
        return;
    }
    if u.local.is_none() {
        return; // the event loop binds it first
    }
    for _ in 0..64 {
        // MSG_TRUNC: the record's real length, to drop one larger than any datagram.
        let n = match sys::recv(pe.as_fd(), scratch, libc::MSG_TRUNC) {
            Ok(0) if sys::hung_up(pe.as_fd()) => {
                u.eof = true;
                break;
            }
            Ok(n) if n > scratch.len() => continue,
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(_) => break,
        };
        let (dst, payload) = match u.remote {
            Some(r) => (r, &scratch[..n]),
            None => match addr::parse_header(&scratch[..n]) {
                Ok(d) => (d, &scratch[addr::HDR_LEN..n]),
                Err(_) => continue, // malformed: dropped
            },
        };
        if dst.port() == 0 || dst.ip().is_unspecified() {
            continue;
        }
        if let Sent::Full = send(net, u, &opts, dst, payload, now) {
            u.pending = Some((payload.to_vec(), dst));
            break;
        }
    }
}

/// After smoltcp's poll: moves received datagrams into the pair.
pub fn after_poll(net: &mut Net, s: &mut Sock, now: Instant) -> Fate {
    let orphan = s.orphan_since;
    let domain = s.domain;
    let v6only = s.opts.v6only;
    let opts = s.opts;
    let Sock {
        pe, kind, want_out, ..
    } = s;
    let u = udp_of(kind);
    *want_out = false;
    // What left; a head datagram that never does is given up.
    for leg in 0..u.socks.len() {
        let l = &mut u.socks[leg];
        l.account(
            net.ifaces[l.iface]
                .sockets
                .get::<udp::Socket>(l.handle)
                .send_queue(),
        );
        if l.stuck() {
            unstick(net, u, leg, domain, v6only);
        }
    }
    // A datagram that waited for room: smoltcp's poll (or a socket made anew) may just have
    // made some.
    if let Some((p, dst)) = u.pending.take() {
        if let Sent::Full = send(net, u, &opts, dst, &p, now) {
            u.pending = Some((p, dst));
        }
    }
    if let Some(pe) = pe.as_ref() {
        while let Some((payload, src)) = u.inbox.front() {
            let hdr = addr::header(*src, domain);
            let r = if u.remote.is_some() {
                sys::sendv(pe.as_fd(), &[IoSlice::new(payload)])
            } else {
                sys::sendv(pe.as_fd(), &[IoSlice::new(&hdr), IoSlice::new(payload)])
            };
            if matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
                *want_out = true;
                break;
            }
            if r.is_ok() {
                u.counts.received(payload.len(), true);
            }
            u.inbox_bytes -= payload.len();
            u.inbox.pop_front();
        }
        let bound = u.local.map(|l| l.ip()).filter(|ip| !ip.is_unspecified());
        'socks: for l in &u.socks {
            if *want_out {
                break;
            }
            let f = &mut net.ifaces[l.iface];
            let (index, groups) = (f.index, &f.groups);
            let k = f.sockets.get_mut::<udp::Socket>(l.handle);
            for _ in 0..64 {
                let Ok((payload, meta)) = k.peek() else { break };
                let src = with_scope(SocketAddr::from(meta.endpoint), index);
                let to = meta.local_address.map(IpAddr::from);
                if wanted(domain, v6only, u.remote, src) && receives(bound, groups, to) {
                    let hdr = addr::header(src, domain);
                    let parts_connected = [IoSlice::new(payload)];
                    let parts = [IoSlice::new(&hdr), IoSlice::new(payload)];
                    let r = if u.remote.is_some() {
                        sys::sendv(pe.as_fd(), &parts_connected)
                    } else {
                        sys::sendv(pe.as_fd(), &parts)
                    };
                    match r {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            *want_out = true;
                            break 'socks;
                        }
                        Err(_) => {}
                        Ok(_) => u.counts.received(payload.len(), true),
                    }
                }
                let _ = k.recv();
            }
        }
    }
    let Some(since) = orphan else {
        return Fate::Keep;
    };
    let queued = u.pending.is_some()
        || u.socks.iter().any(|l| {
            let k = net.ifaces[l.iface].sockets.get::<udp::Socket>(l.handle);
            k.send_queue() > 0
        });
    if queued && since.elapsed() < LINGER {
        return Fate::Keep;
    }
    for l in u.socks.drain(..) {
        let f = &mut net.ifaces[l.iface];
        if f.big4.is_some_and(|(b, _)| b == l.handle) {
            f.big4 = None;
        }
        f.sockets.remove(l.handle);
    }
    Fate::Remove
}
