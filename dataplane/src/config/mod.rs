//! The `fwd` configuration file (YAML).
//!
//! Loaded in two steps: [`Config::parse`] (syntax and types, unknown fields
//! rejected, errors with line and column) then [`Config::validate`] (cross-field rules, errors
//! naming the field, e.g. `ports[1].addresses[0]`). The result is compiled into the runtime
//! pieces (EAL arguments, route table, worker/queue plan) by the daemon.
//!
//! YAML is read with `serde-saphyr`: `serde_yaml` is deprecated upstream (2024) and its
//! forks either carry the unsafe C-derived `unsafe-libyaml` or, for `serde_yml`, a security
//! advisory; serde-saphyr is maintained, pure safe Rust on the `saphyr` parser, and reports
//! errors with line, column and a snippet.
//!
//! The files: `schema.rs` (the serde types and defaults), `validate.rs` (parsing, loading,
//! cross-field rules), `plan.rs` (queue plan, route table, EAL arguments).

use std::fmt;

mod plan;
mod schema;
mod validate;

pub use schema::{
    Config, ConntrackConfig, DeviceKind, EalConfig, HaConfig, HaRole, MAX_HA_NODES, NeighborConfig,
    PortConfig, QueueAssignment, RouteConfig, RxAssignment, WorkersConfig, parse_interface_address,
    parse_mac,
};

/// A configuration error: where (a field path or a file position) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// YAML syntax or type error (the message carries line and column).
    #[error("{0}")]
    Syntax(String),
    /// A value broke a rule; `field` is the path of the offending field.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.to_string(),
    }
}

/// A validator for conntrack tunables, supplied by the conntrack module: `Err` carries the
/// reason a name or value is refused.
pub type TunableCheck<'a> = &'a dyn Fn(&str, u64) -> Result<(), String>;

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::schema::is_pci_address;
    use super::*;

    fn any_tunable(_: &str, _: u64) -> Result<(), String> {
        Ok(())
    }

    const ROUTER: &str = r#"
eal:
  main_core: 0
  in_memory: true
ports:
  - name: lan
    device: net_memif0,role=server,socket=/run/fwd/lan.sock
    addresses: [198.18.1.1/24, "2001:db8:1::1/64"]
  - name: wan
    device: "0000:03:00.0"
    addresses: [198.19.1.1/24]
    mac: "02:00:00:00:00:02"
workers:
  cores: [1, 2]
routes:
  - prefix: 0.0.0.0/0
    via: 198.19.1.254
  - prefix: 203.0.113.0/24
    blackhole: true
neighbors:
  - address: 198.19.1.254
    mac: "02:00:00:00:00:fe"
    port: wan
conntrack:
  max: 1000000
  timeouts:
    nf_conntrack_udp_timeout: 60
