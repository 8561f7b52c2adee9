//! newstack + delstack of the stack kinds side by side, against the cost of starting any
//! process: a kernel stack, a vdestack stack without an interface (a network namespace, no
//! tap) and one with an interface on a VDE switch (a tap, a switch connection, a pump thread),
//! each with `delete` alone beside it. Interleaved, one of each per round. The vdestack cases
//! need root, /dev/net/tun and `vde_plug`; without them they are left out and the table says
//! why.

use std::process::{Command, Stdio};
use std::time::Instant;

use ioth::Stack;
use ioth_tests::vde::Switch;

use crate::support::vde::missing;
use crate::support::{Opts, Report, Samples};

const N: usize = 200;

/// One newstack + delete of `plugin` on `vnls`: into `both` and `del`.
fn cycle(plugin: &str, vnls: &[String], both: &mut Samples, del: &mut Samples) {
    let t0 = Instant::now();
    let s = Stack::new(plugin, vnls).expect("newstack");
    let t1 = Instant::now();
    s.delete().map_err(ioth::Error::from).expect("delete");
    let t2 = Instant::now();
    both.push(t2 - t0);
    del.push(t2 - t1);
}

fn spawn_true() {
    let st = Command::new("/bin/true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run /bin/true");
    assert!(st.success());
}

pub fn run(opts: &Opts) -> Report {
    let n = opts.n(N);
    let why_not = missing(&[]);
    let switch = why_not.is_none().then(Switch::start);
    let mut cases: Vec<(String, Vec<String>)> = vec![("kernel".into(), vec![])];
    if let Some(sw) = &switch {
        cases.push(("vdestack".into(), vec![]));
        cases.push(("vdestack".into(), vec![sw.vnl()]));
    }
    let label = |(p, v): &(String, Vec<String>)| match (p.as_str(), v.len()) {
        ("kernel", _) => "kernel".to_owned(),
        (_, 0) => "vdestack, no interface".to_owned(),
        _ => "vdestack, one interface on a switch".to_owned(),
    };
    let mut spawn = Samples::with_capacity(n);
    let mut both: Vec<Samples> = cases.iter().map(|_| Samples::with_capacity(n)).collect();
    let mut del: Vec<Samples> = cases.iter().map(|_| Samples::with_capacity(n)).collect();
    for (p, v) in &cases {
        for _ in 0..5 {
            drop(Stack::new(p, v).expect("newstack"));
        }
    }
    for i in 0..n {
        spawn.time(spawn_true);
        // A different case first in each round.
        for k in 0..cases.len() {
            let c = (i + k) % cases.len();
            cycle(&cases[c].0, &cases[c].1, &mut both[c], &mut del[c]);
        }
    }
    let mut rep = Report::new("newstack + delstack by kind of stack");
    rep.latency("spawn /bin/true + wait (baseline)", &spawn, Some(&spawn));
    for (c, case) in cases.iter().enumerate() {
        rep.latency(
            &format!("{}: newstack + delete", label(case)),
            &both[c],
            Some(&spawn),
        );
        rep.latency("  of which delete", &del[c], Some(&spawn));
    }
    if let Some(why) = why_not {
        rep.note(format!("vdestack cases left out: {why}"));
    }
    rep.note(
        "delete returns once the host has answered DelStack; the host's exit (the kernel \
         tearing down its namespace and tap) and its reaping happen in the background.",
    );
    rep
}
