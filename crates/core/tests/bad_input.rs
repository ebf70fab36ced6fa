//! Bad input, everywhere (issue 6): random and mutated bytes fed to the topology and
//! plan parsers and to plan resolution never panic, and every error names the file.

use proptest::prelude::*;
use rollover_core::{CoreError, Fleet, Topology, plan_waves, verify_document};

const MIXED: &str = "ca: r\ncontrol: {ca: r}\nnodes:\n  - {id: gw}\n  - {id: meter, mode: atomic}\n  - {id: hub, mode: bundle, address: '127.0.0.1:1'}\nlinks:\n  - {client: gw, server: meter}\n  - {client: meter, server: hub}\n  - {client: hub, server: hub}\n  - {client: gw, server: x, ca: other}\n";

fn topology() -> Topology {
    Topology::parse("mixed.yaml", MIXED).expect("the seed topology is valid")
}

fn plan_json() -> String {
    plan_waves(&Fleet::new(&topology())).to_json()
}

/// Apply byte edits (position, new byte or deletion) to a valid document.
fn mutate(text: &str, edits: &[(usize, Option<u8>)]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for &(at, byte) in edits {
        if bytes.is_empty() {
            break;
        }
        let at = at % bytes.len();
        match byte {
            Some(b) => bytes[at] = b,
            None => {
                bytes.remove(at);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn check_error(result: Result<impl Sized, CoreError>, origin: &str) {
    if let Err(e) = result {
        let text = e.to_string();
        assert!(!text.is_empty());
        if let Some(input) = e.as_input() {
            assert_eq!(input.file, origin, "{text}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        check_error(Topology::parse("t.yaml", &text), "t.yaml");
        check_error(Topology::parse("t.json", &text), "t.json");
        check_error(verify_document(&topology(), "p.json", &text), "p.json");
    }

    #[test]
    fn mutated_topologies_never_panic(edits in proptest::collection::vec((any::<usize>(), proptest::option::of(any::<u8>())), 1..6)) {
        let text = mutate(MIXED, &edits);
        check_error(Topology::parse("t.yaml", &text), "t.yaml");
        if let Ok(t) = Topology::parse("t.yaml", &text) {
            let fleet = Fleet::new(&t);
            let plan = plan_waves(&fleet);
            prop_assert!(rollover_core::verify_plan(&t, &plan).map(|v| v.safe).unwrap_or(false));
        }
        let json = mutate(&topology().to_json(), &edits);
        check_error(Topology::parse("t.json", &json), "t.json");
    }

    #[test]
    fn mutated_plans_never_panic(edits in proptest::collection::vec((any::<usize>(), proptest::option::of(any::<u8>())), 1..6)) {
        let text = mutate(&plan_json(), &edits);
        check_error(verify_document(&topology(), "p.json", &text), "p.json");
    }
}

#[test]
fn deeply_nested_input_is_an_error_not_a_crash() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(Topology::parse("deep.json", &deep).is_err());
    assert!(Topology::parse("deep.yaml", &deep).is_err());
}

/// A wave number at or past the plan's step count (here the largest u32, which once
/// wrapped the wave count to 0 and sent the executor's per-wave tally out of bounds) is
/// refused at the step's `wave`, naming the limit.
#[test]
fn a_wave_past_the_step_count_is_refused_at_its_field() {
    let mut plan: serde_json::Value = serde_json::from_str(&plan_json()).unwrap();
    let steps = plan["steps"].as_array().unwrap().len();
    let last = steps - 1;
    plan["steps"][last]["wave"] = serde_json::json!(u32::MAX);
    let text = serde_json::to_string_pretty(&plan).unwrap();
    let error = verify_document(&topology(), "p.json", &text).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&format!("steps[{last}].wave")),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "a plan of {steps} steps has waves 0 to {last} at most"
        )),
        "{message}"
    );
    // The highest wave a plan of that size may use is accepted as far as waves go.
    plan["steps"][last]["wave"] = serde_json::json!(last);
    let text = serde_json::to_string_pretty(&plan).unwrap();
    if let Err(e) = verify_document(&topology(), "p.json", &text) {
        assert!(!e.to_string().contains("at most"), "{e}");
    }
}
