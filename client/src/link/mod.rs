//! [`Link`]: the application's channel to one host process — starting it ([`spawn`]), waiting
//! for and reaping it ([`process`]), one request and its reply at a time ([`Link::call`]), and
//! the typed requests of each role ([`Link::msocket`], [`Link::control`], [`Link::stats`],
//! [`Link::delstack`], …). Runs in the application; [`crate::Stack`] is the public handle over
//! it.
//!
//! Faults: a call waits for its reply on the channel (and, for an exec'd host, on a pidfd of
//! it), so a host that dies (crash, `kill -9`, a resource limit) wakes every call at once with [`Error::StackDied`]
//! (`ENETDOWN`), saying how it ended; later calls fail the same way without a round trip. A host
//! that does not answer within the newstack timeout — or the optional request timeout — is killed
//! and the call fails with [`Error::Timeout`] (`ETIMEDOUT`). Either way the host is reaped here
//! (no zombie outlives the call that saw the death) and fds already handed out stay valid kernel
//! sockets (native fds), or fds whose other end died with the host (proxied fds: reads see EOF or
//! `ECONNRESET`, control calls fail with `ENETDOWN`).
//!
//! A protocol error (a reply that cannot be decoded, or of the wrong kind, or with the wrong
//! fds) means the channel is out of step: the host is killed, the link is gone (later calls
//! `ENETDOWN`, [`Link::delstack`] succeeds) and the call fails with [`Error::Protocol`].
//!
//! A link belongs to the process that created it. In a child made by `fork()` its calls fail
//! with [`Error::StackDied`] (`ENETDOWN`) without touching the channel, which the parent still
//! uses, and dropping it there leaves the parent's host alone.

pub(crate) mod forkserver;
mod process;
mod reaper;
mod spares;
pub(crate) mod spawn;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ioth_proto::{
    Channel, ControlOp, FdKind, ProtoError, Reply, Request, StackStats, PROTO_VERSION,
};

use crate::{locate, Error, Result};
use process::{HostProcess, Wait};
use spares::{Spares, Take};

/// A bound on the wait for one reply: when it ends, and the limit it came from (for the error).
pub(crate) type Deadline = Option<(Instant, Duration)>;

/// The channel to one host process, and the process.
#[derive(Debug)]
pub(crate) struct Link {
    plugin: String,
    process: HostProcess,
    /// `None` once closed (drop, or the host is gone).
    chan: Mutex<Option<Channel>>,
    /// Bound on the wait for each reply after `NewStack` (`None`: wait as long as it takes).
    request_timeout: Option<Duration>,
    /// The audit trail's file, when the stack has one.
    audit: Option<PathBuf>,
    /// Whether native sockets may be asked for in batches ([`spares`]).
    batch: bool,
    /// The native sockets received ahead of demand. Taken before the channel when both are.
    spares: Arc<Mutex<Spares>>,
}

impl Link {
    /// Starts a host for `plugin` on `vnls`. `audit` is the absolute path of the audit trail
    /// given to the host (a directory gets `<plugin>-<host pid>.jsonl`).
    /// `fork_server`: fork it from the fork server ([`forkserver`]) rather than exec it.
    /// `queued`: requests written on the channel before the host starts, which it reads first
    /// (the handshake: their replies come through [`Link::handshake`]). `batch`: whether native
    /// sockets may be asked for in batches ([`Link::msocket`]).
    pub(crate) fn start(
        plugin: &str,
        vnls: &[String],
        request_timeout: Option<Duration>,
        audit: Option<PathBuf>,
        fork_server: bool,
        batch: bool,
        queued: &[&Request],
    ) -> Result<Link> {
        let host = locate::host_binary()?;
        let fork_server = fork_server && Self::fork_server_usable()?;
        // A spare host of the fork server, if there is one: its channel is ready.
        let spare = fork_server
            .then(|| forkserver::take_spare(&host, plugin, vnls))
            .flatten();
        if let Some((pid, fd)) = spare {
            // No pidfd, as for any host of the fork server (below).
            let process = HostProcess::new(pid, false);
            let link = Self::new(
                plugin,
                process,
                Channel::from_fd(fd),
                request_timeout,
                audit,
                batch,
            );
            // The spare is a host now: if this fails, dropping the link ends and reaps it.
            link.queue(queued)?;
            return Ok(link);
        }
        let (chan, host_end) = match Self::channel() {
            // Out of fds while other stacks hold spare sockets: those are closed, once.
            Err(e) if e.errno() == libc::EMFILE && spares::release_elsewhere(None) => {
                Self::channel()?
            }
            got => got?,
        };
        for r in queued {
            chan.send(*r, &[]).map_err(Error::Protocol)?;
        }
        let process = if fork_server {
            let pid = forkserver::spawn_host(&host, plugin, vnls, host_end.into_fd())
                .map_err(|source| Error::Spawn { path: host, source })?;
            // No pidfd: the host's end of the channel has no other holder (the fork server
            // closed its copy, the host keeps its own close-on-exec), so its hang-up says
            // that the host ended.
            HostProcess::new(pid, false)
        } else {
            let child = spawn::spawn_host(&host, plugin, vnls, host_end.into_fd())
                .map_err(|source| Error::Spawn { path: host, source })?;
            HostProcess::new(child.id(), true)
        };
        Ok(Self::new(
            plugin,
            process,
            chan,
            request_timeout,
            audit,
            batch,
        ))
    }

