//! The Executor's contract (issue 9, items 4 and 5), over real gRPC servers on
//! 127.0.0.1:
//!
//! * roles: with mTLS, an operator may call every Executor method, a reader only
//!   GetRotation, ListRotations and WatchRotation, and a stranger (valid certificate,
//!   not named) nothing; every refusal is PERMISSION_DENIED naming the caller. An mTLS
//!   executor with nobody named refuses to serve;
//! * StartRotation with a `request_id`: a retry returns the same rotation, also after
//!   the executor restarts on the same journal; the same id with another request and
//!   a malformed id are INVALID_ARGUMENT;
//! * ListRotations pages (`page_size`, `page_token`) newest first without repeats,
//!   and refuses a negative size and a forged token naming the field;
//! * a 10 KB id is answered with its code (INVALID_ARGUMENT / NOT_FOUND) and a short
//!   message, never RESOURCE_EXHAUSTED; bytes that are not a message are
//!   INVALID_ARGUMENT.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rollover_executor::{Access, Executor, ExecutorConfig, ServeOptions};
use rollover_integration_tests::{Server, bounded, creds, quick_retry, root, start_planner};
use rollover_pki::{LiveCredentials, RootCa};
use rollover_proto::v1;
use rollover_proto::v1::executor_service_client::ExecutorServiceClient;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Code, Status};

const LIMIT: Duration = Duration::from_secs(30);

/// Two nodes whose agents are not there: a rotation of them is accepted, then fails.
const FLEET: &str = "\
ca: corp
nodes:
  - {id: a, mode: bundle, address: \"127.0.0.1:9\"}
  - {id: b, mode: atomic, address: \"127.0.0.1:9\"}
links:
  - {client: a, server: b}
";

fn start_request(request_id: &str, max_concurrency: u32) -> v1::StartRotationRequest {
    v1::StartRotationRequest {
        topology: Some(v1::TopologySource {
            source: Some(v1::topology_source::Source::Document(v1::Document {
                text: FLEET.into(),
                format: v1::DocumentFormat::Yaml as i32,
                origin: "fleet.yaml".into(),
            })),
        }),
        plan: None,
        options: Some(v1::RotationOptions {
            max_concurrency,
            ..Default::default()
        }),
        request_id: request_id.into(),
    }
}

fn config(dir: &Path, planner: &Server) -> ExecutorConfig {
    let mut config = ExecutorConfig::new(dir)
        .planner_url(&planner.addr)
        .expect("planner url");
    config.retry = quick_retry();
    config
}

/// The executor served on 127.0.0.1 port 0 with `options`; the stop sender ends it.
async fn serve(
    executor: Executor,
    options: ServeOptions,
) -> (
    String,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), String>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        rollover_executor::serve(listener, executor, options, async {
            let _ = stopped.await;
        })
        .await
        .map_err(|e| e.to_string())
    });
    (addr, stop, task)
}

fn plain_client(addr: &str) -> ExecutorServiceClient<Channel> {
    ExecutorServiceClient::new(rollover_transport::plain_channel(addr).expect("channel"))
}

// ---------------------------------------------------------------------------------
// Roles

/// Every Executor method called as `caller` on `rotation_id`: (method, result).
async fn every_method(
    addr: &str,
    caller: &Arc<LiveCredentials>,
    rotation_id: &str,
) -> Vec<(&'static str, Result<(), Status>)> {
    let client = || {
        ExecutorServiceClient::new(
            rollover_transport::tls_channel(addr, caller.clone(), "executor-api").expect("channel"),
        )
    };
    let id = || rotation_id.to_string();
    let watch = async {
        let mut stream = client()
            .watch_rotation(v1::WatchRotationRequest {
                rotation_id: id(),
                from_sequence: 0,
            })
            .await?
            .into_inner();
        // The first event proves the stream is served.
        stream.next().await.transpose()?;
        Ok(())
    };
    vec![
        (
            "StartRotation",
            client()
                .start_rotation(start_request("", 0))
                .await
                .map(drop),
        ),
        ("WatchRotation", watch.await),
        (
            "GetRotation",
            client()
                .get_rotation(v1::GetRotationRequest {
                    rotation_id: id(),
                    include_plan: true,
                })
                .await
                .map(drop),
        ),
        (
            "ListRotations",
            client()
                .list_rotations(v1::ListRotationsRequest::default())
                .await
                .map(drop),
        ),
        (
            "Pause",
            client()
                .pause(v1::PauseRequest {
                    rotation_id: id(),
                    reason: "test".into(),
                })
                .await
                .map(drop),
        ),
        (
            "Resume",
            client()
                .resume(v1::ResumeRequest { rotation_id: id() })
                .await
                .map(drop),
        ),
        (
            "Abort",
            client()
                .abort(v1::AbortRequest {
                    rotation_id: id(),
                    reason: "test".into(),
                })
                .await
                .map(drop),
        ),
        (
            "Rollback",
            client()
                .rollback(v1::RollbackRequest {
                    rotation_id: id(),
                    reason: "test".into(),
                })
                .await
                .map(drop),
        ),
        (
            "CheckFleet",
            client()
                .check_fleet(v1::CheckFleetRequest {
                    topology: start_request("", 0).topology,
                })
                .await
                .map(drop),
        ),
    ]
}

