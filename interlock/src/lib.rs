#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The facade: the runtime (`interlock-core`) and the backends the user's
// features ask for, under one crate. Nothing is implemented here but the
// URL opener.

mod open;

#[doc(inline)]
pub use interlock_core::{
    Aggregate, AggregateConfig, AggregateId, Application, ApplicationBuilder, AsOf, Backoff, BuildError, CausationId,
    Command, CommandError, CommandFingerprint, CommandId, CommandLayer, Consistency, CorrelationId, DispatchOptions,
    Dispatched, Event, EventDecodeError, EventId, EventMeta, FailurePolicy, Fingerprinter, HandledCommand,
    HandledQuery, HandlerFailure, InvalidTenantId, LoadError, Loaded, ModelStorage, Peer, Position, Projection,
    ProjectionConfig, QueryError, Reply, Saga, SagaContext, SagaResult, SchemaVersion, StreamId, SubscriberConfig,
    SubscriberHandle, SubscriberStatus, SubscriptionError, TenantHandle, TenantId, Timestamp, TimestampParseError,
    Ulid, Version, View,
};
#[doc(inline)]
pub use interlock_core::{
    aggregate, applies_event, handles_command, handles_event, handles_query, projection, saga, saga_compensation,
    saga_deadline, saga_step,
};
#[doc(inline)]
pub use interlock_core::{docs, middleware, prelude, scenario, store};

#[doc(inline)]
pub use crate::open::{OpenError, open};

#[cfg(feature = "testing")]
#[doc(hidden)]
pub use interlock_core::__conformance_tests;
/// The exported conformance suites for backend implementers.
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
#[doc(inline)]
pub use interlock_core::testing;
#[cfg(feature = "testing")]
#[doc(inline)]
pub use interlock_core::{
    aggregate_cache_conformance, checkpoint_store_conformance, dead_letter_store_conformance, event_store_conformance,
    idempotency_store_conformance, saga_state_store_conformance, snapshot_store_conformance, transport_conformance,
};

/// The SQL backends (features `sqlite` and `postgres`).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub mod sql {
    #[doc(inline)]
    pub use interlock_sql::{ConfigError, Health, SqlStore, Statistics};
    #[cfg(feature = "postgres")]
    #[doc(inline)]
    pub use interlock_sql::{PostgresConfig, PostgresStore, PostgresTransaction};
    #[cfg(feature = "sqlite")]
    #[doc(inline)]
    pub use interlock_sql::{SqliteConfig, SqliteLocation, SqliteStore, SqliteTransaction};
}

/// The MongoDB backend (feature `mongodb`).
#[cfg(feature = "mongodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "mongodb")))]
pub mod mongodb {
    #[doc(inline)]
    pub use interlock_mongodb::{
        MongoConfig, MongoConfigError, MongoHealth, MongoOpenError, MongoStatistics, MongoStore,
    };
}

/// The Redis backend (feature `redis`): idempotency, saga state,
/// snapshots and checkpoints beside a durable event store.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis {
    #[doc(inline)]
    pub use interlock_redis::{
        RedisConfig, RedisConfigError, RedisHealth, RedisOpenError, RedisStatistics, RedisStore,
    };
}

/// The NATS JetStream event transport (feature `nats`): committed events
/// to other services, consumed by durable pull consumers.
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats {
    #[doc(inline)]
    pub use interlock_nats::{NatsConfig, NatsConfigError, NatsError, NatsHealth, NatsTransport};
}

/// The Kafka event transport (feature `kafka`): committed events to
/// other services, consumed by consumer groups.
#[cfg(feature = "kafka")]
#[cfg_attr(docsrs, doc(cfg(feature = "kafka")))]
pub mod kafka {
    #[doc(inline)]
    pub use interlock_kafka::{KafkaConfig, KafkaConfigError, KafkaError, KafkaHealth, KafkaTransport};
}

/// What generated code reaches through absolute paths. Not public API.
#[doc(hidden)]
pub use interlock_core::__private;
