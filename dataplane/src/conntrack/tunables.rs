//! Tunables by their Linux sysctl names (`net.netfilter.nf_conntrack_*`), with Linux's
//! defaults and validated ranges.

use super::state::TcpState;
use crate::frag::FragLimits;
use crate::wire::Family;

/// Longest accepted timeout: one year. Keeps every deadline far inside the timer's
/// wrapping tick range (2^31 ticks of 2^28 ns, about 18 years).
pub const MAX_TIMEOUT_S: u64 = 365 * 24 * 3600;

/// Largest `nf_conntrack_max` accepted (entry ids are `u32`, two index references each,
/// and a reference keeps its top bit for early drop's mark).
pub const MAX_ENTRIES: u64 = (1 << 30) - 1;

/// Linux's `nf_conntrack_expect_max` for its default hash size (4 × 262144 / 256).
pub const DEFAULT_EXPECT_MAX: u32 = 4096;
/// Largest `nf_conntrack_expect_max`: the expectation table is built for this many.
pub const MAX_EXPECT: u32 = 1 << 16;

/// Connection-tracking tunables of one worker. Timeouts are in seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tunables {
    /// The worker's share of `nf_conntrack_max`.
    pub max: u32,
    /// `nf_conntrack_tcp_loose`: pick up established connections mid-stream.
    pub tcp_loose: bool,
    /// `nf_conntrack_tcp_be_liberal`: only out-of-window RST segments are invalid.
    pub tcp_be_liberal: bool,
    /// `nf_conntrack_checksum`: verify TCP/UDP/ICMP checksums in software where the NIC
    /// gave no verdict (0: trust them, as Linux's conntrack then does).
    pub checksum: bool,
    /// `nf_conntrack_tcp_timeout_*`, indexed by [`TcpState`] (`NONE` unused).
    pub tcp: [u32; TcpState::COUNT],
    /// `nf_conntrack_tcp_timeout_unacknowledged`: cap while data is unacknowledged.
    pub tcp_unacknowledged: u32,
    /// `nf_conntrack_tcp_timeout_max_retrans`: cap while no in-window ACK has been seen
    /// (Linux also applies it after `nf_conntrack_tcp_max_retrans` retransmissions, which
    /// are not counted here).
    pub tcp_max_retrans: u32,
    pub udp: u32,
    pub udp_stream: u32,
    pub icmp: u32,
    pub icmpv6: u32,
    pub generic: u32,
    /// `nf_conntrack_events`: 0 no events, 1 always, 2 (default) only while someone takes
    /// them (Linux's auto mode: no cost without a listener).
    pub events: u8,
    /// `net.ipv4.ipfrag_*` and `net.ipv6.ip6frag_*`: the worker's reassembly limits
    /// (`crate::frag`; not conntrack's, kept here so every tunable travels one way).
    pub ipfrag: FragLimits,
    pub ip6frag: FragLimits,
    /// `nf_conntrack_expect_max`: expectations in all (`crate::helper`; one table shared
    /// by every worker, allocated for the value at start).
    pub expect_max: u32,
}

impl Default for Tunables {
    /// Linux 6.x defaults (`nf_conntrack_proto_*.c`), `nf_conntrack_max` 262144.
    fn default() -> Self {
        let mut tcp = [0u32; TcpState::COUNT];
        tcp[TcpState::SynSent as usize] = 120;
        tcp[TcpState::SynRecv as usize] = 60;
        tcp[TcpState::Established as usize] = 432_000;
        tcp[TcpState::FinWait as usize] = 120;
        tcp[TcpState::CloseWait as usize] = 60;
        tcp[TcpState::LastAck as usize] = 30;
        tcp[TcpState::TimeWait as usize] = 120;
        tcp[TcpState::Close as usize] = 10;
        tcp[TcpState::SynSent2 as usize] = 120;
        Tunables {
            max: 262_144,
            tcp_loose: true,
            tcp_be_liberal: false,
            checksum: true,
            tcp,
            tcp_unacknowledged: 300,
            tcp_max_retrans: 300,
            udp: 30,
            udp_stream: 120,
            icmp: 30,
            icmpv6: 30,
            generic: 600,
            events: 2,
            ipfrag: FragLimits::IPV4_DEFAULT,
            ip6frag: FragLimits::IPV6_DEFAULT,
            expect_max: DEFAULT_EXPECT_MAX,
        }
    }
}

