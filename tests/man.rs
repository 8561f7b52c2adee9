//! The manual pages (`docs/man/`): every page renders with groff with every warning enabled and
//! none emitted, and no rendered line is wider than groff's terminal line length (78 columns: a
//! synopsis line that does not fit); every `.so` link page points to a page that names it; and every function a C
//! program can call has a page named after it — the exports of the built `libioth.so` and
//! `libiothaddr.so` (read from the libraries, so a new export without a page fails here) and the
//! `static inline` functions of the installed headers.
//!
//! Needs groff (`groff-base`), nm, and the workspace built (`cargo build --workspace --all-targets`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ioth_tests::cprog::{profile_dir, repo_root, run_bounded, TempDir};

fn man_dir() -> PathBuf {
    repo_root().join("docs").join("man")
}

/// Every page: (section directory, file name), e.g. ("man3", "ioth.3").
fn pages() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for sec in ["man1", "man3", "man7"] {
        let dir = man_dir().join(sec);
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let name = e
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            let ext = format!(".{}", &sec[3..]);
            assert!(
                name.ends_with(&ext),
                "{sec}/{name}: not a section {ext} page"
            );
            out.push((sec.to_owned(), name));
        }
    }
    out.sort();
    out
}

/// groff's warnings (and errors) for the page at `rel` (relative to `cwd`, where `.so` requests
/// are resolved): `groff -man -ww -z -Tutf8`, all warnings on, output discarded.
fn groff_complaints(cwd: &Path, rel: &str) -> String {
    let (status, _, err) = run_bounded(
        Command::new("groff")
            .args(["-man", "-ww", "-z", "-Tutf8"])
            .arg(rel)
            .current_dir(cwd),
        Duration::from_secs(60),
    );
    match status {
        Some(s) if s.success() => err,
        _ => format!("groff failed ({status:?}): {err}"),
    }
}

/// groff's line length for a terminal, in columns (man(7)'s default: 78).
const LINE_LENGTH: usize = 78;

/// The lines of the page at `rel` (relative to `cwd`), rendered for a terminal without
/// escapes, that are wider than [`LINE_LENGTH`].
fn overlong_lines(cwd: &Path, rel: &str) -> Vec<String> {
    let (status, out, err) = run_bounded(
        Command::new("groff")
            .args(["-man", "-Tutf8", "-P-cbou"])
            .arg(rel)
            .current_dir(cwd),
        Duration::from_secs(60),
    );
    assert!(status.is_some_and(|s| s.success()), "groff {rel}: {err}");
    out.lines()
        .filter(|l| l.chars().count() > LINE_LENGTH)
        .map(str::to_owned)
        .collect()
}

/// The target of a one-line `.so` page, if it is one.
fn so_target(text: &str) -> Option<&str> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next()?.strip_prefix(".so ")?;
    assert!(lines.next().is_none(), "a .so page has one line: {text:?}");
    Some(first.trim())
}

/// The names a page's NAME section lists (before `\-`).
fn names_of(text: &str) -> Vec<String> {
    let mut in_name = false;
    let mut body = String::new();
    for l in text.lines() {
        if l.starts_with(".SH") {
            if in_name {
                break;
            }
            in_name = l.trim() == ".SH NAME";
            continue;
        }
        if in_name {
            body.push_str(l);
            body.push(' ');
        }
    }
    let list = body.split("\\-").next().unwrap_or("");
    list.split(',')
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect()
}

