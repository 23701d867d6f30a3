//! Any bytes given as a results file: loading must return Ok or an input error (exit code 2)
//! naming the file, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = recbench::results::ResultsFile::from_text(Path::new("fuzz.json"), text) {
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(e.to_string().starts_with("fuzz.json"), "{e}");
    }
});
