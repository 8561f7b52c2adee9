//! The proxy's own cost: the same TCP transfer and a small-message TCP ping-pong over 127.0.0.1
//! through plain sockets (the baseline), native fds of the `kernel` plug-in, and proxied fds of
//! the host-pump test plug-in `rwwrap` (`tests/c/plugins/ioth_rwwrap.c`: kernel sockets of this
//! machine, read and written with the plug-in's own functions, so that the host pumps every byte
//! between the application's socketpair end and the plug-in's socket, docs/proxied.md).
//!
//! - `proxy-cost-tcp`: one connection, 128 KiB writes, receiver in another thread;
//! - `proxy-cost-rtt`: a 32-byte message to an echo thread and back, `TCP_NODELAY` both ends.
//!
//! The rwwrap plug-in is built with gcc into a temp dir (`IOTH_PLUGIN_PATH`); without gcc its
//! rows say "skipped". No root needed; the kernel sockets are on 127.0.0.1 only.

use std::net::SocketAddr;

use ioth::Stack;
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

use crate::support::rwwrap::Rwwrap;
use crate::support::sock::Sock;
use crate::support::sock_work::{transfer, PingPong, IO_TIMEOUT};
use crate::support::workload::CHUNK;
use crate::support::{procstat, udp_echo, Opts, Report, Samples};

const BYTES: u64 = 256 << 20;
/// The name of a host's pump thread (host/src/pump.rs).
const PUMP_THREAD: &str = "ioth-pump";
const TCP_ROUNDS: usize = 5;
const RTT_N: usize = 10_000;
const RTT_ROUNDS: usize = 10;

/// What makes one end's socket.
#[derive(Clone, Copy, PartialEq)]
enum End {
    Plain,
    Kernel,
    /// rwwrap stack P.
    Pump,
    /// rwwrap stack Q (a second host).
    Pump2,
}

/// (sender or client, receiver or echo, label).
const PATHS: [(End, End, &str); 6] = [
    (End::Plain, End::Plain, "plain sockets (baseline)"),
    (
        End::Kernel,
        End::Kernel,
        "kernel plug-in, native fds at both ends",
    ),
    (
        End::Pump,
        End::Plain,
        "host pump (rwwrap): proxied fd → plain socket",
    ),
    (
        End::Plain,
        End::Pump,
        "host pump (rwwrap): plain socket → proxied fd",
    ),
    (
        End::Pump,
        End::Pump,
        "host pump (rwwrap): proxied fds at both ends, one host",
    ),
    (
        End::Pump,
        End::Pump2,
        "host pump (rwwrap): proxied fds at both ends, two hosts",
    ),
];

/// The stacks; fields drop in order: stacks and probes before the plug-in's temp dir.
struct Stacks {
    kernel: Stack,
    /// rwwrap stacks P and Q, each with a socket to read the plug-in's byte counts through.
    pump: Option<[(Stack, ioth::Socket); 2]>,
    /// The built plug-in, or why there is none.
    plugin: Result<Rwwrap, String>,
}

impl Stacks {
    fn new() -> Stacks {
        let kernel =
            Stack::new("kernel", &[] as &[&str]).unwrap_or_else(|e| panic!("newstack kernel: {e}"));
        let plugin = Rwwrap::build();
        let pump = plugin.as_ref().ok().map(|p| {
            [(); 2].map(|_| {
                let s = p.stack();
                let probe = s
                    .msocket(libc::AF_INET, libc::SOCK_DGRAM, 0)
                    .expect("msocket rwwrap");
                (s, probe)
            })
        });
        Stacks {
            kernel,
            pump,
            plugin,
        }
    }

    fn stack(&self, e: End) -> Option<&Stack> {
        match e {
            End::Plain => None,
            End::Kernel => Some(&self.kernel),
            End::Pump => self.pump.as_ref().map(|p| &p[0].0),
            End::Pump2 => self.pump.as_ref().map(|p| &p[1].0),
        }
    }

