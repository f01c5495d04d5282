//! Differential testing of rulesets against the kernel (rules_kernel, iptables_kernel): a
//! namespace pair joined by a veth (`A` sends, `K` holds the kernel's ruleset), probes
//! sent from A to K and evaluated by `dataplane::rules` on the input hook, and the
//! per-rule counters that moved compared after each probe. Every rule carries a
//! `counter`, so "the same counters moved" means the same rules matched and the same
//! verdict was reached. Names carry the test process's PID.
#![allow(dead_code)]

use super::netns::{ok, sh};
use dataplane::rules::compile::Facts;
use dataplane::rules::{CompiledRuleset, Hook, PacketCtx, ct_state};
use dataplane::wire::{Addr, Family, Fragment, IpInfo, L4Info, TcpFlags, TcpInfo, proto};

pub const SRC: [u8; 4] = [198, 18, 0, 1];
pub const DST: [u8; 4] = [198, 18, 0, 2];

/// The namespace pair; deleted on drop.
pub struct Pair {
    pub a: String,
    pub k: String,
    /// The kernel side's interface name (what `iifname` rules see).
    pub k_if: String,
}

impl Pair {
    pub fn setup(tag: &str) -> Pair {
        let pid = std::process::id();
        let p = Pair {
            a: format!("{tag}a-{pid}"),
            k: format!("{tag}k-{pid}"),
            k_if: format!("{tag}k{pid}"),
        };
        let a_if = format!("{tag}a{pid}");
        p.cleanup();
        ok(&["ip", "netns", "add", &p.a]);
        ok(&["ip", "netns", "add", &p.k]);
        ok(&[
            "ip", "link", "add", &a_if, "netns", &p.a, "type", "veth", "peer", "name", &p.k_if,
            "netns", &p.k,
        ]);
        for (ns, dev, addr) in [
            (&p.a, &a_if, "198.18.0.1/24"),
            (&p.k, &p.k_if, "198.18.0.2/24"),
        ] {
            ok(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
            ]);
            ok(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
            ok(&["ip", "-n", ns, "link", "set", dev, "up"]);
            ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        // Resolve ARP once before the probes.
        let _ = sh(&[
            "ip",
            "netns",
            "exec",
            &p.a,
            "ping",
            "-c1",
            "-W1",
            "198.18.0.2",
        ]);
        p
    }

    fn cleanup(&self) {
        let _ = sh(&["ip", "netns", "del", &self.a]);
        let _ = sh(&["ip", "netns", "del", &self.k]);
    }

    /// Applies `text` with `nft -f` in the kernel's namespace (a scratch file named
    /// after `step` and the PID).
    pub fn nft_f(&self, text: &str, step: &str) {
        let file =
            std::env::temp_dir().join(format!("kernel-diff-{}-{step}.nft", std::process::id()));
        std::fs::write(&file, text).unwrap();
        ok(&[
            "ip",
            "netns",
            "exec",
            &self.k,
            "nft",
            "-f",
            file.to_str().unwrap(),
        ]);
        let _ = std::fs::remove_file(&file);
    }

    /// Kernel counters: ((table, chain, rule index), packets), in listing order.
    pub fn kernel_counters(&self) -> Vec<((String, String, usize), u64)> {
        let mut out = Vec::new();
        let mut idx: std::collections::HashMap<(String, String), usize> = Default::default();
        for r in nft_rules(&self.k) {
            let i = idx.entry((r.table.clone(), r.chain.clone())).or_default();
            out.push(((r.table, r.chain, *i), r.packets));
            *i += 1;
        }
        out
    }

    pub fn send(&self, p: Probe) {
        let cmd = match p {
            Probe::Tcp(port) => format!("echo > /dev/tcp/198.18.0.2/{port}"),
            Probe::Udp(port) => format!("echo x > /dev/udp/198.18.0.2/{port}"),
            Probe::Ping => "ping -c1 -W1 198.18.0.2".into(),
        };
        let _ = sh(&[
            "ip", "netns", "exec", &self.a, "timeout", "0.3", "bash", "-c", &cmd,
        ]);
    }

    /// Sends each probe to the kernel and evaluates it with `ours` on the input hook (a
    /// new connection arriving on port 0); asserts that the same rules counted.
    pub fn compare(&self, ours: &CompiledRuleset, probes: &[Probe]) {
        self.compare_hooks(ours, probes, &[Hook::Input]);
    }

    /// [`compare`](Self::compare) with each probe evaluated on `hooks` in order (the
    /// first packet of a new connection: `nat` chains run). A NAT statement does not
    /// rewrite the probe: the rulesets map to the probe's own address and port.
    pub fn compare_hooks(&self, ours: &CompiledRuleset, probes: &[Probe], hooks: &[Hook]) {
        self.compare_with_facts(ours, probes, hooks, &|_| Facts::default());
    }

    /// [`compare_hooks`](Self::compare_hooks) with the facts beyond the summary (`fib`,
    /// `ct direction`, …) that `facts` gives for each probe.
    pub fn compare_with_facts(
        &self,
        ours: &CompiledRuleset,
        probes: &[Probe],
        hooks: &[Hook],
        facts: &dyn Fn(&IpInfo) -> Facts,
    ) {
        self.compare_at(ours, probes, hooks, facts, 1);
    }

    /// [`compare_with_facts`](Self::compare_with_facts) with ours evaluated at `now_ns`
    /// of the workers' clock (elements that time out).
    pub fn compare_at(
        &self,
        ours: &CompiledRuleset,
        probes: &[Probe],
        hooks: &[Hook],
        facts: &dyn Fn(&IpInfo) -> Facts,
        now_ns: u64,
    ) {
        let mut before = self.kernel_counters();
        let mut ours_before = ours.counters();
        for &p in probes {
            self.send(p);
            let after = self.kernel_counters();
            let mut kernel_moved: Vec<_> = after
                .iter()
                .zip(&before)
                .filter(|(a, b)| a.1 != b.1)
                .map(|(a, _)| a.0.clone())
                .collect();
            before = after;

            let ip = packet(p);
            let mut ctx = PacketCtx {
                ip: &ip,
                iif: Some(0),
                oif: None,
                ct_state: ct_state::NEW,
                ct_status: 0,
                ct_mark: 0,
                mark: 0,
                len: 60,
                first_packet: true,
                facts: facts(&ip),
            };
            let mut verdict = None;
            for &h in hooks {
                verdict = Some(ours.eval(h, &mut ctx, 0, now_ns).verdict);
            }
            let now = ours.counters();
            let src = ours.source();
            let mut ours_moved = Vec::new();
            for (id, (a, b)) in now.iter().zip(&ours_before).enumerate() {
                if a.0 != b.0 {
                    let (t, c, r, _) = ours.rule_location(u32::try_from(id).unwrap()).unwrap();
                    let table = &src.tables[t];
                    ours_moved.push((table.name.clone(), table.chains[c].name.clone(), r));
                }
            }
            ours_before = now;
            kernel_moved.sort();
            ours_moved.sort();
            assert_eq!(
                ours_moved, kernel_moved,
                "probe {p:?} (our verdict {verdict:?})"
            );
            eprintln!("{p:?}: {verdict:?} rules {ours_moved:?}");
        }
    }
}

/// One rule of `nft -j list ruleset`: where it is and its counter's packets (0 without a
/// counter).
pub struct NftRule {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub handle: u64,
    pub packets: u64,
}

/// The rules of namespace `ns` (`nft -j list ruleset`), in listing order.
pub fn nft_rules(ns: &str) -> Vec<NftRule> {
    let o = sh(&["ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("nft json");
    let field = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap().to_owned();
    j["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item.get("rule"))
        .map(|r| NftRule {
            family: field(r, "family"),
            table: field(r, "table"),
            chain: field(r, "chain"),
            handle: r["handle"].as_u64().unwrap(),
            packets: r["expr"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|e| e.get("counter").and_then(|c| c["packets"].as_u64()))
                .unwrap_or(0),
        })
        .collect()
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.cleanup();
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Probe {
    Tcp(u16),
    Udp(u16),
    Ping,
}

/// The probe as the data plane parses it (a SYN with the options Linux sends).
pub fn packet(p: Probe) -> IpInfo {
    let l4 = match p {
        Probe::Tcp(dport) => L4Info::Tcp(TcpInfo {
            sport: 40000,
            dport,
            seq: 0,
            ack: 0,
            flags: TcpFlags(TcpFlags::SYN),
            window: 64240,
            payload_len: 0,
            wscale: Some(7),
            sack_perm: true,
            mss: Some(1460),
        }),
        Probe::Udp(dport) => L4Info::Udp {
            sport: 40000,
            dport,
        },
        Probe::Ping => L4Info::IcmpEcho {
            request: true,
            id: 1,
            seq: 1,
        },
    };
    IpInfo {
        family: Family::V4,
        src: Addr::from_v4(SRC),
        dst: Addr::from_v4(DST),
        proto: match p {
            Probe::Tcp(_) => proto::TCP,
            Probe::Udp(_) => proto::UDP,
            Probe::Ping => proto::ICMP,
        },
        ttl: 64,
        l3_off: 14,
        l4_off: 34,
        ip_len: 60,
        frag: Fragment::None,
        l4: Some(l4),
    }
}
