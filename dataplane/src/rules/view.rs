//! Glue to the control protocol: [`RulesetView`] and [`RuleCounter`] from a compiled
//! ruleset and its live counters.

use super::compile::CompiledRuleset;
use super::{json, print};
use crate::control::proto::{RuleCounter, RulesetView};

/// Per-rule counters of a compiled ruleset (every rule; see docs/rules.md for what a rule
/// without a `counter` statement counts).
pub fn rule_counters(rs: &CompiledRuleset) -> Vec<RuleCounter> {
    let src = rs.source();
    rs.counters()
        .into_iter()
        .enumerate()
        .filter_map(|(id, (packets, bytes))| {
            let (t, c, _, handle) = rs.rule_location(u32::try_from(id).ok()?)?;
            let table = &src.tables[t];
            Some(RuleCounter {
                family: table.family.name().to_owned(),
                table: table.name.clone(),
                chain: table.chains[c].name.clone(),
                handle,
                packets,
                bytes,
            })
        })
        .collect()
}

/// The running ruleset as text and JSON with live `counter` values, plus the counters.
pub fn ruleset_view(rs: &CompiledRuleset) -> RulesetView {
    let counts = rs.counters();
    let lookup = |t: usize, c: usize, r: usize| {
        rs.rule_id(t, c, r)
            .and_then(|id| counts.get(id as usize).copied())
    };
    RulesetView {
        generation: rs.generation(),
        text: print::to_text_with(rs.source(), &lookup),
        json: json::to_json_with(rs.source(), &lookup),
        counters: rule_counters(rs),
    }
}