    /// The link to a started host; `audit` as for [`Link::start`].
    fn new(
        plugin: &str,
        process: HostProcess,
        chan: Channel,
        request_timeout: Option<Duration>,
        audit: Option<PathBuf>,
        batch: bool,
    ) -> Link {
        let audit = audit.map(|p| {
            if p.is_dir() {
                p.join(format!("{plugin}-{}.jsonl", process.pid()))
            } else {
                p
            }
        });
        Link {
            plugin: plugin.to_owned(),
            process,
            chan: Mutex::new(Some(chan)),
            request_timeout,
            audit,
            batch,
            spares: spares::register(),
        }
    }

    /// Writes `queued` on the channel (the handshake, which the host reads when it starts).
    fn queue(&self, queued: &[&Request]) -> Result<()> {
        let guard = self.chan.lock().unwrap_or_else(|e| e.into_inner());
        let chan = guard.as_ref().expect("a new link has its channel");
        for r in queued {
            chan.send(*r, &[]).map_err(Error::Protocol)?;
        }
        Ok(())
    }

    /// Whether the fork server can start the host ([`forkserver::usable`]). Before the
    /// channel: the check opens an fd of its own, and an application at its fd limit still has
    /// room for the two ends. Out of fds while other stacks hold spare sockets: those are
    /// closed, once.
    fn fork_server_usable() -> Result<bool> {
        let check = || {
            forkserver::usable().map_err(|source| Error::Os {
                op: "open /proc/thread-self/ns",
                source,
            })
        };
        match check() {
            Err(e) if e.errno() == libc::EMFILE && spares::release_elsewhere(None) => check(),
            got => got,
        }
    }

    /// The two ends of a new host channel.
    fn channel() -> Result<(Channel, Channel)> {
        Channel::pair().map_err(|source| Error::Os {
            op: "socketpair",
            source,
        })
    }

    /// Pid of the host process.
    pub(crate) fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Whether the host is known to be gone (died, killed after a timeout, or deleted).
    pub(crate) fn is_gone(&self) -> bool {
        self.process.gone().is_some()
    }

    /// The file of the audit trail, if the stack has one.
    pub(crate) fn audit_file(&self) -> Option<&Path> {
        self.audit.as_deref()
    }

    fn died(&self, how: String) -> Error {
        Error::StackDied {
            plugin: self.plugin.clone(),
            pid: self.pid(),
            how,
        }
    }

    /// The error for a reply `got` where `expected` was due: the host's error, or a protocol
    /// error that resets the link.
    fn unexpected(&self, expected: &'static str, got: Reply) -> Error {
        match got {
            Reply::Error(e) => Error::from_wire(e),
            other => {
                self.reset(format!(
                    "host killed: protocol error: {} instead of {expected}",
                    other.name()
                ));
                Error::Protocol(ProtoError::Unexpected {
                    expected,
                    got: other.name(),
                })
            }
        }
    }

    /// One request, one reply, on the host's channel. `deadline` bounds the wait for the reply;
    /// `None` means the stack's request timeout.
    fn call(&self, req: &Request, deadline: Deadline) -> Result<(Reply, Vec<OwnedFd>)> {
        let mut replies = self.exchange(&[req], &[req.name()], deadline)?;
        Ok(replies.pop().expect("one reply for one request"))
    }

