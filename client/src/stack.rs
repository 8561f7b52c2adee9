//! [`Stack`], [`StackBuilder`] and the process-wide defaults. Runs in the application.
//!
//! A stack is either the process's own kernel stack (no host: sockets come straight from
//! socket(2)) or a host process serving one plug-in over a channel. Requests on one stack are
//! serialised on its channel; requests on different stacks never wait for each other.
//!
//! Faults: a call waits for its reply on the channel *and* on a pidfd of the host, so a host that
//! dies (crash, `kill -9`, a resource limit) wakes every call at once with [`Error::StackDied`]
//! (`ENETDOWN`), saying how it ended; later calls fail the same way without a round trip. A host
//! that does not answer within the newstack timeout — or the optional request timeout — is killed
//! and the call fails with [`Error::Timeout`] (`ETIMEDOUT`). Either way the host is reaped here
//! (no zombie outlives the call that saw the death) and fds already handed out stay valid kernel
//! sockets (native fds), or fds whose other end died with the host (proxied fds: reads see EOF or
//! `ECONNRESET`, control calls fail with `ENETDOWN`).
//!
//! A protocol error (a reply that cannot be decoded, or of the wrong kind, or with the wrong
//! fds) means the channel is out of step: the host is killed, the stack is gone (later calls
//! `ENETDOWN`, [`Stack::delete`] succeeds) and the call fails with [`Error::Protocol`].
//!
//! A stack belongs to the process that created it. In a child made by `fork()` its calls fail
//! with [`Error::StackDied`] (`ENETDOWN`) without touching the channel, which the parent still
//! uses, and deleting or dropping it there leaves the parent's host alone.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, Instant};

use ioth_proto::{
    Channel, ControlOp, FdKind, Limits, ProtoError, Reply, Request, WireError, PROTO_VERSION,
};

use crate::socket::{Hold, Proxy, Socket};
use crate::{locate, spawn, sys, Error, Result};

/// Default limit for a host to start its plug-in (`newstack`), overridden by
/// `IOTH_NEWSTACK_TIMEOUT` (milliseconds) and [`StackBuilder::timeout`].
pub const DEFAULT_NEWSTACK_TIMEOUT: Duration = Duration::from_secs(5);

static LICENSE: RwLock<Option<String>> = RwLock::new(None);
static DEFAULT: RwLock<Option<Stack>> = RwLock::new(None);

/// Declares the application's licence (SPDX), checked against each plug-in's
/// (`ioth_set_license`). Without one, only plug-ins without licence requirements (or LGPL) load.
pub fn set_license(license: Option<&str>) {
    *LICENSE.write().unwrap_or_else(|e| e.into_inner()) = license.map(str::to_owned);
}

/// The licence given to [`set_license`].
pub fn license() -> Option<String> {
    LICENSE.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Sets the process-wide default stack used by [`socket`]; `None` reverts to the native kernel
/// stack.
pub fn set_default_stack(stack: Option<&Stack>) {
    *DEFAULT.write().unwrap_or_else(|e| e.into_inner()) = stack.cloned();
}

/// The process-wide default stack (the native kernel stack unless [`set_default_stack`] chose
/// another).
pub fn default_stack() -> Stack {
    DEFAULT
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_else(Stack::native)
}

/// A socket on the default stack (`ioth_socket`).
pub fn socket(domain: i32, ty: i32, protocol: i32) -> Result<Socket> {
    default_stack().msocket(domain, ty, protocol)
}

/// One TCP/IP stack. Cheap to clone: clones share the stack.
#[derive(Debug, Clone)]
pub struct Stack {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    plugin: String,
    backend: Backend,
    /// Sockets open on this stack (see [`Hold`]).
    pub(crate) open: AtomicUsize,
}

#[derive(Debug)]
enum Backend {
    Native,
    Host(HostLink),
}

#[derive(Debug)]
struct HostLink {
    pid: u32,
    /// The process that created the stack (see the module doc on `fork`).
    owner: u32,
    /// Readable once the host has ended (see [`spawn::pidfd_open`]); `None` without pidfds.
    pidfd: Option<OwnedFd>,
    /// `None` once closed (drop, or the host is gone).
    chan: Mutex<Option<Channel>>,
    /// `None` once reaped.
    child: Mutex<Option<Child>>,
    /// Set once the host is gone: how it ended.
    gone: OnceLock<String>,
    /// Bound on the wait for each reply after `NewStack` (`None`: wait as long as it takes).
    request_timeout: Option<Duration>,
    /// The audit trail's file, when the stack has one.
    audit: Option<PathBuf>,
}

/// Options for a new stack.
#[derive(Debug, Clone)]
pub struct StackBuilder {
    plugin: String,
    options: String,
    vnls: Vec<String>,
    license: Option<Option<String>>,
    timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    audit: Option<PathBuf>,
    limits: Limits,
}

/// A duration in milliseconds from the environment variable `var`.
fn env_ms(var: &str) -> Option<Duration> {
    crate::env::var(var)
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_millis)
}

