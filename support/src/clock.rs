//! The clock and randomness of the Workers runtime. `std::time::SystemTime::now` panics on
//! wasm32-unknown-unknown, so time comes from JavaScript's `Date.now()`.

/// Milliseconds since the Unix epoch. In a Worker the clock only advances across I/O, which is
/// fine for ordering turns: ids carry random bits below the millisecond.
pub fn now_ms() -> i64 {
    worker::Date::now().as_millis() as i64
}

/// Ten random bytes for a time-ordered id, from `crypto.getRandomValues`.
pub fn random10() -> [u8; 10] {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    let mut out = [0u8; 10];
    out.copy_from_slice(&bytes[..10]);
    out
}

/// A random number in [0, 1) from `Math.random()`: for jitter and fault sampling, not secrets.
pub fn unit_random() -> f64 {
    worker::js_sys::Math::random()
}

/// The runtime's clock and randomness, as the core's flows take them.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerClock;

impl chat_core::clock::Clock for WorkerClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }

    fn random10(&self) -> [u8; 10] {
        random10()
    }

    fn unit_random(&self) -> f64 {
        unit_random()
    }
}
