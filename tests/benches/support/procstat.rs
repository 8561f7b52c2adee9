//! Where the CPU went during a measurement: CPU time of processes, wake-ups of their threads,
//! packet counters of an interface in a process's network namespace, and the machine's busy
//! time. All read from `/proc`, before and after, never during the timed part.

use std::time::Duration;

fn clk_tck() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100, |v| v.max(1) as u64)
}

/// User + system CPU time of process `pid`, all its threads (finished ones included), from
/// `/proc/<pid>/stat`; zero if the process is gone. Resolution: one clock tick (10 ms).
pub fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // After the parenthesised comm, utime and stime are the 12th and 13th fields.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((field(11) + field(12)) * 1000 / clk_tck())
}

/// Voluntary context switches (sleeps: each one ends in a wake-up) of the live threads of
/// `pid` whose name starts with `prefix` (every thread for `""`).
pub fn wakeups(pid: u32, prefix: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut total = 0;
    // A process has a handful of threads; the loop ends with the directory.
    for task in dir.flatten() {
        let p = task.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

/// Counters of one interface.
#[derive(Debug, Clone, Copy, Default)]
pub struct IfCounters {
    /// Packets received by the stack (for a tap: written into it by its pump).
    pub rx: u64,
    /// Packets sent by the stack (for a tap: read out of it by its pump).
    pub tx: u64,
    /// Packets dropped in either direction.
    pub drops: u64,
}

impl IfCounters {
    /// `self - earlier`, counter by counter.
    pub fn minus(&self, earlier: &IfCounters) -> IfCounters {
        IfCounters {
            rx: self.rx.saturating_sub(earlier.rx),
            tx: self.tx.saturating_sub(earlier.tx),
            drops: self.drops.saturating_sub(earlier.drops),
        }
    }

    /// `self + other`, counter by counter.
    pub fn plus(&self, other: &IfCounters) -> IfCounters {
        IfCounters {
            rx: self.rx + other.rx,
            tx: self.tx + other.tx,
            drops: self.drops + other.drops,
        }
    }
}

/// Counters of interface `ifname` as seen in the network namespace of `pid`
/// (`/proc/<pid>/net/dev`); zero if there is no such interface.
pub fn if_counters(pid: u32, ifname: &str) -> IfCounters {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    for line in text.lines() {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        if name.trim() != ifname {
            continue;
        }
        let c: Vec<u64> = counters
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let at = |i: usize| c.get(i).copied().unwrap_or(0);
        // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets errs
        // drop …
        return IfCounters {
            rx: at(1),
            tx: at(9),
            drops: at(3) + at(11),
        };
    }
    IfCounters::default()
}

/// TCP segments retransmitted in the network namespace of `pid` (`RetransSegs` of
/// `/proc/<pid>/net/snmp`).
pub fn tcp_retransmits(pid: u32) -> u64 {
    net_counter(pid, "snmp", "Tcp:", "RetransSegs")
}

/// Counter `name` of section `section` (`"Tcp:"`, `"TcpExt:"`, …: a line of names, then one of
/// values) of `/proc/<pid>/net/<file>` (`snmp`, `netstat`), in the network namespace of `pid`;
/// zero if there is none.
pub fn net_counter(pid: u32, file: &str, section: &str, name: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(section)).collect();
    let [names, values] = lines[..] else { return 0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Busy and total time of all CPUs since boot (`/proc/stat`, first line), in clock ticks.
pub fn machine_ticks() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = text.lines().next().and_then(|l| l.strip_prefix("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = cpu
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is included in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}
