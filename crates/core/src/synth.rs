//! Deterministic synthetic fleets for benchmarks, scale runs and the simulator.
//!
//! A tiered service graph: edge clients call front ends, which call services, down to a
//! few deep servers; links always point down the stack, so prerequisites stay acyclic
//! as in a real deployment, and a share of nodes are constrained (`atomic`).
//! A small linear congruential generator keeps it dependency-free and reproducible.

use crate::state::Mode;
use crate::topology::{Control, LinkSpec, NodeSpec, Topology};

/// A reproducible pseudo-random sequence (64-bit LCG, upper 32 bits).
#[derive(Debug, Clone)]
pub struct Lcg(u64);

impl Lcg {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Lcg(seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407))
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 32) as u32
    }

    /// A number in `0..bound` (bound > 0).
    pub fn below(&mut self, bound: u32) -> u32 {
        ((self.next_u32() as u64 * bound as u64) >> 32) as u32
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u32() as f64) < p * (u32::MAX as f64 + 1.0)
    }
}

/// Shape of a synthetic fleet.
#[derive(Debug, Clone)]
pub struct FleetShape {
    /// Number of nodes.
    pub nodes: usize,
    /// Servers per client.
    pub fan_out: usize,
    /// Share of atomic (constrained) nodes.
    pub atomic_share: f64,
    /// Anchor the executor's control channel in the rotated CA.
    pub control: bool,
    /// Seed of the generator.
    pub seed: u64,
}

impl FleetShape {
    /// The shape issue 3's speed targets are measured on: fan-out 10, 30% atomic
    /// nodes, no control channel, a fixed seed.
    pub fn planning_benchmark(nodes: usize) -> Self {
        FleetShape {
            nodes,
            fan_out: 10,
            atomic_share: 0.3,
            control: false,
            seed: 7,
        }
    }
}

/// Relative sizes of the tiers, from edge clients down to the deepest servers.
const TIER_WEIGHTS: [usize; 7] = [30, 25, 20, 12, 8, 4, 1];

/// A layered fleet of the given shape: nodes fill seven tiers (many edge clients, few
/// deep servers) and every node outside the deepest tier is a client of `fan_out`
/// random nodes of the next tier.
pub fn layered_fleet(shape: &FleetShape) -> Topology {
    let mut rng = Lcg::new(shape.seed);
    let n = shape.nodes;
    let total: usize = TIER_WEIGHTS.iter().sum();
    // Tier boundaries: tier t holds nodes starts[t]..starts[t + 1].
    let mut starts = vec![0usize];
    let mut acc = 0;
    for w in TIER_WEIGHTS {
        acc += w;
        starts.push(n * acc / total);
    }
    let nodes = (0..n)
        .map(|i| {
            let mode = if rng.chance(shape.atomic_share) {
                Mode::Atomic
            } else {
                Mode::Bundle
            };
            NodeSpec::new(format!("n{i}"), mode)
        })
        .collect();
    let mut links = Vec::with_capacity(n * shape.fan_out);
    for tier in 0..TIER_WEIGHTS.len() - 1 {
        let (lo, hi) = (starts[tier + 1], starts[tier + 2]);
        if hi == lo {
            continue;
        }
        for i in starts[tier]..starts[tier + 1] {
            for _ in 0..shape.fan_out {
                let j = lo + rng.below((hi - lo) as u32) as usize;
                links.push(LinkSpec {
                    client: format!("n{i}"),
                    server: format!("n{j}"),
                    ca: None,
                });
            }
        }
    }
    Topology {
        ca: "synthetic-root".into(),
        nodes,
        links,
        control: shape.control.then(|| Control {
            ca: "synthetic-root".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::Lcg;

    #[test]
    fn draws_cover_the_whole_range_and_chances_hold() {
        let mut rng = Lcg::new(9);
        let draws: Vec<u32> = (0..10_000).map(|_| rng.below(10)).collect();
        for k in 0..10 {
            let n = draws.iter().filter(|&&d| d == k).count();
            assert!((800..1200).contains(&n), "{k} drawn {n} times of 10,000");
        }
        let hits = (0..10_000).filter(|_| rng.chance(0.3)).count();
        assert!(
            (2_700..3_300).contains(&hits),
            "chance(0.3) hit {hits} of 10,000"
        );
    }
}