impl StackBuilder {
    /// A stack of plug-in `plugin` (`"vdestack"` loads `ioth_vdestack-r.so` or
    /// `ioth_vdestack.so`). As in C, what follows the first comma is the plug-in's options,
    /// handed to it verbatim: `"vdestack,a,b=1"` is plug-in `vdestack` with options `"a,b=1"`
    /// (see [`StackBuilder::options`]). An empty name means the native kernel stack.
    pub fn new(plugin: &str) -> StackBuilder {
        let (plugin, options) = plugin.split_once(',').unwrap_or((plugin, ""));
        StackBuilder {
            plugin: plugin.to_owned(),
            options: options.to_owned(),
            vnls: Vec::new(),
            license: None,
            timeout: None,
            request_timeout: None,
            audit: None,
            limits: Limits::default(),
        }
    }

    /// Sets the plug-in's options (replacing those of the name given to [`StackBuilder::new`]):
    /// a string the plug-in's `newstack` receives verbatim. Our plug-ins (`kernel`,
    /// `vdestack`, `smoltcp`) take none and fail with `EINVAL` on any.
    pub fn options(mut self, options: &str) -> StackBuilder {
        self.options = options.to_owned();
        self
    }

    /// Adds an interface on a virtual network (`vde:///tmp/sw`, `eth1:vde:///tmp/sw`, …).
    pub fn vnl(mut self, vnl: &str) -> StackBuilder {
        self.vnls.push(vnl.to_owned());
        self
    }

    /// Adds several interfaces.
    pub fn vnls<S: AsRef<str>>(mut self, vnls: &[S]) -> StackBuilder {
        self.vnls.extend(vnls.iter().map(|v| v.as_ref().to_owned()));
        self
    }

    /// The application licence for this stack (default: the one given to [`set_license`]).
    pub fn license(mut self, license: Option<&str>) -> StackBuilder {
        self.license = Some(license.map(str::to_owned));
        self
    }

    /// How long the plug-in may take to create its stack before the host is killed and creation
    /// fails with `ETIMEDOUT` (default [`DEFAULT_NEWSTACK_TIMEOUT`], or `IOTH_NEWSTACK_TIMEOUT` ms).
    pub fn timeout(mut self, timeout: Duration) -> StackBuilder {
        self.timeout = Some(timeout);
        self
    }

    /// Bounds the wait for the answer to every later request on the stack (msocket, stats,
    /// delete, …): a host that does not answer in time is killed, the call fails with
    /// [`Error::Timeout`] (`ETIMEDOUT`) and later calls with [`Error::StackDied`] (`ENETDOWN`).
    /// Default: `IOTH_REQUEST_TIMEOUT` (milliseconds) if set, else no bound — a request then
    /// waits as long as the plug-in takes, like a blocking system call; other stacks never wait.
    pub fn request_timeout(mut self, timeout: Duration) -> StackBuilder {
        self.request_timeout = Some(timeout);
        self
    }

    /// Keeps an audit trail of the stack: the host writes one JSON line per request it served
    /// (format in `docs/faults.md`). `path` is a directory, which receives one file per stack
    /// named `<plugin>-<host pid>.jsonl`, or a file, created (mode 0600) or appended to.
    /// Default: `IOTH_AUDIT` if set. A trail that cannot be opened fails the creation.
    pub fn audit(mut self, path: impl AsRef<Path>) -> StackBuilder {
        self.audit = Some(path.as_ref().to_path_buf());
        self
    }

