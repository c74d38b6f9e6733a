//! Text that comes from outside the player's own request (an LLM's reply, X's profile) and
//! is stored and shown: control characters are removed, as they are refused in player
//! input, and a length cap is applied at a character boundary.

/// `s` without control characters; newlines and tabs stay when `keep_line_breaks`.
pub fn without_controls(s: &str, keep_line_breaks: bool) -> String {
    s.chars()
        .filter(|&c| !c.is_control() || (keep_line_breaks && (c == '\n' || c == '\t')))
        .collect()
}

/// The longest prefix of `s` that fits in `max_bytes` of UTF-8, cut at a character boundary.
pub fn truncate_bytes(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_go_and_line_breaks_stay_if_asked() {
        let s = "a\u{0}b\u{7}c\r\nd\te\u{1b}[31m\u{9f}";
        assert_eq!(without_controls(s, true), "abc\nd\te[31m");
        assert_eq!(without_controls(s, false), "abcde[31m");
        assert_eq!(without_controls("すごい 🙂", false), "すごい 🙂");
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate_bytes("abc", 10), "abc");
        assert_eq!(truncate_bytes("abc", 2), "ab");
        assert_eq!(truncate_bytes("あい", 4), "あ");
        assert_eq!(truncate_bytes("🙂", 3), "");
        assert_eq!(truncate_bytes("", 0), "");
    }
}
