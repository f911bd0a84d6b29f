//! Command fingerprints: a stable hash of what a command asks for, recorded
//! with its idempotency outcome so that reusing a command id for a
//! different command is refused instead of answered with the first
//! command's outcome.
//!
//! The hash is XXH3-64 (crate `xxhash-rust`): a fixed, documented algorithm,
//! so a fingerprint recorded by one build of an application compares equal
//! in the next. It guards against mistakes, not attackers: two commands
//! would have to share a command id *and* collide in 64 bits.

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::Serialize;
use xxhash_rust::xxh3::Xxh3;

/// The fingerprint of a command: its name, its target stream and the
/// values of its fields (all but the `#[command_id]` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CommandFingerprint(pub u64);

impl fmt::Display for CommandFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Accumulates a [`CommandFingerprint`]; `Command::fingerprint` feeds it
/// the command's fields.
pub struct Fingerprinter {
    hasher: Xxh3,
}

impl fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fingerprinter").finish_non_exhaustive()
    }
}

impl Fingerprinter {
    pub(crate) fn new() -> Self {
        Self { hasher: Xxh3::new() }
    }

    /// Adds a string, length-prefixed so that `("ab", "c")` and `("a", "bc")`
    /// differ.
    pub fn str(&mut self, value: &str) {
        self.bytes(value.as_bytes());
    }

    /// Adds bytes, length-prefixed.
    pub fn bytes(&mut self, value: &[u8]) {
        self.hasher.update(&(value.len() as u64).to_le_bytes());
        self.hasher.update(value);
    }

    /// Adds a value through its `Serialize` implementation, as canonical
    /// JSON: object keys sorted, so a `HashMap` field gives the same
    /// fingerprint whatever its iteration order.
    pub fn serialize<T: Serialize + ?Sized>(&mut self, value: &T) {
        match serde_json::to_value(value) {
            Ok(json) => self.json(&json),
            // A value serde_json refuses (a map with keys that are not
            // strings or numbers): a marker, the same every time.
            Err(_) => self.hasher.update(b"\xffunserializable"),
        }
    }

    fn json(&mut self, value: &serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::Null => self.hasher.update(&[0]),
            Value::Bool(b) => self.hasher.update(&[1, u8::from(*b)]),
            Value::Number(n) => {
                self.hasher.update(&[2]);
                self.str(&n.to_string());
            }
            Value::String(s) => {
                self.hasher.update(&[3]);
                self.str(s);
            }
            Value::Array(items) => {
                self.hasher.update(&[4]);
                self.hasher.update(&(items.len() as u64).to_le_bytes());
                for item in items {
                    self.json(item);
                }
            }
            Value::Object(map) => {
                self.hasher.update(&[5]);
                self.hasher.update(&(map.len() as u64).to_le_bytes());
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                for (key, item) in entries {
                    self.str(key);
                    self.json(item);
                }
            }
        }
    }

    /// Adds a value through its `Hash` implementation.
    pub fn hash<T: Hash + ?Sized>(&mut self, value: &T) {
        value.hash(&mut StableHasher(&mut self.hasher));
    }

    pub(crate) fn finish(&self) -> CommandFingerprint {
        CommandFingerprint(self.hasher.digest())
    }
}

/// `Hasher` over XXH3 with integers in little-endian order, so the
/// fingerprint does not depend on the machine's byte order.
struct StableHasher<'a>(&'a mut Xxh3);

impl Hasher for StableHasher<'_> {
    fn finish(&self) -> u64 {
        self.0.digest()
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn write_u16(&mut self, i: u16) {
        self.0.update(&i.to_le_bytes());
    }
    fn write_u32(&mut self, i: u32) {
        self.0.update(&i.to_le_bytes());
    }
    fn write_u64(&mut self, i: u64) {
        self.0.update(&i.to_le_bytes());
    }
    fn write_u128(&mut self, i: u128) {
        self.0.update(&i.to_le_bytes());
    }
    fn write_usize(&mut self, i: usize) {
        self.0.update(&(i as u64).to_le_bytes());
    }
    fn write_i16(&mut self, i: i16) {
        self.0.update(&i.to_le_bytes());
    }
    fn write_i32(&mut self, i: i32) {
        self.0.update(&i.to_le_bytes());
    }
    fn write_i64(&mut self, i: i64) {
        self.0.update(&i.to_le_bytes());
    }
    fn write_i128(&mut self, i: i128) {
        self.0.update(&i.to_le_bytes());
    }
    fn write_isize(&mut self, i: isize) {
        self.0.update(&(i as i64).to_le_bytes());
    }
}

