//! Any bytes given as a scenario file: parsing and validation must return Ok or an input error
//! (exit code 2) naming the file, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match recbench::scenario::Scenario::parse(Path::new("fuzz.toml"), text) {
        Ok(s) => {
            let _ = s.expand(2);
        }
        Err(e) => {
            assert_eq!(e.exit_code(), 2, "{e}");
            assert!(e.to_string().starts_with("fuzz.toml"), "{e}");
        }
    }
});
