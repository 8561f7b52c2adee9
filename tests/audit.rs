//! Audit trails of stacks that talk (docs/audit.md): two vdestack stacks and a smoltcp one on a
//! switch of the test's own exchange known numbers of bytes over TCP and UDP; their trails show
//! each connection with its peers and byte counts, interface counters that grow accordingly,
//! and `ioth audit` summarises them; `ioth ps` lists the stacks while they run and not after.
//! A plug-in whose call the sandbox refuses shows the refusal in its trail, and a kernel
//! stack's trail holds exactly the requests it was sent. Needs root (vdestack) except for the
//! last two; the audit interval is 100 ms here.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use ioth::Stack;
use ioth_tests::cprog::profile_dir;
use ioth_tests::dad::retry_unavailable;
use ioth_tests::proc;
use ioth_tests::stacks::{addr, configure_smol};
use ioth_tests::vde::{self, Switch, TempDir};

/// The audit interval of every host of this test binary.
const INTERVAL_MS: u64 = 100;
/// How long a deleted stack's host may take to be reaped (a bound, never asserted on).
const REAPED: Duration = Duration::from_secs(10);
/// Long enough for at least two looks of the audit thread.
const SETTLE: Duration = Duration::from_millis(4 * INTERVAL_MS);
const TCP_AB: usize = 100_000;
const TCP_BA: usize = 30_000;
const TCP_CB: usize = 20_000;
const UDP_N: usize = 10;
const UDP_LEN: usize = 1000;

/// Sets the interval and a plug-in directory with the snoop plug-in, once, before any stack.
fn setup() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("audit-plugins");
        std::fs::create_dir_all(&d).unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let st = Command::new("gcc")
            .args([
                "-Wall", "-Wextra", "-Werror", "-O1", "-fPIC", "-shared", "-pthread", "-I",
            ])
            .arg(root.join("client/include"))
            .arg("-o")
            .arg(d.join("ioth_snoop.so"))
            .arg(root.join("tests/c/plugins/ioth_snoop.c"))
            .status()
            .expect("gcc");
        assert!(st.success(), "gcc ioth_snoop.c");
        std::env::set_var("IOTH_PLUGIN_PATH", &d);
        std::env::set_var("IOTH_AUDIT_INTERVAL", INTERVAL_MS.to_string());
        d
    })
}

