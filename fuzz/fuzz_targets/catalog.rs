//! Any bytes given as a user catalog (`--catalog FILE`): parsing must return the entries or an
//! input error (exit code 2) naming the file, never panic, and accepted entries must read back
//! unchanged (`recbench::fuzzing::catalog`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| recbench::fuzzing::catalog(data));
