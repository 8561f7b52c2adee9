//! The host's pump for "proxied, host pump" plug-ins (docs/proxied.md): plug-ins whose sockets
//! are read and written with their own functions. Runs in the host process: control calls on
//! the serving thread, data on ONE pump thread for all sockets of the stack.
//!
//! Each socket has a socketpair: the application's end (`app`, of which the host keeps a copy
//! until `Close`, for the readiness tricks below) and the host's end (`he`). The pump thread
//! sleeps in one poll(2) over every socket that has something to do and a wake-up eventfd, and
//! moves data between `he` and the plug-in's handle with the plug-in's `read`/`write` (streams)
//! or `recvfrom`/`sendto` (datagrams, with the address header of [`ioth_proto::dgram`] while
//! not connected). At most one chunk per direction is in flight: `he` is read only once the
//! plug-in took the last chunk, the plug-in only once `he` took the last one — back-pressure both
//! ways, and a socket with nothing to do is not in the poll set at all (no busy loop).
//!
//! Readiness, as the contract says:
//! - **listening**: one token byte in the pair while the plug-in's handle polls readable;
//!   `accept` consumes it, and the pump looks again;
//! - **connect**: filler bytes make the application's end unwritable until the plug-in's handle
//!   polls writable; the outcome (`SO_ERROR`, read through the plug-in) is kept for the
//!   application's `getsockopt(SO_ERROR)`;
//! - **EOF** both ways with `shutdown(SHUT_WR)`; a **reset** (the plug-in's read fails) closes
//!   `he` with a byte unread in it, so the application's next read fails with `ECONNRESET`.
//!
//! Every call into the plug-in, from either thread, is made under the table's mutex: the
//! plug-in is never called from two threads at once, and every handle is non-blocking (set
//! through the plug-in's own `fcntl`), so no call holds the mutex for long.
mod entry;

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use ioth_plugin_sdk::errno::io_error;
use ioth_proto::ControlOp;
use nix::sys::eventfd::{EfdFlags, EventFd};

use self::entry::{
    connect, new_entry, nix_err, pair, recv_nb, shutdown, Entry, Fate, State, LINGER,
};
use crate::calls::{self, Calls};

/// What the serving thread and the pump thread share.
struct Shared {
    table: Mutex<HashMap<u64, Entry>>,
    wake: EventFd,
    calls: Calls,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self) {
        let _ = self.wake.write(1);
    }
}

/// The pump of one stack: its table and its thread.
pub struct Pump {
    shared: Arc<Shared>,
}

/// The result of a control call on a pumped socket.
pub enum Done {
    /// The call's bytes (an address, an option value; empty for most).
    Bytes(Vec<u8>),
    /// `accept`: the new socket's handle is in the table under the id given; here its peer and
    /// the application's end.
    Accepted { peer: Vec<u8>, app: OwnedFd },
}

impl Pump {
    /// Starts the pump thread of a stack whose plug-in functions are `calls`.
    pub fn start(calls: Calls) -> io::Result<Pump> {
        let wake = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(nix_err)?;
        let shared = Arc::new(Shared {
            table: Mutex::new(HashMap::new()),
            wake,
            calls,
        });
        let s2 = shared.clone();
        std::thread::Builder::new()
            .name("ioth-pump".into())
            .spawn(move || run(&s2))?;
        Ok(Pump { shared })
    }

    /// `socket(domain, ty, protocol)` on the plug-in, registered as `id`: the application's end
    /// (a copy; the host keeps one).
    pub fn socket(&self, id: u64, domain: i32, ty: i32, protocol: i32) -> io::Result<OwnedFd> {
        let c = self.shared.calls;
        let mut t = self.shared.lock();
        let h = c.socket(domain, ty, protocol)?;
        let base = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
        let records = base != libc::SOCK_STREAM;
        let framed = records && matches!(domain, libc::AF_INET | libc::AF_INET6 | libc::AF_PACKET);
        let made = c
            .set_nonblocking(h)
            .and_then(|()| pair(records, ty & libc::SOCK_NONBLOCK != 0))
            .and_then(|(he, app)| Ok((app.try_clone()?, he, app)));
        let (give, he, app) = match made {
            Ok(v) => v,
            Err(e) => {
                let _ = c.close(h);
                return Err(e);
            }
        };
        t.insert(id, new_entry(h, he, app, records, framed));
        drop(t);
        self.shared.wake();
        Ok(give)
    }

