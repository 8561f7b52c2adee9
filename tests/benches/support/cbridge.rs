//! VDE's own C bridge as a reference for the vdestack frame pump: `unshare --net vde_plug
//! tap://<if> <vnl>` runs libvdeplug's C tap-to-VDE loop in a private network namespace of its
//! own (unshare execs vde_plug, so the child's pid is the bridge's). Interfaces are configured
//! with `ip` under `nsenter`, and sockets in that namespace are made by a thread that joined it
//! (`setns` is per thread; a socket stays in the namespace it was made in).
//!
//! Nothing touches the machine's own namespace. Drop kills the bridge by its pid and reaps it;
//! the namespace and its tap die with it.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ioth_tests::vde;

/// How long the bridge may take to create its tap.
const START: Duration = Duration::from_secs(5);

/// A `vde_plug tap://` bridge in a namespace of its own.
pub struct CBridge {
    child: Child,
    ifname: String,
}

impl CBridge {
    /// Starts the bridge of tap `ifname` to `vnl` and waits (bounded) for the tap to exist.
    pub fn start(ifname: &str, vnl: &str) -> Result<CBridge, String> {
        let child = Command::new("unshare")
            .arg("--net")
            .arg("vde_plug")
            .arg(format!("tap://{ifname}"))
            .arg(vnl)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("unshare --net vde_plug: {e}"))?;
        let mut b = CBridge {
            child,
            ifname: ifname.to_owned(),
        };
        let end = Instant::now() + START;
        loop {
            if let Ok(Some(st)) = b.child.try_wait() {
                return Err(format!("vde_plug tap://{ifname} {vnl} exited: {st}"));
            }
            // Our own namespace has no such tap: seeing it means vde_plug's namespace is there.
            if b.in_own_netns() && vde::try_ip(b.pid(), &["link", "show", ifname]).is_ok() {
                return Ok(b);
            }
            if Instant::now() > end {
                return Err(format!("vde_plug tap://{ifname}: no tap after {START:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether unshare has already moved the child to a namespace other than ours.
    fn in_own_netns(&self) -> bool {
        let ours = vde::netns_inode(std::process::id());
        let its = vde::netns_inode(self.pid());
        its.is_some() && its != ours
    }

    /// The bridge process (its namespace is the one to use).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Adds `cidr` to the tap and sets it up.
    pub fn configure(&self, cidr: &str) {
        vde::configure(self.pid(), &self.ifname, cidr);
    }

    /// Sets the tap's MTU.
    pub fn set_mtu(&self, mtu: u32) {
        vde::ip(
            self.pid(),
            &["link", "set", &self.ifname, "mtu", &mtu.to_string()],
        );
    }

    /// A socket made in the bridge's namespace.
    pub fn socket(&self, domain: i32, ty: i32) -> OwnedFd {
        let path = format!("/proc/{}/ns/net", self.pid());
        let ns = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        std::thread::scope(|s| {
            s.spawn(move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns: {e}"));
                let sock = socket2::Socket::new(
                    socket2::Domain::from(domain),
                    socket2::Type::from(ty | libc::SOCK_CLOEXEC),
                    None,
                )
                .unwrap_or_else(|e| panic!("socket: {e}"));
                OwnedFd::from(sock)
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Drop for CBridge {
    fn drop(&mut self) {
        // Child::kill signals this very pid (SIGKILL); wait reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
