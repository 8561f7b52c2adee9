//! The host's seccomp policy (applied by [`crate::sandbox`]): which system calls a confined
//! host may not make, compiled by [`crate::bpf`].
//!
//! Refused: a deny-list ([`DENY`]), `clone` with a namespace flag, and a new handler for
//! `SIGSYS` (which would hide refusals, below); `clone3` gets `ENOSYS` (it passes its flags in
//! memory, which seccomp cannot read, so that libc falls back to `clone`; that is no refusal),
//! the x32 numbers of x86-64 `EPERM`, another architecture's entry kills the process.
//!
//! A refusal made by the host's own code — the host, libc, the plug-in and the libraries
//! mapped when the sandbox is applied: [`code_ranges`] — traps (`SIGSYS`), and the host's
//! handler ([`crate::sigsys`]) records it for the audit trail and returns `EPERM` to the
//! caller, which carries on as before; from anywhere else (a program the plug-in started,
//! code mapped later) it fails with `EPERM` directly.

use std::sync::OnceLock;

use crate::bpf::{ret_errno, Action, Policy, Trap, Verdict};

/// The deny-list: refused with `EPERM`, by name (the trail names what was refused).
pub const DENY: &[(&str, libc::c_long)] = &[
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("kcmp", libc::SYS_kcmp),
    ("setns", libc::SYS_setns),
    ("unshare", libc::SYS_unshare),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("bpf", libc::SYS_bpf),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
];

/// The name of refused system call `nr`, for the trail.
pub fn name(nr: i64) -> &'static str {
    match nr {
        n if n == libc::SYS_clone => "clone",
        n if n == libc::SYS_rt_sigaction => "rt_sigaction",
        n => DENY
            .iter()
            .find(|(_, s)| *s == n)
            .map_or("?", |(name, _)| name),
    }
}

/// The rules, built once per process ([`prepare`]).
fn rules() -> &'static [(u32, Action)] {
    static RULES: OnceLock<Vec<(u32, Action)>> = OnceLock::new();
    RULES.get_or_init(|| {
        let refuse = Verdict::Refuse(libc::EPERM);
        let mut rules: Vec<(u32, Action)> = DENY
            .iter()
            .map(|(_, s)| (*s as u32, Action::Always(refuse)))
            .collect();
        let ns_flags = libc::CLONE_NEWNS
            | libc::CLONE_NEWUSER
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWCGROUP
            | 0x80; // CLONE_NEWTIME
        rules.push((
            libc::SYS_clone as u32,
            Action::IfArg0Any(ns_flags as u32, refuse),
        ));
        rules.push((
            libc::SYS_rt_sigaction as u32,
            Action::IfArg0IsAndArg1Set(libc::SIGSYS as u32, refuse),
        ));
        rules.push((
            libc::SYS_clone3 as u32,
            Action::Always(Verdict::Ret(ret_errno(libc::ENOSYS))),
        ));
        rules
    })
}

/// Builds what every host's sandbox uses and does not depend on its plug-in, so that the fork
/// server does it once for all the hosts it forks: the rules, and the whole filter for the fork
/// server's own code ranges ([`filter_for`]).
pub fn prepare() {
    let _ = rules();
    let _ = prebuilt();
}

/// The filter for the fork server's code ranges, and those ranges, built by [`prepare`] before
/// its first fork (the hosts it forks inherit it); never built in an exec'd host.
static PREBUILT: OnceLock<Option<Prebuilt>> = OnceLock::new();

/// Code ranges, and the filter for them.
type Prebuilt = (Vec<(u64, u64)>, seccompiler::BpfProgram);

fn prebuilt() -> Option<&'static Prebuilt> {
    PREBUILT
        .get_or_init(|| {
            let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
            let ranges = code_ranges(&maps);
            let prog = filter(ranges.clone()).ok()?;
            Some((ranges, prog))
        })
        .as_ref()
}

/// [`filter`] for `ranges`: the fork server's, built once ([`prepare`]), when a host's code is
/// mapped where its fork server's was (a built-in plug-in that mapped no code of its own).
pub fn filter_for(ranges: Vec<(u64, u64)>) -> Result<seccompiler::BpfProgram, String> {
    match PREBUILT.get().and_then(Option::as_ref) {
        Some((r, prog)) if *r == ranges => Ok(prog.clone()),
        _ => filter(ranges),
    }
}

/// The executable mappings of this process (from `/proc/self/maps`): where [`filter`]'s
/// refusals trap.
pub fn code_ranges(maps: &str) -> Vec<(u64, u64)> {
    maps.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            if perms.as_bytes().get(2) != Some(&b'x') {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            ))
        })
        .collect()
}

/// The filter; refusals from `ranges` trap, others return `EPERM`.
pub fn filter(ranges: Vec<(u64, u64)>) -> Result<seccompiler::BpfProgram, String> {
    #[cfg(target_arch = "x86_64")]
    let arch = 62 | 0x8000_0000 | 0x4000_0000; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    let arch = 183 | 0x8000_0000 | 0x4000_0000; // AUDIT_ARCH_AARCH64
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return Err(format!("no seccomp filter for {}", std::env::consts::ARCH));
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    crate::bpf::compile(&Policy {
        arch,
        rules: rules().to_vec(),
        high: Verdict::Ret(ret_errno(libc::EPERM)),
        trap: Trap { ranges },
    })
}

