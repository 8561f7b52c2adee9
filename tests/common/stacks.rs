//! Stacks for the end-to-end tests: address parsing, a kernel stack, a bare or configured
//! smoltcp or vdestack stack on a [`Switch`], and the rwwrap C plug-in (host pump) built once
//! per test binary with `IOTH_PLUGIN_PATH` pointing at it.
//!
//! smoltcp stacks are configured with the ioth netlink calls (the plug-in emulates rtnetlink),
//! vdestack stacks with `ip` in their namespace; IPv6 addresses with duplicate address detection,
//! as users add them (see [`crate::dad`]). Addresses exist only inside the stacks.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ioth::Stack;

use crate::vde::{self, Switch};

/// `IFA_F_NODAD`: an IPv6 address without duplicate address detection (only the test of that
/// flag uses it: every other test adds its addresses as users do, with DAD).
pub const IFA_F_NODAD: u32 = 0x02;

/// `IFA_F_TENTATIVE`: an IPv6 address still in duplicate address detection.
pub const IFA_F_TENTATIVE: u32 = 0x40;

/// `s` as a socket address; panics if it is not one.
pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// `s` as an IP address; panics if it is not one.
pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The address family of `a` (`AF_INET` or `AF_INET6`).
pub fn domain(a: &SocketAddr) -> i32 {
    if a.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    }
}

/// Configures interface `ifname` of smoltcp stack `s`: up, `v4`/24, `v6`/64, with the ioth
/// netlink calls (as on any stack; smoltcp does no duplicate address detection).
pub fn configure_smol(s: &Stack, ifname: &str, v4: &str, v6: &str) {
    let idx = s
        .if_nametoindex(ifname)
        .unwrap_or_else(|e| panic!("if_nametoindex {ifname}: {e}"));
    s.link_set_up(idx, true).expect("link up");
    s.ipaddr_add(ip(v4), 24, idx).expect("ipaddr_add v4");
    s.ipaddr_add(ip(v6), 64, idx).expect("ipaddr_add v6");
}

/// A stack of `plugin` on `sw` with `v4`/24 and `v6`/64 on vde0, configured as a program does
/// it, with the ioth netlink calls ([`configure_smol`], which works on any stack); no route
/// beyond its own networks.
pub fn configured(plugin: &str, sw: &Switch, v4: &str, v6: &str) -> Stack {
    let s = Stack::new(plugin, &[sw.vnl()]).unwrap_or_else(|e| panic!("newstack {plugin}: {e}"));
    configure_smol(&s, "vde0", v4, v6);
    s
}

/// A kernel stack (no VNL: the host's own network namespace).
pub fn kernel() -> Stack {
    Stack::new("kernel", &[] as &[&str]).expect("kernel stack")
}

/// A stack of `plugin` on `sw` with `vde0` up and nothing configured; its `vde0` index.
pub fn bare(plugin: &str, sw: &Switch) -> (Stack, u32) {
    let s = Stack::new(plugin, &[sw.vnl()]).unwrap_or_else(|e| panic!("newstack {plugin}: {e}"));
    let idx = s.if_nametoindex("vde0").expect("vde0");
    s.link_set_up(idx, true).expect("link up");
    (s, idx)
}

/// A smoltcp stack on `sw` with `v4`/24 and `v6`/64 on vde0 ([`configured`]).
pub fn smoltcp(sw: &Switch, v4: &str, v6: &str) -> Stack {
    configured("smoltcp", sw, v4, v6)
}

/// A vdestack stack on `sw` with `v4`/24 and `v6`/64 on vde0, configured with `ip` in its
/// namespace. `v6` is in duplicate address detection for a second or two: sockets that need it
/// wait with [`crate::dad::retry_unavailable`].
pub fn vdestack(sw: &Switch, v4: &str, v6: &str) -> Stack {
    let s =
        Stack::new("vdestack", &[sw.vnl()]).unwrap_or_else(|e| panic!("newstack vdestack: {e}"));
    let pid = s.pid().unwrap();
    vde::ip(pid, &["addr", "add", &format!("{v4}/24"), "dev", "vde0"]);
    vde::configure(pid, "vde0", &format!("{v6}/64"));
    s
}

/// Builds the rwwrap C plug-in (`tests/c/plugins/ioth_rwwrap.c`, host pump) with gcc into `dir`
/// and points `IOTH_PLUGIN_PATH` at `dir`, once per process (later calls do nothing), before
/// any stack exists: every test that may create a stack calls this first.
pub fn build_test_plugins(dir: &Path) {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        std::fs::create_dir_all(dir).expect("plug-in dir");
        let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
        let tmp = dir.join(format!(".ioth_rwwrap.so.{}", std::process::id()));
        let st = Command::new("gcc")
            .args([
                "-Wall", "-Wextra", "-Werror", "-O1", "-fPIC", "-shared", "-I",
            ])
            .arg(tests.join("../client/include"))
            .arg("-o")
            .arg(&tmp)
            .arg(tests.join("c/plugins/ioth_rwwrap.c"))
            .status()
            .expect("gcc (the host-pump tests build a C plug-in; install gcc)");
        assert!(st.success(), "gcc failed on ioth_rwwrap.c");
        std::fs::rename(&tmp, dir.join("ioth_rwwrap.so")).expect("rename plug-in");
        // Set once, before any stack exists; never changed afterwards.
        std::env::set_var("IOTH_PLUGIN_PATH", dir);
        dir.to_path_buf()
    });
}

/// A smoltcp stack (10.0.0.1/24, fd00::1/64) and a vdestack stack (10.0.0.2/24, fd00::2/64) on
/// one switch started for them. Fields drop in order: the stacks, then the switch.
pub struct Net {
    /// The smoltcp stack: 10.0.0.1, fd00::1.
    pub smol: Stack,
    /// The vdestack stack: 10.0.0.2, fd00::2.
    pub vde: Stack,
    _sw: Switch,
}

/// The two ends of a [`Net`], by kind.
#[derive(Clone, Copy, Debug)]
pub enum Side {
    /// The smoltcp stack.
    Smol,
    /// The vdestack stack.
    Vde,
}

impl Net {
    /// Starts a switch and the two stacks on it ([`smoltcp`], [`vdestack`]); no route beyond
    /// their own networks.
    pub fn start() -> Net {
        let sw = Switch::start();
        Net {
            smol: smoltcp(&sw, "10.0.0.1", "fd00::1"),
            vde: vdestack(&sw, "10.0.0.2", "fd00::2"),
            _sw: sw,
        }
    }

    /// The stack of side `s`.
    pub fn stack(&self, s: Side) -> &Stack {
        match s {
            Side::Smol => &self.smol,
            Side::Vde => &self.vde,
        }
    }

    /// The address of side `s`, IPv4 or IPv6, port `port`.
    pub fn at(&self, s: Side, v6: bool, port: u16) -> SocketAddr {
        let n = match s {
            Side::Smol => 1,
            Side::Vde => 2,
        };
        if v6 {
            addr(&format!("[fd00::{n}]:{port}"))
        } else {
            addr(&format!("10.0.0.{n}:{port}"))
        }
    }
}
