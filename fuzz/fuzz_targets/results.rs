//! Any bytes given as a results file: loading must return Ok or an input error (exit code 2)
//! naming the file, never panic (`recbench::fuzzing::results`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| recbench::fuzzing::results(data));
