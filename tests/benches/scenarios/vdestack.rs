//! Two vdestack stacks on one VDE switch against plain loopback sockets (the ceiling), with two
//! references that tell the frame pump's cost from the switch's: VDE's own C bridges
//! (`vde_plug tap://`) on the same switch, and two vdestack stacks joined by `ptp://` (no
//! switch).
//!
//! - `vdestack-tcp`: one TCP connection from stack A to stack B (the bench's sockets, the
//!   stacks' kernels, each host's frame pump, the `vde_plug` switch) at MTU 1500 and 9000 (set
//!   with `link_set_mtu` on both `vde0`s), beside the same transfer over 127.0.0.1;
//! - `vdestack-udp`: small-datagram round trips A → B → A beside the same over 127.0.0.1.
//!
//! Needs root (network namespaces, /dev/net/tun), `vde_plug` (Debian vdeplug) and the release
//! `libioth_vdestack.so`; without them the table says "skipped" and why. The switch and the
//! ptp:// rendezvous live in temp dirs; the switch is killed by pid on drop; the addresses
//! (10.250.0.0/24, 10.250.1.0/24) exist only inside the stacks' and bridges' namespaces.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use ioth::Stack;
use ioth_tests::vde::{Switch, TempDir};

use crate::support::cbridge::CBridge;
use crate::support::procstat;
use crate::support::udp_echo::{self, Echo};
use crate::support::vde::{self, missing, skipped, udp_lost, udp_rounds, IFNAME};
use crate::support::workload::{tcp_transfer, CHUNK};
use crate::support::{Opts, Report, Samples};

const BYTES: u64 = 256 << 20;
const TCP_ROUNDS: usize = 3;
const UDP_N: usize = 5_000;
const UDP_ROUNDS: usize = 10;
/// Bound on any blocking socket call (connect, accept, read, write).
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// On the switch: vdestack A and B, C bridges C and D.
const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 1);
const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 2);
const ADDR_C: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 3);
const ADDR_D: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 4);
/// On the ptp:// link: vdestack P and Q.
const ADDR_P: Ipv4Addr = Ipv4Addr::new(10, 250, 1, 1);
const ADDR_Q: Ipv4Addr = Ipv4Addr::new(10, 250, 1, 2);

/// A vdestack stack with `vde0` on `vnl`, `addr`/24 on it, up (all through ioth's netlink).
struct VStack {
    stack: Stack,
    ifindex: u32,
    addr: Ipv4Addr,
}

impl VStack {
    fn new(vnl: &str, addr: Ipv4Addr) -> VStack {
        let (stack, ifindex) = vde::stack("vdestack", vnl, addr);
        VStack {
            stack,
            ifindex,
            addr,
        }
    }

    fn pid(&self) -> u32 {
        self.stack.pid().expect("a vdestack stack has a host")
    }

    fn set_mtu(&self, mtu: u32) {
        self.stack
            .link_set_mtu(self.ifindex, mtu)
            .expect("link_set_mtu");
    }

    fn socket(&self, ty: i32) -> OwnedFd {
        self.stack
            .msocket(libc::AF_INET, ty | libc::SOCK_CLOEXEC, 0)
            .expect("msocket")
            .into()
    }
}

/// The C bridges' pair, or why there is none.
type Bridges = Result<(CBridge, CBridge), String>;

/// Everything the scenarios talk through. Fields drop in order: bridges and stacks first, then
/// the switch and the ptp:// directory.
struct Net {
    c: Bridges,
    a: VStack,
    b: VStack,
    p: VStack,
    q: VStack,
    sw: Switch,
    _ptp_dir: TempDir,
}

