//! The stacks linked into the host binary itself: `kernel`, `vdestack` and `smoltcp` (each behind
//! the cargo feature of its name, all on by default), so that a host installed alone
//! (`cargo install ioth-host`) is complete.
//!
//! A built-in is the very plug-in crate of `plugins/<name>` linked as an rlib: the same
//! `ioth_<name>_*` symbols as its `ioth_<name>.so`, resolved by the linker instead of `dlsym`, and
//! loaded through the same code ([`crate::plugin`]). Where it stands in the search order: after
//! the application's directories (`IOTH_PLUGIN_PATH`, `~/.ioth`), so that a user can still try
//! another build of a stack as an `.so`, and before the host's own directory, whose `.so` of the
//! same stack is the same code.
#![allow(unsafe_code)]

use std::ffi::c_void;

/// The symbols a plug-in may define, by suffix (`ioth_<name>_<suffix>`), that a built-in has.
/// Every built-in has exactly these (checked against the plug-in's `.so` by the tests below).
#[cfg(test)]
const SUFFIXES: [&str; 5] = [
    "newstack",
    "delstack",
    "newstack_error",
    "license",
    "sandbox",
];

/// One stack linked into the host.
pub struct Builtin {
    /// The stack's name (`kernel`).
    pub name: &'static str,
    /// The address of `ioth_<name>_<suffix>`, for a suffix of [`SUFFIXES`].
    symbol: fn(&str) -> Option<*const c_void>,
}

impl Builtin {
    /// The address of `ioth_<name>_<suffix>`, if the stack defines it.
    pub fn symbol(&self, suffix: &str) -> Option<*const c_void> {
        (self.symbol)(suffix)
    }
}

/// Declares the symbols of a built-in stack and its [`Builtin`].
macro_rules! builtin {
    ($feature:literal, $module:ident, $krate:ident, $name:literal) => {
        #[cfg(feature = $feature)]
        mod $module {
            use std::ffi::c_void;
            // Links the plug-in crate (an rlib) into the host; its symbols come from it.
            use $krate as _;

            // Typed as bytes: only their addresses are taken here; the loader gives each the
            // type the plug-in ABI says.
            extern "C" {
                #[link_name = concat!("ioth_", $name, "_newstack")]
                static NEWSTACK: u8;
                #[link_name = concat!("ioth_", $name, "_delstack")]
                static DELSTACK: u8;
                #[link_name = concat!("ioth_", $name, "_newstack_error")]
                static NEWSTACK_ERROR: u8;
                #[link_name = concat!("ioth_", $name, "_license")]
                static LICENSE: u8;
                #[link_name = concat!("ioth_", $name, "_sandbox")]
                static SANDBOX: u8;
            }

            pub fn symbol(suffix: &str) -> Option<*const c_void> {
                let p: *const u8 = match suffix {
                    "newstack" => &raw const NEWSTACK,
                    "delstack" => &raw const DELSTACK,
                    "newstack_error" => &raw const NEWSTACK_ERROR,
                    "license" => &raw const LICENSE,
                    "sandbox" => &raw const SANDBOX,
                    _ => return None,
                };
                Some(p.cast())
            }

            pub const BUILTIN: super::Builtin = super::Builtin {
                name: $name,
                symbol,
            };
        }
    };
}

builtin!("kernel", kernel, ioth_kernel, "kernel");
builtin!("vdestack", vdestack, ioth_vdestack, "vdestack");
builtin!("smoltcp", smoltcp, ioth_smoltcp, "smoltcp");

/// The stacks linked into this host.
pub const ALL: &[Builtin] = &[
    #[cfg(feature = "kernel")]
    kernel::BUILTIN,
    #[cfg(feature = "vdestack")]
    vdestack::BUILTIN,
    #[cfg(feature = "smoltcp")]
    smoltcp::BUILTIN,
];

/// The built-in stack `name`, if this host has one.
pub fn find(name: &str) -> Option<&'static Builtin> {
    ALL.iter().find(|b| b.name == name)
}

/// The names of the built-in stacks, for messages.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|b| b.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// cargo's build directory: the test binary is in its `deps/`.
    fn build_dir() -> PathBuf {
        let exe = std::env::current_exe().expect("current_exe");
        exe.parent()
            .and_then(|d| d.parent())
            .expect("build dir")
            .to_path_buf()
    }

    #[test]
    fn every_builtin_has_the_symbols_of_its_shared_object() {
        assert!(!ALL.is_empty(), "the default features build stacks in");
        for b in ALL {
            let so = build_dir().join(format!("libioth_{}.so", b.name));
            let out = std::process::Command::new("nm")
                .args(["-D", "--defined-only", "--format=posix"])
                .arg(&so)
                .output()
                .expect("run nm (binutils)");
            assert!(out.status.success(), "nm {}: {out:?}", so.display());
            let prefix = format!("ioth_{}_", b.name);
            let mut exported: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter_map(|s| s.strip_prefix(&prefix).map(str::to_owned))
                .collect();
            exported.sort();
            let mut ours: Vec<String> = SUFFIXES.iter().map(|s| s.to_string()).collect();
            ours.sort();
            assert_eq!(
                exported,
                ours,
                "{}: the built-in table is stale",
                so.display()
            );
            for s in SUFFIXES {
                assert!(b.symbol(s).is_some_and(|p| !p.is_null()), "{}: {s}", b.name);
            }
            assert!(b.symbol("socket").is_none());
            assert!(find(b.name).is_some());
        }
        assert!(find("nonexistent").is_none());
    }
}
