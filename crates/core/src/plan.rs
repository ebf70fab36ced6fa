//! The plan file of MODEL §8 (`rollover-plan/1`): steps with their cross-node
//! prerequisites, a wave schedule, and declared disruptions (steps may include the
//! `bridge`/`unbridge` steps of MODEL §11).

use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::ids::check_node_id;
use crate::source::Document;
use crate::state::Action;

/// The `format` tag of plan files.
pub const PLAN_FORMAT: &str = "rollover-plan/1";

/// A rotation plan: a partial order on steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Always [`PLAN_FORMAT`].
    pub format: String,
    /// The rotated CA; must match the topology's.
    #[serde(deserialize_with = "crate::source::string_only")]
    pub ca: String,
    /// How the plan was made (`waves` or `claim`), when the planner wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// How cycles were broken: `none`, `exact` or `heuristic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle_breaking: Option<String>,
    /// The steps. A node's own steps are ordered by their order here.
    pub steps: Vec<Step>,
    /// Links the plan accepts will fail during the rotation.
    #[serde(default)]
    pub disruptions: Vec<Disruption>,
    /// Informative only: the figures of this plan and of other strategies on the same
    /// topology (e.g. what `bridge` would give after a `waves` plan). Never read by
    /// the verifier or the executor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comparison: Vec<Figures>,
}

/// The size of a plan a strategy makes, for comparing strategies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Figures {
    /// The strategy (`waves`, `bridge`, ...).
    pub strategy: String,
    /// Waves of its plan.
    pub waves: u32,
    /// Disruptions it declares.
    pub disruptions: usize,
}

impl Figures {
    /// The figures of `plan`.
    pub fn of(plan: &Plan) -> Figures {
        Figures {
            strategy: plan.strategy.clone().unwrap_or_default(),
            waves: plan.wave_count(),
            disruptions: plan.disruptions.len(),
        }
    }
}

/// One step of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique step id.
    pub id: u64,
    /// The node taking the step.
    #[serde(deserialize_with = "crate::source::string_only")]
    pub node: String,
    /// What the node does.
    pub action: Action,
    /// A schedule consistent with `after` (the longest prerequisite chain before it).
    #[serde(default)]
    pub wave: u32,
    /// Ids of steps of other nodes that must be done first.
    #[serde(default)]
    pub after: Vec<u64>,
}

/// A link the plan accepts will fail, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disruption {
    /// The connecting node.
    #[serde(deserialize_with = "crate::source::string_only")]
    pub client: String,
    /// The serving node.
    #[serde(deserialize_with = "crate::source::string_only")]
    pub server: String,
    /// Why no safe order keeps it up.
    pub reason: String,
}

impl Plan {
    /// Parse a plan document (JSON, or YAML), checking its structure. Consistency with a
    /// topology is checked by [`crate::order::PlanOrder::resolve`].
    pub fn parse(origin: &str, text: &str) -> Result<Plan, CoreError> {
        Plan::parse_document(&Document::new(origin, text))
    }

    /// Parse a plan document whose format is already known, checking its format tag.
    pub fn parse_document(doc: &Document<'_>) -> Result<Plan, CoreError> {
        let plan: Plan = doc.parse()?;
        if plan.format != PLAN_FORMAT {
            return Err(doc.error_in(
                &[crate::source::PathPart::Key("format")],
                format!("expected `{PLAN_FORMAT}`, found `{}`", plan.format),
            ));
        }
        plan.check_ids(doc)?;
        Ok(plan)
    }

    /// Every node id the plan names (steps, disruptions) against the id rule of
    /// [`crate::ids`], before any consistency check reads or quotes them. Plans may name
    /// `@executor`, so the topology's reserved-`@` rule does not apply.
    pub fn check_ids(&self, doc: &Document<'_>) -> Result<(), CoreError> {
        use crate::source::PathPart::{Index, Key};
        let check = |path: &[crate::source::PathPart<'_>], id: &str| {
            check_node_id(id).map_err(|bad| doc.error_in(path, bad.to_string()))
        };
        for (i, step) in self.steps.iter().enumerate() {
            check(&[Key("steps"), Index(i), Key("node")], &step.node)?;
        }
        for (i, d) in self.disruptions.iter().enumerate() {
            check(&[Key("disruptions"), Index(i), Key("client")], &d.client)?;
            check(&[Key("disruptions"), Index(i), Key("server")], &d.server)?;
        }
        Ok(())
    }

