//! VDE helpers for the tests: a switch in a private temp dir that is stopped and removed on drop
//! (on failure too), and `ip` run inside a stack's network namespace.
//!
//! Every wait is bounded. Nothing here touches the machine's own interfaces or namespace: `ip`
//! only runs under `nsenter --net=/proc/<host pid>/ns/net`, in the namespace of a vdestack host
//! the test created.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a switch may take to create its socket.
const SWITCH_START: Duration = Duration::from_secs(5);

pub use crate::tempdir::TempDir;

/// A VDE switch, `vde_plug null:// switch://<dir>/sw`, started for one test. Drop kills it by
/// its pid, reaps it and removes its directory.
#[derive(Debug)]
pub struct Switch {
    child: Child,
    dir: TempDir,
}

impl Switch {
    /// Starts a switch and waits (bounded) until its control socket accepts connections. Panics on failure.
    pub fn start() -> Switch {
        let dir = TempDir::new("vdesw");
        let sw = dir.path().join("sw");
        let child = Command::new("vde_plug")
            .arg("null://")
            .arg(format!("switch://{}", sw.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start vde_plug (Debian package vdeplug, see tests/scripts/deps.sh): {e}")
            });
        let mut s = Switch { child, dir };
        let ctl = sw.join("ctl");
        let deadline = Instant::now() + SWITCH_START;
        // Ready once its control socket accepts a connection: the socket file appears at bind(2),
        // a moment before listen(2), and a connection in between is refused.
        while std::os::unix::net::UnixStream::connect(&ctl).is_err() {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("vde_plug switch exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "switch {} not ready after {SWITCH_START:?}",
                sw.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        s
    }

    /// The switch's path (`<dir>/sw`).
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("sw")
    }

    /// The switch's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The VNL that connects to it: `vde://<dir>/sw`.
    pub fn vnl(&self) -> String {
        format!("vde://{}", self.path().display())
    }

    /// The switch process's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        // Child::kill signals this very pid (SIGKILL); wait reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `nsenter` command prefix for the network namespace of host `pid`.
fn nsenter(pid: u32) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/proc/{pid}/ns/net"));
    c
}

/// Runs `ip <args>` in the network namespace of host `pid`; its stdout, or its stderr as error.
pub fn try_ip(pid: u32, args: &[&str]) -> Result<String, String> {
    let out = nsenter(pid)
        .arg("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("nsenter: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {} in netns of {pid}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `ip <args>` in the network namespace of host `pid`; panics on failure.
pub fn ip(pid: u32, args: &[&str]) -> String {
    try_ip(pid, args).unwrap_or_else(|e| panic!("{e}"))
}

/// Adds `cidr` (`10.0.0.1/24`, `fd00::1/64`) to interface `ifname` of host `pid` and sets it
/// up. An IPv6 address goes through duplicate address detection, as users add it: it is usable
/// a second or two later (see [`crate::dad`]).
pub fn configure(pid: u32, ifname: &str, cidr: &str) {
    ip(pid, &["addr", "add", cidr, "dev", ifname]);
    ip(pid, &["link", "set", ifname, "up"]);
}

/// Interface names in the namespace of host `pid` (`ip -o link`).
pub fn links(pid: u32) -> Vec<String> {
    ip(pid, &["-o", "link"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

/// The inode of the network namespace of `pid`, if the process exists.
pub fn netns_inode(pid: u32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|m| m.ino())
}

/// Pids of the processes whose network namespace is `inode` (one scan of `/proc`).
pub fn processes_in_netns(inode: u64) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| netns_inode(p) == Some(inode))
        .collect()
}

/// Whether `pid` exists at all (a zombie counts: it was not reaped).
pub fn pid_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
