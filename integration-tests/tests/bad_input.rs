//! Bad input against every gRPC method of the three services (issue 6, item 4), over
//! real servers on 127.0.0.1 started once per test: random bytes decoded as the
//! request type (when prost accepts them), random protobuf fields, byte-level
//! mutations of valid requests, and typed mutations of valid requests (wrong enums,
//! missing oneofs, empty and unknown ids, steps out of order, a plan for another CA,
//! replayed step ids, steps naming unknown nodes, documents with garbage text).
//!
//! Every call is bounded by a timeout and must come back either answered or refused
//! with a clear code (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION,
//! RESOURCE_EXHAUSTED, OUT_OF_RANGE) and a non-empty message: never a panic, an
//! INTERNAL/UNKNOWN status, a dropped connection or a hang. After the barrage the
//! service must still report SERVING and serve a real request. Each test prints how
//! many inputs it sent (`cargo test -- --nocapture`).
//!
//! Also: a message over a server's size limit, a watcher asking for events past a
//! finished rotation's end, and control calls while a rotation waits on agents that
//! never answer.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use proptest::collection::vec as pvec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, TestRunner};
use prost::Message;
use rollover_agent::{AgentHandle, ControlCreds};
use rollover_core::{Fleet, Mode};
use rollover_executor::{Executor, ExecutorConfig};
use rollover_integration_tests::{
    CA, EXECUTOR_ID, Tally, bounded, check_clear, creds, quick_retry, refused, root, serving,
    start_agent, start_executor, start_planner, unclear,
};
use rollover_pki::{NodeKey, RootCa, Validity};
use rollover_proto::v1;
use rollover_proto::v1::agent_service_client::AgentServiceClient;
use rollover_proto::v1::executor_service_client::ExecutorServiceClient;
use rollover_proto::v1::planner_service_client::PlannerServiceClient;
use rollover_proto::v1::rotation_event::Event;
use tokio::runtime::Runtime;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The longest any call may take (a probe may legitimately wait for a connect).
const CALL_LIMIT: Duration = Duration::from_secs(15);

type Call = BoxFuture<'static, Result<(), Status>>;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    })
}

/// Runs `cases` inputs from `strategy` through `call` (`None`: not sendable, e.g.
/// bytes prost will not decode), each bounded by [`CALL_LIMIT`]; every outcome must
/// be an answer or a clear refusal.
fn drive<T: Debug + Clone>(
    rt: &Runtime,
    name: &str,
    cases: u32,
    strategy: impl Strategy<Value = T>,
    tally: &Tally,
    call: impl Fn(T) -> Option<Call>,
) {
    let result = runner(cases).run(&strategy, |input| {
        let Some(future) = call(input.clone()) else {
            tally.undecodable();
            return Ok(());
        };
        let result = rt.block_on(bounded(name, CALL_LIMIT, future));
        if let Some(why) = unclear(&result) {
            let shown = format!("{input:?}");
            let shown: String = shown.chars().take(2000).collect();
            panic!("{name}: {why}\ninput: {shown}");
        }
        tally.count(&result);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

/// Bytes for a request type: random, random protobuf fields, or a valid request
/// (from `seeds`) with byte edits.
fn request_bytes(seeds: Vec<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    let seeds = Arc::new(seeds);
    let mutated = (any::<Index>(), pvec(edit(), 1..4)).prop_map(move |(i, edits)| {
        let mut bytes = seeds[i.index(seeds.len())].clone();
        for e in &edits {
            e.apply(&mut bytes);
        }
        bytes
    });
    prop_oneof![
        2 => pvec(any::<u8>(), 0..200),
        3 => raw_fields().prop_map(|fields| encode_raw(&fields)),
        5 => mutated,
    ]
    .boxed()
}

/// `bytes` decoded as `R`, if prost accepts them.
fn decoded<R: Message + Default>(bytes: &[u8]) -> Option<R> {
    R::decode(bytes).ok()
}

/// A protobuf field with any number and wire type.
#[derive(Debug, Clone)]
enum Raw {
    Varint(u32, u64),
    Fixed32(u32, u32),
    Fixed64(u32, u64),
    Bytes(u32, Vec<u8>),
    Message(u32, Vec<Raw>),
}

fn encode_raw(fields: &[Raw]) -> Vec<u8> {
    use prost::encoding::{WireType, encode_key, encode_varint};
    let mut out = Vec::new();
    for field in fields {
        match field {
            Raw::Varint(tag, v) => {
                encode_key(*tag, WireType::Varint, &mut out);
                encode_varint(*v, &mut out);
            }
            Raw::Fixed32(tag, v) => {
                encode_key(*tag, WireType::ThirtyTwoBit, &mut out);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Raw::Fixed64(tag, v) => {
                encode_key(*tag, WireType::SixtyFourBit, &mut out);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Raw::Bytes(tag, bytes) => {
                encode_key(*tag, WireType::LengthDelimited, &mut out);
                encode_varint(bytes.len() as u64, &mut out);
                out.extend_from_slice(bytes);
            }
            Raw::Message(tag, inner) => {
                let inner = encode_raw(inner);
                encode_key(*tag, WireType::LengthDelimited, &mut out);
                encode_varint(inner.len() as u64, &mut out);
                out.extend_from_slice(&inner);
            }
        }
    }
    out
}

fn field_number() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 1u32..=8, 2 => 9u32..=20, 1 => 1u32..=2000]
}

fn varint() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..8,
        1 => Just(u64::MAX),
        1 => Just(u64::from(u32::MAX)),
        1 => Just(i32::MAX as u64),
        1 => Just(i64::from(i32::MIN) as u64),
        2 => any::<u64>(),
    ]
}

fn raw_fields() -> impl Strategy<Value = Vec<Raw>> {
    let leaf = prop_oneof![
        (field_number(), varint()).prop_map(|(t, v)| Raw::Varint(t, v)),
        (field_number(), any::<u32>()).prop_map(|(t, v)| Raw::Fixed32(t, v)),
        (field_number(), any::<u64>()).prop_map(|(t, v)| Raw::Fixed64(t, v)),
        (
            field_number(),
            prop_oneof![
                word().prop_map(String::into_bytes),
                pvec(any::<u8>(), 0..40)
            ]
        )
            .prop_map(|(t, b)| Raw::Bytes(t, b)),
    ];
    let field = leaf.prop_recursive(3, 40, 6, |inner| {
        prop_oneof![
            inner.clone(),
            (field_number(), pvec(inner, 0..6)).prop_map(|(t, f)| Raw::Message(t, f)),
        ]
    });
    pvec(field, 0..8)
}

/// A byte edit of an encoded request.
#[derive(Debug, Clone)]
enum Edit {
    Flip(Index, u8),
    Set(Index, u8),
    Delete(Index, usize),
    Insert(Index, Vec<u8>),
    Duplicate(Index, usize),
    Truncate(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Edit::Flip(i, 1 << bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<Index>(), 1usize..16).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<Index>(), pvec(any::<u8>(), 1..12)).prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<Index>(), 1usize..64).prop_map(|(i, n)| Edit::Duplicate(i, n)),
        any::<Index>().prop_map(Edit::Truncate),
    ]
}

