//! Any bytes given as a scenario file: parsing and validation must return Ok or an input error
//! (exit code 2) naming the file, never panic (`recbench::fuzzing::scenario`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| recbench::fuzzing::scenario(data));