fn ioth(args: &[&str]) -> String {
    let exe = profile_dir().join("ioth");
    assert!(
        exe.is_file(),
        "build the ioth tool: cargo build --workspace"
    );
    let out = Command::new(exe).args(args).output().expect("ioth");
    assert!(out.status.success(), "ioth {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The lines of the trail at `path` once its host has written its `stop` event: `delete`
/// returns when the host has answered, and the host's last look and `stop` come after (bounded
/// wait).
fn ended_trail(path: &Path) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let t = json_lines(&std::fs::read_to_string(path).unwrap_or_default());
        if t.iter().any(|e| e["event"] == "stop") {
            return t;
        }
        assert!(std::time::Instant::now() < deadline, "no stop event: {t:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn vdestack(sw: &Switch, trail: &Path, v4: &str) -> Stack {
    let s = Stack::builder("vdestack")
        .vnl(&sw.vnl())
        .audit(trail)
        .build()
        .expect("newstack vdestack");
    vde::ip(s.pid().unwrap(), &["addr", "add", v4, "dev", "vde0"]);
    vde::ip(s.pid().unwrap(), &["link", "set", "vde0", "up"]);
    s
}

fn tcp(s: &Stack, v6: bool) -> socket2::Socket {
    let d = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    s.msocket(d, libc::SOCK_STREAM, 0).expect("msocket").into()
}

fn connect(s: &Stack, to: &str) -> TcpStream {
    let to = addr(to);
    // ioth's own connect: it serves proxied sockets (smoltcp) as well as native ones.
    let c = retry_unavailable(|| {
        let c = s
            .msocket(libc::AF_INET, libc::SOCK_STREAM, 0)
            .expect("msocket");
        c.connect(&to).map(|()| c)
    })
    .unwrap_or_else(|e| panic!("connect {to}: {e}"));
    let c: TcpStream = c.into();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c
}

fn listen(s: &Stack, at: &str) -> TcpListener {
    let l = tcp(s, false);
    l.set_reuse_address(true).unwrap();
    l.bind(&addr(at).into()).unwrap();
    l.listen(4).unwrap();
    l.into()
}

/// The summary `ioth audit --json` gives of the stack of host `pid`.
fn summary(all: &[serde_json::Value], pid: u32) -> &serde_json::Value {
    all.iter()
        .find(|s| s["pid"] == pid)
        .unwrap_or_else(|| panic!("no summary of {pid}: {all:?}"))
}

/// The peer `peer` (prefix) of `kind` in a summary.
fn peer<'a>(s: &'a serde_json::Value, kind: &str, peer: &str) -> &'a serde_json::Value {
    s["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == kind && p["peer"].as_str().unwrap().starts_with(peer))
        .unwrap_or_else(|| panic!("no {kind} peer {peer} in {s}"))
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn trails_show_connections_bytes_and_interfaces() {
    setup();
    let sw = Switch::start();
    let dir = TempDir::new("audit");
    let (ta, tb, tc) = (
        dir.path().join("a.jsonl"),
        dir.path().join("b.jsonl"),
        dir.path().join("c.jsonl"),
    );
    let a = vdestack(&sw, &ta, "10.0.0.1/24");
    let b = vdestack(&sw, &tb, "10.0.0.2/24");
    // Its own interval, not the process's IOTH_AUDIT_INTERVAL.
    let c = Stack::builder("smoltcp")
        .vnl(&sw.vnl())
        .audit(&tc)
        .audit_interval(Duration::from_millis(INTERVAL_MS / 2))
        .build()
        .expect("newstack smoltcp");
    configure_smol(&c, "vde0", "10.0.0.3", "fd00::3");
    let pids = [a.pid().unwrap(), b.pid().unwrap(), c.pid().unwrap()];

    // TCP a → b: TCP_AB bytes, TCP_BA back; c → b: TCP_CB bytes.
    let l = listen(&b, "10.0.0.2:5000");
    let l2 = listen(&b, "10.0.0.2:5001");
    let mut ca = connect(&a, "10.0.0.2:5000");
    let (mut sa, _) = l.accept().unwrap();
    sa.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    ca.write_all(&vec![7u8; TCP_AB]).unwrap();
    let mut got = vec![0u8; TCP_AB];
    sa.read_exact(&mut got).unwrap();
    sa.write_all(&vec![8u8; TCP_BA]).unwrap();
    let mut back = vec![0u8; TCP_BA];
    ca.read_exact(&mut back).unwrap();
    let mut cc = connect(&c, "10.0.0.2:5001");
    let (mut sc, _) = l2.accept().unwrap();
    sc.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    cc.write_all(&vec![9u8; TCP_CB]).unwrap();
    let mut got = vec![0u8; TCP_CB];
    sc.read_exact(&mut got).unwrap();
    // UDP a → b.
    let ub: UdpSocket = {
        let s: socket2::Socket = b
            .msocket(libc::AF_INET, libc::SOCK_DGRAM, 0)
            .unwrap()
            .into();
        s.bind(&addr("10.0.0.2:6000").into()).unwrap();
        s.into()
    };
    ub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ua: UdpSocket = {
        let s: socket2::Socket = a
            .msocket(libc::AF_INET, libc::SOCK_DGRAM, 0)
            .unwrap()
            .into();
        s.bind(&addr("10.0.0.1:6001").into()).unwrap();
        s.into()
    };
    let mut received = 0;
    for _ in 0..UDP_N {
        ua.send_to(&[1u8; UDP_LEN], "10.0.0.2:6000").unwrap();
        let mut buf = [0u8; 2000];
        if let Ok((n, _)) = ub.recv_from(&mut buf) {
            received += n;
        }
    }
    assert_eq!(received, UDP_N * UDP_LEN);
    // UDP c → b (a connected proxied socket).
    let uc = c.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    uc.connect(&addr("10.0.0.2:6000")).unwrap();
    let mut received = 0;
    for _ in 0..UDP_N {
        uc.send(&[3u8; UDP_LEN]).unwrap();
        let mut buf = [0u8; 2000];
        if let Ok((n, _)) = ub.recv_from(&mut buf) {
            received += n;
        }
    }
    assert_eq!(received, UDP_N * UDP_LEN);
    // Counters are looked at every interval: let the audit thread see the final ones.
    std::thread::sleep(SETTLE);

    // ioth ps, while they run: the three stacks, the vdestack ones with their addresses.
    let ps: serde_json::Value = serde_json::from_str(&ioth(&["ps", "--json"])).unwrap();
    println!("{}", ioth(&["ps"]));
    for (p, want) in pids
        .iter()
        .zip(["10.0.0.1/24", "10.0.0.2/24", "10.0.0.3/24"])
    {
        let h = ps
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["pid"] == *p)
            .unwrap_or_else(|| panic!("host {p} not in ioth ps: {ps}"));
        assert_eq!(h["app_pid"], std::process::id(), "{h}");
        assert!(h["vnls"][0].as_str().unwrap().contains("vde"), "{h}");
        assert!(h["protections"]["in_force"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x == "seccomp")));
        let has = h["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["addresses"].as_array().unwrap().iter().any(|x| x == want));
        assert!(has, "{want} not in {h}");
        assert!(!h["sockets"].as_array().unwrap().is_empty(), "{h}");
        if *p == pids[2] {
            // smoltcp: the proxied table (the connection to b).
            assert!(
                h["proxied"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["peer"] == "10.0.0.2:5001"),
                "{h}"
            );
        }
    }

    drop((ca, sa, cc, sc, l, l2, ua, ub, uc));
    for s in [a, b, c] {
        s.delete().map_err(ioth::Error::from).unwrap();
    }
    // Gone from ioth ps: `delete` returns once a host has answered, and the host then ends in
    // the background (docs/faults.md), so this waits for that, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ps: serde_json::Value = serde_json::from_str(&ioth(&["ps", "--json"])).unwrap();
        let left = pids
            .iter()
            .any(|p| ps.as_array().unwrap().iter().any(|h| h["pid"] == *p));
        if !left {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still listed: {ps}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // The trails: schema, each connection with its peers and counters.
    let ea = json_lines(&std::fs::read_to_string(&ta).unwrap());
    assert_eq!(ea[0]["event"], "trail");
    assert_eq!(ea[0]["schema"], 3);
    let close = ea
        .iter()
        .find(|e| e["event"] == "socket_close" && e["peer"] == "10.0.0.2:5000")
        .unwrap_or_else(|| panic!("no close of a's connection"));
    assert_eq!(close["type"], "tcp");
    assert_eq!(
        close["local"].as_str().unwrap().split(':').next(),
        Some("10.0.0.1")
    );
    assert_eq!(close["bytes_sent"], TCP_AB as u64, "{close}");
    assert_eq!(close["bytes_received"], TCP_BA as u64, "{close}");
    assert!(ea.iter().any(|e| e["event"] == "socket_open"
        && e["type"] == "udp"
        && e["local"] == "10.0.0.1:6001"));
    // Interface counters grew by at least what was sent.
    let stats: Vec<&serde_json::Value> = ea
        .iter()
        .filter(|e| e["event"] == "interface_stats" && e["name"] == "vde0")
        .collect();
    let grow = |k: &str| stats.last().unwrap()[k].as_u64().unwrap() - stats[0][k].as_u64().unwrap();
    assert!(
        grow("tx_bytes") >= (TCP_AB + UDP_N * UDP_LEN) as u64,
        "{stats:?}"
    );
    assert!(grow("rx_bytes") >= TCP_BA as u64, "{stats:?}");
    assert!(grow("tx_packets") >= UDP_N as u64);
    // The smoltcp stack's trail: its sockets and interfaces, as the stack itself reports them.
    let ec = json_lines(&std::fs::read_to_string(&tc).unwrap());
    assert_eq!(ec[0]["schema"], 3);
    let stack = ec.iter().find(|e| e["event"] == "stack").unwrap();
    assert_eq!(stack["interval_ms"], INTERVAL_MS / 2, "{stack}");
    assert_eq!(stack["observed"], "plugin", "{stack}");
    // The connection stays open to the end (its fd was turned into a std TcpStream, which
    // never sends `Close`): its last event has the counters.
    let last = ec
        .iter()
        .rfind(|e| {
            e["event"]
                .as_str()
                .is_some_and(|k| k.starts_with("socket_"))
                && e["peer"] == "10.0.0.2:5001"
        })
        .unwrap_or_else(|| panic!("no event of c's connection in {ec:?}"));
    assert_eq!(last["type"], "tcp");
    assert!(ec.iter().any(|e| e["event"] == "socket_open"
        && e["peer"] == "10.0.0.2:5001"
        && e["owner"] == "application"));
    assert!(last["id"].is_u64(), "{last}");
    assert_eq!(last["bytes_sent"], TCP_CB as u64, "{last}");
    let udp = ec
        .iter()
        .rfind(|e| e["event"] == "socket_close" && e["peer"] == "10.0.0.2:6000")
        .unwrap_or_else(|| panic!("no close of c's UDP socket in {ec:?}"));
    assert_eq!(udp["bytes_sent"], (UDP_N * UDP_LEN) as u64, "{udp}");
    assert_eq!(udp["packets_sent"], UDP_N as u64, "{udp}");
    assert_eq!(udp["owner"], "application", "{udp}");
    let pc = ec
        .iter()
        .find(|e| e["event"] == "proxied_close" && e["peer"] == "10.0.0.2:6000")
        .unwrap_or_else(|| panic!("no proxied_close in {ec:?}"));
    assert_eq!(pc["bytes"]["sent"], (UDP_N * UDP_LEN) as u64, "{pc}");
    assert!(ec.iter().any(|e| e["event"] == "interface"
        && e["name"] == "vde0"
        && e["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "10.0.0.3/24")));
    let stats: Vec<&serde_json::Value> = ec
        .iter()
        .filter(|e| e["event"] == "interface_stats" && e["name"] == "vde0")
        .collect();
    // Its interfaces are new with the stack, their counters from zero (the first look may
    // come after the traffic began: the stack is configured while the audit thread starts).
    let last = |k: &str| stats.last().unwrap()[k].as_u64().unwrap();
    assert!(
        last("tx_bytes") >= (TCP_CB + UDP_N * UDP_LEN) as u64,
        "{stats:?}"
    );
    assert!(last("tx_packets") >= UDP_N as u64, "{stats:?}");
    assert!(last("rx_packets") > 0, "{stats:?}");

    // ioth audit: the summaries.
    let trails = [
        ta.to_str().unwrap(),
        tb.to_str().unwrap(),
        tc.to_str().unwrap(),
    ];
    let mut args = vec!["audit", "--json"];
    args.extend(trails);
    let sums = json_lines(&ioth(&args));
    let mut args = vec!["audit"];
    args.extend(trails);
    println!("{}", ioth(&args));
    let sa = summary(&sums, pids[0]);
    let p = peer(sa, "tcp", "10.0.0.2:5000");
    assert_eq!(
        (p["bytes_sent"].as_u64(), p["bytes_received"].as_u64()),
        (Some(TCP_AB as u64), Some(TCP_BA as u64)),
        "{sa}"
    );
    assert_eq!(sa["ended"], "DelStack");
    let sb = summary(&sums, pids[1]);
    let p = peer(sb, "tcp", "10.0.0.1:");
    assert_eq!(
        (p["bytes_sent"].as_u64(), p["bytes_received"].as_u64()),
        (Some(TCP_BA as u64), Some(TCP_AB as u64)),
        "{sb}"
    );
    let p = peer(sb, "tcp", "10.0.0.3:");
    assert_eq!(p["bytes_received"].as_u64(), Some(TCP_CB as u64), "{sb}");
    let vde0 = sb["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "vde0")
        .unwrap();
    assert!(
        vde0["rx_bytes_during"].as_u64().unwrap() >= (TCP_AB + TCP_CB) as u64,
        "{vde0}"
    );
    // smoltcp: the proxied connection and datagrams, with the counters the stack reported.
    let sc = summary(&sums, pids[2]);
    let p = peer(sc, "tcp", "10.0.0.2:5001");
    assert_eq!(p["connections"], 1, "{sc}");
    assert_eq!(p["bytes_sent"].as_u64(), Some(TCP_CB as u64), "{sc}");
    assert_eq!(p["bytes_received"].as_u64(), Some(0), "{sc}");
    let p = peer(sc, "udp", "10.0.0.2:6000");
    assert_eq!(
        p["bytes_sent"].as_u64(),
        Some((UDP_N * UDP_LEN) as u64),
        "{sc}"
    );
    // Filters: b's socket events only.
    let pid_b = pids[1].to_string();
    let mut args = vec!["audit", "--json", "--pid", &pid_b, "--kind", "socket_close"];
    args.extend(trails);
    let ev = json_lines(&ioth(&args));
    assert!(!ev.is_empty());
    assert!(ev
        .iter()
        .all(|e| e["pid"] == pids[1] && e["event"] == "socket_close"));
    let mut args = vec!["audit", "--json", "--events", "--until", "1000000"];
    args.extend(trails);
    assert_eq!(ioth(&args), "");
}

#[test]
fn a_refused_operation_shows_in_the_trail() {
    setup();
    let dir = TempDir::new("audit-refused");
    let trail = dir.path().join("t.jsonl");
    let s = Stack::builder("snoop")
        .vnl("refuse")
        .audit(&trail)
        .build()
        .expect("newstack snoop");
    let e = s.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap_err();
    assert_eq!(e.errno(), libc::EACCES, "{e}");
    s.delete().map_err(ioth::Error::from).unwrap();
    let t = ended_trail(&trail);
    // The request that failed (the system calls refused before it have their own events).
    let r = t
        .iter()
        .find(|e| e["event"] == "refused" && e["request"].is_string())
        .unwrap_or_else(|| panic!("no refused request in {t:?}"));
    assert_eq!(r["request"], "Socket");
    assert_eq!(r["errname"], "EACCES");
    assert_eq!(r["args"]["domain"], libc::AF_INET);
    let out = ioth(&["audit", trail.to_str().unwrap()]);
    assert!(out.contains("refused: Socket"), "{out}");
    // The system calls the plug-in tried and carried on from (ptrace, pidfd_getfd), each
    // refused by seccomp, with their arguments.
    let calls: Vec<&serde_json::Value> = t
        .iter()
        .filter(|e| e["event"] == "refused" && e["by"] == "seccomp")
        .collect();
    let named = |n: &str| calls.iter().find(|e| e["syscall"] == n).copied();
    let ptrace = named("ptrace").unwrap_or_else(|| panic!("no ptrace refusal in {t:?}"));
    assert_eq!(ptrace["errname"], "EPERM");
    assert_eq!(ptrace["nr"], libc::SYS_ptrace);
    // PTRACE_ATTACH (16) or PTRACE_SEIZE (0x4206) of the application (the host's parent).
    let req = ptrace["args"][0].as_str().unwrap();
    assert!(req == "0x10" || req == "0x4206", "{ptrace}");
    let app = format!("{:#x}", std::process::id());
    assert_eq!(ptrace["args"][1].as_str(), Some(app.as_str()), "{ptrace}");
    assert!(
        named("pidfd_getfd").is_some(),
        "no pidfd_getfd refusal in {calls:?}"
    );
    let stop = t.iter().find(|e| e["event"] == "stop").expect("stop event");
    assert_eq!(stop["refused"].as_u64(), Some(calls.len() as u64), "{stop}");
    assert!(out.contains("refused: syscall ptrace(0x"), "{out}");
}

#[test]
fn a_process_started_by_a_later_plugin_thread_shows_in_the_trail_with_its_program() {
    setup();
    let dir = TempDir::new("audit-fork");
    let (trail, log) = (dir.path().join("t.jsonl"), dir.path().join("log"));
    // The program the plug-in runs, from a directory its sandbox declaration lets it read (a
    // VNL that is a directory's path: `read=@vnl`).
    let sleep = std::fs::canonicalize("/bin/sleep").expect("sleep(1)");
    let bin = sleep.parent().expect("a directory").to_path_buf();
    let s = Stack::builder("snoop")
        .vnls(&[
            "fork_in_thread".to_owned(),
            format!("run={}", sleep.display()),
            bin.display().to_string(),
            format!("log={}", log.display()),
        ])
        .audit(&trail)
        .build()
        .expect("newstack snoop");
    // socket() starts the thread (after the sandbox), which forks.
    drop(s.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let child: u32 = loop {
        let l = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(p) = l.lines().find_map(|l| l.strip_prefix("forked ")) {
            break p.trim().parse().unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no fork logged: {l}");
        std::thread::sleep(Duration::from_millis(10));
    };
    // The child lives a second; the trail looks every INTERVAL_MS. While it runs, `ioth ps`
    // shows it with its program.
    std::thread::sleep(Duration::from_millis(2 * INTERVAL_MS));
    let ps: serde_json::Value = serde_json::from_str(&ioth(&["ps", "--json"])).expect("ps --json");
    let program = sleep.display().to_string();
    let shown = ps.as_array().into_iter().flatten().any(|h| {
        h["programs"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["pid"] == child && p["program"] == program.as_str())
    });
    assert!(shown, "no {program} of {child} in ioth ps: {ps}");
    // Once it has ended (the plug-in's thread reaps it), a last look sees it gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{child}")).exists() {
        assert!(std::time::Instant::now() < deadline, "{child} still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(2 * INTERVAL_MS));
    s.delete().map_err(ioth::Error::from).unwrap();
    let t = ended_trail(&trail);
    let kind = |k: &str| t.iter().any(|e| e["event"] == k && e["child"] == child);
    assert!(
        kind("process_start"),
        "no process_start of {child} in {t:?}"
    );
    assert!(kind("process_end"), "no process_end of {child} in {t:?}");
    // Seen when it started, or at the next look after its execve.
    assert!(
        t.iter().any(|e| {
            ["process_start", "process_exec"].contains(&e["event"].as_str().unwrap_or(""))
                && e["child"] == child
                && e["program"] == program.as_str()
        }),
        "no {program} of {child} in {t:?}"
    );
    let summary = ioth(&["audit", trail.to_str().unwrap()]);
    assert!(
        summary.contains(&format!("programs: {program} (1)")),
        "{summary}"
    );
}

/// The request lines of a kernel stack's trail (a directory given: `kernel-<pid>.jsonl`, a file
/// given: that file, appended to by every stack that names it): exactly the requests made, in
/// order, with sequence numbers, times, durations, results and errnos; a trail that cannot be
/// opened fails the creation.
#[test]
fn audit_trail_records_exactly_the_requests_made() {
    setup();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("audit-requests-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let stack = Stack::builder("kernel").audit(&dir).build().unwrap();
    let pid = stack.pid().unwrap();
    let file = dir.join(format!("kernel-{pid}.jsonl"));
    assert_eq!(stack.audit_file(), Some(file.as_path()));
    let s = stack.msocket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
    let e = stack.msocket(4242, libc::SOCK_DGRAM, 0).unwrap_err();
    assert_eq!(e.errno(), libc::EAFNOSUPPORT);
    stack.stats().unwrap();
    drop(s);
    stack.delete().map_err(ioth::Error::from).unwrap();
    // The host writes the DelStack line after its reply, as it exits: once it has ended.
    assert!(proc::wait_gone(pid, REAPED));
    let text = std::fs::read_to_string(&file).unwrap();
    println!("{text}");
    // The request lines (the trail also has the audit thread's events: docs/audit.md).
    let all: Vec<&str> = text.lines().collect();
    assert!(
        all[0].contains("\"event\":\"trail\",\"schema\":3"),
        "{}",
        all[0]
    );
    let lines: Vec<&str> = all
        .iter()
        .copied()
        .filter(|l| l.contains("\"event\":\"request\""))
        .collect();
    let mut last_seq = 0;
    let expect = [
        ("Hello", "{\"version\":"),
        (
            "NewStack",
            "{\"plugin\":\"kernel\",\"options\":\"\",\"vnls\":[]",
        ),
        ("Socket", "{\"domain\":2,\"type\":2,\"protocol\":0}"),
        ("Socket", "{\"domain\":4242,\"type\":2,\"protocol\":0}"),
        ("Stats", "{}"),
        ("DelStack", "{}"),
    ];
    assert_eq!(lines.len(), expect.len(), "{text}");
    for (i, (line, (req, args))) in lines.iter().zip(expect).enumerate() {
        let seq: u64 = line
            .strip_prefix("{\"seq\":")
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(seq > last_seq && line.contains(",\"time\":\""), "{line}");
        last_seq = seq;
        assert!(
            line.contains(&format!(",\"pid\":{pid},\"plugin\":\"kernel\",")),
            "{line}"
        );
        assert!(
            line.contains(&format!("\"request\":\"{req}\",\"args\":{args}")),
            "{line}"
        );
        assert!(
            line.contains("\"unix_us\":") && line.ends_with('}'),
            "{line}"
        );
        assert!(line.contains(",\"duration_us\":"), "{line}");
        let ok = i != 3;
        assert_eq!(line.contains("\"result\":\"ok\""), ok, "{line}");
    }
    assert!(lines[2].contains("\"fd_kind\":\"native\""));
    assert!(
        lines[3].contains("\"result\":\"error\",\"errno\":97,\"errname\":\"EAFNOSUPPORT\""),
        "{}",
        lines[3]
    );
    // A file path: the trail is that file, appended to by every stack that names it.
    let one = dir.join("one.jsonl");
    for _ in 0..2 {
        let st = Stack::builder("kernel").audit(&one).build().unwrap();
        let pid = st.pid().unwrap();
        st.delete().map_err(ioth::Error::from).unwrap();
        assert!(proc::wait_gone(pid, REAPED));
    }
    let text = std::fs::read_to_string(&one).unwrap();
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("\"event\":\"request\""))
            .count(),
        6,
        "{text}"
    );
    // A trail that cannot be opened fails the creation.
    let e = Stack::builder("kernel")
        .audit(dir.join("no/such/dir/x.jsonl"))
        .build()
        .unwrap_err();
    assert_eq!(e.errno(), libc::ENOENT, "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
