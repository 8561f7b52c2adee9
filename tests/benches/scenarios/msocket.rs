//! `msocket`+close latency against plain socket(2)+close, and against its floor: the same round
//! trip (SEQPACKET request, socket(), SCM_RIGHTS reply) between two processes with no ioth code.
//! The round trips are measured in each CPU placement, since on a VM a cross-CPU wake-up costs
//! far more than the work itself (see BENCHMARKS.md). Two kernel stacks side by side: one with
//! sockets handed over in batches (the default: one round trip every 8 sockets of a kind) and
//! one with `socket_batch(false)` (`IOTH_SOCKET_BATCH=0`: a round trip per socket, the design
//! before batches); for the batched one the mean is the cost per socket, its round trips
//! included.

use std::os::fd::{FromRawFd, OwnedFd};

use ioth::Stack;

use crate::support::affinity::{Cpus, Placement};
use crate::support::floor::FdPeer;
use crate::support::samples::fmt_duration;
use crate::support::{Opts, Report, Samples};

const N: usize = 20_000;
const ROUND: usize = 1_000;
/// Untimed calls after each change of placement (migrations settle).
const SETTLE: usize = 100;
const DOMAIN: i32 = libc::AF_INET;
const TYPE: i32 = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;

fn plain_socket() -> OwnedFd {
    // SAFETY: socket(2) takes plain integers and returns a new fd or -1.
    let fd = unsafe { libc::socket(DOMAIN, TYPE, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is new and owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The round-trip cases of one placement.
struct PerPlacement {
    placement: Placement,
    floor: Samples,
    /// Batched (the default).
    msocket: Samples,
    /// One request per socket.
    single: Samples,
}

pub fn run(opts: &Opts) -> Report {
    let n = opts.n(N);
    let round = ROUND.min(n);
    let cpus = Cpus::new();
    let kernel = Stack::builder("kernel")
        .socket_batch(true)
        .build()
        .expect("newstack kernel");
    let unbatched = Stack::builder("kernel")
        .socket_batch(false)
        .build()
        .expect("newstack kernel");
    let native = Stack::native();
    let peer = FdPeer::start(DOMAIN, TYPE);
    let peers = [
        kernel.pid().expect("host pid"),
        unbatched.pid().expect("host pid"),
        peer.pid(),
    ];
    let host_call = || drop(kernel.msocket(DOMAIN, TYPE, 0).unwrap());
    let single_call = || drop(unbatched.msocket(DOMAIN, TYPE, 0).unwrap());
    let floor_call = || drop(peer.socket());

    let mut plain = Samples::with_capacity(n);
    let mut via_native = Samples::with_capacity(n);
    let mut per: Vec<PerPlacement> = cpus
        .placements()
        .into_iter()
        .map(|placement| PerPlacement {
            placement,
            floor: Samples::with_capacity(n),
            msocket: Samples::with_capacity(n),
            single: Samples::with_capacity(n),
        })
        .collect();
    // Warm-up, discarded.
    for _ in 0..round {
        drop(plain_socket());
        drop(native.msocket(DOMAIN, TYPE, 0).unwrap());
        floor_call();
        host_call();
        single_call();
    }
    // Interleaved rounds, the order rotating, so that drift hits every case alike.
    let blocks = per.len() + 1;
    for r in 0..n.div_ceil(round) {
        let this = round.min(n - r * round);
        for k in 0..blocks {
            let b = (r + k) % blocks;
            if b == per.len() {
                // In-process cases: no peer, placement does not matter.
                cpus.restore(&peers);
                for i in 0..2 * this {
                    if (i + r) % 2 == 0 {
                        plain.time(|| drop(plain_socket()));
                    } else {
                        via_native.time(|| drop(native.msocket(DOMAIN, TYPE, 0).unwrap()));
                    }
                }
                continue;
            }
            let p = &mut per[b];
            cpus.place(p.placement, &peers);
            for _ in 0..SETTLE {
                floor_call();
                host_call();
                single_call();
            }
            for i in 0..3 * this {
                match (i + r) % 3 {
                    0 => p.floor.time(floor_call),
                    1 => p.msocket.time(host_call),
                    _ => p.single.time(single_call),
                }
            }
        }
    }
    cpus.restore(&peers);
    drop(peer);
    kernel.delete().map_err(ioth::Error::from).expect("delete");
    unbatched
        .delete()
        .map_err(ioth::Error::from)
        .expect("delete");

    let mut rep = Report::new("msocket + close (AF_INET, SOCK_STREAM|SOCK_CLOEXEC)");
    rep.latency("socket(2) + close (baseline)", &plain, Some(&plain));
    rep.latency(
        "ioth msocket + close, native stack (no host)",
        &via_native,
        Some(&plain),
    );
    for p in &per {
        let l = p.placement.label();
        rep.latency(&format!("raw floor, {l}"), &p.floor, Some(&plain));
        rep.latency(
            &format!("ioth msocket + close, kernel stack, batched, {l}"),
            &p.msocket,
            Some(&plain),
        );
        rep.latency(
            &format!("ioth msocket + close, kernel stack, IOTH_SOCKET_BATCH=0, {l}"),
            &p.single,
            Some(&plain),
        );
    }
    let over: Vec<String> = per
        .iter()
        .map(|p| {
            format!(
                "{} {:.2}x",
                p.placement.label(),
                p.single.median().as_secs_f64() / p.floor.median().as_secs_f64()
            )
        })
        .collect();
    rep.note(format!(
        "msocket with IOTH_SOCKET_BATCH=0 over its raw floor (median/median): {}.",
        over.join(", ")
    ));
    let means: Vec<String> = per
        .iter()
        .map(|p| {
            format!(
                "{} {} batched, {} IOTH_SOCKET_BATCH=0, {} raw floor ({:.2}x the floor)",
                p.placement.label(),
                fmt_duration(p.msocket.mean()),
                fmt_duration(p.single.mean()),
                fmt_duration(p.floor.mean()),
                p.msocket.mean().as_secs_f64() / p.floor.mean().as_secs_f64()
            )
        })
        .collect();
    rep.note(format!(
        "Mean per msocket + close (batched: a Sockets round trip of 8 every 8 calls, included): {}.",
        means.join("; ")
    ));
    rep.note(
        "Raw floor: a forked peer answering a 1-byte SEQPACKET request with socket() and one \
         SCM_RIGHTS reply, no ioth code. Placement: the bench thread and the peer process \
         (host or floor peer) on one CPU, on two, or left to the scheduler.",
    );
    rep.note(format!(
        "Interleaved rounds of {round} per case; per-call times."
    ));
    rep
}
