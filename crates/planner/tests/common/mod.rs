//! A planner served on 127.0.0.1:0 for one test, and request builders.

#![allow(dead_code)]

use std::net::SocketAddr;

use rollover_proto::v1;
use rollover_proto::v1::planner_service_client::PlannerServiceClient;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A running planner; dropped or [`Served::stop`]ped at the end of the test.
pub struct Served {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), rollover_planner::ServeError>>>,
}

impl Served {
    /// Serve on a fresh loopback port.
    pub async fn start() -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(rollover_planner::serve(listener, async move {
            let _ = stopped.await;
        }));
        Served {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("connects to the planner")
    }

    pub async fn client(&self) -> PlannerServiceClient<Channel> {
        PlannerServiceClient::new(self.channel().await)
    }

    /// Shut down and wait for the server to finish cleanly.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().expect("planner served cleanly");
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub const MIXED: &str = include_str!("../../../../examples/mixed.yaml");
pub const RING: &str = include_str!("../../../../examples/ring.yaml");
pub const BAD: &str = include_str!("../../../../examples/bad.yaml");
pub const CLAIM_UNSAFE: &str = include_str!("../../../../examples/claim-unsafe.yaml");

pub fn document(origin: &str, text: &str) -> v1::Document {
    v1::Document {
        text: text.to_string(),
        format: v1::DocumentFormat::Unspecified as i32,
        origin: origin.to_string(),
    }
}

pub fn topology_doc(origin: &str, text: &str) -> Option<v1::TopologySource> {
    Some(v1::TopologySource {
        source: Some(v1::topology_source::Source::Document(document(
            origin, text,
        ))),
    })
}

pub fn topology_msg(topology: v1::Topology) -> Option<v1::TopologySource> {
    Some(v1::TopologySource {
        source: Some(v1::topology_source::Source::Topology(topology)),
    })
}

pub fn plan_msg(plan: v1::Plan) -> Option<v1::PlanSource> {
    Some(v1::PlanSource {
        source: Some(v1::plan_source::Source::Plan(plan)),
    })
}

pub fn plan_doc(origin: &str, text: &str) -> Option<v1::PlanSource> {
    Some(v1::PlanSource {
        source: Some(v1::plan_source::Source::Document(document(origin, text))),
    })
}

pub fn plan_request(
    topology: Option<v1::TopologySource>,
    strategy: v1::Strategy,
    start: Option<&str>,
) -> v1::PlanRequest {
    v1::PlanRequest {
        topology,
        strategy: strategy as i32,
        start_node: start.map(str::to_string),
    }
}
