//! The plain-Rust heart of the chat backend, shared by both Workers and tested natively.
//!
//! Nothing here depends on `worker`: clocks and randomness come in as arguments, so every
//! function runs the same on wasm32 and in `cargo test`.
//!
//! - [`ids`]: user ids derived from the external identity, turn / message / event ids.
//! - [`character`]: the characters a session can be played with, and the locales.
//! - [`scoring`]: raw score → adjusted score → point delta → intimacy level, game over.
//! - [`engine`]: the reply engine trait and the offline, deterministic engine.
//! - [`identity`]: who a player is: the external account and its profile fields.
//! - [`request`]: parsing and validating the chat API's request bodies and headers.
//! - [`record`]: the versioned turn record that travels on the queue, and its decoder.
//! - [`batch`]: turning a queue batch of records into the one JSON parameter the SQL reads.
//! - [`sql`]: every SQL statement either Worker runs, in one place.
//! - `native` (feature `sqlite`): the migrations and the consumer's batch on native SQLite.
//! - [`time`]: milliseconds since the epoch ↔ RFC 3339 text.

pub mod batch;
pub mod character;
pub mod engine;
pub mod identity;
pub mod ids;
#[cfg(feature = "sqlite")]
pub mod native;
pub mod record;
pub mod request;
pub mod scoring;
pub mod sql;
pub mod time;
