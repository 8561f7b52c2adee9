//! The smoltcp plug-in (a user-space stack, proxied fds) against vdestack over one VDE switch,
//! beside vdestack ↔ vdestack on the same switch in the same run (the reference):
//!
//! - `smoltcp-tcp`: one TCP connection smoltcp → vdestack, vdestack → smoltcp, smoltcp →
//!   smoltcp, and vdestack → vdestack, 128 KiB writes, MTU 1500, the plug-in's default buffers
//!   (smoltcp: `SO_SNDBUF` 96 KiB, `SO_RCVBUF` 128 KiB; nothing is raised);
//! - `smoltcp-udp`: small-datagram round trips over the same four pairs.
//!
//! Each also has plain sockets over 127.0.0.1 as context. All four stacks (vdestack A, B;
//! smoltcp S, T) sit on one `vde_plug` switch the scenario starts (killed by pid on drop), are
//! configured with ioth's netlink calls (`if_nametoindex`, `ipaddr_add`, `link_set_up`), and
//! their addresses (10.250.2.0/24) exist only inside the stacks. Sockets are `ioth::Socket`s
//! through [`Sock`]: control calls through the host for the proxied smoltcp fds, plain
//! read/write for the data.
//!
//! Needs root (vdestack: namespaces, /dev/net/tun), `vde_plug` and the release
//! `libioth_vdestack.so` and `libioth_smoltcp.so`; without them the table says "skipped" and why.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ioth::Stack;
use ioth_tests::vde::Switch;

use crate::support::sock::Sock;
use crate::support::sock_work::{transfer, Transfer, IO_TIMEOUT};
use crate::support::udp_echo::{self, Client, Echo};
use crate::support::vde::{missing, skipped, udp_lost, udp_rounds};
use crate::support::workload::CHUNK;
use crate::support::{procstat, vde, Opts, Report, Samples};

/// The plug-ins this scenario needs beside the release host.
const SOS: [&str; 2] = ["libioth_vdestack.so", "libioth_smoltcp.so"];

/// A stack of `plugin` on `vnl` with `addr`/24 on `vde0`, up (ioth netlink calls only).
fn stack(plugin: &str, vnl: &str, addr: Ipv4Addr) -> Stack {
    vde::stack(plugin, vnl, addr).0
}

const BYTES: u64 = 128 << 20;
const TCP_ROUNDS: usize = 5;
const UDP_N: usize = 5_000;
const UDP_ROUNDS: usize = 10;

const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 250, 2, 1);
const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 250, 2, 2);
const ADDR_S: Ipv4Addr = Ipv4Addr::new(10, 250, 2, 3);
const ADDR_T: Ipv4Addr = Ipv4Addr::new(10, 250, 2, 4);

/// The four stacks on one switch. Fields drop in order: stacks, then the switch.
struct Net {
    a: Stack,
    b: Stack,
    s: Stack,
    t: Stack,
    sw: Switch,
}

impl Net {
    fn new() -> Net {
        let sw = Switch::start();
        let vnl = sw.vnl();
        Net {
            a: stack("vdestack", &vnl, ADDR_A),
            b: stack("vdestack", &vnl, ADDR_B),
            s: stack("smoltcp", &vnl, ADDR_S),
            t: stack("smoltcp", &vnl, ADDR_T),
            sw,
        }
    }

    /// "host A (vdestack)" etc.
    fn name(&self, s: &Stack) -> String {
        let who = [
            (&self.a, "A"),
            (&self.b, "B"),
            (&self.s, "S"),
            (&self.t, "T"),
        ]
        .iter()
        .find(|(x, _)| x.same(s))
        .map_or("?", |(_, n)| n);
        format!("host {who} ({})", s.plugin())
    }
}

/// Who talks to whom: the first named end sends (TCP) or asks (UDP).
#[derive(Clone, Copy, PartialEq)]
enum Via {
    Reference,
    SmolToVde,
    VdeToSmol,
    SmolToSmol,
    Loopback,
}

const PATHS: [Via; 5] = [
    Via::Reference,
    Via::SmolToVde,
    Via::VdeToSmol,
    Via::SmolToSmol,
    Via::Loopback,
];

