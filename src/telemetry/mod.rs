//! What the machine is and what a run used: hardware inventory, memory and power.

pub mod inventory;
pub mod memory;

pub use inventory::Inventory;
