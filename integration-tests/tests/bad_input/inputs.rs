//! Topologies and plans, the inputs of Planner.Plan, Planner.Verify and
//! Executor.StartRotation: valid seeds, their typed mutations, and the bad inputs
//! issue 6 names ([`named_cases`]).

use std::fmt::Debug;
use std::sync::Arc;

use proptest::collection::vec as pvec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestRunner;
use rollover_core::Fleet;
use rollover_proto::v1;
use tonic::Code;

use crate::fuzz::*;

/// Bundle `gw`, `db`; atomic `m1`, `m2`; links `gw -> m1`, `gw -> m2`, `db -> gw`,
/// `m1 -> db`, and one under another CA. Agent addresses point at a closed port.
pub(crate) const TOPOLOGY_YAML: &str = "ca: corp
nodes:
  - {id: gw, mode: bundle, address: '127.0.0.1:1'}
  - {id: m1, mode: atomic, address: '127.0.0.1:1'}
  - {id: m2, mode: atomic, address: '127.0.0.1:1'}
  - {id: db, address: '127.0.0.1:1'}
links:
  - {client: gw, server: m1}
  - {client: gw, server: m2}
  - {client: db, server: gw}
  - {client: m1, server: db}
  - {client: gw, server: db, ca: other-ca}
";

#[derive(Debug, Clone)]
pub(crate) struct Inputs {
    pub(crate) topology: Option<v1::TopologySource>,
    pub(crate) plan: Option<v1::PlanSource>,
    pub(crate) strategy: i32,
    pub(crate) start_node: Option<String>,
    pub(crate) options: Option<v1::RotationOptions>,
}

impl Inputs {
    pub(crate) fn plan_request(&self) -> v1::PlanRequest {
        v1::PlanRequest {
            topology: self.topology.clone(),
            strategy: self.strategy,
            start_node: self.start_node.clone(),
        }
    }

    pub(crate) fn verify_request(&self) -> v1::VerifyRequest {
        v1::VerifyRequest {
            topology: self.topology.clone(),
            plan: self.plan.clone(),
        }
    }

    pub(crate) fn start_request(&self) -> v1::StartRotationRequest {
        let mut options = self.options.clone();
        if let Some(o) = options.as_mut() {
            o.strategy = self.strategy;
            o.start_node.clone_from(&self.start_node);
        }
        v1::StartRotationRequest {
            topology: self.topology.clone(),
            plan: self.plan.clone(),
            options,
            request_id: String::new(),
        }
    }

    pub(crate) fn topology(&mut self) -> Option<&mut v1::Topology> {
        match self.topology.as_mut()?.source.as_mut()? {
            v1::topology_source::Source::Topology(t) => Some(t),
            v1::topology_source::Source::Document(_) => None,
        }
    }

    pub(crate) fn plan(&mut self) -> Option<&mut v1::Plan> {
        match self.plan.as_mut()?.source.as_mut()? {
            v1::plan_source::Source::Plan(p) => Some(p),
            v1::plan_source::Source::Document(_) => None,
        }
    }

    pub(crate) fn document(&mut self, of_plan: bool) -> Option<&mut v1::Document> {
        if of_plan {
            match self.plan.as_mut()?.source.as_mut()? {
                v1::plan_source::Source::Document(d) => Some(d),
                v1::plan_source::Source::Plan(_) => None,
            }
        } else {
            match self.topology.as_mut()?.source.as_mut()? {
                v1::topology_source::Source::Document(d) => Some(d),
                v1::topology_source::Source::Topology(_) => None,
            }
        }
    }
}

pub(crate) fn core_topology() -> rollover_core::Topology {
    rollover_core::Topology::parse("fleet.yaml", TOPOLOGY_YAML).expect("seed topology")
}

pub(crate) fn core_plan() -> rollover_core::Plan {
    rollover_core::plan_waves(&Fleet::new(&core_topology()))
}

pub(crate) fn document(text: String, format: v1::DocumentFormat, origin: &str) -> v1::Document {
    v1::Document {
        text,
        format: format as i32,
        origin: origin.into(),
    }
}

