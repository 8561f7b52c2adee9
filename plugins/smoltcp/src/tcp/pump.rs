//! The event loop's side of TCP sockets ([`super`]): data pumped between the pair and smoltcp
//! both ways with back-pressure, what each poll changed (connections accepted, connects
//! finished, FIN and resets passed on), and closed sockets lingering until their data is out.

use super::*;

/// The events to poll the plug-in's end for.
pub fn interest(t: &Tcp, s: &Sock, net: &Net) -> i16 {
    let mut ev = 0;
    if let St::Conn(c) = &t.st {
        if c.filler.is_none() && !c.app_eof && !c.done {
            let k = net.ifaces[c.iface].sockets.get::<tcp::Socket>(c.h);
            if k.may_send() && k.send_queue() < k.send_capacity() {
                ev |= libc::POLLIN;
            }
        }
    }
    if s.want_out {
        ev |= libc::POLLOUT;
    }
    ev
}

/// Before smoltcp's poll: moves what the application wrote into smoltcp's send buffer.
pub fn pump_in(net: &mut Net, s: &mut Sock) {
    let Sock {
        pe, kind, revents, ..
    } = s;
    let Some(pe) = pe else { return };
    let St::Conn(c) = &mut tcp_of(kind).st else {
        return;
    };
    if c.filler.is_some() || c.app_eof || c.done {
        return;
    }
    if *revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 {
        return;
    }
    let k = net.ifaces[c.iface].sockets.get_mut::<tcp::Socket>(c.h);
    for _ in 0..8 {
        if !k.may_send() || k.send_queue() >= k.send_capacity() {
            break;
        }
        let r = k.send(|buf| {
            if buf.is_empty() {
                return (0, Err(io::ErrorKind::WouldBlock.into()));
            }
            match sys::recv(pe.as_fd(), buf, 0) {
                Ok(n) => (n, Ok(n)),
                Err(e) => (0, Err(e)),
            }
        });
        match r {
            Ok(Ok(0)) => {
                c.app_eof = true;
                k.close();
                break;
            }
            Ok(Ok(n)) => c.counts.sent(n, false),
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EINTR) => {}
            Ok(Err(_)) => {
                // ECONNRESET: the application closed with data unread; reset as a kernel would.
                c.app_eof = true;
                k.abort();
                break;
            }
            Err(_) => break,
        }
    }
}

/// Writes smoltcp's received data into the pair, as far as it takes it.
pub(super) fn pump_out(
    k: &mut tcp::Socket<'_>,
    pe: &std::os::fd::OwnedFd,
    want_out: &mut bool,
    counts: &mut crate::counts::Counts,
) {
    *want_out = false;
    for _ in 0..8 {
        if !k.can_recv() {
            break;
        }
        let r = k.recv(|buf| match sys::send(pe.as_fd(), buf) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        });
        match r {
            Ok(Ok(n)) => counts.received(n, false),
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                *want_out = true;
                break;
            }
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EINTR) => {}
            Ok(Err(_)) => {
                // EPIPE: nobody reads the application's end any more; drop what arrives.
                while k.can_recv() {
                    if k.recv(|b| (b.len(), ())).is_err() {
                        break;
                    }
                }
                break;
            }
            Err(_) => break,
        }
    }
}

/// Closes the plug-in's end with a byte unread in it: the application reads `ECONNRESET`.
pub(super) fn reset_pair(s: &mut Sock) {
    if let Some(app) = app_end(&s.handle) {
        let _ = sys::send(app, &[RESET_BYTE]);
    }
    s.pe = None;
}

/// After smoltcp's poll: handshakes, received data, FIN, resets, new connections.
pub fn after_poll(core_net: &mut Net, s: &mut Sock, graves: &mut Vec<Grave>) -> Fate {
    let opts = s.opts;
    let t = tcp_of(&mut s.kind);
    match &mut t.st {
        St::Listen(l) => {
            listener_turn(core_net, l, s.domain, &opts, s.pe.as_ref(), graves);
            Fate::Keep
        }
        St::Conn(_) => conn_turn(core_net, s, graves),
        St::Fresh | St::Dead => {
            if s.orphan_since.is_some() {
                Fate::Remove
            } else {
                Fate::Keep
            }
        }
    }
}

pub(super) fn listener_turn(
    net: &mut Net,
    l: &mut Listener,
    domain: i32,
    opts: &Opts,
    pe: Option<&std::os::fd::OwnedFd>,
    graves: &mut Vec<Grave>,
) {
    let mut k = 0;
    while k < l.socks.len() {
        let (i, h) = l.socks[k];
        let sock = net.ifaces[i].sockets.get_mut::<tcp::Socket>(h);
        match sock.state() {
            State::Listen | State::SynReceived => k += 1,
            State::Closed => {
                let _ = sock.listen(l.ep);
                k += 1;
            }
            _ => {
                l.socks.swap_remove(k);
                let (Some(peer), Some(local)) = (sock.remote_endpoint(), sock.local_endpoint())
                else {
                    sock.abort();
                    graves.push(grave(i, h));
                    continue;
                };
                let peer = SocketAddr::from(peer);
                let local = SocketAddr::from(local);
                let wrong_family = match domain {
                    libc::AF_INET => peer.is_ipv6(),
                    _ => peer.is_ipv4() && opts.v6only,
                };
                if wrong_family || l.ready.len() >= l.backlog {
                    sock.abort();
                    graves.push(grave(i, h));
                    continue;
                }
                l.ready.push_back(Ready {
                    iface: i,
                    h,
                    peer,
                    local,
                });
                if let Some(pe) = pe {
                    let _ = sys::send(pe.as_fd(), &[ACCEPT_TOKEN]);
                }
            }
        }
    }
    // Cheap when nothing is missing; also refills after `accept` made room in the queue.
    replenish(net, l, opts);
}