ruleset: ruleset.nft
"#;

    #[test]
    fn a_router_config_parses_and_validates() {
        let c = Config::parse(ROUTER).unwrap();
        c.validate(&any_tunable).unwrap();
        assert_eq!(c.ports[1].device_kind(), DeviceKind::Pci);
        assert_eq!(c.ports[0].dpdk_name(), "net_memif0");
        assert_eq!(c.tx_queues(), 3);
        let plan: Vec<_> = c
            .queue_plan()
            .unwrap()
            .iter()
            .map(|a| (a.worker, a.port, a.queue))
            .collect();
        assert_eq!(plan, vec![(0, 0, 0), (1, 0, 1), (0, 1, 0), (1, 1, 1)]);
        let args = c.eal_args();
        assert_eq!(&args[..3], ["fwd", "--lcores", "0@0,1@1,2@2"]);
        assert!(args.contains(&"--vdev=net_memif0,role=server,socket=/run/fwd/lan.sock".into()));
        assert!(args.windows(2).any(|w| w == ["-a", "0000:03:00.0"]));
        assert!(!args.contains(&"--no-pci".into()));
        assert!(args.contains(&"--in-memory".into()));
        let mut nohuge = c.clone();
        nohuge.eal.hugepages = false;
        let args = nohuge.eal_args();
        assert!(args.contains(&"--no-huge".into()) && args.contains(&"--no-shconf".into()));
        assert!(
            !args.contains(&"--in-memory".into()),
            "EAL refuses it with --no-huge"
        );
        let t = c.route_table().unwrap();
        assert_eq!(t.routes().len(), 5);
        assert_eq!(c.control_socket, PathBuf::from("/run/fwd/control.sock"));
        let sysctls = c.conntrack.sysctls();
        assert!(sysctls.contains(&("nf_conntrack_udp_timeout".into(), 60)));
        assert!(sysctls.contains(&("nf_conntrack_tcp_loose".into(), 1)));
    }

    #[test]
    fn unknown_fields_are_errors_with_a_position() {
        let e = Config::parse("ports:\n  - name: lan\n    devcie: net_null0\n").unwrap_err();
        let ConfigError::Syntax(m) = e else {
            panic!("syntax error expected")
        };
        assert!(m.contains("line 3"), "{m}");
        assert!(m.contains("devcie"), "{m}");
    }

    fn check(yaml: &str) -> ConfigError {
        let c = Config::parse(yaml).unwrap();
        c.validate(&any_tunable).unwrap_err()
    }

    fn field(e: ConfigError) -> String {
        match e {
            ConfigError::Invalid { field, .. } => field,
            other => panic!("expected a field error, got {other}"),
        }
    }

    #[test]
    fn validation_names_the_field() {
        let base = "ports:\n  - name: lan\n    device: net_null0\n";
        assert_eq!(field(check("ports: []\n")), "ports");
        assert_eq!(
            field(check(&format!("{base}    addresses: [198.18.1.1/33]\n"))),
            "ports[0].addresses[0]"
        );
        assert_eq!(
            field(check(&format!("{base}    mac: \"01:00:5e:00:00:01\"\n"))),
            "ports[0].mac"
        );
        assert_eq!(
            field(check(&format!("{base}    mtu: 20\n"))),
            "ports[0].mtu"
        );
        assert_eq!(
            field(check(&format!(
                "{base}  - name: lan\n    device: net_null1\n"
            ))),
            "ports[1].name"
        );
        assert_eq!(
            field(check("ports:\n  - name: a\n    device: eth0\n")),
            "ports[0].device",
            "a kernel interface name is not a DPDK device"
        );
        assert_eq!(
            field(check(&format!(
                "{base}routes:\n  - prefix: 0.0.0.0/0\n    via: 192.0.2.1\n"
            ))),
            "routes[0].via",
            "gateway not on a connected network"
        );
        assert_eq!(
            field(check(&format!("{base}workers:\n  cores: []\n"))),
            "workers.cores"
        );
        assert_eq!(
            field(check(&format!(
                "{base}workers:\n  cores: [1]\n  queues:\n    - {{worker: 3, port: lan, queue: 0}}\n"
            ))),
            "workers.queues[0].worker"
        );
        assert_eq!(
            field(check(&format!(
                "{base}    rx_queues: 2\nworkers:\n  cores: [1]\n  queues:\n    - {{worker: 0, port: lan, queue: 0}}\n"
            ))),
            "workers.queues",
            "queue 1 is polled by nobody"
        );
    }

    #[test]
    fn tunables_are_checked_by_the_given_validator() {
        let c = Config::parse(
            "ports:\n  - name: lan\n    device: net_null0\nconntrack:\n  timeouts:\n    nf_conntrack_bogus: 3\n",
        )
        .unwrap();
        let strict = |n: &str, _: u64| {
            if n == "nf_conntrack_bogus" {
                Err("unknown tunable".to_string())
            } else {
                Ok(())
            }
        };
        assert_eq!(
            field(c.validate(&strict).unwrap_err()),
            "conntrack.timeouts.nf_conntrack_bogus"
        );
    }

    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:03:00.0"));
        assert!(is_pci_address("03:00.1"));
        assert!(!is_pci_address("net_memif0"));
        assert!(!is_pci_address("0000:03:00.8"));
        assert!(!is_pci_address("0000:3:00.0"));
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(parse_mac("02:00:00:00:00:fe"), Some([2, 0, 0, 0, 0, 0xfe]));
        assert_eq!(parse_mac("02:00:00:00:00"), None);
        assert_eq!(parse_mac("02:00:00:00:00:00:01"), None);
        assert_eq!(parse_mac("zz:00:00:00:00:00"), None);
    }

    #[test]
    fn a_backups_standby_addresses_are_its_service_addresses_or_every_port_address() {
        let base = "ports:\n  - name: lan\n    device: net_null0\n    addresses: [198.18.1.1/24, \"2001:db8:1::1/64\"]\n";
        let c = Config::parse(base).unwrap();
        assert_eq!(c.ha.role, HaRole::Primary);
        assert!(
            c.standby_addresses().is_empty(),
            "a primary answers at once"
        );
        let all = Config::parse(&format!("{base}ha:\n  role: backup\n")).unwrap();
        all.validate(&any_tunable).unwrap();
        let v4 = crate::wire::Addr::from_v4([198, 18, 1, 1]);
        let v6 = crate::wire::Addr::from("2001:db8:1::1".parse::<std::net::IpAddr>().unwrap());
        assert_eq!(all.standby_addresses(), vec![v4, v6]);
        let one = Config::parse(&format!(
            "{base}ha:\n  role: backup\n  service_addresses: [198.18.1.1]\n"
        ))
        .unwrap();
        one.validate(&any_tunable).unwrap();
        assert_eq!(one.standby_addresses(), vec![v4]);
        let aa = Config::parse(&format!(
            "{base}ha:\n  role: active-active\n  service_addresses: [198.18.1.1]\n  \
             local_node: 2\n  total_nodes: 2\n"
        ))
        .unwrap();
        aa.validate(&any_tunable).unwrap();
        assert!(aa.standby_addresses().is_empty());
        assert_eq!(
            aa.nat_node_slice(),
            crate::nat::NodeSlice::new(2, 2).unwrap()
        );
        assert_eq!(
            field(check(&format!(
                "{base}ha:\n  role: backup\n  service_addresses: [198.18.1.1, 198.18.1.2]\n"
            ))),
            "ha.service_addresses[1]",
            "not an address of a port"
        );
        assert_eq!(
            field(check(&format!("{base}ha:\n  service_addresses: [lan]\n"))),
            "ha.service_addresses[0]"
        );
        assert!(Config::parse(&format!("{base}ha:\n  role: master\n")).is_err());
    }

    #[test]
    fn active_active_needs_its_node_number_and_the_node_count() {
        let base = "ports:\n  - name: lan\n    device: net_null0\n    addresses: [198.18.1.1/24]\n";
        let ha = |rest: &str| format!("{base}ha:\n{rest}");
        let aa = "  role: active-active\n";
        let cases = [
            (aa.to_string(), "ha.total_nodes"),
            (format!("{aa}  total_nodes: 2\n"), "ha.local_node"),
            (
                format!("{aa}  total_nodes: 1\n  local_node: 1\n"),
                "ha.total_nodes",
            ),
            (
                format!("{aa}  total_nodes: 17\n  local_node: 1\n"),
                "ha.total_nodes",
            ),
            (
                format!("{aa}  total_nodes: 2\n  local_node: 0\n"),
                "ha.local_node",
            ),
            (
                format!("{aa}  total_nodes: 2\n  local_node: 3\n"),
                "ha.local_node",
            ),
            ("  role: backup\n  local_node: 1\n".into(), "ha.local_node"),
            ("  total_nodes: 2\n".into(), "ha.total_nodes"),
        ];
        for (rest, f) in cases {
            assert_eq!(field(check(&ha(&rest))), f, "{rest}");
        }
        let ok = Config::parse(&ha(&format!("{aa}  total_nodes: 3\n  local_node: 3\n"))).unwrap();
        ok.validate(&any_tunable).unwrap();
        assert_eq!(
            ok.nat_node_slice(),
            crate::nat::NodeSlice::new(3, 3).unwrap()
        );
        let primary = Config::parse(base).unwrap();
        assert_eq!(primary.nat_node_slice(), crate::nat::NodeSlice::default());
    }
}
