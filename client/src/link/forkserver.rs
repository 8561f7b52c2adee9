//! The application's side of the fork server (`ioth-host --fork-server`, host/src/forkserver.rs):
//! one per process, started on the first new stack, asked for one host per stack over its own
//! `SOCK_SEQPACKET` channel, the new host's channel end attached (`SCM_RIGHTS`).
//!
//! It is started like a host ([`super::spawn::spawn_on`]: the same environment cleaning, also in
//! a secure-execution process, the same binary found the same way) from the library's service
//! thread ([`super::reaper`]). Its hosts are children of this process (`CLONE_PARENT`): they are
//! reaped and killed here as exec'd ones are. A fork server that died (killed, crashed) costs only
//! the request that finds it gone: it is reaped, a new one is started and the request is sent
//! again; the stacks that exist never depended on it. It exits when this process has gone (EOF).
//!
//! A host inherits the namespaces and ids of the thread that asks for it; the fork server's are
//! those of the library's service thread when it started. A stack asked for from a thread whose
//! namespaces or effective ids differ from the process's first thread or from the fork
//! server's (it called `unshare`, `setns`, `seteuid`) is exec'd from that thread as before
//! ([`usable`]), and no fork server is started in such a namespace.
//!
//! After each host, the fork server forks a *spare*, a host ahead of demand, and announces it
//! on the control channel (`SPAR` and the pid, with the spare's channel attached; read when a
//! stack is next asked for, before a reply, or when the fork server is retired). The next stack
//! takes it ([`take_spare`]): its process title, then the handshake, go straight to the spare,
//! with no round trip through the fork server, which is told (`TOOK`) and forks the next one.
//! A spare that ends unused (its channel closed here, killed, or this process gone) is reaped
//! here too.
//!
//! A process made by `fork()` does not use its parent's fork server (its hosts would be the
//! parent's children): it starts its own.
//!
//! `IOTH_NO_FORK_SERVER=1` (or [`crate::StackBuilder::fork_server`]) makes the library exec a
//! host per stack instead.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ioth_proto::fdpass;

/// Bytes of argument space the fork server is started with, which each host it forks
/// overwrites with its own process title (`ioth-host[<plugin>] <vnl> …`).
const TITLE_ROOM: usize = 4096;

/// The running fork server of this process.
struct Server {
    /// The process that started it.
    owner: u32,
    pid: u32,
    /// Which binary it runs (a different `IOTH_HOST` starts another one).
    host: PathBuf,
    ctl: OwnedFd,
    /// The context it was started in, which its hosts inherit ([`context`]).
    context: Vec<u64>,
    /// The spares it announced and that did not become a host yet (hosts forked ahead of
    /// demand, host/src/forkserver.rs): children of this process, reaped here if they end
    /// unused.
    spares: Vec<Spare>,
}

/// A spare host: its pid and this end of its channel (`None` if the fd could not be received:
/// then the spare reads EOF and ends, and is only to be reaped).
struct Spare {
    pid: u32,
    chan: Option<OwnedFd>,
    /// Whether the fork server was told that it no longer waits here (`TOOK`: taken, or found
    /// gone), after which it forks the next.
    told: bool,
}

/// A spare's announcement on the control channel: these 4 bytes, then its pid.
const SPARE_TAG: &[u8; 4] = b"SPAR";

/// What this process tells the fork server when it has taken the spare (no reply).
const TAKEN: &[u8; 4] = b"TOOK";

/// Whether the message `r` received into `buf` is a spare's announcement (its channel
/// attached, or none if this process could not take another fd).
fn announces(r: &fdpass::Received, buf: &[u8; 8]) -> bool {
    r.len == 8 && r.fds.len() <= 1 && buf[..4] == SPARE_TAG[..]
}