impl Via {
    fn label(self) -> &'static str {
        match self {
            Via::Reference => "vdestack A → vdestack B (reference)",
            Via::SmolToVde => "smoltcp S → vdestack B",
            Via::VdeToSmol => "vdestack A → smoltcp S",
            Via::SmolToSmol => "smoltcp S → smoltcp T",
            Via::Loopback => "context: plain sockets, 127.0.0.1",
        }
    }

    /// (sending stack, receiving stack, receiver's address); `None`: a plain socket.
    fn ends(self, net: &Net) -> (Option<&Stack>, Option<&Stack>, Ipv4Addr) {
        match self {
            Via::Reference => (Some(&net.a), Some(&net.b), ADDR_B),
            Via::SmolToVde => (Some(&net.s), Some(&net.b), ADDR_B),
            Via::VdeToSmol => (Some(&net.a), Some(&net.s), ADDR_S),
            Via::SmolToSmol => (Some(&net.s), Some(&net.t), ADDR_T),
            Via::Loopback => (None, None, Ipv4Addr::LOCALHOST),
        }
    }

    /// Processes to account CPU to: (label, pid).
    fn processes(self, net: &Net) -> Vec<(String, u32)> {
        let mut v = vec![("bench (both ends)".to_owned(), std::process::id())];
        let (from, to, _) = self.ends(net);
        if let (Some(f), Some(t)) = (from, to) {
            v.push((net.name(f), f.pid().expect("host")));
            v.push(("switch".to_owned(), net.sw.pid()));
            v.push((net.name(t), t.pid().expect("host")));
        }
        v
    }

    /// The pid whose namespace counts the segments a vdestack receiver got out of order (a
    /// segment lost on the way and the ones after it).
    fn kernel_receiver(self, net: &Net) -> Option<u32> {
        match self.ends(net).1 {
            Some(s) if s.plugin() == "vdestack" => s.pid(),
            _ => None,
        }
    }

    /// The pid whose namespace counts the sender's TCP retransmissions (a vdestack sender only;
    /// smoltcp keeps no such counter).
    fn kernel_sender(self, net: &Net) -> Option<u32> {
        match self.ends(net).0 {
            Some(s) if s.plugin() == "vdestack" => s.pid(),
            _ => None,
        }
    }
}

/// A socket on `stack`, or a plain one.
fn sock(stack: Option<&Stack>, udp: bool) -> Sock {
    match (stack, udp) {
        (Some(s), false) => Sock::of(s, libc::SOCK_STREAM),
        (Some(s), true) => Sock::of(s, libc::SOCK_DGRAM),
        (None, false) => Sock::plain(socket2::Type::STREAM),
        (None, true) => Sock::plain(socket2::Type::DGRAM),
    }
}

/// Ports for the stacks' listeners, a fresh one per connection (smoltcp listens on a given
/// port; the plain loopback listener uses an ephemeral one).
struct Ports(u16);

impl Ports {
    fn next(&mut self, ip: Ipv4Addr) -> u16 {
        if ip.is_loopback() {
            return 0;
        }
        self.0 = if self.0 >= 60_000 { 20_000 } else { self.0 + 1 };
        self.0
    }
}

