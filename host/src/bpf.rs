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
//! each followed by its action and the leaf's default. A [`Verdict::Refuse`] jumps (`JA`) to an
//! epilogue at the end that traps (`SECCOMP_RET_TRAP`, for the host's `SIGSYS` handler to
//! record) when the call comes from one of [`Trap::ranges`] — the host's own code — and
//! returns the errno otherwise: a program the plug-in starts has no such handler, and gets the
//! errno instead of being killed. Every other jump is forward and short.

use seccompiler::sock_filter;

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
const JA: u16 = 0x05; // BPF_JMP | BPF_JA
const JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x05 | 0x30; // BPF_JMP | BPF_JGE | BPF_K
const JSET_K: u16 = 0x05 | 0x40; // BPF_JMP | BPF_JSET | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

// Offsets in `struct seccomp_data` (both supported architectures are little-endian: the low
// word of a 64-bit field comes first).
const NR: u32 = 0;
const ARCH: u32 = 4;
const IP_LO: u32 = 8;
const IP_HI: u32 = 12;
const fn arg_lo(i: u32) -> u32 {
    16 + 8 * i
}
const fn arg_hi(i: u32) -> u32 {
    20 + 8 * i
}

/// seccomp return values (linux/seccomp.h).
pub const RET_ALLOW: u32 = 0x7fff_0000;
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
/// `SECCOMP_RET_ERRNO` with `errno` in its data.
pub const fn ret_errno(errno: i32) -> u32 {
    0x0005_0000 | (errno as u32 & 0xffff)
}
/// `SECCOMP_RET_TRAP` with `errno` in its data (the `SIGSYS` handler finds it in `si_errno`).
pub const fn ret_trap(errno: i32) -> u32 {
    0x0003_0000 | (errno as u32 & 0xffff)
}

/// The first syscall number of the x32 ABI on x86-64 (`__X32_SYSCALL_BIT`).
const X32_BIT: u32 = 0x4000_0000;

/// Most `JEQ` tests in one leaf of the tree.
const LEAF: usize = 4;

/// An outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Return this seccomp value.
    Ret(u32),
    /// Refuse with this errno: trapped from [`Trap::ranges`], the errno elsewhere.
    Refuse(i32),
}

/// What the filter does for one syscall number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Always(Verdict),
    /// The verdict when the first argument has any bit of the mask in its low 32 bits, else
    /// allow.
    IfArg0Any(u32, Verdict),
    /// The verdict when the first argument's low 32 bits are this value and the second
    /// argument is not 0, else allow.
    IfArg0IsAndArg1Set(u32, Verdict),
}

/// Where refusals trap instead of returning their errno.
#[derive(Clone, Debug, Default)]
pub struct Trap {
    /// Instruction addresses `[start, end)` whose system calls trap.
    pub ranges: Vec<(u64, u64)>,
}

/// The filter's policy: everything not named is allowed.
#[derive(Clone, Debug)]
pub struct Policy {
    /// `AUDIT_ARCH_*` of the process: any other architecture is killed.
    pub arch: u32,
    /// The syscall numbers with their action.
    pub rules: Vec<(u32, Action)>,
    /// What a syscall number at or above [`X32_BIT`] gets.
    pub high: Verdict,
    pub trap: Trap,
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

/// The program being built, and the `JA`s to patch once the epilogues' places are known.
struct Out {
    code: Vec<sock_filter>,
    /// (index of a `JA`, errno of the epilogue it goes to)
    refusals: Vec<(usize, i32)>,
}

impl Out {
    /// One instruction for `v` (a `JA` to patch for a refusal).
    fn verdict(&mut self, v: Verdict) {
        match v {
            Verdict::Ret(r) => self.code.push(stmt(RET_K, r)),
            Verdict::Refuse(e) => {
                self.refusals.push((self.code.len(), e));
                self.code.push(stmt(JA, 0));
            }
        }
    }

