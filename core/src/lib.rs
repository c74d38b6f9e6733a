//! The plain-Rust heart of the chat backend, shared by both Workers and tested natively.
//!
//! Nothing here depends on `worker`: clocks and randomness come in as arguments, so every
//! function runs the same on wasm32 and in `cargo test`.
//!
//! - [`domain`]: values parsed once at the edge and trusted after: the idempotency key, the
//!   provider user id, the session id (and the tag on the ids this Worker issued).
//! - [`clock`]: the time and randomness every flow takes, as one trait.
//! - [`admin`]: the admin API's requests (dead-letter filters, replay bodies) and its token check.
//! - [`jwt`]: strict ES256 JWT verification (Privy's tokens).
//! - [`privy`]: the player and profile from Privy access and identity tokens.
//! - [`x_auth`]: the player from X's `users/me` answer.
//! - [`ids`]: user ids derived from the external identity, turn / message / event ids.
//! - [`character`]: the characters a session can be played with, and the locales.
//! - [`info`]: what a client may know before signing in, the game's rules among it.
//! - [`scoring`]: raw score → adjusted score → point delta → intimacy level, game over.
//! - [`engine`]: the reply engine trait and the offline, deterministic engine.
//! - [`identity`]: who a player is: the external account and its profile fields.
//! - [`llm`]: the optional LLM engine's conversation, request and strict answer parsing.
//! - [`reply_stream`]: the reply's text pulled out of a model's streamed answer.
//! - [`live`]: the live socket's frames, their numbers, and what a reconnect missed.
//! - [`ticket`]: the single-use tickets that open a live socket.
//! - [`workers_ai`]: the Workers AI engine's input (same conversation, JSON mode) and output.
//! - [`shards`]: players' buckets, the bucket map over D1 databases, and moving buckets.
//! - [`live_map`]: the live bucket map an isolate keeps, and what routes when the control
//!   database cannot be read.
//! - [`move_steps`]: the steps of a bucket move as flows over one small trait.
//! - [`moves`]: the steps of a bucket move: what each may do, and why it refuses.
//! - [`session`]: a session's live state and the rules its Durable Object applies to a turn.
//! - [`turn`]: the turn runner every transport shares: one turn from the ask to the
//!   recorded answer, over the actor's store, the turn queue, the engine, the clock, its
//!   alarm, gate and frame log.
//! - [`refusal`]: the one refusal type: a code, a message, and a kind that decides the
//!   status and the `Retry-After`.
//! - [`privacy`]: a player's data exported or erased everywhere it lives, and the keyed
//!   tombstone an erasure leaves.
//! - [`replay`]: a replay of dead letters (judge, re-queue, mark) over small traits.
//! - [`request`]: parsing and validating the chat API's request bodies and headers.
//! - [`record`]: the versioned turn record that travels on the queue, and its decoder.
//! - [`probe`]: the probe a bucket move sends the consumer over the turn queue.
//! - [`failure`]: failure classes and what the consumer does with each.
//! - [`consumer`]: the queue consumer's flows (a turn batch, a letter batch) over small
//!   traits, with the fault switch as a wrapper around them.
//! - [`backoff`]: retry delays: exponential, capped, jittered.
//! - [`dead_letter`]: the envelope a failed message travels in, and the replay verdicts.
//! - [`faults`]: the local-only fault switch the tests use to make D1 fail on purpose.
//! - [`batch`]: turning a queue batch of records into the one JSON parameter the SQL reads,
//!   cut into chunks under D1's value limit.
//! - [`d1_limits`]: D1's size limits, and JSON arrays cut by encoded size to stay under them.
//! - [`sql`]: every SQL statement either Worker runs, in one place (D1's, and the session
//!   actor's own SQLite in `sql::actor`).
//! - `native` (feature `sqlite`): the migrations, the consumer's batch and the actor's flow
//!   on native SQLite.
//! - [`time`]: milliseconds since the epoch ↔ RFC 3339 text.
//! - [`text`]: outside text made safe to store: control characters out, byte caps.
//! - [`ttl_cache`]: a bounded map whose entries expire, for what an isolate keeps.
//! - [`usage`]: what the Workers did in the units Cloudflare bills (requests, rows, queue
//!   operations), counted from the platform's own figures.

pub mod admin;
pub mod archive;
pub mod backoff;
pub mod batch;
pub mod character;
pub mod clock;
pub mod consumer;
pub mod d1_limits;
pub mod dead_letter;
pub mod domain;
pub mod engine;
pub mod failure;
pub mod faults;
pub mod identity;
pub mod ids;
pub mod info;
pub mod jwt;
pub mod live;
pub mod live_map;
pub mod llm;
pub mod move_steps;
pub mod moves;
#[cfg(feature = "sqlite")]
pub mod native;
pub mod privacy;
pub mod privy;
pub mod probe;
pub mod record;
pub mod refusal;
pub mod replay;
pub mod reply_stream;
pub mod request;
pub mod scoring;
pub mod session;
pub mod shards;
pub mod sql;
pub mod text;
pub mod ticket;
pub mod time;
pub mod ttl_cache;
pub mod turn;
pub mod usage;
pub mod workers_ai;
pub mod x_auth;