/// A listener on the receiving end and a connected client on the sending end of `p`.
fn tcp_pair(net: &Net, p: Via, ports: &mut Ports) -> (Sock, Sock) {
    let (from, to, ip) = p.ends(net);
    let l = sock(to, false);
    l.set_reuse_address().expect("SO_REUSEADDR");
    let at = SocketAddr::new(IpAddr::V4(ip), ports.next(ip));
    l.bind(&at)
        .unwrap_or_else(|e| panic!("bind {at} ({}): {e}", p.label()));
    l.listen(4).expect("listen");
    let at = l.local_addr().expect("local_addr");
    let c = sock(from, false);
    c.connect(&at, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {at} ({}): {e}", p.label()));
    (l, c)
}

/// A `TcpExt:` counter of `/proc/<pid>/net/netstat` (the namespace of `pid`).
fn tcp_ext(pid: u32, name: &str) -> u64 {
    procstat::net_counter(pid, "netstat", "TcpExt:", name)
}

/// Where to read kernel TCP counters of one path: the vdestack sender's and receiver's hosts.
#[derive(Clone, Copy)]
struct Kernels {
    sender: Option<u32>,
    receiver: Option<u32>,
}

/// CPU and loss counters over the timed transfers of one path.
#[derive(Default)]
struct Usage {
    wall: Duration,
    machine: (u64, u64),
    cpu: Vec<Duration>,
    retransmits: u64,
    out_of_order: u64,
    longest_gap: Duration,
}

struct Snap {
    at: Instant,
    machine: (u64, u64),
    cpu: Vec<Duration>,
    retransmits: u64,
    out_of_order: u64,
}

fn snap(procs: &[(String, u32)], k: Kernels) -> Snap {
    Snap {
        at: Instant::now(),
        machine: procstat::machine_ticks(),
        cpu: procs
            .iter()
            .map(|(_, pid)| procstat::cpu_time(*pid))
            .collect(),
        retransmits: k.sender.map_or(0, procstat::tcp_retransmits),
        out_of_order: k.receiver.map_or(0, |p| tcp_ext(p, "TCPOFOQueue")),
    }
}

impl Usage {
    fn add(&mut self, a: &Snap, b: &Snap, t: &Transfer) {
        self.wall += b.at - a.at;
        self.machine.0 += b.machine.0.saturating_sub(a.machine.0);
        self.machine.1 += b.machine.1.saturating_sub(a.machine.1);
        self.retransmits += b.retransmits.saturating_sub(a.retransmits);
        self.out_of_order += b.out_of_order.saturating_sub(a.out_of_order);
        self.cpu.resize(a.cpu.len(), Duration::ZERO);
        for (i, c) in self.cpu.iter_mut().enumerate() {
            *c += b.cpu[i].saturating_sub(a.cpu[i]);
        }
        self.longest_gap = self.longest_gap.max(t.longest_gap);
    }

    fn describe(&self, procs: &[(String, u32)], k: Kernels) -> String {
        let secs = self.wall.as_secs_f64().max(1e-9);
        let cpu: Vec<String> = procs
            .iter()
            .zip(&self.cpu)
            .map(|((l, _), c)| format!("{l} {:.2}", c.as_secs_f64() / secs))
            .collect();
        let mut s = format!(
            "CPU seconds per second: {}; machine {:.0}% busy; longest receiver wait {:.0} ms",
            cpu.join(", "),
            100.0 * self.machine.0 as f64 / self.machine.1.max(1) as f64,
            self.longest_gap.as_secs_f64() * 1e3
        );
        if k.sender.is_some() {
            s += &format!(
                "; retransmissions by the vdestack sender {}",
                self.retransmits
            );
        }
        if k.receiver.is_some() {
            s += &format!(
                "; segments queued out of order by the vdestack receiver {}",
                self.out_of_order
            );
        }
        s
    }
}

fn speeds(bytes: u64, s: &[Duration]) -> String {
    let v: Vec<String> = s
        .iter()
        .map(|d| format!("{:.0}", bytes as f64 / d.as_secs_f64() / 1e6))
        .collect();
    v.join(", ")
}

const TCP_TITLE: &str = "smoltcp TCP throughput: smoltcp ↔ vdestack and smoltcp ↔ smoltcp over \
                         one VDE switch vs vdestack ↔ vdestack (one connection, 128 KiB writes, \
                         MTU 1500)";

/// The `smoltcp-tcp` scenario.
pub fn run_tcp(opts: &Opts) -> Report {
    if let Some(why) = missing(&SOS) {
        return skipped(TCP_TITLE, &why);
    }
    let bytes = if opts.quick { BYTES / 8 } else { BYTES };
    let net = Net::new();
    let mut ports = Ports(20_000);
    let procs: Vec<Vec<(String, u32)>> = PATHS.iter().map(|p| p.processes(&net)).collect();
    let kernels: Vec<Kernels> = PATHS
        .iter()
        .map(|p| Kernels {
            sender: p.kernel_sender(&net),
            receiver: p.kernel_receiver(&net),
        })
        .collect();
    let mut samples: Vec<Samples> = PATHS
        .iter()
        .map(|_| Samples::with_capacity(TCP_ROUNDS))
        .collect();
    let mut order: Vec<Vec<Duration>> = PATHS.iter().map(|_| Vec::new()).collect();
    let mut usage: Vec<Usage> = PATHS.iter().map(|_| Usage::default()).collect();
    // Warm-up, discarded: ARP, the switch's MAC table, code paths.
    for &p in &PATHS {
        let (l, c) = tcp_pair(&net, p, &mut ports);
        transfer(l, &c, bytes / 16);
    }
    // Round r runs the paths rotated by r, so that no path always follows the same one.
    for r in 0..TCP_ROUNDS {
        for k in 0..PATHS.len() {
            let i = (r + k) % PATHS.len();
            let (l, c) = tcp_pair(&net, PATHS[i], &mut ports);
            let before = snap(&procs[i], kernels[i]);
            let t = transfer(l, &c, bytes);
            let after = snap(&procs[i], kernels[i]);
            drop(c);
            samples[i].push(t.time);
            order[i].push(t.time);
            usage[i].add(&before, &after, &t);
        }
    }
    let mut rep = Report::new(TCP_TITLE);
    for (i, p) in PATHS.iter().enumerate() {
        rep.throughput(p.label(), bytes, &samples[i], Some(&samples[0]));
    }
    rep.note(format!(
        "Ratio = median speed / median speed of vdestack A → vdestack B on the same switch in \
         the same run. {TCP_ROUNDS} interleaved rounds (paths rotated each round) after a \
         {} MiB warm-up per path; a fresh connection per transfer. MB/s = 10^6 bytes/s; p90 of \
         {TCP_ROUNDS} rounds = the slowest. Writes of {} KiB from a bench thread, reads in \
         another. A, B: vdestack (kernel stack in a private netns, tap, frame pump); S, T: \
         smoltcp (user-space stack in its host, proxied fds, default buffers: SO_SNDBUF 96 KiB, \
         SO_RCVBUF 128 KiB); the switch: `vde_plug null:// switch://`; MTU 1500 everywhere.",
        (bytes / 16) >> 20,
        CHUNK >> 10
    ));
    for (i, p) in PATHS.iter().enumerate() {
        rep.note(format!(
            "- {}: rounds in run order {} MB/s; {}.",
            p.label(),
            speeds(bytes, &order[i]),
            usage[i].describe(&procs[i], kernels[i])
        ));
    }
    rep
}

/// An echo on the receiving end of `p` and a client on the sending end, connected to it.
fn udp_pair(net: &Net, p: Via, port: u16) -> (Echo, Client<Sock>) {
    let (from, to, ip) = p.ends(net);
    let s = sock(to, true);
    let port = if ip.is_loopback() { 0 } else { port };
    s.bind(&SocketAddr::new(IpAddr::V4(ip), port))
        .unwrap_or_else(|e| panic!("bind echo ({}): {e}", p.label()));
    let at = s.local_addr().expect("local_addr");
    let c = sock(from, true);
    c.connect(&at, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {at} ({}): {e}", p.label()));
    (Echo::start(s), Client::new(c))
}

const UDP_TITLE: &str = "smoltcp UDP round trip: smoltcp ↔ vdestack and smoltcp ↔ smoltcp over \
                         one VDE switch vs vdestack ↔ vdestack";

/// The `smoltcp-udp` scenario.
pub fn run_udp(opts: &Opts) -> Report {
    if let Some(why) = missing(&SOS) {
        return skipped(UDP_TITLE, &why);
    }
    let n = opts.n(UDP_N);
    let per_round = (n / UDP_ROUNDS).max(1);
    let net = Net::new();
    let mut cases: Vec<(Echo, Client<Sock>)> = PATHS
        .iter()
        .enumerate()
        .map(|(k, &p)| udp_pair(&net, p, 7100 + k as u16))
        .collect();
    // Warm-up, discarded (ARP, the switch's MAC table), then interleaved rounds.
    let samples = udp_rounds(&mut cases, n, UDP_ROUNDS, per_round);
    let mut rep = Report::new(UDP_TITLE);
    for (i, p) in PATHS.iter().enumerate() {
        let label = p.label().replace(" → ", " ⇄ ");
        rep.latency(&label, &samples[i], Some(&samples[0]));
    }
    rep.note(format!(
        "Ratio = median / median of vdestack A ⇄ vdestack B in the same run. One {}-byte \
         datagram from a connected client socket on the first stack to an echo thread (unconnected \
         socket: recv_from/send_to, which carry the address header on a proxied fd) on the \
         second, and back; both threads in the bench. 200 warm-up, then {UDP_ROUNDS} \
         interleaved rounds of {per_round} per path. Unpinned.",
        udp_echo::PAYLOAD
    ));
    let labels: Vec<String> = PATHS.iter().map(|p| p.label().to_owned()).collect();
    let lost = udp_lost(&labels, &cases);
    if !lost.is_empty() {
        rep.note(format!(
            "Lost datagrams (no reply within {:?}; warm-up included): {}.",
            udp_echo::WAIT,
            lost.join(", ")
        ));
    }
    drop(cases);
    rep
}
