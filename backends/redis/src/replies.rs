//! Reading what the server answers: hashes as named fields, the
//! `{status, ...}` replies of the scripts, and expiry arithmetic. Below
//! every store module.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use interlock::store::StoreError;
use redis::Value;

use crate::keys::corrupt;

/// The fields of a stored hash.
pub(crate) struct Fields<'a> {
    pub(crate) key: &'a str,
    pub(crate) map: HashMap<String, Vec<u8>>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(key: &'a str, map: HashMap<String, Vec<u8>>) -> Self {
        Self { key, map }
    }

    /// From a flat `[field, value, field, value, ...]` reply (`HGETALL`
    /// inside a script).
    pub(crate) fn from_flat(key: &'a str, flat: Vec<Vec<u8>>) -> Result<Self, StoreError> {
        if !flat.len().is_multiple_of(2) {
            return Err(corrupt(key, "an odd number of hash entries"));
        }
        let mut map = HashMap::with_capacity(flat.len() / 2);
        let mut items = flat.into_iter();
        while let (Some(field), Some(value)) = (items.next(), items.next()) {
            let field = String::from_utf8(field).map_err(|_| corrupt(key, "a field name is not UTF-8"))?;
            map.insert(field, value);
        }
        Ok(Self { key, map })
    }

    pub(crate) fn bytes(&self, name: &str) -> Result<&[u8], StoreError> {
        self.map
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| corrupt(self.key, format!("no field `{name}`")))
    }

    pub(crate) fn text(&self, name: &str) -> Result<&str, StoreError> {
        std::str::from_utf8(self.bytes(name)?).map_err(|_| corrupt(self.key, format!("`{name}` is not UTF-8")))
    }

    pub(crate) fn number<T: FromStr>(&self, name: &str) -> Result<T, StoreError> {
        let text = self.text(name)?;
        text.parse()
            .map_err(|_| corrupt(self.key, format!("`{name}` is `{text}`, not a number of its kind")))
    }

    /// A field that may be absent or empty.
    pub(crate) fn optional(&self, name: &str) -> Option<&[u8]> {
        self.map.get(name).map(Vec::as_slice).filter(|v| !v.is_empty())
    }
}

/// The status word and the rest of a script's `{status, ...}` reply.
pub(crate) fn status(key: &str, reply: Value) -> Result<(String, Vec<Value>), StoreError> {
    let Value::Array(mut items) = reply else {
        return Err(corrupt(key, "a script answered with an unexpected reply"));
    };
    if items.is_empty() {
        return Err(corrupt(key, "a script answered with an empty reply"));
    }
    let word = match items.remove(0) {
        Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        Value::SimpleString(s) => s,
        _ => return Err(corrupt(key, "a script's status is not a string")),
    };
    Ok((word, items))
}

/// A bulk-string list (`HGETALL`'s flat reply, inside a script's reply).
pub(crate) fn bulk_list(key: &str, value: Value) -> Result<Vec<Vec<u8>>, StoreError> {
    let Value::Array(items) = value else {
        return Err(corrupt(key, "expected a list"));
    };
    items
        .into_iter()
        .map(|v| match v {
            Value::BulkString(b) => Ok(b),
            Value::SimpleString(s) => Ok(s.into_bytes()),
            Value::Int(i) => Ok(i.to_string().into_bytes()),
            _ => Err(corrupt(key, "a list item is not a string")),
        })
        .collect()
}

/// Milliseconds, at least 1 (Redis refuses 0 as an expiry).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