/// Valid inputs: structured and document forms, with and without a plan.
pub(crate) fn input_seeds() -> Vec<Inputs> {
    use v1::plan_source::Source as P;
    use v1::topology_source::Source as T;
    let topology = core_topology();
    let plan = core_plan();
    let options = v1::RotationOptions {
        max_concurrency: 2,
        probe: true,
        ..Default::default()
    };
    let t_struct = || v1::TopologySource {
        source: Some(T::Topology(v1::Topology::from(&topology))),
    };
    let t_yaml = v1::TopologySource {
        source: Some(T::Document(document(
            TOPOLOGY_YAML.into(),
            v1::DocumentFormat::Unspecified,
            "fleet.yaml",
        ))),
    };
    let t_json = v1::TopologySource {
        source: Some(T::Document(document(
            topology.to_json(),
            v1::DocumentFormat::Json,
            "",
        ))),
    };
    let p_struct = || v1::PlanSource {
        source: Some(P::Plan(v1::Plan::from(&plan))),
    };
    let p_json = v1::PlanSource {
        source: Some(P::Document(document(
            plan.to_json(),
            v1::DocumentFormat::Unspecified,
            "plan.json",
        ))),
    };
    vec![
        Inputs {
            topology: Some(t_struct()),
            plan: Some(p_struct()),
            strategy: v1::Strategy::Waves as i32,
            start_node: None,
            options: Some(options.clone()),
        },
        Inputs {
            topology: Some(t_yaml),
            plan: Some(p_json.clone()),
            strategy: v1::Strategy::Claim as i32,
            start_node: Some("gw".into()),
            options: Some(options.clone()),
        },
        Inputs {
            topology: Some(t_json),
            plan: None,
            strategy: v1::Strategy::Unspecified as i32,
            start_node: None,
            options: None,
        },
        Inputs {
            topology: Some(t_struct()),
            plan: Some(p_json),
            strategy: v1::Strategy::Claim as i32,
            start_node: None,
            options: Some(v1::RotationOptions {
                dry_run: true,
                ..options
            }),
        },
    ]
}

/// A typed change to valid inputs.
#[derive(Debug, Clone)]
pub(crate) enum Mutation {
    NodeMode(Index, i32),
    NodeId(Index, String),
    NodeAddress(Index, Option<String>),
    DuplicateNode(Index),
    LinkEnd(Index, bool, String),
    LinkCa(Index, Option<String>),
    TopologyCa(String),
    DropTopologyOneof,
    DropTopology,
    TopologyAsDocument(i32),
    StepAction(Index, i32),
    StepNode(Index, String),
    StepId(Index, u64),
    StepAfter(Index, Vec<u64>),
    StepWave(Index, u32),
    SwapSteps(Index, Index),
    ReplayStep(Index),
    DropStep(Index),
    PlanCa(String),
    PlanFormat(String),
    Disruption(String, String),
    DropPlanOneof,
    DropPlan,
    PlanAsDocument(i32),
    DocumentFormat(bool, i32),
    DocumentOrigin(bool, String),
    DocumentEdit(bool, Index, usize, String),
    GarbageDocument(bool, String),
    Strategy(i32),
    StartNode(Option<String>),
    Options(u32, bool, bool, bool),
}

