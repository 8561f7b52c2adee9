//! The stack's event loop: one thread per stack. Runs in the host process.
//!
//! Each turn, under the stack's mutex: move what the applications wrote into smoltcp, poll
//! every interface that is up (frames in, timers, frames out), move what smoltcp received into
//! the pairs, settle handshakes, closes and resets. Then, without the mutex, sleep in poll(2) on
//! the wake-up eventfd (control calls), every VDE data fd (and control fd, whose hang-up means
//! the switch went away), and the plug-in's end of every socket for the events it needs now,
//! for as long as smoltcp's `poll_delay` allows (ppoll(2), to the microsecond) — never a fixed
//! tick. A turn that left work (a receive budget spent, packets on the loopback) polls with a
//! zero timeout. An interface whose device holds a frame the VDE side refused ignores its
//! `poll_delay` (smoltcp says "now" while it has segments to send, but nothing can leave
//! before the data fd turns writable): it waits for `POLLOUT` instead of spinning.

use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use crate::net::Dev;
use crate::sock::{Core, Fate, Kind, Shared};
use crate::{frag, netlink, packet, rawip, tcp, udp};

/// What a pollfd belongs to.
#[derive(Clone, Copy)]
enum Key {
    Wake,
    Data(usize),
    Ctl(usize),
    Sock(u64),
}

/// Runs until the stack stops.
pub fn run(shared: &Shared) {
    let mut ready: Vec<(Key, i16)> = Vec::new();
    let mut pfds: Vec<libc::pollfd> = Vec::new();
    let mut keys: Vec<Key> = Vec::new();
    // The eventfd lives in `Shared`, which outlives this thread.
    let wake = shared.wake.as_fd().as_raw_fd();
    loop {
        let timeout = {
            let mut core = shared.lock();
            if core.stopping {
                return;
            }
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                turn(&mut core, &ready);
                poll_set(&mut core, &mut pfds, &mut keys, wake)
            }));
            match r {
                Ok(t) => t,
                Err(_) => {
                    eprintln!(
                        "ioth_smoltcp[{}]: the event loop panicked; the stack stops",
                        std::process::id()
                    );
                    return;
                }
            }
        };
        if let Err(e) = crate::sys::ppoll(&mut pfds, timeout) {
            eprintln!("ioth_smoltcp[{}]: poll: {e}", std::process::id());
            return;
        }
        ready.clear();
        for (p, k) in pfds.iter().zip(&keys) {
            if p.revents != 0 {
                ready.push((*k, p.revents));
            }
        }
        if ready.iter().any(|(k, _)| matches!(k, Key::Wake)) {
            shared.wake.drain();
        }
    }
}

