//! The independent verifier (MODEL §5): decides whether every link stays up in every
//! interleaving a plan allows, except the links it declares as disruptions.
//!
//! It does not use the planner or MODEL §4's prerequisites. It reasons from the state
//! tables (MODEL §3, with single-identity nodes §12 and bridges §11) and the plan's
//! partial order alone: two ends of a link can be in states `i` (client has done its
//! first `i` steps) and `j` at the same time iff the client's step `i+1` is not required
//! before the server's step `j`, and the server's step `j+1` is not required before the
//! client's step `i`. The link is broken iff such a pair of states fails the handshake
//! rule with bridges (which is MODEL §2's rule while no node sends bridges).

use serde::{Deserialize, Serialize};

use crate::fleet::{Fleet, Link};
use crate::order::{PlanOrder, StepIx};
use crate::plan::Plan;
use rustc_hash::FxHashMap;

use crate::state::{MAX_STEPS, Profile, handshake_chains};

/// The verifier's decision on a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// True iff no undeclared link can break.
    pub safe: bool,
    /// Waves in the plan's partial order (longest chain + 1).
    pub waves: u32,
    /// Links that can break and are not declared, with a witness each.
    pub broken: Vec<BrokenLink>,
    /// Number of entries in `broken`.
    pub undeclared_count: usize,
    /// Declared disruptions (whether or not they actually break).
    pub declared_count: usize,
    /// Rotated links checked (self-links included).
    pub links_checked: usize,
}

/// A link that some interleaving breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenLink {
    /// The connecting node.
    pub client: String,
    /// The serving node.
    pub server: String,
    /// The two steps whose interleaving breaks it: the first may run before the second.
    pub steps: [StepRef; 2],
    /// The TLS failure that results.
    pub reason: String,
}

/// A step named in a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRef {
    /// The step's id in the plan.
    pub id: u64,
    /// Its node.
    pub node: String,
    /// Its action.
    pub action: String,
}

/// State pairs `(client steps done, server steps done)` that fail the handshake rule,
/// for one pair of node profiles, read off the state tables.
fn failing_pairs(client: Profile, server: Profile, bridged: bool) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for i in 0..=client.steps(bridged).len() {
        for j in 0..=server.steps(bridged).len() {
            let c = client.state_after(bridged, i);
            let s = server.state_after(bridged, j);
            if handshake_chains(c, client.chains, s, server.chains).is_err() {
                pairs.push((i, j));
            }
        }
    }
    pairs
}

/// Reachability in the plan's partial order, pruned by levels: a step can only be
/// required before steps of a strictly higher level. Breadth-first, because the
/// answers that hold are almost always one or two prerequisites away.
struct Precedence<'a> {
    order: &'a PlanOrder,
    level: Vec<u32>,
    mark: Vec<u32>,
    epoch: u32,
    queue: std::collections::VecDeque<StepIx>,
}

impl Precedence<'_> {
    /// Whether `x` must be done before `y` can run (x ≤ y, x ≠ y).
    fn before(&mut self, x: StepIx, y: StepIx) -> bool {
        let lx = self.level[x as usize];
        if x == y || lx >= self.level[y as usize] {
            return false;
        }
        self.epoch += 1;
        self.queue.clear();
        self.queue.push_back(y);
        while let Some(z) = self.queue.pop_front() {
            for &p in &self.order.preds[z as usize] {
                if p == x {
                    return true;
                }
                if self.level[p as usize] > lx && self.mark[p as usize] != self.epoch {
                    self.mark[p as usize] = self.epoch;
                    self.queue.push_back(p);
                }
            }
        }
        false
    }
}

