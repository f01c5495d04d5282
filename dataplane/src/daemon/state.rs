//! What the daemon starts from besides the configuration: the state directory's
//! tunables and ruleset (also what `fwd check CONFIG` reads), the tunable validator, the
//! ports by name.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::conntrack::{Tunables, check_tunable};
use crate::control::server::{RulesetState, StateDir};
use crate::rules::PortsByName;

/// The ports' names and indexes, for resolving `iif`/`oif` in a ruleset.
pub fn ports_by_name(cfg: &Config) -> PortsByName {
    cfg.ports
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((p.name.clone(), u16::try_from(i).ok()?)))
        .collect()
}

/// The tunable validator of this configuration: names and ranges, and `nf_conntrack_max`
/// within the connection tables `conntrack.max` sized (each worker's table holds its share
/// of it, rounded up, as [`crate::control::server::worker_share`] splits any smaller maximum).
pub fn tunable_check(cfg: &Config) -> impl Fn(&str, u64) -> Result<(), String> + Send + 'static {
    let capacity = cfg.conntrack.max;
    move |name: &str, value: u64| {
        check_tunable(name, value)?;
        if name == "nf_conntrack_max" && value > capacity {
            return Err(format!(
                "{value} is more than the connection tables hold ({capacity}, conntrack.max \
                 in the configuration)"
            ));
        }
        Ok(())
    }
}

/// Reads the state directory strictly (errors are `FILE:LINE:COL: message`; nothing is
/// skipped): the effective tunables — every one at its Linux default (so `tuning_get` lists
/// them all, like `sysctl net.netfilter`), overlaid with the config's, then the persisted
/// ones — and the first ruleset generation.
pub fn load_state(
    cfg: &Config,
    state: &StateDir,
) -> Result<(BTreeMap<String, u64>, RulesetState), String> {
    let defaults = Tunables::default();
    let mut tunables: BTreeMap<String, u64> = crate::conntrack::tunables::NAMES
        .iter()
        .filter_map(|n| Some(((*n).to_string(), defaults.get(n)?)))
        .collect();
    tunables.extend(cfg.conntrack.sysctls());
    tunables.extend(state.load_tunables(&tunable_check(cfg))?);
    let rules = RulesetState::load_sliced(
        state,
        cfg.ruleset.clone(),
        ports_by_name(cfg),
        cfg.workers.cores.len(),
        cfg.limits,
        cfg.nat_node_slice(),
    )?;
    Ok((tunables, rules))
}
