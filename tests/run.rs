//! `ioth-run`: unmodified programs on a stack, over a VDE switch of the test's own. Needs root
//! (vdestack: network namespaces and taps; the private resolv.conf: a mount namespace).
//!
//! python3's `http.server` on one stack and `curl` on another move a 1 MB file both ways
//! (vdestack → smoltcp through `sh -c`, which forks and execs curl; smoltcp → vdestack);
//! `ip -4 addr` shows the stack's address on vdestack (its namespace) and smoltcp (the preload's
//! netlink); a static program fails loudly on smoltcp and runs on vdestack; exit statuses and
//! signals pass through; `getent` resolves through the DNS server `dns=` gave (vdestack; smoltcp
//! through the runner's forwarder, UDP and TCP); `-c eth,dhcp` configures both stacks from a
//! dnsmasq (`ioth_tests::dhcp::Server`); the runner leaves no private directory behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ioth_tests::cprog::{profile_dir, run_bounded, Reaped, TempDir};
use ioth_tests::vde::Switch;

const BOUND: Duration = Duration::from_secs(60);

fn ioth_run() -> PathBuf {
    let p = profile_dir().join("ioth-run");
    assert!(
        p.is_file() && profile_dir().join("libioth_preload.so").is_file(),
        "build ioth-run and libioth_preload.so: cargo build --workspace"
    );
    p
}

fn runner(stack: &str, sw: &Switch, config: &str) -> Command {
    let mut c = Command::new(ioth_run());
    c.args(["-s", stack, "-v", &sw.vnl(), "-c", config]);
    c
}

/// Runs `cmd` to completion (bounded); its status and output. Panics if it hung.
fn run(cmd: &mut Command) -> (ExitStatus, String, String) {
    let (status, out, err) = run_bounded(cmd, BOUND);
    (
        status.unwrap_or_else(|| panic!("{cmd:?} hung; stderr: {err}")),
        out,
        err,
    )
}

/// A 1 MB file of a fixed pseudo-random pattern in `dir`.
fn payload(dir: &Path) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(dir.join("f.bin"), &data).unwrap();
    data
}

