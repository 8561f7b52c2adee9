//! CPU placement of the bench and of the processes it talks to (sched_setaffinity(2)).
//!
//! A round trip between two processes costs very different amounts when both sit on one CPU
//! (a context switch) and when they sit on two (a cross-CPU wake-up, dear in a VM). Scenarios
//! that measure round trips state the placement instead of leaving it to the scheduler.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// Where the bench and its peer processes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Wherever the scheduler puts them (the affinity the bench started with).
    Unpinned,
    /// The bench thread and the peers on one CPU.
    SameCpu,
    /// The bench thread on one CPU, the peers on another.
    OtherCpu,
}

impl Placement {
    /// A short label for report rows.
    pub fn label(self) -> &'static str {
        match self {
            Placement::Unpinned => "unpinned",
            Placement::SameCpu => "same CPU",
            Placement::OtherCpu => "other CPU",
        }
    }
}

/// The affinity the bench started with and the CPUs it may use.
pub struct Cpus {
    original: CpuSet,
    allowed: Vec<usize>,
}

fn only(cpu: usize) -> CpuSet {
    let mut s = CpuSet::new();
    s.set(cpu).expect("cpu index");
    s
}

impl Cpus {
    /// Reads this thread's affinity.
    pub fn new() -> Cpus {
        let original = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
        let allowed = (0..CpuSet::count())
            .filter(|&c| original.is_set(c).unwrap_or(false))
            .collect();
        Cpus { original, allowed }
    }

    /// The placements this machine allows (`OtherCpu` needs two CPUs).
    pub fn placements(&self) -> Vec<Placement> {
        let mut v = vec![Placement::Unpinned, Placement::SameCpu];
        if self.allowed.len() > 1 {
            v.push(Placement::OtherCpu);
        }
        v
    }

    /// Places the calling thread and the processes `peers`.
    pub fn place(&self, p: Placement, peers: &[u32]) {
        let (me, them) = match p {
            Placement::Unpinned => (self.original, self.original),
            Placement::SameCpu => (only(self.allowed[0]), only(self.allowed[0])),
            Placement::OtherCpu => (only(self.allowed[0]), only(self.allowed[1])),
        };
        sched_setaffinity(Pid::from_raw(0), &me).expect("sched_setaffinity self");
        for &pid in peers {
            sched_setaffinity(Pid::from_raw(pid as i32), &them).expect("sched_setaffinity peer");
        }
    }

    /// Gives the calling thread and `peers` back the original affinity.
    pub fn restore(&self, peers: &[u32]) {
        self.place(Placement::Unpinned, peers);
    }
}