    /// Limits the host's address space (`RLIMIT_AS`, bytes). Like every limit it is set by the
    /// host on itself, as soft and hard limit, before the plug-in is loaded; a plug-in that needs
    /// more gets `ENOMEM` (and if it then crashes, only its own stack dies). Keep room for the
    /// host itself: about 10 MB of address space (hosts run with `MALLOC_ARENA_MAX=1` unless
    /// the application sets that variable; with per-thread malloc arenas a host reserves
    /// ~140 MB).
    pub fn limit_address_space(mut self, bytes: u64) -> StackBuilder {
        self.limits.address_space = Some(bytes);
        self
    }

    /// Limits the host's open files (`RLIMIT_NOFILE`: one more than the highest fd number). The
    /// host itself uses about 8.
    pub fn limit_open_files(mut self, n: u64) -> StackBuilder {
        self.limits.open_files = Some(n);
        self
    }

    /// Limits the host's CPU time (`RLIMIT_CPU`, whole seconds, rounded up): past it the host is
    /// killed by `SIGXCPU`.
    pub fn limit_cpu_time(mut self, t: Duration) -> StackBuilder {
        let secs = t.as_secs() + u64::from(t.subsec_nanos() > 0);
        self.limits.cpu_seconds = Some(secs.max(1));
        self
    }

    /// Limits the size of a core dump of the host (`RLIMIT_CORE`, bytes; 0: none).
    pub fn limit_core_size(mut self, bytes: u64) -> StackBuilder {
        self.limits.core_size = Some(bytes);
        self
    }

    /// Starts the host and creates the stack.
    pub fn build(self) -> Result<Stack> {
        if self.plugin.is_empty() {
            if !self.vnls.is_empty() {
                return Err(Error::InvalidArgument(
                    "the native kernel stack takes no VNL".into(),
                ));
            }
            return Ok(Stack::native());
        }
        check_plugin_name(&self.plugin)?;
        if let Some(v) = self.vnls.iter().find(|v| v.is_empty() || v.contains('\0')) {
            return Err(Error::InvalidArgument(format!("malformed VNL {v:?}")));
        }
        let timeout = self
            .timeout
            .or_else(|| env_ms("IOTH_NEWSTACK_TIMEOUT"))
            .unwrap_or(DEFAULT_NEWSTACK_TIMEOUT);
        let request_timeout = self
            .request_timeout
            .or_else(|| env_ms("IOTH_REQUEST_TIMEOUT"))
            .filter(|t| !t.is_zero());
        let audit = match self
            .audit
            .clone()
            .or_else(|| crate::env::var_os("IOTH_AUDIT").map(PathBuf::from))
            .filter(|p| !p.as_os_str().is_empty())
        {
            None => None,
            Some(p) => Some(std::path::absolute(&p).map_err(|source| Error::Os {
                op: "audit path",
                source,
            })?),
        };
        let audit_str = match &audit {
            None => None,
            Some(p) => Some(
                p.to_str()
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!("audit path {p:?} is not UTF-8"))
                    })?
                    .to_owned(),
            ),
        };
        let license = self.license.unwrap_or_else(license);
        let host = locate::host_binary()?;
        let (chan, host_end) = Channel::pair().map_err(|source| Error::Os {
            op: "socketpair",
            source,
        })?;
        let child = spawn::spawn_host(&host, &self.plugin, &self.vnls, host_end.into_fd())
            .map_err(|source| Error::Spawn { path: host, source })?;
        let pid = child.id();
        let audit_file = audit.map(|p| {
            if p.is_dir() {
                p.join(format!("{}-{pid}.jsonl", self.plugin))
            } else {
                p
            }
        });
        let link = HostLink {
            pid,
            owner: std::process::id(),
            pidfd: spawn::pidfd_open(pid),
            chan: Mutex::new(Some(chan)),
            child: Mutex::new(Some(child)),
            gone: OnceLock::new(),
            request_timeout,
            audit: audit_file,
        };
        let stack = Stack {
            inner: Arc::new(Inner {
                plugin: self.plugin.clone(),
                backend: Backend::Host(link),
                open: AtomicUsize::new(0),
            }),
        };
        let deadline = Some((Instant::now() + timeout, timeout));
        match stack.call(
            &Request::Hello {
                version: PROTO_VERSION,
            },
            deadline,
        )? {
            (Reply::Hello { version }, _) if version == PROTO_VERSION => {}
            (Reply::Hello { version }, _) => {
                return Err(Error::Protocol(ProtoError::Version {
                    ours: PROTO_VERSION,
                    theirs: version,
                }))
            }
            (other, _) => return Err(stack.unexpected("Hello", other)),
        }
        let req = Request::NewStack {
            plugin: self.plugin.clone(),
            options: self.options.clone(),
            vnls: self.vnls.clone(),
            search_path: locate::plugin_search_path(),
            app_license: license,
            limits: self.limits,
            audit: audit_str,
        };
        match stack.call(&req, deadline) {
            Ok((Reply::StackReady { .. }, _)) => Ok(stack),
            Ok((Reply::Error(e), _)) => Err(newstack_error(&self.plugin, e)),
            Ok((other, _)) => Err(stack.unexpected("StackReady", other)),
            Err(e) => Err(e),
        }
    }
}

