//! Command line: `perfgen [OPTIONS] -- [EAL ARGUMENTS]`.

use std::net::Ipv4Addr;

use dataplane::config::parse_mac;

use crate::frame::{MAX_FRAME, MIN_UDP_FRAME};
use crate::order::Order;

pub const USAGE: &str = "\
perfgen: UDP flows, TCP handshakes and SYN floods over two DPDK ports, for perf/.

usage: perfgen [OPTIONS] -- EAL-ARGUMENTS (e.g. -l 0 --vdev=net_memif0,...)

  --mode udp|tcp|syn    udp: stamped 64-byte frames over --flows flows, counted at the sink;
                        tcp: handshakes (SYN, SYN-ACK, ACK, data, FIN, FIN-ACK, ACK) with a
                        reflector answering as the server on --rx-port;
                        syn: one TCP SYN per flow per round (a SYN flood: new connections
                        only), 64-byte frames in --order, counted and verified at the sink,
                        never answered                                      [udp]
  --tx-port NAME        DPDK port the traffic leaves on (client side)      [first port]
  --rx-port NAME        DPDK port it comes back on (sink / reflector)      [second port]
  --flows N             distinct 5-tuples, 198.18.0.0/16 x ports 1024..    [1024]
  --order ORDER         udp, syn: the order flows are sent in: random (a shuffled permutation,
                        each flow once per round), zipf[:S] (skewed, exponent S, default
                        1), seq (round robin; lets the device's prefetcher hide table
                        misses)                                            [random]
  --seed N              seed of the random and zipf orders                 [1]
  --stamp-every N       udp: stamp one frame in N (TSC, sequence; the sink parses and
                        verifies the stamped ones and counts the rest); 1 = every frame
                                                                           [32]
  --tx-only             udp, syn: open only --tx-port and send (no sink, no latency): for a
                        device whose egress is elsewhere (e.g. net_null); its rate is
                        what the port took
  --warm-up             udp --tx-only, one queue: first open every flow once through the
                        device and answer it (as --reflect, both ports open, 1 M
                        frames/s, each flow once, then 1 s of draining), then send
                        as --tx-only in the same process with the rx port no longer
                        polled: for a device that cannot reconnect between two runs
                        (a memif client, e.g. in zero-copy mode); then it prints
                        'perfgen: warmed up' and sleeps --settle-ms before sending;
                        `warm_up` in the result counts what was sent and answered
  --rate N              packets/s (udp, syn) or new connections/s (tcp); 0 = max [0]
  --count N             stop after N packets / connections; 0 = no limit   [0]
  --duration S          stop sending after S seconds (at most 600)         [10]
  --size BYTES          udp frame size with FCS, 64..=1518 (syn: 64 only)  [64]
  --queues N            queue pairs per port, one lcore each (EAL -l needs N
                        lcores); lane k sends flows k, k+N, ...            [1]
  --rx-queues N         RX queues per port (>= --queues); lane 0 also polls those beyond
                        --queues: for a device that answers on more TX queues than
                        the generator has lanes (OVS-DPDK: one per thread)  [--queues]
  --concurrency N       tcp: connections open at once (per queue)          [4096]
  --timeout-ms N        tcp: a connection not done by then fails           [1000]
  --src-net A.B.C.D     first client address (a /16 is used)               [198.18.0.0]
  --dst A.B.C.D         server address                                     [198.19.0.1]
  --dport N             server port                                  [9 udp, 80 tcp, syn]
  --tx-mac MAC          destination MAC of frames sent on --tx-port        [02:00:00:00:00:02]
  --rx-mac MAC          destination MAC of answers sent on --rx-port       [02:00:00:00:00:01]
  --drain-ms N          keep receiving this long after sending stops      [200]
  --link-timeout S      wait this long for both links to come up           [10]
  --settle-ms N         then sleep this long before sending, so the device's end of
                        the link is up too (memif: its control thread may share a
                        core with this one); at most 10000                   [0]
  --reflect             udp (and syn with --established): the rx port answers every UDP
                        frame it receives (addresses and ports swapped, sent back on the
                        rx port, so the device sees replies: established flows); the tx
                        port counts the answers
  --established N       syn: also N UDP flows to --dst port 9 (the first N sources of
                        --flows, as UDP), round robin at --established-rate, with
                        --reflect answered: established connections beside the flood,
                        counted apart at the sink before and after the flood starts  [0]
  --established-rate N  syn: packets/s of the established flows           [100000]
  --flood-after-ms N    syn: the SYNs start this long after the established flows
                        (time for those to become ASSURED)                   [0]
  --label TEXT          free text stored in the result
  --json FILE           write the result there (default: stdout)
