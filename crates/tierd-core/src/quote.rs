//! Quoting user input in messages and logs, bounded.
//!
//! An error about bad input says what the input was, but a 300 KB line echoed into an error
//! line or a log record helps nobody and lets one careless write flood the journal. Every
//! message that quotes input goes through [`quote`]: at most [`QUOTE_MAX`] characters,
//! escaped as a Rust string literal, then `...` and the total length when cut.

/// Characters of input a message quotes at most.
pub const QUOTE_MAX: usize = 80;

/// `text` as a quoted, escaped literal of at most [`QUOTE_MAX`] characters, with `...` and
/// the full length appended when it was cut.
pub fn quote(text: &str) -> String {
    let total = text.chars().count();
    if total <= QUOTE_MAX {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(QUOTE_MAX).collect();
    format!("{head:?}... ({} bytes in all)", text.len())
}

/// [`quote`] for raw bytes (lossily decoded).
pub fn quote_bytes(bytes: &[u8]) -> String {
    // Decode only what can be shown, so a huge buffer costs no more than its prefix.
    let cut = bytes.len().min(QUOTE_MAX * 4);
    let head = String::from_utf8_lossy(&bytes[..cut]);
    let shown: String = head.chars().take(QUOTE_MAX).collect();
    if cut == bytes.len() && shown.len() == head.len() {
        format!("{shown:?}")
    } else {
        format!("{shown:?}... ({} bytes in all)", bytes.len())
    }
}

/// Cuts every line of a message (a parser's error, which may quote a source line) to
/// `QUOTE_MAX * 2` characters, so that no error line echoes a whole input.
pub fn bound_lines(message: &str) -> String {
    let max = QUOTE_MAX * 2;
    message
        .lines()
        .map(|l| {
            if l.chars().count() <= max {
                l.to_string()
            } else {
                let head: String = l.chars().take(max).collect();
                format!("{head}... ({} bytes in this line)", l.len())
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_quoted_whole() {
        assert_eq!(quote("08"), "\"08\"");
        assert_eq!(quote_bytes(b"2 \n"), "\"2 \\n\"");
    }

    #[test]
    fn long_input_is_cut_with_its_length() {
        let big = "x".repeat(300_000);
        let q = quote(&big);
        assert!(q.len() < 120 && q.ends_with("... (300000 bytes in all)"), "{q}");
        assert_eq!(quote_bytes(big.as_bytes()), q);
        let line = bound_lines(&format!("line 1\n{big}\nend"));
        assert!(line.len() < 250 && line.starts_with("line 1\n") && line.ends_with("\nend"));
    }

    #[test]
    fn multibyte_text_is_cut_on_a_character() {
        let q = quote(&"é".repeat(100));
        assert!(q.starts_with("\"éé") && q.contains("... (200 bytes"), "{q}");
    }
}
