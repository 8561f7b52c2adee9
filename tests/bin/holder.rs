//! `ioth-fault-holder`: a test application for tests/lifecycle.rs, meant to be killed.
//!
//! `ioth-fault-holder <plugin> <count> [hang]` creates `count` stacks of `plugin`, each with one
//! UDP socket bound on 127.0.0.1, prints `pids <pid> <pid> …` (the host pids) on stdout, and
//! then waits — at most 120 s, so that a test that forgets it leaves nothing for long. With
//! `hang`, a thread then calls `msocket` on the first stack (for the `hang` test plug-in, whose
//! socket() never returns) and the line is printed once that call is under way.
//!
//! `ioth-fault-holder --fd-budget <limit>` lowers its open-files limit to `limit`, then creates
//! kernel stacks with one socket each until the next one fails, and prints
//! `limit=<limit> base=<fds open before the first> reached=<stacks made>`.
//!
//! `ioth-fault-holder --batch-budget <free>` makes a kernel stack and one UDP socket, lowers its
//! open-files limit so that `free` fds are left, then makes UDP sockets on that stack (the second
//! and later ones in batches, which the kernel cuts to the room left) until one fails, and
//! prints `free=<free> reached=<sockets made after the first> errno=<errno of the failure>
//! spares=<spares held at the end> first_batch_spares=<spares kept from the first batch>`.
//!
//! `ioth-fault-holder --rogue <mode>` (run with `IOTH_HOST` naming `ioth-rogue-host` and
//! `IOTH_NO_FORK_SERVER=1`) makes a stack on that host with VNL `<mode>`, asks it for two UDP
//! sockets (the second is a batch), drops everything and prints `first=<ok|errno>
//! second=<ok|errno> gone=<the stack is known dead> fds_before=<n> fds_after=<n> error=<text>`.
//!
//! `ioth-fault-holder --idle-newstack <n> <ms>` makes and deletes `n` kernel stacks, each after
//! a pause of `ms` milliseconds (0: back to back), and prints `median_ns=<Stack::new median>
//! p90_ns=<its p90> cycle_ns=<Stack::new + delete median> spares=<spare hosts it has after one
//! more pause>` (an application of its own, so that
//! `IOTH_SPARE_HOST` applies to its fork server: for the benches and tests/lifecycle.rs).
//!
//! `ioth-fault-holder --spares-elsewhere` fills its fd table while one kernel stack holds spare
//! sockets, then asks another stack for a socket and creates a third stack; prints
//! `socket=<ok|errno> spares_after_socket=<spares left on the first> newstack=<ok|errno>`.

use std::io::Write;
use std::time::Duration;

/// Open fds of this process numbered below `limit` (the directory fd that lists them not
/// counted): those above it, inherited from a parent, take no room under the limit.
fn open_fds_below(limit: u64) -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| {
        d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .filter(|&n| n < limit)
            .count()
    }) - 1
}

fn fd_budget(limit: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    // The fork server and the library's thread first: they are the application's, not a stack's.
    let warm = ioth::Stack::new("kernel", &[] as &[&str]).expect("newstack");
    let pid = warm.pid().unwrap_or(0);
    warm.delete().map_err(ioth::Error::from).expect("delete");
    // The reaper holds a pidfd until it has reaped the host.
    for _ in 0..1000 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(20));
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, limit, hard).expect("setrlimit");
    let base = open_fds_below(limit);
    let mut kept = Vec::new();
    let why = loop {
        let stack = match ioth::Stack::new("kernel", &[] as &[&str]) {
            Ok(s) => s,
            Err(e) => break e.to_string(),
        };
        match stack.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0) {
            Ok(s) => kept.push((stack, s)),
            Err(e) => break e.to_string(),
        }
    };
    println!(
        "limit={limit} base={base} reached={} (stopped by: {why})",
        kept.len()
    );
    // Room again for the deletes (the reaper's pidfds).
    setrlimit(Resource::RLIMIT_NOFILE, hard.min(4096), hard).expect("setrlimit");
    for (stack, s) in kept {
        drop(s);
        stack.delete().map_err(ioth::Error::from).expect("delete");
    }
}

fn batch_budget(free: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let stack = ioth::Stack::new("kernel", &[] as &[&str]).expect("newstack");
    let first = stack
        .msocket(libc::AF_INET, libc::SOCK_DGRAM, 0)
        .expect("msocket");
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    // The limit is one more than the highest fd number a new fd may get: the lowest limit
    // that leaves `free` numbers unused below it.
    let open: Vec<u64> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .collect();
    let limit = (1..hard)
        .find(|&l| l - open.iter().filter(|&&n| n < l).count() as u64 > free as u64)
        .expect("a limit")
        - 1;
    let below = open_fds_below(limit);
    setrlimit(Resource::RLIMIT_NOFILE, limit, hard).expect("setrlimit");
    let room = limit as usize - below;
    let mut kept = Vec::new();
    let mut cut = usize::MAX;
    let errno = loop {
        match stack.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0) {
            Ok(s) => kept.push(s),
            Err(e) => break e.errno(),
        }
        if kept.len() == 1 {
            cut = stack.stats().map_or(usize::MAX, |s| s.spare_sockets);
        }
        if kept.len() > 1000 {
            break 0;
        }
    };
    let spares = stack.stats().map_or(usize::MAX, |s| s.spare_sockets);
    println!(
        "free={room} reached={} errno={errno} spares={spares} first_batch_spares={cut}",
        kept.len()
    );
    setrlimit(Resource::RLIMIT_NOFILE, hard.min(4096), hard).expect("setrlimit");
    drop((first, kept));
    stack.delete().map_err(ioth::Error::from).expect("delete");
}

