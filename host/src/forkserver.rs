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
//! After each host it forks, and unless started with `--no-spare`, it forks a *spare*: a host
//! forked ahead of demand (`comm` `ioth-spare`), prepared up to its first request, on a
//! socketpair of its own. The fork server announces it to the application (an 8-byte message,
//! `SPAR` and the pid) with the other end of that socketpair attached, and keeps nothing of it;
//! the application makes its next stack by writing the process title to that end and then
//! using it as the host's channel, without a round trip through the fork server, and tells the
//! fork server that it took the spare (a 4-byte `TOOK`, no reply), which then forks the next
//! spare. So once the first stack exists one spare waits, and each stack after it starts with
//! no fork and no fork-server round trip on its path. A spare ends, unused, at EOF of its
//! channel (the application closed its end) or with the application (its parent-death signal).
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

/// Serves the control channel `ctl` until EOF; `spares`: whether to fork spares (`--no-spare`:
/// never).
pub fn run(ctl: OwnedFd, spares: bool) -> ExitCode {
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
    // Whether a spare is announced that the application has not reported taken yet.
    let mut spare_out = false;
    // Whether to fork a spare before the next request: after each host (forked, or a spare
    // taken), unless one is out.
    let mut spare_now = false;
    loop {
        if spares && spare_now && !spare_out {
            spare_now = false;
            if let Some((pid, sock)) = fork_spare(&ctl, area) {
                let mut note = *SPARE_TAG;
                note[4..].copy_from_slice(&pid.to_le_bytes());
                // The spare's channel goes to the application; none of it stays here.
                if let Err(e) = fdpass::send(ctl.as_fd(), &note, &[sock.as_fd()]) {
                    return channel_lost(&e);
                }
                spare_out = true;
            }
            continue;
        }
        let got = match fdpass::recv_vec(ctl.as_fd(), &mut buf) {
            Ok(g) => g,
            Err(e) => return channel_lost(&e),
        };
        if got.len == 0 && got.fds.is_empty() {
            return ExitCode::SUCCESS;
        }
        let mut fds = got.fds;
        if fds.is_empty() && buf[..] == TAKEN[..] {
            // The announced spare no longer waits (the application took it, or found it gone):
            // the next one now, so that it is ready for the next stack.
            spare_out = false;
            spare_now = true;
            continue;
        }
        let answer: i32 = if got.truncated || fds.len() != 1 || buf.last() != Some(&0) {
            -libc::EPROTO
        } else {
            let chan = fds.pop().expect("one fd");
            match fork_host(&ctl, chan, &buf, area) {
                Ok(pid) => {
                    spare_now = true;
                    pid
                }
                Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
            }
        };
        drop(fds);
        if let Err(e) = fdpass::send(ctl.as_fd(), &answer.to_le_bytes(), &[]) {
            return channel_lost(&e);
        }
    }
}

/// The end of the fork server on a control channel error: quietly when the application has
/// gone (its end closed: `EPIPE`, `ECONNRESET`), with a message otherwise.
fn channel_lost(e: &std::io::Error) -> ExitCode {
    match e.raw_os_error() {
        Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN) => ExitCode::SUCCESS,
        _ => {
            eprintln!("ioth-host --fork-server: control channel: {e}");
            ExitCode::from(1)
        }
    }
}

/// The announcement of a spare: these 4 bytes, then its pid (4 bytes, little-endian).
const SPARE_TAG: &[u8; 8] = b"SPAR\0\0\0\0";

/// What the application sends when the announced spare no longer waits for it: taken, or
/// found gone (no reply).
const TAKEN: &[u8; 4] = b"TOOK";

/// Forks a spare: its pid and the application's end of its channel; `None` if the fork or the
/// socketpair fails (the next request is then forked as usual). The spare waits on its end for
/// the first message, its process title (the plug-in's name and VNLs, each ended by a NUL
/// byte), then is the host on that channel; EOF first (the application closed its end, or went
/// away): it exits.
fn fork_spare(ctl: &OwnedFd, area: Option<(usize, usize)>) -> Option<(i32, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ok()?;
    let pid = clone_parent().ok()?;
    if pid > 0 {
        drop(theirs);
        return Some((pid, ours));
    }
    // The spare: nothing of the control channel, the host made ready, then a wait for its
    // title.
    drop(ours);
    // SAFETY: fd 3 is the control channel, which `ctl` owns in the fork server's code path
    // only; the spare never returns to it.
    unsafe { libc::close(ctl.as_raw_fd()) };
    set_comm(c"ioth-spare");
    become_host(theirs, None, area)
}

/// clone(CLONE_PARENT): fork(2) with the child made a child of our parent. The child's pid in
/// the parent, 0 in the child.
fn clone_parent() -> std::io::Result<i32> {
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
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as i32)
    }
}

/// In a forked child: `chan` on fd 3, the host prepared up to its first request
/// ([`crate::prepare_host`]), the process title (`None`: a spare's, read from the channel
/// first; EOF or anything but a title there ends the spare), then the normal host, to its
/// exit.
fn become_host(chan: OwnedFd, title: Option<&[u8]>, area: Option<(usize, usize)>) -> ! {
    let raw = chan.as_raw_fd();
    // SAFETY: dup2 onto fd 3 closes whatever is there (the fork server's control channel,
    // which this process never uses again).
    if unsafe { libc::dup2(raw, HOST_CHANNEL_FD) } < 0 {
        // SAFETY: _exit(2) only ends the process.
        unsafe { libc::_exit(2) };
    }
    // take_channel closes every fd above 3, `chan` included.
    std::mem::forget(chan);
    let mut host = match crate::prepare_host() {
        Ok(h) => h,
        Err(code) => std::process::exit(exit_code_int(code)),
    };
    let mut asked: Vec<u8> = Vec::new();
    let title = match title {
        Some(t) => t,
        None => {
            asked.reserve(MAX_REQUEST);
            match fdpass::recv_vec(host.as_fd(), &mut asked) {
                Ok(got) if got.fds.is_empty() && !got.truncated && asked.last() == Some(&0) => {
                    &asked[..]
                }
                // SAFETY: _exit(2) only ends the process; nothing was asked of it.
                _ => unsafe { libc::_exit(0) },
            }
        }
    };
    set_comm(c"ioth-host");
    if let Some(area) = area {
        set_title(area, title);
    }
    let code = host.run();
    // The host's exit: as after exec, the host's own code decides.
    std::process::exit(exit_code_int(code))
}

/// Forks a host on `chan` with process title `title` (NUL-separated) written over `area` (see
/// [`arg_area`]); its pid. The fork server's copy of `chan` is closed before this returns.
fn fork_host(
    ctl: &OwnedFd,
    chan: OwnedFd,
    title: &[u8],
    area: Option<(usize, usize)>,
) -> std::io::Result<i32> {
    let pid = clone_parent()?;
    if pid > 0 {
        drop(chan);
        return Ok(pid);
    }
    debug_assert_eq!(ctl.as_raw_fd(), HOST_CHANNEL_FD);
    become_host(chan, Some(title), area)
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
