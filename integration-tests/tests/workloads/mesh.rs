//! The workload mesh: 3 nginx servers (one of them also a client, proxying over
//! mTLS to another) and 4 curl clients, some of several servers; each node a
//! single-identity bundle node with its own in-process agent exporting its
//! credentials and running its reload command; the planner and the executor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rollover_agent::{Agent, AgentConfig, AgentHandle, ControlCreds, Export};
use rollover_core::{Mode, Topology};
use rollover_executor::{Executor, ExecutorConfig, RetryPolicy};
use rollover_integration_tests::{Server, creds, localhost, root, start_planner};
use rollover_pki::{RootCa, Validity, node_dns_name};
use rollover_proto::v1;

use super::nginx::{Nginx, Programs, Site, free_port};
use super::traffic::{Route, Via, client_reload_script};

/// nginx servers; the last one also proxies to the first.
pub const SERVERS: [&str; 3] = ["web-1", "web-2", "web-3"];
/// curl clients.
pub const CLIENTS: [&str; 4] = ["curl-1", "curl-2", "curl-3", "curl-4"];
/// Every link: curl clients of one to three servers, and web-3 -> web-1 (proxy).
pub const LINKS: [(&str, &str); 10] = [
    ("curl-1", "web-1"),
    ("curl-1", "web-2"),
    ("curl-2", "web-2"),
    ("curl-2", "web-3"),
    ("curl-3", "web-3"),
    ("curl-3", "web-1"),
    ("curl-4", "web-1"),
    ("curl-4", "web-2"),
    ("curl-4", "web-3"),
    ("web-3", "web-1"),
];
/// The rotated CA.
pub const CA: &str = "mesh-ca";

/// A running mesh. Dropping it stops nginx, the agents and the planner.
pub struct Mesh {
    pub old: RootCa,
    control_ca: RootCa,
    pub agents: HashMap<String, AgentHandle>,
    pub nginx: Vec<Nginx>,
    ports: HashMap<String, u16>,
    plain_port: u16,
    /// Where a file makes every reload command fail.
    pub fail_flag: PathBuf,
    /// Where `on` makes every reload wait for traffic ([`super::traffic::Traffic::hold_reloads`]).
    pub hold: PathBuf,
    planner: Option<Server>,
    pub dir: tempfile::TempDir,
}

fn node_dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

impl Mesh {
    /// Enrols every node on a fresh root, starts its agent (which exports its files
    /// and runs its reload command), then nginx on the exported files.
    pub async fn start(programs: &Programs) -> Mesh {
        let dir = tempfile::tempdir().expect("temp dir");
        let old = root(CA, 1);
        let control_ca = root("mesh-control", 1);
        let fail_flag = dir.path().join("fail-reloads");
        let hold = dir.path().join("hold");
        std::fs::create_dir_all(&hold).expect("hold dir");
        let mut agents = HashMap::new();
        let mut sites = Vec::new();
        for id in SERVERS.iter().chain(&CLIENTS) {
            let home = node_dir(dir.path(), id);
            let export = home.join("export");
            let is_server = SERVERS.contains(id);
            let script = if is_server {
                let prefix = home.join("nginx");
                let script = Nginx::prepare(&programs.nginx, &prefix, &fail_flag, &hold);
                sites.push((*id, export.clone(), prefix));
                script
            } else {
                std::fs::create_dir_all(&home).expect("node dir");
                let script = home.join("reload.sh");
                std::fs::write(
                    &script,
                    client_reload_script(&programs.flock, &home, &fail_flag, &hold),
                )
                .expect("reload.sh");
                std::fs::write(home.join("lock"), "").expect("lock file");
                script
            };
            let state = home.join("state");
            rollover_agent::bootstrap(&state, id, Mode::Bundle, &old, Validity::default())
                .expect("bootstrap");
            let export = Export {
                dir: export,
                reload: Some(format!("sh '{}'", script.display())),
                reload_timeout: Duration::from_secs(30),
            };
            let agent = Agent::start_with_export(
                AgentConfig {
                    id: id.to_string(),
                    mode: Mode::Bundle,
                    state_dir: state,
                    state_files: None,
                    data_listen: localhost(),
                    control_listen: localhost(),
                    control: ControlCreds::Separate(creds(id, &control_ca)),
                    limits: rollover_agent::DEFAULT_LIMITS,
                    chains: true,
                },
                Some(export),
            )
            .await
            .expect("agent starts");
            agents.insert(id.to_string(), agent);
        }
        // Ports are picked just before each nginx starts (web-1 before web-3, which
        // proxies to it), and picked again if one was taken meanwhile.
        let (mut ports, mut plain_port, mut nginx) = (HashMap::new(), 0, Vec::new());
        for (id, export, prefix) in sites {
            let started = (0..5)
                .find_map(|_| {
                    let site = Site {
                        id: id.to_string(),
                        dns_name: node_dns_name(id),
                        port: free_port(),
                        export: export.clone(),
                        proxy: (id == "web-3")
                            .then(|| (free_port(), ports["web-1"], node_dns_name("web-1"))),
                    };
                    Nginx::start(&programs.nginx, site, &prefix)
                })
                .expect("nginx finds free ports");
            ports.insert(id.to_string(), started.site.port);
            if let Some((plain, ..)) = started.site.proxy {
                plain_port = plain;
            }
            nginx.push(started);
        }
        Mesh {
            old,
            control_ca,
            agents,
            nginx,
            ports,
            plain_port,
            fail_flag,
            hold,
            planner: Some(start_planner().await),
            dir,
        }
    }

