//! The domain layer: what users write and the macros target — events,
//! commands, aggregates, ids and the services handlers take. Depends on
//! nothing else in the crate.

pub(crate) mod aggregate;
pub(crate) mod backoff;
pub(crate) mod command;
pub(crate) mod event;
pub(crate) mod fingerprint;
pub(crate) mod ids;
pub(crate) mod key;
pub(crate) mod meta;
pub(crate) mod services;
pub(crate) mod unwind;
pub(crate) mod view;
