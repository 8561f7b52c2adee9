//! The seed's demo, run as a test: an echo server and a terminal client, each on its own
//! `vdestack` stack, over a VDE switch started by the test — with the Rust examples, with the C
//! versions compiled against the drop-in `ioth.h`, and mixed. Needs root (namespaces, taps).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ioth_tests::cprog::{self, example, lines_of, Reaped};
use ioth_tests::netns::is_root;
use ioth_tests::vde::{pid_exists, Switch, TempDir};

const LINES: [&str; 3] = ["hello from the client stack", "second line", "bye"];

fn c_demo(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    cprog::compile_c(
        &cprog::repo_root()
            .join("client/examples/c")
            .join(format!("{name}.c")),
        &out,
    );
    out
}

fn run_demo(server: &Path, client: &Path) {
    let sw = Switch::start();
    let mut srv = Reaped(
        Command::new(server)
            .args(["vdestack", &sw.vnl()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let srv_lines = lines_of(&mut srv.0);
    let first = srv_lines
        .recv_timeout(Duration::from_secs(20))
        .expect("server did not start");
    assert!(first.contains("listening"), "server said {first:?}");
    let host_pid: u32 = first
        .rsplit("host pid ")
        .next()
        .and_then(|s| s.trim_end_matches(')').parse().ok())
        .expect("host pid in the server's first line");
    assert!(pid_exists(host_pid));

    let mut cli = Reaped(
        Command::new(client)
            .args(["vdestack", &sw.vnl()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let cli_lines = lines_of(&mut cli.0);
    let mut stdin = cli.0.stdin.take().unwrap();
    for l in LINES {
        stdin.write_all(format!("{l}\n").as_bytes()).unwrap();
        let echoed = cli_lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no echo of {l:?}"));
        assert_eq!(echoed, l);
    }
    drop(stdin);
    // The client ends once the server has echoed everything and closed.
    let mut ended = false;
    for _ in 0..200 {
        if cli.0.try_wait().unwrap().is_some() {
            ended = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ended, "client did not end after the end of its input");
    // The server prints "GOT: <bytes read>" per read; TCP may split or join lines, so compare
    // the bytes it received, not its lines.
    let log: Vec<String> = srv_lines.try_iter().collect();
    let received = log
        .iter()
        .filter(|l| !l.starts_with("new conn") && !l.starts_with("close conn"))
        .map(|l| l.replace("GOT: ", ""))
        .collect::<Vec<_>>()
        .join("\n");
    for l in LINES {
        assert!(received.contains(l), "server log lacks {l:?}: {log:?}");
    }
    drop(srv);
    // The server's stack host ends with its application.
    for _ in 0..250 {
        if !pid_exists(host_pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("host {host_pid} outlived the server");
}

#[test]
fn demo_rust() {
    if !is_root() {
        eprintln!("\n*** SKIPPED: the demo needs root (network namespaces, tap devices) ***\n");
        return;
    }
    run_demo(&example("iothtest_server"), &example("iothtest_client"));
}

#[test]
fn demo_c() {
    if !is_root() {
        eprintln!("\n*** SKIPPED: the demo needs root (network namespaces, tap devices) ***\n");
        return;
    }
    let dir = TempDir::new("cdemo");
    let (s, c) = (
        c_demo(dir.path(), "iothtest_server"),
        c_demo(dir.path(), "iothtest_client"),
    );
    run_demo(&s, &c);
}

#[test]
fn demo_mixed_rust_server_c_client() {
    if !is_root() {
        eprintln!("\n*** SKIPPED: the demo needs root (network namespaces, tap devices) ***\n");
        return;
    }
    let dir = TempDir::new("cdemo-mixed");
    run_demo(
        &example("iothtest_server"),
        &c_demo(dir.path(), "iothtest_client"),
    );
}
