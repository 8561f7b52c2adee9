//! The figures of a host process that `/proc` reports (memory, fds, CPU time), for
//! [`crate::Stack::stats`]. Runs in the application; a figure `/proc` does not give stays 0.

use std::time::Duration;

/// What `/proc/<pid>` says of one process.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcFigures {
    /// `VmRSS` of `status`, in bytes.
    pub(crate) rss_bytes: u64,
    /// `Pss` of `smaps_rollup`, in bytes.
    pub(crate) pss_bytes: u64,
    /// Entries of `fd/`.
    pub(crate) fds: usize,
    /// `utime` + `stime` of `stat`.
    pub(crate) cpu_time: Duration,
}

/// The value of the `key` line of a `/proc` file in `kB`, in bytes (0 if absent).
fn kb_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// User + system CPU time from the text of `/proc/<pid>/stat`, at `hz` ticks per second.
fn cpu_time(stat: &str, hz: u64) -> Duration {
    // Fields after the parenthesised comm: utime and stime are the 12th and 13th.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 1000 / hz.max(1))
}

/// The figures of process `pid`.
pub(crate) fn figures(pid: u32) -> ProcFigures {
    let mut p = ProcFigures::default();
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        p.rss_bytes = kb_field(&status, "VmRSS:");
    }
    if let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
        p.pss_bytes = kb_field(&smaps, "Pss:");
    }
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        p.fds = dir.count();
    }
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as u64;
        p.cpu_time = cpu_time(&stat, hz);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_and_missing_ones_are_zero() {
        let status = "Name:\tioth-host\nVmRSS:\t    2048 kB\n";
        assert_eq!(kb_field(status, "VmRSS:"), 2048 * 1024);
        assert_eq!(kb_field(status, "Pss:"), 0);
        // comm may hold spaces and parentheses: the fields start after the last ')'.
        let stat = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0";
        assert_eq!(cpu_time(stat, 100), Duration::from_secs(2));
        assert_eq!(cpu_time("garbage", 100), Duration::ZERO);
    }

    #[test]
    fn this_process_has_figures() {
        let p = figures(std::process::id());
        assert!(p.rss_bytes > 0 && p.fds > 0, "{p:?}");
    }
}
