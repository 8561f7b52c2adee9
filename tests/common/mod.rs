//! Shared helpers for the end-to-end tests.
//!
//! Tests that need root (network namespaces, taps, another uid) carry
//! `#[cfg_attr(not(ioth_root), ignore = "needs root: …")]`: `tests/build.rs` sets `ioth_root` when
//! the tests are built by root, so that without root `cargo test` reports them as ignored (and
//! `cargo test -- --ignored` shows what they need), and as root — in CI — they all run.

pub mod cprog;
pub mod dad;
pub mod demo;
pub mod dhcp;
pub mod fault_plugins;
pub mod killed_host;
pub mod netns;
pub mod pattern;
pub mod plugin_host;
pub mod proc;
pub mod report;
pub mod sock;
pub mod stacks;
pub mod stdsock;
pub mod tempdir;
pub mod tentative;
pub mod vde;

/// Whether this process runs as root (for a test that checks more as root; a test that needs
/// root is gated at build time instead, see the crate doc).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
