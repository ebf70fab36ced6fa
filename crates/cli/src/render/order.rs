//! The flat node order: every node once, sorted by the wave of its first step, then by
//! the position of that step in the plan; one id per line. Handy for scripts that can
//! only act on one node at a time.

use std::collections::HashSet;

use rollover_core::Plan;

/// Node ids in the order they first act, one per line.
pub fn nodes(plan: &Plan) -> String {
    let mut seen = HashSet::new();
    // A node's first step in file order is also its earliest (its own steps are
    // ordered by file order, and each comes in a later wave than the one before).
    let mut firsts: Vec<(u32, usize, &str)> = plan
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| seen.insert(s.node.as_str()))
        .map(|(i, s)| (s.wave, i, s.node.as_str()))
        .collect();
    firsts.sort_unstable();
    let mut out = String::new();
    for (_, _, node) in firsts {
        out.push_str(node);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use rollover_core::{Action, PLAN_FORMAT, Step};

    use super::*;

    fn step(id: u64, node: &str, action: Action, wave: u32) -> Step {
        Step {
            id,
            node: node.into(),
            action,
            wave,
            after: vec![],
        }
    }

    #[test]
    fn nodes_sorted_by_first_wave_then_plan_order() {
        let plan = Plan {
            format: PLAN_FORMAT.into(),
            ca: "r".into(),
            strategy: None,
            cycle_breaking: None,
            steps: vec![
                step(0, "b", Action::Stage, 0),
                step(1, "m", Action::Switch, 1),
                step(2, "a", Action::Stage, 0),
                step(3, "b", Action::Present, 1),
                step(4, "m", Action::Finalize, 2),
            ],
            disruptions: vec![],
            comparison: vec![],
        };
        assert_eq!(nodes(&plan), "b\na\nm\n");
    }
}
