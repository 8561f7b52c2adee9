//! The trust boundary: what a host can do once its plug-in has created the stack.
//!
//! A plug-in runs in the host as the application's user, so until the stack exists it can do
//! whatever that user can (it needs to: create namespaces and taps, load libvdeplug modules,
//! connect to switches). Right after a successful `newstack`, before the reply and before the
//! host starts its own threads, [`apply`] confines every thread of the host:
//!
//! - `PR_SET_DUMPABLE` 0: nobody of the same uid reads its memory or `/proc` files;
//! - `no_new_privs`: no exec gains privileges (setuid, file capabilities);
//! - capabilities: all dropped (effective, permitted, inheritable, ambient and bounding set),
//!   except those the plug-in declares;
//! - Landlock: the filesystem is read-only and limited to the files already mapped (the
//!   host's and the plug-in's code) and the host's own `/proc/<pid>/task` (the audit thread
//!   lists its threads' children), plus what the plug-in declares, nothing writable but what it
//!   declares (fds already open — the channel, the audit trail, taps, switches — keep working);
//!   `ptrace` of and `/proc/<pid>` access to processes outside the host's domain are denied, and
//!   (Landlock ABI 6) signals and abstract Unix sockets are scoped to the domain;
//! - seccomp: a deny-list (`ptrace`, `process_vm_readv/writev`, `pidfd_getfd`, `setns`, `unshare`,
//!   `clone` with namespace flags, `mount` and the new mount API, `kexec`, `bpf`, modules, …)
//!   failing with `EPERM` (`clone3`: `ENOSYS`, so that libc falls back to `clone`; the x32
//!   system call numbers of x86-64: `EPERM`); a refusal of the host's own code traps to the
//!   `SIGSYS` handler ([`crate::sigsys`]), which records it and returns `EPERM`. Never a kill,
//!   but for a system call through another architecture's entry (the i386 `int 0x80` of an
//!   x86-64 process) and a refused call from a thread that blocked `SIGSYS`, which end the
//!   process. The policy is [`crate::seccomp`]'s.
//!
//! Capabilities, `no_new_privs` and Landlock are per thread, and threads the plug-in started in
//! `newstack` exist already: each is made to confine itself by a signal (its handler makes the
//! same raw system calls), and the host waits until every thread has done so; seccomp is applied
//! to all threads at once (`SECCOMP_FILTER_FLAG_TSYNC`). Where the kernel lacks a mechanism the
//! stack still starts; [`Protections`] says what is in force (stats and the audit trail).
//!
//! A plug-in that needs more declares it in `const char *ioth_<name>_sandbox`: tokens separated
//! by white space, `caps=net_admin,net_raw` (capabilities kept), `read=/path` and `write=/path`
//! (Landlock access beneath a path; `write` includes reading). The format is in
//! `docs/security.md`.
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ioth_proto::protections as bit;

use crate::error::HostError;

/// Which protections are in force (the bits of [`ioth_proto::protections`]).
pub type Protections = u32;

/// What a plug-in asks for beyond the default sandbox.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Relax {
    /// Capability numbers kept.
    pub caps: Vec<u32>,
    /// Paths readable beneath.
    pub read: Vec<PathBuf>,
    /// Paths readable and writable beneath.
    pub write: Vec<PathBuf>,
    /// Directories where files may be removed (not declared: the host's status directory, so
    /// that a host removes its status socket when it ends).
    pub remove: Vec<PathBuf>,
}

/// `r` for the audit trail: capability names and paths.
pub fn relax_json(r: &Relax) -> serde_json::Value {
    let caps: Vec<&str> = r
        .caps
        .iter()
        .map(|c| {
            CAP_NAMES
                .iter()
                .find(|(_, n)| n == c)
                .map_or("?", |(name, _)| *name)
        })
        .collect();
    serde_json::json!({
        "caps": caps,
        "read": r.read.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "write": r.write.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    })
}

