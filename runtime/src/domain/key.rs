//! How a command's `#[aggregate_id]` becomes the key of its stream.
//!
//! Any `Display` type is an aggregate id, and formatting one goes through
//! `core::fmt` (about 400 instructions for a `u64`: measured in W1 with
//! callgrind). `#[derive(Command)]` knows the field's type, so it calls
//! `(&Key(&field)).stream_key()`: for the integers, strings and ULIDs the
//! direct encodings below are found first, by method resolution on the
//! concrete type, and for any other type the `Display` fallback (the
//! autoref probe that `fingerprint::probe` uses too). The fallback goes
//! through the command's `aggregate_id()`, so an id type that is not an
//! aggregate id gets the one error the trait's bound gives, not a second
//! one here.

use smol_str::SmolStr;

use super::command::Command;
use super::ids::AggregateId;

/// The command and its id field, as the derive passes them.
pub struct Key<'a, C: ?Sized, T: ?Sized>(pub &'a C, pub &'a T);

/// The direct encodings: found first for the types they name.
pub trait KeyDirect {
    /// The stream key, without `core::fmt`.
    fn stream_key(&self) -> SmolStr;
}

/// The fallback: the id's `Display`.
pub trait KeyByDisplay {
    /// The stream key, through the id's `Display`.
    fn stream_key(&self) -> SmolStr;
}

impl<C: Command, T: ?Sized> KeyByDisplay for &Key<'_, C, T> {
    fn stream_key(&self) -> SmolStr {
        self.0.aggregate_id().to_shared_key()
    }
}

/// Integers in decimal (`itoa`), as their `Display` writes them.
macro_rules! integer_keys {
    ($($t:ty),*) => {$(
        impl<C: ?Sized> KeyDirect for Key<'_, C, $t> {
            fn stream_key(&self) -> SmolStr {
                SmolStr::new(itoa::Buffer::new().format(*self.1))
            }
        }
    )*};
}
integer_keys!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);

impl<C: ?Sized> KeyDirect for Key<'_, C, String> {
    fn stream_key(&self) -> SmolStr {
        SmolStr::new(self.1)
    }
}

impl<C: ?Sized> KeyDirect for Key<'_, C, str> {
    fn stream_key(&self) -> SmolStr {
        SmolStr::new(self.1)
    }
}

impl<C: ?Sized> KeyDirect for Key<'_, C, ulid::Ulid> {
    fn stream_key(&self) -> SmolStr {
        let mut buffer = [0; ulid::ULID_LEN];
        SmolStr::new(self.1.array_to_str(&mut buffer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command of id type `T`, keyed as the derive keys it.
    #[derive(Clone)]
    struct To<T>(T);

    impl<T: AggregateId + Clone + Send + Sync + 'static> Command for To<T> {
        const NAME: &'static str = "To";
        type Id = T;
        fn aggregate_id(&self) -> &T {
            &self.0
        }
    }

    /// The direct encodings equal `Display`'s, and a type without one
    /// takes the fallback.
    #[test]
    // The borrow is the probe, written as the derive writes it.
    #[allow(clippy::needless_borrow)]
    fn direct_keys_equal_the_displayed_ids() {
        fn key<T: AggregateId + Clone + Send + Sync + 'static>(id: T) -> String {
            let command = To(id);
            // The generic path: the fallback, whatever `T` is.
            (&Key(&command, &command.0)).stream_key().to_string()
        }
        assert_eq!((&Key(&(), &42_u64)).stream_key(), "42");
        assert_eq!((&Key(&(), &u64::MAX)).stream_key(), u64::MAX.to_string());
        assert_eq!((&Key(&(), &i128::MIN)).stream_key(), i128::MIN.to_string());
        assert_eq!((&Key(&(), &-7_i32)).stream_key(), "-7");
        let id = ulid::Ulid::new();
        assert_eq!((&Key(&(), &id)).stream_key(), id.to_string());
        assert_eq!((&Key(&(), &String::from("acc-1"))).stream_key(), "acc-1");
        assert_eq!((&Key(&(), "x")).stream_key(), "x");
        #[derive(Clone)]
        struct Custom;
        impl std::fmt::Display for Custom {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("custom/1")
            }
        }
        let custom = To(Custom);
        assert_eq!((&Key(&custom, &custom.0)).stream_key(), "custom/1");
        assert_eq!(key(42_u64), "42");
        assert_eq!(key(Custom), "custom/1");
    }
}
