//! What one caller may cost a server, measured on a separate `rollover serve planner`
//! process:
//!
//! * six concurrent 200 MB Plan requests (a topology document of 200 MB each) fail at
//!   once from their frame header and the planner's peak resident memory (VmHWM)
//!   stays under 512 MB. The requests are streamed from one static buffer over raw
//!   HTTP/2, so the test itself holds a megabyte, not 1.2 GB;
//! * 500 idle TCP connections are all closed (beyond --max-connections at once, the
//!   rest after --idle-timeout), and the planner still serves afterwards.
//!
//! Figures are printed (`cargo test --release -p rollover-cli --test limits --
//! --nocapture`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_rollover");

/// The planner process, killed when dropped.
struct Planner {
    child: Child,
    addr: String,
}

impl Drop for Planner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a planner on port 0 and reads the address it bound from its first line
/// of stderr, so no other test's server can answer in its place (a port picked
/// beforehand and freed again could be taken by another test's planner meanwhile).
fn start_planner(extra: &[&str]) -> Planner {
    let mut child = Command::new(BIN)
        .args(["serve", "planner", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rollover starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    // Keep draining stderr after the address line so the planner never blocks on a
    // full pipe.
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("planner listening on ")
                && let Some(tx) = tx.take()
            {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("the planner says where it listens");
    Planner { child, addr }
}

/// `VmHWM` (peak resident set) and `VmRSS` of `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> u64 {
    let mut out = Vec::new();
    varint(v, &mut out);
    out.len() as u64
}

/// The gRPC frame header and protobuf prefix of a PlanRequest whose topology is a
/// document of `text_len` bytes (the text itself follows).
fn plan_request_prefix(text_len: u64) -> Vec<u8> {
    // PlanRequest.topology (1) -> TopologySource.document (2) -> Document.text (1).
    let document = 1 + varint_len(text_len) + text_len;
    let source = 1 + varint_len(document) + document;
    let request = 1 + varint_len(source) + source;
    let mut out = vec![0u8];
    out.extend_from_slice(&(request as u32).to_be_bytes());
    out.push(0x0a);
    varint(source, &mut out);
    out.push(0x12);
    varint(document, &mut out);
    out.push(0x0a);
    varint(text_len, &mut out);
    out
}

static CHUNK: [u8; 1 << 20] = [b'a'; 1 << 20];

/// Sends one Plan request of `text_len` bytes of topology over its own HTTP/2
/// connection, streaming the text from [`CHUNK`]; returns the gRPC status code and
/// message, and how many bytes were sent before the answer.
async fn huge_plan(addr: &str, text_len: u64) -> (String, String, u64) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("h2 ready");
    let request = tonic::codegen::http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/rollover.v1.PlannerService/Plan"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).expect("send");
    let sender = tokio::spawn(async move {
        let mut sent = 0u64;
        let mut pending = vec![Bytes::from(plan_request_prefix(text_len))];
        let mut left = text_len;
        loop {
            let chunk = match pending.pop() {
                Some(c) => c,
                None if left == 0 => break,
                None => {
                    let n = left.min(CHUNK.len() as u64) as usize;
                    left -= n as u64;
                    Bytes::from_static(&CHUNK[..n])
                }
            };
            body.reserve_capacity(chunk.len());
            let mut chunk = chunk;
            while !chunk.is_empty() {
                let capacity = match std::future::poll_fn(|cx| body.poll_capacity(cx)).await {
                    Some(Ok(c)) => c,
                    // The server answered and reset the stream: stop sending.
                    _ => return sent,
                };
                let part = chunk.split_to(capacity.min(chunk.len()));
                sent += part.len() as u64;
                let last = chunk.is_empty() && left == 0 && pending.is_empty();
                if body.send_data(part, last).is_err() {
                    return sent;
                }
            }
        }
        sent
    });
    let response = response.await.expect("an answer");
    let header = |map: &tonic::codegen::http::HeaderMap, name: &str| {
        map.get(name).map(|v| v.to_str().unwrap_or("?").to_string())
    };
    let (mut code, mut message) = (
        header(response.headers(), "grpc-status"),
        header(response.headers(), "grpc-message"),
    );
    if code.is_none() {
        let mut body = response.into_body();
        while let Some(data) = body.data().await {
            if data.is_err() {
                break;
            }
        }
        if let Ok(Some(trailers)) = body.trailers().await {
            code = header(&trailers, "grpc-status");
            message = header(&trailers, "grpc-message");
        }
    }
    sender.abort();
    let sent = sender.await.unwrap_or(0);
    (
        code.unwrap_or_else(|| "none".into()),
        message.unwrap_or_default(),
        sent,
    )
}

#[test]
fn six_concurrent_200_mb_plans_keep_the_planner_under_512_mb() {
    let planner = start_planner(&[]);
    let pid = planner.child.id();
    let before = memory_kib(pid);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let results = rt.block_on(async {
        let calls: Vec<_> = (0..6)
            .map(|_| {
                let addr = planner.addr.clone();
                tokio::spawn(async move { huge_plan(&addr, 200 * 1000 * 1000).await })
            })
            .collect();
        let mut results = Vec::new();
        for call in calls {
            results.push(
                tokio::time::timeout(Duration::from_secs(120), call)
                    .await
                    .expect("answered")
                    .unwrap(),
            );
        }
        results
    });
    let (hwm, rss) = memory_kib(pid);
    println!(
        "planner VmHWM before {} KiB; after six concurrent 200 MB Plan calls: VmHWM {hwm} KiB ({} MB), VmRSS {rss} KiB",
        before.0,
        hwm / 1024
    );
    for (code, message, sent) in &results {
        println!("  grpc-status {code} after {sent} bytes sent: {message}");
        // 8 = RESOURCE_EXHAUSTED, 11 = OUT_OF_RANGE (tonic's code for a message over
        // the limit), 3 = INVALID_ARGUMENT.
        assert!(
            ["8", "11", "3"].contains(&code.as_str()),
            "a 200 MB Plan is refused: {code} {message}"
        );
    }
    assert!(hwm < 512 * 1024, "planner peak RSS {hwm} KiB >= 512 MB");
    assert!(
        planner_still_serves(&rt, &planner.addr),
        "the planner serves after the huge requests"
    );
}

fn planner_still_serves(rt: &tokio::runtime::Runtime, addr: &str) -> bool {
    use rollover_proto::v1;
    rt.block_on(async {
        let channel = rollover_transport::plain_channel(addr).unwrap();
        let mut client = v1::planner_service_client::PlannerServiceClient::new(channel);
        client
            .plan(v1::PlanRequest {
                topology: Some(v1::TopologySource {
                    source: Some(v1::topology_source::Source::Document(v1::Document {
                        text: "ca: corp\nlinks:\n  - {client: a, server: b}\n".into(),
                        format: v1::DocumentFormat::Yaml as i32,
                        origin: "small.yaml".into(),
                    })),
                }),
                strategy: v1::Strategy::Waves as i32,
                start_node: None,
            })
            .await
            .is_ok()
    })
}

#[test]
fn five_hundred_idle_connections_are_closed() {
    let planner = start_planner(&["--idle-timeout", "1", "--max-connections", "100"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let began = Instant::now();
    let closed = rt.block_on(async {
        let mut conns = Vec::new();
        for _ in 0..500 {
            conns.push(TcpStream::connect(&planner.addr).await.expect("connect"));
        }
        let waits: Vec<_> = conns
            .into_iter()
            .map(|mut conn| {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    tokio::time::timeout(Duration::from_secs(60), conn.read_to_end(&mut buf))
                        .await
                        .is_ok()
                })
            })
            .collect();
        let mut closed = 0;
        for wait in waits {
            if wait.await.unwrap() {
                closed += 1;
            }
        }
        closed
    });
    println!(
        "500 idle connections to a planner with --idle-timeout 1 --max-connections 100: {closed} closed by the server within {:?}",
        began.elapsed()
    );
    assert_eq!(closed, 500, "every idle connection is closed");
    assert!(planner_still_serves(&rt, &planner.addr));
}