impl Edit {
    fn apply(&self, bytes: &mut Vec<u8>) {
        if bytes.is_empty() {
            if let Edit::Insert(_, b) = self {
                bytes.extend_from_slice(b);
            }
            return;
        }
        let at = |i: &Index| i.index(bytes.len());
        match self {
            Edit::Flip(i, mask) => {
                let at = at(i);
                bytes[at] ^= mask;
            }
            Edit::Set(i, b) => {
                let at = at(i);
                bytes[at] = *b;
            }
            Edit::Delete(i, n) => {
                let at = at(i);
                let end = (at + n).min(bytes.len());
                bytes.drain(at..end);
            }
            Edit::Insert(i, b) => {
                let at = at(i);
                bytes.splice(at..at, b.iter().copied());
            }
            Edit::Duplicate(i, n) => {
                let at = at(i);
                let end = (at + n).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                bytes.splice(end..end, copy);
            }
            Edit::Truncate(i) => {
                let at = at(i);
                bytes.truncate(at);
            }
        }
    }
}

/// Ids, names and other strings: the fleet's own, unknown ones, empty, long, odd.
fn word() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        Just("gw".to_string()),
        Just("m1".to_string()),
        Just("db".to_string()),
        Just("ghost".to_string()),
        Just(CA.to_string()),
        Just("other-ca".to_string()),
        Just(EXECUTOR_ID.to_string()),
        Just("x".repeat(300)),
        Just("nul\u{0}byte".to_string()),
        Just(" gw ".to_string()),
        Just("é漢🦀".to_string()),
        "[a-z@_ .-]{0,12}",
        ".{0,24}",
    ]
    .boxed()
}

/// Enum values: every defined one, just past them, negative, extreme.
fn enum_value() -> impl Strategy<Value = i32> {
    prop_oneof![
        4 => -1i32..8,
        1 => Just(i32::MAX),
        1 => Just(i32::MIN),
        1 => any::<i32>(),
    ]
}

/// Nine levels of nine-fold aliases: about 387 million strings if expanded.
fn alias_bomb() -> String {
    let mut text = String::from(
        "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for level in 1..9 {
        let prev = format!("*a{}", level - 1);
        let list = vec![prev; 9].join(",");
        text.push_str(&format!("a{level}: &a{level} [{list}]\n"));
    }
    text
}

/// Document texts a parser must refuse (or, rarely, accept) without trouble.
fn garbage() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        Just("{".to_string()),
        Just("[1, 2".to_string()),
        Just("nodes: [".to_string()),
        Just("\u{0}\u{1}\u{2}".to_string()),
        Just(":::".to_string()),
        Just("ca: 1\nnodes: 7".to_string()),
        Just("{\"ca\": null}".to_string()),
        Just("- - -".to_string()),
        Just("ca: &a [*a]".to_string()),
        Just("!!binary AAAA".to_string()),
        Just("\t\tca:\tcorp".to_string()),
        Just("ca: corp\nca: corp\n".to_string()),
        Just("ca: corp\nnodes:\n  - {id: gw, mode: sideways}\n".to_string()),
        Just("{\"format\": \"rollover-plan/1\", \"ca\": \"corp\", \"steps\": [{\"id\": 1, \"node\": \"gw\", \"action\": \"stage\", \"after\": [1]}]}".to_string()),
        Just(alias_bomb()),
        Just(format!("{}{}", "[".repeat(3000), "]".repeat(3000))),
        Just(format!("{}1{}", "{\"a\":".repeat(3000), "}".repeat(3000))),
        ".{0,64}",
        "[ -~\n]{0,200}",
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------
// Topologies and plans: the inputs of Planner.Plan, Planner.Verify and
// Executor.StartRotation, and their typed mutations.

/// Bundle `gw`, `db`; atomic `m1`, `m2`; links `gw -> m1`, `gw -> m2`, `db -> gw`,
/// `m1 -> db`, and one under another CA. Agent addresses point at a closed port.
const TOPOLOGY_YAML: &str = "ca: corp
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
struct Inputs {
    topology: Option<v1::TopologySource>,
    plan: Option<v1::PlanSource>,
    strategy: i32,
    start_node: Option<String>,
    options: Option<v1::RotationOptions>,
}

impl Inputs {
    fn plan_request(&self) -> v1::PlanRequest {
        v1::PlanRequest {
            topology: self.topology.clone(),
            strategy: self.strategy,
            start_node: self.start_node.clone(),
        }
    }

    fn verify_request(&self) -> v1::VerifyRequest {
        v1::VerifyRequest {
            topology: self.topology.clone(),
            plan: self.plan.clone(),
        }
    }

