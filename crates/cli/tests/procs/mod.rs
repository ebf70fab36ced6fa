//! Running the built `rollover` binary as separate processes (services, agents, one-shot
//! commands) on loopback, for the tests that go across processes.

#![allow(dead_code)]

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rollover");

/// Children that are killed (and reaped) when dropped; their logs are shown if the
/// test is failing.
pub struct Children {
    logs: PathBuf,
    pub running: Vec<(String, Child)>,
}

impl Children {
    pub fn new(logs: &Path) -> Children {
        Children {
            logs: logs.to_path_buf(),
            running: Vec::new(),
        }
    }

    /// Start `rollover ARGS` as `name`, its output going to `<logs>/<name>.log`.
    pub fn spawn(&mut self, name: &str, args: &[String]) -> &mut Child {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{name}.log")))
            .unwrap();
        let child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("the rollover binary starts");
        self.running.push((name.to_string(), child));
        &mut self.running.last_mut().unwrap().1
    }

    pub fn get(&mut self, name: &str) -> &mut Child {
        &mut self
            .running
            .iter_mut()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no child {name}"))
            .1
    }

    pub fn log(&self, name: &str) -> String {
        read_log(&self.logs, name)
    }

    /// Wait until `name` accepts TCP connections on `addr`; an error if it exits
    /// first or takes too long.
    pub fn wait_listening(&mut self, name: &str, addr: SocketAddr) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.get(name).try_wait().unwrap() {
                return Err(format!("{name} exited ({status}): {}", self.log(name)));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{name} does not listen on {addr}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop `name` with SIGTERM and wait for it to exit.
    pub fn terminate(&mut self, name: &str) -> std::process::ExitStatus {
        let index = self.running.iter().position(|(n, _)| n == name).unwrap();
        let (_, mut child) = self.running.remove(index);
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{name} did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.running {
            let _ = child.kill();
        }
        let panicking = std::thread::panicking();
        for (name, child) in &mut self.running {
            let _ = child.wait();
            if panicking {
                eprintln!("----- {name} -----\n{}", read_log(&self.logs, name));
            }
        }
    }
}

/// A `rollover` command running in the background, its output read line by line.
pub struct Background {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Background {
    pub fn start(args: &[String]) -> Background {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
            s
        });
        Background {
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// The next line that `want` accepts (every line read is kept).
    pub fn until(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no line {what}; so far:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Wait for the end: exit code, every stdout line, stderr.
    pub fn finish(mut self) -> (i32, String, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("did not finish:\n{}", self.seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let rest: Vec<String> = self.lines.iter().collect();
        self.seen.extend(rest);
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default();
        (status.code().unwrap_or(-1), self.seen.join("\n"), stderr)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn read_log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

/// `n` distinct free loopback ports (bound together, then released), none handed out
/// before in this process: tests of one binary run at once, and a port one test was
/// given and released must not be given to another whose server could then take it
/// first (or answer the first test's readiness probe).
pub fn free_ports(n: usize) -> Vec<u16> {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if given.insert(port) {
            ports.push(port);
        }
        // Kept bound until every port is picked, so the kernel hands out others.
        held.push(listener);
    }
    ports
}

/// Run `rollover ARGS` to its end (at most `limit`), capturing its output.
pub fn run(args: &[String], limit: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "rollover {args:?} did not finish in {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The nodes of the fleet: id and mode.
pub const NODES: [(&str, &str); 4] = [
    ("gw", "bundle"),
    ("historian", "bundle"),
    ("plc-1", "atomic"),
    ("meter-7", "atomic"),
];

/// Steps of a rotation of [`NODES`] plus `@executor` (bundle: 3, atomic: 2).
pub const STEPS: usize = 2 * 3 + 2 * 2 + 3;

pub struct Fleet {
    pub children: Children,
    pub executor_url: String,
    pub executor_args: Vec<String>,
    pub topology: PathBuf,
    /// How each agent was started (to start it again).
    pub agent_args: Vec<(String, Vec<String>, SocketAddr)>,
}

/// Start the planner, the executor and the agents on fresh ports under `dir`.
pub fn start_fleet(dir: &Path, root: &Path) -> Result<Fleet, String> {
    std::fs::create_dir_all(dir).unwrap();
    let ports = free_ports(2 + 2 * NODES.len());
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let mut children = Children::new(dir);

    let planner = addr(0);
    children.spawn(
        "planner",
        &strings(&["serve", "planner", "--listen", &planner]),
    );
    children.wait_listening("planner", planner.parse().unwrap())?;

    let executor = addr(1);
    let executor_args = strings(&[
        "serve",
        "executor",
        "--listen",
        &executor,
        "--planner",
        &planner,
        "--state",
        dir.join("executor").to_str().unwrap(),
        "--bootstrap-ca",
        root.to_str().unwrap(),
    ]);
    children.spawn("executor", &executor_args);

    let mut topology = String::from("ca: demo-root\ncontrol: {ca: demo-root}\nnodes:\n");
    let mut agent_args = Vec::new();
    for (i, (id, mode)) in NODES.iter().enumerate() {
        let (control, data) = (addr(2 + 2 * i), addr(3 + 2 * i));
        let args = strings(&[
            "agent",
            "--id",
            id,
            "--mode",
            mode,
            "--listen",
            &control,
            "--data-listen",
            &data,
            "--state",
            dir.join(id).to_str().unwrap(),
            "--bootstrap-ca",
            root.to_str().unwrap(),
        ]);
        children.spawn(id, &args);
        agent_args.push((id.to_string(), args, control.parse().unwrap()));
        topology.push_str(&format!(
            "  - {{id: {id}, mode: {mode}, address: \"{control}\"}}\n"
        ));
    }
    topology.push_str(
        "links:\n\
         \x20 - {client: gw, server: plc-1}\n\
         \x20 - {client: gw, server: historian}\n\
         \x20 - {client: meter-7, server: historian}\n\
         \x20 - {client: plc-1, server: meter-7}\n\
         \x20 - {client: historian, server: erp, ca: corp-ca}\n",
    );
    let topology_path = dir.join("fleet.yaml");
    std::fs::write(&topology_path, topology).unwrap();

    children.wait_listening("executor", executor.parse().unwrap())?;
    for (i, (id, _)) in NODES.iter().enumerate() {
        children.wait_listening(id, addr(2 + 2 * i).parse().unwrap())?;
        children.wait_listening(id, addr(3 + 2 * i).parse().unwrap())?;
    }
    Ok(Fleet {
        children,
        executor_url: executor,
        executor_args,
        topology: topology_path,
        agent_args,
    })
}

impl Fleet {
    /// Kill agent `id` (SIGKILL): it stops answering at once.
    pub fn kill(&mut self, id: &str) {
        let child = self.children.get(id);
        let _ = child.kill();
        let _ = child.wait();
        self.children.running.retain(|(n, _)| n != id);
    }

    /// Start agent `id` with `extra` arguments from its next [`Fleet::restart`] on.
    #[allow(dead_code)]
    pub fn add_agent_args(&mut self, id: &str, extra: &[&str]) {
        let (_, args, _) = self
            .agent_args
            .iter_mut()
            .find(|(n, ..)| n == id)
            .unwrap_or_else(|| panic!("no agent {id}"));
        args.extend(strings(extra));
    }

    /// Start agent `id` again on its state directory and ports.
    pub fn restart(&mut self, id: &str) {
        let (_, args, addr) = self
            .agent_args
            .iter()
            .find(|(n, ..)| n == id)
            .cloned()
            .unwrap_or_else(|| panic!("no agent {id}"));
        self.children.spawn(id, &args);
        self.children.wait_listening(id, addr).unwrap();
    }
}

/// Start the fleet under `dir` (a fresh try on a port clash, up to three), with a
/// demo root made there.
pub fn fleet_with_root(dir: &Path) -> (Fleet, PathBuf) {
    let root = dir.join("demo-root.pem");
    let init = run(
        &strings(&[
            "pki",
            "init",
            "--ca",
            "demo-root",
            "--out",
            root.to_str().unwrap(),
        ]),
        Duration::from_secs(10),
    );
    assert!(init.status.success(), "{}", text(&init.stderr));
    let mut errors = Vec::new();
    for attempt in 0..3 {
        match start_fleet(&dir.join(format!("try{attempt}")), &root) {
            Ok(f) => return (f, root),
            Err(e) => errors.push(e),
        }
    }
    panic!("the fleet did not start: {errors:#?}");
}