/// A tunable that was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TunableError {
    #[error("unknown tunable {0:?}")]
    Unknown(String),
    #[error("{name}: {value} is out of range {min}..={max}")]
    Range {
        name: String,
        value: u64,
        min: u64,
        max: u64,
    },
}

/// Why a worker refused a change of tunables: the tunable at fault (`None` when the
/// refusal names none) and the reason. The control side answers it as a `bad_tunable`
/// error naming the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct RefusedTunable {
    pub field: Option<String>,
    pub reason: String,
}

impl RefusedTunable {
    pub fn new(field: Option<&str>, reason: impl Into<String>) -> Self {
        RefusedTunable {
            field: field.map(str::to_owned),
            reason: reason.into(),
        }
    }
}

/// TCP timeout sysctl names and the state each one sets.
const TCP_NAMES: [(&str, TcpState); 9] = [
    ("nf_conntrack_tcp_timeout_syn_sent", TcpState::SynSent),
    ("nf_conntrack_tcp_timeout_syn_recv", TcpState::SynRecv),
    (
        "nf_conntrack_tcp_timeout_established",
        TcpState::Established,
    ),
    ("nf_conntrack_tcp_timeout_fin_wait", TcpState::FinWait),
    ("nf_conntrack_tcp_timeout_close_wait", TcpState::CloseWait),
    ("nf_conntrack_tcp_timeout_last_ack", TcpState::LastAck),
    ("nf_conntrack_tcp_timeout_time_wait", TcpState::TimeWait),
    ("nf_conntrack_tcp_timeout_close", TcpState::Close),
    ("nf_conntrack_tcp_timeout_syn_sent2", TcpState::SynSent2),
];

/// Every name [`Tunables::get`] and [`Tunables::set`] know, in `sysctl -a` order.
pub const NAMES: [&str; 28] = [
    "nf_conntrack_checksum",
    "nf_conntrack_events",
    "nf_conntrack_expect_max",
    "nf_conntrack_generic_timeout",
    "nf_conntrack_icmp_timeout",
    "nf_conntrack_icmpv6_timeout",
    "nf_conntrack_max",
    "nf_conntrack_tcp_be_liberal",
    "nf_conntrack_tcp_loose",
    "nf_conntrack_tcp_timeout_close",
    "nf_conntrack_tcp_timeout_close_wait",
    "nf_conntrack_tcp_timeout_established",
    "nf_conntrack_tcp_timeout_fin_wait",
    "nf_conntrack_tcp_timeout_last_ack",
    "nf_conntrack_tcp_timeout_max_retrans",
    "nf_conntrack_tcp_timeout_syn_recv",
    "nf_conntrack_tcp_timeout_syn_sent",
    "nf_conntrack_tcp_timeout_syn_sent2",
    "nf_conntrack_tcp_timeout_time_wait",
    "nf_conntrack_tcp_timeout_unacknowledged",
    "nf_conntrack_udp_timeout",
    "nf_conntrack_udp_timeout_stream",
    "ipfrag_high_thresh",
    "ipfrag_low_thresh",
    "ipfrag_time",
    "ip6frag_high_thresh",
    "ip6frag_low_thresh",
    "ip6frag_time",
];

/// The reassembly tunables: name, family, which limit (0 high, 1 low, 2 time).
const FRAG_NAMES: [(&str, Family, u8); 6] = [
    ("ipfrag_high_thresh", Family::V4, 0),
    ("ipfrag_low_thresh", Family::V4, 1),
    ("ipfrag_time", Family::V4, 2),
    ("ip6frag_high_thresh", Family::V6, 0),
    ("ip6frag_low_thresh", Family::V6, 1),
    ("ip6frag_time", Family::V6, 2),
];

/// Most bytes a worker's reassembly table holds per family: what it is allocated for
/// (Linux's default `ipfrag_high_thresh`, 4 MiB); higher values are refused.
pub const MAX_IPFRAG_THRESH: u64 = 4 << 20;

