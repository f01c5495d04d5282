//! Limits on what a ruleset may cost, checked before the cost is paid.
//!
//! A ruleset arrives from the network (the REST API) and is compiled on `fwd`'s control
//! thread, then evaluated by every worker for every new connection. Each limit bounds one
//! way a small input turns into a large cost:
//!
//! | limit | bounds | checked |
//! |---|---|---|
//! | `ruleset_bytes` | the text (and the text a JSON ruleset prints to) | before parsing |
//! | `rules` | rules over all chains | after parsing, before compiling |
//! | `set_elements` | elements of named and anonymous sets together | after parsing |
//! | `rule_evaluations` | rules one packet may run through, summed over every path of `jump`/`goto` from every base chain | in the checker |
//! | `compiled_mib` | memory of the compiled ruleset: rule programs, interval tables, classifier entries, per-worker counters | while compiling, before each allocation |
//!
//! A named set is compiled once and shared by every rule that uses it, so its cost does
//! not multiply with the rules. The defaults fit the largest rulesets the appliance is
//! measured with (10 000 rules, sets of 100 000 addresses) with room to spare; raise them
//! in the `limits` section of the fwd configuration.

use serde::{Deserialize, Serialize};

/// The limits (see the module documentation). `Default` gives the documented defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest ruleset text in bytes (a JSON ruleset: the text it prints to). Default 4 MiB.
    pub ruleset_bytes: usize,
    /// Most rules in a ruleset. Default 65 536.
    pub rules: usize,
    /// Most set elements in a ruleset, named and anonymous sets together. Default 262 144.
    pub set_elements: usize,
    /// Most rule evaluations one packet may cost in the worst case: every rule of every
    /// chain it can reach through `jump` and `goto`, once per path, over every base chain.
    /// Default 65 536 (a ruleset without repeated jumps costs at most its rule count).
    pub rule_evaluations: u64,
    /// Most memory the compiled ruleset may take, in MiB (rule programs, interval tables,
    /// classifier entries, per-worker counters). Default 256.
    pub compiled_mib: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            ruleset_bytes: 4 << 20,
            rules: 65_536,
            set_elements: 262_144,
            rule_evaluations: 65_536,
            compiled_mib: 256,
        }
    }
}

impl Limits {
    /// Refuses a text longer than `ruleset_bytes` (before anything is parsed).
    pub fn check_text(&self, text: &str) -> Result<(), super::Error> {
        if text.len() > self.ruleset_bytes {
            return Err(super::Error {
                line: 1,
                col: 1,
                token: "ruleset".into(),
                msg: format!(
                    "the ruleset has {} bytes, more than the limit of {} (limits.ruleset_bytes)",
                    text.len(),
                    self.ruleset_bytes
                ),
            });
        }
        Ok(())
    }

    /// The compile budget in bytes.
    pub fn compiled_bytes(&self) -> u64 {
        u64::try_from(self.compiled_mib)
            .unwrap_or(u64::MAX)
            .saturating_mul(1 << 20)
    }
}

/// Bytes left of the compile budget; [`Budget::charge`] is called before an allocation.
#[derive(Debug)]
pub(crate) struct Budget {
    left: u64,
    limit: u64,
}

impl Budget {
    pub(crate) fn new(limits: &Limits) -> Self {
        Budget {
            left: limits.compiled_bytes(),
            limit: limits.compiled_bytes(),
        }
    }

    /// Takes `bytes` from the budget; false (and nothing taken) when they do not fit.
    pub(crate) fn charge(&mut self, bytes: usize) -> bool {
        let b = u64::try_from(bytes).unwrap_or(u64::MAX);
        match self.left.checked_sub(b) {
            Some(l) => {
                self.left = l;
                true
            }
            None => false,
        }
    }

