//! Named network namespaces standing in for machines, for the scale-out tests.
//!
//! [`Machines::new`] creates two namespaces (`ip netns add ioth-<tag>-a-<pid>-<n>` and `-b-…`),
//! joins them with a veth pair created from inside the first (`ip -n <a> link add … peer … netns
//! <b>`, so the pair never exists in the machine's own namespace), puts a private address on each
//! end (inside its namespace) and brings the ends and `lo` up. [`NetNs::run_in`] runs a closure
//! in a thread that has joined a namespace (`setns(CLONE_NEWNET)` is per thread), which is how a
//! test plays "an application on that machine".
//!
//! Nothing here touches the root namespace's interfaces. Drop deletes the namespaces (on failure
//! too); the veth pair dies with them. Every command is one bounded `ip` invocation.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `cmd`; its stdout, or a message with its stderr.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A named network namespace (`/run/netns/<name>`), deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// `ip netns add <name>`. Panics on failure.
    pub fn add(name: &str) -> NetNs {
        run(Command::new("ip").args(["netns", "add", name]))
            .unwrap_or_else(|e| panic!("cannot create netns {name}: {e}"));
        NetNs {
            name: name.to_owned(),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its bind mount, `/run/netns/<name>`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// The namespace's inode (what `/proc/<pid>/ns/net` of a process in it shows).
    pub fn inode(&self) -> u64 {
        std::fs::metadata(self.path())
            .unwrap_or_else(|e| panic!("{}: {e}", self.path().display()))
            .ino()
    }

    /// `ip -n <name> <args>`: its stdout, or a message.
    pub fn try_ip(&self, args: &[&str]) -> Result<String, String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// `ip -n <name> <args>`; panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        self.try_ip(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `ip netns exec <name> <cmd…>` (a mount namespace of its own with this namespace's
    /// `/sys`): its stdout, or a message.
    pub fn exec(&self, cmd: &[&str]) -> Result<String, String> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd))
    }

    /// A counter of `/sys/class/net/<ifname>/statistics/` (`rx_bytes`, `tx_packets`, …) as seen
    /// inside this namespace.
    pub fn if_stat(&self, ifname: &str, counter: &str) -> u64 {
        let path = format!("/sys/class/net/{ifname}/statistics/{counter}");
        let text = self.exec(&["cat", &path]).unwrap_or_else(|e| panic!("{e}"));
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{path} in {}: {text:?}: {e}", self.name))
    }

    /// Runs `f` in a new thread that has joined this namespace (`setns(CLONE_NEWNET)` on the
    /// thread only; the rest of the process stays where it is) and returns its result. A panic
    /// in `f` is propagated.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let ns =
            File::open(self.path()).unwrap_or_else(|e| panic!("{}: {e}", self.path().display()));
        let inode = self.inode();
        std::thread::scope(|s| {
            s.spawn(move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns: {e}"));
                drop(ns);
                let own = std::fs::metadata("/proc/thread-self/ns/net")
                    .expect("/proc/thread-self/ns/net")
                    .ino();
                assert_eq!(own, inode, "the thread did not join the namespace");
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// Two "machines": namespaces `a` and `b` joined by a veth pair whose ends are both called
/// [`Machines::VETH`], `a` at [`Machines::ADDR_A`] and `b` at [`Machines::ADDR_B`] (/24).
#[derive(Debug)]
pub struct Machines {
    /// The first machine.
    pub a: NetNs,
    /// The second machine.
    pub b: NetNs,
}

impl Machines {
    /// The name of the veth end in each namespace.
    pub const VETH: &'static str = "so0";
    /// The address of `a`'s veth end.
    pub const ADDR_A: &'static str = "10.77.0.1";
    /// The address of `b`'s veth end.
    pub const ADDR_B: &'static str = "10.77.0.2";

    /// Creates the namespaces `ioth-<tag>-a-<pid>-<n>` and `…-b-…`, the veth pair and the
    /// addresses; `lo` and the veth ends are up. Panics on failure (what was created is
    /// deleted).
    pub fn new(tag: &str) -> Machines {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let a = NetNs::add(&format!("ioth-{tag}-a-{pid}-{n}"));
        let b = NetNs::add(&format!("ioth-{tag}-b-{pid}-{n}"));
        let m = Machines { a, b };
        let veth = Machines::VETH;
        // Created inside `a`, its peer created directly inside `b`.
        m.a.ip(&[
            "link",
            "add",
            veth,
            "type",
            "veth",
            "peer",
            "name",
            veth,
            "netns",
            m.b.name(),
        ]);
        for (ns, addr) in [(&m.a, Machines::ADDR_A), (&m.b, Machines::ADDR_B)] {
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", veth]);
            ns.ip(&["link", "set", "lo", "up"]);
            ns.ip(&["link", "set", veth, "up"]);
        }
        m
    }
}
