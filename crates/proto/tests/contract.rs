//! Checks on the wire contract itself, read from the exported descriptor set: the four
//! files and three services are there, no message can carry a private key, and every
//! element is documented.

use std::collections::HashSet;

use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};
use rollover_proto::FILE_DESCRIPTOR_SET;

const FILES: [&str; 4] = [
    "rollover/v1/common.proto",
    "rollover/v1/planner.proto",
    "rollover/v1/executor.proto",
    "rollover/v1/agent.proto",
];

/// Substrings that would let a field carry key material.
const FORBIDDEN: [&str; 4] = ["private", "key_der", "key_pem", "secret"];

fn own_files() -> Vec<FileDescriptorProto> {
    let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
    set.file
        .into_iter()
        .filter(|f| f.package() == "rollover.v1")
        .collect()
}

/// Every message of `messages` and their nested messages, with full names.
fn walk<'a>(
    prefix: &str,
    messages: &'a [DescriptorProto],
    out: &mut Vec<(String, &'a DescriptorProto)>,
) {
    for message in messages {
        let name = format!("{prefix}.{}", message.name());
        walk(&name, &message.nested_type, out);
        out.push((name, message));
    }
}

#[test]
fn all_four_files_are_in_the_set() {
    let names: HashSet<String> = own_files().iter().map(|f| f.name().to_owned()).collect();
    for file in FILES {
        assert!(
            names.contains(file),
            "{file} missing from FILE_DESCRIPTOR_SET"
        );
    }
    assert_eq!(names.len(), FILES.len(), "unexpected files: {names:?}");
}

#[test]
fn services_and_methods_are_the_contract() {
    let services: Vec<(String, Vec<String>)> = own_files()
        .iter()
        .flat_map(|f| &f.service)
        .map(|s| {
            (
                s.name().to_owned(),
                s.method.iter().map(|m| m.name().to_owned()).collect(),
            )
        })
        .collect();
    let expected = [
        ("PlannerService", &["Plan", "Verify"][..]),
        (
            "ExecutorService",
            &[
                "StartRotation",
                "WatchRotation",
                "GetRotation",
                "ListRotations",
                "Pause",
                "Resume",
                "Abort",
                "Rollback",
                "CheckFleet",
            ][..],
        ),
        (
            "AgentService",
            &["GetState", "CreateCsr", "ApplyStep", "Probe"][..],
        ),
    ];
    assert_eq!(services.len(), expected.len());
    for (service, methods) in expected {
        let (_, found) = services
            .iter()
            .find(|(name, _)| name == service)
            .unwrap_or_else(|| panic!("service {service} missing"));
        assert_eq!(found, methods, "methods of {service}");
    }
    // buf's STANDARD rules, checked here too (`.ci/run` runs `buf lint`): every RPC has
    // its own request and response message, named after it.
    for file in own_files() {
        for service in &file.service {
            for method in &service.method {
                let name = method.name();
                assert_eq!(method.input_type(), format!(".rollover.v1.{name}Request"));
                assert_eq!(method.output_type(), format!(".rollover.v1.{name}Response"));
            }
        }
    }
}

#[test]
fn no_message_can_carry_a_private_key() {
    let files = own_files();
    let mut messages = Vec::new();
    for file in &files {
        walk("rollover.v1", &file.message_type, &mut messages);
    }
    assert!(
        messages.len() > 40,
        "only {} messages found",
        messages.len()
    );
    for (name, message) in messages {
        let lower = name.to_lowercase();
        assert!(
            !lower.contains("private"),
            "message {name} looks like key material"
        );
        for field in &message.field {
            let field_name = field.name().to_lowercase();
            for bad in FORBIDDEN {
                assert!(
                    !field_name.contains(bad),
                    "field {name}.{} contains {bad:?}: no RPC message may carry a private key",
                    field.name()
                );
            }
        }
    }
}

/// Paths (as in `SourceCodeInfo.Location.path`) of every documentable element of a
/// file: messages (4, nested 3), fields (2), oneofs (8), enums (5), enum values (2),
/// services (6) and methods (2), with a name for messages.
fn element_paths(file: &FileDescriptorProto) -> Vec<(Vec<i32>, String)> {
    fn message(
        path: Vec<i32>,
        m: &DescriptorProto,
        name: String,
        out: &mut Vec<(Vec<i32>, String)>,
    ) {
        for (i, f) in m.field.iter().enumerate() {
            out.push((
                [&path[..], &[2, i as i32]].concat(),
                format!("{name}.{}", f.name()),
            ));
        }
        for (i, o) in m.oneof_decl.iter().enumerate() {
            // `optional` fields make synthetic oneofs, not written in the source.
            let synthetic = m
                .field
                .iter()
                .any(|f| f.oneof_index == Some(i as i32) && f.proto3_optional());
            if synthetic {
                continue;
            }
            out.push((
                [&path[..], &[8, i as i32]].concat(),
                format!("{name}.{}", o.name()),
            ));
        }
        for (i, n) in m.nested_type.iter().enumerate() {
            let p = [&path[..], &[3, i as i32]].concat();
            message(p, n, format!("{name}.{}", n.name()), out);
        }
        out.push((path, name));
    }
    let mut out = Vec::new();
    for (i, m) in file.message_type.iter().enumerate() {
        message(vec![4, i as i32], m, m.name().to_owned(), &mut out);
    }
    for (i, e) in file.enum_type.iter().enumerate() {
        out.push((vec![5, i as i32], e.name().to_owned()));
        for (j, v) in e.value.iter().enumerate() {
            out.push((
                vec![5, i as i32, 2, j as i32],
                format!("{}.{}", e.name(), v.name()),
            ));
        }
    }
    for (i, s) in file.service.iter().enumerate() {
        out.push((vec![6, i as i32], s.name().to_owned()));
        for (j, m) in s.method.iter().enumerate() {
            out.push((
                vec![6, i as i32, 2, j as i32],
                format!("{}.{}", s.name(), m.name()),
            ));
        }
    }
    out
}

#[test]
fn every_element_is_documented() {
    for file in own_files() {
        let info = file
            .source_code_info
            .as_ref()
            .expect("source info kept in the set");
        let documented: HashSet<&[i32]> = info
            .location
            .iter()
            .filter(|l| !l.leading_comments().trim().is_empty())
            .map(|l| l.path.as_slice())
            .collect();
        for (path, name) in element_paths(&file) {
            assert!(
                documented.contains(path.as_slice()),
                "{}: {name} has no leading comment",
                file.name()
            );
        }
    }
}

#[test]
fn generated_types_round_trip() {
    use rollover_proto::v1::{ApplyStepRequest, StepAction};

    let request = ApplyStepRequest {
        rotation_id: "r1".into(),
        step_id: 3,
        action: StepAction::Stage.into(),
        new_root_der: vec![0x30, 0x82],
        issued_leaf_der: vec![0x30, 0x81],
        old_root_fingerprint: "ab".repeat(32),
        undo: false,
        ..Default::default()
    };
    let decoded = ApplyStepRequest::decode(request.encode_to_vec().as_slice()).unwrap();
    assert_eq!(decoded, request);
    assert_eq!(decoded.action(), StepAction::Stage);
    assert_eq!(StepAction::Stage.as_str_name(), "STEP_ACTION_STAGE");
}

#[test]
fn reflection_accepts_the_descriptor_set() {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("tonic-reflection can serve FILE_DESCRIPTOR_SET");
}
