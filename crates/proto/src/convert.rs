//! Conversions between the core types of `rollover-core` and the `rollover.v1` wire
//! types.
//!
//! * core -> wire is infallible (`From`, for values and references);
//! * wire -> core is fallible (`TryFrom`): an enum left UNSPECIFIED where it has no
//!   meaning, an enum value this build does not know, a node id core refuses
//!   ([`rollover_core::check_node_id`]), or a malformed witness is a
//!   [`ConvertError`] naming the field (e.g. `steps[3].action: unspecified`);
//! * [`topology_from_source`] and [`plan_from_source`] take what a request carries,
//!   either a structured message or a raw [`v1::Document`], and return a checked core
//!   value; raw documents are parsed by core, so errors keep the origin, line and field.
//!
//! Bad input becomes `INVALID_ARGUMENT` through `From<ConvertError>` and
//! `From<SourceError>` for [`tonic::Status`]. (`From<CoreError> for Status` cannot be
//! written here: both types are foreign to this crate. Wrap it in [`SourceError`], or
//! use [`core_error_status`].)

use rollover_core::plan::{Disruption, PLAN_FORMAT, Plan, Step};
use rollover_core::source::{Document, Format};
use rollover_core::topology::{Control, LinkSpec, NodeSpec, Topology};
use rollover_core::verifier::{BrokenLink, StepRef, Verdict};
use rollover_core::{Action, CoreError, Identity, Mode, Strategy};

use crate::v1;

/// The origin named in errors about a structured topology, or a topology document
/// sent without an origin.
pub const TOPOLOGY_ORIGIN: &str = "<topology>";

/// The origin named in errors about a structured plan, or a plan document sent
/// without an origin (as [`rollover_core::verify_plan`] names it).
pub const PLAN_ORIGIN: &str = "<plan>";

/// A wire message that does not make a valid core value: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConvertError {
    /// Path of the field at fault, relative to the converted message, such as
    /// `steps[3].action`; empty when the converted value itself is at fault (e.g. a
    /// bare enum).
    pub field: String,
    /// What is wrong with it, such as `unspecified`.
    pub problem: String,
}

impl ConvertError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ConvertError {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// An enum left at its UNSPECIFIED zero value where that has no meaning.
    pub fn unspecified(field: impl Into<String>) -> Self {
        ConvertError::new(field, "unspecified")
    }

    /// A required message or `oneof` that is absent.
    pub fn missing(field: impl Into<String>) -> Self {
        ConvertError::new(field, "missing")
    }

    /// An enum value this build does not know.
    pub fn unknown_enum(field: impl Into<String>, value: i32) -> Self {
        ConvertError::new(field, format!("unknown enum value {value}"))
    }

    /// The same error seen from an enclosing message: `parent` is prepended to the
    /// field path (`steps[3]` + `action` -> `steps[3].action`).
    pub fn within(mut self, parent: &str) -> Self {
        self.field = join_path(parent, &self.field);
        self
    }

    fn render(&self) -> String {
        if self.field.is_empty() {
            self.problem.clone()
        } else {
            format!("{}: {}", self.field, self.problem)
        }
    }
}

fn join_path(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else if child.is_empty() {
        parent.to_string()
    } else if child.starts_with('[') {
        format!("{parent}{child}")
    } else {
        format!("{parent}.{child}")
    }
}

fn indexed(name: &str, i: usize) -> String {
    format!("{name}[{i}]")
}

/// Core's node id rule as a conversion error (call [`ConvertError::within`] to name
/// the field). Checked while converting, so a bad id is refused before anything reads
/// it, whoever converts.
fn node_id(id: &str) -> Result<(), ConvertError> {
    rollover_core::check_node_id(id).map_err(|bad| ConvertError::new("", bad.to_string()))
}

/// Why a topology or plan carried by a request was rejected: the message does not
/// convert, or core rejects the document or value (with its origin, line and field).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The wire message is malformed.
    #[error("{0}")]
    Convert(#[from] ConvertError),
    /// Core rejected the input (parse or consistency error), or cannot plan it.
    #[error("{0}")]
    Core(#[from] CoreError),
}

impl From<ConvertError> for tonic::Status {
    fn from(e: ConvertError) -> Self {
        tonic::Status::invalid_argument(crate::status::clip(&e.to_string()))
    }
}

impl From<SourceError> for tonic::Status {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Convert(e) => e.into(),
            SourceError::Core(e) => core_error_status(&e),
        }
    }
}

