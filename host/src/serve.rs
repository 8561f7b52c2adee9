//! The request loop: one `dispatch` match calling one `handle_*` per request.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use ioth_proto::{
    Channel, FdKind, ProtoError, Reply, Request, StackStats, WireError, PROTO_VERSION,
};

use crate::plugin::{self, Plugin};

/// Where the host is in its life.
enum State {
    /// Waiting for `Hello`.
    Greeting,
    /// Waiting for `NewStack`.
    Loading,
    /// Serving the stack.
    Serving(Plugin),
}

/// What to do after a reply is sent.
enum After {
    Continue,
    Exit(u8),
}

/// One host: its channel, its state and its figures.
pub struct Host {
    chan: Channel,
    own_dir: Option<PathBuf>,
    state: State,
    stats: StackStats,
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
        }
    }

    /// Serves until the application goes away.
    pub fn run(&mut self) -> ExitCode {
        loop {
            let (req, fds) = match self.chan.recv::<Request>() {
                Ok(m) => m,
                Err(ProtoError::Closed) => return ExitCode::SUCCESS,
                Err(ProtoError::Io(e)) => {
                    eprintln!("ioth-host: channel: {e}");
                    return ExitCode::from(1);
                }
                Err(e) => {
                    // A malformed request: say so and keep serving.
                    if self
                        .send(&Reply::Error(proto_err(e.to_string())), None)
                        .is_err()
                    {
                        return ExitCode::from(1);
                    }
                    continue;
                }
            };
            if !fds.is_empty() {
                drop(fds);
                let e = proto_err(format!("request {} carries no fds", req.name()));
                if self.send(&Reply::Error(e), None).is_err() {
                    return ExitCode::from(1);
                }
                continue;
            }
            let (reply, fd, after) = self.dispatch(req);
            self.stats.requests += 1;
            if self.send(&reply, fd.as_ref().map(|f| f.as_fd())).is_err() {
                return ExitCode::from(1);
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
        match (&self.state, req) {
            (State::Greeting, Request::Hello { version }) => self.handle_hello(version),
            (
                State::Loading,
                Request::NewStack {
                    plugin,
                    vnls,
                    search_path,
                    app_license,
                },
            ) => self.handle_newstack(&plugin, &vnls, &search_path, app_license.as_deref()),
            (
                State::Serving(p),
                Request::Socket {
                    domain,
                    ty,
                    protocol,
                },
            ) => match p.socket(domain, ty, protocol) {
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
            },
            (State::Serving(_), Request::Stats) => ok(Reply::Stats(self.stats)),
            (State::Serving(p), Request::DelStack) => match p.delstack() {
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

    fn handle_newstack(
        &mut self,
        name: &str,
        vnls: &[String],
        search_path: &[String],
        app_license: Option<&str>,
    ) -> (Reply, Option<std::os::fd::OwnedFd>, After) {
        let search: Vec<PathBuf> = search_path.iter().map(PathBuf::from).collect();
        let result = plugin::find(name, &search, self.own_dir.as_deref())
            .and_then(|path| plugin::load(&path, name, vnls, app_license).map(|p| (path, p)));
        match result {
            Ok((path, p)) => {
                let reply = Reply::StackReady {
                    plugin_path: path.display().to_string(),
                    license: p.license.clone(),
                };
                self.state = State::Serving(p);
                (reply, None, After::Continue)
            }
            Err(e) => (Reply::Error(e), None, After::Exit(1)),
        }
    }
}
