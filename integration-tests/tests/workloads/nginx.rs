//! Real nginx servers for the workload tests: finding the programs (or skipping
//! loudly, or failing under CI), one nginx per server node in its own prefix,
//! serving mTLS on 127.0.0.1 from its agent's exported files, and the reload
//! command its agent runs.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rollover_agent::export::{CERT_FILE, KEY_FILE, TRUST_CLIENTS_FILE, TRUST_SERVERS_FILE};

/// The external programs the tests drive.
#[derive(Debug, Clone)]
pub struct Programs {
    pub nginx: PathBuf,
    pub curl: PathBuf,
    pub flock: PathBuf,
}

/// The programs, or `None` after a loud notice when one is missing locally.
/// Under `CI=true` a missing program fails the test instead.
pub fn programs(test: &str) -> Option<Programs> {
    let found = (find("nginx"), find("curl"), find("flock"));
    if let (Some(nginx), Some(curl), Some(flock)) = found.clone() {
        return Some(Programs { nginx, curl, flock });
    }
    let missing: Vec<&str> = [
        ("nginx", found.0.is_none()),
        ("curl", found.1.is_none()),
        ("flock", found.2.is_none()),
    ]
    .into_iter()
    .filter(|(_, gone)| *gone)
    .map(|(name, _)| name)
    .collect();
    let message = format!(
        "{test}: {} not installed (install with .ci/setup-nginx.sh as root, or \
         `apt-get install -y nginx curl`)",
        missing.join(", ")
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{message}; CI=true, so this is a failure, not a skip");
    }
    eprintln!(
        "\n**************** SKIPPED ****************\n{message}\n*****************************************\n"
    );
    None
}

/// `name` on `PATH` or in the sbin directories (nginx lives in /usr/sbin, which a
/// non-root `PATH` often lacks).
fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A free port on 127.0.0.1 (bound, then released for nginx to take).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// What one nginx serves.
#[derive(Debug, Clone)]
pub struct Site {
    /// The node id, answered as the body of every request.
    pub id: String,
    /// The node's DNS name (its certificate's SAN).
    pub dns_name: String,
    /// Where it serves mTLS.
    pub port: u16,
    /// Its agent's export directory.
    pub export: PathBuf,
    /// As a client: a plain-HTTP port whose requests it proxies over mTLS to
    /// another nginx (port, DNS name), with the same exported identity.
    pub proxy: Option<(u16, u16, String)>,
}

/// One running nginx (master and worker), stopped when dropped.
pub struct Nginx {
    pub site: Site,
    prefix: PathBuf,
    conf: PathBuf,
    bin: PathBuf,
    child: Option<Child>,
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The nginx configuration of `site`, everything under `prefix`.
pub fn config(site: &Site, prefix: &Path) -> String {
    let p = prefix.display();
    let e = |file: &str| site.export.join(file).display().to_string();
    // As root, nginx's workers drop to an unprivileged user (the master reads the
    // exported files, key.pem 0600, before they start); `nobody`'s group is named
    // differently across distributions (nogroup on Debian), so ask for it.
    let user = if running_as_root() {
        let group = Command::new("id")
            .args(["-gn", "nobody"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| "nogroup".into());
        format!("user nobody {group};\n")
    } else {
        String::new()
    };
    let mut http = format!(
        "    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {name};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {trust_clients};
        ssl_verify_client on;
        ssl_verify_depth 2;
        ssl_session_cache off;
        ssl_session_tickets off;
        location / {{ return 200 \"{id}\\n\"; }}
    }}
",
        port = site.port,
        name = site.dns_name,
        cert = e(CERT_FILE),
        key = e(KEY_FILE),
        trust_clients = e(TRUST_CLIENTS_FILE),
        id = site.id,
    );
    if let Some((plain, upstream, upstream_name)) = &site.proxy {
        http.push_str(&format!(
            "    server {{
        listen 127.0.0.1:{plain};
        location / {{
            proxy_pass https://127.0.0.1:{upstream};
            proxy_ssl_certificate {cert};
            proxy_ssl_certificate_key {key};
            proxy_ssl_trusted_certificate {trust_servers};
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 2;
            proxy_ssl_name {upstream_name};
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse off;
        }}
    }}
",
            cert = e(CERT_FILE),
            key = e(KEY_FILE),
            trust_servers = e(TRUST_SERVERS_FILE),
        ));
    }
    format!(
        "{user}worker_processes 1;
daemon off;
pid {p}/nginx.pid;
error_log {p}/error.log notice;
events {{ worker_connections 512; }}
http {{
    # The status and user agent of every request: rollover's probes send none, so
    # the test can tell that they reached nginx.
    log_format probes '$status $http_user_agent';
    access_log {p}/access.log probes;
    client_body_temp_path {p}/tmp/body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
{http}}}
"
    )
}