/// Longest `ipfrag_time` accepted (seconds).
pub const MAX_IPFRAG_TIME_S: u64 = 3600;

/// The accepted range of a tunable, or `None` for an unknown name.
fn range(name: &str) -> Option<(u64, u64)> {
    match name {
        "nf_conntrack_max" => Some((1, MAX_ENTRIES)),
        "nf_conntrack_tcp_loose" | "nf_conntrack_tcp_be_liberal" | "nf_conntrack_checksum" => {
            Some((0, 1))
        }
        "nf_conntrack_events" => Some((0, 2)),
        "nf_conntrack_expect_max" => Some((1, u64::from(MAX_EXPECT))),
        "ipfrag_high_thresh"
        | "ipfrag_low_thresh"
        | "ip6frag_high_thresh"
        | "ip6frag_low_thresh" => Some((0, MAX_IPFRAG_THRESH)),
        "ipfrag_time" | "ip6frag_time" => Some((1, MAX_IPFRAG_TIME_S)),
        n if NAMES.contains(&n) => Some((1, MAX_TIMEOUT_S)),
        _ => None,
    }
}

/// Checks a list of `(name, value)` as a whole against a worker's table (its `capacity`
/// and the `current` tunables it holds) without applying any: names, ranges, and
/// `nf_conntrack_max` within the table's capacity. The worker applies the list only when
/// this passes, so it never applies part of one.
pub fn check_all(
    capacity: u32,
    current: &Tunables,
    list: &[(String, u64)],
) -> Result<(), RefusedTunable> {
    for (name, value) in list {
        let capacity = u64::from(capacity);
        let err = match check(name, *value) {
            Err(e) => Some(e.to_string()),
            Ok(()) if name == "nf_conntrack_max" && *value > capacity => Some(format!(
                "{name}: {value} is more than this worker's table holds ({capacity})"
            )),
            Ok(()) => None,
        };
        if let Some(m) = err {
            return Err(RefusedTunable::new(Some(name), m));
        }
    }
    // Reassembly: the low threshold may not exceed the high one once the whole list is
    // applied (Linux bounds each by the other).
    let mut t = current.clone();
    for (name, value) in list {
        if FRAG_NAMES.iter().any(|(n, ..)| n == name) {
            let _ = t.set(name, *value);
        }
    }
    for (limits, low) in [
        (t.ipfrag, "ipfrag_low_thresh"),
        (t.ip6frag, "ip6frag_low_thresh"),
    ] {
        if limits.low_thresh > limits.high_thresh {
            let m = format!(
                "{low}: {} is above the high threshold {}",
                limits.low_thresh, limits.high_thresh
            );
            return Err(RefusedTunable::new(Some(low), m));
        }
    }
    Ok(())
}

/// The accepted range of every tunable, by sysctl name (the table the server validates
/// with; the API's schema is generated from it).
pub fn ranges() -> impl Iterator<Item = (&'static str, u64, u64)> {
    NAMES
        .iter()
        .filter_map(|n| range(n).map(|(lo, hi)| (*n, lo, hi)))
}

/// Checks one `(name, value)` without applying it: the validator that
/// [`crate::config::Config::validate`] takes as its `TunableCheck`.
pub fn check_tunable(name: &str, value: u64) -> Result<(), String> {
    check(name, value).map_err(|e| e.to_string())
}

fn check(name: &str, value: u64) -> Result<(), TunableError> {
    let (min, max) = range(name).ok_or_else(|| TunableError::Unknown(name.to_string()))?;
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(TunableError::Range {
            name: name.to_string(),
            value,
            min,
            max,
        })
    }
}

#[allow(clippy::cast_possible_truncation)] // ranges checked by `check` fit u32
fn to_u32(v: u64) -> u32 {
    v.min(u64::from(u32::MAX)) as u32
}

