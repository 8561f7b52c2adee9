//! Scale: N kernel stacks in one application, each with one working socket.
//!
//! `cargo build --release --workspace && cargo bench -p ioth-tests --bench scale -- [max N]`
//! (default 1000). For N in 10, 100, 1000 (up to max N, and max N itself), creates N stacks
//! one after the other, each with a UDP socket bound on 127.0.0.1 that echoes one datagram of a
//! plain socket; reports the time per stack (newstack + msocket + echo), the host memory per
//! stack — VmRSS summed over the hosts / N, which counts shared pages (the host binary, libc) in
//! every host, and Pss from smaps_rollup, which divides them — and the time per delete. Stops
//! at the first failure and says why; the largest N reached is the last line.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use ioth::Stack;

fn kb(pid: u32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Raises this process's open-files limit as far as allowed (each stack costs the application
/// three fds: channel, pidfd and its socket).
fn raise_nofile(want: u64) -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    if hard < want && setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
        return want;
    }
    let target = hard.min(want.max(soft));
    if setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok() {
        target
    } else {
        soft
    }
}

struct Row {
    n: usize,
    per_stack: Duration,
    rss_kb: u64,
    pss_kb: u64,
    per_delete: Duration,
}

/// Runs one round of `n` stacks; `Err` says how far it got and why it stopped.
fn round(n: usize) -> Result<Row, (usize, String)> {
    let peer = UdpSocket::bind("127.0.0.1:0").map_err(|e| (0, e.to_string()))?;
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| (0, e.to_string()))?;
    let mut stacks = Vec::with_capacity(n);
    let mut socks = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        let stack = Stack::new("kernel", &[] as &[&str]).map_err(|e| (i, e.to_string()))?;
        let s: UdpSocket = stack
            .msocket(libc::AF_INET, libc::SOCK_DGRAM, 0)
            .map_err(|e| (i, e.to_string()))?
            .into();
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
        socket2::SockRef::from(&s)
            .bind(&any.into())
            .map_err(|e| (i, format!("bind: {e}")))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| (i, e.to_string()))?;
        peer.send_to(b"ping", s.local_addr().map_err(|e| (i, e.to_string()))?)
            .map_err(|e| (i, e.to_string()))?;
        let mut b = [0u8; 8];
        let (len, from) = s.recv_from(&mut b).map_err(|e| (i, format!("echo: {e}")))?;
        s.send_to(&b[..len], from).map_err(|e| (i, e.to_string()))?;
        peer.recv_from(&mut b)
            .map_err(|e| (i, format!("echo back: {e}")))?;
        stacks.push(stack);
        socks.push(s);
    }
    let per_stack = t0.elapsed() / n as u32;
    let (mut rss, mut pss) = (0, 0);
    for s in &stacks {
        let pid = s.pid().unwrap_or(0);
        rss += kb(pid, "status", "VmRSS:");
        pss += kb(pid, "smaps_rollup", "Pss:");
    }
    drop(socks);
    let t1 = Instant::now();
    for s in stacks {
        s.delete().map_err(|e| (n, format!("delete: {e}")))?;
    }
    Ok(Row {
        n,
        per_stack,
        rss_kb: rss / n as u64,
        pss_kb: pss / n as u64,
        per_delete: t1.elapsed() / n as u32,
    })
}

fn main() {
    let max: usize = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let nofile = raise_nofile(3 * max as u64 + 256);
    let mut sizes: Vec<usize> = [10, 100, 1000].into_iter().filter(|n| *n < max).collect();
    sizes.push(max);
    println!("# scale: kernel stacks, one UDP socket each (RLIMIT_NOFILE {nofile})");
    println!(
        "| N | time per stack | host VmRSS per stack | host PSS per stack | delete per stack |"
    );
    println!("|---:|---:|---:|---:|---:|");
    let mut reached = 0;
    for n in sizes {
        match round(n) {
            Ok(r) => {
                println!(
                    "| {} | {:.2} ms | {} kB | {} kB | {:.2} ms |",
                    r.n,
                    r.per_stack.as_secs_f64() * 1e3,
                    r.rss_kb,
                    r.pss_kb,
                    r.per_delete.as_secs_f64() * 1e3
                );
                reached = n;
            }
            Err((got, why)) => {
                println!("stopped at N = {n}: stack {got} failed: {why}");
                reached = reached.max(got);
                break;
            }
        }
    }
    println!("largest N reached: {reached}");
}
