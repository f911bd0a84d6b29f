//! The bank example's domain, shared by the binary and its tests.

pub mod domain;
