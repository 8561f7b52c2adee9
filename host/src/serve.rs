//! The request loop: one `dispatch` match calling one `handle_*` per request, each served
//! request then written to the audit trail (if the stack has one).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ioth_proto::{
    Channel, FdKind, Limits, NsKind, ProtoError, Reply, Request, StackStats, MAX_SOCKETS_BATCH,
    PROTO_VERSION,
};

use crate::audit::{self, Audit};
use crate::error::HostError;
use crate::limits;
use crate::monitor::Monitor;
use crate::observe::{self, Netlink};
use crate::plugin::{self, DataPath, Plugin};
use crate::sandbox::{self, Protections, Relax};
use crate::sockets::Sockets;
use crate::watchdog;

/// Where the host is in its life.
enum State {
    /// Waiting for `Hello`.
    Greeting,
    /// Waiting for `NewStack`.
    Loading,
    /// Serving the stack.
    Serving(Box<Serving>),
}

/// A stack being served: its plug-in and its proxied sockets.
struct Serving {
    plugin: Plugin,
    sockets: Sockets,
    /// What the plug-in declared it needs beyond the sandbox (until the sandbox is applied).
    relax: Option<Relax>,
    /// The limits applied, for the audit trail.
    limits: serde_json::Value,
}

/// The hook run once the stack exists ([`Host::on_stack_ready`]): confines the host, starts its
/// threads; the protections in force and a note on them for the audit trail.
type OnReady = Box<dyn FnOnce(&Relax) -> Result<(Protections, String), HostError>>;

/// What to do after a reply is sent.
enum After {
    Continue,
    Exit(u8),
}

/// The answer to one request: the reply, the fds that travel with it, what comes after.
struct Answer {
    reply: Reply,
    fds: Vec<OwnedFd>,
    after: After,
}

impl Answer {
    /// A reply without fd; the host goes on serving.
    fn ok(reply: Reply) -> Answer {
        Answer::with_fds(reply, Vec::new())
    }

    /// A reply with its fd; the host goes on serving.
    fn with_fd(reply: Reply, fd: OwnedFd) -> Answer {
        Answer::with_fds(reply, vec![fd])
    }

    /// A reply with its fds; the host goes on serving.
    fn with_fds(reply: Reply, fds: Vec<OwnedFd>) -> Answer {
        Answer {
            reply,
            fds,
            after: After::Continue,
        }
    }

    /// A failed request; the host goes on serving.
    fn error(e: HostError) -> Answer {
        Answer::ok(Reply::Error(e.into()))
    }

    /// A failure that ends the host once it is answered (the handshake, `NewStack`).
    fn fatal(e: HostError) -> Answer {
        Answer {
            reply: Reply::Error(e.into()),
            fds: Vec::new(),
            after: After::Exit(1),
        }
    }
}

impl From<Result<Reply, HostError>> for Answer {
    fn from(r: Result<Reply, HostError>) -> Answer {
        r.map_or_else(Answer::error, Answer::ok)
    }
}

/// A served request, as the audit trail records it.
struct Served {
    start: Duration,
    request: &'static str,
    args: serde_json::Value,
    reply: Reply,
    took: Duration,
}

/// One host: its channel, its state and its figures.
pub struct Host {
    chan: Channel,
    own_dir: Option<PathBuf>,
    state: State,
    stats: StackStats,
    /// The audit trail, once `NewStack` opened it (shared with the audit thread).
    audit: Option<Arc<Mutex<Audit>>>,
    /// The stack's audit thread and status socket ([`crate::monitor`]).
    monitor: Option<Monitor>,
    /// Requests served before `NewStack` (the `Hello`), written once the trail is open.
    early: Vec<Served>,
    /// Run once the stack exists (see [`Host::on_stack_ready`]).
    on_ready: Option<OnReady>,
    /// A duplicate of the channel for the watchdog ([`crate::watchdog`]), until it has one.
    watch: Option<std::io::Result<OwnedFd>>,
}

/// The channel to the application (a spare reads its process title there before serving).
impl AsFd for Host {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.chan.as_fd()
    }
}

