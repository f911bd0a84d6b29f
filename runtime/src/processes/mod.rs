//! Processes: what runs on the events of the log.

pub(crate) mod relay;
