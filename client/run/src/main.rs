//! `ioth-run -s STACK[,OPTIONS] [-v VNL]... [-c CONFIG]... [--] PROGRAM [ARGS...]`: creates the
//! stack, applies CONFIG, runs PROGRAM with every socket it creates on the stack (see
//! `ioth::run` and docs/run.md), forwards the signals sent to it, and exits with PROGRAM's
//! status (128 + the signal if a signal killed it). The stack ends with it.
#![deny(unsafe_code)]

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitCode;
use std::time::Duration;

use ioth::run::{Command, Config};
use signal_hook::consts::signal::*;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::SignalsInfo;
use signal_hook::low_level::siginfo::Cause;

const USAGE: &str =
    "usage: ioth-run -s STACK[,OPTIONS] [-v VNL]... [-c CONFIG]... [--] PROGRAM [ARGS...]

  -s STACK    the stack's plug-in (vdestack, smoltcp, ...), options after a comma
  -v VNL      an interface on this virtual network (one per -v: vde0, vde1, ...)
  -c CONFIG   configuration, comma-separated: iface=NAME ifindex=N mac=.. mtu=N eth
              ip=ADDR/LEN gw=ADDR dns=ADDR domain=NAME dhcp (see ioth-run(1))
  -h          this help
";

/// Signals passed on to the program when a process sent them (a terminal's go to the whole
/// process group, the program included, by themselves).
const FORWARD: &[i32] = &[
    SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM, SIGWINCH, SIGCONT,
];

/// Exit status of ioth-run's own failures (as env(1), timeout(1)): 125 before the program,
/// 126 it could not be started, 127 not found.
fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("ioth-run: {msg}");
    ExitCode::from(code)
}

struct Args {
    stack: String,
    vnls: Vec<String>,
    config: Vec<String>,
    argv: Vec<OsString>,
}

fn parse(mut it: impl Iterator<Item = OsString>) -> Result<Args, String> {
    let mut a = Args {
        stack: String::new(),
        vnls: Vec::new(),
        config: Vec::new(),
        argv: Vec::new(),
    };
    let text = |v: Option<OsString>, opt: &str| -> Result<String, String> {
        v.ok_or_else(|| format!("{opt} needs a value"))?
            .into_string()
            .map_err(|_| format!("the value of {opt} is not UTF-8"))
    };
    while let Some(arg) = it.next() {
        let b = arg.as_bytes();
        // -sVALUE as well as -s VALUE.
        let (opt, inline) = if b.len() > 2 && b[0] == b'-' && b[1] != b'-' {
            (
                &b[..2],
                Some(OsString::from(std::ffi::OsStr::from_bytes(&b[2..]))),
            )
        } else {
            (b, None)
        };
        let mut value = |o: &str| text(inline.clone().or_else(|| it.next()), o);
        match opt {
            b"-s" => a.stack = value("-s")?,
            b"-v" => a.vnls.push(value("-v")?),
            b"-c" => a.config.push(value("-c")?),
            b"-h" | b"--help" => return Err(String::new()),
            b"--" => {
                a.argv.extend(it);
                break;
            }
            _ if b.first() == Some(&b'-') => return Err(format!("unknown option {arg:?}")),
            _ => {
                a.argv.push(arg);
                a.argv.extend(it);
                break;
            }
        }
    }
    if a.stack.is_empty() {
        return Err("-s STACK is required".into());
    }
    if a.argv.is_empty() {
        return Err("no PROGRAM".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("ioth-run: {e}\n{USAGE}");
            return ExitCode::from(125);
        }
    };
    let mut config = match Config::parse(&args.config.join(",")) {
        Ok(c) => c,
        Err(e) => return fail(125, e),
    };
    // Handlers before anything starts, so that no signal is lost in between.
    let mut signals = match SignalsInfo::<WithOrigin>::new(FORWARD) {
        Ok(s) => s,
        Err(e) => return fail(125, format!("signal handlers: {e}")),
    };
    let stack = match ioth::Stack::builder(&args.stack).vnls(&args.vnls).build() {
        Ok(s) => s,
        Err(e) => return fail(125, format!("stack {}: {e}", args.stack)),
    };
    if let Err(e) = config.apply(&stack, Duration::from_secs(10)) {
        return fail(125, format!("configuration: {e}"));
    }
    let mut cmd = Command::new(&stack, &args.argv[0]);
    cmd.args(&args.argv[1..]).die_with_parent(true);
    if let Some(text) = config.resolv_conf() {
        cmd.resolv_conf(&text);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.errno() == libc::ENOENT { 127 } else { 126 };
            return fail(code, e);
        }
    };
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let handle = signals.handle();
    let forwarder = std::thread::spawn(move || {
        for origin in signals.forever() {
            if matches!(origin.cause, Cause::Kernel) {
                continue;
            }
            if let Ok(sig) = nix::sys::signal::Signal::try_from(origin.signal) {
                let _ = nix::sys::signal::kill(pid, sig);
            }
        }
    });
    let status = child.wait();
    handle.close();
    let _ = forwarder.join();
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => ExitCode::from(c as u8),
            (None, Some(sig)) => ExitCode::from((128 + sig) as u8),
            _ => ExitCode::from(125),
        },
        Err(e) => fail(125, format!("wait: {e}")),
    }
}
