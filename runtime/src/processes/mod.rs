//! Processes: what runs on the events of the log — the subscriber engine,
//! projections, sagas and their deadlines, relays to transports. Depends on
//! the domain, the seams and the pipeline (sagas send commands through its
//! command bus).

pub(crate) mod inline;
pub(crate) mod projection;
pub(crate) mod relay;
pub(crate) mod saga;
pub(crate) mod subscriber;