";

/// Traffic kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Udp,
    Tcp,
    /// SYN-only TCP: the UDP loop's frames are SYNs (`template::Template::syn`).
    Syn,
}

/// Parsed options.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Args {
    pub mode: Mode,
    pub tx_port: Option<String>,
    pub rx_port: Option<String>,
    pub flows: u64,
    pub order: Order,
    pub seed: u64,
    pub stamp_every: u64,
    /// UDP: only the TX port is opened (`--tx-only`).
    pub tx_only: bool,
    /// UDP `--tx-only`: a warm-up pass with answers first (`--warm-up`).
    pub warm_up: bool,
    pub rate: u64,
    pub count: u64,
    pub duration_s: f64,
    pub size: usize,
    pub queues: u16,
    pub rx_queues: u16,
    pub concurrency: usize,
    pub timeout_ms: u64,
    pub src_net: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub dport: u16,
    #[serde(serialize_with = "mac_str")]
    pub tx_mac: [u8; 6],
    #[serde(serialize_with = "mac_str")]
    pub rx_mac: [u8; 6],
    pub drain_ms: u64,
    pub link_timeout_s: u64,
    pub settle_ms: u64,
    /// UDP: the rx port answers what it receives (`--reflect`).
    pub reflect: bool,
    /// SYN: established UDP flows sent beside the flood (`--established`), their rate,
    /// and how long they run alone before the flood starts.
    pub established: u64,
    pub established_rate: u64,
    pub flood_after_ms: u64,
    pub label: String,
    #[serde(skip)]
    pub json: Option<String>,
    pub eal: Vec<String>,
}

fn mac_str<S: serde::Serializer>(m: &[u8; 6], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_mac(m))
}

/// Formats `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: '{v}' is not a valid number"))
}