/// `python3 -m http.server` on `stack` at `ip`, serving `dir`.
fn http_server(stack: &str, sw: &Switch, ip: &str, dir: &Path) -> Reaped {
    let child: Child = runner(stack, sw, &format!("eth,ip={ip}/24"))
        .args(["python3", "-m", "http.server", "-b", ip, "8000", "-d"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ioth-run http.server");
    Reaped(child)
}

/// Runs the client until it succeeds (the server starts in parallel), bounded.
fn fetch_until_ok(mut attempt: impl FnMut() -> (ExitStatus, String, String)) -> (String, String) {
    let deadline = Instant::now() + BOUND;
    loop {
        let (st, out, err) = attempt();
        if st.success() {
            return (out, err);
        }
        assert!(
            Instant::now() < deadline,
            "client kept failing: {st}; {err}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stops the server's runner with SIGTERM: it forwards it, and exits with the server's status,
/// `expect` (128 + 15 for a server that dies of it).
fn stop(mut server: Reaped, expect: i32) {
    let pid = nix::unistd::Pid::from_raw(server.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + BOUND;
    let st = loop {
        if let Some(st) = server.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "server runner did not end after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(st.code(), Some(expect), "{st}");
}

#[test]
#[cfg_attr(not(ioth_root), ignore = "needs root: vdestack and namespaces")]
fn http_server_on_vdestack_curl_on_smoltcp_through_sh() {
    let sw = Switch::start();
    let dir = TempDir::new("run-http1");
    let data = payload(dir.path());
    let server = http_server("vdestack", &sw, "10.61.0.1", dir.path());
    let out = dir.path().join("got.bin");
    // sh forks and execs curl: the exec'd image keeps the stack.
    fetch_until_ok(|| {
        run(runner("smoltcp", &sw, "eth,ip=10.61.0.2/24").args([
            "sh",
            "-c",
            &format!("curl -sf -o {} http://10.61.0.1:8000/f.bin", out.display()),
        ]))
    });
    assert!(std::fs::read(&out).unwrap() == data, "the file differs");
    stop(server, 128 + libc::SIGTERM);
}

#[test]
#[cfg_attr(not(ioth_root), ignore = "needs root: vdestack and namespaces")]
fn http_server_on_smoltcp_curl_on_vdestack() {
    let sw = Switch::start();
    let dir = TempDir::new("run-http2");
    let data = payload(dir.path());
    let server = http_server("smoltcp", &sw, "10.62.0.1", dir.path());
    let out = dir.path().join("got.bin");
    fetch_until_ok(|| {
        run(runner("vdestack", &sw, "eth,ip=10.62.0.2/24").args([
            "curl",
            "-sf",
            "-o",
            out.to_str().unwrap(),
            "http://10.62.0.1:8000/f.bin",
        ]))
    });
    assert!(std::fs::read(&out).unwrap() == data, "the file differs");
    stop(server, 128 + libc::SIGTERM);
}

#[test]
#[cfg_attr(not(ioth_root), ignore = "needs root: vdestack and namespaces")]
fn ip_addr_shows_the_stack_on_vdestack_and_smoltcp() {
    let sw = Switch::start();
    for (stack, ip) in [("vdestack", "10.63.0.1"), ("smoltcp", "10.63.0.2")] {
        let (st, out, err) =
            run(runner(stack, &sw, &format!("eth,ip={ip}/24")).args(["ip", "-4", "addr"]));
        assert!(st.success(), "{stack}: {st} {err}");
        assert!(out.contains(&format!("inet {ip}/24")), "{stack}: {out}");
        assert!(out.contains("vde0"), "{stack}: {out}");
        // The machine's own interfaces are not there.
        let machine = run(Command::new("ip").args(["-4", "-o", "addr"])).1;
        for line in machine.lines() {
            let name = line.split_whitespace().nth(1).unwrap_or_default();
            if name != "lo" && !name.is_empty() {
                assert!(
                    !out.contains(&format!(" {name}:")),
                    "{stack} shows {name}: {out}"
                );
            }
        }
    }
}

#[test]
#[cfg_attr(not(ioth_root), ignore = "needs root: vdestack and namespaces")]
fn a_static_program_fails_loudly_on_smoltcp_and_runs_on_vdestack() {
    let dir = TempDir::new("run-static");
    let src = dir.path().join("s.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nint main(void){puts(\"static ok\");return 0;}\n",
    )
    .unwrap();
    let exe = dir.path().join("s");
    let (st, _, err) = run(Command::new("gcc")
        .args(["-static", "-o"])
        .arg(&exe)
        .arg(&src));
    assert!(st.success(), "gcc -static (libc.a from libc6-dev): {err}");
    let sw = Switch::start();
    let (st, out, err) = run(runner("smoltcp", &sw, "eth").arg(&exe));
    assert_eq!(st.code(), Some(126), "{out} {err}");
    assert!(err.contains("statically linked"), "{err}");
    assert!(!out.contains("static ok"), "the static program ran: {out}");
    let (st, out, err) = run(runner("vdestack", &sw, "eth").arg(&exe));
    assert!(
        st.success() && out.contains("static ok"),
        "{st} {out} {err}"
    );
}

#[test]
#[cfg_attr(not(ioth_root), ignore = "needs root: vdestack and namespaces")]
fn exit_status_and_signals_pass_through() {
    let sw = Switch::start();
    for stack in ["vdestack", "smoltcp"] {
        let (st, _, err) = run(runner(stack, &sw, "eth").args(["sh", "-c", "exit 7"]));
        assert_eq!(st.code(), Some(7), "{stack}: {err}");
        let (st, _, err) = run(runner(stack, &sw, "eth").args(["sh", "-c", "kill -USR1 $$"]));
        assert_eq!(st.code(), Some(128 + libc::SIGUSR1), "{stack}: {err}");
        let (st, _, _) = run(runner(stack, &sw, "eth").arg("/nonexistent/program"));
        assert_eq!(st.code(), Some(127), "{stack}");
        // A signal sent to ioth-run reaches the program: its trap answers with its own status.
        let dir = TempDir::new("run-sig");
        let ready = dir.path().join("ready");
        let script = format!(
            "trap 'exit 42' USR2; touch {}; while :; do sleep 0.05; done",
            ready.display()
        );
        let child = runner(stack, &sw, "eth")
            .args(["sh", "-c", &script])
            .spawn()
            .unwrap();
        let mut child = Reaped(child);
        let deadline = Instant::now() + BOUND;
        while !ready.exists() {
            assert!(
                Instant::now() < deadline,
                "{stack}: the program never started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR2).unwrap();
        let st = loop {
            if let Some(st) = child.0.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "{stack}: no exit after SIGUSR2");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(st.code(), Some(42), "{stack}: {st}");
    }
}

/// The runner's private directory (the rendezvous socket of a proxied stack, the resolv.conf
/// `dns=` writes) is gone once the runner has exited, though the runner does not wait for its
/// serving thread.
#[test]
#[cfg_attr(not(ioth_root), ignore = "needs root: vdestack and namespaces")]
fn the_runner_leaves_no_private_directory_behind() {
    let sw = Switch::start();
    for stack in ["smoltcp", "vdestack"] {
        let tmp = TempDir::new("run-tmp");
        let (st, _, err) = run(runner(stack, &sw, "eth,ip=10.66.0.2/24,dns=10.66.0.1")
            .env("TMPDIR", tmp.path())
            .args(["sh", "-c", "cat /etc/resolv.conf >/dev/null && exit 3"]));
        assert_eq!(st.code(), Some(3), "{stack}: {err}");
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{stack}: left in TMPDIR: {left:?}");
    }
}

/// dnsmasq under ioth-run on a vdestack stack of `sw`, at 10.`net`.0.1, answering
/// `ioth-run.test` with 10.`net`.0.77 and nothing else.
fn dns_server(sw: &Switch, net: u8) -> Reaped {
    let dns = runner("vdestack", sw, &format!("eth,ip=10.{net}.0.1/24"))
        .args([
            "dnsmasq",
            "-k",
            "-C",
            "/dev/null",
            "--no-resolv",
            "--no-hosts",
        ])
        .arg(format!("--listen-address=10.{net}.0.1"))
        .arg("--bind-interfaces")
        .arg(format!("--address=/ioth-run.test/10.{net}.0.77"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dnsmasq under ioth-run");
    Reaped(dns)
}

/// [`fetch_until_ok`] of `attempt` while the DNS server `dns` runs: one that ended (dnsmasq
/// could not bind, the runner failed) fails the test at once with what it said.
fn resolve_until_ok(
    dns: &mut Reaped,
    mut attempt: impl FnMut() -> (ExitStatus, String, String),
) -> String {
    let (out, _) = fetch_until_ok(|| {
        if let Some(st) = dns.0.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = dns.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("the DNS server ended: {st}; {err}");
        }
        attempt()
    });
    out
}

#[test]
#[cfg_attr(not(ioth_root), ignore = "needs root: vdestack and namespaces")]
fn names_resolve_through_the_configured_dns_server_on_vdestack() {
    let sw = Switch::start();
    let mut dns = dns_server(&sw, 64);
    let out = resolve_until_ok(&mut dns, || {
        run(
            runner("vdestack", &sw, "eth,ip=10.64.0.2/24,dns=10.64.0.1").args([
                "getent",
                "hosts",
                "ioth-run.test",
            ]),
        )
    });
    assert!(out.contains("10.64.0.77"), "{out}");
    let (_, conf, _) = run(
        runner("vdestack", &sw, "eth,dns=10.64.0.1,domain=ioth-run.test")
            .args(["cat", "/etc/resolv.conf"]),
    );
    assert_eq!(conf, "nameserver 10.64.0.1\nsearch ioth-run.test\n");
    // dnsmasq exits 0 on SIGTERM.
    stop(dns, 0);
}

#[test]
#[cfg_attr(not(ioth_root), ignore = "needs root: vdestack and namespaces")]
fn names_resolve_through_the_configured_dns_server_on_smoltcp() {
    let sw = Switch::start();
    let mut dns = dns_server(&sw, 65);
    // libc's resolver asks the runner's forwarder on the empty namespace's loopback, which
    // relays through smoltcp (UDP).
    let out = resolve_until_ok(&mut dns, || {
        run(
            runner("smoltcp", &sw, "eth,ip=10.65.0.2/24,dns=10.65.0.1").args([
                "getent",
                "hosts",
                "ioth-run.test",
            ]),
        )
    });
    assert!(out.contains("10.65.0.77"), "{out}");
    // Over TCP too (glibc's `use-vc` option, from the environment).
    let (st, out, err) = run(runner("smoltcp", &sw, "eth,ip=10.65.0.2/24,dns=10.65.0.1")
        .env("RES_OPTIONS", "use-vc")
        .args(["getent", "hosts", "ioth-run.test"]));
    assert!(
        st.success() && out.contains("10.65.0.77"),
        "{st} {out} {err}"
    );
    let (_, conf, _) = run(
        runner("smoltcp", &sw, "eth,dns=10.65.0.1,domain=ioth-run.test")
            .args(["cat", "/etc/resolv.conf"]),
    );
    assert_eq!(conf, "nameserver 127.0.0.1\nsearch ioth-run.test\n");
    stop(dns, 0);
}

#[test]
#[cfg_attr(not(ioth_root), ignore = "needs root: vdestack and namespaces")]
fn dhcp_configures_vdestack_and_smoltcp() {
    let sw = Switch::start();
    let server = ioth_tests::dhcp::Server::start(&sw);
    let (first, last) = ioth_tests::dhcp::Server::V4_RANGE;
    let range = |a: &str| {
        let a: std::net::Ipv4Addr = a.parse().unwrap();
        let (f, l): (std::net::Ipv4Addr, std::net::Ipv4Addr) =
            (first.parse().unwrap(), last.parse().unwrap());
        f <= a && a <= l
    };
    for stack in ["vdestack", "smoltcp"] {
        let (st, out, err) = run(runner(stack, &sw, "eth,dhcp").args([
            "sh",
            "-c",
            "ip -4 -o addr show dev vde0; ip -4 route; cat /etc/resolv.conf",
        ]));
        assert!(
            st.success(),
            "{stack}: {st} {err}; dnsmasq: {}",
            server.log()
        );
        let addr = out
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|a| a.strip_suffix("/24"))
            .unwrap_or_else(|| panic!("{stack}: no leased /24 address: {out}"));
        assert!(range(addr), "{stack}: {addr} is not of the server's range");
        assert!(
            out.contains(&format!("default via {}", ioth_tests::dhcp::Server::V4)),
            "{stack}: no default route through the router: {out}"
        );
        // The name server of the lease: as given on vdestack, through the runner's forwarder
        // on smoltcp.
        let ns = if stack == "vdestack" {
            ioth_tests::dhcp::Server::DNS
        } else {
            "127.0.0.1"
        };
        assert!(
            out.contains(&format!("nameserver {ns}\n")),
            "{stack}: {out}"
        );
        assert!(
            server.leases().contains(addr),
            "{stack}: {}",
            server.leases()
        );
    }
    // No server: the runner fails before the program (status 125), saying why.
    drop(server);
    let (st, out, err) = run(runner("smoltcp", &sw, "eth,dhcp").args(["echo", "ran"]));
    assert_eq!(st.code(), Some(125), "{out} {err}");
    assert!(err.contains("DHCP") && !out.contains("ran"), "{err}");
}