impl Server {
    /// Reads the spare announcements waiting on the control channel, without blocking (a fork
    /// server announces its spare after a reply; one that died may have left one unread).
    fn read_announcements(&mut self) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut buf = [0u8; 8];
        loop {
            let mut pfd = [PollFd::new(self.ctl.as_fd(), PollFlags::POLLIN)];
            if !matches!(poll(&mut pfd, PollTimeout::ZERO), Ok(n) if n > 0) {
                return;
            }
            match fdpass::recv(self.ctl.as_fd(), &mut buf) {
                Ok(r) if announces(&r, &buf) => {
                    self.note_spare(&buf, r.fds);
                }
                // EOF, an error, or anything else: nothing more to read now.
                _ => return,
            }
        }
    }

    /// Records the spare announced in `msg` (the tag, then its pid) with the fds that came
    /// with it (its channel).
    fn note_spare(&mut self, msg: &[u8; 8], mut fds: Vec<OwnedFd>) {
        let pid = u32::from_le_bytes([msg[4], msg[5], msg[6], msg[7]]);
        let chan = (fds.len() == 1).then(|| fds.pop()).flatten();
        if pid > 0 {
            self.spares.push(Spare {
                pid,
                chan,
                told: false,
            });
        }
    }

    /// Reaps the announced spares that ended (a spare ends only with its fork server, or if
    /// killed), without waiting.
    fn reap_ended_spares(&mut self) {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        self.spares.retain(|s| {
            matches!(
                waitpid(
                    nix::unistd::Pid::from_raw(s.pid as i32),
                    Some(WaitPidFlag::WNOHANG)
                ),
                Ok(WaitStatus::StillAlive)
            )
        });
    }
}

/// What a host inherits from the thread that starts it and the fork server would not pass on
/// when it differs: the thread's namespaces (a thread that entered a network namespace gets its
/// kernel stacks there) and its effective ids. A stack asked for from a thread whose context
/// is not the fork server's is exec'd from that thread instead ([`usable`]).
fn context() -> std::io::Result<Vec<u64>> {
    context_of("thread-self")
}

/// [`context`] of `/proc/<which>` (`thread-self`, or `<pid>/task/<pid>`: the process's first
/// thread): the inode of each namespace file (the number in `net:[4026531840]`), 0 where it
/// cannot be read, then the effective uid and gid. One open of the `ns` directory and a
/// `readlinkat` relative to it per namespace (a third of the cost of a `stat` through the
/// link). Out of fds is an error.
fn context_of(which: &str) -> std::io::Result<Vec<u64>> {
    use nix::fcntl::{open, readlinkat, OFlag};
    use nix::sys::stat::Mode;
    const NS: [&str; 8] = [
        "net",
        "mnt",
        "user",
        "uts",
        "ipc",
        "cgroup",
        "pid_for_children",
        "time_for_children",
    ];
    let dir = match open(
        format!("/proc/{which}/ns").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(d) => Some(d),
        Err(e @ (nix::Error::EMFILE | nix::Error::ENFILE)) => return Err(e.into()),
        // No /proc: every namespace unknown (0).
        Err(_) => None,
    };
    let mut v: Vec<u64> = NS
        .iter()
        .map(|ns| {
            dir.as_ref()
                .and_then(|d| readlinkat(d, *ns).ok())
                .and_then(|t| ns_inode(&t.to_string_lossy()))
                .unwrap_or(0)
        })
        .collect();
    v.push(u64::from(nix::unistd::geteuid().as_raw()));
    v.push(u64::from(nix::unistd::getegid().as_raw()));
    Ok(v)
}

/// The inode in a namespace link's target (`net:[4026531840]` → 4026531840).
fn ns_inode(target: &str) -> Option<u64> {
    target
        .split_once(":[")
        .and_then(|(_, rest)| rest.strip_suffix(']'))
        .and_then(|n| n.parse().ok())
}

