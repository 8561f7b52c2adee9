//! The cost of auditing (docs/audit.md), in one run, as ratios: stack creation (newstack +
//! delstack of a kernel stack) and TCP throughput over native fds (127.0.0.1, a kernel stack),
//! each with a trail (audit thread at the default 1 s interval, and at 10 ms) and without,
//! interleaved in rounds. `cargo build --release --workspace && cargo bench -p ioth-tests
//! --bench audit`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ioth::Stack;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn build(trail: Option<&PathBuf>) -> Stack {
    let b = Stack::builder("kernel");
    match trail {
        Some(t) => b.audit(t),
        None => b,
    }
    .build()
    .expect("newstack kernel")
}

/// Seconds to move `bytes` from a socket of `s` to a listener on 127.0.0.1.
fn transfer(s: &Stack, bytes: usize) -> f64 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let at = l.local_addr().unwrap();
    let rx = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0;
        while n < bytes {
            let k = c.read(&mut buf).unwrap();
            assert!(k > 0);
            n += k;
        }
    });
    let c = s.msocket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
    c.connect(&at).unwrap();
    let mut c: TcpStream = c.into();
    let chunk = vec![5u8; 1 << 16];
    let t0 = Instant::now();
    let mut n = 0;
    while n < bytes {
        c.write_all(&chunk).unwrap();
        n += chunk.len();
    }
    rx.join().unwrap();
    t0.elapsed().as_secs_f64()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dir = std::env::temp_dir().join(format!("ioth-bench-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trail = dir.join("t.jsonl");
    let rounds = if quick { 20 } else { 200 };
    // Creation: off / on (1 s) interleaved; the NewStack and DelStack replies timed apart.
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let (mut new_off, mut new_on, mut del_off, mut del_on) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        let mut cases = [
            (&mut off, &mut new_off, &mut del_off, None),
            (&mut on, &mut new_on, &mut del_on, Some(&trail)),
        ];
        // Each first in every other round: a stack's host ends (and an audited one makes its
        // last look) in the background, which weighs on whatever runs right after it.
        if i % 2 == 1 {
            cases.reverse();
        }
        for (v, n, d, t) in cases {
            let t0 = Instant::now();
            let s = build(t);
            let t1 = Instant::now();
            s.delete().map_err(ioth::Error::from).unwrap();
            let t2 = Instant::now();
            v.push((t2 - t0).as_secs_f64());
            n.push((t1 - t0).as_secs_f64());
            d.push((t2 - t1).as_secs_f64());
        }
    }
    let (c_off, c_on) = (median(off), median(on));
    let (n_off, n_on, d_off, d_on) = (
        median(new_off),
        median(new_on),
        median(del_off),
        median(del_on),
    );
    // Throughput: off / on at 1 s / on at 10 ms, each its own stack, interleaved.
    let bytes = if quick { 64 << 20 } else { 512 << 20 };
    let s_off = build(None);
    let s_on = build(Some(&trail));
    std::env::set_var("IOTH_AUDIT_INTERVAL", "10");
    let s_fast = build(Some(&trail));
    let (mut t_off, mut t_on, mut t_fast) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..if quick { 3 } else { 7 } {
        t_off.push(transfer(&s_off, bytes));
        t_on.push(transfer(&s_on, bytes));
        t_fast.push(transfer(&s_fast, bytes));
    }
    let gbps = |t: f64| bytes as f64 * 8.0 / t / 1e9;
    let (a, b, c) = (median(t_off), median(t_on), median(t_fast));
    println!("| measure | audit off | audit on (1 s) | ratio on/off |");
    println!("|---|---:|---:|---:|");
    println!(
        "| newstack + delstack (kernel), median of {rounds} | {:.3} ms | {:.3} ms | {:.2} |",
        c_off * 1e3,
        c_on * 1e3,
        c_on / c_off
    );
    println!(
        "| of which newstack (until its reply) | {:.3} ms | {:.3} ms | {:.2} |",
        n_off * 1e3,
        n_on * 1e3,
        n_on / n_off
    );
    println!(
        "| of which delstack (until its reply) | {:.3} ms | {:.3} ms | {:.2} |",
        d_off * 1e3,
        d_on * 1e3,
        d_on / d_off
    );
    println!(
        "| TCP 127.0.0.1, native fd, {} MiB, median | {:.2} Gbit/s | {:.2} Gbit/s | {:.3} |",
        bytes >> 20,
        gbps(a),
        gbps(b),
        gbps(b) / gbps(a)
    );
    println!(
        "| same, audit interval 10 ms | | {:.2} Gbit/s | {:.3} |",
        gbps(c),
        gbps(c) / gbps(a)
    );
    let lines = std::fs::read_to_string(&trail).map_or(0, |t| t.lines().count());
    println!("\n{lines} trail lines written");
    drop((s_off, s_on, s_fast));
    std::thread::sleep(Duration::from_millis(100));
    let _ = std::fs::remove_dir_all(&dir);
}
