//! The runtime's layers (DESIGN §2): imports only go down, and no two
//! modules import each other, directly or through others.
//!
//! Reads `runtime/src` (and, for cycles only, `backends/sql/src`) and collects, per module, the modules it names
//! through `crate::...` and `super::...` paths (in `use` items and in
//! expressions alike). A module is a file's path below `src`, without
//! `mod.rs`; a reference names the longest module prefix of its path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom up. A module may name modules of its own layer or a
/// lower one. `scenario` and `application` sit side by side: neither may
/// name the other. `lib.rs` (the public surface) and `testing` (the
/// conformance suites) may name anything.
const LAYERS: &[(&str, u8)] = &[
    ("future", 0),
    ("domain", 1),
    ("seams", 2),
    ("store", 2),
    ("pipeline", 3),
    ("processes", 4),
    ("scenario", 5),
    ("application", 6),
];

fn layer(module: &str) -> Option<u8> {
    let top = module.split("::").next()?;
    LAYERS.iter().find(|(name, _)| *name == top).map(|(_, l)| *l)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!("cannot read {}", dir.display())
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `domain/event.rs` -> `domain::event`; `seams/mod.rs` -> `seams`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("below src").with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts.join("::")
}

/// The paths a source names after `prefix` (`crate::` or `super::`), each
/// up to the first character that cannot be part of a path.
fn paths_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let preceded_by_ident = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        let tail = &rest[at + prefix.len()..];
        let end = tail
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if !preceded_by_ident {
            found.push(tail[..end].trim_end_matches(':'));
        }
        rest = &tail[end..];
    }
    found
}

/// The modules of the crate at `src`, and the modules each one names.
fn module_graph(src: &Path) -> (BTreeSet<String>, BTreeMap<String, BTreeSet<String>>) {
    let mut files = Vec::new();
    sources(src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    let resolve = |path: &str| -> Option<String> {
        // The longest module that is a prefix of the path.
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len())
            .rev()
            .map(|n| parts[..n].join("::"))
            .find(|m| modules.contains(m))
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(src, file);
        let text = std::fs::read_to_string(file).expect("read source");
        // Tests inside a file may reach anywhere.
        let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
        // `super` is the module's parent, for `x/mod.rs` and `x/y.rs` alike.
        let parts: Vec<&str> = module.split("::").collect();
        let parent = &parts[..parts.len().saturating_sub(1)];
        let mut named: Vec<String> = paths_after(code, "crate::").into_iter().map(str::to_owned).collect();
        for path in paths_after(code, "super::") {
            named.push(
                parent
                    .iter()
                    .copied()
                    .chain(path.split("::"))
                    .collect::<Vec<_>>()
                    .join("::"),
            );
        }
        for path in named {
            let path = path.replacen("store::", "seams::", usize::from(modules.contains("seams")));
            let Some(target) = resolve(&path) else { continue };
            // The crate root (the public surface) and a parent declaring or
            // re-exporting its children are not imports.
            if target == module || target.is_empty() || module.is_empty() || target.starts_with(&format!("{module}::"))
            {
                continue;
            }
            graph.entry(module.clone()).or_default().insert(target);
        }
    }
    (modules, graph)
}

/// Every module that reaches itself, with the path it takes.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut cycles = Vec::new();
    for start in graph.keys() {
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((at, trail)) = stack.pop() {
            for next in graph.get(&at).into_iter().flatten() {
                if next == start {
                    cycles.push(format!("{} -> {start}", trail.join(" -> ")));
                } else if seen.insert(next.clone()) {
                    let mut trail = trail.clone();
                    trail.push(next.clone());
                    stack.push((next.clone(), trail));
                }
            }
        }
    }
    cycles
}

#[test]
fn imports_only_go_down_and_modules_have_no_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/src");
    let (modules, graph) = module_graph(&src);
    let upward: Vec<String> = graph
        .iter()
        .filter(|(module, _)| !module.starts_with("testing"))
        .flat_map(|(module, targets)| targets.iter().map(move |t| (module, t)))
        .filter(|(module, target)| matches!((layer(module), layer(target)), (Some(from), Some(to)) if to > from))
        .map(|(module, target)| format!("{module} -> {target}"))
        .collect();
    assert!(upward.is_empty(), "imports that go up a layer:\n{}", upward.join("\n"));
    let found = cycles(&graph);
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
    // The check saw the tree: every layer has modules, and references were found.
    for (name, _) in LAYERS.iter().filter(|(n, _)| *n != "store") {
        assert!(
            modules.iter().any(|m| m.starts_with(name)),
            "no module in layer `{name}`"
        );
    }
    assert!(
        graph.values().map(BTreeSet::len).sum::<usize>() > 50,
        "too few references found"
    );
}

#[test]
fn the_sql_backend_s_modules_have_no_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../backends/sql/src");
    let (modules, graph) = module_graph(&src);
    let found = cycles(&graph);
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
    assert!(modules.contains("driver") && modules.contains("store"), "{modules:?}");
    assert!(
        graph.values().map(BTreeSet::len).sum::<usize>() > 20,
        "too few references found"
    );
}
