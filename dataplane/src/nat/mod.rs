//! NAT: SNAT / masquerade / DNAT bindings, port allocation aligned with flow ownership
//! (RSS), and the reply tuple a NATed connection is tracked under.
//!
//! `types.rs` holds the contract between the rule language (which decides *what* NAT a new
//! connection gets: [`NatAction`]) and the NAT engine (which turns that into a translated
//! reply tuple, chooses ports, and rewrites packets). See `docs/architecture.md`, "Flow
//! ownership", for why the port choice depends on the owning worker.

pub mod alloc;
pub mod apply;
pub mod node;
pub mod pool;
pub mod rss;
mod types;

pub use alloc::{
    Binding, MineMasks, NatEnv, NatStats, NatTable, PortAllocator, Steering, TupleSet,
};
pub use apply::{CtNat, apply};
pub use node::NodeSlice;
pub use pool::{PoolKey, PortPools};
pub use rss::{Owner, SYMMETRIC_RSS_KEY, Toeplitz};

pub use types::{NatAction, NatError, NatFlags, NatKind, NatRange, Tuple};
