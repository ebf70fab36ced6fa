//! Deterministic synthetic fleets for benchmarks, scale runs and the simulator.
//!
//! A tiered service graph: edge clients call front ends, which call services, down to a
//! few deep servers; links always point down the stack, so prerequisites stay acyclic
//! as in a real deployment, and a share of nodes are constrained (`atomic`).
//! Draws come from [`SeededRng`], so a seed gives the same fleet on every platform.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::state::Mode;
use crate::topology::{Control, LinkSpec, NodeSpec, Topology};

/// A reproducible pseudo-random sequence: `rand`'s xoshiro256++, seeded through
/// `seed_from_u64`. That algorithm is fixed (unlike `SmallRng`, which may differ by
/// platform or `rand` release), so a seed draws the same sequence everywhere. Every
/// seeded draw of the project (synthetic fleets, the simulator's interleavings and
/// probes, the scheduler's proptest) goes through it.
#[derive(Debug, Clone)]
pub struct SeededRng(Xoshiro256PlusPlus);

impl SeededRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRng(Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    /// A number in `0..bound`, uniformly (`bound` > 0; 0 is returned for 0).
    pub fn below(&mut self, bound: u32) -> u32 {
        if bound == 0 {
            return 0;
        }
        self.0.random_range(0..bound)
    }

    /// A fraction uniform in `0.0..1.0`.
    pub fn fraction(&mut self) -> f64 {
        self.0.random::<f64>()
    }

    /// True with probability `p` (clamped to `0.0..=1.0`; NaN is never).
    pub fn chance(&mut self, p: f64) -> bool {
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        self.0.random_bool(p)
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
    let mut rng = SeededRng::new(shape.seed);
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
    use super::SeededRng;

    #[test]
    fn draws_cover_the_whole_range_and_chances_hold() {
        let mut rng = SeededRng::new(9);
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
        let fractions: Vec<f64> = (0..10_000).map(|_| rng.fraction()).collect();
        assert!(fractions.iter().all(|f| (0.0..1.0).contains(f)));
        let low = fractions.iter().filter(|&&f| f < 0.25).count();
        assert!((2_200..2_800).contains(&low), "{low} of 10,000 below 0.25");
    }

    #[test]
    fn a_seed_replays_its_sequence() {
        let draw = |seed| {
            let mut rng = SeededRng::new(seed);
            (0..64).map(|_| rng.below(1_000)).collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
    }

    #[test]
    fn certain_and_impossible_chances() {
        let mut rng = SeededRng::new(1);
        assert!((0..1_000).all(|_| rng.chance(1.0) && !rng.chance(0.0)));
        assert_eq!(rng.below(0), 0);
        assert!((0..1_000).all(|_| rng.below(1) == 0));
    }
}