pub(super) fn grave(iface: usize, h: SocketHandle) -> Grave {
    Grave {
        iface,
        h,
        until: std::time::Instant::now() + LINGER,
    }
}

pub(super) fn conn_turn(net: &mut Net, s: &mut Sock, graves: &mut Vec<Grave>) -> Fate {
    let orphan = s.orphan_since.is_some();
    let mut reset = false;
    {
        let Sock {
            pe,
            kind,
            so_error,
            want_out,
            handle,
            ..
        } = &mut *s;
        let St::Conn(c) = &mut tcp_of(kind).st else {
            return Fate::Keep;
        };
        let k = net.ifaces[c.iface].sockets.get_mut::<tcp::Socket>(c.h);
        let st = k.state();
        if let Some(f) = c.filler.take() {
            match st {
                State::SynSent | State::SynReceived => {
                    c.filler = Some(f);
                    if orphan {
                        k.abort();
                        graves.push(grave(c.iface, c.h));
                        return Fate::Remove;
                    }
                    return Fate::Keep;
                }
                State::Closed | State::TimeWait => {
                    unfill(handle, pe.as_ref(), f);
                    let e = if c.started.elapsed() >= USER_TIMEOUT {
                        libc::ETIMEDOUT
                    } else {
                        libc::ECONNREFUSED
                    };
                    *so_error = e;
                    if let Some(pe) = pe.as_ref() {
                        let _ = sys::shutdown(pe.as_fd(), libc::SHUT_RDWR);
                    }
                    let (iface, h) = (c.iface, c.h);
                    net.ifaces[iface].sockets.remove(h);
                    tcp_of(kind).st = St::Dead;
                    return if orphan { Fate::Remove } else { Fate::Keep };
                }
                _ => {
                    unfill(handle, pe.as_ref(), f);
                    c.report = Some(0);
                }
            }
        }
        if let Some(p) = pe.as_ref() {
            pump_out(k, p, want_out, &mut c.counts);
            let fin = matches!(
                st,
                State::CloseWait | State::LastAck | State::Closing | State::TimeWait
            ) || (st == State::Closed
                && matches!(
                    c.last,
                    State::CloseWait | State::LastAck | State::Closing | State::TimeWait
                ));
            if fin && !c.fin_to_app && !k.can_recv() {
                let _ = sys::shutdown(p.as_fd(), libc::SHUT_WR);
                c.fin_to_app = true;
            }
        }
        if st == State::Closed && !c.done && !k.can_recv() {
            c.done = true;
            let graceful = matches!(
                c.last,
                State::LastAck | State::TimeWait | State::Closing | State::Closed
            );
            if !graceful {
                *so_error = libc::ECONNRESET;
                reset = true;
            }
        }
        c.last = st;
    }
    if reset {
        reset_pair(s);
    }
    finish_if_orphan(net, s, graves)
}

/// A socket the host closed leaves the table once the application's data is all in smoltcp
/// (its end reached EOF, or was reset); smoltcp's socket lingers in the graves until closed.
pub(super) fn finish_if_orphan(net: &mut Net, s: &mut Sock, graves: &mut Vec<Grave>) -> Fate {
    let Some(since) = s.orphan_since else {
        return Fate::Keep;
    };
    let gone = s.pe.is_none();
    let St::Conn(c) = &mut tcp_of(&mut s.kind).st else {
        return Fate::Remove;
    };
    let k = net.ifaces[c.iface].sockets.get_mut::<tcp::Socket>(c.h);
    if c.done {
        net.ifaces[c.iface].sockets.remove(c.h);
        return Fate::Remove;
    }
    if since.elapsed() > LINGER {
        k.abort();
        graves.push(grave(c.iface, c.h));
        return Fate::Remove;
    }
    if c.app_eof || gone {
        if !c.app_eof {
            k.close();
        }
        graves.push(grave(c.iface, c.h));
        return Fate::Remove;
    }
    Fate::Keep
}

/// The host closed the socket: listeners stop at once (connections waiting in the queue are
/// reset); a connection goes on until the application's end is drained. Returns whether the
/// socket can leave the table now.
pub fn close(net: &mut Net, s: &mut Sock, graves: &mut Vec<Grave>) -> bool {
    let linger0 = s.opts.linger0;
    let t = tcp_of(&mut s.kind);
    match &mut t.st {
        St::Fresh | St::Dead => true,
        St::Listen(l) => {
            for (i, h) in l.socks.drain(..) {
                net.ifaces[i].sockets.remove(h);
            }
            for r in l.ready.drain(..) {
                net.ifaces[r.iface]
                    .sockets
                    .get_mut::<tcp::Socket>(r.h)
                    .abort();
                graves.push(grave(r.iface, r.h));
            }
            true
        }
        St::Conn(c) => {
            let k = net.ifaces[c.iface].sockets.get_mut::<tcp::Socket>(c.h);
            if c.done {
                net.ifaces[c.iface].sockets.remove(c.h);
                true
            } else if linger0 || c.filler.is_some() {
                k.abort();
                graves.push(grave(c.iface, c.h));
                true
            } else {
                false
            }
        }
    }
}

/// Removes the smoltcp sockets of the graves that have closed (or waited too long).
pub fn bury(net: &mut Net, graves: &mut Vec<Grave>) {
    let now = std::time::Instant::now();
    graves.retain(|g| {
        let Some(f) = net.ifaces.get_mut(g.iface) else {
            return false;
        };
        let st = f.sockets.get::<tcp::Socket>(g.h).state();
        if matches!(st, State::Closed | State::TimeWait) || now > g.until {
            f.sockets.remove(g.h);
            false
        } else {
            true
        }
    });
}
