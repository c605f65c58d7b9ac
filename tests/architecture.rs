//! The shape of src/ as docs/DESIGN.md promises it: no import cycle between files, no file over
//! MAX_FILE_LINES and no function over MAX_FN_LINES (tests excluded). Read from the source text,
//! so it needs no build of anything else.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A file a newcomer can read in one sitting.
const MAX_FILE_LINES: usize = 800;
/// A function that fits on a screen or two.
const MAX_FN_LINES: usize = 80;

/// Every .rs file under src/, by module path ("" for lib.rs and main.rs, "gpu::backend", ...).
fn modules() -> BTreeMap<String, (PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .map(|path| {
            let rel = path
                .strip_prefix(&root)
                .expect("under src/")
                .with_extension("");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if parts
                .last()
                .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
            {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).expect("a readable source file");
            (parts.join("::"), (path, without_tests(&text)))
        })
        .collect()
}

/// The text before a file's `#[cfg(test)] mod tests`, with line comments dropped.
fn without_tests(text: &str) -> String {
    let end = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..end]
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The longest module of `known` that `path` (segments) starts with, under `base`.
fn resolve(
    known: &BTreeMap<String, (PathBuf, String)>,
    base: &[&str],
    path: &[&str],
) -> Option<String> {
    (0..=path.len()).rev().find_map(|k| {
        let candidate: Vec<&str> = base.iter().chain(&path[..k]).copied().collect();
        let name = candidate.join("::");
        known.contains_key(&name).then_some(name)
    })
}

/// The paths a file names after `prefix` (`crate::`, `super::`), braces of a `use` expanded one
/// level: `use crate::{a::B, c}` names `a::B` and `c`.
fn paths_after<'a>(text: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    for (at, _) in text.match_indices(prefix) {
        let rest = &text[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                let item = item.trim();
                let end = item.find(|c: char| !ident(c)).unwrap_or(item.len());
                out.push(item[..end].split("::").filter(|s| !s.is_empty()).collect());
            }
        } else {
            let end = rest.find(|c: char| !ident(c)).unwrap_or(rest.len());
            out.push(rest[..end].split("::").filter(|s| !s.is_empty()).collect());
        }
    }
    out
}

/// File-to-file imports: `crate::x::y` and `super::x` paths, each to the deepest file it names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let known = modules();
    let mut edges = BTreeMap::new();
    for (name, (path, text)) in &known {
        let here: Vec<&str> = name.split("::").filter(|s| !s.is_empty()).collect();
        let is_dir = path.ends_with("mod.rs");
        // `super` of a file is its folder's module; of a folder's mod.rs, the folder's parent.
        let parent: Vec<&str> = if is_dir || here.is_empty() {
            here[..here.len().saturating_sub(1)].to_vec()
        } else {
            here[..here.len() - 1].to_vec()
        };
        let mut to = BTreeSet::new();
        for p in paths_after(text, "crate::") {
            to.extend(resolve(&known, &[], &p));
        }
        for p in paths_after(text, "super::") {
            to.extend(resolve(&known, &parent, &p));
        }
        to.remove(name);
        edges.insert(name.clone(), to);
    }
    edges
}

/// The cycles of `edges` (strongly connected components of more than one file).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Two files are in one cycle when each reaches the other.
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for n in edges.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> =
        edges.keys().map(|m| (m, reach(m))).collect();
    let mut found: Vec<Vec<String>> = Vec::new();
    for m in edges.keys() {
        let mut comp: Vec<String> = edges
            .keys()
            .filter(|n| *n == m || (reached[m].contains(*n) && reached[n].contains(m)))
            .cloned()
            .collect();
        comp.sort();
        if comp.len() > 1 && !found.contains(&comp) {
            found.push(comp);
        }
    }
    found
}

#[test]
fn no_import_cycle_between_files_of_src() {
    let edges = imports();
    assert!(
        edges
            .get("gpu::backend")
            .is_some_and(|e| e.contains("gpu::context")),
        "the import reader misses gpu/backend.rs -> gpu/context.rs: {edges:?}"
    );
    let found = cycles(&edges);
    assert!(found.is_empty(), "import cycles in src/: {found:?}");
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let mut edges = imports();
    edges
        .entry("gpu::context".into())
        .or_default()
        .insert("gpu::backend".into());
    assert!(cycles(&edges).iter().any(
        |c| c.contains(&"gpu::backend".to_string()) && c.contains(&"gpu::context".to_string())
    ));
}

/// (lines, name) of every function of `text` whose body (from its `fn` line to the closing
/// brace at the same indent) is longer than `max` lines.
fn long_functions(text: &str, max: usize) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some(at) = trimmed.find("fn ") else {
            continue;
        };
        let head = &trimmed[..at];
        if !head.split_whitespace().all(|w| {
            [
                "pub",
                "pub(crate)",
                "pub(super)",
                "async",
                "const",
                "unsafe",
            ]
            .contains(&w)
        }) {
            continue;
        }
        let indent = &line[..line.len() - trimmed.len()];
        let Some(open) = (i..lines.len()).find(|&j| {
            let l = lines[j].trim_end();
            l.ends_with('{') || l.ends_with(';')
        }) else {
            continue;
        };
        if lines[open].trim_end().ends_with(';') {
            continue; // a declaration without a body
        }
        let close = format!("{indent}}}");
        if let Some(end) = (open + 1..lines.len()).find(|&j| lines[j] == close) {
            if end - i + 1 > max {
                let name = trimmed[at + 3..]
                    .split(['(', '<'])
                    .next()
                    .unwrap_or("")
                    .to_string();
                out.push((end - i + 1, name));
            }
        }
    }
    out
}

#[test]
fn files_and_functions_stay_small() {
    let mut problems = Vec::new();
    for (path, text) in modules().values() {
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES {
            problems.push(format!("{}: {lines} lines", path.display()));
        }
        for (n, name) in long_functions(text, MAX_FN_LINES) {
            problems.push(format!("{}: fn {name} is {n} lines", path.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "over the size rules:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_size_check_sees_a_long_function() {
    let body: String = (0..MAX_FN_LINES)
        .map(|i| format!("    let x{i} = {i};\n"))
        .collect();
    let text = format!("pub(crate) fn long() {{\n{body}}}\n\nfn short() {{\n}}\n");
    assert_eq!(
        long_functions(&text, MAX_FN_LINES),
        vec![(MAX_FN_LINES + 2, "long".to_string())]
    );
}