fn check_plugin_name(name: &str) -> Result<()> {
    let reason = if name.contains('/') {
        "it contains '/'"
    } else if name.contains("..") {
        "it contains '..'"
    } else if name.contains('\0') {
        "it contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

fn newstack_error(plugin: &str, e: WireError) -> Error {
    let name = plugin.to_owned();
    match e.errno {
        libc::ENOTSUP => Error::PluginNotFound {
            name,
            message: e.message,
        },
        libc::ENOENT if e.message.contains("_newstack") => Error::NoNewstack {
            name,
            message: e.message,
        },
        libc::EPERM if e.message.starts_with("licence refused") => Error::LicenseRefused {
            name,
            message: e.message,
        },
        errno => Error::Stack {
            errno,
            message: e.message,
        },
    }
}

/// How a child ended, in words.
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("host exited with status {c}"),
        (None, Some(s)) => format!(
            "host killed by signal {s} ({})",
            nix::sys::signal::Signal::try_from(s)
                .map(|s| s.as_str())
                .unwrap_or("?")
        ),
        _ => "host ended".into(),
    }
}

/// Waits up to `grace` for `child` to end by itself, then kills it; reaps it either way and
/// says how it ended. `None` if it was reaped already.
fn reap_child(slot: &mut Option<Child>, grace: Duration) -> Option<String> {
    let child = slot.as_mut()?;
    let deadline = Instant::now() + grace;
    let mut pause = Duration::from_micros(50);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                break child.wait().ok();
            }
            Err(_) => break None,
        }
    };
    *slot = None;
    status.map(describe)
}

/// What waiting for a reply found.
enum Wait {
    /// The channel has a message or EOF.
    Readable,
    /// The host ended but its end of the channel is still open somewhere.
    HostEnded,
    /// The deadline passed.
    TimedOut,
}

impl HostLink {
    /// Whether this process is not the one that created the stack (a child of `fork`).
    fn foreign(&self) -> bool {
        std::process::id() != self.owner
    }

    /// Waits up to `grace` for the host to end by itself, then kills it; reaps it either way.
    fn reap(&self, grace: Duration) -> Option<String> {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        reap_child(&mut guard, grace)
    }

    /// Records that the host is gone (EOF on the channel, or its pidfd fired during `what`) and
    /// how; reaps it.
    fn mark_gone(&self, what: &str) -> String {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(how) = self.gone.get() {
            return how.clone();
        }
        let how = match reap_child(&mut guard, Duration::from_millis(500)) {
            Some(how) => format!("{how} during {what}"),
            None => "host closed its channel".into(),
        };
        self.gone.get_or_init(|| how).clone()
    }

    /// Kills the host because `why`, and reaps it.
    fn kill(&self, why: String) {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.gone.set(why);
        reap_child(&mut guard, Duration::ZERO);
    }

