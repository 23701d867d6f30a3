//! The layering of the library, read from its sources: which top-level module refers to which
//! (`crate::x` anywhere outside a `#[cfg(test)] mod tests`). No module may reach a module that
//! reaches it back; the shared vocabulary (`spec`) depends on nothing; reports, the regression
//! gate and the cost model never depend on the sweep engine (`harness`). Inside a folder no
//! file reaches a sibling that reaches it back, and the harness reaches a backend only through
//! `backend`'s face, never a backend's own module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its sources name.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, code) in sources() {
        let top = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        if ["main", "cli", "lib"].contains(&top.as_str()) {
            continue;
        }
        let deps = g.entry(top.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let is_module = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
            if is_module && name != top {
                deps.insert(name);
            }
        }
    }
    g
}

/// Every module reachable from `from`.
fn reach(g: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = g
        .get(from)
        .map_or(vec![], |d| d.iter().map(|s| s.as_str()).collect());
    while let Some(m) = todo.pop() {
        if seen.insert(m.to_string()) {
            todo.extend(g.get(m).into_iter().flatten().map(|s| s.as_str()));
        }
    }
    seen
}

#[test]
fn no_module_reaches_a_module_that_reaches_it_back() {
    let g = graph();
    assert!(g.len() >= 10, "the scan found the modules: {g:?}");
    for m in g.keys() {
        assert!(
            !reach(&g, m).contains(m),
            "import circle through {m}: {m} -> {:?}",
            g[m]
        );
    }
}

#[test]
fn the_vocabulary_depends_on_nothing_and_reports_not_on_the_sweep_engine() {
    let g = graph();
    assert!(g["spec"].is_empty(), "spec imports {:?}", g["spec"]);
    for m in ["report", "compare", "cost", "results"] {
        assert!(
            !reach(&g, m).contains("harness"),
            "{m} depends on harness: {:?}",
            g[m]
        );
    }
}

/// No source file over 900 lines: a file that size does several jobs (the torch backend was
/// 1,484 lines doing four), and its tests move to a file of their own before it gets there.
#[test]
fn no_source_file_is_over_900_lines() {
    let files = files();
    assert!(
        files.len() >= 40,
        "the scan found the sources: {}",
        files.len()
    );
    let long: Vec<String> = files
        .iter()
        .map(|(rel, text)| (rel, text.lines().count()))
        .filter(|(_, n)| *n > 900)
        .map(|(rel, n)| format!("{rel} ({n} lines)"))
        .collect();
    assert!(long.is_empty(), "over 900 lines: {long:?}");
}

/// Each `.rs` file under `src`: its path relative to `src` and its text.
fn files() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(&src).unwrap().to_string_lossy().to_string();
                out.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out
}

/// Each `.rs` file under `src` with its code: outside the `#[cfg(test)] mod tests` block and
/// outside comment lines.
fn sources() -> Vec<(String, String)> {
    files()
        .into_iter()
        .map(|(rel, text)| {
            let code: String = text
                .split("#[cfg(test)]\nmod tests")
                .next()
                .unwrap()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            (rel, code)
        })
        .collect()
}

/// Folder → (file stem → the sibling stems its code names, as `super::x` or by its full path).
/// The folder's face (`mod.rs`) and its test files are not siblings.
fn folder_graphs() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let files = sources();
    let mut folders: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (rel, code) in &files {
        let Some((dir, file)) = rel.rsplit_once('/') else {
            continue;
        };
        let stem = file.trim_end_matches(".rs");
        if stem == "mod" || stem == "tests" {
            continue;
        }
        folders
            .entry(dir.to_string())
            .or_default()
            .insert(stem.to_string(), code.clone());
    }
    folders
        .into_iter()
        .map(|(dir, members)| {
            let path = format!("crate::{}::", dir.replace('/', "::"));
            let g = members
                .iter()
                .map(|(stem, code)| {
                    let deps = members
                        .keys()
                        .filter(|other| *other != stem)
                        .filter(|other| {
                            [format!("super::{other}"), format!("{path}{other}")]
                                .iter()
                                .any(|needle| {
                                    code.match_indices(needle.as_str()).any(|(i, _)| {
                                        !code[i + needle.len()..]
                                            .starts_with(|c: char| c.is_alphanumeric() || c == '_')
                                    })
                                })
                        })
                        .cloned()
                        .collect();
                    (stem.clone(), deps)
                })
                .collect();
            (dir, g)
        })
        .collect()
}

#[test]
fn no_file_reaches_a_sibling_that_reaches_it_back() {
    let folders = folder_graphs();
    assert!(
        folders.contains_key("model") && folders.contains_key("telemetry"),
        "the scan found the folders: {:?}",
        folders.keys()
    );
    let mut circles = Vec::new();
    for (dir, g) in &folders {
        for m in g.keys() {
            if reach(g, m).contains(m) {
                circles.push(format!("{dir}/{m} -> {:?}", g[m]));
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles inside a folder: {circles:?}"
    );
}

/// The harness opens, probes and checks a backend through `backend`'s face (`open`,
/// `BackendKind`'s methods, `check_env`, `probe_forward`), so a backend can change its insides
/// without the sweep engine noticing.
#[test]
fn the_harness_reaches_backends_only_through_their_face() {
    let mut reached = Vec::new();
    let mut harness_files = 0;
    for (rel, code) in sources() {
        if !rel.starts_with("harness") {
            continue;
        }
        harness_files += 1;
        for b in ["candle", "onnx", "torch"] {
            if code.contains(&format!("backend::{b}::")) {
                reached.push(format!("{rel} reaches backend::{b}"));
            }
        }
    }
    assert!(
        harness_files >= 5,
        "the scan found the harness: {harness_files}"
    );
    assert!(reached.is_empty(), "{reached:?}");
}
