//! The audit thread's loop: a look at every interval (with a trail), an answer to each status
//! connection (`ioth ps`), and an event for each system call the sandbox refused
//! ([`crate::sigsys`]).

use std::io::Write as _;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::Shared;
use crate::audit::errname;

/// Answers one `ioth ps` connection: the status, then EOF. Only the host's own user (or root).
fn answer(shared: &Shared, l: &UnixListener) {
    let Ok((mut c, _)) = l.accept() else { return };
    let _ = c.set_nonblocking(false);
    let _ = c.set_write_timeout(Some(Duration::from_secs(1)));
    let me = nix::unistd::getuid().as_raw();
    let peer = nix::sys::socket::getsockopt(&c.as_fd(), nix::sys::socket::sockopt::PeerCredentials)
        .map(|c| c.uid());
    if !matches!(peer, Ok(u) if u == me || u == 0) {
        return;
    }
    let mut s = shared.status().to_string();
    s.push('\n');
    let _ = c.write_all(s.as_bytes());
}

/// The most `refused` events of system calls a stack's trail gets; later ones are only
/// counted (`ioth ps`, the `stop` event), so that a plug-in looping on a refused call cannot
/// fill the disk.
const MAX_REFUSED_EVENTS: u64 = 1000;

/// The refusals waiting on `r`: one `refused` event each (up to [`MAX_REFUSED_EVENTS`]), and
/// the count.
pub(super) fn refusals(shared: &Shared, r: &OwnedFd) {
    let _batch = shared.refusing.lock().unwrap_or_else(|e| e.into_inner());
    for rec in crate::sigsys::drain(r) {
        let errno = rec.errno as i32;
        let n = {
            let mut st = shared.lock();
            st.refusals += 1;
            st.refusals
        };
        if n > MAX_REFUSED_EVENTS {
            continue;
        }
        shared.emit(
            "refused",
            json!({
                "by": "seccomp",
                "syscall": crate::seccomp::name(rec.nr),
                "nr": rec.nr,
                "args": rec.args.iter().map(|a| format!("{a:#x}")).collect::<Vec<_>>(),
                "errno": errno,
                "errname": errname(errno),
            }),
        );
    }
}

/// The audit thread; with `watch` (a duplicate of the channel), also the host's watchdog
/// ([`crate::watchdog`]): it stays on it once the stack has ended, until the process does.
pub(super) fn run(shared: Arc<Shared>, listener: Option<UnixListener>, watch: Option<OwnedFd>) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let refused = shared.refused.get();
    let period = shared.audit.as_ref().and(shared.info.interval);
    let ended = || {
        if let Some(w) = &watch {
            crate::watchdog::watch(w.as_fd());
        }
    };
    // The first look, off the serving thread (the NewStack reply does not wait for it).
    if shared.audit.is_some() && !shared.lock().ended {
        shared.look(true);
    }
    let mut next = period.map(|p| Instant::now() + p);
    loop {
        if shared.lock().ended {
            return ended();
        }
        let wait = next.map(|n| n.saturating_duration_since(Instant::now()));
        let timeout = match wait {
            Some(w) => {
                PollTimeout::try_from(w.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::NONE)
            }
            None => PollTimeout::NONE,
        };
        let mut pfd: Vec<PollFd<'_>> = watch
            .iter()
            .map(|w| PollFd::new(w.as_fd(), crate::watchdog::hangup()))
            .chain(
                listener
                    .iter()
                    .map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN)),
            )
            .chain(
                refused
                    .iter()
                    .map(|r| PollFd::new(r.as_fd(), PollFlags::POLLIN)),
            )
            .collect();
        if pfd.is_empty() {
            std::thread::sleep(wait.unwrap_or(Duration::from_secs(60)));
        } else if matches!(poll(&mut pfd, timeout), Ok(n) if n > 0) {
            let ready: Vec<Option<PollFlags>> = pfd.iter().map(|p| p.revents()).collect();
            drop(pfd);
            let mut i = 0;
            if watch.is_some() {
                if crate::watchdog::hung_up(ready[i]) {
                    crate::watchdog::expire();
                }
                i += 1;
            }
            let ready = |i: usize| ready[i].is_some_and(|r| !r.is_empty());
            if let Some(l) = &listener {
                if ready(i) {
                    answer(&shared, l);
                }
                i += 1;
            }
            if let Some(r) = refused {
                if ready(i) {
                    refusals(&shared, r);
                }
            }
        }
        if let (Some(n), Some(p)) = (next, period) {
            if Instant::now() >= n {
                if shared.lock().ended {
                    return ended();
                }
                shared.look(true);
                next = Some(Instant::now() + p);
            }
        }
    }
}
