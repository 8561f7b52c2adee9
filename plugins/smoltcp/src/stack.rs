//! One smoltcp stack and the control calls the host makes on its sockets, each dispatched to
//! the protocol's module ([`crate::tcp`], [`crate::udp`], [`crate::netlink`], [`crate::packet`],
//! [`crate::rawip`]). Runs in the host process: control calls on the host's thread, everything
//! else on the stack's event-loop thread ([`crate::evloop`]); both hold [`Shared::core`] while
//! they work, and a control call that changes anything wakes the loop through [`Shared::wake`].
//! The types they share are [`crate::sock`]'s.
//!
//! Sockets are "proxied, fd data" (docs/proxied.md): `socket`/`accept` return the application's
//! end of a socketpair, whose fd number is the socket's handle in every later call; the plug-in
//! keeps the other end and pumps it. All control calls are non-blocking.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use ioth_plugin_sdk::error;
use ioth_plugin_sdk::event::Event;
use ioth_plugin_sdk::proxied::Handle;
use ioth_plugin_sdk::vde::{vdeplug, vnl};

use crate::device::VdeDevice;
use crate::kind::netlink::Nl;
use crate::kind::tcp::Tcp;
use crate::kind::udp::Udp;
use crate::net::{Iface, Net};
use crate::sock::{
    app_end, bound_device, new_pair, Core, Kind, Shared, Sock, BUF_MAX, BUF_MIN, SO_BINDTOIFINDEX,
};
use crate::sys;
use crate::{addr, netlink, packet, rawip, tcp, udp};
use ioth_plugin_sdk::errno::io_error;

impl Sock {
    /// The events to poll `pe` for.
    pub fn interest(&self, net: &Net) -> i16 {
        match &self.kind {
            Kind::Tcp(t) => tcp::interest(t, self, net),
            Kind::Udp(u) => udp::interest(u, self),
            Kind::Netlink(n) => n.interest(self.want_out),
            Kind::Packet(p) => p.interest(),
            Kind::RawIp(r) => r.interest(),
        }
    }
}