/// The field probes `#[derive(Command)]` uses to fingerprint each field by
/// the best trait its type implements: `Serialize`, else `Hash`; a type
/// with neither is a compile error naming the field's type. (Method
/// resolution through auto-references picks the first probe that applies.)
#[doc(hidden)]
pub(crate) mod probe {
    use super::{Fingerprinter, Hash, Serialize};

    /// A field's value, to be fingerprinted.
    pub struct Field<'a, T: ?Sized>(pub &'a T);

    /// Tier 1: `Serialize`.
    pub trait BySerialize {
        /// Adds the field.
        fn fingerprint_field(&self, fp: &mut Fingerprinter);
    }
    impl<T: Serialize + ?Sized> BySerialize for &&Field<'_, T> {
        fn fingerprint_field(&self, fp: &mut Fingerprinter) {
            fp.serialize(self.0);
        }
    }

    /// Tier 2: `Hash`.
    pub trait ByHash {
        /// Adds the field.
        fn fingerprint_field(&self, fp: &mut Fingerprinter);
    }
    impl<T: Hash + ?Sized> ByHash for &Field<'_, T> {
        fn fingerprint_field(&self, fp: &mut Fingerprinter) {
            fp.hash(self.0);
        }
    }

    /// The last tier: selected when neither applies, and refused by the
    /// method's bound with a message that says what to do.
    pub trait Neither {
        /// The field's type.
        type Value: ?Sized;
        /// Never callable: `Self::Value` is never `Fingerprintable`.
        fn fingerprint_field(&self, fp: &mut Fingerprinter)
        where
            Self::Value: Fingerprintable;
    }
    impl<T: ?Sized> Neither for Field<'_, T> {
        type Value = T;
        fn fingerprint_field(&self, _: &mut Fingerprinter)
        where
            T: Fingerprintable,
        {
        }
    }

    /// Implemented by no type: the bound that reports a field that cannot
    /// be fingerprinted.
    #[diagnostic::on_unimplemented(
        message = "the command field of type `{Self}` cannot be fingerprinted",
        label = "neither `Serialize` nor `Hash`",
        note = "every command field counts toward the command's fingerprint, which refuses a command id reused for a different command",
        note = "derive `serde::Serialize` or `Hash` for `{Self}`, or mark the field `#[command(skip_fingerprint)]`"
    )]
    pub trait Fingerprintable {}
}

#[cfg(test)]
mod tests {
    use super::Fingerprinter;

    #[test]
    fn same_values_same_fingerprint_and_boundaries_count() {
        let of = |parts: &[&str], n: u64| {
            let mut fp = Fingerprinter::new();
            for p in parts {
                fp.str(p);
            }
            fp.serialize(&n);
            fp.hash(&n);
            fp.finish()
        };
        assert_eq!(of(&["a", "bc"], 1), of(&["a", "bc"], 1));
        assert_ne!(of(&["a", "bc"], 1), of(&["ab", "c"], 1));
        assert_ne!(of(&["a", "bc"], 1), of(&["a", "bc"], 2));
    }

    #[test]
    fn maps_fingerprint_alike_whatever_their_order() {
        let of = |pairs: &[(&str, u32)]| {
            let map: std::collections::HashMap<String, u32> =
                pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
            let mut fp = Fingerprinter::new();
            fp.serialize(&map);
            fp.finish()
        };
        let many: Vec<(String, u32)> = (0..64).map(|i| (format!("k{i}"), i)).collect();
        let forward: Vec<(&str, u32)> = many.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let backward: Vec<(&str, u32)> = forward.iter().rev().copied().collect();
        assert_eq!(of(&forward), of(&backward));
        assert_ne!(of(&[("a", 1)]), of(&[("a", 2)]));
    }

    #[test]
    fn the_algorithm_is_fixed() {
        // Recorded fingerprints must compare equal across builds: this
        // value is XXH3-64 of the bytes below and must never change.
        let mut fp = Fingerprinter::new();
        fp.str("Deposit");
        assert_eq!(
            fp.finish().0,
            xxhash_rust::xxh3::xxh3_64(&[7, 0, 0, 0, 0, 0, 0, 0, b'D', b'e', b'p', b'o', b's', b'i', b't'])
        );
    }
}