/// The reload command of an nginx node: refuse while `fail_flag` exists (the test's
/// way to make a reload fail), check the new files (`nginx -t`, whose error is the
/// stderr a failed step shows), signal the master, then wait until the workers that
/// served the previous files have exited, so that when the step is reported done
/// every connection nginx makes or accepts uses the new files.
pub fn reload_script(
    bin: &Path,
    prefix: &Path,
    conf: &Path,
    fail_flag: &Path,
    hold: &Path,
) -> String {
    let script = format!(
        r#"#!/bin/sh
set -e
if [ -e '{flag}' ]; then echo "nginx reload refused: the test made {flag}" >&2; exit 1; fi
master=$(cat '{prefix}/nginx.pid')
old=$(grep -l "^PPid:[[:space:]]*$master\$" /proc/[0-9]*/status 2>/dev/null | cut -d/ -f3 || true)
'{bin}' -t -q -p '{prefix}' -c '{conf}'
'{bin}' -p '{prefix}' -c '{conf}' -s reload
for pid in $old; do
    while [ -e "/proc/$pid" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; do
        sleep 0.01
    done
done
"#,
        flag = fail_flag.display(),
        prefix = prefix.display(),
        bin = bin.display(),
        conf = conf.display(),
    );
    script + &super::traffic::hold_snippet(hold)
}

impl Nginx {
    /// The prefix directories and the reload script of an nginx in `prefix`, made
    /// before its agent starts (the agent runs the script at start; it fails then,
    /// nginx not running yet, which the agent only logs).
    pub fn prepare(bin: &Path, prefix: &Path, fail_flag: &Path, hold: &Path) -> PathBuf {
        for sub in ["tmp", "logs"] {
            std::fs::create_dir_all(prefix.join(sub)).expect("nginx prefix");
        }
        let conf = prefix.join("nginx.conf");
        let script = prefix.join("reload.sh");
        std::fs::write(&script, reload_script(bin, prefix, &conf, fail_flag, hold))
            .expect("reload.sh");
        script
    }

    /// Starts nginx on `site` in `prefix` and waits until it listens; `None` when
    /// one of its ports was taken since [`free_port`] released it (the caller picks
    /// others).
    pub fn start(bin: &Path, site: Site, prefix: &Path) -> Option<Nginx> {
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, config(&site, prefix)).expect("nginx.conf");
        let pid_file = prefix.join("nginx.pid");
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(prefix.join("error.log"));
        let stderr = std::fs::File::create(prefix.join("stderr.log")).expect("stderr.log");
        let child = Command::new(bin)
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("nginx starts");
        let mut nginx = Nginx {
            site,
            prefix: prefix.to_path_buf(),
            conf,
            bin: bin.to_path_buf(),
            child: Some(child),
        };
        let mut ports = vec![nginx.site.port];
        ports.extend(nginx.site.proxy.as_ref().map(|p| p.0));
        let deadline = Instant::now() + Duration::from_secs(20);
        // nginx writes its pid file once every listening socket is bound: only then
        // is whatever answers on the ports this nginx.
        while !pid_file.exists()
            || ports
                .iter()
                .any(|p| TcpStream::connect(("127.0.0.1", *p)).is_err())
        {
            let log = nginx.error_log();
            if log.contains("Address already in use") {
                if let Some(mut child) = nginx.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return None;
            }
            if let Some(status) = nginx
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "nginx {} exited ({status}) before listening: {log}",
                    nginx.site.id
                );
            }
            assert!(
                Instant::now() < deadline,
                "nginx {} not listening on {ports:?}: {log}",
                nginx.site.id
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(nginx)
    }

    /// Requests answered 200 that sent no user agent: the agents' probes (curl
    /// always sends one).
    pub fn probes_answered(&self) -> usize {
        std::fs::read_to_string(self.prefix.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == "200 -")
            .count()
    }

    /// The error log so far (for failure messages).
    pub fn error_log(&self) -> String {
        ["stderr.log", "error.log"]
            .map(|f| std::fs::read_to_string(self.prefix.join(f)).unwrap_or_default())
            .concat()
    }

    /// Stops nginx (fast shutdown of master and workers) and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new(&self.bin)
            .arg("-p")
            .arg(&self.prefix)
            .arg("-c")
            .arg(&self.conf)
            .args(["-s", "stop"])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}