pub(crate) fn mutation() -> BoxedStrategy<Mutation> {
    use Mutation as M;
    let idx = any::<Index>;
    prop_oneof![
        (idx(), enum_value()).prop_map(|(i, v)| M::NodeMode(i, v)),
        (idx(), word()).prop_map(|(i, w)| M::NodeId(i, w)),
        (idx(), proptest::option::of(word())).prop_map(|(i, w)| M::NodeAddress(i, w)),
        idx().prop_map(M::DuplicateNode),
        (idx(), any::<bool>(), word()).prop_map(|(i, c, w)| M::LinkEnd(i, c, w)),
        (idx(), proptest::option::of(word())).prop_map(|(i, w)| M::LinkCa(i, w)),
        word().prop_map(M::TopologyCa),
        Just(M::DropTopologyOneof),
        Just(M::DropTopology),
        enum_value().prop_map(M::TopologyAsDocument),
        (idx(), enum_value()).prop_map(|(i, v)| M::StepAction(i, v)),
        (idx(), word()).prop_map(|(i, w)| M::StepNode(i, w)),
        (idx(), prop_oneof![0u64..20, Just(u64::MAX)]).prop_map(|(i, v)| M::StepId(i, v)),
        (idx(), pvec(prop_oneof![0u64..20, Just(u64::MAX)], 0..4))
            .prop_map(|(i, v)| M::StepAfter(i, v)),
        (idx(), prop_oneof![0u32..6, Just(u32::MAX)]).prop_map(|(i, v)| M::StepWave(i, v)),
        (idx(), idx()).prop_map(|(a, b)| M::SwapSteps(a, b)),
        idx().prop_map(M::ReplayStep),
        idx().prop_map(M::DropStep),
        word().prop_map(M::PlanCa),
        prop_oneof![Just("rollover-plan/2".to_string()), word()].prop_map(M::PlanFormat),
        (word(), word()).prop_map(|(c, s)| M::Disruption(c, s)),
        Just(M::DropPlanOneof),
        Just(M::DropPlan),
        enum_value().prop_map(M::PlanAsDocument),
        (any::<bool>(), enum_value()).prop_map(|(p, v)| M::DocumentFormat(p, v)),
        (
            any::<bool>(),
            prop_oneof![
                Just("x.json".to_string()),
                Just("x.yaml".to_string()),
                word()
            ]
        )
            .prop_map(|(p, o)| M::DocumentOrigin(p, o)),
        (
            any::<bool>(),
            idx(),
            0usize..12,
            prop_oneof![garbage(), word()]
        )
            .prop_map(|(p, i, n, s)| M::DocumentEdit(p, i, n, s)),
        (any::<bool>(), garbage()).prop_map(|(p, g)| M::GarbageDocument(p, g)),
        enum_value().prop_map(M::Strategy),
        proptest::option::of(word()).prop_map(M::StartNode),
        (
            prop_oneof![0u32..4, Just(u32::MAX)],
            any::<bool>(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(c, p, d, o)| M::Options(c, p, d, o)),
    ]
    .boxed()
}

pub(crate) fn pick<T>(items: &mut [T], i: Index) -> Option<&mut T> {
    if items.is_empty() {
        None
    } else {
        let at = i.index(items.len());
        items.get_mut(at)
    }
}

impl Mutation {
    pub(crate) fn apply(&self, inputs: &mut Inputs) {
        use Mutation as M;
        match self {
            M::NodeMode(i, v) => {
                if let Some(n) = inputs.topology().and_then(|t| pick(&mut t.nodes, *i)) {
                    n.mode = *v;
                }
            }
            M::NodeId(i, w) => {
                if let Some(n) = inputs.topology().and_then(|t| pick(&mut t.nodes, *i)) {
                    n.id.clone_from(w);
                }
            }
            M::NodeAddress(i, w) => {
                if let Some(n) = inputs.topology().and_then(|t| pick(&mut t.nodes, *i)) {
                    n.address.clone_from(w);
                }
            }
            M::DuplicateNode(i) => {
                if let Some(t) = inputs.topology()
                    && let Some(n) = pick(&mut t.nodes, *i).cloned()
                {
                    t.nodes.push(n);
                }
            }
            M::LinkEnd(i, client, w) => {
                if let Some(l) = inputs.topology().and_then(|t| pick(&mut t.links, *i)) {
                    if *client {
                        l.client.clone_from(w);
                    } else {
                        l.server.clone_from(w);
                    }
                }
            }
            M::LinkCa(i, w) => {
                if let Some(l) = inputs.topology().and_then(|t| pick(&mut t.links, *i)) {
                    l.ca.clone_from(w);
                }
            }
            M::TopologyCa(w) => {
                if let Some(t) = inputs.topology() {
                    t.ca.clone_from(w);
                }
            }
            M::DropTopologyOneof => {
                if let Some(t) = inputs.topology.as_mut() {
                    t.source = None;
                }
            }
            M::DropTopology => inputs.topology = None,
            M::TopologyAsDocument(format) => {
                let Some(t) = inputs.topology().cloned() else {
                    return;
                };
                // Whatever the structure now says, as a JSON document.
                let text = rollover_core::Topology::try_from(t)
                    .map(|t| t.to_json())
                    .unwrap_or_else(|e| e.to_string());
                let mut doc = document(text, v1::DocumentFormat::Json, "t.json");
                doc.format = *format;
                inputs.topology = Some(v1::TopologySource {
                    source: Some(v1::topology_source::Source::Document(doc)),
                });
            }
            M::StepAction(i, v) => {
                if let Some(s) = inputs.plan().and_then(|p| pick(&mut p.steps, *i)) {
                    s.action = *v;
                }
            }
            M::StepNode(i, w) => {
                if let Some(s) = inputs.plan().and_then(|p| pick(&mut p.steps, *i)) {
                    s.node.clone_from(w);
                }
            }
            M::StepId(i, v) => {
                if let Some(s) = inputs.plan().and_then(|p| pick(&mut p.steps, *i)) {
                    s.id = *v;
                }
            }
            M::StepAfter(i, v) => {
                if let Some(s) = inputs.plan().and_then(|p| pick(&mut p.steps, *i)) {
                    s.after.clone_from(v);
                }
            }
            M::StepWave(i, v) => {
                if let Some(s) = inputs.plan().and_then(|p| pick(&mut p.steps, *i)) {
                    s.wave = *v;
                }
            }
            M::SwapSteps(a, b) => {
                if let Some(p) = inputs.plan()
                    && !p.steps.is_empty()
                {
                    let (a, b) = (a.index(p.steps.len()), b.index(p.steps.len()));
                    p.steps.swap(a, b);
                }
            }
            M::ReplayStep(i) => {
                if let Some(p) = inputs.plan()
                    && let Some(s) = pick(&mut p.steps, *i).cloned()
                {
                    p.steps.push(s);
                }
            }
            M::DropStep(i) => {
                if let Some(p) = inputs.plan()
                    && !p.steps.is_empty()
                {
                    let at = i.index(p.steps.len());
                    p.steps.remove(at);
                }
            }
            M::PlanCa(w) => {
                if let Some(p) = inputs.plan() {
                    p.ca.clone_from(w);
                }
            }
            M::PlanFormat(w) => {
                if let Some(p) = inputs.plan() {
                    p.format.clone_from(w);
                }
            }
            M::Disruption(c, s) => {
                if let Some(p) = inputs.plan() {
                    p.disruptions.push(v1::Disruption {
                        client: c.clone(),
                        server: s.clone(),
                        reason: "fuzz".into(),
                    });
                }
            }
            M::DropPlanOneof => {
                if let Some(p) = inputs.plan.as_mut() {
                    p.source = None;
                }
            }
            M::DropPlan => inputs.plan = None,
            M::PlanAsDocument(format) => {
                let Some(p) = inputs.plan().cloned() else {
                    return;
                };
                let text = rollover_core::Plan::try_from(p)
                    .map(|p| p.to_json())
                    .unwrap_or_else(|e| e.to_string());
                let mut doc = document(text, v1::DocumentFormat::Json, "p.json");
                doc.format = *format;
                inputs.plan = Some(v1::PlanSource {
                    source: Some(v1::plan_source::Source::Document(doc)),
                });
            }
            M::DocumentFormat(of_plan, v) => {
                if let Some(d) = inputs.document(*of_plan) {
                    d.format = *v;
                }
            }
            M::DocumentOrigin(of_plan, w) => {
                if let Some(d) = inputs.document(*of_plan) {
                    d.origin.clone_from(w);
                }
            }
            M::DocumentEdit(of_plan, at, cut, insert) => {
                if let Some(d) = inputs.document(*of_plan) {
                    let mut chars: Vec<char> = d.text.chars().collect();
                    let at = if chars.is_empty() {
                        0
                    } else {
                        at.index(chars.len())
                    };
                    let end = (at + cut).min(chars.len());
                    chars.splice(at..end, insert.chars());
                    d.text = chars.into_iter().collect();
                }
            }
            M::GarbageDocument(of_plan, text) => {
                let doc = document(text.clone(), v1::DocumentFormat::Unspecified, "garbage");
                if *of_plan {
                    inputs.plan = Some(v1::PlanSource {
                        source: Some(v1::plan_source::Source::Document(doc)),
                    });
                } else {
                    inputs.topology = Some(v1::TopologySource {
                        source: Some(v1::topology_source::Source::Document(doc)),
                    });
                }
            }
            M::Strategy(v) => inputs.strategy = *v,
            M::StartNode(w) => inputs.start_node.clone_from(w),
            M::Options(concurrency, probe, dry_run, observe_only) => {
                inputs.options = Some(v1::RotationOptions {
                    max_concurrency: *concurrency,
                    probe: *probe,
                    dry_run: *dry_run,
                    observe_only: *observe_only,
                    ..Default::default()
                });
            }
        }
    }
}

/// Valid inputs with one to four typed mutations.
pub(crate) fn mutated_inputs() -> BoxedStrategy<Inputs> {
    let seeds = Arc::new(input_seeds());
    (any::<Index>(), pvec(mutation(), 1..5))
        .prop_map(move |(i, mutations)| {
            let mut inputs = seeds[i.index(seeds.len())].clone();
            for m in &mutations {
                m.apply(&mut inputs);
            }
            inputs
        })
        .boxed()
}

/// One named bad input, and how each method must refuse it (`None`: not checked,
/// e.g. Plan ignores the plan).
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) inputs: Inputs,
    pub(crate) plan: Option<Code>,
    pub(crate) verify: Option<Code>,
    pub(crate) start: Option<Code>,
}

