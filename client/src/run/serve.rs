//! The runner's side of a proxied stack: it keeps every socket the preloaded processes made
//! (an [`ioth::Socket`](crate::Socket) each, so the stack's control calls work as in any
//! application) and serves the processes' requests ([`ioth_proto::run`]) on a private
//! `SOCK_SEQPACKET` socket, one thread per connection (each thread of each process connects
//! on its own, so a blocking `accept` of one never holds up another).
//!
//! When is a socket closed? A socket's fd may be in many processes (`fork`, `dup`, `exec`,
//! fds passed over Unix sockets), so the runner asks the kernel: a socket is released (its
//! `Socket` dropped, which tells the stack) once no process but the runner and the stack's host
//! holds an fd of its inode (`/proc/<pid>/fd/*` → `socket:[ino]`). It looks when a process says
//! it closed one ([`RunRequest::Closed`]), when a connection ends (a process exited or
//! exec'd), and once a second while sockets are held (processes that inherited fds but never
//! talked to the runner). A socket younger than [`YOUNG`] is kept by the last two (its fd may
//! still be on its way to the process).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ioth_proto::run::{RunReply, RunRequest, SockInfo};
use ioth_proto::{Channel, ControlOp, ProtoError};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use socket2::{Domain, SockAddr, Type};

use crate::socket::raw;
use crate::{Socket, Stack};

/// Sockets younger than this are not released by the periodic or end-of-connection sweeps.
const YOUNG: Duration = Duration::from_secs(5);

/// How often the sockets are checked while some are held.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

struct Entry {
    sock: Arc<Socket>,
    info: SockInfo,
    born: Instant,
}

/// What the serving threads share.
pub(crate) struct Shared {
    stack: Stack,
    table: Mutex<HashMap<u64, Entry>>,
    /// Pids whose fds do not count (the runner, the stack's host).
    exclude: Vec<u32>,
    connections: AtomicUsize,
}

/// The inode of `fd`.
fn ino(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(nix::sys::stat::fstat(fd)?.st_ino)
}

/// Every socket inode held by a process other than `exclude`.
fn live_inodes(exclude: &[u32]) -> std::collections::HashSet<u64> {
    let mut out = std::collections::HashSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let name = p.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if exclude.contains(&pid) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let t = target.as_os_str().as_bytes();
                if let Some(n) = t
                    .strip_prefix(b"socket:[")
                    .and_then(|r| r.strip_suffix(b"]"))
                    .and_then(|n| std::str::from_utf8(n).ok())
                    .and_then(|n| n.parse().ok())
                {
                    out.insert(n);
                }
            }
        }
    }
    out
}