#[test]
fn every_page_renders_without_warnings() {
    let pages = pages();
    assert!(pages.len() > 40, "too few pages: {pages:?}");
    let mut problems = Vec::new();
    for (sec, name) in &pages {
        let rel = format!("{sec}/{name}");
        let text = std::fs::read_to_string(man_dir().join(&rel)).expect("read page");
        if let Some(target) = so_target(&text) {
            let t = man_dir().join(target);
            let stem = name.rsplit_once('.').unwrap().0;
            match std::fs::read_to_string(&t) {
                Ok(tt) if so_target(&tt).is_some() => {
                    problems.push(format!("{rel}: links to another link, {target}"))
                }
                Ok(tt) if !names_of(&tt).iter().any(|n| n == stem) => problems.push(format!(
                    "{rel}: {target} does not list {stem} in its NAME section"
                )),
                Ok(_) => {}
                Err(e) => problems.push(format!("{rel}: link target {target}: {e}")),
            }
        } else {
            let th = text.lines().find(|l| l.starts_with(".TH ")).unwrap_or("");
            let mut f = th.split_whitespace().skip(1);
            let (title, section) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
            let (stem, ext) = name.rsplit_once('.').unwrap();
            if title != stem.to_uppercase() || section != ext {
                problems.push(format!("{rel}: .TH says {title}({section})"));
            }
            if names_of(&text).is_empty() {
                problems.push(format!("{rel}: empty NAME section"));
            }
        }
        let complaints = groff_complaints(&man_dir(), &rel);
        if !complaints.trim().is_empty() {
            problems.push(format!("{rel}:\n{complaints}"));
        }
        for l in overlong_lines(&man_dir(), &rel) {
            problems.push(format!("{rel}: wider than {LINE_LENGTH} columns: {l}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The checks above can fail: a page with an unknown macro, an undefined string, or a `.so` to a
/// missing file makes groff complain; an unbreakable synopsis line is too wide.
#[test]
fn broken_pages_are_reported() {
    let tmp = TempDir::new("man-broken");
    let cases = [
        ("macro.3", ".TH X 3\n.SH NAME\nx \\- y\n.XYZZY oops\n"),
        (
            "string.3",
            ".TH X 3\n.SH NAME\nx \\- y\n.SH DESCRIPTION\nsee \\*[nostring]\n",
        ),
        ("link.3", ".so man3/nonexistent.3\n"),
    ];
    for (file, text) in cases {
        std::fs::write(tmp.path().join(file), text).expect("write page");
        let complaints = groff_complaints(tmp.path(), file);
        assert!(
            !complaints.trim().is_empty(),
            "groff found nothing wrong in {file}"
        );
    }
    let wide = format!(
        ".TH X 3\n.SH NAME\nx \\- y\n.SH SYNOPSIS\n.nf\n.B \"int f({});\"\n.fi\n",
        "int a, ".repeat(12)
    );
    std::fs::write(tmp.path().join("wide.3"), wide).expect("write page");
    assert_eq!(groff_complaints(tmp.path(), "wide.3").trim(), "");
    assert_eq!(overlong_lines(tmp.path(), "wide.3").len(), 1);
    std::fs::write(
        tmp.path().join("good.3"),
        ".TH X 3\n.SH NAME\nx \\- y\n.SH DESCRIPTION\nFine.\n",
    )
    .expect("write page");
    assert_eq!(groff_complaints(tmp.path(), "good.3").trim(), "");
    assert!(overlong_lines(tmp.path(), "good.3").is_empty());
}

/// The `T` (text) symbols `lib` exports that start with one of `prefixes`.
fn exports(lib: &Path, prefixes: &[&str]) -> Vec<String> {
    assert!(
        lib.is_file(),
        "{} missing: run `cargo build --workspace --all-targets`",
        lib.display()
    );
    let (status, out, err) = run_bounded(
        Command::new("nm").args(["-D", "--defined-only"]).arg(lib),
        Duration::from_secs(60),
    );
    assert!(status.is_some_and(|s| s.success()), "nm failed: {err}");
    out.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, kind, name) = (f.next()?, f.next()?, f.next()?);
            (kind == "T" && prefixes.iter().any(|p| name.starts_with(p))).then(|| name.to_owned())
        })
        .collect()
}

/// The `static inline` functions named `ioth_*`/`iothaddr_*` of `client/include/*.h`.
fn inline_functions() -> Vec<String> {
    let mut out = Vec::new();
    let dir = repo_root().join("client").join("include");
    for e in std::fs::read_dir(&dir).expect("read client/include") {
        let path = e.expect("dir entry").path();
        if path.extension().is_none_or(|x| x != "h") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read header");
        for l in text.lines().filter(|l| l.starts_with("static inline")) {
            let Some(open) = l.find('(') else { continue };
            let name: String = l[..open]
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if name.starts_with("ioth_") || name.starts_with("iothaddr_") {
                out.push(name);
            }
        }
    }
    out
}

/// The netlink family `ioth.h` defines with `__IOTH_NL_LIBMULTI(ioth_, ...)`: the functions of
/// that macro of `ioth_nlinline.h` (its lines `static inline int X ## NAME(`), named `ioth_NAME`.
fn netlink_family() -> Vec<String> {
    let include = repo_root().join("client").join("include");
    let ioth_h = std::fs::read_to_string(include.join("ioth.h")).expect("read ioth.h");
    assert!(
        ioth_h.contains("\n__IOTH_NL_LIBMULTI(ioth_,"),
        "ioth.h no longer defines the netlink family with __IOTH_NL_LIBMULTI"
    );
    let nl =
        std::fs::read_to_string(include.join("ioth_nlinline.h")).expect("read ioth_nlinline.h");
    let body = nl
        .split("#define __IOTH_NL_LIBMULTI(")
        .nth(1)
        .expect("__IOTH_NL_LIBMULTI in ioth_nlinline.h");
    let body = &body[..body.find("\n\n").unwrap_or(body.len())];
    body.lines()
        .filter_map(|l| l.split("static inline int X ## ").nth(1))
        .filter_map(|rest| rest.split('(').next())
        .map(|name| format!("ioth_{name}"))
        .collect()
}

#[test]
fn every_function_has_a_page() {
    let lib = profile_dir();
    let mut functions = exports(&lib.join("libioth.so"), &["ioth_"]);
    assert!(
        functions.len() >= 30,
        "too few exports in libioth.so: {functions:?}"
    );
    let addr = exports(&lib.join("libiothaddr.so"), &["iothaddr_"]);
    assert_eq!(addr.len(), 4, "exports of libiothaddr.so: {addr:?}");
    functions.extend(addr);
    let inline = inline_functions();
    for f in ["ioth_ntomac", "ioth_macton", "iothaddr_otiptime"] {
        assert!(
            inline.iter().any(|i| i == f),
            "{f} not found in the headers: {inline:?}"
        );
    }
    functions.extend(inline);
    let family = netlink_family();
    assert!(
        family.len() >= 12 && family.iter().any(|f| f == "ioth_nldialog"),
        "the ioth_* netlink family from the headers: {family:?}"
    );
    functions.extend(family);
    let missing: Vec<&String> = functions
        .iter()
        .filter(|f| !man_dir().join("man3").join(format!("{f}.3")).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "no page docs/man/man3/<name>.3 for {missing:?}"
    );
}
