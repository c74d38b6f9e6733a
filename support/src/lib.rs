//! The little both Workers need from the Workers runtime, kept out of their handlers.
//!
//! - [`logging`]: `tracing` events as one JSON line each on the console (Workers Logs).
//! - [`clock`]: the time and random bytes, which `std` cannot give on wasm32.
//! - [`queue`]: sending many messages within `sendBatch`'s limits.
//! - [`r2`]: the archive's object store over its R2 bucket.
//! - [`env`]: reading a variable or secret.
//! - [`deadline`]: waiting on the network for at most a set time.
//! - [`memory`]: the wasm instance's linear memory, the soak test's leak signal.
//! - [`webcrypto`]: ES256 signatures checked by the runtime's WebCrypto.
//! - [`privy_auth`]: Privy sign-in per request: WebCrypto, and verified tokens remembered.
//! - [`usage`]: the isolate's meter of billed units (`chat_core::usage`).
//! - [`d1`]: D1 calls that count their rows into that meter (and wait, given `FAULTS=slow`).

pub mod clock;
pub mod d1;
pub mod deadline;
pub mod env;
pub mod logging;
pub mod memory;
pub mod privy_auth;
pub mod queue;
pub mod r2;
pub mod usage;
pub mod webcrypto;