impl Shared {
    pub(crate) fn new(stack: &Stack) -> Arc<Shared> {
        let mut exclude = vec![std::process::id()];
        exclude.extend(stack.pid());
        Arc::new(Shared {
            stack: stack.clone(),
            table: Mutex::new(HashMap::new()),
            exclude,
            connections: AtomicUsize::new(0),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether no socket is held.
    pub(crate) fn idle(&self) -> bool {
        self.table().is_empty() && self.connections.load(Ordering::Acquire) == 0
    }

    /// Releases the sockets no process holds: `only` one, or all but the young ones.
    pub(crate) fn sweep(&self, only: Option<u64>) {
        if self.table().is_empty() {
            return;
        }
        let live = live_inodes(&self.exclude);
        let now = Instant::now();
        let dead: Vec<Entry> = {
            let mut t = self.table();
            let gone: Vec<u64> = t
                .iter()
                .filter(|(i, e)| match only {
                    Some(o) => **i == o,
                    None => now.duration_since(e.born) >= YOUNG,
                })
                .filter(|(i, _)| !live.contains(i))
                .map(|(i, _)| *i)
                .collect();
            gone.iter().filter_map(|i| t.remove(i)).collect()
        };
        // Dropped with no lock held: each tells the stack (a round trip).
        drop(dead);
    }

    fn insert(&self, sock: Socket, domain: i32, ty: i32, protocol: i32) -> io::Result<SockInfo> {
        let info = SockInfo {
            ino: ino(sock.as_fd())?,
            domain,
            ty: ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC),
            protocol,
            connected: false,
            peer: Vec::new(),
        };
        self.table().insert(
            info.ino,
            Entry {
                sock: Arc::new(sock),
                info: info.clone(),
                born: Instant::now(),
            },
        );
        Ok(info)
    }

    fn get(&self, ino: u64) -> Option<(Arc<Socket>, SockInfo)> {
        self.table()
            .get(&ino)
            .map(|e| (e.sock.clone(), e.info.clone()))
    }

    /// Serves one request: the reply and the fd that goes with it.
    fn serve(&self, req: RunRequest) -> (RunReply, Option<Arc<Socket>>) {
        let err = |e: io::Error| RunReply::Error(e.raw_os_error().unwrap_or(libc::EIO));
        match req {
            RunRequest::Socket {
                domain,
                ty,
                protocol,
            } => {
                if !matches!(
                    domain,
                    libc::AF_INET | libc::AF_INET6 | libc::AF_NETLINK | libc::AF_PACKET
                ) {
                    return (RunReply::Error(libc::EAFNOSUPPORT), None);
                }
                match self
                    .stack
                    .msocket(domain, ty | libc::SOCK_CLOEXEC, protocol)
                {
                    Ok(s) => match self.insert(s, domain, ty, protocol) {
                        Ok(info) => {
                            let sock = self.get(info.ino).map(|(s, _)| s);
                            (RunReply::Socket(info), sock)
                        }
                        Err(e) => (err(e), None),
                    },
                    Err(e) => (RunReply::Error(e.errno()), None),
                }
            }
            RunRequest::Info { ino } => (RunReply::Info(self.get(ino).map(|(_, i)| i)), None),
            RunRequest::Closed { ino } => {
                self.sweep(Some(ino));
                (RunReply::Done, None)
            }
            RunRequest::Accept { ino } => {
                let Some((sock, info)) = self.get(ino) else {
                    return (RunReply::Error(libc::EBADF), None);
                };
                match sock.accept() {
                    Ok((conn, peer)) => {
                        match self.insert(conn, info.domain, info.ty, info.protocol) {
                            Ok(new) => {
                                let fd = self.get(new.ino).map(|(s, _)| s);
                                let peer = raw::sockaddr_bytes(&SockAddr::from(peer));
                                (RunReply::Accepted { info: new, peer }, fd)
                            }
                            Err(e) => (err(e), None),
                        }
                    }
                    Err(e) => (err(e), None),
                }
            }
            RunRequest::Control { ino, op } => {
                let Some((sock, info)) = self.get(ino) else {
                    return (RunReply::Error(libc::EBADF), None);
                };
                match self.control(&sock, info, op) {
                    Ok(r) => (r, None),
                    Err(e) => (err(e), None),
                }
            }
        }
    }

    fn control(&self, sock: &Socket, mut info: SockInfo, op: ControlOp) -> io::Result<RunReply> {
        let inval = || io::Error::from_raw_os_error(libc::EINVAL);
        let ok = Ok(RunReply::Control(Vec::new()));
        match op {
            ControlOp::Bind(a) => {
                sock.bind_sockaddr(&raw::sock_addr(&a).ok_or_else(inval)?)?;
                ok
            }
            ControlOp::Connect(a) => {
                let family = a
                    .get(..2)
                    .map(|f| u16::from_ne_bytes([f[0], f[1]]) as i32)
                    .ok_or_else(inval)?;
                if family == libc::AF_UNSPEC {
                    sock.disconnect()?;
                    info.connected = false;
                    info.peer.clear();
                } else {
                    let to = raw::socket_addr(&a)
                        .ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))?;
                    if !matches!(info.domain, libc::AF_INET | libc::AF_INET6) {
                        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
                    }
                    sock.connect(&to)?;
                    info.connected = info.ty != libc::SOCK_STREAM;
                    info.peer = raw::sockaddr_bytes(&SockAddr::from(sock.peer_addr()?));
                }
                if let Some(e) = self.table().get_mut(&info.ino) {
                    e.info = info.clone();
                }
                Ok(RunReply::Connected(info))
            }
            ControlOp::Listen(backlog) => {
                sock.listen(backlog)?;
                ok
            }
            ControlOp::Accept => Err(inval()),
            ControlOp::GetSockName => Ok(RunReply::Control(raw::sockaddr_bytes(
                &sock.local_sockaddr()?,
            ))),
            ControlOp::GetPeerName => Ok(RunReply::Control(raw::sockaddr_bytes(&SockAddr::from(
                sock.peer_addr()?,
            )))),
            ControlOp::SetSockOpt { level, name, value } => {
                sock.setsockopt(level, name, &value)?;
                ok
            }
            ControlOp::GetSockOpt { level, name, len } => Ok(RunReply::Control(sock.getsockopt(
                level,
                name,
                len as usize,
            )?)),
            ControlOp::Shutdown(how) => {
                let how = match how {
                    libc::SHUT_RD => std::net::Shutdown::Read,
                    libc::SHUT_WR => std::net::Shutdown::Write,
                    libc::SHUT_RDWR => std::net::Shutdown::Both,
                    _ => return Err(inval()),
                };
                sock.shutdown(how)?;
                ok
            }
        }
    }