    /// Sends `send` (none: they were queued before the host started, [`Link::start`]), then
    /// reads one reply for each request of `awaited` (their names, in order), stopping after a
    /// [`Reply::Error`]: a host that fails one request of a pipeline does not serve the rest.
    /// `deadline` bounds the whole; `None` means the stack's request timeout.
    fn exchange(
        &self,
        send: &[&Request],
        awaited: &[&'static str],
        deadline: Deadline,
    ) -> Result<Vec<(Reply, Vec<OwnedFd>)>> {
        let process = &self.process;
        if process.foreign() {
            // Before the lock: another thread of the parent may have held it at fork time.
            return Err(self.died(format!(
                "the stack belongs to process {}; this process is a fork of it",
                process.owner()
            )));
        }
        let mut guard: MutexGuard<'_, Option<Channel>> =
            self.chan.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(how) = process.gone() {
            return Err(self.died(how.clone()));
        }
        let Some(chan) = guard.as_mut() else {
            return Err(self.died("channel closed".into()));
        };
        let deadline = deadline.or_else(|| self.request_timeout.map(|t| (Instant::now() + t, t)));
        let mut replies = Vec::with_capacity(awaited.len());
        let mut sent = send.iter().try_for_each(|r| chan.send(*r, &[]));
        for &name in awaited {
            let got = sent.and_then(|()| match process.wait(chan, deadline.map(|(d, _)| d))? {
                Wait::Readable => chan.recv_reply(),
                Wait::HostEnded => Err(ProtoError::Closed),
                Wait::TimedOut => Err(ProtoError::Io(std::io::ErrorKind::TimedOut.into())),
            });
            match got {
                Ok(r) => {
                    let failed = matches!(r.0, Reply::Error(_));
                    replies.push(r);
                    if failed {
                        break;
                    }
                    sent = Ok(());
                }
                Err(e) => return Err(self.failed(&mut guard, name, deadline, e)),
            }
        }
        Ok(replies)
    }

    /// The error of a request `name` whose reply could not be had, and what it does to the link
    /// (`guard` holds the channel).
    fn failed(
        &self,
        guard: &mut MutexGuard<'_, Option<Channel>>,
        name: &'static str,
        deadline: Deadline,
        e: ProtoError,
    ) -> Error {
        let process = &self.process;
        match e {
            ProtoError::Closed => {
                // Mark it gone before the next caller gets the channel, then drop the channel.
                let how = process.mark_gone(name);
                **guard = None;
                self.died(how)
            }
            ProtoError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                let limit = deadline.map_or(Duration::ZERO, |(_, t)| t);
                process.kill(format!("host killed: no answer to {name} within {limit:?}"));
                **guard = None;
                Error::Timeout {
                    plugin: self.plugin.clone(),
                    pid: self.pid(),
                    what: name,
                    timeout: limit,
                }
            }
            // The reply was whole, but the fds it carried did not fit in this process (its fd
            // limit): the channel is still in step.
            ProtoError::FdsDropped => Error::Os {
                op: "recvmsg (SCM_RIGHTS)",
                source: std::io::Error::from_raw_os_error(libc::EMFILE),
            },
            e => {
                process.kill(format!(
                    "host killed: protocol error in the reply to {name}: {e}"
                ));
                **guard = None;
                Error::Protocol(e)
            }
        }
    }

    /// A reply of the wrong kind came: the channel is out of step, so the link is reset as on
    /// any protocol error (see the module doc).
    fn reset(&self, why: String) {
        if self.process.foreign() {
            return;
        }
        let mut guard = self.chan.lock().unwrap_or_else(|e| e.into_inner());
        self.process.kill(why);
        *guard = None;
    }

    /// The version handshake and the creation of the stack, both queued on the channel by
    /// [`Link::start`] (so that the host finds them when it starts): their replies, within
    /// `deadline`. A failed `NewStack` is classified by the kind the host gave it
    /// ([`Error::newstack`]).
    pub(crate) fn handshake(&self, deadline: Deadline) -> Result<()> {
        let mut replies = self
            .exchange(&[], &["Hello", "NewStack"], deadline)?
            .into_iter();
        match replies.next().map(|r| r.0) {
            Some(Reply::Hello { version }) if version == PROTO_VERSION => {}
            Some(Reply::Hello { version }) => {
                return Err(Error::Protocol(ProtoError::Version {
                    ours: PROTO_VERSION,
                    theirs: version,
                }))
            }
            Some(other) => return Err(self.unexpected("Hello", other)),
            None => unreachable!("exchange gives a reply or an error"),
        }
        match replies.next().map(|r| r.0) {
            Some(Reply::StackReady { .. }) => Ok(()),
            Some(Reply::Error(e)) => Err(Error::newstack(&self.plugin, e)),
            Some(other) => Err(self.unexpected("StackReady", other)),
            None => unreachable!("a Hello reply that is no error is followed by another"),
        }
    }