impl Relax {
    /// The relaxations of a plug-in that declares none (the original's modules, third-party
    /// plug-ins written for it): `CAP_NET_ADMIN` and `CAP_NET_RAW`, as our own `kernel` plug-in
    /// declares, so that the application can still configure the host's own network namespace
    /// (the kernel checks the capabilities of a netlink socket's opener) and make raw sockets
    /// there; nothing else.
    pub fn undeclared() -> Relax {
        Relax {
            caps: vec![CAP_NET_ADMIN, CAP_NET_RAW],
            ..Relax::default()
        }
    }
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

/// Capability names a plug-in may keep (`linux/capability.h`).
const CAP_NAMES: &[(&str, u32)] = &[
    ("chown", 0),
    ("dac_override", 1),
    ("dac_read_search", 2),
    ("fowner", 3),
    ("kill", 5),
    ("setgid", 6),
    ("setuid", 7),
    ("net_bind_service", 10),
    ("net_broadcast", 11),
    ("net_admin", CAP_NET_ADMIN),
    ("net_raw", CAP_NET_RAW),
    ("ipc_lock", 14),
    ("sys_chroot", 18),
    ("sys_ptrace", 19),
    ("sys_admin", 21),
    ("sys_nice", 23),
    ("sys_resource", 24),
    ("sys_time", 25),
];

fn bad(message: String) -> HostError {
    HostError::InvalidArgument(message)
}

/// The filesystem places a VNL names (`switch:///tmp/sw` → `/tmp/sw`, `eth1:vde:///tmp/sw[2]` →
/// `/tmp/sw`): the path after `://` up to any `[` or `?`, if absolute; a VNL that is an absolute
/// path itself names that path.
fn vnl_path(vnl: &str) -> Option<PathBuf> {
    let rest = match vnl.split_once("://") {
        Some((_, rest)) => rest,
        None if vnl.starts_with('/') => vnl,
        None => return None,
    };
    let end = rest.find(['[', '?', '{']).unwrap_or(rest.len());
    let p = PathBuf::from(&rest[..end]);
    p.is_absolute().then_some(p)
}

/// Parses a plug-in's `ioth_<name>_sandbox` declaration for a stack on `vnls` (`write=@vnl`
/// stands for the place each VNL names: a switch directory, a `ptp://` socket's directory; `@plugin` stands for the directory of the plug-in's file, `plugin`.)
pub fn parse_relax(text: &str, vnls: &[String], plugin: &Path) -> Result<Relax, HostError> {
    let mut r = Relax::default();
    for tok in text.split_whitespace() {
        let (key, value) = tok
            .split_once('=')
            .ok_or_else(|| bad(format!("sandbox declaration: {tok:?} is not key=value")))?;
        match key {
            "caps" => {
                for name in value.split(',').filter(|n| !n.is_empty()) {
                    let n = name.trim_start_matches("cap_").to_ascii_lowercase();
                    let cap = CAP_NAMES
                        .iter()
                        .find(|(k, _)| *k == n)
                        .map(|(_, c)| *c)
                        .ok_or_else(|| {
                            bad(format!("sandbox declaration: unknown capability {name:?}"))
                        })?;
                    r.caps.push(cap);
                }
            }
            "read" | "write" if value == "@vnl" => {
                for p in vnls.iter().filter_map(|v| vnl_path(v)) {
                    // The place itself if it exists as a directory (a switch's), else the
                    // directory it is (or will be) created in.
                    let p = if p.is_dir() {
                        p
                    } else {
                        p.parent().map_or(p.clone(), Path::to_path_buf)
                    };
                    if key == "read" {
                        &mut r.read
                    } else {
                        &mut r.write
                    }
                    .push(p);
                }
            }
            "read" | "write" if value == "@plugin" => {
                if let Some(d) = plugin.parent() {
                    if key == "read" {
                        &mut r.read
                    } else {
                        &mut r.write
                    }
                    .push(d.to_path_buf());
                }
            }
            "read" | "write" => {
                let p = PathBuf::from(value);
                if !p.is_absolute() {
                    return Err(bad(format!(
                        "sandbox declaration: {key} path {value:?} is not absolute"
                    )));
                }
                if key == "read" {
                    &mut r.read
                } else {
                    &mut r.write
                }
                .push(p);
            }
            _ => {
                return Err(bad(format!(
                    "sandbox declaration: unknown key {key:?} (caps, read, write)"
                )))
            }
        }
    }
    Ok(r)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

fn capget() -> std::io::Result<[CapData; 2]> {
    let mut h = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut d = [CapData::default(); 2];
    // SAFETY: h and d are the header and two data words capget(2) version 3 expects.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(d)
}

/// The capability sets every thread is given, for the signal handler.
static CAP_WORDS: [AtomicU32; 2] = [AtomicU32::new(0), AtomicU32::new(0)];
/// The Landlock ruleset fd for the signal handler (-1: none).
static RULESET: AtomicI32 = AtomicI32::new(-1);
/// Threads that confined themselves, and those that failed to.
static DONE: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicUsize = AtomicUsize::new(0);

/// What one thread does to itself: `no_new_privs`, capabilities, Landlock. Raw system calls only
/// (it runs in a signal handler). `false` if one failed.
fn confine_thread() -> bool {
    let mut ok = true;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        ok = false;
    }
    let mut h = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let keep = [
        CAP_WORDS[0].load(Ordering::Acquire),
        CAP_WORDS[1].load(Ordering::Acquire),
    ];
    let d = [
        CapData {
            effective: keep[0],
            permitted: keep[0],
            inheritable: 0,
        },
        CapData {
            effective: keep[1],
            permitted: keep[1],
            inheritable: 0,
        },
    ];
    // SAFETY: h and d are capset(2)'s version-3 header and two data words.
    if unsafe { libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) } != 0 {
        ok = false;
    }
    let fd = RULESET.load(Ordering::Acquire);
    // SAFETY: landlock_restrict_self takes the ruleset fd and flags.
    if fd >= 0 && unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd, 0) } != 0 {
        ok = false;
    }
    ok
}