    fn action(&mut self, a: Action) -> Result<(), String> {
        match a {
            Action::Always(v) => self.verdict(v),
            Action::IfArg0Any(mask, v) => {
                self.code.push(stmt(LD_W_ABS, arg_lo(0)));
                self.code.push(jump(JSET_K, mask, 0, 1)?);
                self.verdict(v);
                self.code.push(stmt(RET_K, RET_ALLOW));
            }
            Action::IfArg0IsAndArg1Set(value, v) => {
                self.code.push(stmt(LD_W_ABS, arg_lo(0)));
                self.code.push(jump(JEQ_K, value, 0, 5)?);
                self.code.push(stmt(LD_W_ABS, arg_lo(1)));
                self.code.push(jump(JEQ_K, 0, 0, 2)?);
                self.code.push(stmt(LD_W_ABS, arg_hi(1)));
                self.code.push(jump(JEQ_K, 0, 1, 0)?);
                self.verdict(v);
                self.code.push(stmt(RET_K, RET_ALLOW));
            }
        }
        Ok(())
    }

    /// The length of `a`'s block.
    fn len_of(a: Action) -> usize {
        match a {
            Action::Always(_) => 1,
            Action::IfArg0Any(..) => 4,
            Action::IfArg0IsAndArg1Set(..) => 8,
        }
    }

    /// The subtree for `rules` (sorted by number, the number in the accumulator).
    fn tree(&mut self, rules: &[(u32, Action)]) -> Result<(), String> {
        if rules.len() <= LEAF {
            for &(nr, a) in rules {
                self.code.push(jump(JEQ_K, nr, 0, Out::len_of(a))?);
                self.action(a)?;
            }
            self.code.push(stmt(RET_K, RET_ALLOW));
            return Ok(());
        }
        let mid = rules.len() / 2;
        let mut left = Out {
            code: Vec::new(),
            refusals: Vec::new(),
        };
        left.tree(&rules[..mid])?;
        // A >= the middle number: skip the left half.
        self.code
            .push(jump(JGE_K, rules[mid].0, left.code.len(), 0)?);
        let base = self.code.len();
        self.code.extend(left.code);
        self.refusals
            .extend(left.refusals.into_iter().map(|(i, e)| (i + base, e)));
        self.tree(&rules[mid..])
    }

