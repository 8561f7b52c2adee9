//! Host lifecycle: what happens to hosts when their application is killed (no host, zombie or
//! network namespace left, a host stuck in its plug-in ended too), when stacks are dropped or
//! deleted (hosts reaped), over thousands of sockets and hundreds of stacks (fd and process
//! counts unchanged), when the fork server is killed, under a lowered open-files limit (two fds
//! per stack), and what `stats`, the host's pid and its process name say. The killed
//! application is `ioth-fault-holder` (tests/bin/holder.rs); the `hang` plug-in comes from
//! [`ioth_tests::fault_plugins`].
//!
//! No timed assertions: waits are bounded with generous limits and the times measured are
//! printed (`cargo test --test lifecycle -- --nocapture` shows them).

use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use ioth::Stack;
use ioth_tests::cprog::Reaped;
use ioth_tests::fault_plugins::{self, assert_died, plugin_dir, BOUND};
use ioth_tests::proc::{self, cmdline, host_running, is_host, sigkill, time_until};
use ioth_tests::report::Report;
use ioth_tests::stacks::kernel;
use ioth_tests::stdsock::{udp_echo_once, udp_loopback};

/// The fault plug-ins built (in this binary's directory), the shared lock taken.
fn setup() -> RwLockReadGuard<'static, ()> {
    fault_plugins::setup(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("lifecycle-plugins"))
}

/// As [`setup`], with the lock taken exclusively (a test that counts fds and processes).
fn setup_exclusive() -> RwLockWriteGuard<'static, ()> {
    fault_plugins::setup_exclusive(
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join("lifecycle-plugins"),
    )
}

/// Whether host `pid` is gone (exited and reaped) within [`BOUND`]: a deleted or dropped stack's
/// host is reaped in the background, after the kernel has torn down what it held.
fn host_reaped(pid: u32) -> bool {
    time_until(BOUND, || !is_host(pid)).is_some()
}

/// Open fds of host `pid` (0 if it is gone).
fn host_fds_of(pid: &str) -> usize {
    proc::fd_count(Some(pid.parse().expect("a pid"))).unwrap_or(0)
}

/// Our child processes (zombies included), but the fork server, which lives as long as this
/// process once a stack was made, and its spare (a host forked ahead, counted by the spare
/// tests below).
fn children() -> Vec<u32> {
    let fork_server = fork_server_pid();
    let spares = proc::children(Some("ioth-spare"));
    proc::children(None)
        .into_iter()
        .filter(|p| fork_server != Some(*p) && !spares.contains(p))
        .collect()
}

/// The spare the fork server forked ahead (a live child named `ioth-spare`), within
/// [`BOUND`], once the fork server has announced it: it sleeps again (its only blocking call is
/// the wait for the next request, after the announcement).
fn spare_pid() -> Option<u32> {
    let live = || {
        proc::children(Some("ioth-spare"))
            .into_iter()
            .find(|p| proc::state(*p).is_some_and(|s| s != 'Z'))
    };
    time_until(BOUND, || live().is_some())?;
    let server = fork_server_pid()?;
    time_until(BOUND, || proc::state(server) == Some('S'))?;
    live()
}

/// SIGKILL to `pid`, then the wait until it has died (its fds closed), as an application would
/// not know to.
fn kill_and_wait(pid: u32) {
    sigkill(pid);
    time_until(BOUND, || !proc::alive(pid)).unwrap_or_else(|| panic!("{pid} did not die"));
}

/// The pid of this process's fork server, if it runs.
fn fork_server_pid() -> Option<u32> {
    proc::children(Some("ioth-forksrv"))
        .into_iter()
        .find(|p| proc::state(*p).is_some_and(|s| s != 'Z'))
}

/// Hosts of a killed holder: those still running when the test ends (it failed) are killed.
struct Sweep(Vec<u32>);