    /// A socket on the stack: how to use it, and its fd (close-on-exec). With batching on, a
    /// native socket of a kind asked for before on this stack comes from the spares, refilled
    /// by a [`Request::Sockets`] of [`spares::BATCH`] when empty ([`spares`] has the policy);
    /// the first of a kind, and every proxied socket, is one [`Request::Socket`].
    pub(crate) fn msocket(&self, domain: i32, ty: i32, protocol: i32) -> Result<(FdKind, OwnedFd)> {
        if !self.batch {
            return self.socket(domain, ty, protocol);
        }
        if self.process.foreign() {
            // A fork's copy: the spares are the parent's sockets, never to be handed out here
            // (both processes would use the same socket). Our copies of them are closed if the
            // lock is free (another thread of the parent may have held it at fork time); the
            // call itself fails as every call of a fork's copy does.
            if let Ok(mut spares) = self.spares.try_lock() {
                spares.clear();
            }
            return self.socket(domain, ty, protocol);
        }
        let key = (domain, ty, protocol);
        let mut spares = self.spares.lock().unwrap_or_else(|e| e.into_inner());
        match spares.take(key) {
            Take::Spare(fd) => Ok((FdKind::Native, fd)),
            Take::First => {
                let got = self.socket(domain, ty, protocol);
                if !matches!(got, Ok((FdKind::Native, _))) {
                    // A proxied socket (never batched), or a failure: nothing to remember.
                    spares.forget(key);
                }
                self.out_of_fds(&mut spares, key, got, || self.socket(domain, ty, protocol))
            }
            Take::Again => match self.sockets(domain, ty, protocol, spares::BATCH) {
                Ok(mut fds) => {
                    let fd = fds.remove(0);
                    spares.keep(key, fds);
                    Ok((FdKind::Native, fd))
                }
                // Out of fds (none of the batch could be installed here, or the host had none
                // for its first socket): one request is the answer, so that a batch never fails
                // an msocket that a single request would have served.
                Err(e) if matches!(e.errno(), libc::EMFILE | libc::ENFILE) => {
                    let got = self.socket(domain, ty, protocol);
                    self.out_of_fds(&mut spares, key, got, || self.socket(domain, ty, protocol))
                }
                Err(e) => Err(e),
            },
        }
    }

    /// `got`, unless it failed for lack of fds in this process while spares of other kinds hold
    /// some: then those are closed and `again` is the answer.
    fn out_of_fds(
        &self,
        spares: &mut Spares,
        key: spares::Key,
        got: Result<(FdKind, OwnedFd)>,
        again: impl FnOnce() -> Result<(FdKind, OwnedFd)>,
    ) -> Result<(FdKind, OwnedFd)> {
        match got {
            Err(e)
                if e.errno() == libc::EMFILE
                    && (spares.release_others(key)
                        || spares::release_elsewhere(Some(&self.spares))) =>
            {
                again()
            }
            got => got,
        }
    }

    /// One [`Request::Socket`].
    fn socket(&self, domain: i32, ty: i32, protocol: i32) -> Result<(FdKind, OwnedFd)> {
        let req = Request::Socket {
            domain,
            ty,
            protocol,
        };
        match self.call(&req, None)? {
            (Reply::Socket { kind }, mut fds) => {
                Ok((kind, fds.pop().expect("fd count checked by recv_reply")))
            }
            (other, _) => Err(self.unexpected("Socket", other)),
        }
    }

