//! Generates `examples/plant-300.yaml`, a realistic 300-node plant, deterministically:
//!
//! ```text
//! cargo run -p rollover-cli --example gen_plant > examples/plant-300.yaml
//! ```
//!
//! Five tiers (operator stations, site services, area gateways, PLCs, field devices)
//! over eight process areas; about a third of the nodes are constrained `atomic`
//! devices. Links follow the usual traffic: stations to site services, SCADA polling
//! gateways, gateways and engineering stations polling PLCs, PLCs driving field I/O,
//! devices publishing to brokers, PLC interlocks. Every link between two atomic nodes
//! goes "downstream" in a fixed rank order (tier, then index), so atomic nodes never
//! form a cycle and the plan needs no disruption. Site services also talk both ways
//! (bundle nodes: cycles among them are harmless). The control channel is anchored in
//! the rotated CA; a few links go to ERP and cloud endpoints under other CAs.
//!
//! The output is committed; rerunning this reproduces it byte for byte.

use std::collections::BTreeSet;
use std::fmt::Write;

/// A tiny deterministic generator (SplitMix64); no dependency, same output everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// `k` distinct picks from `items`.
    fn pick<'a>(&mut self, items: &'a [usize], k: usize) -> Vec<&'a usize> {
        let mut chosen = BTreeSet::new();
        while chosen.len() < k.min(items.len()) {
            chosen.insert(self.below(items.len()));
        }
        chosen.into_iter().map(|i| &items[i]).collect()
    }
}

struct Node {
    id: String,
    atomic: bool,
    tier: u8,
    address: String,
}

#[derive(Default)]
struct Plant {
    nodes: Vec<Node>,
    links: Vec<(usize, usize, Option<&'static str>)>,
    seen: BTreeSet<(usize, usize)>,
}

const AREAS: usize = 8;

impl Plant {
    fn node(&mut self, id: String, atomic: bool, tier: u8, area: usize) -> usize {
        let n = self.nodes.len();
        let address = format!("10.{tier}.{area}.{}:7443", 10 + n % 240);
        self.nodes.push(Node {
            id,
            atomic,
            tier,
            address,
        });
        n
    }

