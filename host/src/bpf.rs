//! The host's seccomp filter, written as a classic BPF program shaped as a balanced tree over
//! the syscall numbers it names.
//!
//! Why not seccompiler's compiler (whose types and loader the sandbox still uses): it emits one
//! linear chain of comparisons, and the kernel, when a filter is attached, runs the filter once
//! per syscall number to build its cache of always-allowed syscalls (`seccomp_cache_prepare`).
//! For a deny-list every allowed number walks the whole chain, so attaching the chain cost
//! ~150 µs per host; the tree costs a handful of comparisons per number. The program is built
//! once (in the fork server, before it forks hosts) and its tests run it through an
//! interpreter over every syscall number.
//!
//! Layout: check the architecture, refuse the x32 numbers of x86-64 (bit 30 set), then a
//! binary search on the number (`JGE` nodes) down to leaves of at most [`LEAF`] `JEQ` tests,
//! each followed by its action and the leaf's default. Every jump is forward and short.

use seccompiler::sock_filter;

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
const JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x05 | 0x30; // BPF_JMP | BPF_JGE | BPF_K
const JSET_K: u16 = 0x05 | 0x40; // BPF_JMP | BPF_JSET | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
/// The low 32 bits of the first argument (both supported architectures are little-endian).
const ARG0_LO: u32 = 16;

/// seccomp return values (linux/seccomp.h).
pub const RET_ALLOW: u32 = 0x7fff_0000;
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
/// `SECCOMP_RET_ERRNO` with `errno` in its data.
pub const fn ret_errno(errno: i32) -> u32 {
    0x0005_0000 | (errno as u32 & 0xffff)
}

/// The first syscall number of the x32 ABI on x86-64 (`__X32_SYSCALL_BIT`).
const X32_BIT: u32 = 0x4000_0000;

/// Most `JEQ` tests in one leaf of the tree.
const LEAF: usize = 4;

/// What the filter does for one syscall number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Return this seccomp value.
    Ret(u32),
    /// Return `deny` when the first argument has any bit of `mask` in its low 32 bits, else
    /// allow.
    DenyIfArg0(u32, u32),
}

/// The filter's policy: everything not named is allowed.
#[derive(Clone, Debug)]
pub struct Policy {
    /// `AUDIT_ARCH_*` of the process: any other architecture is killed.
    pub arch: u32,
    /// The syscall numbers with their action.
    pub rules: Vec<(u32, Action)>,
    /// What a syscall number at or above [`X32_BIT`] gets.
    pub high: u32,
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: usize, jf: usize) -> Result<sock_filter, String> {
    let off = |n: usize| u8::try_from(n).map_err(|_| format!("BPF jump of {n} is too long"));
    Ok(sock_filter {
        code,
        jt: off(jt)?,
        jf: off(jf)?,
        k,
    })
}

fn action(a: Action) -> Vec<sock_filter> {
    match a {
        Action::Ret(v) => vec![stmt(RET_K, v)],
        Action::DenyIfArg0(mask, deny) => vec![
            stmt(LD_W_ABS, ARG0_LO),
            sock_filter {
                code: JSET_K,
                jt: 0,
                jf: 1,
                k: mask,
            },
            stmt(RET_K, deny),
            stmt(RET_K, RET_ALLOW),
        ],
    }
}

/// The subtree for `rules` (sorted by number, the number in the accumulator).
fn tree(rules: &[(u32, Action)], out: &mut Vec<sock_filter>) -> Result<(), String> {
    if rules.len() <= LEAF {
        for &(nr, a) in rules {
            let block = action(a);
            out.push(jump(JEQ_K, nr, 0, block.len())?);
            out.extend(block);
        }
        out.push(stmt(RET_K, RET_ALLOW));
        return Ok(());
    }
    let mid = rules.len() / 2;
    let mut left = Vec::new();
    tree(&rules[..mid], &mut left)?;
    // A >= the middle number: skip the left half.
    out.push(jump(JGE_K, rules[mid].0, left.len(), 0)?);
    out.extend(left);
    tree(&rules[mid..], out)
}

