//! Shared pieces of the ioth bench: samples and their statistics, the report table, the check
//! that the release host is built, and reusable workloads.

pub mod affinity;
pub mod cbridge;
pub mod floor;
pub mod procstat;
pub mod report;
pub mod rwwrap;
pub mod samples;
pub mod sock;
pub mod sock_work;
pub mod udp_echo;
pub mod vde;
pub mod workload;

use std::path::PathBuf;

pub use report::Report;
pub use samples::Samples;

/// Options every scenario gets.
#[derive(Debug, Clone, Copy)]
pub struct Opts {
    /// `--quick`: a tenth of the iterations, for a smoke run (figures are then rough).
    pub quick: bool,
}

impl Opts {
    /// `n`, or a tenth of it (at least 1) in a quick run.
    pub fn n(&self, n: usize) -> usize {
        if self.quick {
            (n / 10).max(1)
        } else {
            n
        }
    }
}

/// One benchmark scenario: a name to select it by and a function producing its table.
pub struct Scenario {
    /// Selects the scenario on the command line (substring match).
    pub name: &'static str,
    /// One line saying what it compares.
    pub about: &'static str,
    /// Runs it.
    pub run: fn(&Opts) -> Report,
}

/// The `ioth-host` and kernel plug-in this bench will use, or a message saying how to build
/// them. The library looks for the host next to the bench executable's parent directory
/// (`target/release/` for `cargo bench`), and the host for its plug-ins in its own directory.
pub fn release_host() -> Result<(PathBuf, PathBuf), String> {
    let how = "build them first with:  cargo build --release --workspace";
    if let Some(h) = std::env::var_os("IOTH_HOST").filter(|v| !v.is_empty()) {
        let h = PathBuf::from(h);
        return if h.is_file() {
            let dir = h.parent().map(PathBuf::from).unwrap_or_default();
            Ok((h, dir.join("libioth_kernel.so")))
        } else {
            Err(format!("IOTH_HOST={} does not exist", h.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .ok_or("bench executable has no grandparent directory")?
        .to_path_buf();
    let host = dir.join("ioth-host");
    let plugin = dir.join("libioth_kernel.so");
    for p in [&host, &plugin] {
        if !p.is_file() {
            return Err(format!("{} is missing; {how}", p.display()));
        }
    }
    Ok((host, plugin))
}
