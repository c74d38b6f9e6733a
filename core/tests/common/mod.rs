//! What the randomized native tests share.

/// The seed of a randomized run: `SEED` when set (to replay a failure), else a new one,
/// printed so that a failing run can be replayed.
pub fn seed() -> u64 {
    let seed = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("SEED={seed}");
    seed
}
