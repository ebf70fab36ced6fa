//! The barrage's machinery: a runtime, a proptest runner, [`drive`] (every input
//! answered or clearly refused within [`CALL_LIMIT`]), and the generic strategies
//! (random and raw protobuf bytes, byte edits, odd words, enum values, garbage text).

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use proptest::collection::vec as pvec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;
use rollover_integration_tests::{CA, EXECUTOR_ID, Tally, bounded, unclear};
use tokio::runtime::Runtime;
use tonic::Status;

/// The longest any call may take (a probe may legitimately wait for a connect).
pub(crate) const CALL_LIMIT: Duration = Duration::from_secs(15);

pub(crate) type Call = BoxFuture<'static, Result<(), Status>>;

pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub(crate) fn runner(cases: u32) -> TestRunner {
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
pub(crate) fn drive<T: Debug + Clone>(
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
pub(crate) fn request_bytes(seeds: Vec<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
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
pub(crate) fn decoded<R: Message + Default>(bytes: &[u8]) -> Option<R> {
    R::decode(bytes).ok()
}

/// A protobuf field with any number and wire type.
#[derive(Debug, Clone)]
pub(crate) enum Raw {
    Varint(u32, u64),
    Fixed32(u32, u32),
    Fixed64(u32, u64),
    Bytes(u32, Vec<u8>),
    Message(u32, Vec<Raw>),
}

pub(crate) fn encode_raw(fields: &[Raw]) -> Vec<u8> {
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

pub(crate) fn field_number() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 1u32..=8, 2 => 9u32..=20, 1 => 1u32..=2000]
}

pub(crate) fn varint() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..8,
        1 => Just(u64::MAX),
        1 => Just(u64::from(u32::MAX)),
        1 => Just(i32::MAX as u64),
        1 => Just(i64::from(i32::MIN) as u64),
        2 => any::<u64>(),
    ]
}

pub(crate) fn raw_fields() -> impl Strategy<Value = Vec<Raw>> {
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
pub(crate) enum Edit {
    Flip(Index, u8),
    Set(Index, u8),
    Delete(Index, usize),
    Insert(Index, Vec<u8>),
    Duplicate(Index, usize),
    Truncate(Index),
}

pub(crate) fn edit() -> impl Strategy<Value = Edit> {
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
    pub(crate) fn apply(&self, bytes: &mut Vec<u8>) {
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
pub(crate) fn word() -> BoxedStrategy<String> {
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
pub(crate) fn enum_value() -> impl Strategy<Value = i32> {
    prop_oneof![
        4 => -1i32..8,
        1 => Just(i32::MAX),
        1 => Just(i32::MIN),
        1 => any::<i32>(),
    ]
}

/// Nine levels of nine-fold aliases: about 387 million strings if expanded.
pub(crate) fn alias_bomb() -> String {
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
pub(crate) fn garbage() -> BoxedStrategy<String> {
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
