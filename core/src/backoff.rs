//! Exponential backoff with jitter for retried queue messages.
//!
//! The delay before retry n (n = 1 after the first failed delivery) grows as
//! `base · 2^(n-1)`, capped at `max`, and is then jittered into `[d/2, d]` ("equal jitter"):
//! retries of one failed batch spread out instead of hitting D1 together again, yet never
//! wait less than half the nominal delay.

/// Retry delays, in whole seconds (what `retry({ delaySeconds })` takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base_seconds: u32,
    pub max_seconds: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base_seconds: 2,
            max_seconds: 300,
        }
    }
}

impl Backoff {
    /// The nominal delay before retry `attempts` (1-based), before jitter.
    pub fn nominal_seconds(&self, attempts: u32) -> u32 {
        let exp = attempts.saturating_sub(1).min(31);
        self.base_seconds
            .saturating_mul(1u32 << exp)
            .min(self.max_seconds)
    }

    /// The delay with jitter; `unit` is a random number in [0, 1).
    pub fn delay_seconds(&self, attempts: u32, unit: f64) -> u32 {
        let d = self.nominal_seconds(attempts);
        let half = d / 2;
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        half + ((d - half) as f64 * unit).round() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        base_seconds: 2,
        max_seconds: 300,
    };

    #[test]
    fn delays_double_then_cap() {
        let nominal: Vec<u32> = (1..=10).map(|n| B.nominal_seconds(n)).collect();
        assert_eq!(nominal, vec![2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(
            B.nominal_seconds(1000),
            300,
            "no overflow on huge attempt counts"
        );
        assert_eq!(B.nominal_seconds(0), 2);
    }

    #[test]
    fn jitter_stays_within_half_and_full_delay() {
        for attempts in 1..=12 {
            let d = B.nominal_seconds(attempts);
            for i in 0..=100 {
                let got = B.delay_seconds(attempts, f64::from(i) / 100.0);
                assert!(
                    got >= d / 2 && got <= d,
                    "attempt {attempts}: {got} not in [{}, {d}]",
                    d / 2
                );
            }
            assert_eq!(B.delay_seconds(attempts, 0.0), d / 2);
            assert_eq!(B.delay_seconds(attempts, 1.0), d);
        }
        assert_eq!(B.delay_seconds(3, f64::NAN), 4);
    }

    #[test]
    fn a_zero_base_never_waits() {
        let b = Backoff {
            base_seconds: 0,
            max_seconds: 300,
        };
        assert_eq!(b.delay_seconds(5, 0.9), 0);
    }
}
