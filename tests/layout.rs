//! The repository's layout rules, checked on its sources (no build, no root):
//!
//! - no import cycle between the modules of any crate of the workspace: the module graph is
//!   built from `use crate::…`, `use super::…`, `use self::…` trees and `crate::x::…` /
//!   `super::x::…` paths in code (comments, string literals and `#[cfg(test)]` items left
//!   out); an edge between two modules counts between their ancestors that are siblings (so
//!   `a → b::c` and `b → a` is a cycle of `a` and `b`); a module's own descendants and
//!   ancestors (`mod` nesting) are not edges;
//! - no source file over [`MAX_LINES`] lines (test code: [`MAX_TEST_LINES`]), except the
//!   tables of [`LONG_TABLES`];
//! - every file that README.md and docs/*.md name (`path/like/this.rs`, `docs/x.md`) exists;
//! - no mention of the product brief's private file names anywhere in the repository.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

/// Longest source file (product code), in lines.
const MAX_LINES: usize = 700;
/// Longest test file (integration tests, `#[cfg(test)]` module files, tests/common), in lines.
const MAX_TEST_LINES: usize = 1000;
/// Files allowed over the limit because each is one cohesive table, not several jobs; each entry
/// says why. Empty: no file needs it.
const LONG_TABLES: &[&str] = &[];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The `members` of the workspace's manifest.
fn members(root: &Path) -> Vec<String> {
    let m = read(&root.join("Cargo.toml"));
    let at = m.find("members").expect("workspace members");
    let list = &m[at..m[at..].find(']').map(|e| at + e).expect("members list")];
    list.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// A crate of a member: its root file, and whether all of it is test code.
struct CrateRoot {
    file: PathBuf,
    test: bool,
}

/// The crate roots of member `dir`: `src/lib.rs`, `src/main.rs`, `src/bin/*.rs`, `build.rs` and
/// every `path` of a `[lib]`, `[[bin]]`, `[[test]]`, `[[bench]]` or `[[example]]` target.
fn crate_roots(dir: &Path) -> Vec<CrateRoot> {
    let mut roots: Vec<CrateRoot> = Vec::new();
    let mut add = |file: PathBuf, test: bool| {
        if file.is_file() && !roots.iter().any(|r| r.file == file) {
            roots.push(CrateRoot { file, test });
        }
    };
    let manifest = read(&dir.join("Cargo.toml"));
    let mut section = String::new();
    for line in manifest.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            section = l.to_string();
            continue;
        }
        let targets = ["[lib]", "[[bin]]", "[[test]]", "[[bench]]", "[[example]]"];
        if !targets.contains(&section.as_str()) {
            continue;
        }
        if let Some(v) = l.strip_prefix("path") {
            let v = v
                .trim_start()
                .trim_start_matches('=')
                .trim()
                .trim_matches('"');
            let test = matches!(section.as_str(), "[[test]]" | "[[bench]]");
            add(dir.join(v), test);
        }
    }
    add(dir.join("src/lib.rs"), false);
    add(dir.join("src/main.rs"), false);
    add(dir.join("build.rs"), false);
    if let Ok(rd) = fs::read_dir(dir.join("src/bin")) {
        let mut bins: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        bins.sort();
        for b in bins
            .into_iter()
            .filter(|b| b.extension().is_some_and(|x| x == "rs"))
        {
            add(b, false);
        }
    }
    roots
}

