//! "The host never outlives its application", even while the plug-in is stuck in a call: once
//! the stack exists, a host thread waits for the channel to hang up (`POLLRDHUP` on a duplicate
//! of it), gives the serving thread [`EXIT_GRACE`] to finish on its own, then ends the process
//! with `_exit`. For a native stack that thread is the audit thread ([`crate::monitor`]), which
//! only ever asks the kernel; a stack whose sockets the plug-in serves gets a thread of its own
//! ([`spawn`]), since the audit thread asks the plug-in, which may be the one that is stuck.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::error::HostError;

/// How long the watchdog lets the serving thread end by itself once the application is gone.
pub const EXIT_GRACE: Duration = Duration::from_millis(500);

/// `POLLRDHUP`, which nix does not name: only hang-up conditions (requests, `POLLIN`, are the
/// serving thread's; `POLLHUP` and `POLLERR` are always reported).
pub fn hangup() -> PollFlags {
    PollFlags::from_bits_retain(libc::POLLRDHUP as libc::c_short)
}

/// Whether `revents` of a [`hangup`] poll says the channel hung up. nix's `revents()` is
/// `None` when a bit it does not name is set, which for this poll can only be `POLLRDHUP`.
pub fn hung_up(revents: Option<PollFlags>) -> bool {
    revents.is_none_or(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
}

/// The application has gone: the grace, then the end of the process, without exit handlers or
/// destructors (the serving thread may be inside the plug-in, holding any lock).
pub fn expire() -> ! {
    std::thread::sleep(EXIT_GRACE);
    exit_now()
}

/// prctl(PR_SET_PDEATHSIG): `sig` when the spawning thread ends, 0 for none.
#[allow(unsafe_code)]
pub fn parent_death_signal(sig: i32) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a plain signal number and touches no memory.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) } != 0 {
        eprintln!(
            "ioth-host: prctl(PR_SET_PDEATHSIG): {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The host's status socket, which [`expire`] removes before the end: a host ending this way
/// runs no code that would (docs/audit.md). Made once, when the socket is bound, so that the
/// end needs neither an allocation nor a lock.
static STATUS_SOCKET: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();

/// Registers `path`, the host's status socket, for [`expire`] to remove.
pub fn remove_at_exit(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) {
        let _ = STATUS_SOCKET.set(c);
    }
}

#[allow(unsafe_code)]
fn exit_now() -> ! {
    if let Some(p) = STATUS_SOCKET.get() {
        // SAFETY: unlink(2) of a NUL-terminated path that lives as long as the process.
        unsafe { libc::unlink(p.as_ptr()) };
    }
    // SAFETY: _exit(2) only ends the process; it touches no memory of this program.
    unsafe { libc::_exit(0) }
}

/// Waits on `watch` until it hangs up, then [`expire`]s; returns only on a poll error.
pub fn watch(watch: BorrowedFd<'_>) {
    loop {
        let mut pfd = [PollFd::new(watch, hangup())];
        match poll(&mut pfd, PollTimeout::NONE) {
            Ok(n) if n > 0 && hung_up(pfd[0].revents()) => expire(),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                eprintln!("ioth-host: watchdog: poll: {e}");
                return;
            }
        }
    }
}

/// A thread of its own that [`watch`]es `watch`, a duplicate of the channel.
pub fn spawn(watch: OwnedFd) -> Result<(), HostError> {
    let spawned = std::thread::Builder::new()
        .name("ioth-watchdog".into())
        .stack_size(64 * 1024)
        .spawn(move || self::watch(watch.as_fd()));
    spawned.map(drop).map_err(|e| thread_error("watchdog", e))
}

/// A thread that could not be started, as the error of `NewStack`.
pub fn thread_error(what: &str, e: std::io::Error) -> HostError {
    HostError::Os {
        errno: e.raw_os_error().unwrap_or(libc::EAGAIN),
        message: format!("ioth-host: cannot start the {what} thread: {e}"),
    }
}
