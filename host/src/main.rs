//! `ioth-host`: the process that runs one ioth stack.
//!
//! The application starts it with its end of a `SOCK_SEQPACKET` channel on fd 3
//! ([`ioth_proto::HOST_CHANNEL_FD`]). The host starts clean (closes every other inherited fd except
//! stdio), answers the version handshake, loads the plug-in named in `NewStack`, then serves
//! requests one at a time until the channel reaches EOF — that is, until the application has gone —
//! and exits. It knows nothing of the application beyond the channel.
//!
//! Until `NewStack` has succeeded the host has a single thread and dies with its parent
//! (`PR_SET_PDEATHSIG`); from then on it is independent of the thread that created it, and a
//! watchdog makes "the host never outlives its application" hold even while the plug-in is
//! stuck in a call ([`watchdog`]: a thread waits for the channel to hang up, gives the serving
//! thread a grace to finish on its own, then ends the process with `_exit`; for a native stack
//! that thread is the audit thread). Right before that the host confines itself ([`sandbox`],
//! docs/security.md). A watchdog that cannot be started fails the `NewStack` with its errno
//! (`EAGAIN`, `ENOMEM`). `SIGTERM` and `SIGHUP` keep their
//! default action: the host ends at once, and the kernel closes the plug-in's sockets, taps and
//! namespace.
//!
//! `ioth-host --fork-server` is the fork server of one application instead ([`forkserver`]):
//! it forks hosts that then run exactly as an exec'd one.
//!
//! A panic anywhere in the host ends it at once ([`exit_on_panic`]): the application sees
//! `ENETDOWN`, never a stack whose serving or pumping thread silently died.
#![deny(unsafe_code)]

mod audit;
mod bpf;
mod builtin;
mod calls;
mod error;
mod forkserver;
mod license;
mod limits;
mod monitor;
mod observe;
mod plugin;
mod pump;
mod sandbox;
mod seccomp;
mod serve;
mod sigsys;
mod sockets;
mod watchdog;

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;

use ioth_proto::{Channel, HOST_CHANNEL_FD};

#[allow(unsafe_code)]
fn take_channel() -> Result<OwnedFd, String> {
    // SAFETY: fstat on an integer fd only reads its metadata; a closed fd gives EBADF.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid, writable stat buffer.
    if unsafe { libc::fstat(HOST_CHANNEL_FD, &mut st) } != 0
        || st.st_mode & libc::S_IFMT != libc::S_IFSOCK
    {
        return Err(format!(
            "fd {HOST_CHANNEL_FD} is not a socket: ioth-host is started by libioth, not by hand"
        ));
    }
    // Start clean: no fd of the application but the channel (stdio stays for diagnostics).
    // SAFETY: close_range closes fds we never wrapped; nothing in this process owns them yet.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            HOST_CHANNEL_FD as u32 + 1,
            u32::MAX,
            0,
        )
    };
    // SAFETY: fd 3 is the channel the application's libioth put there for us; nobody else in
    // this process owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(HOST_CHANNEL_FD) };
    // Mark it close-on-exec so that no program a plug-in runs inherits it.
    nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|e| format!("fcntl: {e}"))?;
    Ok(fd)
}

/// This binary's path (`/proc/self/exe`), read once per process: the fork server reads it before
/// its first fork, so that the hosts it forks inherit it.
pub fn own_exe() -> Option<&'static std::path::Path> {
    static EXE: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    EXE.get_or_init(|| std::env::current_exe().ok()).as_deref()
}

/// `SIGTERM` and `SIGHUP` back to their default action (ending the process), which an
/// application started with them ignored (`nohup`) would otherwise pass on to an exec'd host.
#[allow(unsafe_code)]
fn default_termination_signals() {
    for sig in [libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: signal(2) with SIG_DFL installs no handler and touches no memory.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// Makes any panic of the host's own code end the host at once, with its message on stderr
/// (not a backtrace) and exit status 101; the application then sees `ENETDOWN`. (A Rust
/// plug-in has its own runtime and does the same through the plug-in SDK.)
#[allow(unsafe_code)]
fn exit_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("ioth-host[{}]: {info}", std::process::id());
        // SAFETY: _exit(2) only ends the process.
        unsafe { libc::_exit(101) }
    }));
}

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "--fork-server")
    {
        exit_on_panic();
        return match take_channel() {
            Ok(fd) => forkserver::run(fd, !std::env::args_os().any(|a| a == "--no-spare")),
            Err(e) => {
                eprintln!("ioth-host: {e}");
                ExitCode::from(2)
            }
        };
    }
    run_host()
}

/// The host proper, on the channel at fd 3: exec'd by the application, or forked by the fork
/// server ([`forkserver`]).
fn run_host() -> ExitCode {
    match prepare_host() {
        Ok(mut host) => host.run(),
        Err(code) => code,
    }
}

/// The host up to its first request, on the channel at fd 3: everything that depends neither
/// on the plug-in nor on the request (a spare does it before it is asked for, [`forkserver`]).
fn prepare_host() -> Result<serve::Host, ExitCode> {
    exit_on_panic();
    default_termination_signals();
    let fd = match take_channel() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("ioth-host: {e}");
            return Err(ExitCode::from(2));
        }
    };
    // Until the stack exists the host stays single-threaded, so that a plug-in may enter a new
    // user namespace in newstack (unshare(CLONE_NEWUSER) refuses multithreaded callers). Meanwhile
    // the parent-death signal stands in for the watchdog: the spawning application thread is
    // blocked waiting for the NewStack reply, so it can only go away with its whole process.
    watchdog::parent_death_signal(libc::SIGKILL);
    let watch = fd.try_clone();
    let own_dir = own_exe().and_then(|p| p.parent().map(|d| d.to_path_buf()));
    // The sandbox first, so that the threads started after it (the watchdog's) inherit it.
    Ok(serve::Host::new(Channel::from_fd(fd), own_dir)
        .on_stack_ready(sandbox::apply)
        .watchdog(watch))
}