extern "C" fn on_confine_signal(_: c_int) {
    // SAFETY: errno is this thread's; saved and restored around the handler's system calls.
    let saved = unsafe { *libc::__errno_location() };
    if !confine_thread() {
        FAILED.fetch_add(1, Ordering::AcqRel);
    }
    DONE.fetch_add(1, Ordering::AcqRel);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

/// The other threads of the process.
fn other_threads() -> Vec<libc::pid_t> {
    // SAFETY: gettid takes no argument.
    let me = unsafe { libc::gettid() };
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|t| *t != me)
        .collect()
}

/// Makes every other thread run [`confine_thread`], round after round until no thread is new
/// (a thread a confined thread starts inherits its confinement; one an unconfined thread starts
/// meanwhile shows up in the next round). `Err` names what went wrong.
fn confine_other_threads() -> Result<(), String> {
    let sig = libc::SIGRTMAX() - 1;
    // SAFETY: sigaction with a handler that only makes async-signal-safe system calls; the
    // old action is restored below.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_confine_signal as extern "C" fn(c_int) as usize;
    sa.sa_flags = libc::SA_RESTART;
    // SAFETY: sa and old are valid sigaction structs.
    if unsafe { libc::sigaction(sig, &sa, &mut old) } != 0 {
        return Err(format!("sigaction: {}", std::io::Error::last_os_error()));
    }
    let mut confined: Vec<libc::pid_t> = Vec::new();
    let mut result = Ok(());
    for _round in 0..32 {
        let fresh: Vec<_> = other_threads()
            .into_iter()
            .filter(|t| !confined.contains(t))
            .collect();
        if fresh.is_empty() {
            break;
        }
        DONE.store(0, Ordering::Release);
        let mut sent = 0;
        for t in &fresh {
            // SAFETY: tgkill to a thread of this very process.
            if unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), *t, sig) } == 0 {
                sent += 1;
            }
            confined.push(*t);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while DONE.load(Ordering::Acquire) < sent && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        if DONE.load(Ordering::Acquire) < sent {
            result = Err(format!(
                "{} of the plug-in's threads did not take the sandbox (signal {sig} blocked?)",
                sent - DONE.load(Ordering::Acquire)
            ));
            break;
        }
    }
    // SAFETY: restores the action saved above.
    unsafe { libc::sigaction(sig, &old, std::ptr::null_mut()) };
    if FAILED.load(Ordering::Acquire) > 0 && result.is_ok() {
        result = Err("a thread could not confine itself".into());
    }
    result
}

/// The files mapped into the host (its code, the plug-in's, their libraries), for read access.
fn mapped_files(maps: &str) -> Vec<PathBuf> {
    // Each file is mapped several times (text, data, …): one stat each, after dedup.
    let mut out: Vec<PathBuf> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/'))
        .map(PathBuf::from)
        .collect();
    out.sort();
    out.dedup();
    // No stat here: the rule's open and fstat tell a file that is gone or not a file
    // (landlock_ruleset).
    out
}