    /// The number of waves in the schedule written in the plan.
    pub fn wave_count(&self) -> u32 {
        self.steps
            .iter()
            .map(|s| s.wave.saturating_add(1))
            .max()
            .unwrap_or(0)
    }

    /// Pretty JSON, as written to plan files.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-step plan in YAML; `{ca}`, `{node}` and `{client}` are replaced per case.
    const PLAN: &str = "\
format: rollover-plan/1
ca: {ca}
steps:
  - {id: 0, node: {node}, action: stage}
  - {id: 1, node: a, action: present, after: [0]}
disruptions:
  - {client: {client}, server: a, reason: cycle}
";

    fn yaml(ca: &str, node: &str, client: &str) -> String {
        PLAN.replace("{ca}", ca)
            .replace("{node}", node)
            .replace("{client}", client)
    }

    #[test]
    fn yaml_plan_with_string_ids_parses() {
        let plan = Plan::parse("p.yaml", &yaml("r", "a", "b")).unwrap();
        assert_eq!(plan.ca, "r");
        assert_eq!(plan.steps[0].node, "a");
        assert_eq!(plan.disruptions[0].client, "b");
        // Quoted, a number is a string like any other.
        let plan = Plan::parse("p.yaml", &yaml("\"7\"", "'12'", "\"true\"")).unwrap();
        assert_eq!((plan.ca.as_str(), plan.steps[0].node.as_str()), ("7", "12"));
        assert_eq!(plan.disruptions[0].client, "true");
    }

    /// Step nodes and disruption ends follow the id rule, at their line and field.
    #[test]
    fn unprintable_and_overlong_node_ids_are_refused() {
        let long = "m".repeat(254);
        for (text, line, field, says) in [
            (
                yaml("r", "\"a\\e]0;t\\a\"", "b"),
                4,
                "steps[0].node",
                "U+001B",
            ),
            (
                yaml("r", "a", "\"b\\rc\""),
                7,
                "disruptions[0].client",
                "U+000D",
            ),
            (yaml("r", &long, "b"), 4, "steps[0].node", "at most 253"),
        ] {
            let e = match Plan::parse("p.yaml", &text) {
                Ok(p) => panic!("accepted {text}: {p:?}"),
                Err(e) => e.as_input().expect("an input error").clone(),
            };
            assert_eq!((e.line, e.field.as_str()), (Some(line), field), "{e}");
            assert!(e.message.contains(says), "{e}");
        }
        assert!(Plan::parse("p.yaml", &yaml("r", "\"@executor\"", "b")).is_ok());
    }

    /// YAML types a plain `7`, `12` or `true` as a number or a boolean: refused as JSON
    /// refuses them, naming the line and the field, rather than read as text.
    #[test]
    fn yaml_numbers_and_booleans_are_not_node_ids_or_ca_names() {
        for (text, line, field, value) in [
            (yaml("7", "a", "b"), 2, "ca", "7"),
            (yaml("r", "12", "b"), 4, "steps[0].node", "12"),
            (yaml("r", "a", "true"), 7, "disruptions[0].client", "true"),
        ] {
            let e = match Plan::parse("p.yaml", &text) {
                Ok(p) => panic!("accepted {text}: {p:?}"),
                Err(e) => e.as_input().expect("an input error").clone(),
            };
            assert_eq!(
                (e.file.as_str(), e.line, e.field.as_str()),
                ("p.yaml", Some(line), field),
                "{text}: {e}"
            );
            assert!(e.message.contains(value), "{text}: {e}");
            assert!(e.message.contains("expected a string"), "{text}: {e}");
        }
    }
}