impl Host {
    /// A host on `chan`, whose binary lives in `own_dir` (its default plug-in directory).
    pub fn new(chan: Channel, own_dir: Option<PathBuf>) -> Host {
        Host {
            chan,
            own_dir,
            state: State::Greeting,
            stats: StackStats::default(),
            audit: None,
            monitor: None,
            early: Vec::new(),
            on_ready: None,
            watch: None,
        }
    }

    /// The duplicate of the channel the watchdog waits on once the stack exists (an error to
    /// fail `NewStack` with if it could not be made).
    pub fn watchdog(mut self, watch: std::io::Result<OwnedFd>) -> Host {
        self.watch = Some(watch);
        self
    }

    /// Once `NewStack` has succeeded, before its reply: the hook ([`Host::on_stack_ready`],
    /// the sandbox) and what it confined, noted in the trail and the monitor; then the watchdog
    /// ([`crate::watchdog`]) — the audit thread for a native stack, started now, else a thread
    /// of its own — and the end of the parent-death signal. Whether the audit thread is still
    /// to start (after the reply). Nothing before the stack exists, and only once.
    fn make_ready(&mut self) -> Result<bool, HostError> {
        let State::Serving(st) = &mut self.state else {
            return Ok(false);
        };
        let Some(mut relax) = st.relax.take() else {
            return Ok(false);
        };
        if let Some(d) = self.monitor.as_ref().and_then(Monitor::status_dir) {
            relax.remove.push(d);
        }
        let Some(f) = self.on_ready.take() else {
            return Ok(false);
        };
        let (p, note) = f(&relax)?;
        self.stats.protections = p;
        if let Some(a) = &self.audit {
            a.lock()
                .unwrap_or_else(|e| e.into_inner())
                .note_sandbox(p, &note);
        }
        let mut later = false;
        if let Some(m) = &mut self.monitor {
            let limits = std::mem::take(&mut st.limits);
            m.protections(p, &note, sandbox::relax_json(&relax), limits);
            later = true;
        }
        if let Some(watch) = self.watch.take() {
            let watch = watch.map_err(|e| watchdog::thread_error("watchdog", e))?;
            match (&mut self.monitor, st.plugin.path()) {
                (Some(m), DataPath::Native) => {
                    m.start(Some(watch))
                        .map_err(|e| watchdog::thread_error("audit", e))?;
                    later = false;
                }
                _ => watchdog::spawn(watch)?,
            }
        }
        // From here on a stack may outlive the thread that created it: EOF on the channel
        // (and the watchdog) end the host, not the death of that thread.
        watchdog::parent_death_signal(0);
        Ok(later)
    }

    /// Runs `f` once `NewStack` has succeeded, before its reply is sent; if `f` fails, so does
    /// the `NewStack` (and the host exits). Until then the host is single-threaded, so a plug-in
    /// may `unshare(CLONE_NEWUSER)` in its `newstack`.
    pub fn on_stack_ready(
        mut self,
        f: impl FnOnce(&Relax) -> Result<(Protections, String), HostError> + 'static,
    ) -> Host {
        self.on_ready = Some(Box::new(f));
        self
    }

    /// Whether the request about to be served must be remembered for the audit trail: always
    /// before the stack exists (the trail may be opened by `NewStack`), then only with a trail.
    fn auditing(&self) -> bool {
        self.audit.is_some() || !matches!(self.state, State::Serving(_))
    }

    /// Writes `served` to the audit trail, or keeps it until the trail is open.
    fn record(&mut self, served: Served) {
        match (&self.audit, &self.state) {
            (Some(a), _) => {
                let mut a = a.lock().unwrap_or_else(|e| e.into_inner());
                for e in self.early.drain(..) {
                    a.record(e.start, e.request, &e.args, &e.reply, e.took);
                }
                a.record(
                    served.start,
                    served.request,
                    &served.args,
                    &served.reply,
                    served.took,
                );
            }
            (None, State::Serving(_)) => self.early.clear(),
            (None, _) => self.early.push(served),
        }
    }

