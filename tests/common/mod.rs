//! Shared helpers for the end-to-end tests.

pub mod netns;
pub mod proc;
pub mod stacks;
pub mod vde;