impl Drop for Sweep {
    fn drop(&mut self) {
        for p in &self.0 {
            if host_running(*p) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*p as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Starts the holder application; returns it and the pids of its hosts.
fn holder(args: &[&str], env: &[(&str, &Path)]) -> (Reaped, Vec<u32>) {
    try_holder(args, env).unwrap_or_else(|e| panic!("{e}"))
}

/// As [`holder`]; `Err` with the holder's own words if it could not create its stacks.
fn try_holder(args: &[&str], env: &[(&str, &Path)]) -> Result<(Reaped, Vec<u32>), String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ioth-fault-holder"));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = Reaped(cmd.spawn().expect("holder"));
    let out = child.0.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).unwrap();
    let Some(list) = line.strip_prefix("pids ") else {
        let mut err = String::new();
        if let Some(mut e) = child.0.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        return Err(format!("holder {args:?} said {line:?}: {err}"));
    };
    let pids = list
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    Ok((child, pids))
}

/// The network namespace of a process (`net:[inode]`).
fn netns(pid: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|p| p.display().to_string())
}

/// Kills the holder of `pids` and checks that every host exits and is reaped (bounded waits);
/// returns the time from the kill until all had exited.
fn kill_holder_and_wait(mut app: Reaped, pids: &[u32]) -> Duration {
    let killed = Instant::now();
    app.0.kill().unwrap();
    app.0.wait().unwrap();
    // The hosts see EOF and exit; init reaps them (their parent is gone).
    if time_until(BOUND, || pids.iter().all(|p| !host_running(*p))).is_none() {
        let left: Vec<_> = pids.iter().filter(|p| host_running(**p)).collect();
        panic!(
            "hosts still running {:?} after SIGKILL: {left:?}",
            killed.elapsed()
        )
    }
    let exited = killed.elapsed();
    let reaped = time_until(BOUND, || pids.iter().all(|p| !is_host(*p)));
    println!(
        "{} hosts exited within {exited:?} of their application's SIGKILL; all reaped (by \
         init) within {:?}",
        pids.len(),
        killed.elapsed()
    );
    assert!(reaped.is_some(), "zombie hosts left");
    exited
}