    /// The channel reached EOF: the application closed the stack without `DelStack`, or is gone.
    /// The host exits without calling the plug-in's `delstack`, as the original library does not
    /// at process exit: whatever the plug-in holds in this process (sockets, taps, namespaces)
    /// goes with it.
    fn on_eof(&mut self) -> ExitCode {
        if let Some(m) = &self.monitor {
            m.finish("eof");
        }
        ExitCode::SUCCESS
    }

    /// Serves until the application goes away.
    pub fn run(&mut self) -> ExitCode {
        loop {
            let (req, fds) = match self.chan.recv::<Request>() {
                Ok(m) => m,
                Err(ProtoError::Closed) => return self.on_eof(),
                Err(ProtoError::Io(e)) => {
                    eprintln!("ioth-host: channel: {e}");
                    return ExitCode::from(1);
                }
                Err(e) => {
                    // A malformed request: say so and keep serving.
                    let start = audit::now();
                    let reply = Reply::Error(HostError::Protocol(e.to_string()).into());
                    if self.send(&reply, None).is_err() {
                        return ExitCode::from(1);
                    }
                    self.record(Served {
                        start,
                        request: "malformed",
                        args: serde_json::json!({}),
                        reply,
                        took: Duration::ZERO,
                    });
                    continue;
                }
            };
            let start = audit::now();
            let t0 = Instant::now();
            let name = req.name();
            // Always: the monitor keeps the proxied table from them (`ioth ps`).
            let args = audit::args_json(&req);
            let Answer {
                mut reply,
                fds,
                mut after,
            } = if fds.is_empty() {
                self.dispatch(req)
            } else {
                drop(fds);
                Answer::error(HostError::Protocol(format!(
                    "request {name} carries no fds"
                )))
            };
            self.stats.requests += 1;
            // Before the reply: once the application has it, the thread that created the stack
            // may end at once, and the host must already be independent of it.
            let mut start_monitor = false;
            match self.make_ready() {
                Ok(later) => start_monitor = later,
                Err(e) => {
                    reply = Reply::Error(e.into());
                    after = After::Exit(1);
                }
            }
            if let Some(m) = &self.monitor {
                let proxied = match &reply {
                    Reply::Socket {
                        kind: FdKind::Native,
                    }
                    | Reply::Sockets { .. } => Some(None),
                    Reply::Socket {
                        kind: FdKind::Proxied { id },
                    }
                    | Reply::Accepted { id, .. } => Some(Some(*id)),
                    _ => None,
                };
                if let Some(p) = proxied {
                    for f in &fds {
                        if let Ok(st) = nix::sys::stat::fstat(f) {
                            m.handed(st.st_ino, p);
                        }
                    }
                }
            }
            let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
            if self.chan.send(&reply, &borrowed).is_err() {
                return ExitCode::from(1);
            }
            drop(borrowed);
            drop(fds);
            if start_monitor {
                if let Some(m) = &mut self.monitor {
                    if let Err(e) = m.start(None) {
                        eprintln!("ioth-host: cannot start the audit thread: {e}");
                    }
                }
            }
            if let Some(m) = &self.monitor {
                m.served(name, &args, &reply);
            }
            if self.auditing() {
                let took = t0.elapsed();
                self.record(Served {
                    start,
                    request: name,
                    args,
                    reply,
                    took,
                });
            }
            if let After::Exit(code) = after {
                if let Some(m) = &self.monitor {
                    m.finish(name);
                }
                // Exit without unloading the plug-in (no destructor runs under a live plug-in).
                std::process::exit(code.into());
            }
        }
    }

