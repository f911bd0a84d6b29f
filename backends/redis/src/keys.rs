//! The keys, all under the configured prefix. Parts that come from users
//! (aggregate ids, saga keys, subscriber names) are escaped (`%` as `%25`,
//! `:` as `%3A`), so no id can reach another's key: `a:b` + `c` and `a` +
//! `b:c` stay apart, and a hostile id cannot leave the prefix.

use std::borrow::Cow;
use std::fmt::Write as _;

use interlock::StreamId;
use interlock::store::StoreError;

/// One part of a key, escaped.
pub(crate) fn part(text: &str) -> Cow<'_, str> {
    if !text.contains([':', '%']) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        match c {
            '%' => escaped.push_str("%25"),
            ':' => escaped.push_str("%3A"),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

/// A stream as key parts: `tenant:type:id` (the tenant empty for none).
pub(crate) fn stream(stream: &StreamId) -> String {
    let mut key = String::new();
    let tenant = stream.tenant().map_or("", |t| t.as_str());
    let _ = write!(
        key,
        "{}:{}:{}",
        part(tenant),
        part(stream.aggregate_type()),
        part(stream.aggregate_id())
    );
    key
}

/// The key builder of one store.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `idem:<command id>`: a hash, the claim or the outcome.
    pub(crate) fn idempotency(&self, command: &ulid::Ulid) -> String {
        format!("{}idem:{command}", self.prefix)
    }

    /// `snap:<stream>`: a hash, the latest snapshot.
    pub(crate) fn snapshot(&self, s: &StreamId) -> String {
        format!("{}snap:{}", self.prefix, stream(s))
    }

    /// `cache:<stream>`: a hash, a cached aggregate state.
    pub(crate) fn cache(&self, s: &StreamId) -> String {
        format!("{}cache:{}", self.prefix, stream(s))
    }

    /// `ckpt:<subscriber>`: a string, the position.
    pub(crate) fn checkpoint(&self, subscriber: &str) -> String {
        format!("{}ckpt:{}", self.prefix, part(subscriber))
    }

    /// `lease:<subscriber>`: a hash, owner, token and expiry.
    pub(crate) fn lease(&self, subscriber: &str) -> String {
        format!("{}lease:{}", self.prefix, part(subscriber))
    }

    /// `saga:<saga>:<key>`: a hash, the instance.
    pub(crate) fn saga(&self, saga: &str, key: &str) -> String {
        format!("{}saga:{}:{}", self.prefix, part(saga), part(key))
    }

    /// `sagadl:<saga>:<key>`: a set, the ids of the instance's deadlines.
    pub(crate) fn saga_deadlines(&self, saga: &str, key: &str) -> String {
        format!("{}sagadl:{}:{}", self.prefix, part(saga), part(key))
    }

    /// `due:<saga>`: a sorted set, deadline ids by due time (µs).
    pub(crate) fn due(&self, saga: &str) -> String {
        format!("{}due:{}", self.prefix, part(saga))
    }

    /// `dl:<saga>:`, the prefix of a saga's deadline hashes (`dl:<saga>:<id>`:
    /// one deadline each; ids are ULIDs, never escaped).
    pub(crate) fn deadline_prefix(&self, saga: &str) -> String {
        format!("{}dl:{}:", self.prefix, part(saga))
    }

    /// The `SCAN` pattern of one kind (`idem`, `lease`, ...).
    pub(crate) fn pattern(&self, kind: &str) -> String {
        format!("{}{kind}:*", glob_escape(&self.prefix))
    }

    /// The `SCAN` pattern of every key of the store.
    pub(crate) fn everything(&self) -> String {
        format!("{}*", glob_escape(&self.prefix))
    }

    /// The subscriber of a lease key (unescaped), if it is one.
    pub(crate) fn subscriber_of_lease(&self, key: &str) -> Option<String> {
        let name = key.strip_prefix(&self.prefix)?.strip_prefix("lease:")?;
        Some(name.replace("%3A", ":").replace("%25", "%"))
    }
}

/// A prefix as a `SCAN` pattern matches it literally (the prefix is
/// validated to letters, digits and `_ - . :`: none is special, but keep it
/// safe if that ever widens).
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// A stored field that does not hold what it should.
pub(crate) fn corrupt(key: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        backend: "redis",
        location: key.to_owned(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_parts_cannot_meet_or_leave_the_prefix() {
        let keys = Keys::new("t:");
        assert_ne!(keys.saga("a:b", "c"), keys.saga("a", "b:c"));
        assert_ne!(keys.saga("a%3Ab", "c"), keys.saga("a:b", "c"));
        assert_eq!(keys.checkpoint("p:1"), "t:ckpt:p%3A1");
        assert_eq!(keys.subscriber_of_lease(&keys.lease("p:%1")).as_deref(), Some("p:%1"));
        let s = |t: &str, id: &str| keys.snapshot(&StreamId::new(t.to_owned(), id.to_owned()));
        assert_ne!(s("a:b", "c"), s("a", "b:c"));
        assert!(s("x", "../../etc").starts_with("t:snap:"));
        assert_eq!(keys.pattern("lease"), "t:lease:*");
    }
}
