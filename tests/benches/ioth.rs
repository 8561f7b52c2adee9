//! The ioth benchmark: every figure beside its baseline, measured in the same run.
//!
//! ```text
//! cargo build --release --workspace          # the bench uses target/release/ioth-host
//! cargo bench -p ioth-tests --bench ioth                 # every scenario
//! cargo bench -p ioth-tests --bench ioth -- msocket      # scenarios whose name contains it
//! cargo bench -p ioth-tests --bench ioth -- --list       # their names
//! cargo bench -p ioth-tests --bench ioth -- --quick      # a tenth of the work, rough figures
//! ```
//!
//! Scenarios live in `scenarios/`, one file each; shared pieces (samples, the report table,
//! workloads) in `support/`.

mod scenarios;
mod support;

use std::process::ExitCode;

use support::Opts;

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{date}, {cpus} CPUs, Linux {}", kernel.trim())
}

fn main() -> ExitCode {
    let mut opts = Opts { quick: false };
    let mut filters = Vec::new();
    let mut list = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--quick" => opts.quick = true,
            "--list" => list = true,
            // `cargo bench` passes --bench; other libtest flags mean nothing here.
            s if s.starts_with("--") => {}
            s => filters.push(s.to_owned()),
        }
    }
    if list {
        for s in scenarios::ALL {
            println!("{:16} {}", s.name, s.about);
        }
        return ExitCode::SUCCESS;
    }
    let chosen: Vec<_> = scenarios::ALL
        .iter()
        .filter(|s| filters.is_empty() || filters.iter().any(|f| s.name.contains(f.as_str())))
        .collect();
    if chosen.is_empty() {
        eprintln!("no scenario matches {filters:?}; --list shows them");
        return ExitCode::from(2);
    }
    let (host, plugin) = match support::release_host() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ioth bench: {e}");
            return ExitCode::from(2);
        }
    };
    println!("# ioth bench — {}", machine());
    println!("host: {}\nplug-in: {}", host.display(), plugin.display());
    if cfg!(debug_assertions) {
        println!("WARNING: this bench binary is a debug build; its figures mean little.");
    }
    if opts.quick {
        println!("--quick: a tenth of the iterations; rough figures.");
    }
    for s in chosen {
        (s.run)(&opts).print();
    }
    ExitCode::SUCCESS
}