impl Net {
    fn new() -> Net {
        let sw = Switch::start();
        let a = VStack::new(&sw.vnl(), ADDR_A);
        let b = VStack::new(&sw.vnl(), ADDR_B);
        let ptp_dir = TempDir::new("vdeptp");
        let ptp = format!("ptp://{}", ptp_dir.path().join("ptp").display());
        let p = VStack::new(&ptp, ADDR_P);
        let q = VStack::new(&ptp, ADDR_Q);
        let c = CBridge::start(IFNAME, &sw.vnl()).and_then(|c| {
            let d = CBridge::start(IFNAME, &sw.vnl())?;
            c.configure(&format!("{ADDR_C}/24"));
            d.configure(&format!("{ADDR_D}/24"));
            Ok((c, d))
        });
        Net {
            c,
            a,
            b,
            p,
            q,
            sw,
            _ptp_dir: ptp_dir,
        }
    }
}

/// Sets the read/write timeouts that bound every blocking call of a transfer (an accepted socket
/// inherits the listener's).
fn bounded(l: socket2::Socket, c: socket2::Socket) -> (TcpListener, TcpStream) {
    for s in [&l, &c] {
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("SO_RCVTIMEO");
        s.set_write_timeout(Some(IO_TIMEOUT)).expect("SO_SNDTIMEO");
    }
    (l.into(), c.into())
}

/// A listener at `at` (any port) and a client bound at `from`, connected to it.
fn tcp_pair(
    listener: OwnedFd,
    client: OwnedFd,
    at: Ipv4Addr,
    from: Ipv4Addr,
) -> (TcpListener, TcpStream) {
    let l = socket2::Socket::from(listener);
    l.bind(&SocketAddr::new(IpAddr::V4(at), 0).into())
        .expect("bind listener");
    l.listen(4).expect("listen");
    let c = socket2::Socket::from(client);
    c.bind(&SocketAddr::new(IpAddr::V4(from), 0).into())
        .expect("bind client");
    let to = l.local_addr().expect("local_addr");
    c.connect_timeout(&to, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {:?}: {e}", to.as_socket()));
    bounded(l, c)
}

fn plain_socket(ty: socket2::Type) -> OwnedFd {
    socket2::Socket::new(socket2::Domain::IPV4, ty, None)
        .expect("socket")
        .into()
}

/// The ways the bytes can go.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    Plain,
    Vdestack(u32),
    CBridge(u32),
    Ptp(u32),
}

impl Via {
    fn label(self) -> String {
        match self {
            Via::Plain => "plain sockets, 127.0.0.1 (baseline)".into(),
            Via::Vdestack(m) => format!("vdestack A → switch → vdestack B, MTU {m}"),
            Via::CBridge(m) => format!("ref: C vde_plug tap:// ×2 via the switch, MTU {m}"),
            Via::Ptp(m) => format!("ref: vdestack P ↔ Q over ptp://, no switch, MTU {m}"),
        }
    }

    /// (listener side, client side, listener address, client address) as socket makers.
    fn ends(self, net: &Net, ty: i32) -> (OwnedFd, OwnedFd, Ipv4Addr, Ipv4Addr) {
        match self {
            Via::Plain => {
                let t = socket2::Type::from(ty);
                let lo = Ipv4Addr::LOCALHOST;
                (plain_socket(t), plain_socket(t), lo, lo)
            }
            Via::Vdestack(mtu) | Via::Ptp(mtu) => {
                let (from, to) = if matches!(self, Via::Ptp(_)) {
                    (&net.p, &net.q)
                } else {
                    (&net.a, &net.b)
                };
                from.set_mtu(mtu);
                to.set_mtu(mtu);
                (to.socket(ty), from.socket(ty), to.addr, from.addr)
            }
            Via::CBridge(mtu) => {
                let (c, d) = net.c.as_ref().expect("only with bridges");
                c.set_mtu(mtu);
                d.set_mtu(mtu);
                (
                    d.socket(libc::AF_INET, ty),
                    c.socket(libc::AF_INET, ty),
                    ADDR_D,
                    ADDR_C,
                )
            }
        }
    }
}

/// A process to account CPU to.
struct Who {
    label: &'static str,
    pid: u32,
    /// Names of its threads whose sleeps count as pump wake-ups ("" = all).
    threads: &'static str,
    /// Whether `vde0` of its namespace is one end of the path.
    tap: bool,
}

/// The processes of one path; the first tap is the sender's, the second the receiver's.
struct Watch {
    who: Vec<Who>,
}

