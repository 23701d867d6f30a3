//! recbench: which hardware, backend, model size and precision serves a BERT recommender at the
//! lowest cost per 1,000 recommendations within a latency budget, without losing quality.
//!
//! The library holds everything; `main.rs` only parses arguments and maps errors to exit codes.

pub mod backend;
pub mod compare;
pub mod cost;
pub mod error;
pub mod fuzzing;
pub mod harness;
pub mod model;
pub mod present;
pub mod recommender;
pub mod report;
pub mod results;
pub mod retrieval;
pub mod scenario;
pub mod spec;
pub mod stats;
pub mod telemetry;
pub mod topk;
pub mod tuning;
pub mod util;

pub use error::{Error, Result};
