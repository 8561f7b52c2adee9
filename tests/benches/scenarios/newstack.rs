//! `Stack::new`+`delete` latency against the cost of starting any process: "newstack costs one
//! process start".

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ioth::Stack;

use crate::support::samples::fmt_duration;
use crate::support::{release_host, Opts, Report, Samples};

const N: usize = 200;

/// The pause before each case of the "after idle" rows.
const IDLE: std::time::Duration = std::time::Duration::from_millis(20);

fn spawn_true() {
    spawn(std::path::Path::new("/bin/true"), true);
}

/// Runs `path` to its end; `ok` whether it must succeed.
fn spawn(path: &std::path::Path, ok: bool) {
    let st = Command::new(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("run {}: {e}", path.display()));
    assert_eq!(st.success(), ok, "{} {st}", path.display());
}

pub fn run(opts: &Opts) -> Report {
    let n = opts.n(N);
    let (host, _) = release_host().expect("host binary");
    // Started by hand, the host finds no channel on fd 3 and exits at once (status 2).
    let spawn_host = || spawn(&host, false);
    let mut bare_host = Samples::with_capacity(n);
    let mut spawn = Samples::with_capacity(n);
    let mut both = Samples::with_capacity(n);
    let mut new = Samples::with_capacity(n);
    let mut del = Samples::with_capacity(n);
    let mut exec_both = Samples::with_capacity(n);
    let mut exec_del = Samples::with_capacity(n);
    for _ in 0..5 {
        spawn_true();
        spawn_host();
        drop(Stack::new("kernel", &[] as &[&str]).expect("newstack"));
    }
    for i in 0..n {
        let mut stack_case = || {
            let t0 = Instant::now();
            let s = Stack::new("kernel", &[] as &[&str]).expect("newstack");
            let t1 = Instant::now();
            s.delete().map_err(ioth::Error::from).expect("delete");
            let t2 = Instant::now();
            new.push(t1 - t0);
            del.push(t2 - t1);
            both.push(t2 - t0);
            // The same, with an exec per stack (the design before the fork server).
            let t0 = Instant::now();
            let s = Stack::builder("kernel")
                .fork_server(false)
                .build()
                .expect("newstack");
            let t1 = Instant::now();
            s.delete().map_err(ioth::Error::from).expect("delete");
            let t2 = Instant::now();
            exec_del.push(t2 - t1);
            exec_both.push(t2 - t0);
        };
        match i % 3 {
            0 => {
                spawn.time(spawn_true);
                bare_host.time(spawn_host);
                stack_case();
            }
            1 => {
                bare_host.time(spawn_host);
                stack_case();
                spawn.time(spawn_true);
            }
            _ => {
                stack_case();
                spawn.time(spawn_true);
                bare_host.time(spawn_host);
            }
        }
    }
    // After idle time, as an application that makes a stack now and then sees it (the CPUs
    // have gone idle, caches are cold): each case after a pause of IDLE.
    let m = (n / 4).max(1);
    let mut idle_spawn = Samples::with_capacity(m);
    let mut idle_new = Samples::with_capacity(m);
    for _ in 0..m {
        std::thread::sleep(IDLE);
        idle_spawn.time(spawn_true);
        std::thread::sleep(IDLE);
        let t0 = Instant::now();
        let s = Stack::new("kernel", &[] as &[&str]).expect("newstack");
        idle_new.push(t0.elapsed());
        s.delete().map_err(ioth::Error::from).expect("delete");
    }
    // The same in applications of their own, with and without the spare host (a fork server's
    // spare is per application), after pauses and back to back.
    let idle_own = own_application(&host, m, IDLE);
    let loop_own = own_application(&host, n, std::time::Duration::ZERO);
    let probe = Stack::new("kernel", &[] as &[&str]).expect("newstack");
    let rss = probe.stats().map(|s| s.rss_bytes).unwrap_or(0);
    probe.delete().map_err(ioth::Error::from).expect("delete");
    let mut rep = Report::new("newstack + delstack (kernel plug-in)");
    rep.latency("spawn /bin/true + wait (baseline)", &spawn, Some(&spawn));
    rep.latency(
        "spawn ioth-host bare (no channel, exits)",
        &bare_host,
        Some(&spawn),
    );
    rep.latency("Stack::new(\"kernel\") + delete", &both, Some(&spawn));
    rep.latency("  of which Stack::new", &new, Some(&spawn));
    rep.latency("  of which delete", &del, Some(&spawn));
    rep.latency(
        "same, exec per stack (IOTH_NO_FORK_SERVER=1)",
        &exec_both,
        Some(&spawn),
    );
    rep.latency("  of which delete", &exec_del, Some(&spawn));
    rep.latency(
        "after 20 ms idle: spawn /bin/true + wait (baseline)",
        &idle_spawn,
        Some(&idle_spawn),
    );
    rep.latency("after 20 ms idle: Stack::new", &idle_new, Some(&idle_spawn));
    // Each pair: without the spare host (the baseline), then with it.
    let mut pair = |what: &str, n: usize, without: Duration, with: Duration| {
        let n = format!("2 x {n}");
        rep.value(
            &format!("{what}, IOTH_SPARE_HOST=0 (baseline)"),
            &n,
            &fmt_duration(without),
            "",
            "1.00x",
        );
        rep.value(
            &format!("{what} (spare host)"),
            &n,
            &fmt_duration(with),
            "",
            &format!("{:.2}x", with.as_secs_f64() / without.as_secs_f64()),
        );
    };
    pair(
        "after 20 ms idle, own application: Stack::new",
        m,
        idle_own.without.new,
        idle_own.with_spare.new,
    );
    pair(
        "back to back, own application: Stack::new + delete",
        n,
        loop_own.without.cycle,
        loop_own.with_spare.cycle,
    );
    pair(
        "back to back, own application: Stack::new",
        n,
        loop_own.without.new,
        loop_own.with_spare.new,
    );
    rep.value(
        "ioth-host resident memory, one idle kernel stack",
        "1",
        &format!("{:.1} MiB", rss as f64 / (1 << 20) as f64),
        "",
        "",
    );
    rep.note(
        "Stack::new = fork of the fork server (or, exec per stack: spawn ioth-host) + handshake \
         + dlopen plug-in + newstack; delete = DelStack round trip (the host is reaped in the \
         background).",
    );
    rep.note(
        "Own application: ioth-fault-holder --idle-newstack (after pauses of 20 ms, or back to \
         back), twice with the spare host and twice without (IOTH_SPARE_HOST=0), alternating; the \
         median of each run's medians. The spare is a host the fork server forks after each \
         host, which becomes the next stack's host without a round trip through the fork server.",
    );
    rep.note(format!(
        "Stack::new + delete = {:.2}x a bare start of the ioth-host binary itself.",
        both.median().as_secs_f64() / bare_host.median().as_secs_f64()
    ));
    rep
}

