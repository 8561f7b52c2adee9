//! The seed's demo, run as a test: an echo server and a terminal client, each on its own
//! `vdestack` stack, over a VDE switch started by the test — with the Rust examples, with the C
//! versions compiled against the drop-in `ioth.h`, and mixed. Needs root (namespaces, taps).

use std::path::{Path, PathBuf};

use ioth_tests::cprog::{self, example};
use ioth_tests::demo;
use ioth_tests::netns::is_root;
use ioth_tests::vde::TempDir;

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
    demo::run(server, "vdestack", client, "vdestack");
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