impl Core {
    /// `socket(domain, ty, protocol)`.
    pub fn socket(&mut self, domain: i32, ty: i32, protocol: i32) -> io::Result<Handle> {
        let flags = ty & (libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
        let base = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
        let (kind, pair_ty) = match (domain, base) {
            (libc::AF_INET | libc::AF_INET6, libc::SOCK_STREAM) => {
                if protocol != 0 && protocol != libc::IPPROTO_TCP {
                    return Err(io_error(libc::EPROTONOSUPPORT));
                }
                (Kind::Tcp(Tcp::new()), libc::SOCK_STREAM)
            }
            (libc::AF_INET | libc::AF_INET6, libc::SOCK_DGRAM) => {
                if protocol != 0 && protocol != libc::IPPROTO_UDP {
                    return Err(io_error(libc::EPROTONOSUPPORT));
                }
                (Kind::Udp(Udp::new()), libc::SOCK_SEQPACKET)
            }
            (libc::AF_INET | libc::AF_INET6, libc::SOCK_RAW) => {
                return rawip::socket(self, domain, protocol, flags)
            }
            (libc::AF_INET | libc::AF_INET6, _) => return Err(io_error(libc::EPROTONOSUPPORT)),
            (libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_DGRAM) => match protocol {
                libc::NETLINK_ROUTE => (Kind::Netlink(Nl::new()), libc::SOCK_SEQPACKET),
                libc::NETLINK_SOCK_DIAG => (Kind::Netlink(Nl::sock_diag()), libc::SOCK_SEQPACKET),
                _ => return Err(io_error(libc::EPROTONOSUPPORT)),
            },
            (libc::AF_NETLINK, _) => return Err(io_error(libc::ESOCKTNOSUPPORT)),
            (libc::AF_PACKET, _) => return packet::socket(self, base, flags, protocol),
            _ => return Err(io_error(libc::EAFNOSUPPORT)),
        };
        let (pe, app) = new_pair(pair_ty, flags)?;
        Ok(self.add(domain, kind, pe, app))
    }

    /// `close(handle)`: the host is done with the socket. Data the application wrote still
    /// goes out; a connection closes with FIN once the application's end is gone.
    pub fn close(&mut self, handle: Handle) -> io::Result<()> {
        let id = self
            .handles
            .remove(&handle)
            .ok_or_else(|| io_error(libc::EBADF))?;
        let Some(s) = self.socks.get_mut(&id) else {
            return Ok(());
        };
        s.handle = None;
        s.orphan_since = Some(std::time::Instant::now());
        let remove = match &mut s.kind {
            Kind::Tcp(_) => tcp::close(&mut self.net, s, &mut self.graves),
            Kind::Udp(_) | Kind::Packet(_) | Kind::RawIp(_) => false,
            Kind::Netlink(_) => true,
        };
        if remove {
            self.socks.remove(&id);
        }
        Ok(())
    }

    /// `bind`.
    pub fn bind(&mut self, handle: Handle, a: &[u8]) -> io::Result<()> {
        let (id, s) = self.sock(handle)?;
        if matches!(s.kind, Kind::Netlink(_)) {
            return Ok(());
        }
        if matches!(s.kind, Kind::Packet(_)) {
            let s = self
                .socks
                .get_mut(&id)
                .ok_or_else(|| io_error(libc::EBADF))?;
            return packet::bind(&self.net, s, a);
        }
        if matches!(s.kind, Kind::RawIp(_)) {
            let s = self
                .socks
                .get_mut(&id)
                .ok_or_else(|| io_error(libc::EBADF))?;
            return rawip::bind(&self.net, s, a);
        }
        let domain = s.domain;
        let a = addr::from_sockaddr(a, domain)?.ok_or_else(|| io_error(libc::EAFNOSUPPORT))?;
        if domain == libc::AF_INET6 && a.is_ipv4() && s.opts.v6only {
            return Err(io_error(libc::EADDRNOTAVAIL));
        }
        let (udp, already) = match &s.kind {
            Kind::Tcp(t) => (false, t.local.is_some()),
            Kind::Udp(u) => (true, u.local.is_some()),
            Kind::Netlink(_) | Kind::Packet(_) | Kind::RawIp(_) => unreachable!(),
        };
        if already {
            return Err(io_error(libc::EINVAL));
        }
        let ip = (!a.ip().is_unspecified()).then_some(a.ip());
        if let Some(ip) = ip {
            // A UDP socket may bind to a multicast group (it then receives that group's).
            if !(self.net.is_local(ip) || udp && ip.is_multicast()) {
                return Err(io_error(libc::EADDRNOTAVAIL));
            }
        }
        let port = if a.port() == 0 {
            self.ephemeral(id, udp, ip)?
        } else {
            if self.port_taken(id, udp, ip, a.port()) {
                return Err(io_error(libc::EADDRINUSE));
            }
            a.port()
        };
        let local = SocketAddr::new(a.ip(), port);
        let s = self
            .socks
            .get_mut(&id)
            .ok_or_else(|| io_error(libc::EBADF))?;
        match &mut s.kind {
            Kind::Tcp(t) => t.local = Some(local),
            Kind::Udp(_) => udp::bind(&mut self.net, s, local),
            Kind::Netlink(_) | Kind::Packet(_) | Kind::RawIp(_) => {}
        }
        Ok(())
    }

    /// `getsockname`.
    pub fn getsockname(&mut self, handle: Handle) -> io::Result<Vec<u8>> {
        let (_, s) = self.sock(handle)?;
        let local = match &s.kind {
            Kind::Tcp(t) => t.local_addr(),
            Kind::Udp(u) => u.local,
            Kind::Netlink(_) => return Ok(netlink::sockaddr_nl()),
            Kind::Packet(p) => {
                let (ifindex, proto) = (p.ifindex, p.proto);
                return Ok(packet::getsockname(&self.net, ifindex, proto));
            }
            Kind::RawIp(r) => r.local.map(|ip| SocketAddr::new(ip, 0)),
        };
        Ok(addr::to_sockaddr(
            local.unwrap_or_else(|| addr::unspecified(s.domain)),
            s.domain,
        ))
    }

    /// `getpeername`.
    pub fn getpeername(&mut self, handle: Handle) -> io::Result<Vec<u8>> {
        let (_, s) = self.sock(handle)?;
        let peer = match &s.kind {
            Kind::Tcp(t) => t.peer(),
            Kind::Udp(u) => u.remote,
            Kind::Netlink(_) => return Ok(netlink::sockaddr_nl()),
            Kind::Packet(_) => return Err(io_error(libc::EOPNOTSUPP)),
            Kind::RawIp(_) => None,
        };
        let peer = peer.ok_or_else(|| io_error(libc::ENOTCONN))?;
        Ok(addr::to_sockaddr(peer, s.domain))
    }

    /// `shutdown`: acts on the application's end, so that the plug-in's end sees EOF after the
    /// data already written (SHUT_WR → FIN) and the application reads EOF (SHUT_RD).
    pub fn shutdown(&mut self, handle: Handle, how: i32) -> io::Result<()> {
        if !matches!(how, libc::SHUT_RD | libc::SHUT_WR | libc::SHUT_RDWR) {
            return Err(io_error(libc::EINVAL));
        }
        let (_, s) = self.sock(handle)?;
        let connected = match &s.kind {
            Kind::Tcp(t) => t.peer().is_some(),
            Kind::Udp(u) => u.remote.is_some(),
            Kind::Netlink(_) => true,
            Kind::Packet(_) => return Err(io_error(libc::EOPNOTSUPP)),
            Kind::RawIp(_) => false,
        };
        if !connected {
            return Err(io_error(libc::ENOTCONN));
        }
        let app = app_end(&s.handle).ok_or_else(|| io_error(libc::EBADF))?;
        sys::shutdown(app, how)
    }

    /// `setsockopt`.
    pub fn setsockopt(
        &mut self,
        handle: Handle,
        level: i32,
        name: i32,
        v: &[u8],
    ) -> io::Result<()> {
        let id = *self
            .handles
            .get(&handle)
            .ok_or_else(|| io_error(libc::EBADF))?;
        let sending = matches!(level, libc::IPPROTO_IP | libc::IPPROTO_IPV6)
            || (level == libc::SOL_SOCKET
                && matches!(
                    name,
                    libc::SO_BROADCAST | libc::SO_BINDTODEVICE | SO_BINDTOIFINDEX
                ));
        if sending {
            udp::flush_written(self, id);
        }
        let s = self
            .socks
            .get_mut(&id)
            .ok_or_else(|| io_error(libc::EBADF))?;
        let int = || -> io::Result<i32> {
            v.get(..4)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| io_error(libc::EINVAL))
        };
        if matches!(s.kind, Kind::Netlink(_)) {
            return match level {
                libc::SOL_SOCKET => Ok(()),
                _ => Err(io_error(libc::ENOPROTOOPT)),
            };
        }
        if matches!(s.kind, Kind::Packet(_)) && level != libc::SOL_SOCKET {
            // SOL_PACKET options (memberships, rings, fanout, …) are not emulated; the IP
            // levels are not a packet socket's (the kernel says ENOPROTOOPT for both).
            return Err(io_error(libc::ENOPROTOOPT));
        }
        if let Kind::RawIp(r) = &mut s.kind {
            if let Some(res) = r.setsockopt(&self.net, level, name, v) {
                return res;
            }
        }
        if matches!(s.kind, Kind::Udp(_)) {
            // Ok(true): a membership was dropped, the interface may leave the group.
            if let Some(r) = udp::setsockopt(&mut self.net, s, level, name, v) {
                if matches!(r, Ok(true)) {
                    self.release_groups();
                }
                return r.map(|_| ());
            }
        }
        let buf = |v: i32| (v.max(0) as usize).clamp(BUF_MIN, BUF_MAX);
        match (level, name) {
            (libc::SOL_SOCKET, libc::SO_REUSEADDR) => s.opts.reuseaddr = int()? != 0,
            (libc::SOL_SOCKET, libc::SO_REUSEPORT) => s.opts.reuseaddr = int()? != 0,
            (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => s.opts.keepalive = int()? != 0,
            (libc::SOL_SOCKET, libc::SO_RCVBUF) => s.opts.rcvbuf = buf(int()?),
            (libc::SOL_SOCKET, libc::SO_SNDBUF) => s.opts.sndbuf = buf(int()?),
            (libc::SOL_SOCKET, libc::SO_LINGER) => {
                if v.len() < 8 {
                    return Err(io_error(libc::EINVAL));
                }
                let on = i32::from_ne_bytes([v[0], v[1], v[2], v[3]]);
                let secs = i32::from_ne_bytes([v[4], v[5], v[6], v[7]]);
                s.opts.linger0 = on != 0 && secs == 0;
            }
            (libc::SOL_SOCKET, libc::SO_BROADCAST) => s.opts.broadcast = int()? != 0,
            (libc::SOL_SOCKET, libc::SO_BINDTODEVICE | SO_BINDTOIFINDEX) => {
                s.opts.bound_dev = bound_device(&self.net, name, v)?
            }
            (libc::SOL_SOCKET, libc::SO_RCVTIMEO | libc::SO_SNDTIMEO) => {}
            (libc::IPPROTO_TCP, libc::TCP_NODELAY) if matches!(s.kind, Kind::Tcp(_)) => {
                s.opts.nodelay = int()? != 0
            }
            (libc::IPPROTO_TCP, _) if matches!(s.kind, Kind::Tcp(_)) => {}
            (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) if s.domain == libc::AF_INET6 => {
                s.opts.v6only = int()? != 0
            }
            (libc::IPPROTO_IP | libc::IPPROTO_IPV6, _) => {}
            _ => return Err(io_error(libc::ENOPROTOOPT)),
        }
        let opts = s.opts;
        if let Kind::Tcp(t) = &mut s.kind {
            tcp::apply_opts(&mut self.net, t, &opts);
        }
        Ok(())
    }

    /// `getsockopt`: the value's bytes (the caller truncates them to the length it was given).
    pub fn getsockopt(&mut self, handle: Handle, level: i32, name: i32) -> io::Result<Vec<u8>> {
        let (_, s) = self.sock(handle)?;
        let (ty, proto) = match &s.kind {
            Kind::Tcp(_) => (libc::SOCK_STREAM, libc::IPPROTO_TCP),
            Kind::Udp(_) => (libc::SOCK_DGRAM, libc::IPPROTO_UDP),
            Kind::Netlink(n) => (libc::SOCK_RAW, n.protocol()),
            Kind::Packet(p) => (
                if p.raw {
                    libc::SOCK_RAW
                } else {
                    libc::SOCK_DGRAM
                },
                p.protocol,
            ),
            Kind::RawIp(r) => {
                if let Some(v) = r.getsockopt(level, name) {
                    return v;
                }
                (libc::SOCK_RAW, r.protocol())
            }
        };
        if let Kind::Udp(u) = &s.kind {
            if matches!(level, libc::IPPROTO_IP | libc::IPPROTO_IPV6) {
                return u.ip.getsockopt(s.domain, level, name);
            }
        }
        let b = |v: bool| i32::from(v);
        let v: i32 = match (level, name) {
            (libc::SOL_SOCKET, libc::SO_ERROR) => std::mem::take(&mut s.so_error),
            (libc::SOL_SOCKET, libc::SO_TYPE) => ty,
            (libc::SOL_SOCKET, libc::SO_DOMAIN) => s.domain,
            (libc::SOL_SOCKET, libc::SO_PROTOCOL) => proto,
            (libc::SOL_SOCKET, libc::SO_ACCEPTCONN) => {
                b(matches!(&s.kind, Kind::Tcp(t) if t.is_listening()))
            }
            (libc::SOL_SOCKET, libc::SO_REUSEADDR | libc::SO_REUSEPORT) => b(s.opts.reuseaddr),
            (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => b(s.opts.keepalive),
            (libc::SOL_SOCKET, libc::SO_RCVBUF) => s.opts.rcvbuf as i32,
            (libc::SOL_SOCKET, libc::SO_SNDBUF) => s.opts.sndbuf as i32,
            (libc::SOL_SOCKET, libc::SO_LINGER) => {
                let mut v = b(s.opts.linger0).to_ne_bytes().to_vec();
                v.extend_from_slice(&0i32.to_ne_bytes());
                return Ok(v);
            }
            (libc::SOL_SOCKET, libc::SO_BROADCAST) => b(s.opts.broadcast),
            (libc::SOL_SOCKET, libc::SO_BINDTODEVICE) => {
                // The name with its NUL, as Linux; nothing when not bound.
                let name = s.opts.bound_dev.and_then(|x| self.net.by_index(x));
                return Ok(name.map_or_else(Vec::new, |i| {
                    let mut n = self.net.ifaces[i].name.as_bytes().to_vec();
                    n.push(0);
                    n
                }));
            }
            (libc::SOL_SOCKET, SO_BINDTOIFINDEX) => s.opts.bound_dev.unwrap_or(0) as i32,
            (libc::IPPROTO_TCP, libc::TCP_NODELAY) if ty == libc::SOCK_STREAM => b(s.opts.nodelay),
            (libc::IPPROTO_TCP, libc::TCP_MAXSEG) if ty == libc::SOCK_STREAM => 1460,
            (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) if s.domain == libc::AF_INET6 => {
                b(s.opts.v6only)
            }
            _ => return Err(io_error(libc::ENOPROTOOPT)),
        };
        Ok(v.to_ne_bytes().to_vec())
    }
}

/// A stack: its shared state and its event-loop thread.
pub struct Stack {
    pub shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Stack {
    /// `newstack(vnls)`: one VDE interface per VNL plus `lo`; starts the event loop.
    pub fn new(vnls: &[&str]) -> io::Result<Stack> {
        let parsed = vnl::parse_all(vnls)?;
        if !parsed.is_empty() {
            vdeplug::ensure_loaded()?;
        }
        let now = smoltcp::time::Instant::from_micros(0);
        let mut ifaces = vec![Iface::loopback(now)];
        for (k, v) in parsed.iter().enumerate() {
            if v.ifname == "lo" {
                return Err(error(
                    libc::EINVAL,
                    "malformed VNL list: interface name \"lo\" is the loopback's",
                ));
            }
            let conn = vdeplug::Conn::open(&v.url, &format!("ioth smoltcp {}", v.ifname))?;
            let dev = VdeDevice::new(conn, crate::net::DEFAULT_MTU as usize)?;
            ifaces.push(Iface::vde(k as u32 + 2, &v.ifname, dev, now));
        }
        let core = Core::new(Net::new(ifaces));
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            wake: Event::new()?,
        });
        let s2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ioth-smoltcp".into())
            .spawn(move || crate::evloop::run(&s2))?;
        Ok(Stack {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the event loop and closes every socket and VDE connection.
    pub fn stop(&self) {
        self.shared.lock().stopping = true;
        self.shared.wake.signal();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        let mut core = self.shared.lock();
        core.handles.clear();
        core.socks.clear();
        core.net.ifaces.clear();
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
    }
}
