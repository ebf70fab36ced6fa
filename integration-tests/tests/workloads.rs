//! Real workloads (issue 14, MODEL §12): rotating the CA of a mesh of real nginx
//! servers and curl clients, each a single-identity bundle node whose agent exports
//! its credentials as files and runs the node's reload command.
//!
//! * `waves`: the real planner and executor rotate the mesh while every client
//!   requests each of its servers continuously: no request fails, and at the end an
//!   old-root certificate is refused by every nginx.
//! * negative control: the same mesh planned as if every node could pick its leaf
//!   (multi-identity) fails requests, only on links the verifier names when it
//!   checks that plan against the real single-identity topology.
//! * a reload command that exits 1 fails the step and pauses the rotation with its
//!   stderr; rollback returns every node to the old root with its files rewritten.
//!
//! Needs nginx and curl (`.ci/setup-nginx.sh`): skipped loudly without them, a
//! failure under `CI=true`.

#[path = "workloads/mesh.rs"]
mod mesh;
#[path = "workloads/nginx.rs"]
mod nginx;
#[path = "workloads/traffic.rs"]
mod traffic;

use std::collections::{BTreeSet, HashMap};

use mesh::{CLIENTS, Mesh, SERVERS, request, wait_for};
use rollover_agent::export::{CERT_FILE, TRUST_CLIENTS_FILE, TRUST_SERVERS_FILE};
use rollover_core::{Action, Fleet, Plan, PlanOptions};
use rollover_executor::rotation::Control;
use rollover_pki::{KeyAlg, NodeKey, Validity, fingerprint};
use rollover_proto::v1;
use tokio::sync::Mutex;
use traffic::{Traffic, curl_once};
use v1::RotationState as S;

/// One mesh at a time: the tests share two cores with nginx and curl.
static ONE_MESH: Mutex<()> = Mutex::const_new(());

/// Fingerprints of the certificates in a PEM file.
fn certs(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("exported file");
    pem::parse_many(text)
        .expect("PEM")
        .iter()
        .map(|p| fingerprint(p.contents()))
        .collect()
}

