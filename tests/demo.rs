//! The demo (client/examples), run as a test: an echo server and a terminal client, each on its own
//! stack, over a VDE switch started by the test — with the Rust examples, with the C versions
//! compiled against the drop-in `ioth.h`, and mixed; on `vdestack` stacks (native fds), on
//! `smoltcp` stacks (proxied fds) and with one of each. Needs root (namespaces, taps).

use std::path::{Path, PathBuf};

use ioth_tests::cprog::{self, example};
use ioth_tests::demo;
use ioth_tests::vde::TempDir;

/// The C version of the example `name`, compiled into `dir`.
fn c_demo(dir: &Path, name: &str) -> PathBuf {
    cprog::compile_repo_c("client/examples/c", name, dir)
}

/// Both on vdestack stacks.
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

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn demo_rust_on_smoltcp() {
    let (s, c) = (example("iothtest_server"), example("iothtest_client"));
    demo::run(&s, "smoltcp", &c, "smoltcp");
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn demo_c_on_smoltcp() {
    let dir = TempDir::new("proxied-demo");
    let s = c_demo(dir.path(), "iothtest_server");
    let c = c_demo(dir.path(), "iothtest_client");
    demo::run(&s, "smoltcp", &c, "smoltcp");
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: vdestack (network namespaces, taps)"
)]
fn demo_mixed_smoltcp_and_vdestack() {
    let dir = TempDir::new("proxied-demo-mixed");
    let cs = c_demo(dir.path(), "iothtest_server");
    let cc = c_demo(dir.path(), "iothtest_client");
    let (rs, rc) = (example("iothtest_server"), example("iothtest_client"));
    demo::run(&rs, "smoltcp", &cc, "vdestack");
    demo::run(&cs, "vdestack", &rc, "smoltcp");
    demo::run(&cs, "smoltcp", &rc, "vdestack");
    demo::run(&rs, "vdestack", &cc, "smoltcp");
}
