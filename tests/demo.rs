//! The demo (client/examples), run as a test: an echo server and a terminal client, each on its own
//! `vdestack` stack, over a VDE switch started by the test — with the Rust examples, with the C
//! versions compiled against the drop-in `ioth.h`, and mixed. Needs root (namespaces, taps).

use std::path::{Path, PathBuf};

use ioth_tests::cprog::{self, example};
use ioth_tests::demo;
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
#[cfg_attr(not(ioth_root), ignore = "needs root: network namespaces, tap devices")]
fn demo_rust() {
    run_demo(&example("iothtest_server"), &example("iothtest_client"));
}

#[test]
#[cfg_attr(not(ioth_root), ignore = "needs root: network namespaces, tap devices")]
fn demo_c() {
    let dir = TempDir::new("cdemo");
    let (s, c) = (
        c_demo(dir.path(), "iothtest_server"),
        c_demo(dir.path(), "iothtest_client"),
    );
    run_demo(&s, &c);
}

#[test]
#[cfg_attr(not(ioth_root), ignore = "needs root: network namespaces, tap devices")]
fn demo_mixed_rust_server_c_client() {
    let dir = TempDir::new("cdemo-mixed");
    run_demo(
        &example("iothtest_server"),
        &c_demo(dir.path(), "iothtest_client"),
    );
}
