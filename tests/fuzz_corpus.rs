//! Replays every stored fuzz input (`fuzz/corpus/`) through the properties the fuzz targets
//! check, so the corpus guards the parsers on every CI run, not only under `cargo fuzz`.

use std::path::Path;

/// Runs `check` on every input stored for `target`: a panic there is a broken property.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let data = std::fs::read(&p).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} panicked", p.display());
        n += 1;
    }
    assert!(n >= 50, "only {n} inputs in {}", dir.display());
    eprintln!("{target}: {n} stored inputs replayed");
}

#[test]
fn every_stored_scenario_input_is_accepted_or_refused_with_exit_code_2() {
    replay("scenario", recbench::fuzzing::scenario);
}

#[test]
fn every_stored_results_input_is_accepted_or_refused_with_exit_code_2() {
    replay("results", recbench::fuzzing::results);
}

#[test]
fn every_stored_catalog_input_is_accepted_or_refused_with_exit_code_2() {
    replay("catalog", recbench::fuzzing::catalog);
}