    /// The message of an exhausted budget.
    pub(crate) fn exceeded(&self) -> String {
        format!(
            "the compiled ruleset would take more than {} MiB (limits.compiled_mib)",
            self.limit >> 20
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{compile_with, json, load_text, load_text_with, parse, tests::ports};

    /// `chains` regular chains, each jumping `fanout` times to the next (issue 15's
    /// reproduction: 16 chains of 4 jumps is 4^15 evaluations per packet).
    fn jump_fan(chains: usize, fanout: usize) -> String {
        let mut s = String::from(
            "table inet j {\n chain input {\n  type filter hook input priority filter; policy accept;\n",
        );
        s += &"  jump c1\n".repeat(fanout);
        s += " }\n";
        for i in 1..chains {
            s += &format!(" chain c{i} {{\n");
            if i + 1 < chains {
                s += &format!("  jump c{}\n", i + 1).repeat(fanout);
            } else {
                s += "  counter\n";
            }
            s += " }\n";
        }
        s + "}\n"
    }

    #[test]
    fn jump_paths_are_bounded_not_only_their_depth() {
        let e = load_text(&jump_fan(16, 4), &ports(), 1).unwrap_err();
        assert!(e.msg.contains("limits.rule_evaluations"), "{e}");
        assert_eq!((e.line, e.col), (2, 2), "{e}");
        // The same depth without fan-out, and a small fan-out, are fine.
        load_text(&jump_fan(16, 1), &ports(), 1).unwrap();
        load_text(&jump_fan(6, 4), &ports(), 1).unwrap();
        // The limit is configurable.
        let tight = Limits {
            rule_evaluations: 100,
            ..Limits::default()
        };
        assert!(load_text_with(&jump_fan(6, 4), &ports(), 1, &tight).is_err());
    }

    /// A set of `n` distinct, non-adjacent IPv4 addresses used by `rules` rules.
    fn shared_set(n: usize, rules: usize) -> String {
        let els: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    "198.{}.{}.{}",
                    18 + i / 32_512,
                    (i / 127) % 256,
                    1 + 2 * (i % 127)
                )
            })
            .collect();
        let mut s = format!(
            "table inet t {{\n set big {{\n  type ipv4_addr\n  elements = {{ {} }}\n }}\n chain input {{\n  type filter hook input priority filter; policy accept;\n",
            els.join(", ")
        );
        for i in 0..rules {
            s += &format!("  ip saddr @big tcp dport {} accept\n", 1000 + i);
        }
        s + " }\n}\n"
    }

    #[test]
    fn a_named_set_is_compiled_once_for_all_its_rules() {
        // Issue 15: 200 rules on a 20 000-element set took 250 MB, one copy per rule.
        let c = load_text(&shared_set(20_000, 200), &ports(), 2).unwrap();
        assert_eq!(c.rule_count(), 200);
        // One table for the set, one per rule for its own `tcp dport`.
        assert_eq!(c.interval_tables(), 1 + 200);
        // Within a 16 MiB budget (a copy per rule would need 200 x 20 000 x 32 B = 122 MiB).
        let small = Limits {
            compiled_mib: 16,
            ..Limits::default()
        };
        load_text_with(&shared_set(20_000, 200), &ports(), 2, &small).unwrap();
    }

    #[test]
    fn the_compile_budget_is_charged_before_allocating() {
        // Anonymous sets are per rule: 300 rules of 2 000 elements each.
        let els: Vec<String> = (0..2000).map(|i| (2 * i + 1).to_string()).collect();
        let mut s = String::from("table inet t {\n chain c {\n");
        for _ in 0..300 {
            s += &format!("  tcp dport {{ {} }} accept\n", els.join(", "));
        }
        s += " }\n}\n";
        let rs = parse::parse(&s).unwrap();
        let tight = Limits {
            compiled_mib: 8,
            set_elements: 1 << 20,
            ..Limits::default()
        };
        let e = compile_with(&rs, &ports(), 1, &tight).unwrap_err();
        assert!(e.msg.contains("limits.compiled_mib"), "{e}");
        let roomy = Limits {
            set_elements: 1 << 20,
            ..Limits::default()
        };
        compile_with(&rs, &ports(), 1, &roomy).unwrap();
    }

    #[test]
    fn rules_elements_and_bytes_are_limited() {
        let l = Limits {
            rules: 10,
            set_elements: 100,
            ruleset_bytes: 10_000,
            ..Limits::default()
        };
        let e = load_text_with(&shared_set(10, 11), &ports(), 1, &l).unwrap_err();
        assert!(
            e.msg.contains("11 rules") && e.msg.contains("limits.rules"),
            "{e}"
        );
        let e = load_text_with(&shared_set(101, 1), &ports(), 1, &l).unwrap_err();
        assert!(e.msg.contains("limits.set_elements"), "{e}");
        let e = load_text_with(&shared_set(2000, 1), &ports(), 1, &l).unwrap_err();
        assert!(e.msg.contains("limits.ruleset_bytes"), "{e}");
        // The defaults take the ruleset, and one ten times larger in rules.
        load_text(&shared_set(20_000, 2000), &ports(), 1).unwrap();
        // JSON is counted the same way (after reading, before compiling).
        let rs = parse::parse(&shared_set(10, 11)).unwrap();
        let back = json::from_json(&json::to_json(&rs)).unwrap();
        assert!(compile_with(&back, &ports(), 1, &l).is_err());
    }
}
