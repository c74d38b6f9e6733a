//! Reply engines: what the character says back, with a raw score and an emotion.
//!
//! The chat Worker talks to one [`ReplyEngine`]. Every engine streams: it hands the pieces of
//! the reply's text to a sink as they are written, and returns the whole reply, with its
//! score and emotion, at the end. The default, [`OfflineEngine`], needs no network and is
//! deterministic: the same character, locale and message always give the same reply, score
//! and emotion; [`Paced`] hands its reply out a word at a time with a pause before each, as a
//! model would. Engines that call a model get the session's last turns in
//! [`ReplyInput::history`], so the character remembers the conversation; the offline engine
//! ignores them.

use crate::character::{Character, Locale};
use crate::scoring::{clamp_raw, Emotion};

/// What an engine is asked.
#[derive(Debug, Clone, Copy)]
pub struct ReplyInput<'a> {
    pub character: Character,
    pub locale: Locale,
    /// The name the player gave when starting the session.
    pub player_name: &'a str,
    /// The session's earlier turns, oldest first (the session actor keeps the last few).
    pub history: &'a [HistoryTurn],
    pub message: &'a str,
}

/// One earlier turn of the conversation, as an engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryTurn {
    /// What the player said.
    pub user: String,
    /// What the character answered.
    pub agent: String,
    pub score_raw: i32,
    pub emotion: Emotion,
}

/// What an engine answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    /// -10..=10; engines clamp into that range.
    pub score_raw: i32,
    pub emotion: Emotion,
    /// Which engine made it (recorded in the point event's metadata).
    pub engine: &'static str,
}

/// Anything that can answer a player. Engines never fail: one that depends on a remote
/// service falls back to the offline engine and logs why.
#[allow(async_fn_in_trait)] // The Workers are single-threaded; no Send bound is wanted.
pub trait ReplyEngine {
    /// Answers `input`, handing each piece of the reply's text to `pieces` as it is
    /// written. The returned reply is whole; its text is what a client shows in the end (a
    /// remote engine that failed after some pieces falls back, and its reply replaces them).
    async fn reply(&self, input: &ReplyInput<'_>, pieces: &mut dyn FnMut(&str)) -> Reply;
}

/// Waiting, as the runtime does it (a timer in a Worker, nothing in the native tests).
#[allow(async_fn_in_trait)]
pub trait Pause {
    async fn pause(&self, ms: u64);
}

/// No waiting at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPause;

impl Pause for NoPause {
    async fn pause(&self, _: u64) {}
}

/// The pieces a reply is streamed in: words with the spaces before them, and runs of text
/// without spaces (Japanese) cut every few characters. Joined, they are the text.
pub fn pieces(text: &str) -> Vec<&str> {
    const RUN: usize = 4;
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars_in_piece = 0;
    let mut seen_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if seen_word {
                out.push(&text[start..i]);
                start = i;
                chars_in_piece = 0;
                seen_word = false;
            }
        } else {
            if chars_in_piece >= RUN && !c.is_ascii() {
                out.push(&text[start..i]);
                start = i;
                chars_in_piece = 0;
            }
            seen_word = true;
            chars_in_piece += 1;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// Deterministic, offline replies from keyword scoring and fixed templates, handed out at
/// once.
#[derive(Debug, Clone, Copy, Default)]
pub struct OfflineEngine;

/// The offline engine handing out its reply a piece at a time, with a pause of `piece_ms`
/// before each (`OFFLINE_STREAM_MS`), so that streaming shows without a model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Paced<P> {
    pub piece_ms: u64,
    pub pause: P,
}

impl<P: Pause> ReplyEngine for Paced<P> {
    async fn reply(&self, input: &ReplyInput<'_>, sink: &mut dyn FnMut(&str)) -> Reply {
        let reply = OfflineEngine::answer(input);
        for piece in pieces(&reply.text) {
            if self.piece_ms > 0 {
                self.pause.pause(self.piece_ms).await;
            }
            sink(piece);
        }
        reply
    }
}

const KIND: &[&str] = &[
    "thank",
    "love",
    "like you",
    "cute",
    "beautiful",
    "amazing",
    "happy",
    "great",
    "kind",
    "sweet",
    "wonderful",
    "ありがとう",
    "好き",
    "かわいい",
    "可愛い",
    "素敵",
    "嬉しい",
    "楽しい",
    "大好き",
    "すごい",
    "優しい",
];
const HOSTILE: &[&str] = &[
    "hate",
    "stupid",
    "idiot",
    "shut up",
    "ugly",
    "boring",
    "annoying",
    "go away",
    "嫌い",
    "うざい",
    "バカ",
    "ばか",
    "黙れ",
    "つまらない",
    "きもい",
    "消えろ",
];

impl OfflineEngine {
    /// The raw score of a message: kind words raise it, hostile words lower it more, a
    /// question shows interest, and a small hash-derived nudge keeps replies varied.
    pub fn score(message: &str) -> i32 {
        let lower = message.to_lowercase();
        let count = |words: &[&str]| words.iter().filter(|w| lower.contains(*w)).count() as i32;
        let question = i32::from(lower.contains('?') || lower.contains('？'));
        let nudge = (fnv1a(message.as_bytes()) % 3) as i32 - 1;
        clamp_raw(3 * count(KIND) - 5 * count(HOSTILE) + question + nudge)
    }
}

impl ReplyEngine for OfflineEngine {
    async fn reply(&self, input: &ReplyInput<'_>, sink: &mut dyn FnMut(&str)) -> Reply {
        let reply = Self::answer(input);
        for piece in pieces(&reply.text) {
            sink(piece);
        }
        reply
    }
}

impl OfflineEngine {
    /// The whole reply to `input`, at once.
    pub fn answer(input: &ReplyInput<'_>) -> Reply {
        let score_raw = Self::score(input.message);
        let emotion = Emotion::from_raw(score_raw);
        let variant = (fnv1a(input.message.as_bytes()) >> 8) as usize % 2;
        let text = format!(
            "{}: {}",
            input.character.display_name(input.locale),
            template(input.locale, emotion, variant)
        );
        Reply {
            text,
            score_raw,
            emotion,
            engine: "offline",
        }
    }
}

fn template(locale: Locale, emotion: Emotion, variant: usize) -> &'static str {
    use Emotion::*;
    let pair: [&str; 2] = match (locale, emotion) {
        (Locale::En, Joy) => [
            "That makes me so happy! Tell me more?",
            "You always know what to say.",
        ],
        (Locale::En, Happy) => [
            "Hehe, I like talking with you.",
            "That's nice of you to say.",
        ],
        (Locale::En, Neutral) => ["Hmm, I see. What else is on your mind?", "Okay. Go on?"],
        (Locale::En, Sad) => ["That hurts a little...", "Why would you say that?"],
        (Locale::En, Angry) => [
            "I don't want to talk to you anymore.",
            "That's it. Goodbye.",
        ],
        (Locale::Ja, Joy) => [
            "すごく嬉しい！もっと聞かせて？",
            "いつも素敵なことを言ってくれるね。",
        ],
        (Locale::Ja, Happy) => [
            "ふふ、あなたと話すの好きだな。",
            "そう言ってくれて嬉しいよ。",
        ],
        (Locale::Ja, Neutral) => ["うーん、なるほど。他には？", "そっか。それで？"],
        (Locale::Ja, Sad) => ["ちょっと傷ついたな…", "どうしてそんなこと言うの？"],
        (Locale::Ja, Angry) => ["もうあなたとは話したくない。", "もういい。さようなら。"],
    };
    pair[variant % 2]
}