/// Compiles `p`; fails on a number named twice or a program too long for the kernel.
pub fn compile(p: &Policy) -> Result<Vec<sock_filter>, String> {
    let mut rules = p.rules.clone();
    rules.sort_by_key(|r| r.0);
    if let Some(w) = rules.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!("syscall {} named twice", w[0].0));
    }
    if let Some(r) = rules.iter().find(|r| r.0 >= X32_BIT) {
        return Err(format!("syscall {} is out of range", r.0));
    }
    let mut out = vec![
        stmt(LD_W_ABS, ARCH),
        jump(JEQ_K, p.arch, 1, 0)?,
        stmt(RET_K, RET_KILL_PROCESS),
        stmt(LD_W_ABS, NR),
        jump(JGE_K, X32_BIT, 0, 1)?,
        stmt(RET_K, p.high),
    ];
    tree(&rules, &mut out)?;
    // BPF_MAXINSNS.
    if out.len() > 4096 {
        return Err(format!("{} BPF instructions are too many", out.len()));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A classic BPF interpreter for the instructions [`compile`] emits: the verdict and how
    /// many instructions ran.
    pub(crate) fn run(prog: &[sock_filter], nr: u32, arch: u32, arg0: u64) -> (u32, usize) {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        data[16..24].copy_from_slice(&arg0.to_le_bytes());
        let (mut a, mut pc, mut steps) = (0u32, 0usize, 0usize);
        loop {
            let i = &prog[pc];
            steps += 1;
            pc += 1;
            let taken = |c: bool| usize::from(if c { i.jt } else { i.jf });
            match i.code {
                LD_W_ABS => {
                    let k = i.k as usize;
                    a = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                }
                JEQ_K => pc += taken(a == i.k),
                JGE_K => pc += taken(a >= i.k),
                JSET_K => pc += taken(a & i.k != 0),
                RET_K => return (i.k, steps),
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    const ARCH_X: u32 = 62 | 0x8000_0000 | 0x4000_0000;

    fn policy(n: u32) -> Policy {
        // Every third number up to n denied, 56 (clone on x86-64) checked on its flags.
        let mut rules: Vec<(u32, Action)> = (0..n)
            .filter(|x| x % 3 == 1 && *x != 56)
            .map(|x| (x, Action::Ret(ret_errno(1))))
            .collect();
        rules.push((56, Action::DenyIfArg0(0x7e02_0080, ret_errno(1))));
        rules.push((435, Action::Ret(ret_errno(38))));
        Policy {
            arch: ARCH_X,
            rules,
            high: ret_errno(1),
        }
    }

    #[test]
    fn every_number_gets_its_rule_and_only_that() {
        for n in [0, 1, 5, 40, 150] {
            let p = policy(n);
            let prog = compile(&p).unwrap();
            for nr in 0..1000u32 {
                let want = match p.rules.iter().find(|r| r.0 == nr) {
                    None => RET_ALLOW,
                    Some((_, Action::Ret(v))) => *v,
                    Some((_, Action::DenyIfArg0(..))) => RET_ALLOW,
                };
                assert_eq!(run(&prog, nr, ARCH_X, 0).0, want, "n={n} nr={nr}");
            }
        }
    }

    #[test]
    fn any_bit_of_the_mask_denies_clone() {
        let prog = compile(&policy(100)).unwrap();
        assert_eq!(run(&prog, 56, ARCH_X, 0x0000_0100).0, RET_ALLOW);
        assert_eq!(run(&prog, 56, ARCH_X, 0x1_0000_0000).0, RET_ALLOW);
        for bit in 0..32 {
            let flag = 1u64 << bit;
            let want = if 0x7e02_0080u64 & flag != 0 {
                ret_errno(1)
            } else {
                RET_ALLOW
            };
            assert_eq!(run(&prog, 56, ARCH_X, flag | 0x100).0, want, "bit {bit}");
        }
    }

    #[test]
    fn other_architectures_are_killed_and_x32_numbers_refused() {
        let prog = compile(&policy(100)).unwrap();
        assert_eq!(run(&prog, 0, 0x4000_0003, 0).0, RET_KILL_PROCESS);
        assert_eq!(run(&prog, 2, ARCH_X, 0).0, RET_ALLOW);
        assert_eq!(run(&prog, X32_BIT | 2, ARCH_X, 0).0, ret_errno(1));
        assert_eq!(run(&prog, u32::MAX, ARCH_X, 0).0, ret_errno(1));
    }

    #[test]
    fn the_tree_stays_shallow() {
        // 50 rules: the arch and x32 checks, ~6 JGE nodes, a leaf of at most LEAF tests.
        let p = policy(150);
        let prog = compile(&p).unwrap();
        let worst = (0..600u32)
            .filter(|nr| !p.rules.iter().any(|r| r.0 == *nr))
            .map(|nr| run(&prog, nr, ARCH_X, 0).1)
            .max()
            .unwrap();
        assert!(
            worst <= 6 + 7 + LEAF + 1,
            "{worst} instructions for an allowed number"
        );
    }

    #[test]
    fn bad_policies_are_refused() {
        let mut p = policy(10);
        p.rules.push((1, Action::Ret(RET_ALLOW)));
        assert!(compile(&p).unwrap_err().contains("twice"));
        let mut p = policy(10);
        p.rules.push((X32_BIT, Action::Ret(RET_ALLOW)));
        assert!(compile(&p).unwrap_err().contains("out of range"));
    }
}