/// `INVALID_ARGUMENT` with core's message: every [`CoreError`] is about the caller's
/// input (a malformed document, or a planning request that cannot be honoured).
pub fn core_error_status(e: &CoreError) -> tonic::Status {
    tonic::Status::invalid_argument(crate::status::clip(&e.to_string()))
}

// ---------------------------------------------------------------------------------
// Enums

const ACTIONS: [Action; 7] = [
    Action::Stage,
    Action::Present,
    Action::Retire,
    Action::Switch,
    Action::Finalize,
    Action::Bridge,
    Action::Unbridge,
];

/// The action called `name` (`stage`, `present`, ...), as core spells it.
pub fn action_named(name: &str) -> Option<Action> {
    ACTIONS.into_iter().find(|a| a.as_str() == name)
}

impl From<Action> for v1::StepAction {
    fn from(a: Action) -> Self {
        match a {
            Action::Stage => v1::StepAction::Stage,
            Action::Present => v1::StepAction::Present,
            Action::Retire => v1::StepAction::Retire,
            Action::Switch => v1::StepAction::Switch,
            Action::Finalize => v1::StepAction::Finalize,
            Action::Bridge => v1::StepAction::Bridge,
            Action::Unbridge => v1::StepAction::Unbridge,
        }
    }
}

impl TryFrom<v1::StepAction> for Action {
    type Error = ConvertError;
    fn try_from(a: v1::StepAction) -> Result<Self, ConvertError> {
        Ok(match a {
            v1::StepAction::Unspecified => return Err(ConvertError::unspecified("")),
            v1::StepAction::Stage => Action::Stage,
            v1::StepAction::Present => Action::Present,
            v1::StepAction::Retire => Action::Retire,
            v1::StepAction::Switch => Action::Switch,
            v1::StepAction::Finalize => Action::Finalize,
            v1::StepAction::Bridge => Action::Bridge,
            v1::StepAction::Unbridge => Action::Unbridge,
        })
    }
}

/// A `StepAction` field's raw value as a core action; UNSPECIFIED and unknown values
/// are errors (call [`ConvertError::within`] to name the field).
pub fn action_from_i32(value: i32) -> Result<Action, ConvertError> {
    let action =
        v1::StepAction::try_from(value).map_err(|_| ConvertError::unknown_enum("", value))?;
    Action::try_from(action)
}

impl From<Mode> for v1::NodeMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Bundle => v1::NodeMode::Bundle,
            Mode::Atomic => v1::NodeMode::Atomic,
        }
    }
}

/// Strict: UNSPECIFIED is an error (an agent never reports it). In a topology's
/// `Node.mode` UNSPECIFIED means BUNDLE; [`Node`](v1::Node) conversion handles that.
impl TryFrom<v1::NodeMode> for Mode {
    type Error = ConvertError;
    fn try_from(m: v1::NodeMode) -> Result<Self, ConvertError> {
        match m {
            v1::NodeMode::Unspecified => Err(ConvertError::unspecified("")),
            v1::NodeMode::Bundle => Ok(Mode::Bundle),
            v1::NodeMode::Atomic => Ok(Mode::Atomic),
        }
    }
}

/// A `NodeMode` field's raw value as a core mode; UNSPECIFIED and unknown values are
/// errors.
pub fn mode_from_i32(value: i32) -> Result<Mode, ConvertError> {
    let mode = v1::NodeMode::try_from(value).map_err(|_| ConvertError::unknown_enum("", value))?;
    Mode::try_from(mode)
}

/// A topology node's raw mode: UNSPECIFIED means BUNDLE (the default of MODEL §3).
fn topology_mode_from_i32(value: i32) -> Result<Mode, ConvertError> {
    match v1::NodeMode::try_from(value) {
        Ok(v1::NodeMode::Unspecified) => Ok(Mode::Bundle),
        Ok(mode) => Mode::try_from(mode),
        Err(_) => Err(ConvertError::unknown_enum("", value)),
    }
}

impl From<Strategy> for v1::Strategy {
    fn from(s: Strategy) -> Self {
        match s {
            Strategy::Waves => v1::Strategy::Waves,
            Strategy::Claim => v1::Strategy::Claim,
            Strategy::Bridge => v1::Strategy::Bridge,
        }
    }
}

