//! The game's scoring rules, in one place so the chat Worker, the consumer's SQL and the
//! tests cannot disagree.
//!
//! raw score (from the reply engine, -10..=10)
//!   → adjusted score (the character's temperament weighs it)
//!   → point delta (the adjusted score, plus a penalty when the turn ends the game)
//!   → intimacy level (from the running total of points, through fixed thresholds).

use crate::character::Character;
use serde::{Deserialize, Serialize};

pub const MIN_RAW: i32 = -10;
pub const MAX_RAW: i32 = 10;
/// A turn this hostile ends the game: the character leaves.
pub const GAME_OVER_RAW: i32 = -8;
/// Points lost on top of the adjusted score when the character leaves.
pub const GAME_OVER_PENALTY: i32 = -10;
/// Bounds of an adjusted score (a doubled raw score).
pub const MIN_ADJUSTED: i32 = 2 * MIN_RAW;
pub const MAX_ADJUSTED: i32 = 2 * MAX_RAW;
/// Bounds of one turn's point delta.
pub const MIN_DELTA: i32 = MIN_ADJUSTED + GAME_OVER_PENALTY;
pub const MAX_DELTA: i32 = MAX_ADJUSTED;

/// Total points needed for each intimacy level: level N needs `LEVEL_THRESHOLDS[N-1]`.
/// Below the first threshold (including any negative total) the level is 0.
pub const LEVEL_THRESHOLDS: [i64; 10] = [10, 30, 60, 100, 150, 220, 300, 400, 520, 660];
pub const MAX_LEVEL: i64 = LEVEL_THRESHOLDS.len() as i64;

/// How the character felt about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Emotion {
    Joy,
    Happy,
    Neutral,
    Sad,
    Angry,
}

impl Emotion {
    pub const ALL: [Emotion; 5] = [
        Self::Joy,
        Self::Happy,
        Self::Neutral,
        Self::Sad,
        Self::Angry,
    ];

    /// The emotion a raw score shows.
    pub fn from_raw(raw: i32) -> Self {
        match raw {
            6.. => Self::Joy,
            2..=5 => Self::Happy,
            -1..=1 => Self::Neutral,
            -5..=-2 => Self::Sad,
            _ => Self::Angry,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Joy => "joy",
            Self::Happy => "happy",
            Self::Neutral => "neutral",
            Self::Sad => "sad",
            Self::Angry => "angry",
        }
    }
}

/// Clamps an engine's raw score into the valid range.
pub fn clamp_raw(raw: i32) -> i32 {
    raw.clamp(MIN_RAW, MAX_RAW)
}

/// The character's weighing of a raw score.
pub fn adjusted_score(character: Character, raw: i32) -> i32 {
    let raw = clamp_raw(raw);
    match character {
        Character::Sakura if raw > 0 => raw * 2,
        Character::Rin if raw < 0 => raw * 2,
        _ => raw,
    }
}

/// Whether a turn with this raw score ends the game.
pub fn is_game_over(raw: i32) -> bool {
    clamp_raw(raw) <= GAME_OVER_RAW
}

/// The points a turn adds to (or takes from) the player's total.
pub fn point_delta(adjusted: i32, game_over: bool) -> i32 {
    adjusted + if game_over { GAME_OVER_PENALTY } else { 0 }
}

/// The intimacy level of a point total.
pub fn intimacy_level(total_points: i64) -> i64 {
    LEVEL_THRESHOLDS
        .iter()
        .filter(|&&t| total_points >= t)
        .count() as i64
}

/// The scores of one turn, derived from the raw score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnScore {
    pub raw: i32,
    pub adjusted: i32,
    pub delta: i32,
    pub game_over: bool,
}

impl TurnScore {
    pub fn new(character: Character, raw: i32) -> Self {
        let raw = clamp_raw(raw);
        let adjusted = adjusted_score(character, raw);
        let game_over = is_game_over(raw);
        Self {
            raw,
            adjusted,
            delta: point_delta(adjusted, game_over),
            game_over,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_weigh_scores_by_temperament() {
        assert_eq!(adjusted_score(Character::Sakura, 4), 8);
        assert_eq!(adjusted_score(Character::Sakura, -4), -4);
        assert_eq!(adjusted_score(Character::Rin, 4), 4);
        assert_eq!(adjusted_score(Character::Rin, -4), -8);
        assert_eq!(adjusted_score(Character::Kai, -4), -4);
        assert_eq!(adjusted_score(Character::Sakura, 99), MAX_ADJUSTED);
    }

    #[test]
    fn game_over_costs_a_penalty() {
        let s = TurnScore::new(Character::Kai, -9);
        assert!(s.game_over);
        assert_eq!(s.delta, -9 + GAME_OVER_PENALTY);
        let s = TurnScore::new(Character::Kai, -7);
        assert!(!s.game_over);
        assert_eq!(s.delta, -7);
    }

    #[test]
    fn deltas_stay_in_bounds() {
        for c in Character::ALL {
            for raw in -50..=50 {
                let s = TurnScore::new(c, raw);
                assert!((MIN_DELTA..=MAX_DELTA).contains(&s.delta), "{c:?} {raw}");
                assert!((MIN_ADJUSTED..=MAX_ADJUSTED).contains(&s.adjusted));
            }
        }
    }

    #[test]
    fn levels_follow_thresholds() {
        assert_eq!(intimacy_level(-100), 0);
        assert_eq!(intimacy_level(0), 0);
        assert_eq!(intimacy_level(9), 0);
        assert_eq!(intimacy_level(10), 1);
        assert_eq!(intimacy_level(29), 1);
        assert_eq!(intimacy_level(30), 2);
        assert_eq!(intimacy_level(659), 9);
        assert_eq!(intimacy_level(660), MAX_LEVEL);
        assert_eq!(intimacy_level(i64::MAX), MAX_LEVEL);
        // Monotone: more points never lower the level.
        let mut last = 0;
        for t in -10..1000 {
            let l = intimacy_level(t);
            assert!(l >= last);
            last = l;
        }
    }

    #[test]
    fn emotions_cover_the_raw_range() {
        assert_eq!(Emotion::from_raw(10), Emotion::Joy);
        assert_eq!(Emotion::from_raw(2), Emotion::Happy);
        assert_eq!(Emotion::from_raw(0), Emotion::Neutral);
        assert_eq!(Emotion::from_raw(-2), Emotion::Sad);
        assert_eq!(Emotion::from_raw(-6), Emotion::Angry);
    }
}
