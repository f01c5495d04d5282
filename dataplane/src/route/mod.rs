//! Layer 3: the route table (connected and static routes, longest-prefix match, the
//! appliance's own addresses) and neighbour resolution (ARP / IPv6 ND state machine for the
//! slow path, immutable snapshots for workers).
pub mod adj;
pub mod neigh;
pub mod table;

pub use adj::{AdjTable, Adjacency};
pub use neigh::{Mac, NeighConfig, NeighborCache, NeighborSnapshot};
pub use table::{
    NextHop, PortIndex, Prefix, Route, RouteError, RouteTable, RouteTableBuilder, Via,
    addr_to_u128, prefix_mask,
};