/// UNSPECIFIED means the default, WAVES.
impl From<v1::Strategy> for Strategy {
    fn from(s: v1::Strategy) -> Self {
        match s {
            v1::Strategy::Unspecified | v1::Strategy::Waves => Strategy::Waves,
            v1::Strategy::Claim => Strategy::Claim,
            v1::Strategy::Bridge => Strategy::Bridge,
        }
    }
}

/// A `Strategy` field's raw value: UNSPECIFIED is WAVES, unknown values are errors.
pub fn strategy_from_i32(value: i32) -> Result<Strategy, ConvertError> {
    v1::Strategy::try_from(value)
        .map(Strategy::from)
        .map_err(|_| ConvertError::unknown_enum("", value))
}

/// A `DocumentFormat` field's raw value: `None` for UNSPECIFIED (detect it).
pub fn format_from_i32(value: i32) -> Result<Option<Format>, ConvertError> {
    match v1::DocumentFormat::try_from(value) {
        Ok(v1::DocumentFormat::Unspecified) => Ok(None),
        Ok(v1::DocumentFormat::Yaml) => Ok(Some(Format::Yaml)),
        Ok(v1::DocumentFormat::Json) => Ok(Some(Format::Json)),
        Err(_) => Err(ConvertError::unknown_enum("", value)),
    }
}

impl From<Format> for v1::DocumentFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Yaml => v1::DocumentFormat::Yaml,
            Format::Json => v1::DocumentFormat::Json,
        }
    }
}

// ---------------------------------------------------------------------------------
// Topology

impl From<&NodeSpec> for v1::Node {
    fn from(n: &NodeSpec) -> Self {
        v1::Node {
            id: n.id.clone(),
            mode: v1::NodeMode::from(n.mode) as i32,
            address: n.address.clone(),
            chains: (!n.chains).then_some(false),
            identity: match n.identity {
                Identity::Multi => v1::NodeIdentity::Multi,
                Identity::Single => v1::NodeIdentity::Single,
            } as i32,
            probe: n.probe.clone(),
        }
    }
}

impl TryFrom<v1::Node> for NodeSpec {
    type Error = ConvertError;
    fn try_from(n: v1::Node) -> Result<Self, ConvertError> {
        let identity = match v1::NodeIdentity::try_from(n.identity) {
            Ok(v1::NodeIdentity::Unspecified | v1::NodeIdentity::Multi) => Identity::Multi,
            Ok(v1::NodeIdentity::Single) => Identity::Single,
            Err(_) => return Err(ConvertError::unknown_enum("identity", n.identity)),
        };
        node_id(&n.id).map_err(|e| e.within("id"))?;
        Ok(NodeSpec {
            mode: topology_mode_from_i32(n.mode).map_err(|e| e.within("mode"))?,
            id: n.id,
            address: n.address,
            chains: n.chains.unwrap_or(true),
            identity,
            probe: n.probe,
        })
    }
}

impl From<&LinkSpec> for v1::Link {
    fn from(l: &LinkSpec) -> Self {
        v1::Link {
            client: l.client.clone(),
            server: l.server.clone(),
            ca: l.ca.clone(),
        }
    }
}

impl TryFrom<v1::Link> for LinkSpec {
    type Error = ConvertError;
    fn try_from(l: v1::Link) -> Result<Self, ConvertError> {
        node_id(&l.client).map_err(|e| e.within("client"))?;
        node_id(&l.server).map_err(|e| e.within("server"))?;
        Ok(LinkSpec {
            client: l.client,
            server: l.server,
            ca: l.ca,
        })
    }
}

impl From<&Control> for v1::Control {
    fn from(c: &Control) -> Self {
        v1::Control { ca: c.ca.clone() }
    }
}

impl From<v1::Control> for Control {
    fn from(c: v1::Control) -> Self {
        Control { ca: c.ca }
    }
}

impl From<&Topology> for v1::Topology {
    fn from(t: &Topology) -> Self {
        v1::Topology {
            ca: t.ca.clone(),
            nodes: t.nodes.iter().map(v1::Node::from).collect(),
            links: t.links.iter().map(v1::Link::from).collect(),
            control: t.control.as_ref().map(v1::Control::from),
        }
    }
}

impl From<Topology> for v1::Topology {
    fn from(t: Topology) -> Self {
        v1::Topology::from(&t)
    }
}