/// Whether a host for the calling thread may come from the fork server: its context is the
/// process's (that of its first thread) and the one the fork server has (or will have, started
/// from the service thread) — else it is exec'd. Out of fds (`EMFILE`, `ENFILE`) is an error,
/// not a reason to exec: an exec needs more of them than a fork from the server.
pub(crate) fn usable() -> std::io::Result<bool> {
    let me = std::process::id();
    let ours = context()?;
    {
        let guard = SERVER.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = guard.as_ref().filter(|s| s.owner == me) {
            // Started from the service thread in the process's context: equal to it means
            // equal to the process's.
            return Ok(s.context == ours);
        }
    }
    // Only the process's own context: a fork server started in a namespace a thread entered
    // would hold that namespace as long as the process lives.
    Ok(ours == context_of(&format!("{me}/task/{me}"))?
        && super::reaper::run_on_service(context)? == ours)
}

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

/// Whether the fork server forks spare hosts (`IOTH_SPARE_HOST` unset or not `0`).
fn spares_on() -> bool {
    crate::env::var("IOTH_SPARE_HOST").is_none_or(|v| v != "0")
}

/// Whether new stacks use the fork server by default (`IOTH_NO_FORK_SERVER` unset or `0`).
pub(crate) fn default_on() -> bool {
    !crate::env::var("IOTH_NO_FORK_SERVER").is_some_and(|v| !v.is_empty() && v != "0")
}

fn start(host: &Path) -> std::io::Result<Server> {
    let host = host.to_path_buf();
    super::reaper::run_on_service(move || {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let pad = " ".repeat(TITLE_ROOM);
        let spare = if spares_on() { "--spare" } else { "--no-spare" };
        let child = super::spawn::spawn_on(
            &host,
            "ioth-forksrv",
            &["--fork-server", spare, &pad],
            theirs,
        )?;
        Ok(Server {
            owner: std::process::id(),
            pid: child.id(),
            host,
            ctl: ours,
            context: context()?,
            spares: Vec::new(),
        })
    })
}

/// Ends and reaps a fork server of this process (it is dead already, or is told to go by EOF),
/// and the spares it announced (which end at the EOF of their channels, closed here).
fn retire(mut s: Server) {
    s.read_announcements();
    drop(s.ctl);
    let pids: Vec<u32> = s.spares.into_iter().map(|sp| sp.pid).collect();
    for p in pids.into_iter().chain([s.pid]) {
        super::reaper::reap_later(p, std::time::Duration::from_secs(1));
    }
}

/// The errors that say the fork server is gone before it took the request.
fn gone_before(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN | libc::ECONNREFUSED)
    )
}

/// A host's process title, which the fork server or a spare writes over its argument area:
/// `ioth-host[<plugin>]` and each VNL, each ended by a NUL byte.
fn title(plugin: &str, vnls: &[String]) -> Vec<u8> {
    let mut title = format!("ioth-host[{plugin}]").into_bytes();
    title.push(0);
    for v in vnls {
        title.extend_from_slice(v.as_bytes());
        title.push(0);
    }
    title
}

/// The spare of this process's fork server, if it announced one, made the host of `plugin`
/// on `vnls`: its pid and this end of its channel, on which the handshake goes next. A spare
/// that cannot take the title (it ended) is passed over (and reaped); `None` when there is
/// none, and the stack is then asked of the fork server ([`spawn_host`]). The fork server need
/// not be alive: a spare is a process of its own. It is told of each spare that no longer
/// waits here (`TOOK`), taken or gone, so that it forks the next; of one whose fd this process
/// could not receive (at its fd limit), only now, when a stack is asked for again.
pub(crate) fn take_spare(host: &Path, plugin: &str, vnls: &[String]) -> Option<(u32, OwnedFd)> {
    let mut guard = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let s = guard
        .as_mut()
        .filter(|s| s.owner == std::process::id() && s.host == host)?;
    s.read_announcements();
    let title = title(plugin, vnls);
    let mut untold = 0;
    let mut taken = None;
    while taken.is_none() {
        let Some(sp) = s.spares.iter_mut().find(|sp| !sp.told) else {
            break;
        };
        sp.told = true;
        untold += 1;
        if let Some(chan) = sp.chan.take() {
            // A send fails if it ended: then it is only to be reaped.
            if fdpass::send(chan.as_fd(), &title, &[]).is_ok() {
                taken = Some((sp.pid, chan));
            }
        }
    }
    if let Some((pid, _)) = &taken {
        s.spares.retain(|sp| sp.pid != *pid);
    }
    s.reap_ended_spares();
    // The fork server forks the next spare now. If it is gone, it is retired: the next stack
    // that needs it starts another.
    for _ in 0..untold {
        if fdpass::send(s.ctl.as_fd(), TAKEN, &[]).is_err() {
            retire(guard.take().expect("present"));
            break;
        }
    }
    taken
}

