//! The host's seccomp policy (applied by [`crate::sandbox`]): which system calls a confined
//! host may not make, compiled by [`crate::bpf`] once per process — the fork server builds it
//! before it forks hosts ([`prepare`]), so that each host only attaches it.

use std::sync::OnceLock;

/// The seccomp filter: a deny-list (the syscalls below: `EPERM`), `clone` with a namespace flag
/// (`EPERM`), `clone3` (`ENOSYS`: it passes its flags in memory, which seccomp cannot read, so
/// that libc falls back to `clone`), the x32 numbers (`EPERM`), another architecture (killed).
/// Compiled once per process ([`prepare`]) into one balanced tree ([`crate::bpf`]).
pub fn filter() -> Result<&'static seccompiler::BpfProgram, String> {
    static FILTER: OnceLock<Result<seccompiler::BpfProgram, String>> = OnceLock::new();
    FILTER.get_or_init(build).as_ref().map_err(Clone::clone)
}

/// Builds what every host's sandbox uses and does not depend on its plug-in (the seccomp
/// program), so that the fork server does it once for all the hosts it forks.
pub fn prepare() {
    let _ = filter();
}

fn build() -> Result<seccompiler::BpfProgram, String> {
    use crate::bpf::{ret_errno, Action, Policy};
    let deny: &[libc::c_long] = &[
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_pidfd_getfd,
        libc::SYS_kcmp,
        libc::SYS_setns,
        libc::SYS_unshare,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_mount_setattr,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_bpf,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ];
    let eperm = ret_errno(libc::EPERM);
    let mut rules: Vec<(u32, Action)> = deny
        .iter()
        .map(|s| (*s as u32, Action::Ret(eperm)))
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
        Action::DenyIfArg0(ns_flags as u32, eperm),
    ));
    rules.push((
        libc::SYS_clone3 as u32,
        Action::Ret(ret_errno(libc::ENOSYS)),
    ));
    #[cfg(target_arch = "x86_64")]
    let arch = 62 | 0x8000_0000 | 0x4000_0000; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    let arch = 183 | 0x8000_0000 | 0x4000_0000; // AUDIT_ARCH_AARCH64
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return Err(format!("no seccomp filter for {}", std::env::consts::ARCH));
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    crate::bpf::compile(&Policy {
        arch,
        rules,
        high: eperm,
    })
}

#[cfg(test)]
mod tests {
    use crate::bpf::{ret_errno, tests::run, RET_ALLOW, RET_KILL_PROCESS};

    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;

    fn verdict(nr: libc::c_long, arg0: u64) -> u32 {
        let prog = super::filter().expect("the host's filter compiles");
        run(prog, nr as u32, ARCH, arg0).0
    }

    #[test]
    fn the_host_filter_refuses_what_it_names_and_allows_the_rest() {
        let eperm = ret_errno(libc::EPERM);
        for nr in [
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_setns,
            libc::SYS_unshare,
            libc::SYS_mount,
            libc::SYS_bpf,
            libc::SYS_io_uring_setup,
        ] {
            assert_eq!(verdict(nr, 0), eperm, "syscall {nr}");
        }
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_socket,
            libc::SYS_sendmsg,
            libc::SYS_openat,
            libc::SYS_exit_group,
        ] {
            assert_eq!(verdict(nr, 0), RET_ALLOW, "syscall {nr}");
        }
        assert_eq!(verdict(libc::SYS_clone3, 0), ret_errno(libc::ENOSYS));
        // A thread, a fork: allowed; any namespace flag: refused.
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        assert_eq!(verdict(libc::SYS_clone, thread), RET_ALLOW);
        assert_eq!(verdict(libc::SYS_clone, libc::SIGCHLD as u64), RET_ALLOW);
        for f in [
            libc::CLONE_NEWNET,
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWNS,
            0x80,
        ] {
            assert_eq!(
                verdict(libc::SYS_clone, f as u64 | libc::SIGCHLD as u64),
                eperm
            );
        }
        let prog = super::filter().unwrap();
        assert_eq!(
            run(prog, libc::SYS_read as u32, 0x4000_0003, 0).0,
            RET_KILL_PROCESS
        );
    }
}