/// Converts field by field, refusing ids that break core's id rule
/// ([`rollover_core::check_node_id`]); it does not check duplicates or reserved ids:
/// use [`topology_from_source`] or [`Topology::check`] for that.
impl TryFrom<v1::Topology> for Topology {
    type Error = ConvertError;
    fn try_from(t: v1::Topology) -> Result<Self, ConvertError> {
        let nodes = t
            .nodes
            .into_iter()
            .enumerate()
            .map(|(i, n)| NodeSpec::try_from(n).map_err(|e| e.within(&indexed("nodes", i))))
            .collect::<Result<_, _>>()?;
        Ok(Topology {
            ca: t.ca,
            nodes,
            links: t
                .links
                .into_iter()
                .enumerate()
                .map(|(i, l)| LinkSpec::try_from(l).map_err(|e| e.within(&indexed("links", i))))
                .collect::<Result<_, _>>()?,
            control: t.control.map(Control::from),
        })
    }
}

// ---------------------------------------------------------------------------------
// Plan

impl From<&Step> for v1::Step {
    fn from(s: &Step) -> Self {
        v1::Step {
            id: s.id,
            node: s.node.clone(),
            action: v1::StepAction::from(s.action) as i32,
            wave: s.wave,
            after: s.after.clone(),
        }
    }
}

impl TryFrom<v1::Step> for Step {
    type Error = ConvertError;
    fn try_from(s: v1::Step) -> Result<Self, ConvertError> {
        node_id(&s.node).map_err(|e| e.within("node"))?;
        Ok(Step {
            action: action_from_i32(s.action).map_err(|e| e.within("action"))?,
            id: s.id,
            node: s.node,
            wave: s.wave,
            after: s.after,
        })
    }
}

impl From<&Disruption> for v1::Disruption {
    fn from(d: &Disruption) -> Self {
        v1::Disruption {
            client: d.client.clone(),
            server: d.server.clone(),
            reason: d.reason.clone(),
        }
    }
}

impl TryFrom<v1::Disruption> for Disruption {
    type Error = ConvertError;
    fn try_from(d: v1::Disruption) -> Result<Self, ConvertError> {
        node_id(&d.client).map_err(|e| e.within("client"))?;
        node_id(&d.server).map_err(|e| e.within("server"))?;
        Ok(Disruption {
            client: d.client,
            server: d.server,
            reason: d.reason,
        })
    }
}

impl From<&Plan> for v1::Plan {
    fn from(p: &Plan) -> Self {
        v1::Plan {
            format: p.format.clone(),
            ca: p.ca.clone(),
            steps: p.steps.iter().map(v1::Step::from).collect(),
            disruptions: p.disruptions.iter().map(v1::Disruption::from).collect(),
            strategy: p.strategy.clone(),
            cycle_breaking: p.cycle_breaking.clone(),
        }
    }
}

impl From<Plan> for v1::Plan {
    fn from(p: Plan) -> Self {
        v1::Plan::from(&p)
    }
}

/// Converts field by field, keeping `format` as sent; [`plan_from_source`] also
/// checks it.
impl TryFrom<v1::Plan> for Plan {
    type Error = ConvertError;
    fn try_from(p: v1::Plan) -> Result<Self, ConvertError> {
        let steps = p
            .steps
            .into_iter()
            .enumerate()
            .map(|(i, s)| Step::try_from(s).map_err(|e| e.within(&indexed("steps", i))))
            .collect::<Result<_, _>>()?;
        Ok(Plan {
            format: p.format,
            ca: p.ca,
            strategy: p.strategy,
            cycle_breaking: p.cycle_breaking,
            steps,
            disruptions: p
                .disruptions
                .into_iter()
                .enumerate()
                .map(|(i, d)| {
                    Disruption::try_from(d).map_err(|e| e.within(&indexed("disruptions", i)))
                })
                .collect::<Result<_, _>>()?,
            // Informative figures are not part of the wire plan.
            comparison: Vec::new(),
        })
    }
}

// ---------------------------------------------------------------------------------
// Verdict

/// Core names a verdict's actions by their lowercase names; one it does not know
/// (never produced by core) goes out as UNSPECIFIED.
impl From<&StepRef> for v1::StepRef {
    fn from(s: &StepRef) -> Self {
        let action = action_named(&s.action).map_or(v1::StepAction::Unspecified, Into::into);
        v1::StepRef {
            id: s.id,
            node: s.node.clone(),
            action: action as i32,
        }
    }
}

