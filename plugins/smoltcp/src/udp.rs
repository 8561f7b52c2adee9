//! UDP sockets: smoltcp `udp::Socket`s behind a `SOCK_SEQPACKET` socketpair, one datagram per
//! record. Runs in the host process under the stack's mutex.
//!
//! - A bound socket has one smoltcp socket in every interface it may receive on (all of them
//!   for the unspecified address); a datagram leaves through the interface
//!   [`crate::net::Net::route`] picks. An unbound socket is bound to an ephemeral port when it
//!   first sends or connects, as in Linux.
//! - Not connected: each record starts with the 28-byte address header (docs/proxied.md): the
//!   destination going out, the source coming in. Connected: bare payloads, and only datagrams
//!   from the peer are delivered.
//! - A datagram smoltcp has no room for yet waits in the socket (one), and the pair is not read
//!   until it has left; a received one stays in smoltcp until the pair takes it.

use std::io;
use std::io::IoSlice;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, RawFd};
use std::time::Duration;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp;
use smoltcp::wire::{IpAddress, IpEndpoint, IpListenEndpoint};

use crate::net::Net;
use crate::stack::{errno, Core, Fate, Kind, Sock};
use crate::tcp::listen_ifaces;
use crate::{addr, sys};

/// Datagrams queued per direction in each smoltcp socket.
const PACKETS: usize = 128;
/// Payload bytes per direction in each smoltcp socket.
const PAYLOAD: usize = 256 * 1024;
/// How long a closed socket may take to send what it still holds.
const LINGER: Duration = Duration::from_secs(2);

pub struct Udp {
    /// Bound address (port non-zero).
    pub local: Option<SocketAddr>,
    /// Connected peer.
    pub remote: Option<SocketAddr>,
    socks: Vec<(usize, SocketHandle)>,
    /// A datagram read from the pair that smoltcp had no room for.
    pending: Option<(Vec<u8>, SocketAddr)>,
    /// The pair reached EOF.
    eof: bool,
}

impl Udp {
    pub fn new() -> Udp {
        Udp {
            local: None,
            remote: None,
            socks: Vec::new(),
            pending: None,
            eof: false,
        }
    }
}

fn udp_of(kind: &mut Kind) -> &mut Udp {
    match kind {
        Kind::Udp(u) => u,
        _ => unreachable!("a UDP call on a non-UDP socket"),
    }
}

/// Binds to `local` (port already chosen and checked).
pub fn bind(net: &mut Net, s: &mut Sock, local: SocketAddr) {
    let u = udp_of(&mut s.kind);
    let ip = (!local.ip().is_unspecified()).then_some(local.ip());
    let ep = IpListenEndpoint {
        addr: ip.map(IpAddress::from),
        port: local.port(),
    };
    for i in listen_ifaces(net, ip) {
        let mut k = udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; PACKETS], vec![0; PAYLOAD]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; PACKETS], vec![0; PAYLOAD]),
        );
        if k.bind(ep).is_ok() {
            u.socks.push((i, net.ifaces[i].sockets.add(k)));
        }
    }
    u.local = Some(local);
}

/// Binds socket `id` to an ephemeral port on the unspecified address, if it is not bound.
pub fn autobind(core: &mut Core, id: u64) -> io::Result<()> {
    let Some(s) = core.socks.get(&id) else {
        return Ok(());
    };
    let Kind::Udp(u) = &s.kind else {
        return Ok(());
    };
    if u.local.is_some() {
        return Ok(());
    }
    let domain = s.domain;
    let port = core.ephemeral(id, true, None)?;
    let local = SocketAddr::new(addr::unspecified(domain).ip(), port);
    if let Some(s) = core.socks.get_mut(&id) {
        bind(&mut core.net, s, local);
    }
    Ok(())
}