    /// Serves control call `op` on socket `id`; an accepted socket is registered as `new_id`.
    pub fn control(&self, id: u64, op: &ControlOp, new_id: u64) -> io::Result<Done> {
        let c = self.shared.calls;
        let mut t = self.shared.lock();
        let e = t.get_mut(&id).ok_or_else(|| io_error(libc::EBADF))?;
        let h = e.handle;
        let none = || Ok(Done::Bytes(Vec::new()));
        let r = match op {
            ControlOp::Bind(a) => c.bind(h, a).and_then(|()| none()),
            ControlOp::Listen(backlog) => {
                c.listen(h, *backlog)?;
                if matches!(e.state, State::Fresh) && !e.records {
                    e.state = State::Listening { token: false };
                }
                none()
            }
            ControlOp::Connect(a) => connect(&c, e, a).and_then(|()| none()),
            ControlOp::Accept => {
                // The token, if there is one, goes with this accept; the pump looks again.
                if let Some(app) = &e.app {
                    let _ = recv_nb(app, &mut [0u8; 1]);
                }
                if let State::Listening { .. } = e.state {
                    e.state = State::Listening { token: false };
                }
                let (nh, peer) = c.accept(h)?;
                let made = c
                    .set_nonblocking(nh)
                    .and_then(|()| pair(false, false))
                    .and_then(|(he, app)| Ok((app.try_clone()?, he, app)));
                match made {
                    Ok((give, he, app)) => {
                        let mut n = new_entry(nh, he, app, false, false);
                        n.state = State::Open;
                        t.insert(new_id, n);
                        Ok(Done::Accepted { peer, app: give })
                    }
                    Err(err) => {
                        let _ = c.close(nh);
                        Err(err)
                    }
                }
            }
            ControlOp::GetSockName => c.name(h, false).map(Done::Bytes),
            ControlOp::GetPeerName => c.name(h, true).map(Done::Bytes),
            ControlOp::SetSockOpt { level, name, value } => {
                c.setsockopt(h, *level, *name, value).and_then(|()| none())
            }
            ControlOp::GetSockOpt { level, name, len }
                if *level == libc::SOL_SOCKET && *name == libc::SO_ERROR && e.so_error != 0 =>
            {
                let v = std::mem::take(&mut e.so_error).to_ne_bytes();
                Ok(Done::Bytes(v[..(*len as usize).min(4)].to_vec()))
            }
            ControlOp::GetSockOpt { level, name, len } => c
                .getsockopt(h, *level, *name, *len as usize)
                .map(Done::Bytes),
            ControlOp::Shutdown(how) => shutdown(&c, e, *how).and_then(|()| none()),
        };
        drop(t);
        self.shared.wake();
        r
    }

    /// The payload bytes socket `id` moved so far: from the application to the plug-in, and
    /// back.
    pub fn counters(&self, id: u64) -> Option<(u64, u64)> {
        self.shared.lock().get(&id).map(|e| (e.sent, e.received))
    }

    /// The application closed socket `id`: the pump hands the plug-in what is left of the
    /// application's data (bounded by [`LINGER`]), then calls the plug-in's `close`.
    pub fn close(&self, id: u64) -> io::Result<()> {
        let mut t = self.shared.lock();
        let e = t.get_mut(&id).ok_or_else(|| io_error(libc::EBADF))?;
        if e.closing.is_some() {
            return Err(io_error(libc::EBADF));
        }
        e.closing = Some(Instant::now());
        e.app = None;
        drop(t);
        self.shared.wake();
        Ok(())
    }
}

/// The pump thread (see the module doc).
fn run(shared: &Shared) {
    let c = shared.calls;
    let wake = shared.wake.as_fd().as_raw_fd();
    let mut pfds: Vec<libc::pollfd> = Vec::new();
    let mut keys: Vec<(u64, bool)> = Vec::new();
    let mut ready: Vec<(u64, i16)> = Vec::new();
    loop {
        let timeout = {
            let t = shared.lock();
            pfds.clear();
            keys.clear();
            pfds.push(libc::pollfd {
                fd: wake,
                events: libc::POLLIN,
                revents: 0,
            });
            let mut deadline: Option<Instant> = None;
            for (id, e) in t.iter() {
                let (plug, pair) = e.interest();
                if plug != 0 {
                    pfds.push(libc::pollfd {
                        fd: e.handle,
                        events: plug,
                        revents: 0,
                    });
                    keys.push((*id, true));
                }
                if let (true, Some(he)) = (pair != 0, &e.he) {
                    pfds.push(libc::pollfd {
                        fd: he.as_raw_fd(),
                        events: pair,
                        revents: 0,
                    });
                    keys.push((*id, false));
                }
                if let Some(since) = e.closing {
                    let d = since + LINGER;
                    deadline = Some(deadline.map_or(d, |x| x.min(d)));
                }
            }
            deadline.map_or(-1, |d| {
                d.saturating_duration_since(Instant::now())
                    .as_millis()
                    .saturating_add(1)
                    .min(i32::MAX as u128) as i32
            })
        };
        if let Err(e) = calls::poll(&mut pfds, timeout) {
            eprintln!("ioth-host: pump: poll: {e}");
            return;
        }
        if pfds[0].revents != 0 {
            let _ = shared.wake.read();
        }
        ready.clear();
        for (p, (id, plug)) in pfds[1..].iter().zip(&keys) {
            if p.revents != 0 {
                let rev = if *plug { p.revents } else { 0 };
                match ready.iter_mut().find(|(i, _)| i == id) {
                    Some(r) => r.1 |= rev,
                    None => ready.push((*id, rev)),
                }
            }
        }
        let mut t = shared.lock();
        for (id, plug_rev) in &ready {
            if let Some(e) = t.get_mut(id) {
                e.service(&c, *plug_rev);
            }
        }
        // Closed sockets whose data is all handed over (or that waited long enough) go.
        let now = Instant::now();
        let done: Vec<u64> = t
            .iter()
            .filter(|(_, e)| matches!(e.fate(now), Fate::Close))
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(e) = t.remove(&id) {
                let _ = c.close(e.handle);
            }
        }
    }
}
