//! Starting a host process, or the fork server ([`super::forkserver`]) that forks hosts: the
//! only fork/exec of the library.
//!
//! The host gets its channel end as fd 3, `/dev/null` as stdin and stdout, the application's
//! stderr, a minimal environment (not `RUST_BACKTRACE`: a host's failures are reported to the
//! application as errors, not as backtraces on its terminal; in a secure-execution process,
//! [`crate::env::secure`], only `PATH`), and its own process group (a terminal's Ctrl-C goes to the
//! application, whose exit then ends the host through EOF). No `PR_SET_PDEATHSIG`: it fires when
//! the spawning *thread* exits, which would kill stacks created in short-lived threads.
//!
//! Next to the [`Child`], the application keeps a pidfd of the host ([`pidfd_open`]): it becomes
//! readable when the host ends, even if some other process still holds the host's end of the
//! channel (so that EOF never comes), which is how a call blocked on a dead host is woken.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use ioth_proto::HOST_CHANNEL_FD;

/// Environment variables handed to the host; everything else is cleared.
const KEEP_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LD_LIBRARY_PATH",
    "MALLOC_ARENA_MAX",
    "TMPDIR",
    // The ioth variables a host or a plug-in reads (the others are the library's own).
    "IOTH_AUDIT_INTERVAL",
    "IOTH_LIBVDEPLUG",
    "IOTH_STATUS_DIR",
];

/// Starts `host` for stack `plugin` with `chan` as its channel. `chan` is closed here once the
/// child has its copy.
pub(crate) fn spawn_host(
    host: &Path,
    plugin: &str,
    vnls: &[String],
    chan: OwnedFd,
) -> std::io::Result<Child> {
    spawn_on(host, &format!("ioth-host[{plugin}]"), vnls, chan)
}

/// Starts `host` as `arg0` with `args` and `chan` as its fd 3, in the environment of a host.
/// `chan` is closed here once the child has its copy.
pub(crate) fn spawn_on<S: AsRef<std::ffi::OsStr>>(
    host: &Path,
    arg0: &str,
    args: &[S],
    chan: OwnedFd,
) -> std::io::Result<Child> {
    // An application with stdin or stdout closed gets its socketpair as fds 0..2, which the
    // child's stdio would overwrite before the channel is moved to fd 3: move it above them.
    let chan = if chan.as_raw_fd() <= libc::STDERR_FILENO {
        let raw = nix::fcntl::fcntl(
            &chan,
            nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(HOST_CHANNEL_FD + 1),
        )
        .map_err(std::io::Error::from)?;
        // SAFETY: raw is the new fd F_DUPFD_CLOEXEC just made; nobody else owns it.
        unsafe { OwnedFd::from_raw_fd(raw) }
    } else {
        chan
    };
    let secure = crate::env::secure();
    let mut cmd = Command::new(host);
    cmd.arg0(arg0)
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0);
    // One malloc arena instead of one per thread, each of which reserves 64 MB of address
    // space: the host then needs ~6 MB of address space instead of ~140 MB, which matters under
    // RLIMIT_AS (StackBuilder::limit_address_space). An application's own setting wins.
    if secure || std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        cmd.env("MALLOC_ARENA_MAX", "1");
    }
    for (k, v) in std::env::vars_os() {
        let keep = k.to_str().is_some_and(|k| {
            if secure {
                k == "PATH"
            } else {
                KEEP_ENV.contains(&k)
            }
        });
        if keep {
            cmd.env(k, v);
        }
    }
    let raw = chan.as_raw_fd();
    // SAFETY: the closure runs in the child between fork and exec and calls only fcntl and
    // dup2, which are async-signal-safe; `raw` stays open in the parent until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            let r = if raw == HOST_CHANNEL_FD {
                libc::fcntl(HOST_CHANNEL_FD, libc::F_SETFD, 0)
            } else {
                // dup2 leaves the new fd without FD_CLOEXEC.
                libc::dup2(raw, HOST_CHANNEL_FD)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let child = cmd.spawn();
    drop(chan);
    child
}

/// A pidfd of our child `pid` (pidfd_open(2), close-on-exec by definition): readable once the
/// process has ended. `None` where the kernel lacks pidfds (before Linux 5.3); then death is
/// seen through EOF on the channel alone.
///
/// `pid` must be an unreaped child of this process, so that it cannot name a recycled pid.
pub(crate) fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is shared.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let raw = std::os::fd::RawFd::try_from(r).ok().filter(|r| *r >= 0)?;
    // SAFETY: raw is the fd pidfd_open just created for us; nobody else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(raw) })
}