/// `connect`: sets (or, with `AF_UNSPEC`, clears) the peer.
pub fn connect(core: &mut Core, handle: RawFd, a: &[u8]) -> io::Result<()> {
    let (id, s) = core.sock(handle)?;
    let domain = s.domain;
    let v6only = s.opts.v6only;
    let dst = addr::from_sockaddr(a, domain)?;
    let Some(dst) = dst else {
        udp_of(&mut s.kind).remote = None;
        return Ok(());
    };
    if domain == libc::AF_INET6 && dst.is_ipv4() && v6only {
        return Err(errno(libc::ENETUNREACH));
    }
    let dst = if dst.ip().is_unspecified() {
        let lo = match dst.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(lo, dst.port())
    } else {
        dst
    };
    let bound = udp_of(&mut s.kind).local;
    let from = bound.map(|l| l.ip()).filter(|ip| !ip.is_unspecified());
    if core.net.route(dst.ip(), from).is_none() {
        return Err(errno(libc::ENETUNREACH));
    }
    autobind(core, id)?;
    let (_, s) = core.sock(handle)?;
    udp_of(&mut s.kind).remote = Some(dst);
    Ok(())
}

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

/// Queues one datagram in smoltcp (or drops it: no route, too large, as a lossy network may).
fn send(net: &mut Net, u: &Udp, dst: SocketAddr, payload: &[u8]) -> Sent {
    let from = u.local.map(|l| l.ip()).filter(|ip| !ip.is_unspecified());
    let Some(i) = net.route(dst.ip(), from) else {
        return Sent::Done;
    };
    let Some(&(_, h)) = u.socks.iter().find(|(j, _)| *j == i) else {
        return Sent::Done;
    };
    let k = net.ifaces[i].sockets.get_mut::<udp::Socket>(h);
    if payload.len() > k.payload_send_capacity() {
        return Sent::Done;
    }
    match k.send_slice(payload, IpEndpoint::from(dst)) {
        Err(udp::SendError::BufferFull) => Sent::Full,
        _ => Sent::Done,
    }
}

/// Before smoltcp's poll: moves datagrams the application wrote into smoltcp.
pub fn pump_in(net: &mut Net, s: &mut Sock, scratch: &mut [u8]) {
    let orphan = s.orphan_since.is_some();
    let Sock {
        pe, kind, revents, ..
    } = s;
    let u = udp_of(kind);
    if let Some((p, dst)) = u.pending.take() {
        match send(net, u, dst, &p) {
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
        let n = match sys::recv(pe.as_fd(), scratch, 0) {
            Ok(0) if sys::hung_up(pe.as_fd()) => {
                u.eof = true;
                break;
            }
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
        if let Sent::Full = send(net, u, dst, payload) {
            u.pending = Some((payload.to_vec(), dst));
            break;
        }
    }
}

/// After smoltcp's poll: moves received datagrams into the pair.
pub fn after_poll(net: &mut Net, s: &mut Sock) -> Fate {
    let orphan = s.orphan_since;
    let domain = s.domain;
    let v6only = s.opts.v6only;
    let Sock {
        pe, kind, want_out, ..
    } = s;
    let u = udp_of(kind);
    *want_out = false;
    // A datagram that waited for room: smoltcp's poll may just have made some.
    if let Some((p, dst)) = u.pending.take() {
        if let Sent::Full = send(net, u, dst, &p) {
            u.pending = Some((p, dst));
        }
    }
    if let Some(pe) = pe.as_ref() {
        'socks: for &(i, h) in &u.socks {
            let k = net.ifaces[i].sockets.get_mut::<udp::Socket>(h);
            for _ in 0..64 {
                let Ok((payload, meta)) = k.peek() else { break };
                let src = SocketAddr::from(meta.endpoint);
                let wanted = match domain {
                    libc::AF_INET => src.is_ipv4(),
                    _ => !(src.is_ipv4() && v6only),
                } && u.remote.is_none_or(|r| addr::unmap(r) == src);
                if wanted {
                    let hdr = addr::header(src, domain);
                    let parts_connected = [IoSlice::new(payload)];
                    let parts = [IoSlice::new(&hdr), IoSlice::new(payload)];
                    let r = if u.remote.is_some() {
                        sys::sendv(pe.as_fd(), &parts_connected)
                    } else {
                        sys::sendv(pe.as_fd(), &parts)
                    };
                    if let Err(e) = r {
                        if e.kind() == io::ErrorKind::WouldBlock {
                            *want_out = true;
                            break 'socks;
                        }
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
        || u.socks
            .iter()
            .any(|&(i, h)| net.ifaces[i].sockets.get::<udp::Socket>(h).send_queue() > 0);
    if queued && since.elapsed() < LINGER {
        return Fate::Keep;
    }
    for (i, h) in u.socks.drain(..) {
        net.ifaces[i].sockets.remove(h);
    }
    Fate::Remove
}
