//! The bad-input corpus: every malformed or hostile scenario, catalog and results file in
//! tests/corpus/ must exit 2 with the whole message recorded in tests/corpus/expected.tsv (the
//! file, the line and, where the file has one, the field, then what is wrong); never a panic.

mod common;

use std::path::Path;
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

#[test]
fn every_corpus_file_exits_2_naming_file_line_and_field() {
    common::isolate();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let expected = std::fs::read_to_string(root.join("expected.tsv")).unwrap();
    let mut checked = 0;
    let mut listed = std::collections::BTreeSet::new();
    for line in expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut cols = line.split('\t');
        let name = cols.next().unwrap();
        let (_, whole) = (
            cols.next().unwrap(),
            cols.next()
                .unwrap_or_else(|| panic!("{name}: expected.tsv gives no whole message")),
        );
        listed.insert(name.to_string());
        let file = root.join(name);
        let out_dir = tempfile::tempdir().unwrap();
        let mut c = Command::cargo_bin("recbench").unwrap();
        c.env("RUST_BACKTRACE", "1");
        match name.split('/').next().unwrap() {
            "scenario" => c.arg("validate").arg(&file),
            "catalog" => c
                .arg("report")
                .arg(root.join("no-such-results.json"))
                .arg("--catalog")
                .arg(&file)
                .arg("--out")
                .arg(out_dir.path()),
            "results" => c.arg("report").arg(&file).arg("--out").arg(out_dir.path()),
            other => panic!("unknown corpus folder {other}"),
        };
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        // The whole message, not a prefix: `{file}:1` must not pass for `{file}:12`.
        let want = format!(
            "Error: {}",
            whole.replace("{file}", &file.display().to_string())
        );
        assert_eq!(err.trim_end(), want, "{name}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{name}: {err}"
        );
        assert_eq!(
            std::fs::read_dir(out_dir.path()).unwrap().count(),
            0,
            "{name}: nothing written"
        );
        checked += 1;
    }
    // Every file in the corpus is listed, and there are at least 40.
    for dir in ["scenario", "catalog", "results"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            let n = format!("{dir}/{}", e.file_name().to_string_lossy());
            assert!(listed.contains(&n), "{n} is not in expected.tsv");
        }
    }
    assert!(checked >= 40, "{checked} corpus files");
}
