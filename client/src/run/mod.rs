//! Unmodified programs on a stack: what `ioth-run` and `ioth_run` do (docs/run.md).
//!
//! [`Command`] starts a program whose sockets are the stack's:
//!
//! - **native-namespace stacks** (vdestack): the program runs inside the host's network
//!   namespace, and its user namespace when the host made one ([`Stack::namespace`]); every
//!   socket, raw sockets and netlink included, is then a kernel socket of the stack, and static
//!   binaries work. A stack whose host shares our network namespace (`kernel`), and the native
//!   stack, need nothing: the program runs as it is.
//! - **proxied stacks** (smoltcp): the program runs with the preload library
//!   (`libioth_preload.so`) in `LD_PRELOAD`, which sends its `AF_INET`, `AF_INET6`,
//!   `AF_PACKET` and `AF_NETLINK`/`NETLINK_ROUTE` sockets to this process (the `serve` module), which
//!   makes them on the stack. A statically linked program would bypass it and use the machine's
//!   network: it is refused (`ENOEXEC`) before it starts. Where it may (root), the program
//!   also runs in an empty network namespace of its own, so that sockets the preload cannot see
//!   (those libc makes inside itself: its DNS resolver, `getifaddrs`) reach nothing rather than
//!   the machine's network; its loopback has a DNS forwarder that relays the resolver's queries
//!   through the stack (`client/src/run/dns.rs`).
//!
//! [`Command::resolv_conf`] gives the program a private `/etc/resolv.conf` (a bind mount in a
//! mount namespace of its own), so that its resolver asks the stack's DNS server.
#![allow(unsafe_code)]

mod config;
mod dhcp;
mod dns;
mod elf;
mod serve;

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

pub use config::{Config, ConfigItem};

use crate::{Error, Result, Stack};

/// An unmodified program to run on a stack (see the module doc).
#[derive(Debug, Clone)]
pub struct Command {
    stack: Stack,
    program: OsString,
    args: Vec<OsString>,
    resolv_conf: Option<String>,
    die_with_parent: bool,
}

/// A program started by [`Command::spawn`].
#[derive(Debug)]
pub struct Child {
    child: std::process::Child,
    /// The serving thread (proxied stacks): it ends once the program has ended and every
    /// socket of it is released.
    server: Option<std::thread::JoinHandle<()>>,
    /// The rendezvous directory of the serving thread (proxied stacks).
    rendezvous: Option<PathBuf>,
}

/// How the program reaches the stack.
enum Mode {
    /// Its own network is the stack's already.
    AsIs,
    /// Enter these namespaces (user first).
    Enter { user: Option<OwnedFd>, net: OwnedFd },
    /// The preload library.
    Preload,
}

fn os(op: &'static str) -> impl Fn(io::Error) -> Error {
    move |source| Error::Os { op, source }
}

/// Whether `a` and `b` are the same file (namespace files compare so).
fn same_file(a: &OwnedFd, b: &OwnedFd) -> io::Result<bool> {
    let (sa, sb) = (nix::sys::stat::fstat(a)?, nix::sys::stat::fstat(b)?);
    Ok(sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino)
}

fn own_namespace(kind: ioth_proto::NsKind) -> io::Result<OwnedFd> {
    Ok(std::fs::File::open(format!("/proc/self/ns/{}", kind.name()))?.into())
}

/// How a program reaches `stack`.
fn mode(stack: &Stack) -> Result<Mode> {
    use ioth_proto::NsKind;
    if stack.pid().is_none() {
        return Ok(Mode::AsIs);
    }
    let probe = stack.msocket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)?;
    if probe.is_proxied() {
        return Ok(Mode::Preload);
    }
    drop(probe);
    let net = stack.namespace(NsKind::Net)?;
    if same_file(
        &net,
        &own_namespace(NsKind::Net).map_err(os("open /proc/self/ns/net"))?,
    )
    .map_err(os("fstat"))?
    {
        return Ok(Mode::AsIs);
    }
    let user = stack.namespace(NsKind::User)?;
    let user = if same_file(
        &user,
        &own_namespace(NsKind::User).map_err(os("open /proc/self/ns/user"))?,
    )
    .map_err(os("fstat"))?
    {
        None
    } else {
        Some(user)
    };
    Ok(Mode::Enter { user, net })
}

