//! Mapping driver errors to the runtime's `StoreError`.

use interlock::store::StoreError;

/// Maps a driver error: connection and pool failures (and lock timeouts)
/// are `Unavailable` (retryable), the rest `Backend`.
pub(crate) fn store_error(backend: &'static str, error: sqlx::Error) -> StoreError {
    if is_unavailable(&error) {
        StoreError::Unavailable {
            backend,
            source: Box::new(error),
        }
    } else {
        StoreError::Backend {
            backend,
            source: Box::new(error),
        }
    }
}

/// Whether a driver error means the database cannot be reached (or is
/// locked) for now.
pub(crate) fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL: connection exceptions (08), shutdown (57P0x);
            // SQLite: busy (5) and locked (6).
            code.starts_with("08") || code.starts_with("57P0") || code == "5" || code == "6"
        }
        _ => false,
    }
}

/// Whether a driver error is a unique-constraint violation.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}