/// The Landlock ruleset of the host, as an fd; which protections it gives.
fn landlock_ruleset(relax: &Relax, maps: &str) -> Result<(Option<OwnedFd>, Protections), String> {
    use landlock::{
        Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
        RulesetCreatedAttr, Scope, ABI,
    };
    let abi = ABI::V6;
    let err = |e: landlock::RulesetError| e.to_string();
    let read = AccessFs::from_read(abi);
    let all = AccessFs::from_all(abi);
    let mut rs = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .map_err(err)?
        .scope(Scope::Signal | Scope::AbstractUnixSocket)
        .map_err(err)?
        .create()
        .map_err(err)?;
    let mut rules: Vec<(PathBuf, landlock::BitFlags<AccessFs>)> = Vec::new();
    // The host's own threads (`/proc/<pid>/task`): the audit thread lists their children,
    // those of threads started later included (crate::observe::ProcView).
    rules.push((
        PathBuf::from(format!("/proc/{}/task", std::process::id())),
        AccessFs::ReadFile | AccessFs::ReadDir,
    ));
    rules.extend(relax.read.iter().map(|p| (p.clone(), read)));
    rules.extend(relax.write.iter().map(|p| (p.clone(), all)));
    rules.extend(
        relax
            .remove
            .iter()
            .map(|p| (p.clone(), landlock::BitFlags::from(AccessFs::RemoveFile))),
    );
    let mapped = rules.len();
    rules.extend(mapped_files(maps).into_iter().map(|f| {
        // Files: read and execute, nothing else applies to a file.
        (f, AccessFs::ReadFile | AccessFs::Execute)
    }));
    for (i, (p, access)) in rules.into_iter().enumerate() {
        let Ok(fd) = PathFd::new(&p) else { continue };
        // The opened file's own type (no second lookup of the path).
        let mode = nix::sys::stat::fstat(std::os::fd::AsFd::as_fd(&fd))
            .map_or(0, |st| st.st_mode & libc::S_IFMT);
        if i >= mapped && mode != libc::S_IFREG {
            // A mapping of something that is not a regular file (a device, a deleted file).
            continue;
        }
        let is_dir = mode == libc::S_IFDIR;
        let access = if is_dir {
            access
        } else {
            access & AccessFs::from_file(abi)
        };
        rs = rs.add_rule(PathBeneath::new(fd, access)).map_err(err)?;
    }
    // The kernel's Landlock version decides what the ruleset really enforces.
    let kernel_abi = kernel_landlock_abi();
    let mut p = 0;
    if kernel_abi >= 1 {
        p |= bit::LANDLOCK_FS | bit::LANDLOCK_PTRACE;
    }
    if kernel_abi >= 6 {
        p |= bit::LANDLOCK_SCOPE;
    }
    let fd: Option<OwnedFd> = rs.into();
    if fd.is_none() {
        p = 0;
    }
    Ok((fd, p))
}

/// The kernel's Landlock ABI version (0: none).
fn kernel_landlock_abi() -> i64 {
    // SAFETY: landlock_create_ruleset(NULL, 0, VERSION) only returns the ABI version.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    v.max(0)
}

/// Drops from the bounding set every capability but those `keep` says; whether all could be
/// dropped (`EPERM` without `CAP_SETPCAP`).
fn drop_bounding(keep: impl Fn(u64) -> bool) -> bool {
    let mut all = true;
    for cap in 0..64u64 {
        if keep(cap) {
            continue;
        }
        // SAFETY: prctl with integer arguments; EINVAL past the last capability ends the loop.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if r != 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            all = false;
        }
    }
    all
}

/// Set once this process's bounding set holds no capability a plug-in may not keep
/// ([`prepare`]); the hosts forked after inherit both.
static BOUNDING_PREPARED: AtomicBool = AtomicBool::new(false);

/// What every host's sandbox does the same way, done once by the fork server for all the hosts
/// it forks: the capabilities no plug-in may keep (those [`CAP_NAMES`] does not name) leave the
/// bounding set, which the hosts inherit; each host then drops the rest of what it does not
/// keep. The bounding set only bounds what an `execve` can grant, so the fork server and a
/// host before its sandbox keep every capability they have.
pub fn prepare() {
    let keepable = |cap: u64| CAP_NAMES.iter().any(|(_, c)| u64::from(*c) == cap);
    if drop_bounding(keepable) {
        BOUNDING_PREPARED.store(true, Ordering::Release);
    }
}