/// The first element's index (`Index` has no constructor: shrink a random one to 0).
pub(crate) fn first() -> Index {
    use proptest::strategy::ValueTree;
    let mut runner = TestRunner::deterministic();
    let mut tree = any::<Index>().new_tree(&mut runner).expect("index");
    while tree.simplify() {}
    let index = tree.current();
    assert_eq!(index.index(1000), 0);
    index
}

/// The bad inputs issue 6 names, each on the first seed.
pub(crate) fn named_cases() -> Vec<Case> {
    use Mutation as M;
    let at = |_first: usize| first();
    let seed = input_seeds().swap_remove(0);
    let step_index = |node: &str, action: v1::StepAction| {
        let plan = v1::Plan::from(&core_plan());
        plan.steps
            .iter()
            .position(|s| s.node == node && s.action == action as i32)
            .expect("step in the seed plan")
    };
    let with = |mutations: &[M]| {
        let mut inputs = seed.clone();
        for m in mutations {
            m.apply(&mut inputs);
        }
        inputs
    };
    let custom = |f: &dyn Fn(&mut Inputs)| {
        let mut inputs = seed.clone();
        f(&mut inputs);
        inputs
    };
    let bad = Some(Code::InvalidArgument);
    let topology_case = |name, inputs| Case {
        name,
        inputs,
        plan: bad,
        verify: bad,
        start: bad,
    };
    let plan_case = |name, inputs| Case {
        name,
        inputs,
        plan: None,
        verify: bad,
        start: bad,
    };
    let (gw_stage, gw_retire) = (
        step_index("gw", v1::StepAction::Stage),
        step_index("gw", v1::StepAction::Retire),
    );
    let gw_present = step_index("gw", v1::StepAction::Present);
    vec![
        topology_case("no topology", with(&[M::DropTopology])),
        topology_case(
            "a topology source with no oneof set",
            with(&[M::DropTopologyOneof]),
        ),
        topology_case(
            "a topology document with garbage text",
            with(&[M::GarbageDocument(false, "nodes: [".into())]),
        ),
        topology_case(
            "a topology document that is an alias bomb",
            with(&[M::GarbageDocument(false, alias_bomb())]),
        ),
        topology_case(
            "a topology document nested 3000 deep",
            with(&[M::GarbageDocument(
                false,
                format!("{}{}", "[".repeat(3000), "]".repeat(3000)),
            )]),
        ),
        topology_case(
            "a document format out of the enum",
            with(&[M::TopologyAsDocument(9)]),
        ),
        topology_case(
            "a node mode out of the enum",
            with(&[M::NodeMode(at(0), 7)]),
        ),
        topology_case(
            "a node identity out of the enum",
            custom(&|i| i.topology().expect("topology").nodes[0].identity = 7),
        ),
        topology_case(
            "a probe that is not host:port",
            custom(&|i| i.topology().expect("topology").nodes[0].probe = Some("nginx".into())),
        ),
        topology_case("an empty node id", with(&[M::NodeId(at(0), String::new())])),
        topology_case("a node listed twice", with(&[M::DuplicateNode(at(0))])),
        topology_case("an empty CA", with(&[M::TopologyCa(String::new())])),
        topology_case(
            "a link with an empty client",
            with(&[M::LinkEnd(at(0), true, String::new())]),
        ),
        Case {
            name: "no plan",
            inputs: with(&[M::DropPlan]),
            plan: None,
            verify: bad,
            start: None,
        },
        plan_case("a plan source with no oneof set", with(&[M::DropPlanOneof])),
        plan_case(
            "a plan document with garbage text",
            with(&[M::GarbageDocument(true, "{\"steps\": [".into())]),
        ),
        plan_case(
            "a step action out of the enum",
            with(&[M::StepAction(at(0), 9)]),
        ),
        plan_case(
            "an unspecified step action",
            with(&[M::StepAction(at(0), 0)]),
        ),
        plan_case(
            "a step of the other mode",
            custom(&|i| {
                i.plan().expect("plan").steps[gw_present].action = v1::StepAction::Switch as i32
            }),
        ),
        plan_case(
            "a step naming an unknown node",
            with(&[M::StepNode(at(0), "ghost".into())]),
        ),
        plan_case(
            "a step with an empty node",
            with(&[M::StepNode(at(0), String::new())]),
        ),
        plan_case(
            "steps of a node out of order",
            custom(&|i| i.plan().expect("plan").steps.swap(gw_stage, gw_retire)),
        ),
        plan_case("a replayed step id", with(&[M::ReplayStep(at(0))])),
        plan_case(
            "two steps with one id",
            custom(&|i| {
                let steps = &mut i.plan().expect("plan").steps;
                steps[1].id = steps[0].id;
            }),
        ),
        plan_case(
            "a prerequisite naming an unknown step",
            with(&[M::StepAfter(at(0), vec![999])]),
        ),
        plan_case(
            "a plan for another CA",
            with(&[M::PlanCa("other-ca".into())]),
        ),
        plan_case(
            "an unknown plan format",
            with(&[M::PlanFormat("rollover-plan/2".into())]),
        ),
        plan_case(
            "a disruption naming an unknown node",
            with(&[M::Disruption("ghost".into(), "gw".into())]),
        ),
        Case {
            name: "a strategy out of the enum",
            inputs: with(&[M::Strategy(9)]),
            plan: bad,
            verify: None,
            start: bad,
        },
        Case {
            name: "a start node with the waves strategy",
            inputs: with(&[M::DropPlan, M::StartNode(Some("gw".into()))]),
            plan: bad,
            verify: None,
            start: bad,
        },
        Case {
            name: "an unknown start node",
            inputs: with(&[
                M::DropPlan,
                M::Strategy(v1::Strategy::Claim as i32),
                M::StartNode(Some("ghost".into())),
            ]),
            plan: bad,
            verify: None,
            start: bad,
        },
    ]
}