    /// The mesh's topology: every node a single-identity bundle node (`multi`:
    /// as if each could pick its leaf from a server's hints, the negative control),
    /// nginx nodes probed at their own mTLS port.
    pub fn topology(&self, single: bool) -> Topology {
        let mut yaml = format!("ca: {CA}\nnodes:\n");
        for id in SERVERS.iter().chain(&CLIENTS) {
            let address = self.agents[*id].control_addr();
            yaml.push_str(&format!("  - {{id: {id}, address: \"{address}\""));
            if single {
                yaml.push_str(", identity: single");
                if let Some(port) = self.ports.get(*id) {
                    yaml.push_str(&format!(", probe: \"127.0.0.1:{port}\""));
                }
            }
            yaml.push_str("}\n");
        }
        yaml.push_str("links:\n");
        for (c, s) in LINKS {
            yaml.push_str(&format!("  - {{client: {c}, server: {s}}}\n"));
        }
        Topology::parse("mesh.yaml", &yaml).expect("mesh topology")
    }

    /// The traffic routes, one per link.
    pub fn routes(&self) -> Vec<Route> {
        LINKS
            .iter()
            .map(|&(c, s)| Route {
                client: c.into(),
                server: s.into(),
                via: if CLIENTS.contains(&c) {
                    Via::Curl {
                        node_dir: node_dir(self.dir.path(), c),
                        server_dns: node_dns_name(s),
                        port: self.ports[s],
                    }
                } else {
                    Via::Proxy {
                        plain_port: self.plain_port,
                    }
                },
            })
            .collect()
    }

    /// An executor (its own journal under the mesh's directory) using the planner.
    pub fn executor(&self) -> Executor {
        let planner = self.planner.as_ref().expect("planner").addr.clone();
        let mut config = ExecutorConfig::new(self.dir.path().join("executor"))
            .planner_url(&planner)
            .expect("planner url");
        config.own_creds = Some(creds(rollover_agent::EXECUTOR_ID, &self.control_ca));
        config.retry = RetryPolicy {
            initial: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            max_attempts: 4,
        };
        Executor::open(config).expect("executor opens")
    }

    /// An exported file of `id`.
    pub fn exported(&self, id: &str, file: &str) -> PathBuf {
        node_dir(self.dir.path(), id).join("export").join(file)
    }

    /// nginx's mTLS port of server `id`.
    pub fn port(&self, id: &str) -> u16 {
        self.ports[id]
    }

    /// Stops nginx, the agents and the planner.
    pub async fn stop(mut self) {
        for nginx in &mut self.nginx {
            nginx.stop();
        }
        for (_, agent) in self.agents.drain() {
            agent.shutdown().await;
        }
        if let Some(planner) = self.planner.take() {
            planner.stop().await;
        }
    }
}

/// A rotation request for `topology` (planned by the planner unless `plan`).
pub fn request(
    topology: &Topology,
    plan: Option<&rollover_core::Plan>,
    strategy: v1::Strategy,
    probe: bool,
) -> v1::StartRotationRequest {
    v1::StartRotationRequest {
        topology: Some(v1::TopologySource {
            source: Some(v1::topology_source::Source::Topology(v1::Topology::from(
                topology,
            ))),
        }),
        plan: plan.map(|p| v1::PlanSource {
            source: Some(v1::plan_source::Source::Plan(v1::Plan::from(p))),
        }),
        options: Some(v1::RotationOptions {
            max_concurrency: 2,
            probe,
            strategy: strategy.into(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

/// Waits until rotation `id` is in one of `states`.
pub async fn wait_for(
    executor: &Executor,
    id: &str,
    states: &[v1::RotationState],
) -> v1::RotationStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let status = executor.get_rotation(id, false).expect("rotation status");
        if states.iter().any(|s| *s as i32 == status.state) {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "stuck: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