    /// A stream socket of end `e`.
    fn sock(&self, e: End) -> Sock {
        match e {
            End::Plain => Sock::plain(socket2::Type::STREAM),
            _ => Sock::of(self.stack(e).expect("stack of this end"), libc::SOCK_STREAM),
        }
    }

    /// Whether path `p` can run (the rwwrap plug-in was built).
    fn can(&self, p: usize) -> bool {
        let (a, b, _) = PATHS[p];
        self.pump.is_some() || ![a, b].iter().any(|e| matches!(e, End::Pump | End::Pump2))
    }

    /// Bytes read + written by the rwwrap stacks' own functions so far.
    fn pumped(&self) -> u64 {
        self.pump.as_ref().map_or(0, |p| {
            p.iter()
                .map(|(_, probe)| {
                    let (r, w) = Rwwrap::counts(probe);
                    r + w
                })
                .sum()
        })
    }

    /// Processes to account CPU to on path `p`.
    fn processes(&self, p: usize) -> Vec<(String, u32)> {
        let (a, b, _) = PATHS[p];
        let mut v = vec![("bench".to_owned(), std::process::id())];
        let mut add = |e: End| {
            let name = match e {
                End::Kernel => "kernel host",
                End::Pump => "rwwrap host P",
                End::Pump2 => "rwwrap host Q",
                End::Plain => return,
            };
            if let Some(pid) = self.stack(e).and_then(Stack::pid) {
                if !v.iter().any(|(_, x)| *x == pid) {
                    v.push((name.to_owned(), pid));
                }
            }
        };
        add(a);
        add(b);
        v
    }
}

/// A listener of end `to` on 127.0.0.1 and a socket of end `from`, not yet connected; the
/// listener's address.
fn ends(st: &Stacks, from: End, to: End) -> (Sock, Sock, SocketAddr) {
    let l = st.sock(to);
    l.bind(&"127.0.0.1:0".parse().unwrap()).expect("bind");
    l.listen(4).expect("listen");
    let at = l.local_addr().expect("local_addr");
    (l, st.sock(from), at)
}

fn skipped_rows(rep: &mut Report, st: &Stacks) {
    if let Err(e) = &st.plugin {
        for (i, (_, _, label)) in PATHS.iter().enumerate() {
            if !st.can(i) {
                rep.value(&format!("{label}: skipped ({e})"), "none", "-", "-", "-");
            }
        }
    }
}

const TCP_TITLE: &str = "Proxy cost, TCP throughput over 127.0.0.1: host-pump proxied fds vs \
                         native fds vs plain sockets (one connection, 128 KiB writes)";