/// The file `program` names, as execvp(3) would find it.
fn resolve(program: &OsStr) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The preload library: `IOTH_PRELOAD`, else next to the host binary.
fn preload_library() -> Result<PathBuf> {
    if let Some(p) = crate::env::var_os("IOTH_PRELOAD").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let host = crate::locate::host_binary()?;
    let dir = host.canonicalize().unwrap_or(host);
    let lib = dir
        .parent()
        .map(|d| d.join("libioth_preload.so"))
        .unwrap_or_default();
    if lib.is_file() {
        Ok(lib)
    } else {
        Err(Error::Stack {
            errno: libc::ENOENT,
            message: format!(
                "the preload library {} is missing; set IOTH_PRELOAD to its path",
                lib.display()
            ),
        })
    }
}

impl Command {
    /// `program` (searched in `PATH` as execvp(3) does) on `stack`.
    pub fn new(stack: &Stack, program: impl AsRef<OsStr>) -> Command {
        Command {
            stack: stack.clone(),
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            resolv_conf: None,
            die_with_parent: false,
        }
    }

    /// The program gets `SIGTERM` if the thread that spawned it ends (`PR_SET_PDEATHSIG`):
    /// what `ioth-run` wants, so that a runner killed with `SIGKILL` leaves no program behind.
    pub fn die_with_parent(&mut self, on: bool) -> &mut Command {
        self.die_with_parent = on;
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&mut self, args: I) -> &mut Command {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// The program sees `text` as `/etc/resolv.conf` (a bind mount in a private mount
    /// namespace: needs `CAP_SYS_ADMIN`, i.e. root, or a user namespace of the stack's host).
    pub fn resolv_conf(&mut self, text: &str) -> &mut Command {
        self.resolv_conf = Some(text.to_owned());
        self
    }

    /// Starts the program. Fails with `ENOEXEC` for a statically linked program on a proxied
    /// stack, and with the errno of whatever else failed (entering the namespaces, the mount,
    /// the exec).
    pub fn spawn(&self) -> Result<Child> {
        let mode = mode(&self.stack)?;
        let mut cmd = std::process::Command::new(&self.program);
        cmd.args(&self.args);
        let mut rendezvous = None;
        let mut isolation = None;
        if let Mode::Preload = mode {
            let path = resolve(&self.program).ok_or_else(|| Error::Stack {
                errno: libc::ENOENT,
                message: format!("{}: command not found", Path::new(&self.program).display()),
            })?;
            elf::check_dynamic(&path)?;
            let lib = preload_library()?;
            let rv = serve::Rendezvous::new().map_err(os("the runner's socket"))?;
            let mut preload = lib.into_os_string();
            if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|o| !o.is_empty()) {
                preload.push(":");
                preload.push(old);
            }
            cmd.env("LD_PRELOAD", preload);
            cmd.env(ioth_proto::run::RUN_SOCKET_ENV, &rv.path);
            rendezvous = Some(rv);
            // The empty network namespace, with the DNS forwarder's sockets in it; without the
            // privilege for one the program runs in ours (docs/run.md).
            isolation = dns::Isolation::new().ok();
        }
        // On a proxied stack libc's resolver cannot reach the stack: it asks the forwarder on
        // the namespace's loopback, which relays to the servers named.
        let mut forward = None;
        let resolv_conf = match (&isolation, &self.resolv_conf) {
            (Some(_), Some(text)) => match dns::redirect(text) {
                Some((servers, text)) => {
                    forward = Some(servers);
                    Some(text)
                }
                None => Some(text.clone()),
            },
            (_, text) => text.clone(),
        };
        // The resolv.conf file lives in the rendezvous directory when there is one, else in
        // a private directory of its own.
        let mut resolv_dir = None;
        let mounts = match &resolv_conf {
            None => None,
            Some(text) => {
                let dir = match &rendezvous {
                    Some(rv) => rv.path.parent().map(Path::to_path_buf).unwrap_or_default(),
                    None => {
                        let d = serve::Rendezvous::new().map_err(os("a private directory"))?;
                        let p = d.path.parent().map(Path::to_path_buf).unwrap_or_default();
                        resolv_dir = Some(d);
                        p
                    }
                };
                let file = dir.join("resolv.conf");
                std::fs::write(&file, text).map_err(os("write resolv.conf"))?;
                std::fs::set_permissions(
                    &file,
                    std::os::unix::fs::PermissionsExt::from_mode(0o644),
                )
                .map_err(os("chmod resolv.conf"))?;
                // The program may run as another uid in a user namespace: it must reach the file.
                std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))
                    .map_err(os("chmod"))?;
                let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).ok();
                Some((
                    c(&file).ok_or_else(|| Error::InvalidArgument("NUL in a path".into()))?,
                    c(Path::new("/etc/resolv.conf")).unwrap_or_default(),
                ))
            }
        };
        let (user, net) = match &mode {
            Mode::Enter { user, net } => {
                (user.as_ref().map(|u| u.as_raw_fd()), Some(net.as_raw_fd()))
            }
            _ => (None, None),
        };
        let isolate = matches!(mode, Mode::Preload);
        let empty_net = isolation.as_ref().map(|i| i.ns.as_raw_fd());
        let pdeath = self.die_with_parent;
        if pdeath || isolate || user.is_some() || net.is_some() || mounts.is_some() {
            let root = c"/";
            let none = c"none";
            // SAFETY: the closure runs in the child between fork and exec: it only makes system
            // calls (prctl, setns, unshare, mount) on fds and C strings made before the fork, allocates
            // nothing and takes no lock, so it is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    let check = |r: libc::c_int| {
                        if r == 0 {
                            Ok(())
                        } else {
                            Err(io::Error::last_os_error())
                        }
                    };
                    if pdeath {
                        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM))?;
                    }
                    if let Some(u) = user {
                        check(libc::setns(u, libc::CLONE_NEWUSER))?;
                    }
                    if let Some(n) = net {
                        check(libc::setns(n, libc::CLONE_NEWNET))?;
                    }
                    // Sockets the preload cannot see (libc's own, inside getaddrinfo or
                    // getifaddrs; a static helper exec'd later) meet an empty network
                    // namespace, not the machine's network. Without the privilege for one
                    // the program runs in ours (docs/run.md).
                    if let Some(n) = empty_net {
                        check(libc::setns(n, libc::CLONE_NEWNET))?;
                    } else if isolate {
                        let _ = libc::unshare(libc::CLONE_NEWNET);
                    }
                    if let Some((src, dst)) = &mounts {
                        check(libc::unshare(libc::CLONE_NEWNS))?;
                        check(libc::mount(
                            none.as_ptr(),
                            root.as_ptr(),
                            std::ptr::null(),
                            libc::MS_REC | libc::MS_PRIVATE,
                            std::ptr::null(),
                        ))?;
                        check(libc::mount(
                            src.as_ptr(),
                            dst.as_ptr(),
                            std::ptr::null(),
                            libc::MS_BIND,
                            std::ptr::null(),
                        ))?;
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().map_err(|e| Error::Stack {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
            message: format!(
                "cannot start {}{}: {e}",
                Path::new(&self.program).display(),
                match (&mode, &self.resolv_conf) {
                    (Mode::Enter { .. }, _) => " in the stack's namespaces",
                    (_, Some(_)) => " with its own /etc/resolv.conf (a mount namespace)",
                    _ => "",
                }
            ),
        })?;
        drop(mode);
        let rendezvous_dir = rendezvous
            .as_ref()
            .and_then(|rv| rv.path.parent().map(Path::to_path_buf));
        let server = match rendezvous {
            None => {
                drop(resolv_dir);
                None
            }
            Some(rv) => {
                let shared = serve::Shared::new(&self.stack);
                let pidfd = crate::link::spawn::pidfd_open(child.id());
                // The forwarder ends with the serving thread: once the program and its
                // children have ended.
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                if let (Some(iso), Some(servers)) = (isolation, forward) {
                    let (stack, stop) = (self.stack.clone(), stop.clone());
                    std::thread::Builder::new()
                        .name("ioth-run-dns".into())
                        .spawn(move || dns::forward(iso, stack, servers, stop))
                        .map_err(os("start the DNS forwarder"))?;
                }
                Some(
                    std::thread::Builder::new()
                        .name("ioth-run-serve".into())
                        .spawn(move || {
                            serve::serve(shared, rv, pidfd);
                            stop.store(true, std::sync::atomic::Ordering::Release);
                        })
                        .map_err(os("start the serving thread"))?,
                )
            }
        };
        Ok(Child {
            child,
            server,
            rendezvous: rendezvous_dir,
        })
    }
}

impl Child {
    /// The program's pid.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the program to end (its sockets are released once no process holds them).
    ///
    /// Once it has ended, its processes can no longer join the stack (the serving thread
    /// accepts no more connections), so the rendezvous directory is removed here: a runner that
    /// exits right after `wait` does not leave it behind.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        let st = self.child.wait()?;
        if let Some(dir) = self.rendezvous.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(st)
    }

    /// Lets the program run on its own: the caller reaps it (waitpid). The serving thread goes
    /// on until the program has ended and its sockets are released.
    pub fn detach(self) -> u32 {
        let pid = self.child.id();
        drop(self.server);
        pid
    }

    /// Waits for the serving thread too (after [`Child::wait`]): every socket the program and
    /// its children made is then released.
    pub fn join(mut self) {
        if let Some(h) = self.server.take() {
            let _ = h.join();
        }
    }
}
