//! The fleet manifests in deploy/k8s/ are valid Kubernetes objects (checked offline against the
//! schemas bundled in the PyPI package kubernetes-validate, which scripts/test.sh installs into
//! the cache), give each pod its whole node, and run scenarios that validate.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn manifests() -> Vec<PathBuf> {
    let v = common::files_with_extension(&root().join("deploy/k8s"), "yaml");
    assert!(v.len() >= 2, "{v:?}");
    v
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    common::isolate();
    let cache = std::env::var_os("RECBENCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".cache"));
    let pylib = cache.join("pylib");
    assert!(
        pylib.join("kubernetes_validate").is_dir(),
        "kubernetes-validate is not in {}: scripts/test.sh installs it there",
        pylib.display()
    );
    let out = Command::new("python3")
        .env("PYTHONPATH", &pylib)
        .args(["-m", "kubernetes_validate", "--strict"])
        .args(manifests())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.matches(" passed for resource ").count(),
        manifests().len(),
        "{text}"
    );
}

#[test]
fn every_job_gets_its_whole_node_and_runs_a_valid_scenario() {
    common::isolate();
    for m in manifests() {
        let text = std::fs::read_to_string(&m).unwrap();
        if !text.contains("kind: Job") {
            continue;
        }
        assert!(
            text.contains("nodeSelector:"),
            "{}: pinned to a node type",
            m.display()
        );
        // Requests equal to limits (the Guaranteed class).
        let block = |name: &str| -> String {
            let start = text.find(&format!("{name}:\n")).unwrap() + name.len() + 2;
            text[start..]
                .lines()
                .take_while(|l| l.starts_with("              "))
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(";")
        };
        assert_eq!(block("requests"), block("limits"), "{}", m.display());
        // Kubernetes' static CPU manager pins only whole-number CPU requests to exclusive
        // cores; "1930m" would run on the shared pool under a quota, beside other pods.
        let cpu = block("requests")
            .split(';')
            .find_map(|kv| kv.strip_prefix("cpu:"))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("{}: no CPU request", m.display()));
        assert!(
            cpu.parse::<u32>().is_ok_and(|n| n > 0),
            "{}: cpu {cpu:?} is not a whole number of CPUs, so the pod is not pinned",
            m.display()
        );
        let args = text
            .lines()
            .find(|l| l.trim_start().starts_with("args:"))
            .unwrap();
        let scenario = args.split('"').nth(3).unwrap();
        let out = Command::cargo_bin("recbench")
            .unwrap()
            .arg("validate")
            .arg(root().join(scenario))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {scenario}: {}",
            m.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
