//! [`StackBuilder`]: the options of a new stack, and [`Stack::new`]/[`Stack::builder`], which
//! take them. Runs in the application: checks the arguments, starts the host ([`Link::start`]),
//! shakes hands and creates the stack within the newstack timeout.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ioth_proto::{Limits, Request};

use crate::defaults::license;
use crate::handle::StackCore;
use crate::link::Link;
use crate::{locate, Error, Result, Stack};

/// Default limit for a host to start its plug-in (`newstack`), overridden by
/// `IOTH_NEWSTACK_TIMEOUT` (milliseconds) and [`StackBuilder::timeout`].
pub const DEFAULT_NEWSTACK_TIMEOUT: Duration = Duration::from_secs(5);

/// A duration in milliseconds from the environment variable `var`.
fn env_ms(var: &str) -> Option<Duration> {
    crate::env::var(var)
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_millis)
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
    audit_interval: Option<Duration>,
    limits: Limits,
    fork_server: Option<bool>,
    socket_batch: Option<bool>,
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
            audit_interval: None,
            limits: Limits::default(),
            fork_server: None,
            socket_batch: None,
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

    /// The application licence for this stack (default: the one given to [`crate::set_license`]).
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

    /// How often the host's audit thread looks at this stack (its sockets, interfaces and
    /// counters: docs/audit.md), to the millisecond (at least 10 ms); `Duration::ZERO`: only at
    /// its start and end. Default: `IOTH_AUDIT_INTERVAL` (milliseconds) in the host's
    /// environment, else 1 s. Without a trail it changes nothing.
    pub fn audit_interval(mut self, every: Duration) -> StackBuilder {
        self.audit_interval = Some(every);
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

    /// Whether the host is forked by the application's fork server (`true`, the default unless
    /// `IOTH_NO_FORK_SERVER=1`: one `ioth-host --fork-server` per application, started on the
    /// first stack, forks each host, so that a stack costs no exec and no dynamic loading) or
    /// started with an exec of its own (`false`; the application then also holds a pidfd of
    /// the host, three fds per stack instead of two). The host runs the same either way.
    pub fn fork_server(mut self, yes: bool) -> StackBuilder {
        self.fork_server = Some(yes);
        self
    }

    /// Whether native sockets may be handed over in batches (`true`, the default unless
    /// `IOTH_SOCKET_BATCH=0`): when `msocket` asks again for a kind of socket (domain, type with
    /// its flags, protocol) it asked for before on this stack, the host sends several in one
    /// reply; the application keeps the others (close-on-exec) for the next `msocket`s of that
    /// kind, and closes them when the stack is deleted or dropped. A stack that makes one socket
    /// of a kind holds no spare. `false`: one request per socket. Proxied stacks always make
    /// their sockets one at a time.
    pub fn socket_batch(mut self, yes: bool) -> StackBuilder {
        self.socket_batch = Some(yes);
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
        let fork_server = self
            .fork_server
            .unwrap_or_else(crate::link::forkserver::default_on);
        let socket_batch = self.socket_batch.unwrap_or_else(|| {
            crate::env::var("IOTH_SOCKET_BATCH").is_none_or(|v| v.trim() != "0")
        });
        let hello = Request::Hello {
            version: ioth_proto::PROTO_VERSION,
        };
        let req = Request::NewStack {
            plugin: self.plugin.clone(),
            options: self.options.clone(),
            vnls: self.vnls.clone(),
            search_path: locate::plugin_search_path(),
            app_license: license,
            limits: self.limits,
            audit: audit_str,
            audit_interval_ms: self.audit_interval.map(|d| d.as_millis() as u64),
        };
        // Both queued before the host starts, so that it finds them at once.
        let link = Link::start(
            &self.plugin,
            &self.vnls,
            request_timeout,
            audit,
            fork_server,
            socket_batch,
            &[&hello, &req],
        )?;
        let deadline = Some((Instant::now() + timeout, timeout));
        link.handshake(deadline)?;
        Ok(Stack::from_core(StackCore::hosted(&self.plugin, link)))
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

impl Stack {
    /// A new stack of `plugin` with one interface per VNL (`ioth_newstackv`). With none:
    /// `Stack::builder(plugin).build()`.
    pub fn new<S: AsRef<str>>(plugin: &str, vnls: &[S]) -> Result<Stack> {
        StackBuilder::new(plugin).vnls(vnls).build()
    }

    /// A builder for a stack with options.
    pub fn builder(plugin: &str) -> StackBuilder {
        StackBuilder::new(plugin)
    }
}