    /// Serves one connection until it ends.
    fn connection(self: Arc<Shared>, fd: OwnedFd) {
        let mut chan = Channel::from_fd(fd);
        loop {
            let req = match chan.recv::<RunRequest>() {
                Ok((req, fds)) => {
                    drop(fds);
                    req
                }
                Err(ProtoError::Closed) | Err(ProtoError::Io(_)) => break,
                Err(_) => {
                    if chan.send(&RunReply::Error(libc::EPROTO), &[]).is_err() {
                        break;
                    }
                    continue;
                }
            };
            let (reply, sock) = self.serve(req);
            let fds: Vec<BorrowedFd<'_>> = sock.iter().map(|s| s.as_fd()).collect();
            if chan.send(&reply, &fds).is_err() {
                break;
            }
        }
        self.connections.fetch_sub(1, Ordering::AcqRel);
        self.sweep(None);
    }
}

/// The private directory (mode 0700) with the runner's socket in it, removed on drop.
pub(crate) struct Rendezvous {
    dir: PathBuf,
    pub(crate) path: PathBuf,
    listener: socket2::Socket,
}

impl Rendezvous {
    pub(crate) fn new() -> io::Result<Rendezvous> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::var_os("TMPDIR")
            .filter(|t| Path::new(t).is_absolute())
            .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
        let mut last = None;
        for attempt in 0..16u32 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let dir = base.join(format!(
                "ioth-run-{}-{:08x}",
                std::process::id(),
                nanos ^ attempt.wrapping_mul(0x9e37_79b9)
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    let path = dir.join("sock");
                    let listener =
                        socket2::Socket::new(Domain::UNIX, Type::SEQPACKET.cloexec(), None)?;
                    let bound = SockAddr::unix(&path)
                        .and_then(|a| listener.bind(&a))
                        .and_then(|()| listener.listen(128));
                    if let Err(e) = bound {
                        let _ = std::fs::remove_dir_all(&dir);
                        return Err(e);
                    }
                    return Ok(Rendezvous {
                        dir,
                        path,
                        listener,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::ErrorKind::AlreadyExists.into()))
    }
}

impl Drop for Rendezvous {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Serves until `child` (a pidfd, readable once the program has ended) ends, then until every
/// socket is released; removes the rendezvous.
pub(crate) fn serve(shared: Arc<Shared>, rv: Rendezvous, child: Option<OwnedFd>) {
    let mut listening = true;
    loop {
        let mut fds = Vec::new();
        if listening {
            fds.push(PollFd::new(rv.listener.as_fd(), PollFlags::POLLIN));
            if let Some(c) = &child {
                fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
            }
        }
        let ms = SWEEP_EVERY.as_millis() as i32;
        let n = if fds.is_empty() {
            std::thread::sleep(SWEEP_EVERY);
            0
        } else {
            match poll(
                &mut fds,
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
            ) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => 0,
            }
        };
        let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
        let (accept, ended) = (
            listening && n > 0 && ready(&fds[0]),
            listening && n > 0 && fds.get(1).is_some_and(ready),
        );
        drop(fds);
        if accept {
            if let Ok((conn, _)) = rv.listener.accept() {
                shared.connections.fetch_add(1, Ordering::AcqRel);
                let s = shared.clone();
                let started = std::thread::Builder::new()
                    .name("ioth-run".into())
                    .spawn(move || s.connection(conn.into()));
                if started.is_err() {
                    shared.connections.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
        if ended || (child.is_none() && !listening) {
            listening = false;
        }
        if n == 0 {
            shared.sweep(None);
        }
        if !listening && shared.idle() {
            break;
        }
    }
    drop(rv);
}
