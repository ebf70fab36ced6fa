//! The whole system end to end (issue 4): planner + executor + 12 agents as real gRPC
//! servers on 127.0.0.1 in one process (through the simulator's harness, which starts
//! exactly those servers and drives the rotation through the executor's gRPC API),
//! a mixed fleet whose control channel is anchored in the rotated CA.

use rollover_core::Topology;
use rollover_simulator::{SimOptions, simulate};

/// Twelve agents: bundle services and gateways, atomic PLCs and meters, a link under
/// another CA, and the executor as the planned `@executor` node.
const FLEET: &str = "
ca: site-ca
control: {ca: site-ca}
nodes:
  - {id: historian}
  - {id: scada}
  - {id: gateway-1}
  - {id: gateway-2}
  - {id: hmi-1}
  - {id: hmi-2}
  - {id: plc-1, mode: atomic}
  - {id: plc-2, mode: atomic}
  - {id: plc-3, mode: atomic}
  - {id: meter-1, mode: atomic}
  - {id: meter-2, mode: atomic}
  - {id: badge, mode: atomic}
links:
  - {client: scada, server: historian}
  - {client: hmi-1, server: scada}
  - {client: hmi-2, server: scada}
  - {client: scada, server: gateway-1}
  - {client: scada, server: gateway-2}
  - {client: gateway-1, server: plc-1}
  - {client: gateway-1, server: plc-2}
  - {client: gateway-2, server: plc-3}
  - {client: plc-1, server: plc-2}
  - {client: meter-1, server: historian}
  - {client: meter-2, server: historian}
  - {client: badge, server: hmi-1}
  - {client: historian, server: archive, ca: storage-ca}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_fleet_of_twelve_agents_rotates_with_every_probe_up() {
    let topology = Topology::parse("site.yaml", FLEET).unwrap();
    let outcome = simulate(
        &topology,
        SimOptions {
            probe_rate: 200,
            seed: 12,
            ..SimOptions::default()
        },
    )
    .await
    .expect("the rotation runs");
    let r = &outcome.report;
    assert!(outcome.verdict.safe);
    assert_eq!(r.nodes, 13, "12 agents and @executor");
    assert!(r.probes_after_steps > 0);
    assert_eq!(
        r.handshakes_failed, 0,
        "every probe during the run succeeded: {:#?}",
        r.failures
    );
    assert_eq!(r.links_probed_every_step, 1.0);
    assert_eq!(r.outcome, "succeeded: every step done");
    // Every agent (and the executor) trusts, holds and presents only the new root...
    assert_eq!(r.nodes_on_new_only, 13);
    // ...and a client holding only an old-root leaf is refused by every agent.
    assert_eq!((r.old_key_refused, r.old_key_checks), (12, 12));
    assert!(r.all_new);
}