impl TryFrom<v1::StepRef> for StepRef {
    type Error = ConvertError;
    fn try_from(s: v1::StepRef) -> Result<Self, ConvertError> {
        let action = action_from_i32(s.action).map_err(|e| e.within("action"))?;
        Ok(StepRef {
            id: s.id,
            node: s.node,
            action: action.as_str().to_string(),
        })
    }
}

/// The witness in words, as the wire's `BrokenLink.description` carries it.
pub fn describe_witness(steps: &[StepRef; 2]) -> String {
    let [first, second] = steps;
    format!(
        "{} {} may run before {} {}",
        first.node, first.action, second.node, second.action
    )
}

impl From<&BrokenLink> for v1::BrokenLink {
    fn from(b: &BrokenLink) -> Self {
        v1::BrokenLink {
            client: b.client.clone(),
            server: b.server.clone(),
            steps: b.steps.iter().map(v1::StepRef::from).collect(),
            description: describe_witness(&b.steps),
            reason: b.reason.clone(),
        }
    }
}

/// The wire's `description` is derived from the steps, so it is not kept.
impl TryFrom<v1::BrokenLink> for BrokenLink {
    type Error = ConvertError;
    fn try_from(b: v1::BrokenLink) -> Result<Self, ConvertError> {
        let found = b.steps.len();
        let steps: [v1::StepRef; 2] = b.steps.try_into().map_err(|_| {
            ConvertError::new("steps", format!("expected exactly 2 steps, found {found}"))
        })?;
        let [first, second] = steps;
        Ok(BrokenLink {
            client: b.client,
            server: b.server,
            steps: [
                StepRef::try_from(first).map_err(|e| e.within("steps[0]"))?,
                StepRef::try_from(second).map_err(|e| e.within("steps[1]"))?,
            ],
            reason: b.reason,
        })
    }
}

fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl From<&Verdict> for v1::Verdict {
    fn from(v: &Verdict) -> Self {
        v1::Verdict {
            safe: v.safe,
            waves: v.waves,
            broken: v.broken.iter().map(v1::BrokenLink::from).collect(),
            undeclared_count: count_u32(v.undeclared_count),
            declared_count: count_u32(v.declared_count),
            links_checked: count_u32(v.links_checked),
        }
    }
}

impl From<Verdict> for v1::Verdict {
    fn from(v: Verdict) -> Self {
        v1::Verdict::from(&v)
    }
}

impl TryFrom<v1::Verdict> for Verdict {
    type Error = ConvertError;
    fn try_from(v: v1::Verdict) -> Result<Self, ConvertError> {
        let broken = v
            .broken
            .into_iter()
            .enumerate()
            .map(|(i, b)| BrokenLink::try_from(b).map_err(|e| e.within(&indexed("broken", i))))
            .collect::<Result<_, _>>()?;
        Ok(Verdict {
            safe: v.safe,
            waves: v.waves,
            broken,
            undeclared_count: v.undeclared_count as usize,
            declared_count: v.declared_count as usize,
            links_checked: v.links_checked as usize,
        })
    }
}

// ---------------------------------------------------------------------------------
// Sources: structured message or raw document

/// A raw wire document as core's [`Document`]: an empty origin becomes
/// `default_origin` (e.g. [`TOPOLOGY_ORIGIN`]), and an UNSPECIFIED format is detected
/// from origin and text.
pub fn core_document<'a>(
    doc: &'a v1::Document,
    default_origin: &'static str,
) -> Result<Document<'a>, ConvertError> {
    let origin = if doc.origin.is_empty() {
        default_origin
    } else {
        doc.origin.as_str()
    };
    let format = format_from_i32(doc.format).map_err(|e| e.within("format"))?;
    Ok(Document {
        origin,
        text: &doc.text,
        format: format.unwrap_or_else(|| Format::detect(origin, &doc.text)),
    })
}

/// Parse and check a topology document, as [`Topology::parse`] does but honouring an
/// explicit format.
pub fn topology_from_document(doc: &v1::Document) -> Result<Topology, SourceError> {
    let doc = core_document(doc, TOPOLOGY_ORIGIN).map_err(|e| e.within("document"))?;
    Ok(Topology::parse_document(&doc)?)
}

