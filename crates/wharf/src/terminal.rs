//! Text from a server on the user's terminal: a node's host name, a user agent or an error
//! message could carry escape sequences that rewrite the screen or the terminal's title.
//! Everything the CLI prints from a server goes through [`printable`].

/// `text` with every control character (C0, DEL, C1: ESC, the 8-bit CSI, newlines) written as
/// an escape such as `\u{1b}`, so it prints as itself and nothing else.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_print_as_escapes() {
        assert_eq!(printable("node-1"), "node-1");
        assert_eq!(printable("évian"), "évian", "other text is kept");
        assert_eq!(printable("\u{1b}[2J\u{1b}]0;owned\u{7}"), "\\u{1b}[2J\\u{1b}]0;owned\\u{7}");
        assert_eq!(printable("a\nb\r\u{9b}c\u{7f}"), "a\\u{a}b\\u{d}\\u{9b}c\\u{7f}");
        assert!(!printable("\u{1b}\u{9b}\u{0}").chars().any(char::is_control));
    }
}