    /// The epilogue of refusals with `errno`: trap from one of `ranges`, else the errno.
    fn epilogue(&mut self, errno: i32, ranges: &[(u64, u64)]) -> Result<(), String> {
        for &(start, end) in ranges {
            // Each range within one 4 GiB block: its high word, then the low word's bounds
            // (an end on the block's boundary has no upper bound in it).
            let hi = (start >> 32) as u32;
            let lo = start as u32;
            let upper = (end > start && ((end - 1) >> 32) as u32 == hi && end as u32 != 0)
                .then_some(end as u32);
            let rest = if upper.is_some() { 4 } else { 3 };
            self.code.push(stmt(LD_W_ABS, IP_HI));
            self.code.push(jump(JEQ_K, hi, 0, rest)?);
            self.code.push(stmt(LD_W_ABS, IP_LO));
            match upper {
                Some(u) => {
                    self.code.push(jump(JGE_K, lo, 0, 2)?);
                    self.code.push(jump(JGE_K, u, 1, 0)?);
                }
                None => self.code.push(jump(JGE_K, lo, 0, 1)?),
            }
            self.code.push(stmt(RET_K, ret_trap(errno)));
        }
        self.code.push(stmt(RET_K, ret_errno(errno)));
        Ok(())
    }
}

/// Splits `ranges` at 4 GiB boundaries and drops empty ones.
fn split(ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(mut start, end) in ranges {
        while start < end {
            // The start of the next 4 GiB block (the last block ends at u64::MAX).
            let block_end = (start | 0xffff_ffff).saturating_add(1);
            let stop = end.min(block_end);
            out.push((start, stop));
            start = stop;
        }
    }
    out
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
    let mut out = Out {
        code: vec![
            stmt(LD_W_ABS, ARCH),
            jump(JEQ_K, p.arch, 1, 0)?,
            stmt(RET_K, RET_KILL_PROCESS),
            stmt(LD_W_ABS, NR),
            jump(JGE_K, X32_BIT, 0, 1)?,
        ],
        refusals: Vec::new(),
    };
    out.verdict(p.high);
    out.tree(&rules)?;
    let ranges = split(&p.trap.ranges);
    let mut errnos: Vec<i32> = out.refusals.iter().map(|r| r.1).collect();
    errnos.sort_unstable();
    errnos.dedup();
    for e in errnos {
        let at = out.code.len();
        for &(i, _) in out.refusals.iter().filter(|r| r.1 == e) {
            out.code[i].k = (at - i - 1) as u32;
        }
        out.epilogue(e, &ranges)?;
    }
    // BPF_MAXINSNS.
    if out.code.len() > 4096 {
        return Err(format!("{} BPF instructions are too many", out.code.len()));
    }
    Ok(out.code)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A call as the filter sees it.
    #[derive(Clone, Copy, Default)]
    pub(crate) struct Call {
        pub nr: u32,
        pub arch: u32,
        pub ip: u64,
        pub args: [u64; 6],
    }

    /// A classic BPF interpreter for the instructions [`compile`] emits: the verdict and how
    /// many instructions ran.
    pub(crate) fn run(prog: &[sock_filter], c: Call) -> (u32, usize) {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&c.nr.to_le_bytes());
        data[4..8].copy_from_slice(&c.arch.to_le_bytes());
        data[8..16].copy_from_slice(&c.ip.to_le_bytes());
        for (i, a) in c.args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
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
                JA => pc += i.k as usize,
                JEQ_K => pc += taken(a == i.k),
                JGE_K => pc += taken(a >= i.k),
                JSET_K => pc += taken(a & i.k != 0),
                RET_K => return (i.k, steps),
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    const ARCH_X: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    /// Where the "host's code" of the tests lies: one range inside a 4 GiB block, one across a
    /// block boundary.
    const RANGES: [(u64, u64); 2] = [
        (0x5555_0000_1000, 0x5555_0004_0000),
        (0x7f00_ffff_f000, 0x7f01_0000_2000),
    ];

    fn call(nr: u32) -> Call {
        Call {
            nr,
            arch: ARCH_X,
            ..Call::default()
        }
    }

    fn policy(n: u32, trap: bool) -> Policy {
        // Every third number up to n refused, 56 (clone on x86-64) on its flags, 13
        // (rt_sigaction) when it installs a handler for 31.
        let mut rules: Vec<(u32, Action)> = (0..n)
            .filter(|x| x % 3 == 1 && ![13, 56].contains(x))
            .map(|x| (x, Action::Always(Verdict::Refuse(1))))
            .collect();
        rules.push((56, Action::IfArg0Any(0x7e02_0080, Verdict::Refuse(1))));
        rules.push((13, Action::IfArg0IsAndArg1Set(31, Verdict::Refuse(1))));
        rules.push((435, Action::Always(Verdict::Ret(ret_errno(38)))));
        Policy {
            arch: ARCH_X,
            rules,
            high: Verdict::Ret(ret_errno(1)),
            trap: Trap {
                ranges: if trap { RANGES.to_vec() } else { Vec::new() },
            },
        }
    }

    #[test]
    fn every_number_gets_its_rule_and_only_that() {
        for n in [0, 1, 5, 40, 150] {
            let p = policy(n, false);
            let prog = compile(&p).unwrap();
            for nr in 0..1000u32 {
                let want = match p.rules.iter().find(|r| r.0 == nr) {
                    None | Some((_, Action::IfArg0Any(..) | Action::IfArg0IsAndArg1Set(..))) => {
                        RET_ALLOW
                    }
                    Some((_, Action::Always(Verdict::Ret(v)))) => *v,
                    Some((_, Action::Always(Verdict::Refuse(e)))) => ret_errno(*e),
                };
                assert_eq!(run(&prog, call(nr)).0, want, "n={n} nr={nr}");
            }
        }
    }

    #[test]
    fn refusals_trap_from_the_ranges_only() {
        let prog = compile(&policy(150, true)).unwrap();
        let at = |ip: u64| run(&prog, Call { ip, ..call(4) }).0;
        for ip in [
            0x5555_0000_1000,
            0x5555_0003_ffff,
            0x7f00_ffff_f000,
            0x7f01_0000_0000,
            0x7f01_0000_1fff,
        ] {
            assert_eq!(at(ip), ret_trap(1), "{ip:#x}");
        }
        for ip in [
            0,
            0x5555_0000_0fff,
            0x5555_0004_0000,
            0x5556_0000_2000,
            0x7f00_ffff_efff,
            0x7f01_0000_2000,
        ] {
            assert_eq!(at(ip), ret_errno(1), "{ip:#x}");
        }
        // Allowed calls and plain return values do not look at the address.
        assert_eq!(
            run(
                &prog,
                Call {
                    ip: 0x5555_0000_2000,
                    ..call(3)
                }
            )
            .0,
            RET_ALLOW
        );
        assert_eq!(
            run(
                &prog,
                Call {
                    ip: 0x5555_0000_2000,
                    ..call(435)
                }
            )
            .0,
            ret_errno(38)
        );
    }

    #[test]
    fn argument_conditions() {
        let prog = compile(&policy(100, false)).unwrap();
        let with = |nr, args: [u64; 6]| run(&prog, Call { args, ..call(nr) }).0;
        assert_eq!(with(56, [0x0000_0100, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(with(56, [0x1_0000_0000, 0, 0, 0, 0, 0]), RET_ALLOW);
        for bit in 0..32 {
            let flag = 1u64 << bit;
            let want = if 0x7e02_0080u64 & flag != 0 {
                ret_errno(1)
            } else {
                RET_ALLOW
            };
            assert_eq!(with(56, [flag | 0x100, 0, 0, 0, 0, 0]), want, "bit {bit}");
        }
        // rt_sigaction(31, act, …): refused with an act, allowed with none or another signal.
        assert_eq!(with(13, [31, 0x1000, 0, 8, 0, 0]), ret_errno(1));
        assert_eq!(with(13, [31, 0x7f00_0000_0000, 0, 8, 0, 0]), ret_errno(1));
        assert_eq!(with(13, [31, 0, 0x1000, 8, 0, 0]), RET_ALLOW);
        assert_eq!(with(13, [30, 0x1000, 0, 8, 0, 0]), RET_ALLOW);
    }

    #[test]
    fn other_architectures_are_killed_and_x32_numbers_refused() {
        let prog = compile(&policy(100, true)).unwrap();
        assert_eq!(
            run(
                &prog,
                Call {
                    arch: 0x4000_0003,
                    ..call(0)
                }
            )
            .0,
            RET_KILL_PROCESS
        );
        assert_eq!(run(&prog, call(2)).0, RET_ALLOW);
        assert_eq!(run(&prog, call(X32_BIT | 2)).0, ret_errno(1));
        assert_eq!(run(&prog, call(u32::MAX)).0, ret_errno(1));
    }

    #[test]
    fn the_tree_stays_shallow() {
        // 50 rules: the arch and x32 checks, ~6 JGE nodes, a leaf of at most LEAF tests.
        let p = policy(150, true);
        let prog = compile(&p).unwrap();
        let worst = (0..600u32)
            .filter(|nr| !p.rules.iter().any(|r| r.0 == *nr))
            .map(|nr| run(&prog, call(nr)).1)
            .max()
            .unwrap();
        assert!(
            worst <= 6 + 7 + LEAF + 1,
            "{worst} instructions for an allowed number"
        );
    }

    #[test]
    fn ranges_are_split_at_4_gib_boundaries() {
        assert_eq!(
            split(&[(0x1_ffff_f000, 0x2_0000_1000), (5, 5), (0x3000, 0x4000)]),
            vec![
                (0x1_ffff_f000, 0x2_0000_0000),
                (0x2_0000_0000, 0x2_0000_1000),
                (0x3000, 0x4000)
            ]
        );
        // The last block (the vsyscall page lies there).
        let top = (0xffff_ffff_ff60_0000, 0xffff_ffff_ff60_1000);
        assert_eq!(split(&[top]), vec![top]);
        assert_eq!(
            split(&[(0xffff_ffff_ff60_0000, u64::MAX)]),
            vec![(0xffff_ffff_ff60_0000, u64::MAX)]
        );
    }

    #[test]
    fn bad_policies_are_refused() {
        let mut p = policy(10, false);
        p.rules.push((1, Action::Always(Verdict::Ret(RET_ALLOW))));
        assert!(compile(&p).unwrap_err().contains("twice"));
        let mut p = policy(10, false);
        p.rules
            .push((X32_BIT, Action::Always(Verdict::Ret(RET_ALLOW))));
        assert!(compile(&p).unwrap_err().contains("out of range"));
    }
}
