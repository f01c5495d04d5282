//! Support code shared by dataplane's integration tests.
pub mod netns;