    /// One [`Request::Sockets`] of `count`: between 1 and `count` native sockets. A reply with
    /// more fds than asked for is a protocol error (the host is not trusted); its fds are
    /// closed. Fewer may come: those the host could make, or those this process had room for.
    fn sockets(&self, domain: i32, ty: i32, protocol: i32, count: u32) -> Result<Vec<OwnedFd>> {
        let req = Request::Sockets {
            domain,
            ty,
            protocol,
            count,
        };
        match self.call(&req, None)? {
            (Reply::Sockets { count: n }, fds) if n <= count && !fds.is_empty() => Ok(fds),
            (Reply::Sockets { count: n }, fds) => {
                drop(fds);
                self.reset(format!(
                    "host killed: protocol error: Sockets reply of {n} fds to a request of {count}"
                ));
                Err(Error::Protocol(ProtoError::FdCount {
                    message: "Sockets",
                    expected: count as usize,
                    got: n as usize,
                }))
            }
            (other, _) => Err(self.unexpected("Sockets", other)),
        }
    }

    /// How many spare sockets the link holds.
    pub(crate) fn spare_count(&self) -> usize {
        if self.process.foreign() {
            return 0;
        }
        self.spares
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .count()
    }

    /// Closes the spare sockets.
    fn drop_spares(&self) {
        self.spares
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// A control call on proxied socket `id`: the bytes it gives back (an address, an option
    /// value; empty for most). The host never blocks on it (docs/proxied.md).
    pub(crate) fn control(&self, id: u64, op: ControlOp) -> Result<Vec<u8>> {
        match self.call(&Request::Control { id, op }, None)? {
            (Reply::Control(bytes), _) => Ok(bytes),
            (other, _) => Err(self.unexpected("Control", other)),
        }
    }

    /// A non-blocking accept on proxied socket `id`: the new socket's fd, id and peer address
    /// bytes; `EAGAIN` when no connection is waiting.
    pub(crate) fn accept(&self, id: u64) -> Result<(OwnedFd, u64, Vec<u8>)> {
        let req = Request::Control {
            id,
            op: ControlOp::Accept,
        };
        match self.call(&req, None)? {
            (Reply::Accepted { id, peer }, mut fds) => {
                Ok((fds.pop().expect("fd count checked by recv_reply"), id, peer))
            }
            (other, _) => Err(self.unexpected("Accepted", other)),
        }
    }

    /// Tells the host that the application closed proxied socket `id`. A host that is gone
    /// answers at once (the socket went with it).
    pub(crate) fn close_socket(&self, id: u64) -> Result<()> {
        match self.call(&Request::Close { id }, None)? {
            (Reply::Closed, _) => Ok(()),
            (other, _) => Err(self.unexpected("Closed", other)),
        }
    }

    /// The host's namespace of kind `kind`, as an fd (one travels with the reply).
    pub(crate) fn namespace(&self, kind: ioth_proto::NsKind) -> Result<OwnedFd> {
        match self.call(&Request::Namespace { kind }, None)? {
            (Reply::Namespace, mut fds) => Ok(fds.pop().expect("fd count checked by recv_reply")),
            (other, _) => Err(self.unexpected("Namespace", other)),
        }
    }

    /// The host's own figures.
    pub(crate) fn stats(&self) -> Result<StackStats> {
        match self.call(&Request::Stats, None)? {
            (Reply::Stats(s), _) => Ok(s),
            (other, _) => Err(self.unexpected("Stats", other)),
        }
    }

    /// Deletes the stack and reaps the host. A host already gone (died, or killed after a
    /// timeout, this `DelStack` included) counts as deleted; in a fork's copy nothing happens
    /// (the stack stays the parent's).
    pub(crate) fn delstack(&self) -> Result<()> {
        if self.process.foreign() || self.is_gone() {
            return Ok(());
        }
        self.drop_spares();
        match self.call(&Request::DelStack, None) {
            Ok((Reply::Deleted, _)) => {
                self.process.set_gone("deleted by delstack".into());
                // The host exits once its reply is sent, but its exit waits for the kernel to
                // tear down what the plug-in held (a tap, a network namespace: tens of ms),
                // which nothing in this process can reach any more: reaped in the background.
                drop(self.chan.lock().unwrap_or_else(|e| e.into_inner()).take());
                self.process.reap_later(Duration::from_secs(2));
                Ok(())
            }
            Ok((other, _)) => Err(self.unexpected("Deleted", other)),
            Err(Error::StackDied { .. } | Error::Timeout { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if self.process.foreign() {
            // A fork's copy: closing our copy of the channel leaves the parent's open; the host
            // is not our child, so nothing to reap (and never to kill).
            self.process.forget();
            return;
        }
        // Closing the channel tells the host to exit; it is reaped in the background.
        drop(
            self.chan
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        self.process.reap_later(Duration::from_secs(2));
    }
}