impl Tunables {
    /// The value of a tunable by sysctl name (booleans as 0/1).
    pub fn get(&self, name: &str) -> Option<u64> {
        if let Some((_, st)) = TCP_NAMES.iter().find(|(n, _)| *n == name) {
            return Some(self.tcp[*st as usize].into());
        }
        Some(match name {
            "nf_conntrack_max" => self.max.into(),
            "nf_conntrack_tcp_loose" => self.tcp_loose.into(),
            "nf_conntrack_tcp_be_liberal" => self.tcp_be_liberal.into(),
            "nf_conntrack_checksum" => self.checksum.into(),
            "nf_conntrack_events" => self.events.into(),
            "nf_conntrack_expect_max" => self.expect_max.into(),
            "nf_conntrack_tcp_timeout_unacknowledged" => self.tcp_unacknowledged.into(),
            "nf_conntrack_tcp_timeout_max_retrans" => self.tcp_max_retrans.into(),
            "nf_conntrack_udp_timeout" => self.udp.into(),
            "nf_conntrack_udp_timeout_stream" => self.udp_stream.into(),
            "nf_conntrack_icmp_timeout" => self.icmp.into(),
            "nf_conntrack_icmpv6_timeout" => self.icmpv6.into(),
            "nf_conntrack_generic_timeout" => self.generic.into(),
            _ => {
                let (_, family, which) = FRAG_NAMES.iter().find(|(n, ..)| *n == name)?;
                let l = self.frag_limits(*family);
                match which {
                    0 => l.high_thresh as u64,
                    1 => l.low_thresh as u64,
                    _ => l.time_ns / 1_000_000_000,
                }
            }
        })
    }

    /// Sets one tunable after checking its name and range.
    pub fn set(&mut self, name: &str, value: u64) -> Result<(), TunableError> {
        check(name, value)?;
        let v = to_u32(value);
        if let Some((_, st)) = TCP_NAMES.iter().find(|(n, _)| *n == name) {
            self.tcp[*st as usize] = v;
            return Ok(());
        }
        match name {
            "nf_conntrack_max" => self.max = v,
            "nf_conntrack_tcp_loose" => self.tcp_loose = value != 0,
            "nf_conntrack_tcp_be_liberal" => self.tcp_be_liberal = value != 0,
            "nf_conntrack_checksum" => self.checksum = value != 0,
            "nf_conntrack_events" => self.events = u8::try_from(value).unwrap_or(2),
            "nf_conntrack_expect_max" => self.expect_max = v,
            "nf_conntrack_tcp_timeout_unacknowledged" => self.tcp_unacknowledged = v,
            "nf_conntrack_tcp_timeout_max_retrans" => self.tcp_max_retrans = v,
            "nf_conntrack_udp_timeout" => self.udp = v,
            "nf_conntrack_udp_timeout_stream" => self.udp_stream = v,
            "nf_conntrack_icmp_timeout" => self.icmp = v,
            "nf_conntrack_icmpv6_timeout" => self.icmpv6 = v,
            "nf_conntrack_generic_timeout" => self.generic = v,
            _ => {
                let Some((_, family, which)) = FRAG_NAMES.iter().find(|(n, ..)| *n == name) else {
                    return Err(TunableError::Unknown(name.to_string()));
                };
                // The range bounds the value; low <= high is `check_all`'s (a list may
                // move both).
                let n = usize::try_from(value).unwrap_or(usize::MAX);
                let l = match family {
                    Family::V4 => &mut self.ipfrag,
                    Family::V6 => &mut self.ip6frag,
                };
                match which {
                    0 => l.high_thresh = n,
                    1 => l.low_thresh = n,
                    _ => l.time_ns = value * 1_000_000_000,
                }
            }
        }
        Ok(())
    }

    /// Applies several values atomically: all are checked first, nothing changes if one
    /// is refused.
    pub fn set_all<'a>(
        &mut self,
        values: impl IntoIterator<Item = (&'a str, u64)> + Clone,
    ) -> Result<(), TunableError> {
        for (n, v) in values.clone() {
            check(n, v)?;
        }
        for (n, v) in values {
            self.set(n, v)?;
        }
        Ok(())
    }

    /// The reassembly limits of `family`.
    pub fn frag_limits(&self, family: Family) -> FragLimits {
        match family {
            Family::V4 => self.ipfrag,
            Family::V6 => self.ip6frag,
        }
    }

