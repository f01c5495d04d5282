//! The control-socket server of `fwd`: JSON Lines over a Unix socket (mode 0600), served
//! by one non-worker thread (see `docs/control-protocol.md` and `docs/fwd.md`).
//!
//! The server is generic over a [`Backend`] (what it needs from the running daemon: port
//! and worker counters, and one command/reply channel per worker), so it is tested without
//! EAL. Per-worker requests are fanned out to every worker's command ring and the answers
//! merged; a listing cursor encodes `worker:cursor`. Tunables are validated as a whole,
//! persisted atomically in the state directory, then applied to every worker.
//!
//! One thread, non-blocking sockets, polled every 2 ms when idle: the volume is small and
//! this keeps `fwd` free of an async runtime. Subscriptions stay open and receive
//! [`EventLine`](crate::control::proto::EventLine)s drained from the workers every poll.
//!
//! The files: `dispatch.rs` (the [`Backend`] trait, settings, limits, the [`Server`] and
//! its request dispatch), `fanout.rs` (commands to every worker with a deadline, tunables,
//! events), `conntrack.rs` (listing with cursors, deletion, sliced counts; the filter it
//! evaluates itself is `control/filter.rs`), `ruleset.rs` (the ruleset state and its
//! loading) and `replace.rs` (replacement and SIGHUP reload), `socket.rs` (the socket
//! loop, connections, binding). The state directory is `control/state.rs`.

mod conntrack;
mod dispatch;
mod elements;
mod expect;
mod fanout;
mod ha;
mod ha_state;
mod replace;
mod ruleset;
mod socket;

pub use super::state::{RULESET_FILE, StateDir, TUNABLES_FILE};
pub use crate::control::filter::CompiledFilter;
pub use dispatch::{
    Backend, COUNT_SLICE, MAX_CONNECTIONS, MAX_SUBSCRIBERS, MAX_VIEW, Server, ServerConfig,
    TunableValidator,
};
pub use expect::{expect_counters, expectation_view};
pub use fanout::worker_share;
pub use ruleset::{RulesetState, ruleset_error, summary};
pub use socket::bind;

#[cfg(test)]
mod tests;
