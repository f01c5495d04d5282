//! The ruleset side of the server: the generation publisher and its compile inputs,
//! replacement (limits, persistence, publication) and the SIGHUP reload.

use std::path::PathBuf;

use super::{RULESET_FILE, StateDir};
use crate::control::proto::{ControlError, RulesetSummary};
use crate::nat::NodeSlice;
use crate::nat::node::check_ruleset;
use crate::rules::limits::Limits;
use crate::rules::{self, CompiledRuleset, PortsByName, Publisher};

/// The ruleset side of the server: the generation publisher, what compiling needs, and
/// the file SIGHUP reloads.
#[derive(Debug)]
pub struct RulesetState {
    pub(super) publisher: Publisher,
    pub(super) ports: PortsByName,
    pub(super) workers: usize,
    pub(super) file: Option<PathBuf>,
    pub(super) limits: Limits,
    /// This box's NAT port slice (HA active/active): every ruleset must have SNAT /
    /// masquerade port ranges it can split (`nat::node::check_ruleset`).
    pub(super) nat_node: NodeSlice,
    /// The rule handles each table has given out (never given twice; `fwd` restarts
    /// number from the persisted ruleset's).
    pub(super) handle_marks: rules::edit::HandleMarks,
}

/// A ruleset error as the protocol carries it (line and column for text; the JSON path as
/// `field` for JSON).
pub fn ruleset_error(e: &rules::Error) -> ControlError {
    crate::control::view::control_error(e)
}

/// Tables, chains and rules of a ruleset (what a replacement reports before and after).
pub fn summary(rs: &rules::Ruleset) -> RulesetSummary {
    let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
    let chains = rs.tables.iter().flat_map(|t| &t.chains);
    RulesetSummary {
        tables: n(rs.tables.len()),
        chains: n(chains.clone().count()),
        rules: n(chains.map(|c| c.rules.len()).sum()),
    }
}

impl RulesetState {
    /// The first generation: the persisted ruleset if the state directory has one, else
    /// `file` (the config's `ruleset`), else the empty ruleset (accept everything).
    /// Errors are `FILE:LINE:COL: message`; a persisted ruleset that cannot be read or
    /// compiled stops the start (it is never skipped in favour of the config's file).
    pub fn load(
        state: &StateDir,
        file: Option<PathBuf>,
        ports: PortsByName,
        workers: usize,
        limits: Limits,
    ) -> Result<Self, String> {
        Self::load_sliced(state, file, ports, workers, limits, NodeSlice::default())
    }

    /// [`Self::load`] on a box that takes `nat_node`'s slice of the NAT port ranges (HA
    /// active/active): a ruleset with a range it cannot split is refused too.
    pub fn load_sliced(
        state: &StateDir,
        file: Option<PathBuf>,
        ports: PortsByName,
        workers: usize,
        limits: Limits,
        nat_node: NodeSlice,
    ) -> Result<Self, String> {
        let (path, text) = match state.read_text(RULESET_FILE)? {
            Some(t) => (Some(state.path(RULESET_FILE)), t),
            None => match &file {
                Some(f) => (
                    Some(f.clone()),
                    std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?,
                ),
                None => (None, String::new()),
            },
        };
        let compiled = rules::load_text_with(&text, &ports, workers, &limits)
            .and_then(|c| check_ruleset(c.source(), &nat_node).map(|()| c))
            .map_err(|e| {
                let name = path
                    .as_ref()
                    .map_or("ruleset".into(), |p| p.display().to_string());
                format!("{name}:{}:{}: {} (at `{}`)", e.line, e.col, e.msg, e.token)
            })?;
        Ok(RulesetState {
            publisher: Publisher::new(compiled),
            ports,
            workers,
            file,
            limits,
            nat_node,
            handle_marks: rules::edit::HandleMarks::default(),
        })
    }

    /// The publisher (to create the workers' handles at start).
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// The running generation.
    pub fn current(&self) -> std::sync::Arc<CompiledRuleset> {
        self.publisher.current()
    }
}
