//! The one rule for node ids (MODEL §7), checked wherever an id enters: topology and
//! plan files, and their wire forms (`rollover-proto`'s conversions).
//!
//! A node id is 1 to [`MAX_NODE_ID_BYTES`] bytes of UTF-8, not only whitespace, with
//! no character a terminal or a log viewer would act on: no C0 or C1 control, no DEL,
//! no line or paragraph separator, no Unicode bidirectional override, embedding,
//! isolate or mark. Ids end up in certificates, logs, metrics labels and terminals;
//! refusing such ids at the edge is cheaper than escaping them everywhere, and the
//! check is O(1) in the id's length when it is too long, so a megabyte id costs nothing
//! beyond reading it.
//!
//! Topologies add one rule of their own (ids starting with `@` are reserved, see
//! [`crate::topology`]); plans may name `@executor`, so that rule is not here.

use std::fmt;

/// Longest node id, in bytes of UTF-8: the longest DNS name, which is what an id
/// becomes in its certificate (a real-agent rotation further needs the id's escaped
/// DNS form to fit, which `rollover-pki` checks when it issues the certificate).
pub const MAX_NODE_ID_BYTES: usize = 253;

/// Why a string is not a node id. Its `Display` never quotes the id itself: the id is
/// what may be too long or hold the characters a terminal would act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadId {
    /// Empty, or only whitespace.
    Empty,
    /// Longer than [`MAX_NODE_ID_BYTES`].
    TooLong {
        /// Its length in bytes.
        bytes: usize,
    },
    /// Holds a control, separator or bidi character.
    Forbidden {
        /// The character.
        ch: char,
        /// Its byte offset in the id.
        at: usize,
    },
}

impl fmt::Display for BadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadId::Empty => f.write_str("a node id must not be empty"),
            BadId::TooLong { bytes } => write!(
                f,
                "a node id is at most {MAX_NODE_ID_BYTES} bytes, this one has {bytes}"
            ),
            BadId::Forbidden { ch, at } => write!(
                f,
                "a node id must be printable: U+{:04X} ({}) at byte {at}",
                u32::from(*ch),
                kind(*ch)
            ),
        }
    }
}

/// Check `id` against the rule of the module doc.
pub fn check_node_id(id: &str) -> Result<(), BadId> {
    // Length first: a huge id is refused without looking at its characters.
    if id.len() > MAX_NODE_ID_BYTES {
        return Err(BadId::TooLong { bytes: id.len() });
    }
    if let Some((at, ch)) = id.char_indices().find(|&(_, c)| unprintable(c)) {
        return Err(BadId::Forbidden { ch, at });
    }
    if id.trim().is_empty() {
        return Err(BadId::Empty);
    }
    Ok(())
}

/// Whether a terminal, a pager or a bidi-aware viewer would act on `c` rather than
/// show it: the characters no id may hold, and those the CLI escapes when it prints
/// text from elsewhere. (`char::is_control` is exactly C0, DEL and C1.)
pub fn unprintable(c: char) -> bool {
    c.is_control() || is_separator(c) || is_bidi(c)
}

fn is_separator(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}')
}

/// Bidi marks, embeddings, overrides and isolates (the "Trojan Source" characters).
fn is_bidi(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

fn kind(c: char) -> &'static str {
    if c.is_control() {
        "a control character"
    } else if is_separator(c) {
        "a line or paragraph separator"
    } else {
        "a bidirectional formatting character"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_ids_pass() {
        for id in [
            "gw",
            "meter-7",
            "Foo_Bar.eu",
            "nœud-été",
            "节点",
            "a b",
            "@executor",
        ] {
            assert_eq!(check_node_id(id), Ok(()), "{id}");
        }
        assert_eq!(check_node_id(&"a".repeat(MAX_NODE_ID_BYTES)), Ok(()));
        // The limit is in bytes: 84 three-byte characters are 252 bytes, 85 are 255.
        assert_eq!(check_node_id(&"节".repeat(84)), Ok(()));
        assert_eq!(
            check_node_id(&"节".repeat(85)),
            Err(BadId::TooLong { bytes: 255 })
        );
    }

    #[test]
    fn empty_long_and_unprintable_ids_are_refused() {
        assert_eq!(check_node_id(""), Err(BadId::Empty));
        assert_eq!(check_node_id("  "), Err(BadId::Empty));
        assert_eq!(
            check_node_id(&"a".repeat(MAX_NODE_ID_BYTES + 1)),
            Err(BadId::TooLong { bytes: 254 })
        );
        for (id, ch, at) in [
            ("a\u{1b}]0;title\u{7}", '\u{1b}', 1),
            ("a\nb", '\n', 1),
            ("a\rb", '\r', 1),
            ("\tx", '\t', 0),
            ("\u{0}", '\u{0}', 0),
            ("x\u{7f}", '\u{7f}', 1),
            ("é\u{9b}", '\u{9b}', 2),
            ("a\u{202e}b", '\u{202e}', 1),
            ("a\u{2067}b", '\u{2067}', 1),
            ("a\u{2028}b", '\u{2028}', 1),
        ] {
            assert_eq!(
                check_node_id(id),
                Err(BadId::Forbidden { ch, at }),
                "{id:?}"
            );
        }
    }

    #[test]
    fn messages_never_quote_the_id() {
        let e = check_node_id("\u{1b}]0;pwned\u{7}")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "a node id must be printable: U+001B (a control character) at byte 0"
        );
        let e = check_node_id(&"x".repeat(1 << 20)).unwrap_err().to_string();
        assert_eq!(e, "a node id is at most 253 bytes, this one has 1048576");
    }
}
