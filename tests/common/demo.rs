//! Runs the demo (client/examples: `iothtest_server` / `iothtest_client`, Rust or C) over
//! a VDE switch started here: a few lines typed into the client must come back echoed, the server
//! must have received them, and the server's stack host must end with the server.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cprog::{lines_of, Reaped};
use crate::proc::{wait_gone, wait_until};
use crate::vde::{pid_exists, Switch};

/// The lines typed into the client.
pub const LINES: [&str; 3] = ["hello from the client stack", "second line", "bye"];

/// How long each step may take.
const STEP: Duration = Duration::from_secs(20);

/// Runs `server` on a `server_stack` stack and `client` on a `client_stack` stack (plug-in
/// names), both on one new switch, and checks the whole session. Panics on any failure.
pub fn run(server: &Path, server_stack: &str, client: &Path, client_stack: &str) {
    let who = format!("{server_stack} server, {client_stack} client");
    let sw = Switch::start();
    let mut srv = Reaped(
        Command::new(server)
            .args([server_stack, &sw.vnl()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let srv_lines = lines_of(&mut srv.0);
    let first = srv_lines
        .recv_timeout(STEP)
        .unwrap_or_else(|_| panic!("server did not start ({who})"));
    assert!(first.contains("listening"), "server said {first:?} ({who})");
    let host_pid: u32 = first
        .rsplit("host pid ")
        .next()
        .and_then(|s| s.trim_end_matches(')').parse().ok())
        .expect("host pid in the server's first line");
    assert!(pid_exists(host_pid));

    let mut cli = Reaped(
        Command::new(client)
            .args([client_stack, &sw.vnl()])
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
            .recv_timeout(STEP)
            .unwrap_or_else(|_| panic!("no echo of {l:?} ({who})"));
        assert_eq!(echoed, l, "({who})");
    }
    drop(stdin);
    // The client ends once the server has echoed everything and closed.
    assert!(
        wait_until(STEP, || cli.0.try_wait().unwrap().is_some()),
        "client did not end after the end of its input ({who})"
    );
    // The server prints "GOT: <bytes read>" per read; TCP may split or join lines, so compare
    // the bytes it received, not its lines. Its lines reach this process through a pipe and a
    // reader thread, which may lag behind the echoes: wait for them (bounded).
    let mut log: Vec<String> = Vec::new();
    let received = |log: &[String]| {
        log.iter()
            .filter(|l| !l.starts_with("new conn") && !l.starts_with("close conn"))
            .map(|l| l.replace("GOT: ", ""))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let deadline = std::time::Instant::now() + STEP;
    while !LINES.iter().all(|l| received(&log).contains(l)) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match srv_lines.recv_timeout(left) {
            Ok(l) => log.push(l),
            Err(_) => break,
        }
    }
    let received = received(&log);
    for l in LINES {
        assert!(
            received.contains(l),
            "server log lacks {l:?}: {log:?} ({who})"
        );
    }
    drop(srv);
    // The server's stack host ends with its application.
    assert!(
        wait_gone(host_pid, Duration::from_secs(5)),
        "host {host_pid} outlived the server ({who})"
    );
}
