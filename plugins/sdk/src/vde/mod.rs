//! VDE networks for plug-ins whose interfaces are VDE ports (feature `vde`): the VNL syntax
//! (`[ifname:]url`, default names `vde0`, `vde1`, …) in [`vnl`], and libvdeplug, loaded at run
//! time, in [`vdeplug`]. One copy shared by every plug-in (vdestack, smoltcp), so that a VNL means
//! the same thing on every stack.
//!
//! Runs in the host process, inside the plug-in that uses it.

pub mod vdeplug;
pub mod vnl;