/// `src` with comments removed and the contents of string and character literals blanked
/// (line breaks kept, so that line numbers still hold).
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if c[i] == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&c, i) {
            // A raw string r"…", r#"…"#: up to the quote followed by as many hashes.
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            out.push('"');
            j += 1;
            while j < c.len() {
                if c[j] == '"' && (0..hashes).all(|k| c.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                blank(&mut out, c[j]);
                j += 1;
            }
            out.push('"');
            i = j;
        } else if c[i] == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c[i] == '\'' {
            // A character literal ('x', '\n', '\u{…}'), else a lifetime or label.
            if next == Some('\\') {
                let mut j = i + 2;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                out.push_str("' '");
                i = j + 1;
            } else if c.get(i + 2) == Some(&'\'') {
                out.push_str("' '");
                i += 3;
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

fn ident_before(c: &[char], i: usize) -> bool {
    i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_')
}

#[derive(Clone, Debug)]
struct Tok {
    s: String,
    line: usize,
}

/// Identifiers (and numbers), `::`, and single punctuation characters.
fn tokens(text: &str) -> Vec<Tok> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphanumeric() || ch == '_' || ch == '$' {
            let s = i;
            i += 1;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(Tok {
                s: c[s..i].iter().collect(),
                line,
            });
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push(Tok {
                s: "::".into(),
                line,
            });
            i += 2;
        } else {
            out.push(Tok {
                s: ch.to_string(),
                line,
            });
            i += 1;
        }
    }
    out
}

/// `toks` without the items under `#[cfg(test)]`.
fn without_test_items(toks: &[Tok]) -> Vec<Tok> {
    let is = |k: usize, s: &str| toks.get(k).is_some_and(|t| t.s == s);
    let cfg_test = |k: usize| {
        ["#", "[", "cfg", "(", "test", ")", "]"]
            .iter()
            .enumerate()
            .all(|(n, s)| is(k + n, s))
    };
    let mut out = Vec::new();
    let mut k = 0;
    while k < toks.len() {
        if !cfg_test(k) {
            out.push(toks[k].clone());
            k += 1;
            continue;
        }
        k += 7;
        // Further attributes of the same item.
        while is(k, "#") && is(k + 1, "[") {
            let mut depth = 0;
            k += 1;
            while k < toks.len() {
                match toks[k].s.as_str() {
                    "[" => depth += 1,
                    "]" => depth -= 1,
                    _ => {}
                }
                k += 1;
                if depth == 0 {
                    break;
                }
            }
        }
        // The item: up to `;` outside brackets, or the `}` that closes its first block.
        let (mut depth, mut braces) = (0i32, 0i32);
        while k < toks.len() {
            let s = toks[k].s.as_str();
            k += 1;
            match s {
                "(" | "[" => depth += 1,
                ")" | "]" => depth -= 1,
                "{" => braces += 1,
                "}" => {
                    braces -= 1;
                    if braces == 0 && depth == 0 {
                        break;
                    }
                }
                ";" if depth == 0 && braces == 0 => break,
                _ => {}
            }
        }
    }
    out
}

/// A module: its path in the crate (empty: the root) and its file.
struct Module {
    path: Vec<String>,
    file: PathBuf,
    /// The module's non-test tokens.
    toks: Vec<Tok>,
}

/// The file of module `name` declared in `file` (`name.rs` or `name/mod.rs` beside it, or in
/// its directory when `file` is a `mod.rs`, `lib.rs`, `main.rs` or a crate root).
fn child_file(file: &Path, is_root: bool, name: &str) -> Option<PathBuf> {
    let stem = file.file_stem()?.to_str()?;
    let dir = if is_root || stem == "mod" {
        file.parent()?.to_path_buf()
    } else {
        file.with_extension("")
    };
    [
        dir.join(format!("{name}.rs")),
        dir.join(name).join("mod.rs"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// `mod name;` declarations in `toks`.
fn mod_decls(toks: &[Tok]) -> Vec<String> {
    toks.windows(3)
        .filter(|w| w[0].s == "mod" && w[2].s == ";")
        .map(|w| w[1].s.clone())
        .collect()
}

/// Every module of the crate at `root` (files only: inline modules belong to their file), and
/// the files of its `#[cfg(test)]` modules.
fn modules(root: &Path) -> (Vec<Module>, Vec<PathBuf>) {
    let mut mods = Vec::new();
    let mut tests = Vec::new();
    let mut todo = vec![(Vec::<String>::new(), root.to_path_buf(), true)];
    while let Some((path, file, is_root)) = todo.pop() {
        let all = tokens(&strip(&read(&file)));
        let toks = without_test_items(&all);
        let live: BTreeSet<String> = mod_decls(&toks).into_iter().collect();
        for name in mod_decls(&all) {
            let Some(f) = child_file(&file, is_root, &name) else {
                continue;
            };
            if live.contains(&name) {
                let mut p = path.clone();
                p.push(name);
                todo.push((p, f, false));
            } else {
                tests.extend(test_tree(&f));
            }
        }
        mods.push(Module { path, file, toks });
    }
    (mods, tests)
}

/// A test module's file and the files of the modules it declares.
fn test_tree(file: &Path) -> Vec<PathBuf> {
    let mut out = vec![file.to_path_buf()];
    for name in mod_decls(&tokens(&strip(&read(file)))) {
        if let Some(f) = child_file(file, false, &name) {
            out.extend(test_tree(&f));
        }
    }
    out
}

/// The paths of a `use` tree (`toks`: what follows `use`, up to `;`).
fn use_paths(toks: &[Tok]) -> Vec<(Vec<String>, usize)> {
    fn tree(toks: &[Tok], k: &mut usize, prefix: &[String], out: &mut Vec<(Vec<String>, usize)>) {
        let mut path = prefix.to_vec();
        let line = toks.get(*k).map_or(0, |t| t.line);
        while *k < toks.len() {
            let s = toks[*k].s.as_str();
            match s {
                "::" => *k += 1,
                "{" => {
                    *k += 1;
                    while *k < toks.len() && toks[*k].s != "}" {
                        tree(toks, k, &path, out);
                        if toks.get(*k).is_some_and(|t| t.s == ",") {
                            *k += 1;
                        }
                    }
                    *k += 1;
                    return;
                }
                "*" => {
                    *k += 1;
                    break;
                }
                "," | "}" => break,
                "as" => {
                    *k += 2;
                    break;
                }
                _ => {
                    path.push(s.to_string());
                    *k += 1;
                }
            }
        }
        out.push((path, line));
    }
    let mut out = Vec::new();
    let mut k = 0;
    while k < toks.len() {
        let before = k;
        tree(toks, &mut k, &[], &mut out);
        if k == before {
            k += 1;
        }
    }
    out
}

/// The module a path used in module `from` names: the longest known module prefix of it.
fn resolve(from: &[String], segs: &[String], known: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let mut base: Vec<String>;
    let mut rest = segs;
    match segs.first()?.as_str() {
        "crate" => {
            base = Vec::new();
            rest = &segs[1..];
        }
        "self" => {
            base = from.to_vec();
            rest = &segs[1..];
        }
        "super" => {
            base = from.to_vec();
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    for s in rest {
        let mut next = base.clone();
        next.push(s.clone());
        if !known.contains(&next) {
            break;
        }
        base = next;
    }
    Some(base)
}

/// Module-to-module uses of `m`: (target, line, the path as written).
fn uses(m: &Module, known: &BTreeSet<Vec<String>>) -> Vec<(Vec<String>, usize, String)> {
    let t = &m.toks;
    let mut out = Vec::new();
    let mut k = 0;
    while k < t.len() {
        if t[k].s == "use" {
            let end = (k..t.len()).find(|&e| t[e].s == ";").unwrap_or(t.len());
            for (p, line) in use_paths(&t[k + 1..end]) {
                if let Some(to) = resolve(&m.path, &p, known) {
                    out.push((to, line, p.join("::")));
                }
            }
            k = end;
            continue;
        }
        let starts = matches!(t[k].s.as_str(), "crate" | "super" | "self")
            && t.get(k + 1).is_some_and(|x| x.s == "::")
            && (k == 0 || t[k - 1].s != "::");
        if starts {
            let mut segs = vec![t[k].s.clone()];
            let mut j = k + 1;
            while t.get(j).is_some_and(|x| x.s == "::")
                && t.get(j + 1)
                    .is_some_and(|x| x.s.chars().all(|c| c.is_alphanumeric() || c == '_'))
            {
                segs.push(t[j + 1].s.clone());
                j += 2;
            }
            if let Some(to) = resolve(&m.path, &segs, known) {
                out.push((to, t[k].line, segs.join("::")));
            }
            k = j;
            continue;
        }
        k += 1;
    }
    out
}

/// Display name of a module path.
fn name(p: &[String]) -> String {
    if p.is_empty() {
        "crate".into()
    } else {
        p.join("::")
    }
}

/// The import cycles of the crate at `root`, each described with one use per edge.
fn cycles(root: &Path) -> Vec<String> {
    let (mods, _) = modules(root);
    let known: BTreeSet<Vec<String>> = mods.iter().map(|m| m.path.clone()).collect();
    // Edges between siblings: for a use of `to` in `from`, their ancestors just below the
    // common one.
    let mut edges: BTreeMap<Vec<String>, BTreeMap<Vec<String>, String>> = BTreeMap::new();
    for m in &mods {
        for (to, line, written) in uses(m, &known) {
            let common = m.path.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == m.path.len() || common == to.len() {
                continue; // its own ancestor or descendant
            }
            let (a, b) = (m.path[..=common].to_vec(), to[..=common].to_vec());
            let file = m
                .file
                .strip_prefix(root.parent().unwrap_or(root))
                .unwrap_or(&m.file);
            edges
                .entry(a)
                .or_default()
                .entry(b)
                .or_insert_with(|| format!("{}:{line} uses {written}", file.display()));
        }
    }
    // Tarjan's strongly connected components; each one larger than one module is a cycle.
    struct T<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeMap<Vec<String>, String>>,
        index: HashMap<Vec<String>, usize>,
        low: HashMap<Vec<String>, usize>,
        stack: Vec<Vec<String>>,
        on: BTreeSet<Vec<String>>,
        sccs: Vec<Vec<Vec<String>>>,
    }
    fn visit(t: &mut T<'_>, v: &Vec<String>) {
        let n = t.index.len();
        t.index.insert(v.clone(), n);
        t.low.insert(v.clone(), n);
        t.stack.push(v.clone());
        t.on.insert(v.clone());
        let next: Vec<Vec<String>> = t
            .edges
            .get(v)
            .map_or_else(Vec::new, |e| e.keys().cloned().collect());
        for w in next {
            if !t.index.contains_key(&w) {
                visit(t, &w);
                let l = t.low[v].min(t.low[&w]);
                t.low.insert(v.clone(), l);
            } else if t.on.contains(&w) {
                let l = t.low[v].min(t.index[&w]);
                t.low.insert(v.clone(), l);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(&w);
                let done = &w == v;
                scc.push(w);
                if done {
                    break;
                }
            }
            t.sccs.push(scc);
        }
    }
    let mut t = T {
        edges: &edges,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        sccs: Vec::new(),
    };
    let nodes: Vec<Vec<String>> = edges.keys().cloned().collect();
    for v in &nodes {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    let mut out = Vec::new();
    for scc in t.sccs.into_iter().filter(|s| s.len() > 1) {
        let members: BTreeSet<&Vec<String>> = scc.iter().collect();
        // One cycle through the component: follow edges inside it until a module repeats.
        let mut walk = vec![scc[0].clone()];
        loop {
            let last = walk.last().expect("not empty");
            let next = edges[last]
                .keys()
                .find(|w| members.contains(w))
                .expect("a component's module uses another of it")
                .clone();
            if let Some(at) = walk.iter().position(|w| *w == next) {
                walk.drain(..at);
                walk.push(next);
                break;
            }
            walk.push(next);
        }
        let steps: Vec<String> = walk
            .windows(2)
            .map(|w| {
                format!(
                    "    {} → {} ({})",
                    name(&w[0]),
                    name(&w[1]),
                    edges[&w[0]][&w[1]]
                )
            })
            .collect();
        out.push(format!(
            "{}: modules {} import each other:\n{}",
            root.display(),
            scc.iter().map(|m| name(m)).collect::<Vec<_>>().join(", "),
            steps.join("\n")
        ));
    }
    out
}

/// Every crate root of the workspace.
fn all_roots() -> Vec<CrateRoot> {
    let root = root();
    members(&root)
        .iter()
        .flat_map(|m| crate_roots(&root.join(m)))
        .collect()
}

#[test]
fn no_import_cycle_between_modules() {
    let mut found = Vec::new();
    let roots = all_roots();
    assert!(roots.len() > 20, "crate roots found: {}", roots.len());
    for r in &roots {
        found.extend(cycles(&r.file));
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let dir = std::env::temp_dir().join(format!("ioth-layout-{}", std::process::id()));
    fs::create_dir_all(dir.join("b")).unwrap();
    fs::write(dir.join("lib.rs"), "mod a;\nmod b;\n#[cfg(test)]\nmod t;\n").unwrap();
    fs::write(
        dir.join("a.rs"),
        "// crate::b::c::X in a comment\nuse crate::{b::c::X};\n",
    )
    .unwrap();
    fs::write(dir.join("b.rs"), "mod c;\n").unwrap();
    fs::write(
        dir.join("b/c.rs"),
        "pub struct X;\nfn f() { let _ = \"crate::a\"; }\n",
    )
    .unwrap();
    fs::write(dir.join("t.rs"), "use crate::a;\n").unwrap();
    assert!(cycles(&dir.join("lib.rs")).is_empty(), "a → b::c only");
    fs::write(
        dir.join("b/c.rs"),
        "pub struct X;\nfn f() { crate::a::g() }\n",
    )
    .unwrap();
    let found = cycles(&dir.join("lib.rs"));
    let _ = fs::remove_dir_all(&dir);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("modules a, b") || found[0].contains("modules b, a"),
        "{}",
        found[0]
    );
}

/// Every `.rs` file of the workspace's crates: (file, whether it is test code).
fn sources() -> BTreeMap<PathBuf, bool> {
    let mut files = BTreeMap::new();
    for r in all_roots() {
        let (mods, tests) = modules(&r.file);
        for m in mods {
            let test = r.test || m.file.starts_with(root().join("tests"));
            files.entry(m.file).or_insert(test);
        }
        for t in tests {
            files.insert(t, true);
        }
    }
    files
}

#[test]
fn no_long_source_file() {
    let root = root();
    let files = sources();
    assert!(files.len() > 100, "source files found: {}", files.len());
    let mut long = Vec::new();
    for (f, test) in &files {
        let rel = f.strip_prefix(&root).unwrap_or(f).display().to_string();
        let n = read(f).lines().count();
        let max = if *test { MAX_TEST_LINES } else { MAX_LINES };
        if n > max && !LONG_TABLES.contains(&rel.as_str()) {
            long.push(format!("{rel}: {n} lines (at most {max})"));
        }
    }
    assert!(
        long.is_empty(),
        "split by responsibility:\n{}",
        long.join("\n")
    );
}

/// The words of `text` that look like a repository path: with a `/` and a known extension, or a
/// `.md` file (not a system header such as `<linux/rtnetlink.h>`).
fn mentioned_paths(text: &str) -> Vec<String> {
    let exts = [".rs", ".md", ".h", ".c", ".toml", ".sh", ".py"];
    let mut rest = text;
    let mut words = Vec::new();
    while let Some(at) = rest.find(|c: char| c.is_alphanumeric() || "_-./".contains(c)) {
        let len = rest[at..]
            .find(|c: char| !(c.is_alphanumeric() || "_-./".contains(c)))
            .unwrap_or(rest.len() - at);
        if !rest[..at].ends_with('<') {
            words.push(&rest[at..at + len]);
        }
        rest = &rest[at + len..];
    }
    words
        .into_iter()
        .map(|w| w.trim_end_matches('.'))
        .filter(|w| exts.iter().any(|e| w.ends_with(e)))
        .filter(|w| w.contains('/') || w.ends_with(".md"))
        .filter(|w| !w.starts_with('/') && !w.contains("//"))
        .map(str::to_string)
        .collect()
}

#[test]
fn docs_name_files_that_exist() {
    let root = root();
    let mut docs = vec![root.join("README.md")];
    let mut d: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    d.sort();
    docs.extend(d);
    let mut missing = Vec::new();
    let mut seen = 0;
    for doc in &docs {
        let dir = doc.parent().unwrap();
        for (n, line) in read(doc).lines().enumerate() {
            for p in mentioned_paths(line) {
                seen += 1;
                if !(root.join(&p).exists() || dir.join(&p).exists()) {
                    let rel = doc.strip_prefix(&root).unwrap().display();
                    missing.push(format!("{rel}:{}: {p}", n + 1));
                }
            }
        }
    }
    assert!(seen > 50, "paths found in the docs: {seen}");
    assert!(
        missing.is_empty(),
        "the docs name files that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn mentioned_paths_are_found() {
    let p = mentioned_paths(
        "see `client/src/stack.rs`, docs/proxied.md and (../x/y.h), <linux/if.h>. Or https://a.b/c.md",
    );
    assert_eq!(p, ["client/src/stack.rs", "docs/proxied.md", "../x/y.h"]);
}

#[test]
fn no_mention_of_the_brief_files() {
    let root = root();
    // Spelt in two parts so that this file does not name them itself.
    let names: Vec<String> = ["ECOSYSTEM", "DESIGN", "STYLE"]
        .iter()
        .map(|n| format!("{n}{}", ".md"))
        .collect();
    let mut found = Vec::new();
    let mut todo = vec![root.clone()];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let file_name = e.file_name();
            let n = file_name.to_string_lossy();
            if p.is_dir() {
                if !(n.starts_with('.') || n == "target") {
                    todo.push(p);
                }
                continue;
            }
            let Ok(text) = fs::read_to_string(&p) else {
                continue; // not text
            };
            for name in &names {
                if text.contains(name.as_str()) {
                    found.push(format!(
                        "{}: {name}",
                        p.strip_prefix(&root).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