/// Counters at one instant.
struct Snap {
    at: Instant,
    machine: (u64, u64),
    cpu: Vec<Duration>,
    wakeups: Vec<u64>,
    taps: Vec<procstat::IfCounters>,
    retransmits: u64,
}

impl Watch {
    fn for_path(net: &Net, p: Via) -> Watch {
        let who = |label, pid, threads, tap| Who {
            label,
            pid,
            threads,
            tap,
        };
        let mut v = vec![who("bench (both TCP ends)", std::process::id(), "", false)];
        match p {
            Via::Plain => {}
            Via::Vdestack(_) => {
                v.push(who("host A", net.a.pid(), "pump-", true));
                v.push(who("switch", net.sw.pid(), "", false));
                v.push(who("host B", net.b.pid(), "pump-", true));
            }
            Via::Ptp(_) => {
                v.push(who("host P", net.p.pid(), "pump-", true));
                v.push(who("host Q", net.q.pid(), "pump-", true));
            }
            Via::CBridge(_) => {
                if let Ok((c, d)) = &net.c {
                    v.push(who("vde_plug C", c.pid(), "", true));
                    v.push(who("switch", net.sw.pid(), "", false));
                    v.push(who("vde_plug D", d.pid(), "", true));
                }
            }
        }
        Watch { who: v }
    }

    fn snap(&self) -> Snap {
        let sender = self.who.iter().find(|w| w.tap);
        Snap {
            at: Instant::now(),
            machine: procstat::machine_ticks(),
            cpu: self.who.iter().map(|w| procstat::cpu_time(w.pid)).collect(),
            wakeups: self
                .who
                .iter()
                .map(|w| procstat::wakeups(w.pid, w.threads))
                .collect(),
            taps: self
                .who
                .iter()
                .map(|w| {
                    if w.tap {
                        procstat::if_counters(w.pid, IFNAME)
                    } else {
                        Default::default()
                    }
                })
                .collect(),
            retransmits: sender.map_or(0, |w| procstat::tcp_retransmits(w.pid)),
        }
    }
}

/// Totals over the timed transfers of one path.
#[derive(Default)]
struct Usage {
    wall: Duration,
    machine_busy: u64,
    machine_total: u64,
    cpu: Vec<Duration>,
    wakeups: Vec<u64>,
    taps: Vec<procstat::IfCounters>,
    retransmits: u64,
}

impl Usage {
    fn add(&mut self, a: &Snap, b: &Snap) {
        self.wall += b.at - a.at;
        self.machine_busy += b.machine.0.saturating_sub(a.machine.0);
        self.machine_total += b.machine.1.saturating_sub(a.machine.1);
        self.retransmits += b.retransmits.saturating_sub(a.retransmits);
        let n = a.cpu.len();
        self.cpu.resize(n, Duration::ZERO);
        self.wakeups.resize(n, 0);
        self.taps.resize(n, Default::default());
        for i in 0..n {
            self.cpu[i] += b.cpu[i].saturating_sub(a.cpu[i]);
            self.wakeups[i] += b.wakeups[i].saturating_sub(a.wakeups[i]);
            self.taps[i] = self.taps[i].plus(&b.taps[i].minus(&a.taps[i]));
        }
    }