/// One turn (see the module doc).
fn turn(core: &mut Core, ready: &[(Key, i16)]) {
    let now = core.now();
    for f in &mut core.net.ifaces {
        f.refill();
    }
    for &(k, rev) in ready {
        match k {
            Key::Sock(id) => {
                if let Some(s) = core.socks.get_mut(&id) {
                    s.revents |= rev;
                }
            }
            Key::Data(i) => {
                if let Some(Dev::Vde(d)) = core.net.ifaces.get_mut(i).map(|f| &mut f.dev) {
                    if rev & libc::POLLOUT != 0 {
                        d.flush();
                    }
                    if rev & (libc::POLLHUP | libc::POLLNVAL) != 0 && rev & libc::POLLIN == 0 {
                        d.dead = true;
                    }
                }
            }
            Key::Ctl(i) => {
                if let Some(Dev::Vde(d)) = core.net.ifaces.get_mut(i).map(|f| &mut f.dev) {
                    if rev & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                        d.dead = true;
                    }
                }
            }
            Key::Wake => {}
        }
    }

    // Addresses whose valid lifetime is over go (IFA_CACHEINFO).
    core.net.expire(std::time::Instant::now());

    // Unbound UDP sockets with something to send get their ephemeral port first.
    let unbound: Vec<u64> = core
        .socks
        .iter()
        .filter(|(_, s)| {
            matches!(&s.kind, Kind::Udp(u) if u.local.is_none()) && (s.revents & libc::POLLIN != 0)
        })
        .map(|(id, _)| *id)
        .collect();
    for id in unbound {
        let _ = udp::autobind(core, id);
    }

    // Applications → smoltcp (and netlink requests → answers).
    let Core {
        net,
        socks,
        scratch,
        ..
    } = &mut *core;
    let diag = crate::diag::table_if_asked(net, socks.values());
    for s in socks.values_mut() {
        match &s.kind {
            Kind::Tcp(_) => tcp::pump_in(net, s),
            Kind::Udp(_) => udp::pump_in(net, s, scratch, now),
            Kind::Netlink(_) => netlink::pump(net, s, scratch, now, &diag),
            Kind::Packet(_) => packet::pump_in(net, s, scratch),
            Kind::RawIp(_) => rawip::pump_in(net, s, scratch),
        }
    }

    udp::deliver_looped(net, socks);
    packet::set_taps(net, socks);
    tcp::set_syn_gates(net, socks);
    for f in net.ifaces.iter_mut().filter(|f| f.up) {
        f.poll(now);
    }
    frag::collect(net, socks);
    packet::collect(net, socks);

    // smoltcp → applications, and state changes.
    let Core {
        net, socks, graves, ..
    } = &mut *core;
    let mut gone = Vec::new();
    for (id, s) in socks.iter_mut() {
        let fate = match &s.kind {
            Kind::Tcp(_) => tcp::after_poll(net, s, graves),
            Kind::Udp(_) => udp::after_poll(net, s, now),
            Kind::Packet(_) => packet::after_poll(s),
            Kind::RawIp(_) => rawip::after_poll(net, s),
            Kind::Netlink(_) => {
                if s.orphan_since.is_some() {
                    Fate::Remove
                } else {
                    Fate::Keep
                }
            }
        };
        s.revents = 0;
        if let Fate::Remove = fate {
            gone.push(*id);
        }
    }
    let closed = !gone.is_empty();
    for id in gone {
        core.socks.remove(&id);
    }
    if closed {
        core.release_groups();
    }
    tcp::bury(&mut core.net, &mut core.graves);
}

/// Fills the poll set; returns the timeout (`None`: none).
fn poll_set(
    core: &mut Core,
    pfds: &mut Vec<libc::pollfd>,
    keys: &mut Vec<Key>,
    wake: i32,
) -> Option<Duration> {
    pfds.clear();
    keys.clear();
    let mut push = |fd: i32, events: i16, key: Key| {
        pfds.push(libc::pollfd {
            fd,
            events,
            revents: 0,
        });
        keys.push(key);
    };
    push(wake, libc::POLLIN, Key::Wake);
    let mut busy = false;
    let now = core.now();
    let mut timeout: Option<Duration> = None;
    let mut sooner = |d: Duration| timeout = Some(timeout.map_or(d, |t: Duration| t.min(d)));
    for (i, f) in core.net.ifaces.iter_mut().enumerate() {
        let mut blocked = false;
        if let Dev::Vde(d) = &f.dev {
            blocked = d.tx_blocked();
            if !d.dead {
                if let Some(fd) = d.datafd() {
                    let mut ev = 0;
                    if f.up {
                        ev |= libc::POLLIN;
                        if d.tx_blocked() {
                            ev |= libc::POLLOUT;
                        }
                    }
                    push(fd.as_raw_fd(), ev, Key::Data(i));
                }
                if let Some(fd) = d.ctlfd() {
                    push(fd.as_raw_fd(), 0, Key::Ctl(i));
                }
            }
        }
        if !f.up {
            continue;
        }
        busy |= f.busy();
        if blocked {
            // POLLOUT on the data fd starts the next turn.
            continue;
        }
        if let Some(d) = f.iface.poll_delay(now, &f.sockets) {
            sooner(Duration::from_micros(d.total_micros()));
        }
    }
    for (id, s) in &core.socks {
        let Some(pe) = s.pe.as_ref() else { continue };
        let ev = s.interest(&core.net);
        if ev != 0 {
            push(pe.as_fd().as_raw_fd(), ev, Key::Sock(*id));
        }
    }
    if !core.graves.is_empty() || core.socks.values().any(|s| s.orphan_since.is_some()) {
        // Lingering sockets are checked at least once a second.
        sooner(Duration::from_secs(1));
    }
    if let Some(t) = core.net.next_expiry() {
        sooner(t.saturating_duration_since(std::time::Instant::now()));
    }
    if busy {
        return Some(Duration::ZERO);
    }
    timeout
}
