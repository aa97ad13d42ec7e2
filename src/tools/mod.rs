//! Tools that look at both halves of a pipeline from outside: built on the wire contract,
//! the configuration, the position store and the metrics endpoint, never on a stage's
//! internals.

pub mod status;
pub mod verify;
