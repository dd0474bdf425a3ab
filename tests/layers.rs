//! The source's layers point one way (DESIGN §4): every `crate::` path in `src/` names a module on
//! its own layer or below, top-level modules import each other without a cycle, and so do the
//! sibling files of one module. Read from the source text, so it fails on the line that breaks
//! the rule.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom up; a module may use its own layer and those below.
const LAYERS: &[&[&str]] = &[
    &["domain", "config", "platform"],
    &["net"],
    &["raft"],
    &["metrics", "deploy", "ingress", "rollout", "controller"],
    &["view"],
    &["admin"],
    &["cli", "tui"],
    &["node"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// A reference from one file to a module path, with its line.
struct Ref {
    file: PathBuf,
    line: usize,
    from: Vec<String>,
    to: Vec<String>,
}

/// The module path of a file under `src/`: `admin/live.rs` is `[admin, live]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "lib" && stem != "main" && stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

/// The code of a line without its `//` comment (a `//` inside a string literal is kept).
fn code(line: &str) -> &str {
    let mut in_str = false;
    let b = line.as_bytes();
    for i in 0..b.len() {
        match b[i] {
            b'"' if i == 0 || b[i - 1] != b'\\' => in_str = !in_str,
            b'/' if !in_str && b.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
    }
    line
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The module paths (up to two segments) that `text` names after `prefix` (`crate::`,
/// `super::`), including each item of a `{a, b::c}` group.
fn paths_after(text: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(segments(item.trim()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.push(segments(item.trim()));
        } else {
            out.push(segments(rest));
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

fn segments(s: &str) -> Vec<String> {
    let first = ident(s);
    if first.is_empty() {
        return Vec::new();
    }
    let mut v = vec![first.clone()];
    if let Some(tail) = s[first.len()..].strip_prefix("::") {
        let second = ident(tail);
        if !second.is_empty() {
            v.push(second);
        }
    }
    v
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn references(src: &Path) -> Vec<Ref> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut refs = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap().to_path_buf();
        let from = module_of(&rel);
        let text = std::fs::read_to_string(&file).unwrap();
        // A multi-line `use crate::{ ... };` is read as one statement.
        let mut pending = String::new();
        let mut start = 0;
        for (n, raw) in text.lines().enumerate() {
            let line = code(raw);
            if pending.is_empty() {
                start = n + 1;
            }
            pending.push_str(line);
            pending.push(' ');
            let open = pending.matches('{').count() > pending.matches('}').count();
            if open && pending.trim_start().starts_with("use ")
                || pending.trim_end().ends_with("::{")
            {
                continue;
            }
            let stmt = std::mem::take(&mut pending);
            for to in paths_after(&stmt, "crate::") {
                refs.push(Ref {
                    file: rel.clone(),
                    line: start,
                    from: from.clone(),
                    to,
                });
            }
            for rel_path in paths_after(&stmt, "super::") {
                // `super::x` from a file `a/b.rs` (module a::b) names a::x.
                if from.len() >= 2 && rel_path[0] != "super" {
                    let mut to = from[..from.len() - 1].to_vec();
                    to.extend(rel_path);
                    to.truncate(2);
                    refs.push(Ref {
                        file: rel.clone(),
                        line: start,
                        from: from.clone(),
                        to,
                    });
                }
            }
        }
    }
    refs
}

/// A cycle in `graph`, as the nodes along it, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_top_level_module_has_a_layer() {
    let mut tops = BTreeSet::new();
    for e in std::fs::read_dir(src()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".rs") {
            tops.insert(stem.to_string());
        } else {
            tops.insert(name);
        }
    }
    for m in tops {
        if m == "lib" || m == "main" {
            continue;
        }
        assert!(
            layer(&m).is_some(),
            "src/{m} has no layer: add it to LAYERS here and to DESIGN §4"
        );
    }
}

#[test]
fn no_import_runs_up_the_layers() {
    let mut upward = Vec::new();
    for r in references(&src()) {
        let (Some(from), Some(to)) = (r.from.first(), r.to.first()) else {
            continue;
        };
        let (Some(lf), Some(lt)) = (layer(from), layer(to)) else {
            continue;
        };
        if lt > lf {
            upward.push(format!(
                "src/{}:{}: {from} uses {} (a layer above it)",
                r.file.display(),
                r.line,
                r.to.join("::")
            ));
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run up the layers of DESIGN §4:\n{}",
        upward.join("\n")
    );
}

#[test]
fn modules_import_each_other_without_a_cycle() {
    let refs = references(&src());
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut siblings: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for r in &refs {
        let (Some(from), Some(to)) = (r.from.first(), r.to.first()) else {
            continue;
        };
        if layer(from).is_none() || layer(to).is_none() {
            continue;
        }
        if from != to {
            top.entry(from.clone()).or_default().insert(to.clone());
        } else if let (Some(a), Some(b)) = (r.from.get(1), r.to.get(1))
            && a != b
        {
            siblings
                .entry(from.clone())
                .or_default()
                .entry(a.clone())
                .or_default()
                .insert(b.clone());
        }
    }
    let mut cycles = Vec::new();
    if let Some(c) = cycle(&top) {
        cycles.push(format!("top-level modules: {}", c.join(" -> ")));
    }
    for (m, graph) in &siblings {
        if let Some(c) = cycle(graph) {
            cycles.push(format!("the files of {m}: {}", c.join(" -> ")));
        }
    }
    assert!(
        cycles.is_empty(),
        "modules that import each other in a cycle:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_reader_finds_grouped_and_nested_paths() {
    assert_eq!(
        paths_after(
            "use crate::{admin, domain::{A, B}, raft::types::C};",
            "crate::"
        ),
        vec![
            vec!["admin".to_string()],
            vec!["domain".to_string()],
            vec!["raft".to_string(), "types".to_string()],
        ]
    );
    assert_eq!(
        paths_after(
            "let x = crate::view::status::build(); // crate::tui",
            "crate::"
        ),
        vec![
            vec!["view".to_string(), "status".to_string()],
            vec!["tui".to_string()],
        ]
    );
    assert_eq!(
        code("let u = \"http://x\"; // crate::tui"),
        "let u = \"http://x\"; "
    );
    assert!(paths_after("my_crate::admin", "crate::").is_empty());
}
