//! The properties the fuzz targets check (`fuzz/`), shared with the test that replays their
//! corpus (`tests/fuzz_corpus.rs`), so CI checks every stored input on every run.
//!
//! Each takes bytes as if read from a file: bytes that are not UTF-8 must be refused like any
//! bad input (exit code 2, naming the file), and what is accepted must hold together.

use std::collections::HashSet;
use std::path::Path;

use crate::error::Error;
use crate::results::ResultsFile;
use crate::scenario::{Host, Scenario};
use crate::spec::RunSpec;
use crate::util::files::text_of;

/// A refusal must be bad input (exit code 2) that names `file`.
fn assert_bad_input(e: &Error, file: &str) {
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().starts_with(file), "{e}");
}

/// The bytes as text, or `None` after checking that they were refused as bad input.
fn text(file: &str, data: &[u8]) -> Option<String> {
    match text_of(Path::new(file), data.to_vec()) {
        Ok(t) => Some(t),
        Err(e) => {
            assert_bad_input(&e, file);
            None
        }
    }
}

/// Any bytes given as a scenario file: parsing and validation return Ok or an input error
/// (exit code 2) naming the file; never a panic. An accepted scenario expands to one run per
/// point of its matrix, each with a unique id (results and `--resume` find runs by it), sane
/// sizes and limits, a reason wherever it is skipped, and a spec that survives the JSON a worker
/// receives it in.
pub fn scenario(data: &[u8]) {
    let Some(text) = text("fuzz.toml", data) else {
        return;
    };
    let s = match Scenario::parse(Path::new("fuzz.toml"), &text) {
        Ok(s) => s,
        Err(e) => return assert_bad_input(&e, "fuzz.toml"),
    };
    let host = Host {
        auto_threads: 2,
        memory_bytes: Some(1 << 30),
    };
    let runs = s.expand(&host);
    let points = s.presets.len()
        * s.prunes.len()
        * s.modes.len()
        * s.loads.len()
        * s.backends.len()
        * s.devices.len()
        * s.precisions.len()
        * s.batch.len()
        * s.seq_len.len()
        * s.threads.len();
    assert_eq!(runs.len(), points, "one run per point of the matrix");
    let mut ids = HashSet::new();
    for r in &runs {
        let spec = &r.spec;
        assert!(
            ids.insert(spec.id.clone()),
            "two runs share the id {}",
            spec.id
        );
        assert!(
            spec.batch >= 1 && spec.seq_len >= 1 && spec.threads >= 1,
            "{spec:?}"
        );
        assert!(spec.min_s <= spec.max_s, "{spec:?}");
        assert!(
            spec.timeout_s.is_finite() && spec.timeout_s > 0.0,
            "{spec:?}"
        );
        if let Some(why) = &r.skip {
            assert!(
                !why.trim().is_empty(),
                "{}: skipped without a reason",
                spec.id
            );
        }
        let json = serde_json::to_string(spec).expect("a spec serialises");
        let back: RunSpec = serde_json::from_str(&json).expect("a spec reads back");
        assert_eq!(&back, spec, "the spec a worker receives");
    }
}

/// Any bytes given as a results file: loading returns Ok or an input error (exit code 2) naming
/// the file; never a panic. An accepted file, written back as recbench writes results, loads
/// again to the same content.
pub fn results(data: &[u8]) {
    let Some(text) = text("fuzz.json", data) else {
        return;
    };
    match ResultsFile::from_text(Path::new("fuzz.json"), &text) {
        Ok(f) => {
            let written = serde_json::to_string_pretty(&f).expect("results serialise");
            let again = ResultsFile::from_text(Path::new("again.json"), &written)
                .unwrap_or_else(|e| panic!("an accepted file does not read back: {e}"));
            assert_eq!(
                serde_json::to_value(&again).unwrap(),
                serde_json::to_value(&f).unwrap(),
                "the round trip changed the file"
            );
        }
        Err(e) => assert_bad_input(&e, "fuzz.json"),
    }
}

/// Any bytes given as a user catalog (`--catalog FILE`): parsing returns the entries or an input
/// error (exit code 2) naming the file; never a panic. Accepted entries have unique ids, a
/// known kind, GPUs where they are GPU entries and positive prices, and read back unchanged
/// when written out.
pub fn catalog(data: &[u8]) {
    let Some(text) = text("fuzz-catalog.toml", data) else {
        return;
    };
    let entries = match crate::cost::parse_catalog_entries(Path::new("fuzz-catalog.toml"), &text) {
        Ok(e) => e,
        Err(e) => return assert_bad_input(&e, "fuzz-catalog.toml"),
    };
    let mut ids = HashSet::new();
    for e in &entries {
        assert!(
            ids.insert(e.id.clone()),
            "two entries share the id {}",
            e.id
        );
        assert!(matches!(e.kind.as_str(), "cpu" | "gpu"), "{e:?}");
        assert!(
            e.kind == "cpu" || e.gpu_count > 0,
            "a GPU entry without GPUs: {e:?}"
        );
        assert!(e.memory_gib >= 0.0 && e.memory_gib.is_finite(), "{e:?}");
        for price in [
            e.on_demand_usd_per_hour,
            e.reserved_1y_usd_per_hour,
            e.spot_usd_per_hour,
            e.purchase_usd,
        ]
        .into_iter()
        .flatten()
        {
            assert!(price.is_finite() && price > 0.0, "{}: price {price}", e.id);
        }
    }
    let written = crate::cost::catalog_toml(&entries);
    let again = crate::cost::parse_catalog_entries(Path::new("again.toml"), &written)
        .unwrap_or_else(|e| panic!("accepted entries do not read back: {e}\n{written}"));
    assert_eq!(again, entries, "the round trip changed the entries");
}