/// Parse a plan document, as [`Plan::parse`] does but honouring an explicit format.
/// Consistency with a topology is checked later, by
/// [`rollover_core::PlanOrder::resolve`] (pass it [`core_document`] with [`PLAN_ORIGIN`]
/// so its errors are placed too).
pub fn plan_from_document(doc: &v1::Document) -> Result<Plan, SourceError> {
    let doc = core_document(doc, PLAN_ORIGIN).map_err(|e| e.within("document"))?;
    Ok(Plan::parse_document(&doc)?)
}

/// The topology a request carries, converted and checked like a topology file (ids
/// non-empty, unique and not reserved; CAs named). Errors in a structured topology
/// name the field from the source (`topology.nodes[1].mode`); errors in a document name
/// its origin, line and field.
pub fn topology_from_source(source: &v1::TopologySource) -> Result<Topology, SourceError> {
    use v1::topology_source::Source;
    match &source.source {
        Some(Source::Topology(t)) => {
            let topology = Topology::try_from(t.clone()).map_err(|e| e.within("topology"))?;
            topology.check(&Document::new(TOPOLOGY_ORIGIN, ""))?;
            Ok(topology)
        }
        Some(Source::Document(d)) => topology_from_document(d),
        None => {
            Err(ConvertError::new("source", "missing: set either `topology` or `document`").into())
        }
    }
}

/// The plan a request carries, converted and with its format checked. A structured
/// plan may leave `format` empty (it is then `rollover-plan/1`). Consistency with the
/// topology is checked by [`rollover_core::verify_plan`] or
/// [`rollover_core::PlanOrder::resolve`].
pub fn plan_from_source(source: &v1::PlanSource) -> Result<Plan, SourceError> {
    use v1::plan_source::Source;
    match &source.source {
        Some(Source::Plan(p)) => {
            let mut plan = Plan::try_from(p.clone()).map_err(|e| e.within("plan"))?;
            if plan.format.is_empty() {
                plan.format = PLAN_FORMAT.to_string();
            }
            if plan.format != PLAN_FORMAT {
                let found = format!("expected `{PLAN_FORMAT}`, found `{}`", plan.format);
                return Err(ConvertError::new("plan.format", found).into());
            }
            Ok(plan)
        }
        Some(Source::Document(d)) => plan_from_document(d),
        None => Err(ConvertError::new("source", "missing: set either `plan` or `document`").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_like_core_renders_them() {
        let e = ConvertError::unspecified("action").within("steps[3]");
        assert_eq!(e.to_string(), "steps[3].action: unspecified");
        let e = ConvertError::unspecified("[2]").within("after");
        assert_eq!(e.field, "after[2]");
        let e = ConvertError::unspecified("").within("mode");
        assert_eq!(e.to_string(), "mode: unspecified");
        assert_eq!(ConvertError::unspecified("").to_string(), "unspecified");
    }

    #[test]
    fn every_action_and_mode_round_trips() {
        for a in ACTIONS {
            let wire = v1::StepAction::from(a);
            assert_eq!(Action::try_from(wire), Ok(a));
            assert_eq!(action_from_i32(wire as i32), Ok(a));
            assert_eq!(action_named(a.as_str()), Some(a));
        }
        for m in [Mode::Bundle, Mode::Atomic] {
            assert_eq!(mode_from_i32(v1::NodeMode::from(m) as i32), Ok(m));
        }
        for s in [Strategy::Waves, Strategy::Claim, Strategy::Bridge] {
            assert_eq!(strategy_from_i32(v1::Strategy::from(s) as i32), Ok(s));
        }
    }

    #[test]
    fn unspecified_and_unknown_enums_are_named() {
        assert_eq!(action_from_i32(0), Err(ConvertError::unspecified("")));
        assert_eq!(
            action_from_i32(42).unwrap_err().to_string(),
            "unknown enum value 42"
        );
        assert!(mode_from_i32(0).is_err());
        assert_eq!(topology_mode_from_i32(0), Ok(Mode::Bundle));
        assert_eq!(strategy_from_i32(0), Ok(Strategy::Waves));
        assert!(strategy_from_i32(9).is_err());
        assert_eq!(format_from_i32(0), Ok(None));
        assert!(format_from_i32(3).is_err());
    }
}
