//! Support code shared by dataplane's integration tests.
pub mod kernel_diff;
pub mod netns;
