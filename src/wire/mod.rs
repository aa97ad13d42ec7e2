//! The contract between the two halves of the pipeline: how topics and subjects are named,
//! what a record's bytes and its schema's fields look like, and how both halves reach the
//! schema registry. The source side writes by it and the loader reads by it; neither imports
//! the other, and tools that span both (a checker of index against table) build on it too.

pub mod envelope;
pub mod registry;
pub mod subject;
pub mod topic;