    /// Waits until `chan` can be read or the host ends, at most until `deadline`.
    fn wait(&self, chan: &Channel, deadline: Option<Instant>) -> std::io::Result<Wait> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            let left = match deadline {
                None => PollTimeout::NONE,
                Some(d) => {
                    let ms = d
                        .saturating_duration_since(Instant::now())
                        .as_micros()
                        .div_ceil(1000)
                        .min(i32::MAX as u128) as i32;
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
                }
            };
            let mut fds = vec![PollFd::new(chan.as_fd(), PollFlags::POLLIN)];
            if let Some(p) = &self.pidfd {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, left) {
                Ok(0) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(Wait::TimedOut);
                    }
                }
                Ok(_) => {
                    let ready = |f: &PollFd<'_>| f.revents().is_none_or(|r| !r.is_empty());
                    if ready(&fds[0]) {
                        return Ok(Wait::Readable);
                    }
                    if fds.get(1).is_some_and(ready) {
                        return Ok(Wait::HostEnded);
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Stack {
    /// The process's own kernel stack: no host, sockets from socket(2) directly.
    pub fn native() -> Stack {
        Stack {
            inner: Arc::new(Inner {
                plugin: String::new(),
                backend: Backend::Native,
                open: AtomicUsize::new(0),
            }),
        }
    }

    /// A new stack of `plugin` with one interface per VNL (`ioth_newstackv`).
    pub fn new<S: AsRef<str>>(plugin: &str, vnls: &[S]) -> Result<Stack> {
        StackBuilder::new(plugin).vnls(vnls).build()
    }

    /// A builder for a stack with options.
    pub fn builder(plugin: &str) -> StackBuilder {
        StackBuilder::new(plugin)
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Stack {
        Stack { inner }
    }

    /// The plug-in name (`""` for the native stack).
    pub fn plugin(&self) -> &str {
        &self.inner.plugin
    }

    /// Pid of the host process (`None` for the native stack).
    pub fn pid(&self) -> Option<u32> {
        match &self.inner.backend {
            Backend::Native => None,
            Backend::Host(h) => Some(h.pid),
        }
    }

    /// Sockets currently open on this stack.
    pub fn open_sockets(&self) -> usize {
        self.inner.open.load(Ordering::Acquire)
    }

    /// Whether two handles refer to the same stack.
    pub fn same(&self, other: &Stack) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn link(&self) -> Option<&HostLink> {
        match &self.inner.backend {
            Backend::Native => None,
            Backend::Host(h) => Some(h),
        }
    }

    fn died(&self, how: String) -> Error {
        Error::StackDied {
            plugin: self.inner.plugin.clone(),
            pid: self.pid().unwrap_or(0),
            how,
        }
    }

    fn unexpected(&self, expected: &'static str, got: Reply) -> Error {
        match got {
            Reply::Error(e) => Error::Stack {
                errno: e.errno,
                message: e.message,
            },
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

    /// One request, one reply, on the host's channel. `deadline` bounds the wait for the reply
    /// (with the limit it came from, for the error); `None` means the stack's request timeout.
    fn call(
        &self,
        req: &Request,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<(Reply, Vec<OwnedFd>)> {
        let Some(link) = self.link() else {
            return Err(Error::InvalidArgument(format!(
                "request {} on the native stack",
                req.name()
            )));
        };
        if link.foreign() {
            // Before the lock: another thread of the parent may have held it at fork time.
            return Err(self.died(format!(
                "the stack belongs to process {}; this process is a fork of it",
                link.owner
            )));
        }
        let mut guard: MutexGuard<'_, Option<Channel>> =
            link.chan.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(how) = link.gone.get() {
            return Err(self.died(how.clone()));
        }
        let Some(chan) = guard.as_mut() else {
            return Err(self.died("channel closed".into()));
        };
        let deadline = deadline.or_else(|| link.request_timeout.map(|t| (Instant::now() + t, t)));
        let result =
            chan.send(req, &[])
                .and_then(|()| match link.wait(chan, deadline.map(|(d, _)| d))? {
                    Wait::Readable => chan.recv_reply(),
                    Wait::HostEnded => Err(ProtoError::Closed),
                    Wait::TimedOut => Err(ProtoError::Io(std::io::ErrorKind::TimedOut.into())),
                });
        match result {
            Ok(r) => Ok(r),
            Err(ProtoError::Closed) => {
                // Mark it gone before the next caller gets the channel, then drop the channel.
                let how = link.mark_gone(req.name());
                *guard = None;
                Err(self.died(how))
            }
            Err(ProtoError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                let limit = deadline.map_or(Duration::ZERO, |(_, t)| t);
                link.kill(format!(
                    "host killed: no answer to {} within {limit:?}",
                    req.name()
                ));
                *guard = None;
                Err(Error::Timeout {
                    plugin: self.inner.plugin.clone(),
                    pid: link.pid,
                    what: req.name(),
                    timeout: limit,
                })
            }
            // The reply was whole, but the fds it carried did not fit in this process (its fd
            // limit): the channel is still in step.
            Err(ProtoError::FdsDropped) => Err(Error::Os {
                op: "recvmsg (SCM_RIGHTS)",
                source: std::io::Error::from_raw_os_error(libc::EMFILE),
            }),
            Err(e) => {
                link.kill(format!(
                    "host killed: protocol error in the reply to {}: {e}",
                    req.name()
                ));
                *guard = None;
                Err(Error::Protocol(e))
            }
        }
    }

    /// A reply of the wrong kind came: the channel is out of step, so the link is reset as on
    /// any protocol error (see the module doc).
    fn reset(&self, why: String) {
        if let Some(link) = self.link() {
            if link.foreign() {
                return;
            }
            let mut guard = link.chan.lock().unwrap_or_else(|e| e.into_inner());
            link.kill(why);
            *guard = None;
        }
    }

    /// Whether the stack's host is known to be gone (died, killed after a timeout, or deleted).
    /// A host that died since the last call is noticed by the next call, not here.
    pub fn is_gone(&self) -> bool {
        self.link().is_some_and(|l| l.gone.get().is_some())
    }

    /// The file of the stack's audit trail, if it has one ([`StackBuilder::audit`]).
    pub fn audit_file(&self) -> Option<&Path> {
        self.link().and_then(|l| l.audit.as_deref())
    }

    /// A socket on this stack, as socket(2) (`ioth_msocket`): `SOCK_NONBLOCK` and `SOCK_CLOEXEC`
    /// in `ty` are honoured. On a stack with proxied fds (a user-space stack, docs/proxied.md)
    /// the socket's control calls go to the host: use the [`Socket`] methods.
    pub fn msocket(&self, domain: i32, ty: i32, protocol: i32) -> Result<Socket> {
        if self.link().is_none() {
            let fd = sys::socket(domain, ty, protocol).map_err(|source| Error::Os {
                op: "socket",
                source,
            })?;
            return Ok(Socket::new(fd, Hold::new(&self.inner)));
        }
        let req = Request::Socket {
            domain,
            ty,
            protocol,
        };
        let (kind, fd) = match self.call(&req, None)? {
            (Reply::Socket { kind }, mut fds) => {
                (kind, fds.pop().expect("fd count checked by recv_reply"))
            }
            (other, _) => return Err(self.unexpected("Socket", other)),
        };
        // The fd arrived close-on-exec (MSG_CMSG_CLOEXEC): as socket(2), keep that only if asked.
        let flag_err = |op| {
            move |e: nix::errno::Errno| Error::Os {
                op,
                source: e.into(),
            }
        };
        if ty & libc::SOCK_CLOEXEC == 0 {
            nix::fcntl::fcntl(
                &fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            )
            .map_err(flag_err("fcntl(F_SETFD)"))?;
        }
        match kind {
            FdKind::Native => Ok(Socket::new(fd, Hold::new(&self.inner))),
            FdKind::Proxied { id } => {
                // The proxy first: if anything below fails, its drop closes the socket on the
                // host.
                let proxy = Proxy::new(self.clone(), id, domain, ty);
                if ty & libc::SOCK_NONBLOCK != 0 {
                    crate::socket::set_nonblocking(fd.as_fd(), true).map_err(|source| {
                        Error::Os {
                            op: "fcntl(O_NONBLOCK)",
                            source,
                        }
                    })?;
                }
                Ok(Socket::proxied(fd, Hold::new(&self.inner), proxy))
            }
        }
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
    pub(crate) fn accept_proxied(&self, id: u64) -> Result<(OwnedFd, u64, Vec<u8>)> {
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
    pub(crate) fn close_proxied(&self, id: u64) -> Result<()> {
        match self.call(&Request::Close { id }, None)? {
            (Reply::Closed, _) => Ok(()),
            (other, _) => Err(self.unexpected("Closed", other)),
        }
    }

    /// The host's namespace of kind `kind` (`/proc/<host>/ns/net` or `…/user`), as an fd for
    /// `setns(2)`: how `ioth-run` runs a program inside a native-namespace stack (vdestack). The
    /// native stack has no host: [`Error::InvalidArgument`].
    pub fn namespace(&self, kind: ioth_proto::NsKind) -> Result<OwnedFd> {
        match self.call(&Request::Namespace { kind }, None)? {
            (Reply::Namespace, mut fds) => Ok(fds.pop().expect("fd count checked by recv_reply")),
            (other, _) => Err(self.unexpected("Namespace", other)),
        }
    }

    /// A socket with socket2's typed arguments.
    pub fn socket(
        &self,
        domain: socket2::Domain,
        ty: socket2::Type,
        protocol: Option<socket2::Protocol>,
    ) -> Result<Socket> {
        self.msocket(domain.into(), ty.into(), protocol.map_or(0, Into::into))
    }

    /// Usage figures of the stack's host.
    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats {
            open_sockets: self.open_sockets(),
            ..Stats::default()
        };
        let Some(link) = self.link() else {
            return Ok(s);
        };
        match self.call(&Request::Stats, None)? {
            (Reply::Stats(h), _) => {
                s.requests = h.requests;
                s.sockets_created = h.sockets_created;
                s.protections = h.protections;
            }
            (other, _) => return Err(self.unexpected("Stats", other)),
        }
        let kb_field = |text: &str, key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024)
        };
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", link.pid)) {
            s.rss_bytes = kb_field(&status, "VmRSS:");
        }
        if let Ok(smaps) = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", link.pid)) {
            s.pss_bytes = kb_field(&smaps, "Pss:");
        }
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{}/fd", link.pid)) {
            s.host_fds = dir.count();
        }
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", link.pid)) {
            // Fields after the parenthesised comm: utime and stime are the 12th and 13th.
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
                    + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
                let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
                    .ok()
                    .flatten()
                    .unwrap_or(100) as u64;
                s.cpu_time = Duration::from_millis(ticks * 1000 / hz.max(1));
            }
        }
        Ok(s)
    }

    /// Deletes the stack (`ioth_delstack`): fails with [`Error::Busy`] while sockets are open,
    /// handing the stack back. A stack whose host already died (or was killed after a timeout,
    /// this `DelStack` included) is deleted without error. The host is reaped before this
    /// returns.
    pub fn delete(self) -> std::result::Result<(), (Stack, Error)> {
        let open = self.open_sockets();
        if open > 0 {
            let e = Error::Busy {
                plugin: self.inner.plugin.clone(),
                open,
            };
            return Err((self, e));
        }
        let Some(link) = self.link() else {
            return Ok(());
        };
        if link.foreign() {
            // A fork's copy: the stack stays the parent's.
            return Ok(());
        }
        if link.gone.get().is_none() {
            match self.call(&Request::DelStack, None) {
                Ok((Reply::Deleted, _)) => {
                    let _ = link.gone.set("deleted by delstack".into());
                    link.reap(Duration::from_secs(2));
                }
                Ok((other, _)) => {
                    let e = self.unexpected("Deleted", other);
                    return Err((self, e));
                }
                Err(Error::StackDied { .. } | Error::Timeout { .. }) => {}
                Err(e) => return Err((self, e)),
            }
        }
        Ok(())
    }
}

