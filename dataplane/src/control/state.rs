//! The state directory (`state_dir`, default `/var/lib/fwd`): the applied ruleset
//! (`ruleset.nft`, text) and the changed tunables (`tunables.json`).
//!
//! Files are replaced atomically (temporary file, fsync, rename, fsync of the directory),
//! so a crash leaves the old or the new content, never a mix. Nothing is written that
//! `fwd` could not read back: a ruleset is persisted only as text that parses to the same
//! ruleset (`rules::to_text_verified`), tunables only after the workers took them.
//! At start the directory is read strictly: a file that does not parse or holds a value
//! the server would refuse stops `fwd` with `FILE:LINE:COLUMN: message`, never a silent
//! fallback to defaults.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Write};
use std::path::PathBuf;

use serde::de::{Deserializer, MapAccess, Visitor};

/// File name of the persisted tunables (JSON object, sysctl name to value).
pub const TUNABLES_FILE: &str = "tunables.json";
/// File name of the persisted ruleset (nftables text).
pub const RULESET_FILE: &str = "ruleset.nft";

/// Validates one tunable (sysctl name, value); `Err` says why it is refused.
pub type TunableCheck<'a> = &'a dyn Fn(&str, u64) -> Result<(), String>;

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// The directory (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StateDir { dir: dir.into() }
    }

    /// Path of a file in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Replaces `name` with `bytes` atomically.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(".{name}.tmp"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.path(name))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// Contents of `name`, `None` when it does not exist.
    pub fn read(&self, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(name)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `name` as UTF-8 text (`None` when it does not exist); an error names the file and,
    /// for bad UTF-8, the line and column of the first bad byte.
    pub fn read_text(&self, name: &str) -> Result<Option<String>, String> {
        let path = self.path(name);
        let Some(bytes) = self
            .read(name)
            .map_err(|e| format!("{}: {e}", path.display()))?
        else {
            return Ok(None);
        };
        String::from_utf8(bytes).map(Some).map_err(|e| {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
            let col = good.len() - good.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
            format!("{}:{line}:{col}: not UTF-8 text", path.display())
        })
    }

    /// The persisted tunables (empty when there are none), each checked with `check`.
    /// Errors are `FILE:LINE:COLUMN: message` (the position is serde_json's, just after
    /// the offending value).
    pub fn load_tunables(&self, check: TunableCheck<'_>) -> Result<BTreeMap<String, u64>, String> {
        let path = self.path(TUNABLES_FILE);
        let Some(text) = self.read_text(TUNABLES_FILE)? else {
            return Ok(BTreeMap::new());
        };
        let mut de = serde_json::Deserializer::from_str(&text);
        let refused = std::cell::Cell::new(None);
        let map = de
            .deserialize_map(TunablesVisitor {
                check,
                refused: &refused,
            })
            .and_then(|m| de.end().map(|()| m))
            .map_err(|e| {
                let msg = e.to_string();
                let suffix = format!(" at line {} column {}", e.line(), e.column());
                let msg = msg.strip_suffix(&suffix).unwrap_or(&msg);
                // A refused value: point at its key (serde_json's position is past it).
                let (line, col) = refused
                    .take()
                    .and_then(|name| position_of(&text, &format!("\"{name}\"")))
                    .unwrap_or((e.line(), e.column()));
                format!("{}:{line}:{col}: {msg}", path.display())
            })?;
        Ok(map)
    }
}

/// Reads `{"name": value, ...}`, checking each pair as it is read so that serde_json
/// reports the position of a refused one.
struct TunablesVisitor<'a> {
    check: TunableCheck<'a>,
    /// The name of a refused value, for the error's position.
    refused: &'a std::cell::Cell<Option<String>>,
}

/// 1-based line and column of the first `needle` in `text`.
fn position_of(text: &str, needle: &str) -> Option<(usize, usize)> {
    let at = text.find(needle)?;
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = at - before.rfind('\n').map_or(0, |p| p + 1) + 1;
    Some((line, col))
}

impl<'de> Visitor<'de> for TunablesVisitor<'_> {
    type Value = BTreeMap<String, u64>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object of sysctl names to non-negative integers")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        let mut out = BTreeMap::new();
        while let Some(name) = map.next_key::<String>()? {
            // Checked inside the value's deserializer: the error's position is the value's.
            let value = map
                .next_value_seed(Checked {
                    name: &name,
                    check: self.check,
                })
                .inspect_err(|_| self.refused.set(Some(name.clone())))?;
            if out.insert(name.clone(), value).is_some() {
                return Err(A::Error::custom(format!("{name} is given twice")));
            }
        }
        Ok(out)
    }
}

/// One tunable value, checked as soon as it is read.
struct Checked<'a> {
    name: &'a str,
    check: TunableCheck<'a>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Checked<'_> {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        use serde::Deserialize;
        use serde::de::Error;
        let v = u64::deserialize(d)?;
        (self.check)(self.name, v).map_err(|m| {
            // check_tunable's messages name the tunable already.
            if m.starts_with(self.name) {
                D::Error::custom(m)
            } else {
                D::Error::custom(format!("{}: {m}", self.name))
            }
        })?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fwd-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn tunables_are_read_strictly_with_their_position() {
        let d = dir("tun");
        let st = StateDir::new(&d);
        let check: TunableCheck<'_> = &crate::conntrack::check_tunable;
        assert!(st.load_tunables(check).unwrap().is_empty());
        // Issue 15: a refused value in the file was skipped at start (and the ones after it).
        std::fs::write(
            d.join(TUNABLES_FILE),
            "{\n  \"nf_conntrack_icmp_timeout\": 5,\n  \"nf_conntrack_udp_timeout\": 0\n}\n",
        )
        .unwrap();
        let e = st.load_tunables(check).unwrap_err();
        assert!(
            e.contains("tunables.json:3:3: nf_conntrack_udp_timeout: 0 is out of range")
                && e.contains("nf_conntrack_udp_timeout: 0 is out of range"),
            "{e}"
        );
        std::fs::write(
            d.join(TUNABLES_FILE),
            "{\"nf_conntrack_udp_timeout\": \"x\"}",
        )
        .unwrap();
        assert!(st.load_tunables(check).unwrap_err().contains(":1:"));
        std::fs::write(d.join(TUNABLES_FILE), "{\"nf_conntrack_udp_timeout\": 7} x").unwrap();
        assert!(st.load_tunables(check).is_err());
        std::fs::write(d.join(TUNABLES_FILE), "{\"nf_conntrack_udp_timeout\": 7}\n").unwrap();
        assert_eq!(
            st.load_tunables(check).unwrap()["nf_conntrack_udp_timeout"],
            7
        );
        std::fs::write(d.join(RULESET_FILE), b"table ip t {\n \xff }\n").unwrap();
        let e = st.read_text(RULESET_FILE).unwrap_err();
        assert!(e.ends_with("ruleset.nft:2:2: not UTF-8 text"), "{e}");
        let _ = std::fs::remove_dir_all(d);
    }
}
