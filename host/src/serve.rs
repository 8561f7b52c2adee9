//! The request loop: one `dispatch` match calling one `handle_*` per request, each served
//! request then written to the audit trail (if the stack has one).

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ioth_proto::{
    Channel, FdKind, Limits, NsKind, ProtoError, Reply, Request, StackStats, WireError,
    PROTO_VERSION,
};

use crate::audit::{self, Audit};
use crate::limits;
use crate::plugin::{self, DataPath, Plugin};
use crate::sandbox::{self, Protections, Relax};
use crate::sockets::Sockets;

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
}

/// The hook run once the stack exists ([`Host::on_stack_ready`]): confines the host, starts its
/// threads; the protections in force and a note on them for the audit trail.
type OnReady = Box<dyn FnOnce(&Relax) -> Result<(Protections, String), WireError>>;

/// What to do after a reply is sent.
enum After {
    Continue,
    Exit(u8),
}

/// A served request, as the audit trail records it.
struct Served {
    start: Duration,
    request: &'static str,
    args: String,
    reply: Reply,
    took: Duration,
}

/// One host: its channel, its state and its figures.
pub struct Host {
    chan: Channel,
    own_dir: Option<PathBuf>,
    state: State,
    stats: StackStats,
    /// The audit trail, once `NewStack` opened it.
    audit: Option<Audit>,
    /// Requests served before `NewStack` (the `Hello`), written once the trail is open.
    early: Vec<Served>,
    /// Run once the stack exists (see [`Host::on_stack_ready`]).
    on_ready: Option<OnReady>,
}

