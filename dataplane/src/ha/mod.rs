//! High availability: connection-state sync between two fwd boxes (docs/ha.md).
//!
//! - [`wire`]: the sync datagram (versioned header, CRC-32, batched records).
//! - [`ftfw`]: reliable delivery as conntrackd's FT-FW mode does it (sequence numbers,
//!   ACK, NACK and retransmission from a bounded queue, loss counters, resync).
//!
//! Pure code: no sockets here. The sync daemon (`fwmgmt --ha`, `mgmt/src/ha.rs`) does the
//! I/O, and fwd applies what it receives through the control socket (`ha_apply`,
//! `ha_commit`), into its workers' tables with [`crate::conntrack::Table::apply_synced`].

pub mod ftfw;
pub mod wire;
