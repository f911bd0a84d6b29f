//! The store: one multiplexed connection that reconnects by itself
//! (`redis::aio::ConnectionManager`), the key builder, and how driver
//! errors and stored fields become `StoreError`s.

use interlock::store::StoreError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::{RedisConfig, RedisConfigError, scrub};
use crate::keys::{Keys, corrupt};

pub(crate) const BACKEND: &str = "redis";

/// Interlock's stores in Redis: idempotency records, saga state and
/// deadlines, snapshots, checkpoints with their ownership leases.
///
/// Cheap to clone (the connection is shared). Events do not belong here:
/// keep them in a durable event store (SQLite, PostgreSQL, MongoDB).
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) connection: ConnectionManager,
    pub(crate) keys: Keys,
    pub(crate) config: RedisConfig,
    /// The queue of the aggregate cache's background writer (`cache.rs`).
    pub(crate) cache_writer: std::sync::Arc<std::sync::OnceLock<tokio::sync::mpsc::Sender<CacheWrite>>>,
}

/// A write of the aggregate cache, waiting for its background writer.
pub(crate) enum CacheWrite {
    /// The state of `key` at `version`, unless a later one is stored.
    Put {
        key: String,
        version: interlock::Version,
        state_version: u32,
        state: bytes::Bytes,
    },
    /// Drop `key`.
    Invalidate { key: String },
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisOpenError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] RedisConfigError),
    /// The server did not answer (the URL shown without its password).
    #[error("cannot reach Redis at {url}: {reason}")]
    Unreachable {
        /// The redacted URL.
        url: String,
        /// What the driver said (without the password).
        reason: String,
    },
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("config", &self.config).finish()
    }
}

impl RedisStore {
    /// Connects (within the connect timeout) and checks the server answers.
    /// Later, a lost connection is made again by itself; until then each
    /// operation fails with `StoreError::Unavailable` within the operation
    /// timeout.
    ///
    /// # Errors
    ///
    /// An invalid configuration; a server that does not answer.
    pub async fn open(config: RedisConfig) -> Result<Self, RedisOpenError> {
        config.validate()?;
        let unreachable = |e: redis::RedisError| RedisOpenError::Unreachable {
            url: config.redacted_url(),
            reason: scrub(&e.to_string(), &config.url),
        };
        let client = redis::Client::open(config.url.as_str()).map_err(unreachable)?;
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.operation_timeout))
            .set_number_of_retries(2)
            .set_max_delay(config.connect_timeout);
        let connect = ConnectionManager::new_with_config(client, settings);
        let connection = match tokio::time::timeout(config.connect_timeout * 2, connect).await {
            Ok(connection) => connection.map_err(unreachable)?,
            Err(_) => {
                return Err(RedisOpenError::Unreachable {
                    url: config.redacted_url(),
                    reason: format!("no answer within {:?}", config.connect_timeout * 2),
                });
            }
        };
        Ok(Self {
            connection,
            keys: Keys::new(&config.prefix),
            config,
            cache_writer: std::sync::Arc::default(),
        })
    }

    /// From the environment (`RedisConfig::from_env`).
    ///
    /// # Errors
    ///
    /// As [`RedisConfig::from_env`] and [`RedisStore::open`].
    pub async fn from_env() -> Result<Self, RedisOpenError> {
        Self::open(RedisConfig::from_env()?).await
    }

    /// The settings.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// A handle on the shared connection (commands take `&mut`).
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// A driver error as a store error: a server that cannot be reached or
    /// did not answer in time is `Unavailable` (the operation may succeed
    /// later); a value of another type under our key, or one a script
    /// found malformed (`CORRUPT ...`), is `Corrupt` at `key`.
    pub(crate) fn fail(&self, key: &str, e: redis::RedisError) -> StoreError {
        let text = scrub(&e.to_string(), &self.config.url);
        if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
            return StoreError::Unavailable {
                backend: BACKEND,
                source: text.into(),
            };
        }
        match e.code() {
            Some("WRONGTYPE") => corrupt(key, "holds a value of another type (not written by Interlock)"),
            Some("CORRUPT") => corrupt(key, e.detail().unwrap_or("malformed fields").to_owned()),
            _ if matches!(
                e.kind(),
                redis::ErrorKind::UnexpectedReturnType | redis::ErrorKind::Parse
            ) =>
            {
                corrupt(key, text)
            }
            _ => StoreError::Backend {
                backend: BACKEND,
                source: text.into(),
            },
        }
    }
}

impl RedisStore {
    /// Every key matching `pattern` (`SCAN`, never `KEYS`: the server is
    /// not blocked).
    pub(crate) async fn scan(&self, pattern: &str) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection();
        let mut iter = redis::AsyncCommands::scan_match::<_, String>(&mut connection, pattern)
            .await
            .map_err(|e| self.fail(pattern, e))?;
        let mut keys = Vec::new();
        while let Some(key) = iter.next_item().await {
            keys.push(key.map_err(|e| self.fail(pattern, e))?);
        }
        Ok(keys)
    }
}