fn proto_err(message: String) -> WireError {
    WireError {
        errno: libc::EPROTO,
        message,
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
            early: Vec::new(),
            on_ready: None,
        }
    }

    /// Runs `f` once `NewStack` has succeeded, before its reply is sent; if `f` fails, so does
    /// the `NewStack` (and the host exits). Until then the host is single-threaded, so a plug-in
    /// may `unshare(CLONE_NEWUSER)` in its `newstack`.
    pub fn on_stack_ready(
        mut self,
        f: impl FnOnce(&Relax) -> Result<(Protections, String), WireError> + 'static,
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
        match (&mut self.audit, &self.state) {
            (Some(a), _) => {
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
                    let reply = Reply::Error(proto_err(e.to_string()));
                    if self.send(&reply, None).is_err() {
                        return ExitCode::from(1);
                    }
                    self.record(Served {
                        start,
                        request: "malformed",
                        args: "{}".into(),
                        reply,
                        took: Duration::ZERO,
                    });
                    continue;
                }
            };
            let start = audit::now();
            let t0 = Instant::now();
            let name = req.name();
            let args = if self.auditing() {
                audit::args_json(&req)
            } else {
                String::new()
            };
            let (mut reply, fd, mut after) = if fds.is_empty() {
                self.dispatch(req)
            } else {
                drop(fds);
                let e = proto_err(format!("request {name} carries no fds"));
                (Reply::Error(e), None, After::Continue)
            };
            self.stats.requests += 1;
            // Before the reply: once the application has it, the thread that created the stack
            // may end at once, and the hook must already have made the host independent of it.
            if let State::Serving(st) = &mut self.state {
                if let Some(relax) = st.relax.take() {
                    if let Some(f) = self.on_ready.take() {
                        match f(&relax) {
                            Ok((p, note)) => {
                                self.stats.protections = p;
                                if let Some(a) = &mut self.audit {
                                    a.note_sandbox(p, &note);
                                }
                            }
                            Err(e) => {
                                reply = Reply::Error(e);
                                after = After::Exit(1);
                            }
                        }
                    }
                }
            }
            if self.send(&reply, fd.as_ref().map(|f| f.as_fd())).is_err() {
                return ExitCode::from(1);
            }
            drop(fd);
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

    fn dispatch(&mut self, req: Request) -> (Reply, Option<std::os::fd::OwnedFd>, After) {
        let ok = |r: Reply| (r, None, After::Continue);
        match (&mut self.state, req) {
            (State::Greeting, Request::Hello { version }) => self.handle_hello(version),
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
                },
            ) => self.handle_newstack(
                &plugin,
                &options,
                &vnls,
                &search_path,
                app_license.as_deref(),
                &limits,
                audit.as_deref(),
            ),
            (
                State::Serving(st),
                Request::Socket {
                    domain,
                    ty,
                    protocol,
                },
            ) if st.plugin.path() == DataPath::Native => {
                match st.plugin.socket(domain, ty, protocol) {
                    Ok(fd) => {
                        self.stats.sockets_created += 1;
                        (
                            Reply::Socket {
                                kind: FdKind::Native,
                            },
                            Some(fd),
                            After::Continue,
                        )
                    }
                    Err(e) => ok(Reply::Error(e)),
                }
            }
            (
                State::Serving(st),
                Request::Socket {
                    domain,
                    ty,
                    protocol,
                },
            ) => match st.sockets.socket(domain, ty, protocol) {
                Ok((id, fd)) => {
                    self.stats.sockets_created += 1;
                    (
                        Reply::Socket {
                            kind: FdKind::Proxied { id },
                        },
                        Some(fd),
                        After::Continue,
                    )
                }
                Err(e) => ok(Reply::Error(e)),
            },
            (State::Serving(st), Request::Control { id, op }) => match st.sockets.control(id, op) {
                Ok((reply, fd)) => {
                    if fd.is_some() {
                        self.stats.sockets_created += 1;
                    }
                    (reply, fd, After::Continue)
                }
                Err(e) => ok(Reply::Error(e)),
            },
            (State::Serving(st), Request::Close { id }) => match st.sockets.close(id) {
                Ok(()) => ok(Reply::Closed),
                Err(e) => ok(Reply::Error(e)),
            },
            (State::Serving(_), Request::Stats) => ok(Reply::Stats(self.stats)),
            (State::Serving(_), Request::Namespace { kind }) => handle_namespace(kind),
            (State::Serving(st), Request::DelStack) => match st.plugin.delstack() {
                Ok(()) => (Reply::Deleted, None, After::Exit(0)),
                Err(e) => ok(Reply::Error(e)),
            },
            (state, req) => {
                let when = match state {
                    State::Greeting => "before Hello",
                    State::Loading => "before NewStack",
                    State::Serving(_) => "while serving",
                };
                ok(Reply::Error(proto_err(format!(
                    "request {} is not legal {when}",
                    req.name()
                ))))
            }
        }
    }

    fn handle_hello(&mut self, version: u32) -> (Reply, Option<std::os::fd::OwnedFd>, After) {
        if version != PROTO_VERSION {
            let e = ProtoError::Version {
                ours: PROTO_VERSION,
                theirs: version,
            };
            return (Reply::Error(proto_err(e.to_string())), None, After::Exit(1));
        }
        self.state = State::Loading;
        (
            Reply::Hello {
                version: PROTO_VERSION,
            },
            None,
            After::Continue,
        )
    }

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
    ) -> (Reply, Option<std::os::fd::OwnedFd>, After) {
        // The trail first (so that limits cannot prevent it), then the limits (so that they
        // bind the plug-in from its first instruction), then the plug-in.
        if let Some(path) = audit {
            if let Err(e) = plugin::check_name(name) {
                return (Reply::Error(e), None, After::Exit(1));
            }
            match Audit::open(path, name) {
                Ok(a) => self.audit = Some(a),
                Err(e) => return (Reply::Error(e), None, After::Exit(1)),
            }
        }
        if let Err(e) = limits::apply(limits) {
            return (Reply::Error(e), None, After::Exit(1));
        }
        let search: Vec<PathBuf> = search_path.iter().map(PathBuf::from).collect();
        let result = plugin::find(name, &search, self.own_dir.as_deref()).and_then(|path| {
            plugin::load(&path, name, options, vnls, app_license).map(|p| (path, p))
        });
        match result {
            Ok((path, p)) => {
                let sockets = match Sockets::new(&p) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = p.delstack();
                        return (
                            Reply::Error(crate::sockets::wire("cannot start the pump", e)),
                            None,
                            After::Exit(1),
                        );
                    }
                };
                let relax = match sandbox::declared(&path, name)
                    .map(|d| sandbox::parse_relax(&d, vnls, &path))
                {
                    None => Relax::default(),
                    Some(Ok(r)) => r,
                    Some(Err(e)) => return (Reply::Error(e), None, After::Exit(1)),
                };
                let reply = Reply::StackReady {
                    plugin_path: path.display().to_string(),
                    license: p.license.clone(),
                };
                self.state = State::Serving(Box::new(Serving {
                    plugin: p,
                    sockets,
                    relax: Some(relax),
                }));
                (reply, None, After::Continue)
            }
            Err(e) => (Reply::Error(e), None, After::Exit(1)),
        }
    }
}

/// [`Request::Namespace`]: the host's own namespace file, opened read-only (the application
/// enters it with `setns(2)`; the host itself never does). The sandbox allows it: a namespace
/// file is no path of a filesystem Landlock guards, and it is the host's own.
fn handle_namespace(kind: NsKind) -> (Reply, Option<std::os::fd::OwnedFd>, After) {
    let path = format!("/proc/self/ns/{}", kind.name());
    match std::fs::File::open(&path) {
        Ok(f) => (Reply::Namespace, Some(f.into()), After::Continue),
        Err(e) => (
            Reply::Error(WireError {
                errno: e.raw_os_error().unwrap_or(libc::EIO),
                message: format!("open {path}: {e}"),
            }),
            None,
            After::Continue,
        ),
    }
}