    fn start_request(&self) -> v1::StartRotationRequest {
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

    fn topology(&mut self) -> Option<&mut v1::Topology> {
        match self.topology.as_mut()?.source.as_mut()? {
            v1::topology_source::Source::Topology(t) => Some(t),
            v1::topology_source::Source::Document(_) => None,
        }
    }

    fn plan(&mut self) -> Option<&mut v1::Plan> {
        match self.plan.as_mut()?.source.as_mut()? {
            v1::plan_source::Source::Plan(p) => Some(p),
            v1::plan_source::Source::Document(_) => None,
        }
    }

    fn document(&mut self, of_plan: bool) -> Option<&mut v1::Document> {
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

fn core_topology() -> rollover_core::Topology {
    rollover_core::Topology::parse("fleet.yaml", TOPOLOGY_YAML).expect("seed topology")
}

fn core_plan() -> rollover_core::Plan {
    rollover_core::plan_waves(&Fleet::new(&core_topology()))
}

fn document(text: String, format: v1::DocumentFormat, origin: &str) -> v1::Document {
    v1::Document {
        text,
        format: format as i32,
        origin: origin.into(),
    }
}

/// Valid inputs: structured and document forms, with and without a plan.
fn input_seeds() -> Vec<Inputs> {
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
enum Mutation {
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

fn mutation() -> BoxedStrategy<Mutation> {
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

fn pick<T>(items: &mut [T], i: Index) -> Option<&mut T> {
    if items.is_empty() {
        None
    } else {
        let at = i.index(items.len());
        items.get_mut(at)
    }
}

impl Mutation {
    fn apply(&self, inputs: &mut Inputs) {
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
fn mutated_inputs() -> BoxedStrategy<Inputs> {
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
struct Case {
    name: &'static str,
    inputs: Inputs,
    plan: Option<Code>,
    verify: Option<Code>,
    start: Option<Code>,
}

/// The first element's index (`Index` has no constructor: shrink a random one to 0).
fn first() -> Index {
    use proptest::strategy::ValueTree;
    let mut runner = TestRunner::deterministic();
    let mut tree = any::<Index>().new_tree(&mut runner).expect("index");
    while tree.simplify() {}
    let index = tree.current();
    assert_eq!(index.index(1000), 0);
    index
}

/// The bad inputs issue 6 names, each on the first seed.
fn named_cases() -> Vec<Case> {
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

// ---------------------------------------------------------------------------------
// Planner

#[test]
fn planner_refuses_bad_input_clearly_and_keeps_serving() {
    let rt = runtime();
    let _in_runtime = rt.enter();
    let planner = rt.block_on(start_planner());
    let client = PlannerServiceClient::new(planner.channel());
    let tally = Tally::default();
    let seeds = input_seeds();

    rt.block_on(async {
        let mut c = client.clone();
        for case in named_cases() {
            if let Some(code) = case.plan {
                let result = c.plan(case.inputs.plan_request()).await;
                assert_eq!(refused(case.name, &result), code, "Plan: {}", case.name);
                tally.count(&result);
            }
            if let Some(code) = case.verify {
                let result = c.verify(case.inputs.verify_request()).await;
                assert_eq!(refused(case.name, &result), code, "Verify: {}", case.name);
                tally.count(&result);
            }
        }
    });
    let c = client.clone();
    drive(
        &rt,
        "Plan (typed)",
        1500,
        mutated_inputs(),
        &tally,
        |inputs| {
            let mut c = c.clone();
            Some(Box::pin(async move {
                c.plan(inputs.plan_request()).await.map(drop)
            }))
        },
    );
    let c = client.clone();
    drive(
        &rt,
        "Verify (typed)",
        1500,
        mutated_inputs(),
        &tally,
        |inputs| {
            let mut c = c.clone();
            Some(Box::pin(async move {
                c.verify(inputs.verify_request()).await.map(drop)
            }))
        },
    );
    let plan_seeds = seeds
        .iter()
        .map(|s| s.plan_request().encode_to_vec())
        .collect();
    let c = client.clone();
    drive(
        &rt,
        "Plan (bytes)",
        1000,
        request_bytes(plan_seeds),
        &tally,
        |bytes| {
            let request = decoded::<v1::PlanRequest>(&bytes)?;
            let mut c = c.clone();
            Some(Box::pin(async move { c.plan(request).await.map(drop) }))
        },
    );
    let verify_seeds = seeds
        .iter()
        .map(|s| s.verify_request().encode_to_vec())
        .collect();
    let c = client.clone();
    drive(
        &rt,
        "Verify (bytes)",
        1000,
        request_bytes(verify_seeds),
        &tally,
        |bytes| {
            let request = decoded::<v1::VerifyRequest>(&bytes)?;
            let mut c = c.clone();
            Some(Box::pin(async move { c.verify(request).await.map(drop) }))
        },
    );

    // Still serving, and a real request is answered with a safe plan.
    rt.block_on(async {
        assert!(planner.is_running());
        assert!(serving(planner.channel(), "rollover.v1.PlannerService").await);
        let mut client = client.clone();
        let plan = client
            .plan(seeds[0].plan_request())
            .await
            .expect("a valid Plan after the barrage")
            .into_inner()
            .plan
            .expect("a plan");
        assert!(!plan.steps.is_empty());
        let verdict = client
            .verify(v1::VerifyRequest {
                topology: seeds[0].topology.clone(),
                plan: Some(v1::PlanSource {
                    source: Some(v1::plan_source::Source::Plan(plan)),
                }),
            })
            .await
            .expect("a valid Verify after the barrage")
            .into_inner()
            .verdict
            .unwrap();
        assert!(verdict.safe, "{verdict:?}");
        planner.stop().await;
    });
    tally.report("planner (Plan, Verify)");
}

// ---------------------------------------------------------------------------------
// Executor

/// The executor's barrage must not rotate its own identity away (a topology whose
/// control channel is in the rotated CA and names no reachable agent would do just
/// that, legitimately): such requests are sent as dry runs.
fn never_rotating_the_executor(mut request: v1::StartRotationRequest) -> v1::StartRotationRequest {
    let planned = match request.topology.as_ref().and_then(|t| t.source.as_ref()) {
        Some(v1::topology_source::Source::Topology(t)) => t.control.is_some(),
        Some(v1::topology_source::Source::Document(d)) => d.text.contains("control"),
        None => false,
    };
    if planned {
        request.options.get_or_insert_with(Default::default).dry_run = true;
    }
    request
}

/// A control call of the executor, typed.
#[derive(Debug, Clone)]
enum Control {
    Get(String, bool),
    List(bool),
    Watch(String, u64),
    Pause(String, String),
    Resume(String),
    Abort(String, String),
    Rollback(String, String),
}

fn control(known: Vec<String>) -> BoxedStrategy<Control> {
    let known = select(known);
    let id = prop_oneof![
        3 => known.clone(),
        2 => word(),
        1 => known.clone().prop_map(|id| format!("{id}x")),
        1 => known.prop_map(|id| id.to_uppercase()),
    ];
    let reason = || prop_oneof![4 => word(), 1 => Just("r".repeat(64 * 1024))];
    let sequence = prop_oneof![Just(0u64), Just(1), 2u64..40, Just(u64::MAX), any::<u64>()];
    prop_oneof![
        (id.clone(), any::<bool>()).prop_map(|(id, p)| Control::Get(id, p)),
        any::<bool>().prop_map(Control::List),
        (id.clone(), sequence).prop_map(|(id, s)| Control::Watch(id, s)),
        (id.clone(), reason()).prop_map(|(id, r)| Control::Pause(id, r)),
        id.clone().prop_map(Control::Resume),
        (id.clone(), reason()).prop_map(|(id, r)| Control::Abort(id, r)),
        (id, reason()).prop_map(|(id, r)| Control::Rollback(id, r)),
    ]
    .boxed()
}

/// Watches `id` from `from`; when the rotation is already over, the stream must end
/// by itself (it can never get another event).
async fn watch(
    mut client: ExecutorServiceClient<Channel>,
    executor: Executor,
    id: String,
    from: u64,
) -> Result<(), Status> {
    let mut stream = client
        .watch_rotation(v1::WatchRotationRequest {
            rotation_id: id.clone(),
            from_sequence: from,
        })
        .await?
        .into_inner();
    let status = executor.get_rotation(&id, false)?;
    if v1::RotationState::is_terminal_value(status.state) {
        let drained = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(event) = stream.next().await {
                event?;
            }
            Ok::<_, Status>(())
        })
        .await;
        match drained {
            Ok(result) => result?,
            Err(_) => panic!(
                "WatchRotation({id:?}, from {from}) of a finished rotation ({status:?}) never ends"
            ),
        }
    }
    Ok(())
}

/// A rotation of a fleet with no nodes, with its (empty) plan: nothing to do.
fn empty_rotation() -> v1::StartRotationRequest {
    v1::StartRotationRequest {
        topology: Some(v1::TopologySource {
            source: Some(v1::topology_source::Source::Topology(v1::Topology {
                ca: "empty".into(),
                ..Default::default()
            })),
        }),
        plan: Some(v1::PlanSource {
            source: Some(v1::plan_source::Source::Plan(v1::Plan {
                format: rollover_core::PLAN_FORMAT.into(),
                ca: "empty".into(),
                ..Default::default()
            })),
        }),
        options: None,
        request_id: String::new(),
    }
}

/// Wait until the rotation has ended (not merely paused).
async fn wait_ended(executor: &Executor, id: &str) -> v1::RotationStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = executor.get_rotation(id, false).expect("known rotation");
        let state = v1::RotationState::try_from(status.state).expect("state");
        if state.is_terminal() {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotation {id} stuck: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_terminal(executor: &Executor, id: &str) -> v1::RotationStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = executor.get_rotation(id, false).expect("known rotation");
        let state = v1::RotationState::try_from(status.state).expect("state");
        if state.is_terminal() || state == v1::RotationState::Paused {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotation {id} stuck: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two real agents rotated by the executor: bundle `gw`, atomic `m`, `gw -> m`; the
/// control channel is in the rotated CA.
struct RealFleet {
    agents: Vec<AgentHandle>,
    topology: v1::Topology,
    old: RootCa,
    _dirs: tempfile::TempDir,
}

async fn real_fleet() -> RealFleet {
    let dirs = tempfile::tempdir().expect("tempdir");
    let old = root(CA, 1);
    let mut agents = Vec::new();
    let mut nodes = Vec::new();
    for (id, mode) in [("gw", Mode::Bundle), ("m", Mode::Atomic)] {
        let agent = start_agent(&dirs.path().join(id), id, mode, &old, ControlCreds::Rotated).await;
        nodes.push(v1::Node {
            id: id.into(),
            mode: v1::NodeMode::from(mode) as i32,
            address: Some(agent.control_addr().to_string()),
            ..Default::default()
        });
        agents.push(agent);
    }
    let topology = v1::Topology {
        ca: CA.into(),
        nodes,
        links: vec![v1::Link {
            client: "gw".into(),
            server: "m".into(),
            ca: None,
        }],
        control: Some(v1::Control { ca: CA.into() }),
    };
    RealFleet {
        agents,
        topology,
        old,
        _dirs: dirs,
    }
}

#[test]
fn executor_refuses_bad_input_clearly_and_keeps_serving() {
    let rt = runtime();
    let _in_runtime = rt.enter();
    let state = tempfile::tempdir().expect("tempdir");
    let (planner, fleet, executor_server, executor) = rt.block_on(async {
        let planner = start_planner().await;
        let fleet = real_fleet().await;
        let mut config = ExecutorConfig::new(state.path())
            .planner_url(&planner.addr)
            .expect("planner url");
        config.own_creds = Some(creds(EXECUTOR_ID, &fleet.old));
        config.retry = quick_retry();
        config.probe_timeout = Duration::from_secs(2);
        let (server, executor) = start_executor(config).await;
        (planner, fleet, server, executor)
    });
    let client = ExecutorServiceClient::new(executor_server.channel())
        .max_decoding_message_size(rollover_executor::MAX_MESSAGE_BYTES);
    let tally = Tally::default();
    let seeds = input_seeds();

    // Rotations to aim control calls at: one failed (its agents are unreachable),
    // one with nothing to do, one paused. One rotation per CA: each of the CA is over
    // before the next one starts.
    let known: Vec<String> = rt.block_on(async {
        let mut c = client.clone();
        let failed = c
            .start_rotation(seeds[0].start_request())
            .await
            .expect("valid start")
            .into_inner()
            .rotation_id;
        let empty = c
            .start_rotation(empty_rotation())
            .await
            .expect("an empty fleet")
            .into_inner()
            .rotation_id;
        for id in [&failed, &empty] {
            wait_ended(&executor, id).await;
        }
        // An unsafe given plan is refused before anything starts.
        let unsafe_plan = rollover_core::plan_naive(&Fleet::new(&core_topology()));
        let verdict = rollover_core::verify_plan(&core_topology(), &unsafe_plan).expect("plan");
        assert!(
            !verdict.safe,
            "the naive plan of the seed topology is unsafe"
        );
        let mut unsafe_start = seeds[0].clone();
        unsafe_start.plan = Some(v1::PlanSource {
            source: Some(v1::plan_source::Source::Plan(v1::Plan::from(&unsafe_plan))),
        });
        let result = c.start_rotation(unsafe_start.start_request()).await;
        assert_eq!(refused("an unsafe plan", &result), Code::InvalidArgument);
        // Abort answers with the rotation's final state.
        for _ in 0..10 {
            let id = c
                .start_rotation(seeds[0].start_request())
                .await
                .expect("a start once the previous one ended")
                .into_inner()
                .rotation_id;
            let status = c
                .abort(v1::AbortRequest {
                    rotation_id: id,
                    reason: "test".into(),
                })
                .await
                .expect("abort")
                .into_inner()
                .rotation
                .unwrap();
            assert_eq!(
                status.state,
                v1::RotationState::Aborted as i32,
                "{status:?}"
            );
        }
        let paused = c
            .start_rotation(seeds[0].start_request())
            .await
            .expect("a start once the previous one ended")
            .into_inner()
            .rotation_id;
        c.pause(v1::PauseRequest {
            rotation_id: paused.clone(),
            reason: "test".into(),
        })
        .await
        .expect("pause");
        vec![failed, paused, empty]
    });

    rt.block_on(async {
        let mut c = client.clone();
        let before = executor.list_rotations(false).len();
        for case in named_cases() {
            if let Some(code) = case.start {
                let result = c.start_rotation(case.inputs.start_request()).await;
                assert_eq!(
                    refused(case.name, &result),
                    code,
                    "StartRotation: {}",
                    case.name
                );
                tally.count(&result);
            }
        }
        assert_eq!(
            executor.list_rotations(false).len(),
            before,
            "a refused start left a rotation"
        );
        let id_cases = [
            ("an empty rotation id", String::new(), Code::InvalidArgument),
            (
                "an unknown rotation id",
                "r-unknown".to_string(),
                Code::NotFound,
            ),
            (
                "a known id, changed",
                format!("{}x", known[0]),
                Code::NotFound,
            ),
        ];
        for (name, id, code) in id_cases {
            let results = [
                c.get_rotation(v1::GetRotationRequest {
                    rotation_id: id.clone(),
                    include_plan: true,
                })
                .await
                .map(drop),
                c.pause(v1::PauseRequest {
                    rotation_id: id.clone(),
                    reason: "r".into(),
                })
                .await
                .map(drop),
                c.resume(v1::ResumeRequest {
                    rotation_id: id.clone(),
                })
                .await
                .map(drop),
                c.abort(v1::AbortRequest {
                    rotation_id: id.clone(),
                    reason: "r".into(),
                })
                .await
                .map(drop),
                c.rollback(v1::RollbackRequest {
                    rotation_id: id.clone(),
                    reason: "r".into(),
                })
                .await
                .map(drop),
                c.watch_rotation(v1::WatchRotationRequest {
                    rotation_id: id.clone(),
                    from_sequence: 0,
                })
                .await
                .map(drop),
            ];
            for result in results {
                assert_eq!(refused(name, &result), code, "{name}: {result:?}");
                tally.count(&result);
            }
        }
        // Resume, Pause and Abort of a finished rotation do not apply to it.
        let finished = &known[2];
        let results = [
            c.resume(v1::ResumeRequest {
                rotation_id: finished.clone(),
            })
            .await
            .map(drop),
            c.pause(v1::PauseRequest {
                rotation_id: finished.clone(),
                reason: "r".into(),
            })
            .await
            .map(drop),
            c.abort(v1::AbortRequest {
                rotation_id: finished.clone(),
                reason: "r".into(),
            })
            .await
            .map(drop),
        ];
        for result in results {
            assert_eq!(
                refused("control of a finished rotation", &result),
                Code::FailedPrecondition
            );
            tally.count(&result);
        }
    });
    let c = client.clone();
    drive(
        &rt,
        "StartRotation (typed)",
        1000,
        mutated_inputs(),
        &tally,
        |inputs| {
            let mut c = c.clone();
            let request = never_rotating_the_executor(inputs.start_request());
            Some(Box::pin(async move {
                c.start_rotation(request).await.map(drop)
            }))
        },
    );
    let start_seeds = seeds
        .iter()
        .map(|s| s.start_request().encode_to_vec())
        .collect();
    let c = client.clone();
    drive(
        &rt,
        "StartRotation (bytes)",
        1000,
        request_bytes(start_seeds),
        &tally,
        |bytes| {
            let request = never_rotating_the_executor(decoded(&bytes)?);
            let mut c = c.clone();
            Some(Box::pin(async move {
                c.start_rotation(request).await.map(drop)
            }))
        },
    );
    let (c, e) = (client.clone(), executor.clone());
    drive(
        &rt,
        "control calls (typed)",
        2000,
        control(known.clone()),
        &tally,
        |call| {
            let (mut c, e) = (c.clone(), e.clone());
            Some(Box::pin(async move {
                match call {
                    Control::Get(id, plan) => c
                        .get_rotation(v1::GetRotationRequest {
                            rotation_id: id,
                            include_plan: plan,
                        })
                        .await
                        .map(drop),
                    Control::List(active_only) => c
                        .list_rotations(v1::ListRotationsRequest {
                            active_only,
                            page_size: 0,
                            page_token: String::new(),
                        })
                        .await
                        .map(drop),
                    Control::Watch(id, from) => watch(c, e, id, from).await,
                    Control::Pause(id, reason) => c
                        .pause(v1::PauseRequest {
                            rotation_id: id,
                            reason,
                        })
                        .await
                        .map(drop),
                    Control::Resume(id) => c
                        .resume(v1::ResumeRequest { rotation_id: id })
                        .await
                        .map(drop),
                    Control::Abort(id, reason) => c
                        .abort(v1::AbortRequest {
                            rotation_id: id,
                            reason,
                        })
                        .await
                        .map(drop),
                    Control::Rollback(id, reason) => c
                        .rollback(v1::RollbackRequest {
                            rotation_id: id,
                            reason,
                        })
                        .await
                        .map(drop),
                }
            }))
        },
    );
    // Each control request type from bytes (ids are mostly unknown here).
    let id_seeds = |f: &dyn Fn(String) -> Vec<u8>| known.iter().cloned().map(f).collect::<Vec<_>>();
    macro_rules! control_bytes {
        ($name:literal, $ty:ty, $seed:expr, $method:ident) => {{
            let c = client.clone();
            drive(
                &rt,
                $name,
                250,
                request_bytes(id_seeds(&$seed)),
                &tally,
                |bytes| {
                    let request = decoded::<$ty>(&bytes)?;
                    let mut c = c.clone();
                    Some(Box::pin(async move { c.$method(request).await.map(drop) }))
                },
            );
        }};
    }
    control_bytes!(
        "GetRotation (bytes)",
        v1::GetRotationRequest,
        |id| v1::GetRotationRequest {
            rotation_id: id,
            include_plan: true
        }
        .encode_to_vec(),
        get_rotation
    );
    control_bytes!(
        "ListRotations (bytes)",
        v1::ListRotationsRequest,
        |_| v1::ListRotationsRequest {
            active_only: true,
            page_size: 0,
            page_token: String::new(),
        }
        .encode_to_vec(),
        list_rotations
    );
    control_bytes!(
        "Pause (bytes)",
        v1::PauseRequest,
        |id| v1::PauseRequest {
            rotation_id: id,
            reason: "r".into()
        }
        .encode_to_vec(),
        pause
    );
    control_bytes!(
        "Resume (bytes)",
        v1::ResumeRequest,
        |id| v1::ResumeRequest { rotation_id: id }.encode_to_vec(),
        resume
    );
    control_bytes!(
        "Abort (bytes)",
        v1::AbortRequest,
        |id| v1::AbortRequest {
            rotation_id: id,
            reason: "r".into()
        }
        .encode_to_vec(),
        abort
    );
    control_bytes!(
        "Rollback (bytes)",
        v1::RollbackRequest,
        |id| v1::RollbackRequest {
            rotation_id: id,
            reason: "r".into()
        }
        .encode_to_vec(),
        rollback
    );
    let (c, e) = (client.clone(), executor.clone());
    let watch_seeds = id_seeds(&|id| {
        v1::WatchRotationRequest {
            rotation_id: id,
            from_sequence: 1,
        }
        .encode_to_vec()
    });
    drive(
        &rt,
        "WatchRotation (bytes)",
        250,
        request_bytes(watch_seeds),
        &tally,
        |bytes| {
            let request = decoded::<v1::WatchRotationRequest>(&bytes)?;
            let (c, e) = (c.clone(), e.clone());
            Some(Box::pin(watch(
                c,
                e,
                request.rotation_id,
                request.from_sequence,
            )))
        },
    );

    // Still serving, and a real rotation of real agents succeeds through it.
    rt.block_on(async {
        assert!(executor_server.is_running());
        assert!(serving(executor_server.channel(), "rollover.v1.ExecutorService").await);
        let mut c = client.clone();
        let id = c
            .start_rotation(v1::StartRotationRequest {
                topology: Some(v1::TopologySource {
                    source: Some(v1::topology_source::Source::Topology(
                        fleet.topology.clone(),
                    )),
                }),
                plan: None,
                options: Some(v1::RotationOptions {
                    probe: true,
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .expect("a valid StartRotation after the barrage")
            .into_inner()
            .rotation_id;
        let mut events = c
            .watch_rotation(v1::WatchRotationRequest {
                rotation_id: id.clone(),
                from_sequence: 0,
            })
            .await
            .expect("watch")
            .into_inner();
        let mut last = None;
        bounded("the real rotation", Duration::from_secs(30), async {
            while let Some(event) = events.next().await {
                last = Some(event.expect("event").event.expect("an event"));
            }
        })
        .await;
        match last.and_then(|e| e.event) {
            Some(Event::Finished(f)) => {
                assert_eq!(f.outcome, v1::RotationState::Succeeded as i32, "{f:?}")
            }
            other => panic!("the stream ended without Finished: {other:?}"),
        }
        for agent in &fleet.agents {
            assert_eq!(
                agent.applied_count(),
                agent.mode().steps().len() as u64,
                "{}",
                agent.id()
            );
            assert_ne!(agent.state().server_roots, vec![fleet.old.fingerprint()]);
        }
        executor_server.stop().await;
        executor.shutdown();
        planner.stop().await;
    });
    tally.report("executor (StartRotation, WatchRotation, GetRotation, ListRotations, Pause, Resume, Abort, Rollback)");
}

// ---------------------------------------------------------------------------------
// Agent

/// Certificates an ApplyStep may carry. None of them, in any combination, is a leaf
/// for a key the agent made issued by a root offered as `new_root_der`, so no
/// mutated step can ever apply.
struct CertPool {
    certs: Vec<(&'static str, Vec<u8>)>,
    fingerprints: Vec<String>,
}

fn cert_pool(old: &RootCa, new: &RootCa, csr: &[u8]) -> CertPool {
    let hidden = root(CA, 99);
    let foreign = NodeKey::generate(Default::default()).expect("key");
    let foreign_csr = foreign.csr_der("a").expect("csr");
    let past = Validity {
        not_before: std::time::SystemTime::now() - Duration::from_secs(7200),
        not_after: std::time::SystemTime::now() - Duration::from_secs(3600),
    };
    let other_node = NodeKey::generate(Default::default()).expect("key");
    let new_der = new.cert_der().to_vec();
    let certs = vec![
        ("empty", Vec::new()),
        ("garbage", b"not a certificate".to_vec()),
        ("truncated new root", new_der[..new_der.len() / 2].to_vec()),
        ("new root", new_der),
        ("old (current) root", old.cert_der().to_vec()),
        ("another CA's root", root("other-ca", 1).cert_der().to_vec()),
        (
            "leaf for the agent's key from a root not offered",
            hidden
                .issue_leaf(csr, "a", Validity::default())
                .expect("leaf")
                .to_vec(),
        ),
        (
            "leaf for a foreign key",
            new.issue_leaf(&foreign_csr, "a", Validity::default())
                .expect("leaf")
                .to_vec(),
        ),
        (
            "expired leaf for a foreign key",
            new.issue_leaf(&foreign_csr, "a", past)
                .expect("leaf")
                .to_vec(),
        ),
        (
            "leaf for another node",
            new.issue_leaf(
                &other_node.csr_der("b").expect("csr"),
                "b",
                Validity::default(),
            )
            .expect("leaf")
            .to_vec(),
        ),
    ];
    let fingerprints = vec![
        String::new(),
        old.fingerprint(),
        old.fingerprint().to_uppercase(),
        new.fingerprint(),
        "00".repeat(32),
        "zz".into(),
    ];
    CertPool {
        certs,
        fingerprints,
    }
}

/// A call to the agent, typed.
#[derive(Debug, Clone)]
enum AgentCall {
    GetState,
    Csr(String, u32),
    Step {
        rotation_id: String,
        step_id: u64,
        action: i32,
        new_root: Index,
        leaf: Index,
        old_root: Index,
        undo: bool,
    },
    Probe(String, String),
}

fn agent_call(addresses: Vec<String>) -> BoxedStrategy<AgentCall> {
    let address = prop_oneof![
        select(addresses),
        Just(String::new()),
        Just("garbage".to_string()),
        Just("127.0.0.1:1".to_string()),
        Just("127.0.0.1".to_string()),
        Just("127.0.0.1:99999".to_string()),
        Just("[::1]:1".to_string()),
        Just("localhost:1".to_string()),
        Just("http://127.0.0.1:1/path".to_string()),
        word(),
    ];
    let step = (
        prop_oneof![Just("r1".to_string()), word()],
        prop_oneof![0u64..6, Just(u64::MAX)],
        enum_value(),
        any::<Index>(),
        any::<Index>(),
        any::<Index>(),
        any::<bool>(),
    )
        .prop_map(
            |(rotation_id, step_id, action, new_root, leaf, old_root, undo)| AgentCall::Step {
                rotation_id,
                step_id,
                action,
                new_root,
                leaf,
                old_root,
                undo,
            },
        );
    prop_oneof![
        1 => Just(AgentCall::GetState),
        2 => (word(), prop_oneof![0u32..4, Just(u32::MAX)]).prop_map(|(c, g)| AgentCall::Csr(c, g)),
        6 => step,
        2 => (word(), address).prop_map(|(p, a)| AgentCall::Probe(p, a)),
    ]
    .boxed()
}

#[test]
fn agent_refuses_bad_input_clearly_and_keeps_serving() {
    let rt = runtime();
    let _in_runtime = rt.enter();
    let dirs = tempfile::tempdir().expect("tempdir");
    let (old, new, control) = (root(CA, 1), root(CA, 2), root("control", 1));
    let exec = creds(EXECUTOR_ID, &control);
    let (agent, client) = rt.block_on(async {
        let agent = start_agent(
            &dirs.path().join("a"),
            "a",
            Mode::Bundle,
            &old,
            ControlCreds::Separate(creds("a", &control)),
        )
        .await;
        let channel =
            rollover_transport::tls_channel(&agent.control_addr().to_string(), exec.clone(), "a")
                .expect("channel");
        (agent, AgentServiceClient::new(channel))
    });
    let csr = rt.block_on(async {
        client
            .clone()
            .create_csr(v1::CreateCsrRequest {
                ca_name: CA.into(),
                generation: 2,
                ..Default::default()
            })
            .await
            .expect("csr")
            .into_inner()
            .csr_der
    });
    let pool = Arc::new(cert_pool(&old, &new, &csr));
    let tally = Tally::default();
    let addresses = vec![
        agent.data_addr().to_string(),
        agent.control_addr().to_string(),
    ];

    let c = client.clone();
    let p = pool.clone();
    drive(
        &rt,
        "Agent (typed)",
        2000,
        agent_call(addresses),
        &tally,
        |call| {
            let mut c = c.clone();
            let p = p.clone();
            Some(Box::pin(async move {
                match call {
                    AgentCall::GetState => c.get_state(v1::GetStateRequest {}).await.map(drop),
                    AgentCall::Csr(ca_name, generation) => c
                        .create_csr(v1::CreateCsrRequest {
                            ca_name,
                            generation,
                            ..Default::default()
                        })
                        .await
                        .map(drop),
                    AgentCall::Step {
                        rotation_id,
                        step_id,
                        action,
                        new_root,
                        leaf,
                        old_root,
                        undo,
                    } => {
                        let request = v1::ApplyStepRequest {
                            rotation_id,
                            step_id,
                            action,
                            new_root_der: new_root.get(&p.certs).1.clone(),
                            issued_leaf_der: leaf.get(&p.certs).1.clone(),
                            old_root_fingerprint: old_root.get(&p.fingerprints).clone(),
                            undo,
                            ..Default::default()
                        };
                        c.apply_step(request).await.map(drop)
                    }
                    AgentCall::Probe(peer_id, peer_address) => c
                        .probe(v1::ProbeRequest {
                            peer_id,
                            peer_address,
                            workload: false,
                        })
                        .await
                        .map(drop),
                }
            }))
        },
    );
    let step_seeds = pool
        .certs
        .iter()
        .map(|(_, cert)| {
            v1::ApplyStepRequest {
                rotation_id: "r1".into(),
                step_id: 1,
                action: v1::StepAction::Stage as i32,
                new_root_der: new.cert_der().to_vec(),
                issued_leaf_der: cert.clone(),
                old_root_fingerprint: old.fingerprint(),
                undo: false,
                ..Default::default()
            }
            .encode_to_vec()
        })
        .collect();
    let c = client.clone();
    drive(
        &rt,
        "ApplyStep (bytes)",
        600,
        request_bytes(step_seeds),
        &tally,
        |bytes| {
            let request = decoded::<v1::ApplyStepRequest>(&bytes)?;
            let mut c = c.clone();
            Some(Box::pin(
                async move { c.apply_step(request).await.map(drop) },
            ))
        },
    );
    let csr_seeds = vec![
        v1::CreateCsrRequest {
            ca_name: CA.into(),
            generation: 2,
            ..Default::default()
        }
        .encode_to_vec(),
    ];
    let c = client.clone();
    drive(
        &rt,
        "CreateCsr (bytes)",
        300,
        request_bytes(csr_seeds),
        &tally,
        |bytes| {
            let request = decoded::<v1::CreateCsrRequest>(&bytes)?;
            let mut c = c.clone();
            Some(Box::pin(
                async move { c.create_csr(request).await.map(drop) },
            ))
        },
    );
    let probe_seeds = vec![
        v1::ProbeRequest {
            peer_id: "a".into(),
            peer_address: agent.data_addr().to_string(),
            workload: false,
        }
        .encode_to_vec(),
    ];
    let c = client.clone();
    drive(
        &rt,
        "Probe (bytes)",
        300,
        request_bytes(probe_seeds),
        &tally,
        |bytes| {
            let request = decoded::<v1::ProbeRequest>(&bytes)?;
            let mut c = c.clone();
            Some(Box::pin(async move { c.probe(request).await.map(drop) }))
        },
    );
    let c = client.clone();
    drive(
        &rt,
        "GetState (bytes)",
        100,
        request_bytes(vec![Vec::new()]),
        &tally,
        |bytes| {
            let request = decoded::<v1::GetStateRequest>(&bytes)?;
            let mut c = c.clone();
            Some(Box::pin(
                async move { c.get_state(request).await.map(drop) },
            ))
        },
    );

    // Nothing got through: no step applied. The agent still serves, and a real
    // rotation's steps apply, with replays, out-of-order steps, steps of another
    // rotation and steps naming another CA's root refused clearly.
    assert_eq!(agent.applied_count(), 0, "a bad input changed the node");
    rt.block_on(async {
        let mut c = client.clone();
        let channel =
            rollover_transport::tls_channel(&agent.control_addr().to_string(), exec.clone(), "a")
                .expect("channel");
        assert!(serving(channel, "rollover.v1.AgentService").await);
        let state = c
            .get_state(v1::GetStateRequest {})
            .await
            .expect("GetState")
            .into_inner()
            .state
            .unwrap();
        assert_eq!(state.server_roots, vec![old.fingerprint()]);

        let csr = c
            .create_csr(v1::CreateCsrRequest {
                ca_name: CA.into(),
                generation: 3,
                ..Default::default()
            })
            .await
            .expect("CreateCsr")
            .into_inner()
            .csr_der;
        let leaf = new
            .issue_leaf(&csr, "a", Validity::default())
            .expect("the agent's CSR names it");
        let step = |step_id: u64, action: v1::StepAction| v1::ApplyStepRequest {
            rotation_id: "real".into(),
            step_id,
            action: action as i32,
            old_root_fingerprint: old.fingerprint(),
            ..Default::default()
        };
        let stage = v1::ApplyStepRequest {
            new_root_der: new.cert_der().to_vec(),
            issued_leaf_der: leaf.to_vec(),
            ..step(1, v1::StepAction::Stage)
        };
        let applied = c
            .apply_step(stage.clone())
            .await
            .expect("stage")
            .into_inner();
        assert!(applied.applied);
        let replay = c
            .apply_step(stage)
            .await
            .expect("a replay is answered")
            .into_inner();
        assert!(!replay.applied, "a replayed step id applies nothing");

        let refusals = [
            (
                "a replayed step id with another action",
                step(1, v1::StepAction::Present),
                Code::FailedPrecondition,
            ),
            (
                "a step out of order",
                step(2, v1::StepAction::Retire),
                Code::FailedPrecondition,
            ),
            (
                "a step of the other mode",
                step(2, v1::StepAction::Finalize),
                Code::FailedPrecondition,
            ),
            (
                "an undo of a step never applied",
                v1::ApplyStepRequest {
                    undo: true,
                    ..step(7, v1::StepAction::Present)
                },
                Code::FailedPrecondition,
            ),
            (
                "a step of another rotation",
                v1::ApplyStepRequest {
                    rotation_id: "other".into(),
                    ..step(2, v1::StepAction::Present)
                },
                Code::FailedPrecondition,
            ),
            (
                "a step replacing another CA's root",
                v1::ApplyStepRequest {
                    old_root_fingerprint: root("other-ca", 1).fingerprint(),
                    ..step(2, v1::StepAction::Present)
                },
                Code::FailedPrecondition,
            ),
            (
                "a step bringing another CA's root",
                v1::ApplyStepRequest {
                    new_root_der: root("other-ca", 2).cert_der().to_vec(),
                    ..step(2, v1::StepAction::Present)
                },
                Code::InvalidArgument,
            ),
            (
                "an unspecified action",
                step(2, v1::StepAction::Unspecified),
                Code::InvalidArgument,
            ),
            (
                "an empty rotation id",
                v1::ApplyStepRequest {
                    rotation_id: String::new(),
                    ..step(2, v1::StepAction::Present)
                },
                Code::InvalidArgument,
            ),
        ];
        for (what, request, code) in refusals {
            let result = c.apply_step(request).await;
            assert_eq!(refused(what, &result), code, "{what}: {result:?}");
        }
        for (id, action) in [(2, v1::StepAction::Present), (3, v1::StepAction::Retire)] {
            assert!(
                c.apply_step(step(id, action))
                    .await
                    .expect("step")
                    .into_inner()
                    .applied
            );
        }
        assert_eq!(agent.applied_count(), 3);
        let state = c
            .get_state(v1::GetStateRequest {})
            .await
            .expect("GetState")
            .into_inner()
            .state
            .unwrap();
        assert_eq!(state.server_roots, vec![new.fingerprint()]);
        agent.shutdown().await;
    });
    tally.report("agent (GetState, CreateCsr, ApplyStep, Probe)");
}

// ---------------------------------------------------------------------------------
// Size limits

/// The agent keeps tonic's 4 MiB request limit: a step just over it is refused
/// clearly (OUT_OF_RANGE, "message length too large"), and the agent serves on. The planner and the executor raise
/// their limit to `MAX_MESSAGE_BYTES` (256 MiB, too big to send here): a request
/// over the default 4 MiB reaches them and is judged on its content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_limit_are_refused_clearly() {
    const DEFAULT_LIMIT: usize = 4 * 1024 * 1024;
    let dirs = tempfile::tempdir().expect("tempdir");
    let (old, control) = (root(CA, 1), root("control", 1));
    let agent = start_agent(
        &dirs.path().join("a"),
        "a",
        Mode::Bundle,
        &old,
        ControlCreds::Separate(creds("a", &control)),
    )
    .await;
    let channel = rollover_transport::tls_channel(
        &agent.control_addr().to_string(),
        creds(EXECUTOR_ID, &control),
        "a",
    )
    .expect("channel");
    let mut client = AgentServiceClient::new(channel.clone());
    let big = v1::ApplyStepRequest {
        rotation_id: "r".into(),
        step_id: 1,
        action: v1::StepAction::Stage as i32,
        new_root_der: vec![0x30; DEFAULT_LIMIT + 1024],
        ..Default::default()
    };
    let result = bounded("oversized ApplyStep", CALL_LIMIT, client.apply_step(big)).await;
    // tonic answers an over-limit message with OUT_OF_RANGE (grpc-go and C++ say
    // RESOURCE_EXHAUSTED); either way the message says what happened.
    assert_eq!(refused("oversized ApplyStep", &result), Code::OutOfRange);
    let message = result.unwrap_err().message().to_string();
    assert!(message.contains("too large"), "{message}");
    // Just under the limit: read, and refused for what it says.
    let under = v1::ApplyStepRequest {
        rotation_id: "r".into(),
        step_id: 1,
        action: v1::StepAction::Stage as i32,
        new_root_der: vec![0x30; DEFAULT_LIMIT - 1024],
        ..Default::default()
    };
    let result = bounded("large ApplyStep", CALL_LIMIT, client.apply_step(under)).await;
    assert_ne!(refused("large ApplyStep", &result), Code::OutOfRange);
    assert!(serving(channel, "rollover.v1.AgentService").await);
    assert!(client.get_state(v1::GetStateRequest {}).await.is_ok());
    assert_eq!(agent.applied_count(), 0);
    agent.shutdown().await;

    let garbage = "x".repeat(DEFAULT_LIMIT + 1024);
    let topology = v1::TopologySource {
        source: Some(v1::topology_source::Source::Document(document(
            garbage,
            v1::DocumentFormat::Yaml,
            "big.yaml",
        ))),
    };
    let planner = start_planner().await;
    let mut client = PlannerServiceClient::new(planner.channel());
    let result = bounded(
        "large Plan",
        CALL_LIMIT,
        client.plan(v1::PlanRequest {
            topology: Some(topology.clone()),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(refused("large Plan", &result), Code::InvalidArgument);
    assert!(serving(planner.channel(), "rollover.v1.PlannerService").await);

    let state = tempfile::tempdir().expect("tempdir");
    let (server, executor) = start_executor(ExecutorConfig::new(state.path())).await;
    let mut client = ExecutorServiceClient::new(server.channel());
    let result = bounded(
        "large StartRotation",
        CALL_LIMIT,
        client.start_rotation(v1::StartRotationRequest {
            topology: Some(topology),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(
        refused("large StartRotation", &result),
        Code::InvalidArgument
    );
    assert!(serving(server.channel(), "rollover.v1.ExecutorService").await);
    server.stop().await;
    executor.shutdown();
    planner.stop().await;
}

// ---------------------------------------------------------------------------------
// Watching past the end

/// A watcher that reconnects after the Finished event (last sequence + 1), or asks
/// for events past the end, gets a stream that ends: no event can ever come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_a_finished_rotation_from_past_its_end_ends() {
    let state = tempfile::tempdir().expect("tempdir");
    let (server, executor) = start_executor(ExecutorConfig::new(state.path())).await;
    let mut client = ExecutorServiceClient::new(server.channel());
    let id = client
        .start_rotation(empty_rotation())
        .await
        .expect("an empty fleet")
        .into_inner()
        .rotation_id;
    let status = wait_terminal(&executor, &id).await;
    assert_eq!(
        status.state,
        v1::RotationState::Succeeded as i32,
        "{status:?}"
    );
    let last = status.last_sequence;
    assert!(last >= 1);
    for from in [0, 1, last, last + 1, last + 100, u64::MAX] {
        let result = bounded(
            "WatchRotation",
            CALL_LIMIT,
            watch(client.clone(), executor.clone(), id.clone(), from),
        )
        .await;
        check_clear("WatchRotation", &result);
        assert!(result.is_ok(), "from {from}: {result:?}");
    }
    server.stop().await;
    executor.shutdown();
}

// ---------------------------------------------------------------------------------
// Control while agents hang

/// An agent address that accepts TCP connections and never says a word: every call
/// to it waits for its timeout.
async fn silent_agent() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr, task)
}

/// Pause, Resume, Rollback and Abort answer at once while the rotation is still
/// asking its (silent) agents for their state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_calls_answer_while_the_agents_hang() {
    let (address, silent) = silent_agent().await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut config = ExecutorConfig::new(state.path());
    config.own_creds = Some(creds(EXECUTOR_ID, &root(CA, 1)));
    let (server, executor) = start_executor(config).await;
    let mut client = ExecutorServiceClient::new(server.channel());
    let mut topology = core_topology();
    for node in &mut topology.nodes {
        node.address = Some(address.clone());
    }
    let request = |topology: &rollover_core::Topology| v1::StartRotationRequest {
        topology: Some(v1::TopologySource {
            source: Some(v1::topology_source::Source::Topology(v1::Topology::from(
                topology,
            ))),
        }),
        plan: Some(v1::PlanSource {
            source: Some(v1::plan_source::Source::Plan(v1::Plan::from(&core_plan()))),
        }),
        options: None,
        request_id: String::new(),
    };
    let quick = Duration::from_secs(3);
    let id = client
        .start_rotation(request(&topology))
        .await
        .expect("start")
        .into_inner()
        .rotation_id;
    let status = |r: Result<Option<v1::RotationStatus>, Status>| {
        v1::RotationState::try_from(r.expect("answer").expect("a rotation").state).expect("state")
    };
    let paused = bounded(
        "Pause during preparation",
        quick,
        client.pause(v1::PauseRequest {
            rotation_id: id.clone(),
            reason: "hold".into(),
        }),
    )
    .await;
    assert_eq!(
        status(paused.map(|r| r.into_inner().rotation)),
        v1::RotationState::Paused
    );
    let resumed = bounded(
        "Resume during preparation",
        quick,
        client.resume(v1::ResumeRequest {
            rotation_id: id.clone(),
        }),
    )
    .await;
    assert_ne!(
        status(resumed.map(|r| r.into_inner().rotation)),
        v1::RotationState::Paused
    );
    let aborted = bounded(
        "Abort during preparation",
        quick,
        client.abort(v1::AbortRequest {
            rotation_id: id.clone(),
            reason: "agents hang".into(),
        }),
    )
    .await;
    assert_eq!(
        status(aborted.map(|r| r.into_inner().rotation)),
        v1::RotationState::Aborted
    );

    let id = client
        .start_rotation(request(&topology))
        .await
        .expect("start")
        .into_inner()
        .rotation_id;
    let rolled_back = bounded(
        "Rollback during preparation",
        quick,
        client.rollback(v1::RollbackRequest {
            rotation_id: id.clone(),
            reason: "agents hang".into(),
        }),
    )
    .await;
    let state = status(rolled_back.map(|r| r.into_inner().rotation));
    assert!(
        matches!(
            state,
            v1::RotationState::RollingBack | v1::RotationState::RolledBack
        ),
        "{state:?}"
    );
    let status = wait_terminal(&executor, &id).await;
    assert_eq!(
        status.state,
        v1::RotationState::RolledBack as i32,
        "{status:?}"
    );
    server.stop().await;
    executor.shutdown();
    silent.abort();
}
