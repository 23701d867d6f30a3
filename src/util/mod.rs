//! Small pieces every layer uses and none owns: hashing, a fixed random-number generator, and
//! file reading and writing with the input rules of the error module.

pub mod files;
pub mod hash;
pub mod rand;