#[test]
fn killed_application_leaves_no_host_behind() {
    let _g = setup();
    let audit = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("faults-audit-holder-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&audit);
    std::fs::create_dir_all(&audit).unwrap();
    let (app, pids) = holder(&["kernel", "20"], &[("IOTH_AUDIT", &audit)]);
    let _sweep = Sweep(pids.clone());
    assert_eq!(pids.len(), 20);
    for p in &pids {
        assert!(host_running(*p), "host {p} not running");
        assert_eq!(cmdline(*p), b"ioth-host[kernel]\0");
        assert_eq!(proc::ppid(*p), Some(app.0.id()));
    }
    // Its spare host (forked ahead, waiting for a stack that never comes) ends with it too.
    let mut spare = None;
    time_until(BOUND, || {
        spare = proc::children_of(app.0.id(), Some("ioth-spare"))
            .first()
            .copied();
        spare.is_some()
    });
    let spare = spare.expect("the holder's spare host");
    kill_holder_and_wait(app, &pids);
    assert!(
        time_until(BOUND, || !proc::alive(spare)).is_some(),
        "spare {spare} outlived its application"
    );
    // IOTH_AUDIT (a directory): one trail per host, written by the host.
    for p in &pids {
        let t = std::fs::read_to_string(audit.join(format!("kernel-{p}.jsonl"))).unwrap();
        // Request lines only (the trail also has the audit thread's events).
        let reqs: Vec<&str> = t
            .lines()
            .filter(|l| l.contains("\"event\":\"request\""))
            .map(|l| {
                l.split("\"request\":\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(reqs, ["Hello", "NewStack", "Socket"], "{t}");
    }
    let _ = std::fs::remove_dir_all(&audit);
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn killed_application_with_vdestack_stacks_leaves_no_namespace() {
    let _g = setup();
    let (app, pids) = try_holder(&["vdestack", "20"], &[]).unwrap_or_else(|e| panic!("{e}"));
    let _sweep = Sweep(pids.clone());
    let ours = netns("self").unwrap();
    let spaces: Vec<String> = pids
        .iter()
        .map(|p| netns(&p.to_string()).expect("host netns"))
        .collect();
    for ns in &spaces {
        assert_ne!(*ns, ours, "vdestack host in the application's namespace");
    }
    kill_holder_and_wait(app, &pids);
    // No process is left in any of the hosts' namespaces, so they are gone with their taps.
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| netns(&p.to_string()).map(|ns| (p, ns)))
        .filter(|(_, ns)| spaces.contains(ns))
        .map(|(p, ns)| format!("{p} in {ns}"))
        .collect();
    assert!(
        left.is_empty(),
        "processes left in host namespaces: {left:?}"
    );
}

#[test]
fn killed_application_ends_a_host_stuck_in_the_plugin() {
    let _g = setup();
    let (mut app, pids) = holder(&["hang", "1", "hang"], &[]);
    let _sweep = Sweep(pids.clone());
    let pid = pids[0];
    let marker = plugin_dir().join(format!("hang-{pid}"));
    time_until(BOUND, || marker.exists()).expect("the hang plug-in never got the call");
    assert!(
        proc::status_socket(pid).exists(),
        "no status socket of {pid}"
    );
    let killed = Instant::now();
    app.0.kill().unwrap();
    app.0.wait().unwrap();
    let exited = time_until(BOUND, || !host_running(pid))
        .unwrap_or_else(|| panic!("host {pid} stuck in the plug-in outlived its application"));
    // Its watchdog ended it, and removed its status socket first.
    assert!(
        !proc::status_socket(pid).exists(),
        "the watchdog left the status socket of {pid}"
    );
    println!(
        "host stuck in socket() exited {exited:?} after its application's SIGKILL \
         (watchdog grace 500 ms; {:?} in all)",
        killed.elapsed()
    );
    let _ = std::fs::remove_file(marker);
}

#[test]
fn dropped_and_deleted_stacks_reap_their_hosts() {
    let _g = setup();
    let a = kernel();
    let pa = a.pid().unwrap();
    a.delete().map_err(ioth::Error::from).unwrap();
    assert!(host_reaped(pa), "deleted host {pa} still there");
    let b = kernel();
    let pb = b.pid().unwrap();
    drop(b);
    assert!(host_reaped(pb), "dropped host {pb} still there");
    // Dropped with a stuck call's plug-in: the host's watchdog ends it on EOF.
    let c = Stack::new("hang", &[] as &[&str]).unwrap();
    let pc = c.pid().unwrap();
    let c2 = c.clone();
    let t = std::thread::spawn(move || c2.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).map(drop));
    let marker = plugin_dir().join(format!("hang-{pc}"));
    time_until(BOUND, || marker.exists()).expect("the hang plug-in never got the call");
    sigkill(pc);
    assert_died(&t.join().unwrap().unwrap_err(), "SIGKILL");
    drop(c);
    assert!(host_reaped(pc));
    let _ = std::fs::remove_file(marker);
}

#[test]
fn many_cycles_leave_fd_and_process_counts_unchanged() {
    let _g = setup_exclusive();
    // The fork server (one fd, one process) is the application's, not any stack's: start it
    // before counting.
    let warm = kernel();
    let warm_pid = warm.pid().unwrap();
    warm.delete().map_err(ioth::Error::from).unwrap();
    // The library's reaper holds a pidfd of a host until it has reaped it.
    assert!(host_reaped(warm_pid));
    std::thread::sleep(Duration::from_millis(20));
    let app_fds = proc::self_fd_count();
    let kids = children().len();
    let stack = kernel();
    let pid = stack.pid().unwrap().to_string();
    let host_fds = host_fds_of(&pid);
    let t0 = Instant::now();
    for _ in 0..10_000 {
        let s = stack
            .msocket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
            .unwrap();
        assert!(s.as_raw_fd() >= 0);
    }
    println!("10,000 socket create/close cycles in {:?}", t0.elapsed());
    // A round trip, so that the host has closed its copy of the last socket.
    let st = stack.stats().unwrap();
    // One kind of socket asked for again and again: batches of 8 (StackBuilder::socket_batch),
    // the spares not yet handed out held by the application, one fd each.
    assert!(st.spare_sockets < 8, "{st:?}");
    assert_eq!(st.sockets_created, 10_000 + st.spare_sockets as u64);
    assert_eq!(host_fds_of(&pid), host_fds, "host fds");
    assert_eq!(
        proc::self_fd_count(),
        app_fds + 1 + st.spare_sockets,
        "app fds (the channel and the spares)"
    );
    stack.delete().map_err(ioth::Error::from).unwrap();
    assert!(host_reaped(pid.parse().unwrap()));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(proc::self_fd_count(), app_fds, "app fds after delete");
    // 200 cycles each way: forked by the fork server, and exec'd (which adds a pidfd).
    for fork_server in [true, false] {
        let t0 = Instant::now();
        let mut pids = Vec::new();
        for _ in 0..200 {
            let s = Stack::builder("kernel")
                .fork_server(fork_server)
                .build()
                .unwrap();
            drop(s.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap());
            pids.push(s.pid().unwrap());
            s.delete().map_err(ioth::Error::from).unwrap();
        }
        println!(
            "200 newstack/delstack cycles (fork server: {fork_server}) in {:?}",
            t0.elapsed()
        );
        // Hosts are reaped in the background: wait for the last ones.
        for p in pids {
            assert!(host_reaped(p), "host {p} not reaped");
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(proc::self_fd_count(), app_fds, "app fds after 200 stacks");
        assert_eq!(children().len(), kids, "child processes after 200 stacks");
    }
}

/// After a stack, the fork server forks a spare host; the next stack is that process, and works.
#[test]
fn the_next_stack_is_the_spare_forked_ahead() {
    // Exclusive: no other test of this binary takes the spare first.
    let _g = setup_exclusive();
    kernel().delete().map_err(ioth::Error::from).unwrap();
    let spare = spare_pid().expect("a spare after a stack");
    let s = kernel();
    let pid = s.pid().unwrap();
    assert_eq!(pid, spare, "the new stack's host is not the spare");
    assert_eq!(proc::ppid(pid), Some(std::process::id()));
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap(),
        "ioth-host\n"
    );
    let title = cmdline(pid);
    assert!(
        title.starts_with(b"ioth-host[kernel]"),
        "{}",
        String::from_utf8_lossy(&title)
    );
    udp_echo_once(&udp_loopback(&s));
    // The next spare is another process.
    let next = spare_pid().expect("a spare after the stack that took the first");
    assert_ne!(next, spare);
    s.delete().map_err(ioth::Error::from).unwrap();
    assert!(host_reaped(pid), "host {pid} not reaped");
}

/// A spare is a process of its own: with its fork server killed it still becomes the next
/// stack; the dead fork server is reaped, and the stack after starts a new one.
#[test]
fn a_killed_fork_servers_spare_still_becomes_the_next_stack() {
    let _g = setup_exclusive();
    kernel().delete().map_err(ioth::Error::from).unwrap();
    let spare = spare_pid().expect("a spare after a stack");
    let server = fork_server_pid().expect("the fork server");
    kill_and_wait(server);
    let s = kernel();
    assert_eq!(s.pid().unwrap(), spare);
    udp_echo_once(&udp_loopback(&s));
    assert!(
        time_until(BOUND, || proc::state(server).is_none()).is_some(),
        "the dead fork server {server} was not reaped"
    );
    let after = kernel();
    let again = fork_server_pid().expect("a new fork server");
    assert_ne!(again, server);
    udp_echo_once(&udp_loopback(&after));
    s.delete().map_err(ioth::Error::from).unwrap();
    after.delete().map_err(ioth::Error::from).unwrap();
}

/// A spare killed while it waits is passed over: the next stack gets another host, and the
/// killed one is reaped (no zombie).
#[test]
fn a_killed_spare_is_passed_over_and_reaped() {
    let _g = setup_exclusive();
    kernel().delete().map_err(ioth::Error::from).unwrap();
    let spare = spare_pid().expect("a spare after a stack");
    kill_and_wait(spare);
    let s = kernel();
    assert_ne!(s.pid().unwrap(), spare);
    udp_echo_once(&udp_loopback(&s));
    assert!(
        time_until(BOUND, || proc::state(spare).is_none()).is_some(),
        "killed spare {spare} left behind (state {:?})",
        proc::state(spare)
    );
    s.delete().map_err(ioth::Error::from).unwrap();
}

/// `IOTH_SPARE_HOST=0` means no spare: an idle application has its fork server only.
#[test]
fn no_spare_host_with_ioth_spare_host_0() {
    let _g = setup();
    let bin = env!("CARGO_BIN_EXE_ioth-fault-holder");
    let args = ["--idle-newstack", "3", "20"];
    assert_eq!(
        Report::run(bin, &args, &[("IOTH_SPARE_HOST", "0")]).num("spares"),
        0
    );
    assert_eq!(Report::run(bin, &args, &[]).num("spares"), 1);
}

#[test]
fn killed_fork_server_costs_only_the_next_newstack_a_fresh_start() {
    let _g = setup_exclusive();
    let before = kernel();
    let server = fork_server_pid().expect("a fork server runs once a stack exists");
    let s = before.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    kill_and_wait(server);
    // The stack made before keeps working: sockets, stats, a new socket.
    udp_echo_once(&udp_loopback(&before));
    drop(s);
    assert_eq!(before.stats().unwrap().open_sockets, 0);
    // The next newstack starts a new fork server (or takes the spare the dead one forked,
    // a_killed_fork_servers_spare_still_becomes_the_next_stack: then the one after does); the
    // dead one is reaped.
    let spare_taken = kernel();
    let after = kernel();
    let again = fork_server_pid().expect("a new fork server");
    assert_ne!(again, server);
    udp_echo_once(&udp_loopback(&after));
    assert_eq!(proc::ppid(after.pid().unwrap()), Some(std::process::id()));
    assert!(
        time_until(BOUND, || proc::state(server).is_none()).is_some(),
        "the dead fork server {server} was not reaped"
    );
    before.delete().map_err(ioth::Error::from).unwrap();
    spare_taken.delete().map_err(ioth::Error::from).unwrap();
    after.delete().map_err(ioth::Error::from).unwrap();
}

/// Under a lowered open-files limit, stacks with one socket each reach (limit − base) / 2: two
/// fds per stack in the application. Runs in a helper process (the limit is process-wide).
#[test]
fn two_fds_per_stack_under_a_lowered_fd_limit() {
    let _g = setup();
    let r = Report::run(
        env!("CARGO_BIN_EXE_ioth-fault-holder"),
        &["--fd-budget", "200"],
        &[],
    );
    let (limit, base, reached) = (r.num("limit"), r.num("base"), r.num("reached"));
    assert_eq!(reached, (limit - base) / 2, "{}", r.text());
}

#[test]
fn stats_pid_and_process_name() {
    let _g = setup();
    let stack = kernel();
    let pid = stack.pid().unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap(),
        "ioth-host\n"
    );
    let a = stack.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    let b = stack.msocket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
    let c = stack.msocket(libc::AF_INET6, libc::SOCK_DGRAM, 0).unwrap();
    drop(c);
    let st = stack.stats().unwrap();
    println!("{st:?}");
    // Hello, NewStack and three Sockets before this Stats.
    assert_eq!(st.requests, 5);
    assert_eq!(st.sockets_created, 3);
    assert_eq!(st.open_sockets, 2);
    assert!(st.rss_bytes > 0 && st.pss_bytes > 0 && st.pss_bytes <= st.rss_bytes);
    assert!(st.host_fds >= 4, "{st:?}");
    let st2 = stack.stats().unwrap();
    assert_eq!(st2.requests, 6);
    assert!(st2.cpu_time >= st.cpu_time);
    drop((a, b));
    assert_eq!(stack.stats().unwrap().open_sockets, 0);
    // The C view of the pid.
    // SAFETY: a NUL-terminated name and a NULL VNL.
    let p = unsafe { ioth::capi::ioth_newstack(c"kernel".as_ptr(), std::ptr::null()) };
    assert!(!p.is_null());
    // SAFETY: p is a live stack.
    let cpid = unsafe { ioth::capi::ioth_stack_pid(p) };
    assert!(host_running(cpid as u32));
    // SAFETY: p is a live stack without sockets; freed here.
    assert_eq!(unsafe { ioth::capi::ioth_delstack(p) }, 0);
    assert!(host_reaped(cpid as u32));
    stack.delete().map_err(ioth::Error::from).unwrap();
}
