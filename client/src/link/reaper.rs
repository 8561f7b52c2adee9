//! The library's service thread (`ioth-reaper`), started on first use and living as long as the
//! process: it reaps hosts in the background once their stack is deleted or dropped (the host's
//! exit waits for the kernel to tear down its sockets, taps and network namespace, which the
//! caller need not wait for), and starts the fork server ([`super::forkserver`]), so that the
//! fork server's parent thread — and through `CLONE_PARENT` that of every host it forks, which
//! the hosts' parent-death signal watches until their stack exists — is one that never ends
//! before the process.
//!
//! A host handed over is waited for up to its grace, then killed (`SIGKILL`) and reaped; no
//! zombie is left. In a child made by `fork()` the thread is started again on first use.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Work for the service thread.
enum Job {
    /// Reap this child within this grace (then kill it).
    Reap(u32, Duration),
    /// Run this on the service thread.
    Run(Box<dyn FnOnce() + Send>),
}

/// The service thread's queue, and the process that started it.
static SERVICE: Mutex<Option<(u32, Sender<Job>)>> = Mutex::new(None);

/// Sends `job` to the service thread, starting it if needed; gives the job back if no thread
/// can be started.
fn submit(job: Job) -> Result<(), Job> {
    let mut guard = SERVICE.lock().unwrap_or_else(|e| e.into_inner());
    let me = std::process::id();
    if let Some((owner, tx)) = guard.as_ref() {
        if *owner == me {
            match tx.send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(j)) => return Err(j),
            }
        }
    }
    let (tx, rx) = mpsc::channel();
    let started = std::thread::Builder::new()
        .name("ioth-reaper".into())
        .stack_size(128 * 1024)
        .spawn(move || serve(&rx));
    if started.is_err() {
        return Err(job);
    }
    let sent = tx.send(job);
    *guard = Some((me, tx));
    sent.map_err(|mpsc::SendError(j)| j)
}

/// Reaps host `pid` (an unreaped child of this process) in the background, killing it if it
/// has not ended within `grace`; in the caller if the service thread cannot be started.
pub(crate) fn reap_later(pid: u32, grace: Duration) {
    if let Err(Job::Reap(pid, grace)) = submit(Job::Reap(pid, grace)) {
        reap_pid(pid, grace);
    }
}

/// After host `pid` was reaped: if a signal ended it, it could not remove its status socket
/// (docs/audit.md), so the application does, unless a host answers there (the pid reused).
fn reaped(pid: u32, status: WaitStatus) {
    if !matches!(status, WaitStatus::Signaled(..)) {
        return;
    }
    if let Some(dir) = ioth_proto::status::dir_from_env(nix::unistd::getuid().as_raw()) {
        ioth_proto::status::remove_stale(&ioth_proto::status::socket(&dir, pid));
    }
}

/// How a child ended, in words.
fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, c) => format!("host exited with status {c}"),
        WaitStatus::Signaled(_, s, _) => {
            format!("host killed by signal {} ({})", s as i32, s.as_str())
        }
        _ => "host ended".into(),
    }
}

/// Waits up to `grace` for child `pid` to end by itself, then kills it; reaps it either way and
/// says how it ended (`None` if it was not our child to reap).
pub(crate) fn reap_pid(pid: u32, grace: Duration) -> Option<String> {
    let status = wait_pid(pid, grace)?;
    reaped(pid, status);
    Some(describe(status))
}

/// [`reap_pid`]'s wait: how `pid` ended.
fn wait_pid(pid: u32, grace: Duration) -> Option<WaitStatus> {
    let pid = Pid::from_raw(pid as i32);
    let deadline = Instant::now() + grace;
    let mut pause = Duration::from_micros(50);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(10));
            }
            Ok(WaitStatus::StillAlive) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                return loop {
                    match waitpid(pid, None) {
                        Err(nix::errno::Errno::EINTR) => {}
                        Ok(s) => break Some(s),
                        Err(_) => break None,
                    }
                };
            }
            Ok(s) => return Some(s),
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
}

/// Runs `f` on the service thread and returns its result; in the caller if the thread cannot
/// be started.
pub(crate) fn run_on_service<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::sync_channel(1);
    let job = Job::Run(Box::new(move || {
        let _ = tx.send(f());
    }));
    match submit(job) {
        Ok(()) => rx.recv().expect("the service thread ran the job"),
        Err(Job::Run(f)) => {
            f();
            rx.recv().expect("the job ran here")
        }
        Err(Job::Reap(..)) => unreachable!("a Run job comes back as Run"),
    }
}

/// A host being reaped: its pid, its pidfd if one could be opened, when to kill it.
struct Pending {
    pid: u32,
    pidfd: Option<OwnedFd>,
    deadline: Instant,
}

fn serve(rx: &Receiver<Job>) {
    let mut pending: Vec<Pending> = Vec::new();
    loop {
        // New work: wait for it when there is nothing else to do.
        let job = if pending.is_empty() {
            match rx.recv() {
                Ok(j) => Some(j),
                Err(_) => return,
            }
        } else {
            match rx.try_recv() {
                Ok(j) => Some(j),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return,
            }
        };
        match job {
            Some(Job::Run(f)) => f(),
            Some(Job::Reap(pid, grace)) => pending.push(Pending {
                pid,
                pidfd: super::spawn::pidfd_open(pid),
                deadline: Instant::now() + grace,
            }),
            None => {}
        }
        if pending.is_empty() {
            continue;
        }
        // Wait up to 1 ms for one of them to end (new jobs are looked at in between).
        {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            let mut fds: Vec<PollFd<'_>> = pending
                .iter()
                .filter_map(|p| p.pidfd.as_ref())
                .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN))
                .collect();
            let _ = poll(&mut fds, PollTimeout::from(1u8));
        }
        let now = Instant::now();
        pending.retain(|p| {
            let pid = Pid::from_raw(p.pid as i32);
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if now < p.deadline => true,
                Ok(WaitStatus::StillAlive) => {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    if let Ok(s) = waitpid(pid, None) {
                        reaped(p.pid, s);
                    }
                    false
                }
                Ok(s) => {
                    reaped(p.pid, s);
                    false
                }
                // Not our child any more (reaped elsewhere).
                Err(_) => false,
            }
        });
    }
}