    /// Add `client -> server` unless it repeats, or would let atomic nodes form a cycle
    /// (an atomic-to-atomic link must go downstream: to a higher tier, or the same
    /// tier and a later node).
    fn link(&mut self, client: usize, server: usize) {
        let (c, s) = (&self.nodes[client], &self.nodes[server]);
        if client == server || (c.atomic && s.atomic && (c.tier, client) > (s.tier, server)) {
            return;
        }
        if self.seen.insert((client, server)) {
            self.links.push((client, server, None));
        }
    }
}

fn main() {
    let mut rng = Rng(300);
    let mut p = Plant::default();

    // Tier 0: operator and engineering stations, MES (all bundle).
    let hmi: Vec<usize> = (1..=12)
        .map(|i| p.node(format!("hmi-{i:02}"), false, 0, i % AREAS))
        .collect();
    let eng: Vec<usize> = (1..=4)
        .map(|i| p.node(format!("eng-{i}"), false, 0, 0))
        .collect();
    let mes: Vec<usize> = (1..=2)
        .map(|i| p.node(format!("mes-{i}"), false, 0, 0))
        .collect();
    // Tier 1: site services (all bundle).
    let scada: Vec<usize> = (1..=4)
        .map(|i| p.node(format!("scada-{i}"), false, 1, 0))
        .collect();
    let hist: Vec<usize> = (1..=3)
        .map(|i| p.node(format!("historian-{i}"), false, 1, 0))
        .collect();
    let broker: Vec<usize> = (1..=3)
        .map(|i| p.node(format!("broker-{i}"), false, 1, 0))
        .collect();
    let alarm: Vec<usize> = (1..=2)
        .map(|i| p.node(format!("alarm-{i}"), false, 1, 0))
        .collect();
    let opc: Vec<usize> = (1..=4)
        .map(|i| p.node(format!("opcua-{i}"), false, 1, 0))
        .collect();
    // Tiers 2-4, per area: 5 gateways (1 atomic), 11-12 PLCs (about half atomic),
    // 17 field devices (6 atomic): the other 300 - 34 = 266 nodes.
    let mut gw: Vec<Vec<usize>> = Vec::new();
    let mut plc: Vec<Vec<usize>> = Vec::new();
    let mut dev: Vec<Vec<usize>> = Vec::new();
    for a in 0..AREAS {
        let area = a + 1;
        gw.push(
            (1..=5)
                .map(|i| p.node(format!("gw-a{area}-{i}"), i == 5, 2, area))
                .collect(),
        );
        let plcs = if a < 2 { 12 } else { 11 };
        plc.push(
            (1..=plcs)
                .map(|i| p.node(format!("plc-a{area}-{i:02}"), i % 2 == 0, 3, area))
                .collect(),
        );
        let kinds = ["drive", "io", "meter", "sensor", "valve"];
        dev.push(
            (1..=17)
                .map(|i| {
                    let kind = kinds[i % kinds.len()];
                    // Sensors and valve positioners are the constrained ones; drives,
                    // I/O racks and meters run firmware that can hold two roots.
                    let atomic = kind == "sensor" || kind == "valve";
                    p.node(format!("{kind}-a{area}-{i:02}"), atomic, 4, area)
                })
                .collect(),
        );
    }

    // Stations to site services.
    for &h in &hmi {
        for &s in rng.pick(&scada, 2) {
            p.link(h, s);
        }
        p.link(h, hist[rng.below(hist.len())]);
        p.link(h, alarm[rng.below(alarm.len())]);
    }
    for &m in &mes {
        for &s in hist.iter().chain(&broker).chain(&opc) {
            p.link(m, s);
        }
    }
    // Site services talk to each other both ways (bundle: harmless cycles).
    for &s in &scada {
        for &h in &hist {
            p.link(s, h);
            p.link(h, s);
        }
        for &a in &alarm {
            p.link(s, a);
        }
        p.link(s, s); // redundant SCADA pair heartbeat on its own listener
    }
    for &b in &broker {
        for &o in &broker {
            p.link(b, o); // broker cluster mesh
        }
    }
    for &o in &opc {
        for &h in &hist {
            p.link(o, h);
        }
    }
    for a in 0..AREAS {
        // SCADA and OPC UA aggregators poll the gateways; gateways publish to brokers.
        for &g in &gw[a] {
            for &s in rng.pick(&scada, 2) {
                p.link(s, g);
            }
            p.link(opc[a % opc.len()], g);
            for &b in rng.pick(&broker, 2) {
                p.link(g, b);
            }
        }
        // Engineering stations reach every gateway and PLC of their areas.
        let e = eng[a % eng.len()];
        for &n in gw[a].iter().chain(&plc[a]) {
            p.link(e, n);
        }
        // Gateways poll PLCs (2-3 each); PLCs push to a historian.
        for &c in &plc[a] {
            let k = 2 + rng.below(2);
            for &g in rng.pick(&gw[a], k) {
                p.link(g, c);
            }
            p.link(c, hist[rng.below(hist.len())]);
        }
        // Interlocks between neighbouring PLCs of an area.
        for w in plc[a].windows(3) {
            p.link(w[0], w[1]);
            if rng.chance(40) {
                p.link(w[0], w[2]);
            }
        }
        // PLCs drive field devices (1-2 each); devices publish to a broker; some
        // bundle devices report back to a PLC (dropped if both ends are atomic
        // and the link would point upstream).
        for &d in &dev[a] {
            let k = 1 + rng.below(2);
            for &c in rng.pick(&plc[a], k) {
                p.link(c, d);
            }
            p.link(d, broker[rng.below(broker.len())]);
            if rng.chance(35) {
                p.link(d, plc[a][rng.below(plc[a].len())]);
            }
            if rng.chance(25) {
                p.link(d, gw[a][rng.below(gw[a].len())]);
            }
        }
    }
    // Links under other CAs: stay as they are.
    let erp = p.node("erp".into(), false, 9, 0);
    let cloud = p.node("cloud-ingest".into(), false, 9, 0);
    for &m in &mes {
        p.links.push((m, erp, Some("corp-ca")));
    }
    for &h in &hist {
        p.links.push((h, cloud, Some("cloud-ca")));
    }
    for &s in &scada {
        p.links.push((s, erp, Some("corp-ca")));
    }
    for &h in &hmi {
        if rng.chance(50) {
            p.links.push((h, erp, Some("corp-ca")));
        }
    }

    let targets = &p.nodes[..p.nodes.len() - 2];
    let atomic = targets.iter().filter(|n| n.atomic).count();
    let foreign = p.links.iter().filter(|l| l.2.is_some()).count();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# plant-300: a generated, realistic plant under one device CA."
    );
    let _ = writeln!(
        out,
        "# Generated by `cargo run -p rollover-cli --example gen_plant` (deterministic);"
    );
    out.push_str("# edit the generator, not this file.\n#\n");
    let _ = writeln!(
        out,
        "# {} target nodes ({} atomic) in five tiers over {AREAS} process areas; {} links,",
        targets.len(),
        atomic,
        p.links.len()
    );
    let _ = writeln!(
        out,
        "# {foreign} of them under other CAs (ERP, cloud). The executor's control channel is"
    );
    out.push_str("# anchored in the rotated CA, so `@executor` is a client of every target.\n");
    out.push_str("# Atomic-to-atomic links all point downstream: no cycle, no disruption.\n");
    out.push_str("ca: plant-device-ca\ncontrol: {ca: plant-device-ca}\nnodes:\n");
    for (i, n) in targets.iter().enumerate() {
        if i == 0 || targets[i - 1].tier != n.tier {
            let _ = writeln!(
                out,
                "  # tier {}: {}",
                n.tier,
                [
                    "operator and engineering stations, MES",
                    "site services: SCADA, historians, brokers, alarms, OPC UA",
                    "area gateways",
                    "PLCs",
                    "field devices",
                ][n.tier as usize]
            );
        }
        let mode = if n.atomic { "atomic" } else { "bundle" };
        let _ = writeln!(
            out,
            "  - {{id: {}, mode: {mode}, address: \"{}\"}}",
            n.id, n.address
        );
    }
    out.push_str("links:\n");
    for &(c, s, ca) in &p.links {
        let (c, s) = (&p.nodes[c].id, &p.nodes[s].id);
        match ca {
            None => {
                let _ = writeln!(out, "  - {{client: {c}, server: {s}}}");
            }
            Some(ca) => {
                let _ = writeln!(out, "  - {{client: {c}, server: {s}, ca: {ca}}}");
            }
        }
    }
    print!("{out}");
}
