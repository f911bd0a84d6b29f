//! The command pipeline: the repository (cache -> snapshot -> events,
//! fold, snapshot policy), idempotency, the command loop, and dispatch as a
//! tower `Service` stack. Depends on the domain and the seams only.

pub(crate) mod bus;
pub(crate) mod combine;
pub(crate) mod config;
pub(crate) mod dispatcher;
pub(crate) mod error;
pub(crate) mod idempotency;
pub(crate) mod middleware;
pub(crate) mod options;
pub(crate) mod repository;
pub(crate) mod rewrite;
pub(crate) mod scoped;
pub(crate) mod turns;
pub(crate) mod views;
