//! Shared helpers for the end-to-end tests.

pub mod cprog;
pub mod dad;
pub mod demo;
pub mod dhcp;
pub mod netns;
pub mod pattern;
pub mod proc;
pub mod sock;
pub mod stacks;
pub mod stdsock;
pub mod vde;
