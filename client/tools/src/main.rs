//! `ioth`: the tools of ioth in one command.
//!
//! - `ioth ps [--json]`: the stacks running on this machine that the user may see (docs/audit.md);
//! - `ioth audit [OPTIONS] TRAIL...`: reads audit trails: a summary per stack, or its events;
//! - `ioth run ...`: `ioth-run` (the program next to this one, else on `PATH`).
#![deny(unsafe_code)]

mod audit;
mod ps;

use std::process::ExitCode;

const USAGE: &str = "usage: ioth ps [--json]
       ioth audit [--events] [--pid PID] [--kind KIND[,KIND...]] [--since TIME] [--until TIME]
                  [--follow] [--json] TRAIL...
       ioth run [ioth-run options] -- PROGRAM [ARGS...]
TIME is seconds since the epoch or an RFC 3339 UTC time (a prefix: 2025-01-31T12:00).";

/// Restores the default action of SIGPIPE (Rust ignores it), so that `ioth ps | head` ends
/// quietly like any filter instead of failing on a closed stdout.
#[allow(unsafe_code)]
fn default_sigpipe() {
    // SAFETY: signal(2) with a standard signal number and SIG_DFL; no handler is installed.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

fn main() -> ExitCode {
    default_sigpipe();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let r = match cmd.as_str() {
        "ps" => ps::main(rest),
        "audit" => audit::main(rest),
        "run" => run(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ioth: {e}");
            ExitCode::from(2)
        }
    }
}

/// `ioth run`: executes `ioth-run` with the same arguments (it replaces this process).
fn run(args: &[String]) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let next = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("ioth-run")))
        .filter(|p| p.is_file());
    let prog = next.map_or_else(|| "ioth-run".into(), |p| p.into_os_string());
    let e = std::process::Command::new(&prog).args(args).exec();
    Err(format!("cannot run {}: {e}", prog.to_string_lossy()))
}
