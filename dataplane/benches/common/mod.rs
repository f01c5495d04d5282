//! The router the whole-pipeline benches run (`pipeline`, `fastpath`): lan port 0 at
//! 198.18.0.1, wan port 1 at 198.19.0.1/24 with 100 /24 routes via 198.19.0.254, whose
//! neighbour entry is static.

use std::sync::Arc;

use dataplane::conntrack::Tunables;
use dataplane::route::{NeighConfig, NeighborCache, Prefix, RouteTableBuilder};
use dataplane::rules::WorkerRuleset;
use dataplane::wire::Addr;
use dataplane::worker::{Pipeline, PipelineConfig, PortInfo};

pub const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
pub const GW_MAC: [u8; 6] = [2, 0, 0, 0, 2, 254];

/// Worker 0 of 1 on that router (fixed hash seed): the lan prefix is `lan_len` bits long,
/// the table holds `ct_capacity` entries.
pub fn router(
    lan_len: u8,
    ct_capacity: u32,
    tunables: Tunables,
    rules: Option<WorkerRuleset>,
) -> Pipeline {
    let mut b = RouteTableBuilder::new();
    b.port_address(0, Addr::from_v4([198, 18, 0, 1]), lan_len)
        .unwrap();
    b.port_address(1, Addr::from_v4([198, 19, 0, 1]), 24)
        .unwrap();
    let gw = Addr::from_v4([198, 19, 0, 254]);
    for i in 0..100u8 {
        let p: Prefix = format!("203.0.{i}.0/24").parse().unwrap();
        b.static_route(p, gw, None).unwrap();
    }
    let mut n: NeighborCache<()> = NeighborCache::new(NeighConfig::default());
    n.add_static(1, gw, GW_MAC);
    let ports = [LAN_MAC, WAN_MAC]
        .into_iter()
        .map(|mac| PortInfo {
            mac,
            mtu: 1500,
            hw_rss: true,
        })
        .collect();
    let config = PipelineConfig {
        ports,
        ct_capacity,
        tunables,
        owner: None,
        ct_seed: Some(0x5eed),
        expect: None,
        nat_node: Default::default(),
    };
    Pipeline::new(
        0,
        1,
        &config,
        Arc::new(b.build()),
        Arc::new(n.snapshot_if_changed().unwrap()),
        rules,
    )
}
