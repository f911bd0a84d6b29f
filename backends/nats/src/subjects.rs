//! Subject and consumer names: each event on `<root>.<type>.<id>`, the
//! tokens percent-encoded so that no id (with a `.`, a wildcard, a space)
//! can split a subject or reach another's.

use interlock::StreamId;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What a subject token keeps as is: letters, digits, `-`, `_`.
const TOKEN: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// One subject token for `text` (`%` alone for an empty text: a subject
/// has no empty tokens).
fn token(text: &str) -> String {
    if text.is_empty() {
        return "%".to_owned();
    }
    utf8_percent_encode(text, TOKEN).to_string()
}

/// The subject of `stream`'s events under `root`.
pub(crate) fn of_stream(root: &str, stream: &StreamId) -> String {
    format!(
        "{root}.{}.{}",
        token(stream.aggregate_type()),
        token(stream.aggregate_id())
    )
}

/// Every event subject under `root`.
pub(crate) fn all(root: &str) -> String {
    format!("{root}.>")
}

/// A durable consumer's name for the application's consumer name: the
/// server takes 1 to 32 or so readable characters without `.`, `*`, `>`
/// or whitespace; anything else is encoded, and a long name is cut and
/// given a hash of the whole so two names stay apart.
pub(crate) fn durable(consumer: &str) -> String {
    let encoded = utf8_percent_encode(consumer, TOKEN).to_string().replace('%', "_");
    if !encoded.is_empty() && encoded.len() <= 48 && encoded == consumer {
        return encoded;
    }
    // FNV-1a over the original name: stable across processes and versions.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in consumer.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let head: String = encoded.chars().take(32).collect();
    format!("{head}_{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_ids_stay_one_token() {
        let stream = StreamId::new("order.v2", "a.b *>\u{0}ü");
        let subject = of_stream("interlock.events", &stream);
        assert_eq!(subject, "interlock.events.order%2Ev2.a%2Eb%20%2A%3E%00%C3%BC");
        assert_eq!(subject.split('.').count(), 4);
        assert_eq!(of_stream("r", &StreamId::new("t", "")), "r.t.%");
    }

    #[test]
    fn consumer_names_are_valid_and_distinct() {
        assert_eq!(durable("shipping"), "shipping");
        let a = durable("shipping.eu");
        let b = durable("shipping_eu");
        assert_ne!(a, b);
        assert!(!a.contains('.'));
        let long = durable(&"x".repeat(200));
        assert!(long.len() <= 49, "{long}");
    }
}