/// Rotates the mesh with `strategy` under continuous traffic; returns (R, F).
async fn rotate_under_traffic(programs: &nginx::Programs, strategy: v1::Strategy) -> (u64, u64) {
    let mesh = Mesh::start(programs).await;
    let executor = mesh.executor();
    let topology = mesh.topology(true);
    let traffic = Traffic::start(programs, mesh.routes());
    traffic.until_each_ok(3).await;
    let before = traffic.totals();
    let id = executor
        .start_rotation(request(&topology, None, strategy, true))
        .await
        .expect("rotation starts")
        .rotation_id;
    let status = wait_for(&executor, &id, &[S::Succeeded, S::Paused, S::Failed]).await;
    let during = traffic.totals();
    // Keep going until enough requests were made in all (on the final state).
    traffic.until_total(500).await;
    let traffic = traffic.stop().await;
    let (requests, failed) = traffic.totals();
    println!(
        "workloads: {} nginx servers, {} clients, {requests} requests, {failed} failed",
        SERVERS.len(),
        CLIENTS.len()
    );
    println!(
        "  ({strategy:?}: {} requests before the rotation, {} during it ({} steps in {} waves), \
         the rest after; {} links)\n{}",
        before.0,
        during.0 - before.0,
        status.steps_total,
        status.waves_total,
        traffic.routes.len(),
        traffic.describe()
    );
    assert_eq!(status.state, S::Succeeded as i32, "{status:?}");
    assert_eq!(status.probes_failed, 0, "{status:?}");
    assert_eq!(failed, 0, "failed requests:\n{}", traffic.describe());
    assert!(requests >= 500, "{requests} requests");
    assert!(during.0 > before.0, "traffic ran during the rotation");
    // The executor's link probes dialed each nginx at its topology `probe:` address.
    for nginx in &mesh.nginx {
        let probes = nginx.probes_answered();
        println!("  probes answered by {}: {probes}", nginx.site.id);
        assert!(probes > 0, "no probe reached {}", nginx.site.id);
    }

    // Every node's files hold the new root only...
    let old = mesh.old.fingerprint();
    let new_root = certs(&mesh.exported("curl-1", TRUST_SERVERS_FILE));
    assert_eq!(new_root.len(), 1);
    assert_ne!(new_root[0], old);
    for id in SERVERS.iter().chain(&CLIENTS) {
        assert_eq!(
            certs(&mesh.exported(id, TRUST_CLIENTS_FILE)),
            new_root,
            "{id}"
        );
        assert_eq!(
            certs(&mesh.exported(id, TRUST_SERVERS_FILE)),
            new_root,
            "{id}"
        );
    }
    // ...and every nginx refuses a client with an old-root certificate.
    let intruder = mesh.dir.path().join("intruder");
    std::fs::create_dir_all(&intruder).expect("intruder dir");
    let key = NodeKey::generate(KeyAlg::default()).expect("key");
    let leaf = mesh
        .old
        .issue_leaf(
            &key.csr_der("curl-1").expect("csr"),
            "curl-1",
            Validity::default(),
        )
        .expect("old-root leaf");
    let (cert, key_file) = (intruder.join("cert.pem"), intruder.join("key.pem"));
    std::fs::write(
        &cert,
        pem::encode(&pem::Pem::new("CERTIFICATE", leaf.to_vec())),
    )
    .unwrap();
    std::fs::write(&key_file, key.to_pem()).unwrap();
    let cacert = mesh.exported("curl-1", TRUST_SERVERS_FILE);
    let live = mesh.exported("curl-1", CERT_FILE);
    let live_key = mesh.exported("curl-1", rollover_agent::export::KEY_FILE);
    for server in SERVERS {
        let port = mesh.port(server);
        // The same request with curl-1's current (new-root) certificate is answered:
        // what refuses the intruder is its certificate.
        let answer = curl_once(programs, (&live, &live_key, &cacert), server, port).await;
        assert_eq!(answer.as_deref(), Ok(server), "{server}");
        let refused = curl_once(programs, (&cert, &key_file, &cacert), server, port).await;
        let why = refused.expect_err("an old-root client certificate was accepted");
        assert!(why.contains("SSL certificate error"), "{server}: {why}");
        println!("  old root refused by {server}: {why}");
    }
    executor.shutdown();
    mesh.stop().await;
    (requests, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_and_curl_rotate_under_traffic_without_a_failed_request() {
    let Some(programs) = nginx::programs("workloads") else {
        return;
    };
    let _one = ONE_MESH.lock().await;
    rotate_under_traffic(&programs, v1::Strategy::Waves).await;
}

/// The links `verdict` says can break.
fn named(verdict: &rollover_core::Verdict) -> BTreeSet<(String, String)> {
    verdict
        .broken
        .iter()
        .map(|b| (b.client.clone(), b.server.clone()))
        .collect()
}

/// One run of `plan` that its partial order allows, as a plan of its own (a chain):
/// the steps in `first` (node, action) in that order, then the rest in the plan's
/// order as soon as their prerequisites are done. Panics if `first` is not a legal
/// start. The executor dispatches ready steps first come first served, which for a
/// multi-identity plan means every `stage` before any `present`: an order that
/// happens to spare single-identity nodes. This is the order an executor with other
/// timings (slower agents, more concurrency) may take instead.
fn one_run(plan: &Plan, first: &[(&str, Action)]) -> Plan {
    let n = plan.steps.len();
    let ix: HashMap<u64, usize> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id, i))
        .collect();
    // Each step's prerequisites: its `after` steps and its node's previous step.
    let mut before: Vec<Vec<usize>> = plan
        .steps
        .iter()
        .map(|s| s.after.iter().map(|id| ix[id]).collect())
        .collect();
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, s) in plan.steps.iter().enumerate() {
        if let Some(p) = last.insert(s.node.as_str(), i) {
            before[i].push(p);
        }
    }
    let mut placed = vec![false; n];
    let mut order: Vec<usize> = Vec::with_capacity(n);
    let place = |i: usize, order: &mut Vec<usize>, placed: &mut Vec<bool>| {
        assert!(
            before[i].iter().all(|&p| placed[p]),
            "{} {:?} may not run yet",
            plan.steps[i].node,
            plan.steps[i].action
        );
        placed[i] = true;
        order.push(i);
    };
    for (node, action) in first {
        let i = plan
            .steps
            .iter()
            .position(|s| s.node == *node && s.action == *action)
            .expect("step in plan");
        place(i, &mut order, &mut placed);
    }
    while order.len() < n {
        let i = (0..n)
            .find(|&i| !placed[i] && before[i].iter().all(|&p| placed[p]))
            .expect("the plan's order is acyclic");
        place(i, &mut order, &mut placed);
    }
    let mut run = plan.clone();
    run.steps = order
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let mut step = plan.steps[i].clone();
            step.wave = k as u32;
            step.after = match k.checked_sub(1).map(|p| &plan.steps[order[p]]) {
                Some(prev) if prev.node != step.node => vec![prev.id],
                _ => Vec::new(),
            };
            step
        })
        .collect();
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_as_multi_identity_the_mesh_fails_requests_where_the_verifier_says() {
    let Some(programs) = nginx::programs("workloads negative control") else {
        return;
    };
    let _one = ONE_MESH.lock().await;
    let mesh = Mesh::start(&programs).await;
    let executor = mesh.executor();
    let (single, multi) = (mesh.topology(true), mesh.topology(false));
    let plan = rollover_core::plan(&Fleet::new(&multi), &PlanOptions::default()).expect("plan");
    let anywhere = named(&rollover_core::verify_plan(&single, &plan).expect("verify"));
    assert!(
        !anywhere.is_empty(),
        "the verifier finds the multi plan safe"
    );
    // curl-1 presents its new leaf (as a multi-identity client it would still hold
    // the old one) before web-1 and web-2 trust the new root; web-1 drops the old
    // root while curl-3, curl-4 and web-3 still present old leaves.
    let run = one_run(
        &plan,
        &[
            ("curl-1", Action::Stage),
            ("curl-1", Action::Present),
            ("curl-2", Action::Stage),
            ("curl-3", Action::Stage),
            ("curl-4", Action::Stage),
            ("web-3", Action::Stage),
            ("web-1", Action::Stage),
            ("web-1", Action::Present),
            ("web-1", Action::Retire),
        ],
    );
    let multi_verdict = rollover_core::verify_plan(&multi, &run).expect("verify");
    assert!(
        multi_verdict.safe,
        "a run of a safe plan is safe: {multi_verdict:?}"
    );
    let named = named(&rollover_core::verify_plan(&single, &run).expect("verify"));
    assert!(named.is_subset(&anywhere), "{named:?} {anywhere:?}");

    let mut traffic = Traffic::start(&programs, mesh.routes());
    traffic.until_each_ok(3).await;
    // Every state of the run carries traffic on every link before the next step.
    traffic.hold_reloads(&mesh.hold);
    std::fs::write(mesh.hold.join("on"), "").expect("hold on");
    // Probes off: they would pause the rotation at the first broken link.
    // The topology is wrong on purpose (exporting agents declared multi): the
    // executor's own comparison would refuse it, so it is skipped by name.
    let mut mis_declared = request(&multi, Some(&run), v1::Strategy::Waves, false);
    if let Some(options) = mis_declared.options.as_mut() {
        options.skip_agent_checks = true;
    }
    let id = executor
        .start_rotation(mis_declared)
        .await
        .expect("rotation starts")
        .rotation_id;
    let status = wait_for(&executor, &id, &[S::Succeeded, S::Paused, S::Failed]).await;
    std::fs::remove_file(mesh.hold.join("on")).expect("hold off");
    let traffic = traffic.stop().await;
    let (requests, failed) = traffic.totals();
    let failed_links: BTreeSet<(String, String)> = traffic
        .failed_links()
        .into_iter()
        .map(|(c, s, ..)| (c, s))
        .collect();
    println!(
        "negative control: {requests} requests, {failed} failed, on {} links {failed_links:?}; \
         the verifier names {} links for this run {named:?} ({} for the plan's partial order)\n{}",
        failed_links.len(),
        named.len(),
        anywhere.len(),
        traffic.describe()
    );
    assert_eq!(status.state, S::Succeeded as i32, "{status:?}");
    assert!(failed > 0, "the multi-identity plan broke no request");
    assert_eq!(
        failed_links, named,
        "requests failed on other links than the verifier names"
    );
    // ...and they failed on certificates (nginx answers 400 to a client certificate
    // it cannot verify), not for want of a server.
    for (client, server, _, errors) in traffic.failed_links() {
        for e in errors {
            assert!(
                e.contains("returned error: 400") || e.contains("SSL certificate problem"),
                "{client} -> {server}: {e}"
            );
        }
    }
    executor.shutdown();
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_reload_pauses_the_rotation_and_rollback_restores_the_old_root() {
    let Some(programs) = nginx::programs("workloads reload failure") else {
        return;
    };
    let _one = ONE_MESH.lock().await;
    let mesh = Mesh::start(&programs).await;
    let executor = mesh.executor();
    let topology = mesh.topology(true);
    let old = mesh.old.fingerprint();
    let first_leaves: Vec<Vec<String>> = SERVERS
        .iter()
        .chain(&CLIENTS)
        .map(|id| certs(&mesh.exported(id, CERT_FILE)))
        .collect();
    let id = executor
        .start_rotation(request(&topology, None, v1::Strategy::Waves, true))
        .await
        .expect("rotation starts")
        .rotation_id;
    // Once some steps are done, every reload exits 1.
    loop {
        let s = executor.get_rotation(&id, false).expect("status");
        assert_ne!(
            s.state,
            S::Succeeded as i32,
            "finished before the reloads failed"
        );
        if s.steps_done >= 6 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    std::fs::write(&mesh.fail_flag, "").unwrap();
    let paused = wait_for(&executor, &id, &[S::Paused, S::Failed, S::Succeeded]).await;
    assert_eq!(paused.state, S::Paused as i32, "{paused:?}");
    let reason = paused.paused_reason.clone().unwrap_or_default();
    println!("paused: {reason}");
    assert!(reason.contains("exited with status 1"), "{reason}");
    assert!(reason.contains("reload refused: the test made"), "{reason}");
    let some_new = SERVERS
        .iter()
        .chain(&CLIENTS)
        .any(|id| certs(&mesh.exported(id, TRUST_CLIENTS_FILE)).len() == 2);
    assert!(some_new, "steps were applied before the failure");

    std::fs::remove_file(&mesh.fail_flag).unwrap();
    executor
        .control(&id, Control::Rollback("reload failed".into()))
        .await
        .expect("rollback");
    let done = wait_for(&executor, &id, &[S::RolledBack, S::Paused, S::Failed]).await;
    assert_eq!(done.state, S::RolledBack as i32, "{done:?}");
    for (id, first) in SERVERS.iter().chain(&CLIENTS).zip(&first_leaves) {
        assert_eq!(
            certs(&mesh.exported(id, TRUST_CLIENTS_FILE)),
            vec![old.clone()],
            "{id}"
        );
        assert_eq!(
            certs(&mesh.exported(id, TRUST_SERVERS_FILE)),
            vec![old.clone()],
            "{id}"
        );
        assert_eq!(&certs(&mesh.exported(id, CERT_FILE)), first, "{id}");
        let state = mesh.agents[*id].state();
        assert_eq!(state.server_roots, vec![old.clone()], "{id}");
    }
    // nginx serves the old generation again: every link carries traffic.
    let traffic = Traffic::start(&programs, mesh.routes());
    traffic.until_each_ok(2).await;
    let traffic = traffic.stop().await;
    assert!(traffic.failed_links().is_empty(), "{}", traffic.describe());
    executor.shutdown();
    mesh.stop().await;
}