/// The `proxy-cost-tcp` scenario.
pub fn run_tcp(opts: &Opts) -> Report {
    let bytes = if opts.quick { BYTES / 8 } else { BYTES };
    let st = Stacks::new();
    let paths: Vec<usize> = (0..PATHS.len()).filter(|&i| st.can(i)).collect();
    let procs: Vec<Vec<(String, u32)>> = (0..PATHS.len()).map(|i| st.processes(i)).collect();
    let run = |i: usize, bytes: u64| {
        let (from, to, _) = PATHS[i];
        let (l, c, at) = ends(&st, from, to);
        c.connect(&at, IO_TIMEOUT).expect("connect");
        transfer(l, &c, bytes).time
    };
    for &i in &paths {
        run(i, bytes / 16);
    }
    let mut samples: Vec<Samples> = PATHS
        .iter()
        .map(|_| Samples::with_capacity(TCP_ROUNDS))
        .collect();
    let mut cpu: Vec<Vec<std::time::Duration>> = procs
        .iter()
        .map(|p| vec![Default::default(); p.len()])
        .collect();
    let mut sleeps: Vec<Vec<u64>> = procs.iter().map(|p| vec![0; p.len()]).collect();
    let mut pumped = vec![0u64; PATHS.len()];
    let mut wall = vec![std::time::Duration::ZERO; PATHS.len()];
    for r in 0..TCP_ROUNDS {
        for k in 0..paths.len() {
            let i = paths[(r + k) % paths.len()];
            let c0: Vec<_> = procs[i]
                .iter()
                .map(|(_, p)| procstat::cpu_time(*p))
                .collect();
            let s0: Vec<_> = procs[i]
                .iter()
                .map(|(_, p)| procstat::wakeups(*p, PUMP_THREAD))
                .collect();
            let p0 = st.pumped();
            let t = run(i, bytes);
            samples[i].push(t);
            wall[i] += t;
            pumped[i] += st.pumped() - p0;
            for (j, (_, p)) in procs[i].iter().enumerate() {
                cpu[i][j] += procstat::cpu_time(*p).saturating_sub(c0[j]);
                sleeps[i][j] += procstat::wakeups(*p, PUMP_THREAD).saturating_sub(s0[j]);
            }
        }
    }
    let mut rep = Report::new(TCP_TITLE);
    for &i in &paths {
        rep.throughput(PATHS[i].2, bytes, &samples[i], Some(&samples[0]));
    }
    skipped_rows(&mut rep, &st);
    rep.note(format!(
        "Ratio = median speed / median speed of plain sockets in the same run. {TCP_ROUNDS} \
         interleaved rounds (paths rotated each round) of {} MiB after a {} MiB warm-up per \
         path; a fresh connection per transfer. MB/s = 10^6 bytes/s. Writes of {} KiB from a \
         bench thread, reads in another; unpinned. rwwrap (tests/c/plugins/ioth_rwwrap.c, gcc \
         -O2): its sockets are kernel sockets on 127.0.0.1 that it reads and writes with its own \
         functions, so the host pumps each byte between the app's AF_UNIX socketpair end and the \
         plug-in's socket (one pump thread per host, at most 64 KiB in flight per direction and \
         socket).",
        bytes >> 20,
        (bytes / 16) >> 20,
        CHUNK >> 10
    ));
    for &i in &paths {
        let secs = wall[i].as_secs_f64();
        let c: Vec<String> = procs[i]
            .iter()
            .zip(&cpu[i])
            .map(|((l, _), d)| format!("{l} {:.2}", d.as_secs_f64() / secs.max(1e-9)))
            .collect();
        let mut line = format!("- {}: CPU seconds per second: {}", PATHS[i].2, c.join(", "));
        let per_mib: Vec<String> = procs[i]
            .iter()
            .zip(&sleeps[i])
            .skip(1)
            .filter(|(_, &n)| n > 0)
            .map(|((l, _), &n)| {
                format!(
                    "{l} {:.1}",
                    n as f64 / ((bytes >> 20) * TCP_ROUNDS as u64) as f64
                )
            })
            .collect();
        if !per_mib.is_empty() {
            line += &format!("; pump thread sleeps per MiB: {}", per_mib.join(", "));
        }
        if pumped[i] > 0 {
            line += &format!(
                "; the plug-in's own read/write moved {:.2}x the bytes sent",
                pumped[i] as f64 / (bytes * TCP_ROUNDS as u64) as f64
            );
        }
        rep.note(line + ".");
    }
    rep
}

const RTT_TITLE: &str = "Proxy cost, TCP ping-pong over 127.0.0.1: host-pump proxied fds vs \
                         native fds vs plain sockets";

/// Where the bench's threads and the hosts run during the ping-pong.
#[derive(Clone, Copy, PartialEq)]
enum Placement {
    /// Wherever the scheduler puts them.
    Unpinned,
    /// Everything on the first CPU the bench may use: the calling thread (and so the echo and
    /// client threads it spawns afterwards) and every thread of every host.
    OneCpu,
}

/// Sets the affinity of every thread of process `pid` (threads it starts later inherit it from
/// the thread that starts them).
fn pin_process(pid: u32, set: &CpuSet) {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    // A host has a handful of threads; the loop ends with the directory.
    for task in dir.flatten() {
        if let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
        {
            // A thread that exited meanwhile is no error.
            let _ = sched_setaffinity(Pid::from_raw(tid), set);
        }
    }
}