#[cfg(test)]
mod tests {
    use crate::bpf::tests::{run, Call};
    use crate::bpf::{ret_errno, ret_trap, RET_ALLOW, RET_KILL_PROCESS};

    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;

    /// The host's code, for the tests.
    const CODE: (u64, u64) = (0x5555_5555_0000, 0x5555_5556_0000);

    fn verdict(nr: libc::c_long, args: [u64; 6], ip: u64) -> u32 {
        let prog = super::filter(vec![CODE]).expect("the host's filter compiles");
        let c = Call {
            nr: nr as u32,
            arch: ARCH,
            ip,
            args,
        };
        run(&prog, c).0
    }

    fn arg0(a: u64) -> [u64; 6] {
        [a, 0, 0, 0, 0, 0]
    }

    #[test]
    fn the_host_filter_refuses_what_it_names_and_allows_the_rest() {
        let (eperm, trap) = (ret_errno(libc::EPERM), ret_trap(libc::EPERM));
        for (name, nr) in super::DENY {
            assert_eq!(verdict(*nr, arg0(0), 0x1000), eperm, "{name}");
            assert_eq!(verdict(*nr, arg0(0), CODE.0 + 4), trap, "{name}");
            assert_eq!(super::name(*nr), *name);
        }
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_socket,
            libc::SYS_sendmsg,
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_exit_group,
        ] {
            assert_eq!(verdict(nr, arg0(0), CODE.0), RET_ALLOW, "syscall {nr}");
        }
        assert_eq!(
            verdict(libc::SYS_clone3, arg0(0), CODE.0),
            ret_errno(libc::ENOSYS)
        );
        // A thread, a fork: allowed; any namespace flag: refused.
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        assert_eq!(verdict(libc::SYS_clone, arg0(thread), CODE.0), RET_ALLOW);
        let fork = libc::SIGCHLD as u64;
        assert_eq!(verdict(libc::SYS_clone, arg0(fork), CODE.0), RET_ALLOW);
        for f in [
            libc::CLONE_NEWNET,
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWNS,
            0x80,
        ] {
            let flags = arg0(f as u64 | fork);
            assert_eq!(verdict(libc::SYS_clone, flags, CODE.0), trap);
            assert_eq!(verdict(libc::SYS_clone, flags, 0), eperm);
        }
        // Taking SIGSYS over is refused; looking at it, or other signals, are not.
        let sigsys = libc::SIGSYS as u64;
        let act = [sigsys, 0x7000, 0, 8, 0, 0];
        assert_eq!(verdict(libc::SYS_rt_sigaction, act, CODE.0), trap);
        let query = [sigsys, 0, 0x7000, 8, 0, 0];
        assert_eq!(verdict(libc::SYS_rt_sigaction, query, CODE.0), RET_ALLOW);
        let other = [libc::SIGUSR1 as u64, 0x7000, 0, 8, 0, 0];
        assert_eq!(verdict(libc::SYS_rt_sigaction, other, CODE.0), RET_ALLOW);
        let prog = super::filter(vec![CODE]).unwrap();
        let foreign = Call {
            nr: libc::SYS_read as u32,
            arch: 0x4000_0003,
            ..Call::default()
        };
        assert_eq!(run(&prog, foreign).0, RET_KILL_PROCESS);
    }

    #[test]
    fn code_ranges_are_the_executable_mappings() {
        let maps = "\
55d0c0000000-55d0c0010000 r--p 00000000 fe:00 1 /usr/bin/ioth-host
55d0c0010000-55d0c0090000 r-xp 00010000 fe:00 1 /usr/bin/ioth-host
7f0000000000-7f0000021000 rw-p 00000000 00:00 0
7f0000100000-7f0000280000 r-xp 00028000 fe:00 2 /usr/lib/libc.so.6
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]";
        assert_eq!(
            super::code_ranges(maps),
            vec![
                (0x55d0_c001_0000, 0x55d0_c009_0000),
                (0x7f00_0010_0000, 0x7f00_0028_0000),
                (0xffff_ffff_ff60_0000, 0xffff_ffff_ff60_1000),
            ]
        );
    }

    /// The filter prepared for this process's own ranges is the one built for them, and other
    /// ranges get a filter of their own (the traps follow the ranges given).
    #[test]
    fn the_prepared_filter_serves_only_its_own_ranges() {
        super::prepare();
        let (own, prog) = super::prebuilt().expect("a prepared filter");
        assert_eq!(super::filter_for(own.clone()).unwrap(), *prog);
        assert_eq!(*prog, super::filter(own.clone()).unwrap());
        let other = vec![CODE];
        assert_eq!(
            super::filter_for(other.clone()).unwrap(),
            super::filter(other).unwrap()
        );
        assert_ne!(super::filter_for(vec![CODE]).unwrap(), *prog);
    }
}
