//! [`HostProcess`]: the application's side of one host process — its pid, the pidfd that says
//! when it ended, its reaping, and the wait for a reply that also watches for its end. Runs in
//! the application.

use std::os::fd::{AsFd, OwnedFd};
use std::process::Child;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ioth_proto::Channel;

/// One host process, the child of this application.
#[derive(Debug)]
pub(crate) struct HostProcess {
    pid: u32,
    /// The process that created the stack (see [`super::Link`] on `fork`).
    owner: u32,
    /// Readable once the host has ended (see [`super::spawn::pidfd_open`]); `None` without
    /// pidfds.
    pidfd: Option<OwnedFd>,
    /// `None` once reaped.
    child: Mutex<Option<Child>>,
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

/// How a child ended, in words.
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("host exited with status {c}"),
        (None, Some(s)) => format!(
            "host killed by signal {s} ({})",
            nix::sys::signal::Signal::try_from(s)
                .map(|s| s.as_str())
                .unwrap_or("?")
        ),
        _ => "host ended".into(),
    }
}

/// Waits up to `grace` for `child` to end by itself, then kills it; reaps it either way and
/// says how it ended. `None` if it was reaped already.
fn reap_child(slot: &mut Option<Child>, grace: Duration) -> Option<String> {
    let child = slot.as_mut()?;
    let deadline = Instant::now() + grace;
    let mut pause = Duration::from_micros(50);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                break child.wait().ok();
            }
            Err(_) => break None,
        }
    };
    *slot = None;
    status.map(describe)
}

impl HostProcess {
    /// The host `child`, just started by this process.
    pub(crate) fn new(child: Child) -> HostProcess {
        let pid = child.id();
        HostProcess {
            pid,
            owner: std::process::id(),
            pidfd: super::spawn::pidfd_open(pid),
            child: Mutex::new(Some(child)),
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

    /// Waits up to `grace` for the host to end by itself, then kills it; reaps it either way.
    pub(crate) fn reap(&self, grace: Duration) -> Option<String> {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        reap_child(&mut guard, grace)
    }

    /// Forgets the child without waiting for it (a fork's copy: it is not our child).
    pub(crate) fn forget(&mut self) {
        let _ = self.child.get_mut().map(Option::take);
    }

    /// Records that the host is gone (EOF on the channel, or its pidfd fired during `what`) and
    /// how; reaps it.
    pub(crate) fn mark_gone(&self, what: &str) -> String {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(how) = self.gone.get() {
            return how.clone();
        }
        let how = match reap_child(&mut guard, Duration::from_millis(500)) {
            Some(how) => format!("{how} during {what}"),
            None => "host closed its channel".into(),
        };
        self.gone.get_or_init(|| how).clone()
    }

    /// Kills the host because `why`, and reaps it.
    pub(crate) fn kill(&self, why: String) {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.gone.set(why);
        reap_child(&mut guard, Duration::ZERO);
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
