//! `ioth-fault-holder`: a test application for tests/faults.rs, meant to be killed.
//!
//! `ioth-fault-holder <plugin> <count> [hang]` creates `count` stacks of `plugin`, each with one
//! UDP socket bound on 127.0.0.1, prints `pids <pid> <pid> …` (the host pids) on stdout, and
//! then waits — at most 120 s, so that a test that forgets it leaves nothing for long. With
//! `hang`, a thread then calls `msocket` on the first stack (for the `hang` test plug-in, whose
//! socket() never returns) and the line is printed once that call is under way.

use std::io::Write;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(plugin), Some(count)) = (args.get(1), args.get(2).and_then(|c| c.parse().ok()))
    else {
        eprintln!("usage: ioth-fault-holder <plugin> <count> [hang]");
        std::process::exit(2);
    };
    let hang = args.get(3).is_some_and(|a| a == "hang");
    let mut stacks = Vec::new();
    let mut sockets = Vec::new();
    for i in 0..count {
        let stack = match ioth::Stack::new(plugin, &[] as &[&str]) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ioth-fault-holder: stack {i}: {e}");
                std::process::exit(1);
            }
        };
        if !hang {
            let s: std::net::UdpSocket = stack
                .msocket(libc::AF_INET, libc::SOCK_DGRAM, 0)
                .expect("msocket")
                .into();
            let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
            socket2::SockRef::from(&s).bind(&any.into()).expect("bind");
            sockets.push(s);
        }
        stacks.push(stack);
    }
    if hang {
        let first = stacks[0].clone();
        std::thread::spawn(move || {
            let _ = first.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        });
    }
    let pids: Vec<String> = stacks
        .iter()
        .map(|s| s.pid().unwrap_or(0).to_string())
        .collect();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "pids {}", pids.join(" "));
    let _ = out.flush();
    drop(out);
    std::thread::sleep(Duration::from_secs(120));
}