    fn send(
        &self,
        reply: &Reply,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<(), ProtoError> {
        let fds: Vec<_> = fd.into_iter().collect();
        self.chan.send(reply, &fds)
    }

    fn dispatch(&mut self, req: Request) -> Answer {
        match (&mut self.state, req) {
            (State::Greeting, Request::Hello { version }) => {
                self.handle_hello(version).unwrap_or_else(Answer::fatal)
            }
            (
                State::Loading,
                Request::NewStack {
                    plugin,
                    options,
                    vnls,
                    search_path,
                    app_license,
                    limits,
                    audit,
                    audit_interval_ms,
                },
            ) => self
                .handle_newstack(
                    &plugin,
                    &options,
                    &vnls,
                    &search_path,
                    app_license.as_deref(),
                    &limits,
                    audit.as_deref(),
                    audit_interval_ms,
                )
                .unwrap_or_else(Answer::fatal),
            (
                State::Serving(st),
                Request::Socket {
                    domain,
                    ty,
                    protocol,
                },
            ) => {
                let made = if st.plugin.path() == DataPath::Native {
                    st.plugin
                        .socket(domain, ty, protocol)
                        .map(|fd| (FdKind::Native, fd))
                } else {
                    st.sockets
                        .socket(domain, ty, protocol)
                        .map(|(id, fd)| (FdKind::Proxied { id }, fd))
                };
                match made {
                    Ok((kind, fd)) => {
                        self.stats.sockets_created += 1;
                        Answer::with_fd(Reply::Socket { kind }, fd)
                    }
                    Err(e) => Answer::error(e),
                }
            }
            (
                State::Serving(st),
                Request::Sockets {
                    domain,
                    ty,
                    protocol,
                    count,
                },
            ) => {
                let made = sockets_batch(&st.plugin, domain, ty, protocol, count);
                match made {
                    Ok(fds) => {
                        self.stats.sockets_created += fds.len() as u64;
                        let count = fds.len() as u32;
                        Answer::with_fds(Reply::Sockets { count }, fds)
                    }
                    Err(e) => Answer::error(e),
                }
            }
            (State::Serving(st), Request::Control { id, op }) => match st.sockets.control(id, op) {
                Ok((reply, fd)) => {
                    if fd.is_some() {
                        self.stats.sockets_created += 1;
                    }
                    Answer::with_fds(reply, fd.into_iter().collect())
                }
                Err(e) => Answer::error(e),
            },
            (State::Serving(st), Request::Close { id }) => {
                if let (Some(m), Some((sent, received))) = (&self.monitor, st.sockets.counters(id))
                {
                    m.proxied_bytes(id, sent, received);
                }
                Answer::from(st.sockets.close(id).map(|()| Reply::Closed))
            }
            (State::Serving(_), Request::Stats) => Answer::ok(Reply::Stats(self.stats)),
            (State::Serving(_), Request::Namespace { kind }) => handle_namespace(kind),
            (State::Serving(st), Request::DelStack) => {
                // A proxied stack answers the last look only while it exists.
                if let Some(m) = &self.monitor {
                    m.before_delstack();
                }
                match st.plugin.delstack() {
                    Ok(()) => Answer {
                        reply: Reply::Deleted,
                        fds: Vec::new(),
                        after: After::Exit(0),
                    },
                    Err(e) => Answer::error(e),
                }
            }
            (state, req) => {
                let when = match state {
                    State::Greeting => "before Hello",
                    State::Loading => "before NewStack",
                    State::Serving(_) => "while serving",
                };
                Answer::error(HostError::Protocol(format!(
                    "request {} is not legal {when}",
                    req.name()
                )))
            }
        }
    }

    fn handle_hello(&mut self, version: u32) -> Result<Answer, HostError> {
        if version != PROTO_VERSION {
            let e = ProtoError::Version {
                ours: PROTO_VERSION,
                theirs: version,
            };
            return Err(HostError::Protocol(e.to_string()));
        }
        self.state = State::Loading;
        Ok(Answer::ok(Reply::Hello {
            version: PROTO_VERSION,
        }))
    }

    /// Creates the stack; any failure ends the host once it is answered ([`Answer::fatal`]).
    // One argument per field of Request::NewStack.
    #[allow(clippy::too_many_arguments)]
    fn handle_newstack(
        &mut self,
        name: &str,
        options: &str,
        vnls: &[String],
        search_path: &[String],
        app_license: Option<&str>,
        limits: &Limits,
        audit: Option<&str>,
        audit_interval_ms: Option<u64>,
    ) -> Result<Answer, HostError> {
        // The trail first (so that limits cannot prevent it), then the limits (so that they
        // bind the plug-in from its first instruction), then the plug-in.
        if let Some(path) = audit {
            plugin::check_name(name)?;
            let mut a = Audit::open(path, name)?;
            a.event(
                audit::now(),
                "trail",
                serde_json::json!({"schema": audit::SCHEMA, "host": env!("CARGO_PKG_VERSION")}),
            );
            self.audit = Some(Arc::new(Mutex::new(a)));
        }
        limits::apply(limits)?;
        let search: Vec<PathBuf> = search_path.iter().map(PathBuf::from).collect();
        let found = plugin::find(name, &search, self.own_dir.as_deref())?;
        let p = plugin::load(&found, name, options, vnls, app_license)?;
        let sockets = Sockets::new(&p).map_err(|e| {
            let _ = p.delstack();
            HostError::call("cannot start the pump", e)
        })?;
        let relax = match p.sandbox_declaration() {
            None => Relax::undeclared(),
            Some(d) => {
                // `@plugin` is the directory of the plug-in's file: the host's for a built-in.
                let file = match &found {
                    plugin::Found::File(path) => path.clone(),
                    plugin::Found::Builtin(_) => {
                        crate::own_exe().map(Path::to_path_buf).unwrap_or_default()
                    }
                };
                sandbox::parse_relax(&d, vnls, &file)?
            }
        };
        let data_path = match p.path() {
            DataPath::Native => "native",
            DataPath::FdData => "fd-data",
            DataPath::HostPump => "host-pump",
        };
        let nl = match p.path() {
            DataPath::Native => Netlink::Kernel,
            // Asked through the plug-in's own sockets, opened now (before the sandbox, on the
            // serving thread, so never concurrently with another call into the plug-in).
            _ => Netlink::Plugin {
                diag: observe::plugin_netlink(&p, libc::NETLINK_SOCK_DIAG),
                route: observe::plugin_netlink(&p, libc::NETLINK_ROUTE),
            },
        };
        self.monitor = Some(Monitor::new(
            self.audit.clone(),
            name,
            vnls,
            data_path,
            nl,
            audit_interval_ms,
        ));
        let reply = Reply::StackReady {
            plugin_path: found.describe(),
            license: p.license.clone(),
        };
        self.state = State::Serving(Box::new(Serving {
            plugin: p,
            sockets,
            relax: Some(relax),
            limits: audit::limits_json(limits),
        }));
        Ok(Answer::ok(reply))
    }
}

/// [`Request::Sockets`]: up to `count` sockets from a native plug-in's socket(). The first that
/// fails fails the request (as [`Request::Socket`] would); a later failure ends the batch with
/// those already made. A proxied plug-in refuses it: each of its sockets needs its own id and
/// pump, made by [`Request::Socket`].
fn sockets_batch(
    plugin: &Plugin,
    domain: i32,
    ty: i32,
    protocol: i32,
    count: u32,
) -> Result<Vec<OwnedFd>, HostError> {
    if count == 0 || count > MAX_SOCKETS_BATCH {
        return Err(HostError::InvalidArgument(format!(
            "Sockets: count {count} (legal: 1 to {MAX_SOCKETS_BATCH})"
        )));
    }
    if plugin.path() != DataPath::Native {
        return Err(HostError::Os {
            errno: libc::EOPNOTSUPP,
            message: "Sockets: this stack's sockets are proxied, made one at a time by Socket"
                .into(),
        });
    }
    let mut fds = Vec::with_capacity(count as usize);
    fds.push(plugin.socket(domain, ty, protocol)?);
    while fds.len() < count as usize {
        match plugin.socket(domain, ty, protocol) {
            Ok(fd) => fds.push(fd),
            Err(_) => break,
        }
    }
    Ok(fds)
}

/// [`Request::Namespace`]: the host's own namespace file, opened read-only (the application
/// enters it with `setns(2)`; the host itself never does). The sandbox allows it: a namespace
/// file is no path of a filesystem Landlock guards, and it is the host's own.
fn handle_namespace(kind: NsKind) -> Answer {
    let path = format!("/proc/self/ns/{}", kind.name());
    match std::fs::File::open(&path) {
        Ok(f) => Answer::with_fd(Reply::Namespace, f.into()),
        Err(e) => Answer::error(HostError::Os {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
            message: format!("open {path}: {e}"),
        }),
    }
}