/// Usage figures of one stack ([`Stack::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests the host has served.
    pub requests: u64,
    /// Sockets the host has created.
    pub sockets_created: u64,
    /// Sockets open now in this application.
    pub open_sockets: usize,
    /// Resident memory of the host, in bytes (VmRSS: shared pages counted in full).
    pub rss_bytes: u64,
    /// Proportional resident memory of the host, in bytes (Pss: shared pages divided among the
    /// processes that share them); 0 where the kernel does not report it.
    pub pss_bytes: u64,
    /// File descriptors the host has open.
    pub host_fds: usize,
    /// CPU time (user + system) the host has used.
    pub cpu_time: Duration,
    /// The host's protections in force (bits of [`ioth_proto::protections`], names in
    /// `ioth_proto::protections::NAMES`; docs/security.md). 0 for the native stack.
    pub protections: u32,
}

impl Drop for HostLink {
    fn drop(&mut self) {
        if self.foreign() {
            // A fork's copy: closing our copy of the channel leaves the parent's open; the host
            // is not our child, so nothing to reap (and never to kill).
            let _ = self.child.get_mut().map(Option::take);
            return;
        }
        // Closing the channel tells the host to exit; then reap it.
        drop(
            self.chan
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        self.reap(Duration::from_secs(2));
    }
}
