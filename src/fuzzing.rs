//! The properties the fuzz targets check (`fuzz/`), shared with the test that replays their
//! corpus (`tests/fuzz_corpus.rs`), so CI checks every stored input on every run.

use std::path::Path;

use crate::results::ResultsFile;
use crate::scenario::{Host, Scenario};

/// Any bytes given as a scenario file: parsing and validation return Ok (and the scenario
/// expands) or an input error (exit code 2) naming the file; never a panic.
pub fn scenario(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Scenario::parse(Path::new("fuzz.toml"), text) {
        Ok(s) => {
            let host = Host {
                auto_threads: 2,
                memory_bytes: Some(1 << 30),
            };
            let _ = s.expand(&host);
        }
        Err(e) => {
            assert_eq!(e.exit_code(), 2, "{e}");
            assert!(e.to_string().starts_with("fuzz.toml"), "{e}");
        }
    }
}

/// Any bytes given as a results file: loading returns Ok or an input error (exit code 2) naming
/// the file; never a panic.
pub fn results(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = ResultsFile::from_text(Path::new("fuzz.json"), text) {
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(e.to_string().starts_with("fuzz.json"), "{e}");
    }
}