/// Medians of one kind of application run ([`own_application`]).
#[derive(Default, Clone, Copy)]
struct Medians {
    /// `Stack::new`.
    new: Duration,
    /// `Stack::new` + `delete`.
    cycle: Duration,
}

/// [`Medians`] with and without the spare host.
struct OwnRuns {
    with_spare: Medians,
    without: Medians,
}

/// `ioth-fault-holder --idle-newstack n pause`, twice with the spare host and twice without
/// (`IOTH_SPARE_HOST=0`), alternating: the median of each kind's run medians.
fn own_application(host: &std::path::Path, n: usize, pause: Duration) -> OwnRuns {
    let mut with_spare = Vec::new();
    let mut without = Vec::new();
    for round in 0..4 {
        let spare = round % 2 == 0;
        let out = Command::new(env!("CARGO_BIN_EXE_ioth-fault-holder"))
            .args([
                "--idle-newstack",
                &n.to_string(),
                &pause.as_millis().to_string(),
            ])
            .env("IOTH_HOST", host)
            .env("IOTH_SPARE_HOST", if spare { "1" } else { "0" })
            .stderr(Stdio::inherit())
            .output()
            .expect("ioth-fault-holder");
        assert!(
            out.status.success(),
            "ioth-fault-holder --idle-newstack failed"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |key: &str| -> Duration {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| v.parse().ok())
                .map(Duration::from_nanos)
                .unwrap_or_else(|| panic!("no {key} in {text}"))
        };
        let m = Medians {
            new: field("median_ns="),
            cycle: field("cycle_ns="),
        };
        if spare {
            with_spare.push(m);
        } else {
            without.push(m);
        }
    }
    let mid = |v: &[Medians]| {
        let pick = |f: fn(&Medians) -> Duration| {
            let mut d: Vec<Duration> = v.iter().map(f).collect();
            d.sort();
            d[d.len() / 2]
        };
        Medians {
            new: pick(|m| m.new),
            cycle: pick(|m| m.cycle),
        }
    };
    OwnRuns {
        with_spare: mid(&with_spare),
        without: mid(&without),
    }
}