/// FNV-1a: a tiny hash that is stable across platforms and compiler versions (std's hasher
/// is not), so the offline engine answers the same everywhere.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(message: &str, locale: Locale) -> Reply {
        let input = ReplyInput {
            character: Character::Sakura,
            locale,
            player_name: "Alice",
            history: &[],
            message,
        };
        futures_lite_block_on(OfflineEngine.reply(&input, &mut |_| {}))
    }

    /// The offline engine never awaits anything, so one poll completes it.
    fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => unreachable!("the offline engine does not wait"),
        }
    }

    #[test]
    fn same_input_same_reply() {
        assert_eq!(
            ask("hello there", Locale::En),
            ask("hello there", Locale::En)
        );
    }

    #[test]
    fn kind_words_score_up_and_hostile_words_down() {
        assert!(OfflineEngine::score("thank you, you are so kind and sweet") >= 6);
        assert!(OfflineEngine::score("I hate you, you are stupid") <= -8);
        assert!((-1..=2).contains(&OfflineEngine::score("what time is it?")));
        assert!(OfflineEngine::score("大好き！ありがとう") >= 5);
    }

    #[test]
    fn replies_follow_locale_and_emotion() {
        let r = ask("I hate you, you are stupid", Locale::En);
        assert_eq!(r.emotion, Emotion::Angry);
        assert!(r.text.starts_with("Sakura: "));
        let r = ask("ありがとう", Locale::Ja);
        assert!(r.text.starts_with("さくら: "));
        assert_eq!(r.emotion, Emotion::from_raw(r.score_raw));
    }

    #[test]
    fn replies_stream_in_pieces_that_join_to_the_text() {
        for text in [
            "Sakura: That makes me so happy! Tell me more?",
            "さくら: すごく嬉しい！もっと聞かせて？",
            "  leading and  double spaces ",
            "",
            "one",
        ] {
            let p = pieces(text);
            assert_eq!(p.concat(), text, "{text:?}");
            assert!(p.iter().all(|x| !x.is_empty()));
        }
        assert_eq!(pieces("a bc d"), ["a", " bc", " d"]);
        assert!(
            pieces("すごく嬉しい！もっと聞かせて？").len() >= 4,
            "Japanese is cut too"
        );
        let input = ReplyInput {
            character: Character::Kai,
            locale: Locale::En,
            player_name: "A",
            history: &[],
            message: "thank you",
        };
        let mut got = Vec::new();
        let reply = futures_lite_block_on(
            Paced {
                piece_ms: 20,
                pause: NoPause,
            }
            .reply(&input, &mut |p| got.push(p.to_owned())),
        );
        assert!(got.len() > 2);
        assert_eq!(got.concat(), reply.text);
        assert_eq!(reply, OfflineEngine::answer(&input));
    }

    #[test]
    fn scores_stay_in_range_for_any_text() {
        assert_eq!(
            OfflineEngine::score("thank you, love, cute, beautiful, amazing"),
            10
        );
        assert!(OfflineEngine::score(&"hate stupid idiot ".repeat(100)) >= -10);
        assert!((-10..=10).contains(&OfflineEngine::score("\u{0}\u{202e}🙂")));
    }
}
