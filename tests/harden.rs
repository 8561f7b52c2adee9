//! Hardened hosts: the host's sandbox (a plug-in that tries to reach its
//! application), and misuse of the API that must fail cleanly. The C programs are
//! `tests/c/misuse.c`, `tests/c/snoop_app.c` and `tests/c/secure.c`; the C test plug-ins
//! `tests/c/plugins/ioth_snoop.c` and `ioth_stray.c`, built here with gcc into one directory that
//! becomes `IOTH_PLUGIN_PATH` before any stack starts.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use ioth::{Error, Stack};
use ioth_tests::cprog::{compile_c_with, profile_dir, repo_root, run_bounded, stage_build};

const BOUND: Duration = Duration::from_secs(60);

/// Removes the test directory when the test process exits.
extern "C" fn remove_dir_at_exit() {
    if let Some(d) = DIR.get() {
        let _ = std::fs::remove_dir_all(d);
    }
}

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// The test directory, outside the build tree and world-readable (some programs run as nobody,
/// who may not reach a checkout in a 0700 directory), removed at exit: this build's library, host
/// and plug-ins staged in it ([`stage_build`]), the test plug-ins and programs built in it
/// against them, `IOTH_PLUGIN_PATH` set; `RUST_BACKTRACE` set too, for hosts not to inherit.
fn dir() -> &'static Path {
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("ioth-harden-{}", std::process::id()));
        stage_build(&d);
        // SAFETY: atexit takes a plain extern "C" function with no arguments.
        unsafe { libc::atexit(remove_dir_at_exit) };
        let root = repo_root();
        for name in ["snoop", "stray", "hang"] {
            let st = Command::new("gcc")
                .args([
                    "-Wall", "-Wextra", "-Werror", "-O1", "-fPIC", "-shared", "-I",
                ])
                .arg(root.join("client/include"))
                .arg("-o")
                .arg(d.join(format!("ioth_{name}.so")))
                .arg(root.join(format!("tests/c/plugins/ioth_{name}.c")))
                .status()
                .expect("gcc");
            assert!(st.success(), "gcc ioth_{name}.c");
        }
        for prog in ["misuse", "snoop_app", "secure"] {
            compile_c_with(&root.join(format!("tests/c/{prog}.c")), &d.join(prog), &d);
        }
        std::env::set_var("IOTH_PLUGIN_PATH", &d);
        std::env::set_var("RUST_BACKTRACE", "1");
        d
    })
}

fn misuse(case: &str) {
    let d = dir();
    let (st, out, err) = run_bounded(Command::new(d.join("misuse")).arg(case), BOUND);
    assert!(
        st.is_some_and(|s| s.success()),
        "misuse {case}: {st:?}\n{out}\n{err}"
    );
}

#[test]
fn deleted_or_unknown_handle_is_einval() {
    misuse("registry");
}

#[test]
fn deleting_the_default_stack_under_threads_does_not_crash() {
    misuse("default");
}

#[test]
fn forked_child_gets_enetdown_and_leaves_the_parents_stack() {
    misuse("fork");
}

#[test]
fn stack_starts_with_stdin_and_stdout_closed() {
    misuse("stdio");
}

#[test]
fn smoltcp_two_byte_inet_address_is_einval() {
    misuse("addr");
}

#[test]
fn protocol_error_resets_the_link() {
    misuse("stray");
}

#[test]
#[cfg_attr(
    not(ioth_root),
    ignore = "needs root: a host's environ is readable by root only (not dumpable)"
)]
fn hosts_do_not_inherit_rust_backtrace() {
    dir();
    let s = Stack::new("kernel", &[] as &[&str]).unwrap();
    let env = std::fs::read(format!("/proc/{}/environ", s.pid().unwrap())).unwrap();
    let env = String::from_utf8_lossy(&env);
    assert!(!env.contains("RUST_BACKTRACE"), "{env}");
    // Passed: what hosts use; not passed: the library's own IOTH_* (the search path travels in
    // NewStack).
    assert!(env.contains("PATH="), "{env}");
    assert!(!env.contains("IOTH_PLUGIN_PATH"), "{env}");
}

