//! Support code shared by dataplane's integration tests.
pub mod kernel_diff;
#[cfg(feature = "dpdk")]
pub mod lab;
pub use fwd_testkit::netns;
