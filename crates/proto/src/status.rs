//! Error messages that never repeat much of the caller's input.
//!
//! A status message travels in the `grpc-message` header: one that quoted a 10 KB id
//! in full would come back to the caller as RESOURCE_EXHAUSTED ("metadata size
//! exceeds soft limit") instead of the INVALID_ARGUMENT it is, and would let a caller
//! make the server write its input into its logs at any length. So every value taken
//! from a request is shown through [`excerpt`] (at most [`EXCERPT_CHARS`] characters
//! and `…`), and every status a service returns goes through [`clip_status`], which
//! cuts any longer word and the whole message as a last resort.

/// The most characters of one caller-supplied value an error message shows.
pub const EXCERPT_CHARS: usize = 64;

/// The most characters of a whole error message.
pub const MESSAGE_CHARS: usize = 1024;

/// `value` cut to [`EXCERPT_CHARS`] characters, with `…` when something was cut.
pub fn excerpt(value: &str) -> String {
    cut(value, EXCERPT_CHARS)
}

fn cut(value: &str, chars: usize) -> String {
    match value.char_indices().nth(chars) {
        None => value.to_string(),
        Some((end, _)) => format!("{}…", &value[..end]),
    }
}

/// `message` with every whitespace-separated word longer than [`EXCERPT_CHARS`]
/// shown as its [`excerpt`], and the whole cut to [`MESSAGE_CHARS`].
pub fn clip(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MESSAGE_CHARS + 4));
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(&excerpt(word));
        word.clear();
    };
    for c in message.chars() {
        if c.is_whitespace() {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    cut(&out, MESSAGE_CHARS)
}

/// `status` with its message [`clip`]ped (code and details kept).
pub fn clip_status(status: tonic::Status) -> tonic::Status {
    let message = status.message();
    if message.chars().count() <= EXCERPT_CHARS {
        return status;
    }
    let clipped = clip(message);
    if clipped == message {
        return status;
    }
    tonic::Status::with_details(status.code(), clipped, status.details().to_vec().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_cut_long_values_only() {
        assert_eq!(excerpt("r1"), "r1");
        let long = "x".repeat(10_000);
        let shown = excerpt(&long);
        assert_eq!(shown.chars().count(), EXCERPT_CHARS + 1);
        assert!(shown.ends_with('…'));
        // Multi-byte characters are cut on a character boundary.
        assert_eq!(excerpt(&"é".repeat(100)).chars().count(), EXCERPT_CHARS + 1);
    }

    #[test]
    fn clip_cuts_long_words_and_long_messages() {
        let id = "y".repeat(10_000);
        let message = format!("rotation_id: no rotation `{id}`");
        let clipped = clip(&message);
        assert!(
            clipped.starts_with("rotation_id: no rotation `yyy"),
            "{clipped}"
        );
        assert!(clipped.chars().count() < 100, "{clipped}");
        let many = "word ".repeat(1000);
        assert_eq!(clip(&many).chars().count(), MESSAGE_CHARS + 1);
        assert_eq!(clip("a short  message"), "a short  message");
    }

    #[test]
    fn clip_status_keeps_the_code() {
        let status = tonic::Status::not_found(format!("no `{}`", "z".repeat(5000)));
        let clipped = clip_status(status);
        assert_eq!(clipped.code(), tonic::Code::NotFound);
        assert!(clipped.message().len() < 200);
    }
}
