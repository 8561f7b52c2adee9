//! [`HostProcess`]: the application's side of one host process — its pid, the pidfd that says
//! when it ended, its reaping, and the wait for a reply that also watches for its end. Runs in
//! the application.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ioth_proto::Channel;

/// One host process, the child of this application (exec'd by it, or forked for it by the fork
/// server with `CLONE_PARENT`).
#[derive(Debug)]
pub(crate) struct HostProcess {
    pid: u32,
    /// The process that created the stack (see [`super::Link`] on `fork`).
    owner: u32,
    /// Readable once the host has ended (see [`super::spawn::pidfd_open`]); `None` without
    /// pidfds, and for hosts of the fork server, whose end is seen through the channel alone.
    pidfd: Option<OwnedFd>,
    /// Whether the host is still to be reaped (false once reaped or handed to the reaper).
    unreaped: Mutex<bool>,
    /// Set once the host is gone: how it ended.
    gone: OnceLock<String>,
}

/// What waiting for a reply found.
pub(crate) enum Wait {
    /// The channel has a message or EOF.
    Readable,
    /// The host ended but its end of the channel is still open somewhere.
    HostEnded,
    /// The deadline passed.
    TimedOut,
}

/// [`reap_pid`](super::reaper::reap_pid) of the host behind `slot`, once.
fn reap_child(slot: &mut bool, pid: u32, grace: Duration) -> Option<String> {
    if !*slot {
        return None;
    }
    let how = super::reaper::reap_pid(pid, grace);
    *slot = false;
    how
}

impl HostProcess {
    /// The host `pid`, just started for this process; `with_pidfd` whether to watch it
    /// through a pidfd too (an exec'd host, see [`super::spawn`]).
    pub(crate) fn new(pid: u32, with_pidfd: bool) -> HostProcess {
        HostProcess {
            pid,
            owner: std::process::id(),
            pidfd: if with_pidfd {
                super::spawn::pidfd_open(pid)
            } else {
                None
            },
            unreaped: Mutex::new(true),
            gone: OnceLock::new(),
        }
    }

    /// The host's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The process that started the host.
    pub(crate) fn owner(&self) -> u32 {
        self.owner
    }

    /// Whether this process is not the one that created the stack (a child of `fork`).
    pub(crate) fn foreign(&self) -> bool {
        std::process::id() != self.owner
    }

    /// How the host ended, once it is known to be gone.
    pub(crate) fn gone(&self) -> Option<&String> {
        self.gone.get()
    }

    /// Records that the host is gone because `why` (no reaping: see [`HostProcess::reap`]).
    pub(crate) fn set_gone(&self, why: String) {
        let _ = self.gone.set(why);
    }

    /// Hands the host to the library's reaper ([`super::reaper`]), which waits up to `grace`
    /// for it to end by itself, then kills it, and reaps it; returns at once.
    pub(crate) fn reap_later(&self, grace: Duration) {
        let mut guard = self.unreaped.lock().unwrap_or_else(|e| e.into_inner());
        if std::mem::replace(&mut *guard, false) {
            super::reaper::reap_later(self.pid, grace);
        }
    }

    /// Forgets the child without waiting for it (a fork's copy: it is not our child).
    pub(crate) fn forget(&mut self) {
        *self.unreaped.get_mut().unwrap_or_else(|e| e.into_inner()) = false;
    }

    /// Records that the host is gone (EOF on the channel, or its pidfd fired during `what`) and
    /// how; reaps it.
    pub(crate) fn mark_gone(&self, what: &str) -> String {
        let mut guard = self.unreaped.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(how) = self.gone.get() {
            return how.clone();
        }
        let how = match reap_child(&mut guard, self.pid, Duration::from_millis(500)) {
            Some(how) => format!("{how} during {what}"),
            None => "host closed its channel".into(),
        };
        self.gone.get_or_init(|| how).clone()
    }

    /// Kills the host because `why`, and reaps it.
    pub(crate) fn kill(&self, why: String) {
        let mut guard = self.unreaped.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.gone.set(why);
        reap_child(&mut guard, self.pid, Duration::ZERO);
    }

    /// Waits until `chan` can be read or the host ends, at most until `deadline`.
    pub(crate) fn wait(&self, chan: &Channel, deadline: Option<Instant>) -> std::io::Result<Wait> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            let left = match deadline {
                None => PollTimeout::NONE,
                Some(d) => {
                    let ms = d
                        .saturating_duration_since(Instant::now())
                        .as_micros()
                        .div_ceil(1000)
                        .min(i32::MAX as u128) as i32;
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
                }
            };
            let mut fds = vec![PollFd::new(chan.as_fd(), PollFlags::POLLIN)];
            if let Some(p) = &self.pidfd {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, left) {
                Ok(0) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(Wait::TimedOut);
                    }
                }
                Ok(_) => {
                    let ready = |f: &PollFd<'_>| f.revents().is_none_or(|r| !r.is_empty());
                    if ready(&fds[0]) {
                        return Ok(Wait::Readable);
                    }
                    if fds.get(1).is_some_and(ready) {
                        return Ok(Wait::HostEnded);
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}