impl Args {
    /// Parses the arguments after the program name. `Err` carries the message (for
    /// `--help`, the usage text).
    pub fn parse<I: IntoIterator<Item = String>>(it: I) -> Result<Args, String> {
        let mut a = Args {
            mode: Mode::Udp,
            tx_port: None,
            rx_port: None,
            flows: 1024,
            order: Order::Random,
            seed: 1,
            stamp_every: 32,
            tx_only: false,
            warm_up: false,
            rate: 0,
            count: 0,
            duration_s: 10.0,
            size: 64,
            queues: 1,
            rx_queues: 0,
            concurrency: 4096,
            timeout_ms: 1000,
            src_net: Ipv4Addr::new(198, 18, 0, 0),
            dst: Ipv4Addr::new(198, 19, 0, 1),
            dport: 0,
            tx_mac: [2, 0, 0, 0, 0, 2],
            rx_mac: [2, 0, 0, 0, 0, 1],
            drain_ms: 200,
            link_timeout_s: 10,
            settle_ms: 0,
            reflect: false,
            established: 0,
            established_rate: 100_000,
            flood_after_ms: 0,
            label: String::new(),
            json: None,
            eal: Vec::new(),
        };
        let mut it = it.into_iter();
        while let Some(flag) = it.next() {
            if flag == "--" {
                a.eal = it.collect();
                break;
            }
            if flag == "-h" || flag == "--help" {
                return Err(USAGE.to_string());
            }
            if flag == "--reflect" {
                a.reflect = true;
                continue;
            }
            if flag == "--tx-only" {
                a.tx_only = true;
                continue;
            }
            if flag == "--warm-up" {
                a.warm_up = true;
                continue;
            }
            let v = it
                .next()
                .ok_or_else(|| format!("{flag}: missing value (see --help)"))?;
            match flag.as_str() {
                "--mode" => {
                    a.mode = match v.as_str() {
                        "udp" => Mode::Udp,
                        "tcp" => Mode::Tcp,
                        "syn" => Mode::Syn,
                        _ => return Err(format!("--mode: '{v}' is not udp, tcp or syn")),
                    }
                }
                "--tx-port" => a.tx_port = Some(v),
                "--rx-port" => a.rx_port = Some(v),
                "--flows" => a.flows = num(&flag, &v)?,
                "--order" => a.order = Order::parse(&v).map_err(|e| format!("{flag}: {e}"))?,
                "--seed" => a.seed = num(&flag, &v)?,
                "--stamp-every" => a.stamp_every = num(&flag, &v)?,
                "--rate" => a.rate = num(&flag, &v)?,
                "--count" => a.count = num(&flag, &v)?,
                "--duration" => a.duration_s = num(&flag, &v)?,
                "--size" => a.size = num(&flag, &v)?,
                "--queues" => a.queues = num(&flag, &v)?,
                "--rx-queues" => a.rx_queues = num(&flag, &v)?,
                "--concurrency" => a.concurrency = num(&flag, &v)?,
                "--timeout-ms" => a.timeout_ms = num(&flag, &v)?,
                "--src-net" => a.src_net = num(&flag, &v)?,
                "--dst" => a.dst = num(&flag, &v)?,
                "--dport" => a.dport = num(&flag, &v)?,
                "--tx-mac" => a.tx_mac = parse_mac(&v).ok_or(format!("{flag}: bad MAC '{v}'"))?,
                "--rx-mac" => a.rx_mac = parse_mac(&v).ok_or(format!("{flag}: bad MAC '{v}'"))?,
                "--drain-ms" => a.drain_ms = num(&flag, &v)?,
                "--link-timeout" => a.link_timeout_s = num(&flag, &v)?,
                "--settle-ms" => a.settle_ms = num(&flag, &v)?,
                "--established" => a.established = num(&flag, &v)?,
                "--established-rate" => a.established_rate = num(&flag, &v)?,
                "--flood-after-ms" => a.flood_after_ms = num(&flag, &v)?,
                "--label" => a.label = v,
                "--json" => a.json = Some(v),
                _ => return Err(format!("unknown option '{flag}' (see --help)")),
            }
        }
        if !(a.duration_s > 0.0 && a.duration_s <= 600.0) {
            return Err(format!(
                "--duration: {} is outside (0, 600] seconds",
                a.duration_s
            ));
        }
        if !(MIN_UDP_FRAME + 4..=MAX_FRAME + 4).contains(&a.size) {
            return Err(format!("--size: {} is outside 64..=1518", a.size));
        }
        if a.queues == 0 || a.queues > 64 {
            return Err(format!("--queues: {} is outside 1..=64", a.queues));
        }
        if a.rx_queues == 0 {
            a.rx_queues = a.queues;
        }
        if a.rx_queues < a.queues || a.rx_queues > 64 {
            return Err(format!(
                "--rx-queues: {} is outside --queues ({})..=64",
                a.rx_queues, a.queues
            ));
        }
        if a.concurrency == 0 || a.timeout_ms == 0 || a.drain_ms > 10_000 || a.settle_ms > 10_000 {
            return Err(
                "--concurrency and --timeout-ms must be > 0, --drain-ms and --settle-ms <= 10000"
                    .into(),
            );
        }
        if a.reflect && a.mode != Mode::Udp && !(a.mode == Mode::Syn && a.established > 0) {
            return Err(
                "--reflect: only with --mode udp, or syn with --established (tcp always answers)"
                    .into(),
            );
        }
        if a.established > 0
            && (a.mode != Mode::Syn
                || a.tx_only
                || a.established > a.flows
                || a.established_rate < u64::from(a.queues)
                || a.flood_after_ms as f64 >= a.duration_s * 1000.0)
        {
            return Err(
                "--established: only with --mode syn (not --tx-only), at most --flows \
                 flows, a rate of at least --queues and --flood-after-ms within --duration"
                    .into(),
            );
        }
        if a.tx_only && (a.mode == Mode::Tcp || a.reflect) {
            return Err("--tx-only: only with --mode udp or syn, without --reflect".into());
        }
        if a.warm_up && (a.mode != Mode::Udp || !a.tx_only || a.queues != 1) {
            return Err("--warm-up: only with --mode udp --tx-only and one queue".into());
        }
        if a.mode == Mode::Syn && a.size != 64 {
            return Err(format!(
                "--size: {} with --mode syn (a SYN is 64 bytes)",
                a.size
            ));
        }
        if a.stamp_every == 0 {
            return Err("--stamp-every: must be at least 1".into());
        }
        if a.dport == 0 {
            a.dport = if a.mode == Mode::Udp { 9 } else { 80 };
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Args, String> {
        Args::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn defaults_and_eal_passthrough() {
        let a = parse("--flows 100000 --rate 5000000 -- -l 0 --in-memory").unwrap();
        assert_eq!(
            (a.mode, a.flows, a.rate, a.size, a.dport),
            (Mode::Udp, 100_000, 5_000_000, 64, 9)
        );
        assert_eq!(a.eal, vec!["-l", "0", "--in-memory"]);
        assert_eq!(parse("--mode tcp").unwrap().dport, 80);
        let a = parse("--mode syn --tx-only --order seq").unwrap();
        assert_eq!(
            (a.mode, a.dport, a.tx_only, a.size),
            (Mode::Syn, 80, true, 64)
        );
        let a = parse("--tx-mac 0a:1B:00:00:00:ff").unwrap();
        assert_eq!(a.tx_mac, [0x0a, 0x1b, 0, 0, 0, 0xff]);
        assert_eq!(format_mac(&a.tx_mac), "0a:1b:00:00:00:ff");
        assert!(!a.reflect);
        assert_eq!(
            (a.order, a.stamp_every, a.tx_only),
            (Order::Random, 32, false)
        );
        let a = parse("--order zipf:1.2 --stamp-every 1 --tx-only --seed 9").unwrap();
        assert_eq!(
            (a.order, a.stamp_every, a.tx_only, a.seed),
            (Order::Zipf(1.2), 1, true, 9)
        );
        let a = parse("--mode syn --established 100 --reflect --flood-after-ms 3000").unwrap();
        assert_eq!(
            (
                a.established,
                a.established_rate,
                a.flood_after_ms,
                a.reflect
            ),
            (100, 100_000, 3000, true)
        );
        let a = parse("--tx-only --warm-up --flows 10").unwrap();
        assert!(a.warm_up && a.tx_only && !a.reflect);
        let a = parse("--reflect --flows 10 -- -l 0").unwrap();
        assert!(a.reflect, "a flag without a value");
        assert_eq!((a.flows, a.eal.len()), (10, 2));
    }

    #[test]
    fn bad_values_are_errors_naming_the_flag() {
        for (args, flag) in [
            ("--flows many", "--flows"),
            ("--mode sctp", "--mode"),
            ("--duration 0", "--duration"),
            ("--duration 601", "--duration"),
            ("--size 63", "--size"),
            ("--queues 0", "--queues"),
            ("--tx-mac 02:00:00:00:00", "--tx-mac"),
            ("--src-net 198.18.0", "--src-net"),
            ("--rate", "--rate"),
            ("--bogus 1", "--bogus"),
            ("--mode tcp --reflect", "--reflect"),
            ("--settle-ms 10001", "--settle-ms"),
            ("--order rr", "--order"),
            ("--queues 2 --rx-queues 1", "--rx-queues"),
            ("--stamp-every 0", "--stamp-every"),
            ("--tx-only --reflect", "--tx-only"),
            ("--mode tcp --tx-only", "--tx-only"),
            ("--mode syn --size 128", "--size"),
            ("--mode syn --reflect", "--reflect"),
            ("--warm-up", "--warm-up"),
            ("--warm-up --tx-only --queues 2", "--warm-up"),
            ("--mode syn --tx-only --warm-up", "--warm-up"),
            ("--established 10", "--established"),
            ("--mode syn --established 2000", "--established"),
            ("--mode syn --established 10 --tx-only", "--established"),
            (
                "--mode syn --established 10 --flood-after-ms 10000",
                "--established",
            ),
        ] {
            let e = parse(args).unwrap_err();
            assert!(e.contains(flag), "{args}: {e}");
        }
        assert!(parse("--help").unwrap_err().contains("usage:"));
    }
}
