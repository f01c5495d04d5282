//! The rulesets and configs that `perf/` and `deploy/` feed to `fwd`, checked with the data
//! plane's own parsers (the same code `fwd check` runs), so they are known good before a
//! `fwd` binary exists. `deploy/ci/check.sh` runs `fwd check` on them once it does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use dataplane::config::Config;
use dataplane::rules;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The ports the perf fwd config (perf/lib.sh) and the skeleton name.
fn ports() -> rules::PortsByName {
    BTreeMap::from([("lan".to_string(), 0), ("wan".to_string(), 1)])
}

fn compile(name: &str, text: &str) {
    if let Err(e) = rules::load_text(text, &ports(), 2) {
        panic!("{name}: {e:?}");
    }
}

#[test]
fn perf_rulesets_compile() {
    let dir = repo().join("perf/rulesets");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "nft") {
            compile(
                &p.display().to_string(),
                &std::fs::read_to_string(&p).unwrap(),
            );
            n += 1;
        }
    }
    assert!(n >= 1, "no ruleset in {}", dir.display());
    // The harness can fail: a form the appliance cannot honour is refused.
    let helper = "table inet f { chain c { type filter hook forward priority 0; tcp dport 21 ct helper set \"ftp\" } }";
    assert!(rules::load_text(helper, &ports(), 2).is_err());
}

#[test]
fn generated_rule_count_rulesets_compile_with_the_requested_size() {
    for count in [10usize, 1000] {
        let out = Command::new("bash")
            .arg(repo().join("perf/gen-rules.sh"))
            .arg(count.to_string())
            .output()
            .expect("run gen-rules.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let rules = text
            .lines()
            .filter(|l| l.trim_end().ends_with("accept"))
            .count();
        // N rules in the forward chain plus the `ct state established,related accept`.
        assert_eq!(rules, count + 1, "gen-rules.sh {count}");
        compile(&format!("gen-rules.sh {count}"), &text);
    }
    let bad = Command::new("bash")
        .arg(repo().join("perf/gen-rules.sh"))
        .arg("0")
        .output()
        .unwrap();
    assert!(!bad.status.success(), "0 rules is refused");
}

#[test]
fn deploy_config_skeleton_is_valid() {
    let path = repo().join("deploy/skeleton/fwd.yaml");
    let cfg = Config::load(&path, &|_, _| Ok(())).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = cfg.ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["wan", "lan"]);
    assert_eq!(cfg.workers.cores, [2, 3]);
    assert!(
        cfg.ruleset.is_none(),
        "the skeleton names no ruleset until one is written"
    );
}
