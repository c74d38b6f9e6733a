//! The characters a player can talk to, and the locales they speak.

use serde::{Deserialize, Serialize};

/// The language of a session's replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    Ja,
    En,
}

impl Locale {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ja" => Some(Self::Ja),
            "en" => Some(Self::En),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ja => "ja",
            Self::En => "en",
        }
    }
}

/// A playable character. Each one weighs praise and hostility differently (see `scoring`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Character {
    /// Cheerful: kind words count double.
    Sakura,
    /// Tsundere: hostility counts double.
    Rin,
    /// Calm: takes everything at face value.
    Kai,
}

impl Character {
    pub const ALL: [Character; 3] = [Self::Sakura, Self::Rin, Self::Kai];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sakura => "sakura",
            Self::Rin => "rin",
            Self::Kai => "kai",
        }
    }

    /// The name the character signs with, in a locale.
    pub fn display_name(self, locale: Locale) -> &'static str {
        match (self, locale) {
            (Self::Sakura, Locale::En) => "Sakura",
            (Self::Sakura, Locale::Ja) => "さくら",
            (Self::Rin, Locale::En) => "Rin",
            (Self::Rin, Locale::Ja) => "凛",
            (Self::Kai, Locale::En) => "Kai",
            (Self::Kai, Locale::Ja) => "カイ",
        }
    }
}

/// The characters as the play page lists them: id, and display name per locale.
pub fn catalog() -> serde_json::Value {
    Character::ALL
        .iter()
        .map(|c| {
            serde_json::json!({
                "id": c.as_str(),
                "names": { "ja": c.display_name(Locale::Ja), "en": c.display_name(Locale::En) },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_lists_every_character_with_both_names() {
        let catalog = catalog();
        let list = catalog.as_array().unwrap();
        assert_eq!(list.len(), Character::ALL.len());
        for (entry, c) in list.iter().zip(Character::ALL) {
            assert_eq!(Character::parse(entry["id"].as_str().unwrap()), Some(c));
            assert_eq!(entry["names"]["ja"], c.display_name(Locale::Ja));
            assert_eq!(entry["names"]["en"], c.display_name(Locale::En));
        }
    }

    #[test]
    fn names_round_trip() {
        for c in Character::ALL {
            assert_eq!(Character::parse(c.as_str()), Some(c));
        }
        assert_eq!(Character::parse("Sakura"), None);
        assert_eq!(Locale::parse("ja"), Some(Locale::Ja));
        assert_eq!(Locale::parse("fr"), None);
    }
}