/// Decide whether `plan`, resolved as `order` against `fleet`, is safe.
pub fn verify(fleet: &Fleet, plan: &Plan, order: &PlanOrder) -> Verdict {
    let level = order.levels();
    let waves = if order.is_empty() {
        0
    } else {
        level.iter().max().map_or(0, |m| m + 1)
    };
    let mut reach = Precedence {
        order,
        level,
        mark: vec![0; order.len()],
        epoch: 0,
        queue: std::collections::VecDeque::new(),
    };
    let bridged = order.bridged;
    // A handful of profile pairs cover any fleet; their tables are computed once.
    let mut table: FxHashMap<(Profile, Profile), Vec<(usize, usize)>> = FxHashMap::default();
    let mut broken = Vec::new();
    for &link in &fleet.links {
        if order.disrupted.contains(&link) {
            continue;
        }
        if link.is_self() {
            // Both ends are the same node, always in the same state.
            let p = fleet.profile(link.client);
            let fails = (0..=p.steps(bridged).len()).any(|i| {
                let s = p.state_after(bridged, i);
                handshake_chains(s, p.chains, s, p.chains).is_err()
            });
            debug_assert!(!fails, "the state table lets a node reject itself");
            continue;
        }
        let key = (fleet.profile(link.client), fleet.profile(link.server));
        let pairs = table
            .entry(key)
            .or_insert_with(|| failing_pairs(key.0, key.1, bridged));
        if let Some(found) = first_coexisting(&mut reach, order, link, pairs) {
            broken.push(describe(fleet, plan, order, link, found));
        }
    }
    let undeclared_count = broken.len();
    Verdict {
        safe: broken.is_empty(),
        waves,
        broken,
        undeclared_count,
        declared_count: order.disrupted.len(),
        links_checked: fleet.links.len(),
    }
}

/// The first failing state pair both ends can be in at once, if any.
fn first_coexisting(
    reach: &mut Precedence<'_>,
    order: &PlanOrder,
    link: Link,
    pairs: &[(usize, usize)],
) -> Option<(usize, usize)> {
    let c = &order.node_steps[link.client as usize];
    let s = &order.node_steps[link.server as usize];
    // Memo of "client step a is required before server step b" and the reverse.
    let mut c_before_s = Memo::default();
    let mut s_before_c = Memo::default();
    for &(i, j) in pairs {
        // Client has done exactly i steps and server exactly j: the client's next step
        // must not be required before the server's last done step, and vice versa.
        let client_blocked =
            i < c.len() && j > 0 && c_before_s.get(i, j - 1, || reach.before(c[i], s[j - 1]));
        if client_blocked {
            continue;
        }
        let server_blocked =
            j < s.len() && i > 0 && s_before_c.get(j, i - 1, || reach.before(s[j], c[i - 1]));
        if !server_blocked {
            return Some((i, j));
        }
    }
    None
}

/// Answers to "step `a` of one node is required before step `b` of the other", with
/// what a node's own order implies: `x[a] ≤ y[b]` holds if `x[a'] ≤ y[b']` holds for some
/// `a' ≥ a, b' ≤ b`, and fails if it fails for some `a' ≤ a, b' ≥ b`.
#[derive(Default)]
struct Memo([[Option<bool>; MAX_STEPS]; MAX_STEPS]);

impl Memo {
    fn get(&mut self, a: usize, b: usize, compute: impl FnOnce() -> bool) -> bool {
        let known = &self.0;
        if (a..MAX_STEPS).any(|a2| (0..=b).any(|b2| known[a2][b2] == Some(true))) {
            return true;
        }
        if (0..=a).any(|a2| (b..MAX_STEPS).any(|b2| known[a2][b2] == Some(false))) {
            return false;
        }
        let answer = compute();
        self.0[a][b] = Some(answer);
        answer
    }
}

fn describe(
    fleet: &Fleet,
    plan: &Plan,
    order: &PlanOrder,
    link: Link,
    (i, j): (usize, usize),
) -> BrokenLink {
    let c = &order.node_steps[link.client as usize];
    let s = &order.node_steps[link.server as usize];
    // The step one end has done that the other end's pending step is not ordered
    // before: "the first may run before the second".
    let (done, pending) = if j > 0 && i < c.len() {
        (s[j - 1], c[i])
    } else {
        (c[i - 1], s[j])
    };
    let step_ref = |ix: StepIx| {
        let step = &plan.steps[ix as usize];
        StepRef {
            id: step.id,
            node: step.node.clone(),
            action: step.action.to_string(),
        }
    };
    let (cp, sp) = (fleet.profile(link.client), fleet.profile(link.server));
    let cs = cp.state_after(order.bridged, i);
    let ss = sp.state_after(order.bridged, j);
    let failure = handshake_chains(cs, cp.chains, ss, sp.chains)
        .err()
        .map(|f| f.to_string())
        .unwrap_or_default();
    BrokenLink {
        client: fleet.id(link.client).to_string(),
        server: fleet.id(link.server).to_string(),
        steps: [step_ref(done), step_ref(pending)],
        reason: failure,
    }
}
