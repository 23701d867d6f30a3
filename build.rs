//! Records build facts the results file reports: runtime crate versions (from Cargo.lock) and
//! the git commit of the source tree.

use std::process::Command;

fn locked_version(lock: &str, name: &str) -> String {
    let needle = format!("name = \"{name}\"\nversion = \"");
    lock.find(&needle)
        .map(|i| {
            let rest = &lock[i + needle.len()..];
            rest[..rest.find('"').unwrap_or(0)].to_string()
        })
        .unwrap_or_else(|| "not in this build".to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    for (var, krate) in [
        ("RECBENCH_CANDLE_VERSION", "candle-core"),
        ("RECBENCH_ORT_VERSION", "ort"),
        ("RECBENCH_TCH_VERSION", "tch"),
    ] {
        println!("cargo:rustc-env={var}={}", locked_version(&lock, krate));
    }
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    println!(
        "cargo:rustc-env=RECBENCH_GIT_COMMIT={commit}{}",
        if dirty { "-dirty" } else { "" }
    );
}
