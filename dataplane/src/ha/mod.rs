//! High availability: connection-state sync between two fwd boxes (docs/ha.md).
//!
//! - [`wire`]: the sync datagram (versioned header, CRC-32, batched records).
//! - [`cache`]: the backup's external cache of synced entries.
//! - [`line`]: the binary sync path's two control lines, written without serde_json.
//! - [`ftfw`]: reliable delivery as conntrackd's FT-FW mode does it (sequence numbers,
//!   ACK, NACK and retransmission from a bounded queue, loss counters, resync).
//!
//! Pure code: no sockets here. The sync daemon (`fwmgmt --ha`, `mgmt/src/ha.rs`) does the
//! I/O, and fwd applies what it receives through the control socket (`ha_apply`,
//! `ha_commit`), into its workers' tables with [`crate::conntrack::Table::apply_synced`].

pub mod announce;
pub mod cache;
pub mod ftfw;
pub mod line;
pub mod wire;

use crate::conntrack::Table;
use wire::Record;

/// Applies synced records to a table (the worker's `CtSync` command): upserts with
/// [`Table::apply_synced`], destroys with [`Table::remove_synced`]. Returns (applied,
/// refused); a destroy of an entry not tracked here is refused.
pub fn apply_records(t: &mut Table, records: &[Record], adopt: bool, now: u64) -> (u64, u64) {
    let mut ok = 0;
    for r in records {
        let done = match r {
            Record::Upsert { entry, .. } => t.apply_synced(entry, adopt, now).is_ok(),
            Record::Destroy(k) => t.remove_synced(k, now),
            // The control thread applies these to the shared expectation table; a worker
            // is never handed one.
            Record::Expect(_) | Record::ExpectDestroy(_) => false,
        };
        ok += u64::from(done);
    }
    (ok, records.len() as u64 - ok)
}
