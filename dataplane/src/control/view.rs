//! The ruleset as the control protocol shows it: [`RulesetView`] and [`RuleCounter`] from
//! a compiled ruleset and its live counters, and [`control_error`], the one conversion of
//! a ruleset error into the protocol's `BadRuleset` answer.

use crate::control::proto::{ControlError, ErrorCode, RuleCounter, RulesetView};
use crate::rules::{self, CompiledRuleset, json, print};

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

/// The largest a [`ruleset_view`] of this ruleset can be once serialized: its size now
/// plus every counter at its widest (20 digits for each number of `counter packets N
/// bytes M`, in the text, the JSON and the counter list).
pub fn max_view_bytes(rs: &CompiledRuleset) -> usize {
    let now = serde_json::to_vec(&ruleset_view(rs)).map_or(usize::MAX, |v| v.len());
    now.saturating_add(rs.rule_count().saturating_mul(6 * 20))
}

/// A ruleset error as the control protocol's `BadRuleset` answer: line and column for
/// text, the JSON path in `field` for JSON.
pub fn control_error(e: &rules::Error) -> ControlError {
    if e.line > 0 {
        ControlError::new(ErrorCode::BadRuleset, e.to_string()).at(e.line, e.col)
    } else {
        // JSON: no position; the path is the field.
        ControlError::new(ErrorCode::BadRuleset, format!("{}: {}", e.token, e.msg))
            .field(e.token.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::proto::RulesetSource;
    use crate::rules::PortsByName;

    /// What the server's replace does with a source, minus publishing: read it, compile
    /// it, convert an error with [`control_error`].
    fn load(
        src: &RulesetSource,
        ports: &PortsByName,
        workers: usize,
    ) -> Result<CompiledRuleset, ControlError> {
        let rs = match src {
            RulesetSource::Text(t) => rules::parse::parse(t),
            RulesetSource::Json(j) => json::from_json(j),
        }
        .map_err(|e| control_error(&e))?;
        rules::compile(&rs, ports, workers).map_err(|e| control_error(&e))
    }

    #[test]
    fn load_reports_text_and_json_errors_with_their_location() {
        let ports = rules::tests::ports();
        let e = load(
            &RulesetSource::Text(
                "table ip t {\n chain c {\n  ct helper set \"ftp\"\n }\n}\n".into(),
            ),
            &ports,
            1,
        )
        .unwrap_err();
        assert_eq!(
            (e.code, e.line, e.column),
            (ErrorCode::BadRuleset, Some(3), Some(17))
        );
        let j = serde_json::json!({"nftables": [
            {"table": {"family": "ip", "name": "t"}},
            {"chain": {"family": "ip", "table": "t", "name": "c"}},
            {"rule": {"family": "ip", "table": "t", "chain": "c", "expr": [{"queue": {"num": 1}}]}}
        ]});
        let e = load(&RulesetSource::Json(j), &ports, 1).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("nftables[2].rule.expr[0]"));
        assert!(e.message.contains("not supported"), "{}", e.message);
        let ok = load(&RulesetSource::Text(rules::tests::ISSUE.into()), &ports, 2).unwrap();
        assert_eq!(ok.rule_count(), 27);
    }
}