/// Places this thread and the hosts; returns the affinity to restore.
fn place(p: Placement, hosts: &[u32]) -> Option<CpuSet> {
    if p == Placement::Unpinned {
        return None;
    }
    let original = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
    let first = (0..CpuSet::count())
        .find(|&c| original.is_set(c).unwrap_or(false))
        .expect("a CPU");
    let mut one = CpuSet::new();
    one.set(first).expect("cpu index");
    sched_setaffinity(Pid::from_raw(0), &one).expect("sched_setaffinity");
    for &h in hosts {
        pin_process(h, &one);
    }
    Some(original)
}

fn unplace(original: Option<CpuSet>, hosts: &[u32]) {
    if let Some(set) = original {
        sched_setaffinity(Pid::from_raw(0), &set).expect("sched_setaffinity");
        for &h in hosts {
            pin_process(h, &set);
        }
    }
}

/// Ping-pong samples of every runnable path (indexed like [`PATHS`]), rounds interleaved, with
/// fresh connections and echo threads made under placement `p`.
fn ping_pong(st: &Stacks, paths: &[usize], p: Placement, n: usize) -> Vec<Samples> {
    let per_round = (n / RTT_ROUNDS).max(1);
    let hosts: Vec<u32> = [End::Kernel, End::Pump, End::Pump2]
        .iter()
        .filter_map(|&e| st.stack(e).and_then(Stack::pid))
        .collect();
    let restore = place(p, &hosts);
    let mut cases: Vec<Option<PingPong>> = (0..PATHS.len()).map(|_| None).collect();
    for &i in paths {
        let (from, to, _) = PATHS[i];
        let (l, c, at) = ends(st, from, to);
        cases[i] = Some(PingPong::new(l, c, &at));
    }
    let mut seq = 0u64;
    for &i in paths {
        let pp = cases[i].as_mut().expect("case");
        pp.round_trips(200, &mut Samples::default(), &mut seq);
    }
    let mut samples: Vec<Samples> = PATHS.iter().map(|_| Samples::with_capacity(n)).collect();
    for r in 0..RTT_ROUNDS {
        for k in 0..paths.len() {
            let i = paths[(r + k) % paths.len()];
            let pp = cases[i].as_mut().expect("case");
            pp.round_trips(per_round, &mut samples[i], &mut seq);
        }
    }
    drop(cases);
    unplace(restore, &hosts);
    samples
}

/// The `proxy-cost-rtt` scenario.
pub fn run_rtt(opts: &Opts) -> Report {
    let n = opts.n(RTT_N);
    let st = Stacks::new();
    let paths: Vec<usize> = (0..PATHS.len()).filter(|&i| st.can(i)).collect();
    let unpinned = ping_pong(&st, &paths, Placement::Unpinned, n);
    let one_cpu = ping_pong(&st, &paths, Placement::OneCpu, n);
    let mut rep = Report::new(RTT_TITLE);
    for (samples, place) in [(&unpinned, "unpinned"), (&one_cpu, "all on one CPU")] {
        for &i in &paths {
            let label = format!("{}, {place}", PATHS[i].2.replace(" → ", " ⇄ "));
            rep.latency(&label, &samples[i], Some(&samples[0]));
        }
    }
    skipped_rows(&mut rep, &st);
    rep.note(format!(
        "Ratio = median / median of plain sockets with the same placement in the same run. One \
         {}-byte message from the first end (client) to an echo thread on the second and back, \
         TCP_NODELAY on both ends (through the host for proxied fds); one connection per path \
         and placement, 200 warm-up, then {RTT_ROUNDS} interleaved rounds of {} per path. \
         Unpinned: bench threads and hosts wherever the scheduler puts them (the unpinned \
         rows first, then the one-CPU rows); all on one CPU: the client and echo threads and \
         every thread of every host pinned to the first CPU (sched_setaffinity), so a hop \
         costs a context switch, never a cross-CPU wake-up.",
        udp_echo::PAYLOAD,
        (n / RTT_ROUNDS).max(1)
    ));
    rep
}