/// Opens `/dev/null` until the fd table is full (under the current limit); the files.
fn fill_fd_table() -> Vec<std::fs::File> {
    let mut v = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        v.push(f);
        if v.len() > 100_000 {
            break;
        }
    }
    v
}

fn spares_elsewhere() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let udp = || (libc::AF_INET, libc::SOCK_DGRAM, 0);
    let a = ioth::Stack::new("kernel", &[] as &[&str]).expect("newstack a");
    let (d, t, p) = udp();
    let a1 = a.msocket(d, t, p).expect("a: first");
    let a2 = a.msocket(d, t, p).expect("a: second (a batch)");
    let held = a.stats().map_or(0, |s| s.spare_sockets);
    assert!(held > 0, "stack a holds no spare");
    let b = ioth::Stack::new("kernel", &[] as &[&str]).expect("newstack b");
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, 256, hard).expect("setrlimit");
    let filler = fill_fd_table();
    let socket = match b.msocket(libc::AF_INET, libc::SOCK_STREAM, 0) {
        Ok(s) => {
            drop(s);
            "ok".to_string()
        }
        Err(e) => e.errno().to_string(),
    };
    let after = a.stats().map_or(usize::MAX, |s| s.spare_sockets);
    // Spares on `a` again (a batch cut to the room the closed ones left), the table full again.
    let a3 = a.msocket(d, t, p).expect("a: third");
    let refill = fill_fd_table();
    let newstack = match ioth::Stack::new("kernel", &[] as &[&str]) {
        Ok(c) => {
            drop(c);
            "ok".to_string()
        }
        Err(e) => e.errno().to_string(),
    };
    println!("held={held} socket={socket} spares_after_socket={after} newstack={newstack}");
    drop((filler, refill));
    setrlimit(Resource::RLIMIT_NOFILE, hard.min(4096), hard).expect("setrlimit");
    drop((a1, a2, a3));
    a.delete().map_err(ioth::Error::from).expect("delete a");
    b.delete().map_err(ioth::Error::from).expect("delete b");
}

fn rogue(mode: &str) {
    let before = ioth_tests::proc::self_fd_count();
    let stack = ioth::Stack::builder("rogue")
        .vnl(mode)
        .build()
        .expect("newstack on the rogue host");
    let pid = stack.pid().unwrap_or(0);
    let udp = || stack.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0);
    let first = udp();
    let second = udp();
    let said = |r: &Result<ioth::Socket, ioth::Error>| match r {
        Ok(_) => "ok".to_string(),
        Err(e) => e.errno().to_string(),
    };
    let (f, s) = (said(&first), said(&second));
    let error = second
        .as_ref()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    let gone = stack.is_gone();
    drop((first, second, stack));
    // The reaper holds the host's pidfd until it has reaped it.
    for _ in 0..1000 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(20));
    let after = ioth_tests::proc::self_fd_count();
    println!(
        "first={f} second={s} gone={gone} fds_before={before} fds_after={after} error={error}"
    );
}

fn idle_newstack(n: usize, pause: Duration) {
    let mut took = Vec::with_capacity(n);
    let mut cycle = Vec::with_capacity(n);
    for _ in 0..n {
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        let t0 = std::time::Instant::now();
        let s = ioth::Stack::new("kernel", &[] as &[&str]).expect("newstack");
        took.push(t0.elapsed());
        s.delete().map_err(ioth::Error::from).expect("delete");
        cycle.push(t0.elapsed());
    }
    took.sort();
    cycle.sort();
    // After one more pause: the spare hosts this process has (children named `ioth-spare`).
    std::thread::sleep(pause);
    let spares = ioth_tests::proc::children(Some("ioth-spare")).len();
    println!(
        "median_ns={} p90_ns={} cycle_ns={} spares={spares}",
        took[n / 2].as_nanos(),
        took[(n * 9 / 10).min(n - 1)].as_nanos(),
        cycle[n / 2].as_nanos()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "--idle-newstack") {
        let n = args
            .get(2)
            .and_then(|v| v.parse().ok())
            .unwrap_or(50usize)
            .max(1);
        let ms = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(20);
        idle_newstack(n, Duration::from_millis(ms));
        return;
    }
    if args.get(1).is_some_and(|a| a == "--rogue") {
        rogue(args.get(2).map_or("", String::as_str));
        return;
    }
    if args.get(1).is_some_and(|a| a == "--spares-elsewhere") {
        spares_elsewhere();
        return;
    }
    if args.get(1).is_some_and(|a| a == "--batch-budget") {
        let free = args.get(2).and_then(|l| l.parse().ok()).unwrap_or(5);
        batch_budget(free);
        return;
    }
    if args.get(1).is_some_and(|a| a == "--fd-budget") {
        let limit = args.get(2).and_then(|l| l.parse().ok()).unwrap_or(200);
        fd_budget(limit);
        return;
    }
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