/// Has the fork server (started on first use) fork a host of `plugin` on `chan`; the host's
/// pid. `chan` is closed here.
pub(crate) fn spawn_host(
    host: &Path,
    plugin: &str,
    vnls: &[String],
    chan: OwnedFd,
) -> std::io::Result<u32> {
    let title = title(plugin, vnls);
    let mut guard = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let me = std::process::id();
    for attempt in 0..2 {
        match guard.take() {
            Some(s) if s.owner == me && s.host == host => *guard = Some(s),
            // Our own, of another binary: let it go.
            Some(s) if s.owner == me => retire(s),
            // The parent's (we are a fork): close our copies of its channels, nothing else.
            Some(s) => drop(s),
            None => {}
        }
        if guard.is_none() {
            *guard = Some(start(host)?);
        }
        let s = guard.as_mut().expect("just set");
        s.reap_ended_spares();
        if let Err(e) = fdpass::send(s.ctl.as_fd(), &title, &[chan.as_fd()]) {
            if gone_before(&e) && attempt == 0 {
                retire(guard.take().expect("present"));
                continue;
            }
            return Err(e);
        }
        // Announcements of spares first (sent after an earlier reply), then the reply.
        let mut buf = [0u8; 8];
        let got = loop {
            match fdpass::recv(s.ctl.as_fd(), &mut buf) {
                Ok(r) if announces(&r, &buf) => {
                    s.note_spare(&buf, r.fds);
                }
                other => break other,
            }
        };
        drop(chan);
        return match got {
            Ok(r) if r.len == 4 && r.fds.is_empty() => {
                let v = i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
                if v > 0 {
                    Ok(v as u32)
                } else {
                    Err(std::io::Error::from_raw_os_error(-v))
                }
            }
            // Gone while serving the request: whether it forked the host is unknown, so the
            // request fails (its channel end is closed here; a host it may have made reads EOF
            // and exits).
            _ => {
                retire(guard.take().expect("present"));
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "the fork server ended while forking a host",
                ))
            }
        };
    }
    unreachable!("the second attempt returns")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn ns_inode_reads_the_number_in_a_link() {
        assert_eq!(super::ns_inode("net:[4026531840]"), Some(4_026_531_840));
        assert_eq!(
            super::ns_inode("pid_for_children:[4026531836]"),
            Some(4_026_531_836)
        );
        assert_eq!(super::ns_inode("net:4026531840"), None);
        assert_eq!(super::ns_inode("net:[x]"), None);
    }

    /// The context read through the links is the namespaces' inodes as `stat` sees them.
    #[test]
    fn context_is_the_namespace_inodes_and_the_ids() {
        let c = super::context().unwrap();
        let net = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
        let mnt = std::fs::metadata("/proc/thread-self/ns/mnt").unwrap().ino();
        assert_eq!((c[0], c[1]), (net, mnt));
        assert_eq!(c.len(), 10);
        assert_eq!(c[8], u64::from(nix::unistd::geteuid().as_raw()));
        assert_eq!(c[9], u64::from(nix::unistd::getegid().as_raw()));
    }
}