/// Confines the host (see the module doc). The plug-in at `path` has created its stack. Fails
/// only on a declaration that cannot be honoured or a thread that would stay unconfined;
/// protections the kernel lacks are left out of the result.
pub fn apply(relax: &Relax) -> Result<(Protections, String), HostError> {
    let fail = HostError::Sandbox;
    let mut p: Protections = 0;
    let mut notes: Vec<String> = Vec::new();
    // Not dumpable: no same-uid process reads its memory or /proc files; no core dump.
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } == 0 {
        p |= bit::NOT_DUMPABLE;
    }
    // Capabilities: the bounding set first (it needs CAP_SETPCAP, dropped below).
    let keep_mask: u64 = relax.caps.iter().fold(0, |m, c| m | (1u64 << c));
    let cur = capget().map_err(|e| fail(format!("capget: {e}")))?;
    let permitted = u64::from(cur[0].permitted) | (u64::from(cur[1].permitted) << 32);
    let keep = keep_mask & permitted;
    if BOUNDING_PREPARED.load(Ordering::Acquire) {
        // The fork server dropped every capability no plug-in may keep ([`prepare`]).
        for (_, cap) in CAP_NAMES {
            if keep_mask & (1 << cap) == 0 {
                // SAFETY: prctl with integer arguments.
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, u64::from(*cap), 0, 0, 0) };
            }
        }
    } else {
        drop_bounding(|cap| keep_mask & (1 << cap) != 0);
    }
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    CAP_WORDS[0].store(keep as u32, Ordering::Release);
    CAP_WORDS[1].store((keep >> 32) as u32, Ordering::Release);
    // Landlock: build the ruleset while the filesystem is still open to us.
    // What is mapped now: the files Landlock leaves readable, the code whose refusals trap.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let (ruleset, ll) =
        landlock_ruleset(relax, &maps).map_err(|e| fail(format!("landlock: {e}")))?;
    if let Some(fd) = &ruleset {
        RULESET.store(fd.as_raw_fd(), Ordering::Release);
    }
    // Every other thread first (this one can still list them), then this one.
    confine_other_threads().map_err(fail)?;
    if !confine_thread() {
        return Err(fail(format!(
            "cannot confine the host: {}",
            std::io::Error::last_os_error()
        )));
    }
    RULESET.store(-1, Ordering::Release);
    drop(ruleset);
    p |= bit::NO_NEW_PRIVS | ll;
    let now = capget().map_err(|e| fail(format!("capget: {e}")))?;
    let eff = u64::from(now[0].effective) | (u64::from(now[1].effective) << 32);
    if eff & !keep_mask == 0 {
        p |= bit::CAPS_DROPPED;
    }
    if keep != 0 {
        let names: Vec<&str> = CAP_NAMES
            .iter()
            .filter(|(_, c)| keep & (1 << c) != 0)
            .map(|(n, _)| *n)
            .collect();
        notes.push(format!("kept capabilities: {}", names.join(",")));
    }
    // seccomp last, on every thread at once.
    // Refusals of the host's own code trap to the handler, which records them.
    let ranges = match crate::sigsys::install() {
        Ok(()) => crate::seccomp::code_ranges(&maps),
        Err(e) => {
            notes.push(format!("refused system calls not recorded: {e}"));
            Vec::new()
        }
    };
    match crate::seccomp::filter_for(ranges) {
        Ok(prog) => match seccompiler::apply_filter_all_threads(&prog) {
            Ok(()) => p |= bit::SECCOMP,
            Err(e) => notes.push(format!("seccomp not in force: {e}")),
        },
        Err(e) => notes.push(format!("seccomp not in force: {e}")),
    }
    if ll == 0 {
        notes.push("landlock not in force (kernel without Landlock)".into());
    } else if ll & bit::LANDLOCK_SCOPE == 0 {
        notes.push("landlock without signal/abstract-socket scoping (kernel ABI < 6)".into());
    }
    Ok((p, notes.join("; ")))
}