    /// One line: CPU per process, machine load, frames per pump sleep, frames lost in transit.
    fn describe(&self, w: &Watch) -> String {
        let secs = self.wall.as_secs_f64().max(1e-9);
        let cpu: Vec<String> = w
            .who
            .iter()
            .zip(&self.cpu)
            .map(|(x, c)| format!("{} {:.2}", x.label, c.as_secs_f64() / secs))
            .collect();
        let mut s = format!(
            "CPU seconds per second: {}; machine {:.0}% busy",
            cpu.join(", "),
            100.0 * self.machine_busy as f64 / self.machine_total.max(1) as f64
        );
        let taps: Vec<usize> = (0..w.who.len()).filter(|&i| w.who[i].tap).collect();
        if let [tx_end, rx_end] = taps[..] {
            let per: Vec<String> = taps
                .iter()
                .map(|&i| {
                    let frames = (self.taps[i].rx + self.taps[i].tx).max(1) as f64;
                    format!(
                        "{} {:.1} frames/sleep, {:.2} µs CPU/frame",
                        w.who[i].label,
                        frames / self.wakeups[i].max(1) as f64,
                        self.cpu[i].as_secs_f64() * 1e6 / frames
                    )
                })
                .collect();
            let (x, y) = (&self.taps[tx_end], &self.taps[rx_end]);
            // Sent into one tap and never written out of the other (both directions).
            let lost = (x.tx + y.tx).saturating_sub(x.rx + y.rx);
            s += &format!(
                "; pumps (frames in + out of the tap): {}; frames lost between the taps {lost} of \
                 {} ({:.1}%), dropped by the taps {}; TCP retransmissions {}",
                per.join(", "),
                x.tx + y.tx,
                100.0 * lost as f64 / (x.tx + y.tx).max(1) as f64,
                x.drops + y.drops,
                self.retransmits
            );
        }
        s
    }
}

const TCP_TITLE: &str = "vdestack TCP throughput: two stacks over a VDE switch vs 127.0.0.1 \
                         (one connection, 128 KiB writes)";

/// The `vdestack-tcp` scenario.
pub fn run_tcp(opts: &Opts) -> Report {
    if let Some(why) = missing(&["libioth_vdestack.so"]) {
        return skipped(TCP_TITLE, &why);
    }
    let bytes = if opts.quick { BYTES / 8 } else { BYTES };
    let net = Net::new();
    let mut paths = vec![Via::Plain, Via::Vdestack(1500), Via::Vdestack(9000)];
    if net.c.is_ok() {
        paths.extend([Via::CBridge(1500), Via::CBridge(9000)]);
    }
    paths.extend([Via::Ptp(1500), Via::Ptp(9000)]);
    let stream = libc::SOCK_STREAM;
    let pair = |p: Via| {
        let (l, c, at, from) = p.ends(&net, stream);
        tcp_pair(l, c, at, from)
    };
    let mut samples: Vec<Samples> = paths
        .iter()
        .map(|_| Samples::with_capacity(TCP_ROUNDS))
        .collect();
    let mut usage: Vec<Usage> = paths.iter().map(|_| Usage::default()).collect();
    let watches: Vec<Watch> = paths.iter().map(|&p| Watch::for_path(&net, p)).collect();
    // Warm-up, discarded: ARP, the switch's MAC table, page cache of the code.
    for &p in &paths {
        let (l, c) = pair(p);
        tcp_transfer(l, c, bytes / 16);
    }
    // Round r runs the paths rotated by r, so that no path always follows the same one.
    for r in 0..TCP_ROUNDS {
        for k in 0..paths.len() {
            let i = (r + k) % paths.len();
            let (l, c) = pair(paths[i]);
            let before = watches[i].snap();
            let t = tcp_transfer(l, c, bytes);
            let after = watches[i].snap();
            samples[i].push(t);
            usage[i].add(&before, &after);
        }
    }
    let mut rep = Report::new(TCP_TITLE);
    for (i, p) in paths.iter().enumerate() {
        rep.throughput(&p.label(), bytes, &samples[i], Some(&samples[0]));
    }
    let idx = |p: Via| paths.iter().position(|&q| q == p);
    // Median speed of path `x` over that of path `y`.
    let faster = |x: Via, y: Via| match (idx(x), idx(y)) {
        (Some(x), Some(y)) => format!(
            "{:.2}x",
            samples[y].median().as_secs_f64() / samples[x].median().as_secs_f64()
        ),
        _ => "-".into(),
    };
    rep.note(format!(
        "Rounds interleaved (paths rotated each round). MB/s = 10^6 bytes/s. Ratio = speed / \
         baseline speed. Writes of {} KiB, sender and receiver threads in the bench. A, B, P, Q: \
         vdestack stacks (a host process each, own netns, tap vde0, frame pump); the switch: \
         `vde_plug null:// switch://`; C, D: `unshare --net vde_plug tap://vde0 vde://<switch>`.",
        CHUNK >> 10
    ));
    rep.note(format!(
        "MTU 9000 over MTU 1500 (median speed): vdestack via the switch {}, C bridges {}, \
         vdestack over ptp:// {}.",
        faster(Via::Vdestack(9000), Via::Vdestack(1500)),
        faster(Via::CBridge(9000), Via::CBridge(1500)),
        faster(Via::Ptp(9000), Via::Ptp(1500)),
    ));
    rep.note(format!(
        "vdestack over the C bridges, same switch (median speed): MTU 1500 {}, MTU 9000 {}.",
        faster(Via::Vdestack(1500), Via::CBridge(1500)),
        faster(Via::Vdestack(9000), Via::CBridge(9000)),
    ));
    if let Err(e) = &net.c {
        rep.note(format!("C bridge reference skipped: {e}"));
    }
    for (i, p) in paths.iter().enumerate() {
        rep.note(format!(
            "- {}: {}.",
            p.label(),
            usage[i].describe(&watches[i])
        ));
    }
    rep
}