const READS: [&str; 4] = [
    "WatchRotation",
    "GetRotation",
    "ListRotations",
    "CheckFleet",
];

#[test]
fn operators_steer_readers_read_strangers_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let ops_ca: RootCa = root("ops", 1);
        let planner = start_planner().await;
        let executor = Executor::open(config(tmp.path(), &planner)).expect("executor");
        // A rotation to read and steer (it fails: its agents are not there).
        let rotation_id = executor
            .start_rotation(start_request("", 0))
            .await
            .expect("start")
            .rotation_id;
        let options = ServeOptions {
            tls: Some(creds("executor-api", &ops_ca)),
            access: Access::roles(["alice"], ["dashboard"]),
            ..Default::default()
        };
        let (addr, stop, task) = serve(executor.clone(), options).await;

        let mut matrix = Vec::new();
        for caller in ["alice", "dashboard", "mallory"] {
            let results = bounded(
                "every method",
                LIMIT,
                every_method(&addr, &creds(caller, &ops_ca), &rotation_id),
            )
            .await;
            assert_eq!(results.len(), 9, "every Executor method is called");
            for (method, result) in results {
                let allowed = match caller {
                    "alice" => true,
                    "dashboard" => READS.contains(&method),
                    _ => false,
                };
                let code = result.as_ref().err().map_or(Code::Ok, Status::code);
                matrix.push(format!("{caller:<9} {method:<13} {code:?}"));
                if allowed {
                    assert_ne!(
                        code,
                        Code::PermissionDenied,
                        "{caller} may call {method}: {result:?}"
                    );
                } else {
                    let status = result.expect_err("refused");
                    assert_eq!(status.code(), Code::PermissionDenied, "{caller} {method}");
                    assert!(
                        status.message().contains(&format!("`{caller}`"))
                            && status.message().contains(method),
                        "{caller} {method}: the refusal names the caller and method: {status:?}"
                    );
                }
            }
        }
        println!("role matrix (caller, method, code):\n{}", matrix.join("\n"));
        let _ = stop.send(());
        bounded("executor stops", LIMIT, task)
            .await
            .unwrap()
            .unwrap();
        executor.shutdown();

        // Nobody named: an mTLS executor does not serve at all.
        let options = ServeOptions {
            tls: Some(creds("executor-api", &ops_ca)),
            ..Default::default()
        };
        let (_addr, _stop, task) = serve(executor.clone(), options).await;
        let refused = bounded("refused", LIMIT, task).await.unwrap().unwrap_err();
        assert!(refused.contains("--operators"), "{refused}");
        planner.stop().await;
    });
}

// ---------------------------------------------------------------------------------
// request_id, paging, long input, undecodable bytes

