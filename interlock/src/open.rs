//! Opening a backend from a URL.

use interlock_core::store::{StoreError, StoreSet};

/// Why [`open`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The text is not a URL.
    #[error("`{url}` is not a store URL: {reason}")]
    InvalidUrl {
        /// The text, with any password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No backend handles the URL's scheme.
    #[error("no backend opens `{scheme}:` URLs (known schemes: {known})")]
    UnknownScheme {
        /// The scheme.
        scheme: String,
        /// The schemes this build knows.
        known: &'static str,
    },
    /// The backend for the scheme exists but its feature is off.
    #[error("`{scheme}:` URLs need the `{feature}` feature of the `interlock` crate")]
    FeatureDisabled {
        /// The scheme.
        scheme: String,
        /// The feature to enable.
        feature: &'static str,
    },
    /// The backend was found but could not be opened.
    #[error("cannot open `{url}`: {source}")]
    Store {
        /// The URL, with any password redacted.
        url: String,
        /// What the backend said.
        #[source]
        source: StoreError,
    },
}

const KNOWN: &str = "sqlite, postgres, postgresql, mongodb, mongodb+srv";

/// `url` with its password replaced by `***`.
fn redacted(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Setting a password fails only for URLs that cannot have one.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        // Not a URL: show the scheme at most, since the rest may hold a secret.
        Err(_) => text
            .split_once(':')
            .map_or_else(|| "<unparsable>".to_owned(), |(s, _)| format!("{s}:...")),
    }
}

/// Opens the backend `url` names, with its defaults, and returns its
/// stores, for [`ApplicationBuilder::backend`](crate::ApplicationBuilder::backend):
///
/// | URL | backend | feature |
/// |---|---|---|
/// | `sqlite::memory:` | SQLite in memory | `sqlite` |
/// | `sqlite:path/to/file.db`, `sqlite://path/to/file.db` | SQLite file (created if missing) | `sqlite` |
/// | `postgres://user:password@host:port/db`, `postgresql://...` | PostgreSQL | `postgres` |
/// | `mongodb://user:password@host:port/db?replicaSet=rs0`, `mongodb+srv://...` | MongoDB (database `db`, else `interlock`) | `mongodb` |
///
/// For settings beyond the defaults (table prefix, schema, pool size,
/// group commit), build the backend's config instead (`interlock::sql`).
///
/// # Errors
///
/// [`OpenError`]: the text is no URL, no backend (or no enabled feature)
/// handles its scheme, or the backend cannot be opened. Passwords never
/// appear in the error.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # #[cfg(feature = "sqlite")] {
/// let stores = interlock::open("sqlite::memory:").await?;
/// let app = interlock::Application::builder().backend(stores).build().await?;
/// # }
/// # Ok(()) }
/// ```
pub async fn open(url: &str) -> Result<StoreSet, OpenError> {
    let Some((scheme, rest)) = url.split_once(':') else {
        return Err(OpenError::InvalidUrl {
            url: redacted(url),
            reason: "it has no scheme (`sqlite:`, `postgres://`, ...)".into(),
        });
    };
    let scheme = scheme.to_ascii_lowercase();
    match scheme.as_str() {
        "sqlite" => open_sqlite(url, rest).await,
        "postgres" | "postgresql" => open_postgres(url).await,
        "mongodb" | "mongodb+srv" => open_mongodb(url).await,
        _ => Err(OpenError::UnknownScheme { scheme, known: KNOWN }),
    }
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(url: &str, rest: &str) -> Result<StoreSet, OpenError> {
    use interlock_sql::{SqliteConfig, SqliteStore};
    let config = match rest {
        ":memory:" => SqliteConfig::memory(),
        "" | "//" => {
            return Err(OpenError::InvalidUrl {
                url: redacted(url),
                reason: "it names no file (write `sqlite:path/to/file.db` or `sqlite::memory:`)".into(),
            });
        }
        path => SqliteConfig::file(path.strip_prefix("//").unwrap_or(path)),
    };
    let store = SqliteStore::open(config).await.map_err(|source| OpenError::Store {
        url: redacted(url),
        source,
    })?;
    Ok(StoreSet::all(store.clone()).with_outbox(store))
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(_url: &str, _rest: &str) -> Result<StoreSet, OpenError> {
    Err(OpenError::FeatureDisabled {
        scheme: "sqlite".into(),
        feature: "sqlite",
    })
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str) -> Result<StoreSet, OpenError> {
    use interlock_sql::{PostgresConfig, PostgresStore};
    if let Err(e) = url::Url::parse(url) {
        return Err(OpenError::InvalidUrl {
            url: redacted(url),
            reason: e.to_string(),
        });
    }
    let store = PostgresStore::open(PostgresConfig::new(url))
        .await
        .map_err(|source| OpenError::Store {
            url: redacted(url),
            source,
        })?;
    Ok(StoreSet::all(store.clone()).with_outbox(store))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_url: &str) -> Result<StoreSet, OpenError> {
    Err(OpenError::FeatureDisabled {
        scheme: "postgres".into(),
        feature: "postgres",
    })
}

#[cfg(feature = "mongodb")]
async fn open_mongodb(url: &str) -> Result<StoreSet, OpenError> {
    use interlock_mongodb::{MongoConfig, MongoOpenError, MongoStore};
    let config = MongoConfig::new(url);
    match MongoStore::open(config.clone()).await {
        Ok(store) => Ok(StoreSet::all(store)),
        Err(MongoOpenError::Unavailable { source, .. }) => Err(OpenError::Store {
            url: config.redacted_uri(),
            source,
        }),
        Err(e) => Err(OpenError::InvalidUrl {
            url: config.redacted_uri(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(not(feature = "mongodb"))]
async fn open_mongodb(_url: &str) -> Result<StoreSet, OpenError> {
    Err(OpenError::FeatureDisabled {
        scheme: "mongodb".into(),
        feature: "mongodb",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redacted("postgres://app:hunter2@db.local:5432/prod"),
            "postgres://app:***@db.local:5432/prod"
        );
        assert_eq!(redacted("postgres://db.local/prod"), "postgres://db.local/prod");
        assert!(!redacted("post gres://app:hunter2@x").contains("hunter2"));
    }

    #[tokio::test]
    async fn unknown_schemes_and_non_urls_are_typed_errors() {
        assert!(matches!(
            open("mysql://root@localhost/db").await,
            Err(OpenError::UnknownScheme { ref scheme, .. }) if scheme == "mysql"
        ));
        assert!(matches!(
            open("no scheme here").await,
            Err(OpenError::InvalidUrl { .. })
        ));
    }
}