#[test]
fn audit_to_fifo_or_device_fails_with_einval() {
    let d = dir();
    let fifo = d.join(format!("fifo-{}", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for path in [fifo.as_path(), Path::new("/dev/full")] {
        let e = Stack::builder("kernel")
            .audit(path)
            .timeout(Duration::from_secs(20))
            .build()
            .expect_err("an audit trail that is not a file");
        assert!(
            matches!(e.errno(), libc::EINVAL | libc::ENXIO),
            "{}: {e} (errno {})",
            path.display(),
            e.errno()
        );
    }
    let _ = std::fs::remove_file(&fifo);
}

/// Under address-space limits from tight to roomy, a stack either starts with its watchdog
/// thread, or fails with ENOMEM/EAGAIN: never a host that panicked (exit 101). (The audit
/// thread starts after the NewStack reply and is not counted.)
#[test]
fn thread_start_failures_are_newstack_errors() {
    dir();
    let mut ok = 0;
    for mb in (4..=48).step_by(2) {
        match Stack::builder("kernel")
            .limit_address_space(mb << 20)
            .build()
        {
            Ok(s) => {
                let tasks = std::fs::read_dir(format!("/proc/{}/task", s.pid().unwrap()))
                    .unwrap()
                    .count();
                assert!(
                    tasks >= 2,
                    "{mb} MB: host with {tasks} thread(s), no watchdog"
                );
                ok += 1;
            }
            Err(e @ Error::StackDied { .. }) => panic!("{mb} MB: {e}"),
            // dlopen itself out of address space is CannotLoad with ENOMEM, below.
            Err(e) => assert!(
                [libc::ENOMEM, libc::EAGAIN].contains(&e.errno()),
                "{mb} MB: {e} (errno {})",
                e.errno()
            ),
        }
    }
    assert!(ok > 0, "no limit up to 48 MB let a host start");
}

fn status_line(pid: u32) -> String {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    st.lines()
        .filter(|l| {
            ["CapEff", "NoNewPrivs", "Seccomp:"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn protections_in_force_for_kernel_and_smoltcp_hosts() {
    use ioth_proto::protections as p;
    dir();
    // kernel declares CAP_NET_ADMIN and CAP_NET_RAW (bits 12, 13), kept when the host has them.
    let kernel_caps = if ioth_tests::is_root() {
        "0000000000003000"
    } else {
        "0000000000000000"
    };
    for (plugin, caps) in [("kernel", kernel_caps), ("smoltcp", "0000000000000000")] {
        let s = Stack::new(plugin, &[] as &[&str]).unwrap();
        let st = s.stats().unwrap();
        let pid = s.pid().unwrap();
        eprintln!(
            "{plugin}: protections {:#x}; {}",
            st.protections,
            status_line(pid)
        );
        let all = p::NOT_DUMPABLE
            | p::NO_NEW_PRIVS
            | p::CAPS_DROPPED
            | p::LANDLOCK_FS
            | p::LANDLOCK_PTRACE
            | p::LANDLOCK_SCOPE
            | p::SECCOMP;
        assert_eq!(st.protections & all, all, "{plugin}: {:#x}", st.protections);
        let status = status_line(pid);
        assert!(status.contains(&format!("CapEff:\t{caps}")), "{status}");
        assert!(status.contains("NoNewPrivs:\t1"), "{status}");
        assert!(status.contains("Seccomp:\t2"), "{status}");
        // Every thread, not only the main one.
        for t in std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .flatten()
        {
            let ts = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            assert!(ts.contains("NoNewPrivs:\t1"), "thread {:?}", t.file_name());
            assert!(
                ts.contains(&format!("CapEff:\t{caps}")),
                "thread {:?}",
                t.file_name()
            );
        }
    }
}

/// Runs the snoop application (as `uid`, if given) and checks what its plug-in got.
fn snoop(uid: Option<u32>) {
    let d = dir();
    let tag = format!("{}-{}", std::process::id(), uid.unwrap_or(0));
    let log = d.join(format!("snoop-{tag}.log"));
    let outside = std::env::temp_dir().join(format!("ioth-snoop-outside-{tag}"));
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&outside);
    // A setuid-root program for the plug-in to exec: a copy of `id`.
    let suid = d.join("id-suid");
    if !suid.exists() {
        std::fs::copy("/usr/bin/id", &suid).unwrap();
        std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    }
    let mut cmd = match uid {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args([
                format!("--reuid={u}"),
                format!("--regid={u}"),
                "--clear-groups".into(),
            ])
            .arg(d.join("snoop_app"));
            c
        }
        None => Command::new(d.join("snoop_app")),
    };
    cmd.arg(&log).arg(&outside).arg(&suid);
    cmd.env("IOTH_SNOOP_SECRET", "s3cr3t")
        .env_remove("IOTH_AUDIT");
    if let Some(u) = uid {
        // The log's directory must be writable by that user.
        let ud = std::env::temp_dir().join(format!("ioth-snoop-{tag}"));
        let _ = std::fs::create_dir_all(&ud);
        std::fs::set_permissions(&ud, std::fs::Permissions::from_mode(0o777)).unwrap();
        let log = ud.join("log");
        let _ = std::fs::remove_file(&log);
        cmd = {
            let mut c = Command::new("setpriv");
            c.args([
                format!("--reuid={u}"),
                format!("--regid={u}"),
                "--clear-groups".into(),
            ])
            .arg(d.join("snoop_app"))
            .arg(&log)
            .arg(&outside)
            .arg(&suid)
            .env("IOTH_SNOOP_SECRET", "s3cr3t")
            .env_remove("IOTH_AUDIT");
            c
        };
        check_snoop(&mut cmd, &log, &outside, true);
        let _ = std::fs::remove_dir_all(&ud);
        return;
    }
    check_snoop(&mut cmd, &log, &outside, false);
    let _ = std::fs::remove_file(&log);
}

fn check_snoop(cmd: &mut Command, log: &Path, outside: &Path, unprivileged: bool) {
    let (st, out, err) = run_bounded(cmd, BOUND);
    assert!(st.is_some_and(|s| s.success()), "{st:?}\n{out}\n{err}");
    assert!(out.contains("secret 42"), "memory changed: {out}");
    assert!(out.contains("sigusr1 0"), "signal arrived: {out}");
    assert!(out.contains("socket ok"), "{out}");
    let text = std::fs::read_to_string(log).expect("the plug-in's log");
    eprintln!("{text}");
    for what in [
        "environ",
        "mem",
        "pidfd_getfd",
        "ptrace_attach",
        "ptrace_seize",
        "kill0",
        "sigusr1",
        "write_outside",
        "setns",
    ] {
        let line = text
            .lines()
            .find(|l| l.split(' ').next() == Some(what))
            .unwrap_or_else(|| panic!("no {what} in {text}"));
        assert!(!line.ends_with(" ok"), "the plug-in reached: {line}");
    }
    assert!(!outside.exists(), "the plug-in wrote {}", outside.display());
    let exec = text
        .lines()
        .find(|l| l.starts_with("exec"))
        .unwrap_or_else(|| panic!("no exec line in {text}"));
    // As nobody, the setuid-root copy must not run as root (no_new_privs; Landlock refuses
    // the exec outright, EACCES). As root there is nothing to gain.
    if unprivileged {
        assert_ne!(exec, "exec euid 0", "privilege gained");
    }
}

/// Each host's Landlock ruleset is its own: the fork server makes the next host's ruleset ahead
/// and gives each one away once. A stack whose plug-in declares write access beneath its own
/// directory (hang: `write=@plugin`) leaves none of it to the next stack of the application:
/// snoop, from the same directory and declaring nothing, still cannot create a file there.
#[test]
fn a_declared_access_does_not_reach_the_next_host() {
    let d = dir();
    let tag = std::process::id();
    let log = d.join(format!("share-{tag}.log"));
    let out = d.join(format!("share-out-{tag}"));
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&out);
    let writer = ioth::Stack::new("hang", &[] as &[&str]).expect("hang stack");
    let snoop = ioth::Stack::builder("snoop")
        .vnl(&format!("log={}", log.display()))
        .vnl(&format!("out={}", out.display()))
        .build()
        .expect("snoop stack");
    drop(
        snoop
            .msocket(libc::AF_INET, libc::SOCK_DGRAM, 0)
            .expect("snoop socket"),
    );
    let text = std::fs::read_to_string(&log).expect("the plug-in's log");
    let line = text
        .lines()
        .find(|l| l.starts_with("write_outside"))
        .unwrap_or_else(|| panic!("no write_outside in {text}"));
    assert_eq!(line, "write_outside EACCES", "{text}");
    assert!(!out.exists(), "the second host wrote {}", out.display());
    snoop
        .delete()
        .map_err(ioth::Error::from)
        .expect("delete snoop");
    writer
        .delete()
        .map_err(ioth::Error::from)
        .expect("delete hang");
    let _ = std::fs::remove_file(&log);
}

#[test]
#[cfg_attr(not(ioth_root), ignore = "needs root: the root case")]
fn snoop_plugin_cannot_reach_its_application_as_root() {
    snoop(None);
}

#[test]
#[cfg_attr(not(ioth_root), ignore = "needs root: switches to uid 65534")]
fn snoop_plugin_cannot_reach_its_application_unprivileged() {
    snoop(Some(65534));
}

/// A setuid-root program run by nobody ignores the caller's IOTH_HOST and IOTH_PLUGIN_PATH.
#[test]
#[cfg_attr(not(ioth_root), ignore = "needs root: a setuid-root program")]
fn setuid_program_ignores_ioth_host() {
    let d = dir();
    let tag = std::process::id();
    let marker = std::env::temp_dir().join(format!("ioth-fakehost-ran-{tag}"));
    let fake = std::env::temp_dir().join(format!("ioth-fakehost-{tag}"));
    let _ = std::fs::remove_file(&marker);
    std::fs::write(&fake, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let suid = d.join("secure-suid");
    std::fs::copy(d.join("secure"), &suid).unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let _ = profile_dir();
    let (st, out, err) = run_bounded(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&suid)
            .env("IOTH_HOST", &fake)
            .env("IOTH_PLUGIN_PATH", "/tmp")
            .env_remove("IOTH_AUDIT"),
        BOUND,
    );
    assert!(st.is_some_and(|s| s.success()), "{st:?} {out} {err}");
    assert!(!marker.exists(), "the caller's IOTH_HOST ran: {out} {err}");
    assert!(out.contains("stack ok"), "the installed host: {out} {err}");
    let _ = std::fs::remove_file(&fake);
    let _ = std::fs::remove_file(&suid);
}