#[test]
fn request_id_deduplicates_across_restarts_and_list_pages() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let planner = start_planner().await;
        let executor = Executor::open(config(tmp.path(), &planner)).expect("executor");
        let (addr, stop, task) = serve(executor.clone(), ServeOptions::default()).await;
        let mut client = plain_client(&addr);

        let first = client
            .start_rotation(start_request("deploy-42", 0))
            .await
            .expect("start")
            .into_inner();
        assert!(!first.deduplicated);
        let again = client
            .start_rotation(start_request("deploy-42", 0))
            .await
            .expect("retry")
            .into_inner();
        assert_eq!(
            again.rotation_id, first.rotation_id,
            "a retry is the same rotation"
        );
        assert!(again.deduplicated);
        assert_eq!(again.plan, first.plan);

        let other = client
            .start_rotation(start_request("deploy-42", 3))
            .await
            .expect_err("same id, another request");
        assert_eq!(other.code(), Code::InvalidArgument, "{other:?}");
        assert!(other.message().starts_with("request_id:"), "{other:?}");

        let long = "x".repeat(10 * 1024);
        let refused = client
            .start_rotation(start_request(&long, 0))
            .await
            .expect_err("a 10 KB request_id");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().starts_with("request_id:"), "{refused:?}");
        assert!(refused.message().len() < 300, "{}", refused.message().len());
        let missing = client
            .get_rotation(v1::GetRotationRequest {
                rotation_id: long.clone(),
                include_plan: false,
            })
            .await
            .expect_err("a 10 KB rotation id");
        assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
        assert!(missing.message().starts_with("rotation_id:"), "{missing:?}");
        assert!(missing.message().len() < 300, "{}", missing.message().len());

        // Four more rotations, each after the one before has ended (one active rotation
        // per CA); pages of two, newest first, no repeats.
        let mut last = first.rotation_id.clone();
        for _ in 0..4 {
            bounded(
                "the previous rotation ends",
                LIMIT,
                ended(&mut client, &last),
            )
            .await;
            last = client
                .start_rotation(start_request("", 0))
                .await
                .expect("start")
                .into_inner()
                .rotation_id;
            // Creation times are in milliseconds: keep them apart.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let all: Vec<String> = client
            .list_rotations(v1::ListRotationsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .rotations
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(all.len(), 5);
        let (mut paged, mut token, mut pages) = (Vec::new(), String::new(), 0);
        loop {
            let page = client
                .list_rotations(v1::ListRotationsRequest {
                    active_only: false,
                    page_size: 2,
                    page_token: token.clone(),
                })
                .await
                .expect("page")
                .into_inner();
            pages += 1;
            assert!(page.rotations.len() <= 2);
            paged.extend(page.rotations.into_iter().map(|r| r.id));
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
            assert!(pages < 10, "paging never ends");
        }
        assert_eq!(pages, 3);
        assert_eq!(paged, all, "pages list every rotation once, newest first");
        for (request, field) in [
            (
                v1::ListRotationsRequest {
                    page_size: -1,
                    ..Default::default()
                },
                "page_size:",
            ),
            (
                v1::ListRotationsRequest {
                    page_token: "not-a-token".into(),
                    ..Default::default()
                },
                "page_token:",
            ),
        ] {
            let status = client.list_rotations(request).await.expect_err("refused");
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            assert!(status.message().starts_with(field), "{status:?}");
        }

        // Bytes that are not a GetRotationRequest.
        let status = raw_call(
            rollover_transport::plain_channel(&addr).unwrap(),
            "/rollover.v1.ExecutorService/GetRotation",
            vec![0x0f, 0xff, 0xff, 0xff],
        )
        .await
        .expect_err("garbage");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

        // Restart on the same journal: the retry still finds the rotation.
        let _ = stop.send(());
        bounded("executor stops", LIMIT, task)
            .await
            .unwrap()
            .unwrap();
        executor.shutdown();
        drop(executor);
        let executor = Executor::open(config(tmp.path(), &planner)).expect("reopen");
        let after = executor
            .start_rotation(start_request("deploy-42", 0))
            .await
            .expect("retry after restart");
        assert_eq!(after.rotation_id, first.rotation_id);
        assert!(after.deduplicated);
        executor.shutdown();
        planner.stop().await;
    });
}

/// Waits until rotation `id` is in a terminal state (the fleet's agents are unreachable,
/// so with quick retries it fails soon).
async fn ended(client: &mut ExecutorServiceClient<Channel>, id: &str) {
    loop {
        let status = client
            .get_rotation(v1::GetRotationRequest {
                rotation_id: id.into(),
                include_plan: false,
            })
            .await
            .expect("status")
            .into_inner()
            .rotation
            .expect("rotation");
        if v1::RotationState::is_terminal_value(status.state) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `body` as the request of `path` without encoding anything.
async fn raw_call(channel: Channel, path: &'static str, body: Vec<u8>) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    grpc.unary(
        tonic::Request::new(body),
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(drop)
}

/// A codec that sends bytes as they are and ignores the answer's body.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        use bytes_like::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = ();
    type Error = Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<()>, Status> {
        use bytes_like::Buf;
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

/// `bytes`' Buf traits, through prost (which re-exports the crate).
mod bytes_like {
    pub use prost::bytes::{Buf, BufMut};
}
