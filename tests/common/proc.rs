//! What `/proc` says about this test process and the hosts it started: open fd counts, child
//! processes, whether a pid still exists or is a running host, its command line; and SIGKILL
//! by pid. Linux only; every wait is bounded.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

/// Name (`comm`) of the host binary as the kernel records it.
pub const HOST_COMM: &str = "ioth-host";

/// Number of entries in `/proc/<pid>/fd` (`pid` `None`: this process).
///
/// For this process the count includes the directory fd used to list it, every time, so two
/// counts compare fairly.
pub fn fd_count(pid: Option<u32>) -> io::Result<usize> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}/fd"),
        None => "/proc/self/fd".to_owned(),
    };
    Ok(std::fs::read_dir(dir)?.count())
}

/// Open fds of this process ([`fd_count`] of `/proc/self`).
pub fn self_fd_count() -> usize {
    fd_count(None).expect("read /proc/self/fd")
}

/// The `comm` of `pid` (its executable's name, up to 15 bytes), if it exists.
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_owned())
}

/// Fields of `/proc/<pid>/stat` after the parenthesised comm: state first, ppid second.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The parent pid of `pid`, if it exists.
pub fn ppid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// The one-letter state of `pid` (`R`, `S`, `Z` for a zombie, …), if it exists.
pub fn state(pid: u32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    state(pid).is_some_and(|s| s != 'Z' && s != 'X')
}

/// Whether `pid` is an `ioth-host` (running, or a zombie nobody reaped).
pub fn is_host(pid: u32) -> bool {
    comm(pid).as_deref() == Some(HOST_COMM)
}

/// Whether `pid` is an `ioth-host` that has not exited.
pub fn host_running(pid: u32) -> bool {
    is_host(pid) && state(pid).is_some_and(|s| s != 'Z')
}

/// `/proc/<pid>/cmdline` without the NUL padding a forked host may leave after its title;
/// panics if `pid` does not exist.
pub fn cmdline(pid: u32) -> Vec<u8> {
    let mut c = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    while c.ends_with(b"\0\0") {
        c.pop();
    }
    c
}

/// Sends SIGKILL to `pid`; panics if it cannot.
pub fn sigkill(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
}

/// Whether `/proc/<pid>` is absent: the process ended and was reaped.
pub fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Child processes of this process whose `comm` is `comm` (any child when `None`).
pub fn children(comm_is: Option<&str>) -> Vec<u32> {
    children_of(std::process::id(), comm_is)
}

/// Child processes of `me` whose `comm` is `comm` (any child when `None`).
pub fn children_of(me: u32, comm_is: Option<&str>) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| ppid(pid) == Some(me))
        .filter(|&pid| match comm_is {
            None => true,
            Some(c) => comm(pid).as_deref() == Some(c),
        })
        .collect();
    out.sort_unstable();
    out
}

/// `ioth-host` children of this process.
pub fn host_children() -> Vec<u32> {
    children(Some(HOST_COMM))
}

/// Polls `cond` until it holds or `bound` passes; returns whether it held. Never a timing
/// assertion: `bound` only stops a broken wait from hanging the test.
pub fn wait_until(bound: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    let mut pause = Duration::from_millis(1);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Waits (up to `bound`) for `pid` to be gone and reaped.
pub fn wait_gone(pid: u32, bound: Duration) -> bool {
    wait_until(bound, || gone(pid))
}

/// Polls `cond` every 2 ms until it holds or `bound` passes; the time it took, if it held (for
/// tests that print how long something took; never asserted).
pub fn time_until(bound: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        if cond() {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > bound {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The status socket of host `pid` (docs/audit.md), where `ioth ps` asks it.
pub fn status_socket(pid: u32) -> std::path::PathBuf {
    let dir = ioth_proto::status::dir_from_env(nix::unistd::getuid().as_raw())
        .expect("status sockets on");
    ioth_proto::status::socket(&dir, pid)
}

/// Asserts that the status socket of host `pid`, which has ended, is gone within `bound`
/// (removed by the host itself, or by its application once it has reaped it).
pub fn assert_status_socket_removed(pid: u32, bound: Duration) {
    let path = status_socket(pid);
    assert!(
        time_until(bound, || !path.exists()).is_some(),
        "{} left behind by ended host {pid}",
        path.display()
    );
}