    /// Every tunable as `(name, value)`.
    pub fn list(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        NAMES
            .iter()
            .filter_map(move |n| self.get(n).map(|v| (*n, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_defaults() {
        let t = Tunables::default();
        assert_eq!(t.get("nf_conntrack_tcp_timeout_established"), Some(432_000));
        assert_eq!(t.get("nf_conntrack_tcp_timeout_syn_sent"), Some(120));
        assert_eq!(t.get("nf_conntrack_tcp_timeout_time_wait"), Some(120));
        assert_eq!(t.get("nf_conntrack_udp_timeout"), Some(30));
        assert_eq!(t.get("nf_conntrack_udp_timeout_stream"), Some(120));
        assert_eq!(t.get("nf_conntrack_tcp_loose"), Some(1));
        assert_eq!(t.get("nf_conntrack_tcp_be_liberal"), Some(0));
        assert_eq!(t.get("nf_conntrack_checksum"), Some(1));
        assert_eq!(t.list().count(), NAMES.len());
    }

    #[test]
    fn ipfrag_tunables_by_their_sysctl_names() {
        let mut t = Tunables::default();
        assert_eq!(t.get("ipfrag_high_thresh"), Some(4 << 20));
        assert_eq!(t.get("ipfrag_low_thresh"), Some(3 << 20));
        assert_eq!(t.get("ipfrag_time"), Some(30));
        assert_eq!(t.get("ip6frag_time"), Some(60));
        t.set("ip6frag_time", 90).unwrap();
        t.set("ipfrag_low_thresh", 1 << 20).unwrap();
        assert_eq!(t.ip6frag.time_ns, 90_000_000_000);
        assert_eq!(t.ipfrag.low_thresh, 1 << 20);
        assert_eq!(t.ip6frag.low_thresh, 3 << 20, "the families are apart");
        // No more than a worker's table is allocated for; no zero time.
        assert!(matches!(
            t.set("ipfrag_high_thresh", (4 << 20) + 1),
            Err(TunableError::Range { .. })
        ));
        assert!(matches!(
            t.set("ipfrag_time", 0),
            Err(TunableError::Range { .. })
        ));
        // Low above high is refused for the list as a whole, not per value.
        let table = super::super::Table::new(64, Tunables::default(), 1);
        let list = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
            v.iter().map(|(n, x)| ((*n).to_string(), *x)).collect()
        };
        let e = check_all(
            table.capacity(),
            table.tunables(),
            &list(&[("ip6frag_high_thresh", 1 << 20)]),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("ip6frag_low_thresh"));
        let both = list(&[
            ("ip6frag_high_thresh", 1 << 20),
            ("ip6frag_low_thresh", 1 << 19),
        ]);
        assert!(check_all(table.capacity(), table.tunables(), &both).is_ok());
    }

    #[test]
    fn set_validates_name_and_range() {
        let mut t = Tunables::default();
        t.set("nf_conntrack_udp_timeout", 45).unwrap();
        assert_eq!(t.udp, 45);
        assert!(matches!(
            t.set("nf_conntrack_udp_timeout", 0),
            Err(TunableError::Range { .. })
        ));
        assert!(matches!(
            t.set("nf_conntrack_tcp_loose", 2),
            Err(TunableError::Range { .. })
        ));
        assert!(matches!(
            t.set("nf_conntrack_bogus", 1),
            Err(TunableError::Unknown(_))
        ));
        assert!(check_tunable("nf_conntrack_max", 0).is_err());
        assert!(check_tunable("nf_conntrack_max", 1 << 20).is_ok());
    }

    #[test]
    fn set_all_is_atomic() {
        let mut t = Tunables::default();
        let before = t.clone();
        let r = t.set_all([
            ("nf_conntrack_udp_timeout", 10),
            ("nf_conntrack_icmp_timeout", MAX_TIMEOUT_S + 1),
        ]);
        assert!(r.is_err());
        assert_eq!(t, before);
    }

    #[test]
    fn fits_the_config_validator() {
        let f: crate::config::TunableCheck<'_> = &check_tunable;
        assert!(f("nf_conntrack_tcp_timeout_close", 5).is_ok());
        assert!(f("nf_conntrack_tcp_timeout_close", 0).is_err());
    }
}
