//! `ioth-host --fork-server`: one process per application that forks a host per new stack, so
//! that a stack costs a fork of a small, single-threaded process already past exec and the
//! dynamic loader instead of a fork, an exec and a loader of its own.
//!
//! The application (libioth) starts it once, like a host, with its end of a `SOCK_SEQPACKET`
//! control channel on fd 3 and the environment a host gets. Each request is one datagram: the
//! plug-in's name and its VNLs, each ended by a NUL byte (the host's process title), with the new
//! host's channel end attached (`SCM_RIGHTS`). The fork server forks a child, which puts that
//! channel on fd 3 and runs the normal host ([`crate::run_host`]); the reply is the child's pid
//! as 4 bytes little-endian, or the negated errno.
//!
//! The child is forked with `CLONE_PARENT`: it is a child of the *application*, as an exec'd
//! host is, so the application reaps it, sees how it ended, and may kill it by pid while it is
//! unreaped; the fork server keeps nothing of it (no fd, no pid, no zombie) and may die at any
//! time without touching the stacks that exist — the application then starts a fresh one for
//! its next stack. It exits at EOF of its control channel, when the application has gone.
//!
//! The fork server runs as `ioth-forksrv` (`comm`), so that `pgrep -x ioth-host` lists hosts
//! only; a child takes back `ioth-host` and writes `ioth-host[<plugin>] <vnl> …` over the
//! fork server's argument area (its `/proc/<pid>/cmdline`), which the application padded for
//! that with NUL bytes.
//!
//! Caveat of forking with the raw `clone` system call (the C library's `fork` takes no
//! `CLONE_PARENT`): the child's C-library thread descriptor of its first thread keeps the fork
//! server's thread id. The host's Rust code never reads it; C code of a plug-in could only meet
//! it through priority-inheritance mutexes locked on that first thread.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::ExitCode;

use ioth_proto::{fdpass, HOST_CHANNEL_FD};

/// The most a request may hold (the title: plug-in name and VNLs).
const MAX_REQUEST: usize = 64 * 1024;

/// prctl(PR_SET_NAME): this thread's `comm`.
fn set_comm(name: &std::ffi::CStr) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes, which `name` is.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
}

/// Serves the control channel `ctl` until EOF.
pub fn run(ctl: OwnedFd) -> ExitCode {
    set_comm(c"ioth-forksrv");
    // What every host computes the same way, once here for all of them.
    crate::seccomp::prepare();
    crate::plugin::prepare();
    crate::monitor::prepare();
    crate::sandbox::prepare();
    let _ = crate::own_exe();
    let area = arg_area();
    // Capacity only, and small requests: each page the fork server writes after forking a
    // host becomes a private copy in that host.
    let mut buf: Vec<u8> = Vec::with_capacity(MAX_REQUEST);
    loop {
        let got = match fdpass::recv_vec(ctl.as_fd(), &mut buf) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("ioth-host --fork-server: control channel: {e}");
                return ExitCode::from(1);
            }
        };
        if got.len == 0 && got.fds.is_empty() {
            return ExitCode::SUCCESS;
        }
        let mut fds = got.fds;
        let answer: i32 = if got.truncated || fds.len() != 1 || buf.last() != Some(&0) {
            -libc::EPROTO
        } else {
            let chan = fds.pop().expect("one fd");
            match fork_host(&ctl, chan, &buf, area) {
                Ok(pid) => pid,
                Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
            }
        };
        drop(fds);
        if let Err(e) = fdpass::send(ctl.as_fd(), &answer.to_le_bytes(), &[]) {
            eprintln!("ioth-host --fork-server: control channel: {e}");
            return ExitCode::from(1);
        }
    }
}

/// Forks a host on `chan` with process title `title` (NUL-separated) written over `area` (see
/// [`arg_area`]); its pid. The fork server's copy of `chan` is closed before this returns.
fn fork_host(
    ctl: &OwnedFd,
    chan: OwnedFd,
    title: &[u8],
    area: Option<(usize, usize)>,
) -> std::io::Result<i32> {
    // SAFETY: clone with these flags and no new stack is fork(2) with the child made a child of
    // our parent; this process is single-threaded, so no lock is held in the child's copy.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::CLONE_PARENT as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if r > 0 {
        drop(chan);
        return Ok(r as i32);
    }
    // The child: the host's channel on fd 3 (replacing the control channel there), then the
    // normal host.
    let raw = chan.as_raw_fd();
    debug_assert_eq!(ctl.as_raw_fd(), HOST_CHANNEL_FD);
    // SAFETY: dup2 onto fd 3 closes our copy of the control channel, which `ctl` owns in the
    // parent's code path only; the child never returns to it (it exits below).
    if unsafe { libc::dup2(raw, HOST_CHANNEL_FD) } < 0 {
        // SAFETY: _exit(2) only ends the process.
        unsafe { libc::_exit(2) };
    }
    set_comm(c"ioth-host");
    if let Some(area) = area {
        set_title(area, title);
    }
    // take_channel closes every fd above 3, `chan` included.
    std::mem::forget(chan);
    let code = crate::run_host();
    // The host's exit: as after exec, the host's own code decides.
    std::process::exit(exit_code_int(code))
}

/// `ExitCode` has no accessor: the host's only codes are 0, 1 and 2.
fn exit_code_int(code: ExitCode) -> i32 {
    if code == ExitCode::SUCCESS {
        0
    } else if code == ExitCode::from(2) {
        2
    } else {
        1
    }
}

/// This process's argument area (what `/proc/<pid>/cmdline` shows), from `/proc/self/stat`
/// (fields 48 and 49), read once by the fork server: the hosts it forks share its layout.
fn arg_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // Fields after the comm start at field 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let start = f.get(48 - 3)?.parse::<usize>().ok()?;
    let end = f.get(49 - 3)?.parse::<usize>().ok()?;
    (end > start).then_some((start, end))
}

/// Writes `title` over this process's argument area `[start, end)` ([`arg_area`]), NUL
/// padded; a title longer than the area is cut.
fn set_title((start, end): (usize, usize), title: &[u8]) {
    let len = end - start;
    let n = title.len().min(len - 1);
    // SAFETY: [start, end) is this process's argument area, mapped and writable (it lies in the
    // initial stack); std copied the arguments at start-up and nothing else reads them.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, len);
        area[..n].copy_from_slice(&title[..n]);
        area[n..].fill(0);
    }
    // Where allowed (CAP_SYS_RESOURCE), end the area after the title, so that `cmdline` is
    // exactly the title; elsewhere it keeps NUL padding, which `ps` does not show.
    let title_end = start + n + usize::from(title.get(n.wrapping_sub(1)) != Some(&0));
    // SAFETY: PR_SET_MM_ARG_END takes an address inside our argument area; it touches no memory.
    unsafe {
        libc::prctl(
            libc::PR_SET_MM,
            libc::PR_SET_MM_ARG_END as libc::c_ulong,
            title_end as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
}
