//! The layering of the library, read from its sources: which top-level module refers to which
//! (`crate::x` anywhere outside a `#[cfg(test)] mod tests`). No module may reach a module that
//! reaches it back; the shared vocabulary (`spec`) depends on nothing; reports, the regression
//! gate and the cost model never depend on the sweep engine (`harness`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its sources name.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().to_string();
            let top = rel
                .split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_string();
            if ["main", "cli", "lib"].contains(&top.as_str()) {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
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
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src.clone()];
    let mut long = Vec::new();
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files += 1;
                let n = std::fs::read_to_string(&p).unwrap().lines().count();
                if n > 900 {
                    long.push(format!(
                        "{} ({n} lines)",
                        p.strip_prefix(&src).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(files >= 40, "the scan found the sources: {files}");
    assert!(long.is_empty(), "over 900 lines: {long:?}");
}