/// An echo on a socket bound at `at` and a client bound at `from`, connected to it.
fn udp_pair(
    server: OwnedFd,
    client: OwnedFd,
    at: Ipv4Addr,
    from: Ipv4Addr,
) -> (Echo, udp_echo::Client) {
    let s = UdpSocket::from(server);
    socket2::SockRef::from(&s)
        .bind(&SocketAddr::new(IpAddr::V4(at), 0).into())
        .expect("bind echo");
    let to = s.local_addr().expect("local_addr");
    let c = UdpSocket::from(client);
    socket2::SockRef::from(&c)
        .bind(&SocketAddr::new(IpAddr::V4(from), 0).into())
        .expect("bind client");
    c.connect(to).expect("connect");
    (Echo::start(s), udp_echo::Client::new(c))
}

const UDP_TITLE: &str = "vdestack UDP round trip: two stacks over a VDE switch vs 127.0.0.1";

/// The `vdestack-udp` scenario.
pub fn run_udp(opts: &Opts) -> Report {
    if let Some(why) = missing(&["libioth_vdestack.so"]) {
        return skipped(UDP_TITLE, &why);
    }
    let n = opts.n(UDP_N);
    let per_round = (n / UDP_ROUNDS).max(1);
    let net = Net::new();
    let mut paths = vec![Via::Plain, Via::Vdestack(1500)];
    if net.c.is_ok() {
        paths.push(Via::CBridge(1500));
    }
    paths.push(Via::Ptp(1500));
    let mut cases: Vec<(Echo, udp_echo::Client)> = paths
        .iter()
        .map(|p| {
            let (s, c, at, from) = p.ends(&net, libc::SOCK_DGRAM);
            udp_pair(s, c, at, from)
        })
        .collect();
    // Warm-up, discarded (ARP, the switch's MAC table), then interleaved rounds.
    let samples = udp_rounds(&mut cases, n, UDP_ROUNDS, per_round);
    let mut rep = Report::new(UDP_TITLE);
    for (i, p) in paths.iter().enumerate() {
        rep.latency(&p.label(), &samples[i], Some(&samples[0]));
    }
    rep.note(format!(
        "One {}-byte datagram out, the same back from an echo thread of the bench (both ends in \
         one process); {UDP_ROUNDS} interleaved rounds of {per_round} per path. Unpinned. A round \
         trip via the switch is 8 wake-ups (pump A, switch, pump B, echo thread, pump B, switch, \
         pump A, client) across 4 processes on the machine's CPUs.",
        udp_echo::PAYLOAD
    ));
    let labels: Vec<String> = paths.iter().map(|p| p.label()).collect();
    let lost = udp_lost(&labels, &cases);
    if !lost.is_empty() {
        rep.note(format!(
            "Lost datagrams (no reply within {:?}): {}.",
            udp_echo::WAIT,
            lost.join(", ")
        ));
    }
    if let Err(e) = &net.c {
        rep.note(format!("C bridge reference skipped: {e}"));
    }
    drop(cases);
    rep
}
