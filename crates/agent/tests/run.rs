//! `rollover agent`'s library side: enrols from CA files once, then starts and stops.

mod common;

use common::{bounded, root};
use rollover_agent::{RunOptions, has_control_credentials, is_bootstrapped, run};
use rollover_core::state::Mode;

#[tokio::test]
async fn run_enrols_once_then_serves_until_shutdown() {
    bounded(async {
        let dirs = tempfile::tempdir().unwrap();
        let ca_file = dirs.path().join("ca.pem");
        let control_file = dirs.path().join("control.pem");
        std::fs::write(&ca_file, root(common::CA, 1).to_pem()).unwrap();
        std::fs::write(&control_file, root("control", 1).to_pem()).unwrap();
        let state = dirs.path().join("state");
        let options = RunOptions {
            id: "gw".into(),
            mode: Mode::Atomic,
            listen: common::localhost(),
            data_listen: common::localhost(),
            state: state.clone(),
            bootstrap_ca: Some(ca_file.clone()),
            control_ca: Some(control_file),
            export: None,
            limits: rollover_agent::DEFAULT_LIMITS,
            chains: true,
        };
        run(options.clone(), async {}).await.unwrap();
        assert!(is_bootstrapped(&state) && has_control_credentials(&state));
        let node = std::fs::read_to_string(state.join("node.json")).unwrap();

        // A second run keeps the enrolment (the CA files are ignored).
        std::fs::write(&ca_file, root(common::CA, 1).to_pem()).unwrap();
        run(options.clone(), async {}).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(state.join("node.json")).unwrap(),
            node
        );

        // The id and mode must match the enrolment.
        let err = run(
            RunOptions {
                mode: Mode::Bundle,
                ..options
            },
            async {},
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("mode"), "{err}");
    })
    .await;
}
