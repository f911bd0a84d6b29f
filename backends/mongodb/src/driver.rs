//! What the store needs of the driver, below every store module: the
//! server's error codes, the mapping of driver errors to store errors
//! (the URI redacted), the retry rules of transactions, and reading
//! stored integers.

use std::time::Duration;

use interlock::store::StoreError;
use mongodb::ClientSession;
use mongodb::bson::Bson;
use mongodb::error::{TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT};

use crate::config::{MongoConfig, redact};
use crate::documents::BACKEND;

/// The code of a duplicate key.
pub(crate) const DUPLICATE_KEY: i32 = 11000;

/// The server's code of an error, if it has one (a write error, a
/// command error, the first write error of a bulk insert).
pub(crate) fn code(error: &mongodb::error::Error) -> Option<i32> {
    use mongodb::error::{ErrorKind, WriteFailure};
    match error.kind.as_ref() {
        ErrorKind::Command(e) => Some(e.code),
        ErrorKind::Write(WriteFailure::WriteError(e)) => Some(e.code),
        ErrorKind::InsertMany(e) => e.write_errors.as_ref().and_then(|w| w.first()).map(|w| w.code),
        _ => None,
    }
}

/// A driver error as a store error: unreachable servers are
/// `Unavailable` (retry later), the rest `Backend`; the URI is redacted
/// from every message.
pub(crate) fn store_error(config: &MongoConfig, error: mongodb::error::Error) -> StoreError {
    use mongodb::error::ErrorKind;
    let message = error.to_string().replace(&config.uri, &redact(&config.uri));
    let unreachable = matches!(
        error.kind.as_ref(),
        ErrorKind::Io(_) | ErrorKind::ServerSelection { .. } | ErrorKind::ConnectionPoolCleared { .. }
    ) || error.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR) && code(&error).is_none();
    if unreachable {
        StoreError::Unavailable {
            backend: BACKEND,
            source: message.into(),
        }
    } else {
        StoreError::Backend {
            backend: BACKEND,
            source: message.into(),
        }
    }
}

/// The code of a write conflict between transactions.
const WRITE_CONFLICT: i32 = 112;

/// Whether the transaction should run again: the server says so, or it
/// lost a race for a document (the counter, a stream's version).
pub(crate) fn transient(error: &mongodb::error::Error) -> bool {
    error.contains_label(TRANSIENT_TRANSACTION_ERROR) || matches!(code(error), Some(WRITE_CONFLICT | DUPLICATE_KEY))
}

/// A growing wait between runs of a conflicting transaction (1 ms to
/// about 70 ms), with jitter so competing writers spread out.
pub(crate) async fn back_off(attempt: u32) {
    let base = 2u64.saturating_pow(attempt.min(6));
    let jitter = u64::from(ulid::Ulid::new().random() as u8 % 8);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

/// Commits, retrying a commit whose result is unknown (committing again
/// is safe: the server answers with the first outcome).
pub(crate) async fn commit(session: &mut ClientSession) -> Result<(), mongodb::error::Error> {
    let mut tries = 0;
    loop {
        match session.commit_transaction().await {
            Err(e) if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) && tries < 5 => tries += 1,
            other => return other,
        }
    }
}

/// A stored integer as `u64` (`None` for anything else or a negative).
pub(crate) fn as_u64(value: &Bson) -> Option<u64> {
    match value {
        Bson::Int64(v) => u64::try_from(*v).ok(),
        Bson::Int32(v) => u64::try_from(*v).ok(),
        _ => None,
    }
}
