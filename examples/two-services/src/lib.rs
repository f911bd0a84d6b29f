//! Two services that share nothing but a broker: `orders` records orders
//! in its own SQLite event store and publishes them through its outbox;
//! `shipping` consumes them into a read model (rows written in the
//! transaction that saves its checkpoint) and a saga that creates a
//! shipment in its own event store.
//!
//! The broker is chosen by `INTERLOCK_TRANSPORT` (`nats`, the default, or
//! `kafka`), configured by its own variables (`INTERLOCK_NATS_URL`, ...,
//! `INTERLOCK_KAFKA_BROKERS`, ...).

pub mod orders;
pub mod shipping;
pub mod transport;
