//! The time and the randomness a flow needs, as one small trait: the Workers give the
//! runtime's (`worker_support::clock::WorkerClock`), the native tests a clock they move and
//! a seeded generator, so every flow runs the same on wasm32 and in `cargo test`.

/// The time, and randomness that is not secret (ids below the millisecond, retry jitter,
/// fault rates).
pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Ten random bytes, for a time-ordered id.
    fn random10(&self) -> [u8; 10];
    /// A random number in [0, 1): the top 53 bits of [`Self::random10`] unless overridden.
    fn unit_random(&self) -> f64 {
        let r = self.random10();
        let mut bits = [0u8; 8];
        bits.copy_from_slice(&r[..8]);
        (u64::from_be_bytes(bits) >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_ms(&self) -> i64 {
        (**self).now_ms()
    }
    fn random10(&self) -> [u8; 10] {
        (**self).random10()
    }
    fn unit_random(&self) -> f64 {
        (**self).unit_random()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed([u8; 10]);
    impl Clock for Fixed {
        fn now_ms(&self) -> i64 {
            0
        }
        fn random10(&self) -> [u8; 10] {
            self.0
        }
    }

    #[test]
    fn unit_random_stays_in_its_range() {
        assert_eq!(Fixed([0; 10]).unit_random(), 0.0);
        let top = Fixed([0xff; 10]).unit_random();
        assert!(top < 1.0 && top > 0.999_999, "{top}");
    }
}
