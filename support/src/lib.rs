//! The little both Workers need from the Workers runtime, kept out of their handlers.
//!
//! - [`logging`]: `tracing` events as one JSON line each on the console (Workers Logs).
//! - [`clock`]: the time and random bytes, which `std` cannot give on wasm32.
//! - [`queue`]: sending many messages within `sendBatch`'s limits.
//! - [`ttl_cache`]: a bounded map whose entries expire, for what an isolate keeps.
//! - [`env`]: reading a variable or secret.
//! - [`deadline`]: waiting on the network for at most a set time.
//! - [`memory`]: the wasm instance's linear memory, the soak test's leak signal.

pub mod clock;
pub mod deadline;
pub mod env;
pub mod logging;
pub mod memory;
pub mod queue;
pub mod ttl_cache;
