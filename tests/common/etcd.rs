//! A real etcd for the tests: started on free loopback ports with its data
//! in a temporary directory, stopped when dropped. Plain, or with mutual
//! TLS and certificates made for the occasion.

// Both server fixtures carry it: a bench borrows one of them alone.
#[allow(clippy::duplicate_mod)]
#[path = "outbox_path.rs"]
pub mod outbox_path;

use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use tempfile::TempDir;

pub struct Etcd {
    child: Option<Child>,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
    tls: Option<TlsFiles>,
    flags: Vec<String>,
}

/// The certificates of a TLS etcd, as PEM files in its directory.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Etcd {
    /// A plain etcd; `None` when the binary is missing outside CI (in CI,
    /// where the test script installs it, a missing binary fails the test).
    pub fn start() -> Option<Etcd> {
        Etcd::launch(false, &[])
    }

    /// An etcd that demands TLS and a client certificate signed by its CA.
    pub fn start_tls() -> Option<Etcd> {
        Etcd::launch(true, &[])
    }

    /// A plain etcd with more command-line flags (`--max-txn-ops`, say).
    pub fn start_with(flags: &[&str]) -> Option<Etcd> {
        Etcd::launch(false, flags)
    }

    fn launch(tls: bool, flags: &[&str]) -> Option<Etcd> {
        if !installed() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let tls = tls.then(|| TlsFiles::create(dir.path()));
        let mut etcd = Etcd {
            child: None,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            tls,
            flags: flags.iter().map(|f| f.to_string()).collect(),
        };
        etcd.resume();
        Some(etcd)
    }

    /// `127.0.0.1:PORT`, where clients connect.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The `etcd` section of a configuration for this server, with
    /// `extra` settings (`"timeout": 1`, say) added.
    pub fn section(&self, extra: &str) -> String {
        let mut section = format!(r#""endpoints": ["{}"]"#, self.endpoint());
        if let Some(tls) = &self.tls {
            section += &format!(
                r#", "use_ssl": true, "ca_cert_file": {:?}, "cert_file": {:?}, "key_file": {:?}"#,
                tls.ca, tls.client_cert, tls.client_key
            );
        }
        if !extra.is_empty() {
            section += ", ";
            section += extra;
        }
        format!("{{{section}}}")
    }

    /// A configuration with this etcd as the only backend.
    pub fn config(&self, queue_batch: &str, extra: &str) -> String {
        format!(
            r#"{{"logging": "none", "queue_batch": {}, "etcd": {}}}"#,
            outbox_path::own_outbox(queue_batch),
            self.section(extra)
        )
    }

    /// Stops the server (the data stays), as an outage would.
    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports and data, and waits until
    /// it answers.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "etcd runs already");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://{}", self.endpoint());
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = Command::new("etcd");
        command
            .args(["--name", "test", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("test={peer_url}")])
            .args(["--logger", "zap", "--log-level", "error"])
            .args(&self.flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(tls) = &self.tls {
            command
                .arg("--cert-file")
                .arg(&tls.server_cert)
                .arg("--key-file")
                .arg(&tls.server_key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        self.child = Some(command.spawn().expect("cannot start etcd"));
        let give_up = Instant::now() + Duration::from_secs(60);
        while !self.etcdctl(&["endpoint", "health"]).status.success() {
            assert!(Instant::now() < give_up, "etcd did not become healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs etcdctl (API v3) against this server.
    pub fn etcdctl<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut command = etcdctl(&[format!("{scheme}://{}", self.endpoint())]);
        if let Some(tls) = &self.tls {
            command
                .arg("--cacert")
                .arg(&tls.ca)
                .arg("--cert")
                .arg(&tls.client_cert)
                .arg("--key")
                .arg(&tls.client_key);
        }
        command.args(args).output().expect("cannot run etcdctl")
    }

    /// The value etcdctl prints for `key`, or `None`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        value_of(self.etcdctl(&["get", "--print-value-only", key]))
    }

    /// How many keys start with `prefix`, as etcd counts them.
    pub fn count(&self, prefix: &str) -> usize {
        count_of(self.etcdctl(&count_args(prefix)))
    }

    /// Every key starting with `prefix`, in key order, as etcd stores it:
    /// with its value, its version (puts since it was created) and the
    /// revision of its last put.
    pub fn kvs(&self, prefix: &str) -> Vec<Kv> {
        kvs_of(self.etcdctl(&["get", "--prefix", "-w", "json", prefix]))
    }
}

/// etcdctl's arguments for counting the keys under `prefix`: a range's
/// count is that of every key in it, whatever the limit.
fn count_args(prefix: &str) -> [&str; 7] {
    [
        "get",
        "--prefix",
        "--keys-only",
        "--limit=1",
        "-w",
        "json",
        prefix,
    ]
}

/// etcdctl (API v3) against `endpoints`, URLs with their scheme.
fn etcdctl(endpoints: &[String]) -> Command {
    let mut command = Command::new("etcdctl");
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .arg("--command-timeout=10s");
    command
}

/// The value `etcdctl get --print-value-only` printed, or `None`.
fn value_of(output: Output) -> Option<Vec<u8>> {
    assert!(output.status.success(), "{output:?}");
    let mut value = output.stdout;
    // etcdctl ends the value with a newline; nothing means no key.
    match value.pop() {
        Some(b'\n') => Some(value),
        _ => None,
    }
}

/// The count a `count_args` query printed.
fn count_of(output: Output) -> usize {
    assert!(output.status.success(), "{output:?}");
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    reply["count"].as_u64().unwrap_or(0) as usize
}

/// The keys a `get --prefix -w json` printed.
fn kvs_of(output: Output) -> Vec<Kv> {
    assert!(output.status.success(), "{output:?}");
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let bytes = |field: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(field.as_str().unwrap_or(""))
            .unwrap()
    };
    let number = |field: &serde_json::Value| field.as_u64().unwrap_or(0);
    reply["kvs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|kv| Kv {
            key: String::from_utf8(bytes(&kv["key"])).unwrap(),
            value: bytes(&kv["value"]),
            version: number(&kv["version"]),
            mod_revision: number(&kv["mod_revision"]),
        })
        .collect()
}

/// One key as etcd stores it.
#[derive(Debug)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub version: u64,
    pub mod_revision: u64,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.pause();
    }
}

/// A cluster of three etcd members on loopback, for failover: each on
/// ports of its own with its data in the cluster's temporary directory.
/// Every member still running is stopped when the cluster is dropped.
pub struct Cluster {
    members: Vec<Member>,
    _dir: TempDir,
}

struct Member {
    /// `127.0.0.1:PORT`, where clients connect.
    endpoint: String,
    /// `None` once killed.
    child: Option<Child>,
}

impl Cluster {
    pub const SIZE: usize = 3;

    /// Starts the members and waits until each is healthy (a cluster with
    /// a leader); `None` when etcd is not installed outside CI.
    pub fn start() -> Option<Cluster> {
        if !installed() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 2 * Cluster::SIZE {
            let port = free_port();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let peer_url = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
        let initial_cluster = (0..Cluster::SIZE)
            .map(|i| format!("m{i}={}", peer_url(i)))
            .collect::<Vec<_>>()
            .join(",");
        // Unique, so that no member can take another cluster's for its own.
        let token = dir.path().file_name().unwrap().to_str().unwrap().to_owned();
        let members = (0..Cluster::SIZE)
            .map(|i| {
                let endpoint = format!("127.0.0.1:{}", ports[2 * i]);
                let client_url = format!("http://{endpoint}");
                let child = Command::new("etcd")
                    .args(["--name", &format!("m{i}"), "--data-dir"])
                    .arg(dir.path().join(format!("m{i}")))
                    .args(["--listen-client-urls", &client_url])
                    .args(["--advertise-client-urls", &client_url])
                    .args(["--listen-peer-urls", &peer_url(i)])
                    .args(["--initial-advertise-peer-urls", &peer_url(i)])
                    .args(["--initial-cluster", &initial_cluster])
                    .args(["--initial-cluster-state", "new"])
                    .args(["--initial-cluster-token", &token])
                    .args(["--logger", "zap", "--log-level", "error"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("cannot start etcd");
                Member {
                    endpoint,
                    child: Some(child),
                }
            })
            .collect();
        let mut cluster = Cluster { members, _dir: dir };
        let give_up = Instant::now() + Duration::from_secs(60);
        // Healthy: every member answers a read that needs a leader.
        while !cluster.etcdctl(&["endpoint", "health"]).status.success() {
            for member in &mut cluster.members {
                let exited = member.child.as_mut().unwrap().try_wait().unwrap();
                assert!(
                    exited.is_none(),
                    "etcd member {} exited: {exited:?}",
                    member.endpoint
                );
            }
            assert!(
                Instant::now() < give_up,
                "the etcd cluster did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(cluster)
    }

    /// Every member's `127.0.0.1:PORT`, killed ones included.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.endpoint.clone()).collect()
    }

    /// The `etcd` section of a configuration naming every member, with
    /// `extra` settings (`"timeout": 2`, say) added.
    pub fn section(&self, extra: &str) -> String {
        let mut section = format!(r#""endpoints": {:?}"#, self.endpoints());
        if !extra.is_empty() {
            section += ", ";
            section += extra;
        }
        format!("{{{section}}}")
    }

    /// A configuration with this cluster as the only backend.
    pub fn config(&self, queue_batch: &str, extra: &str) -> String {
        format!(
            r#"{{"logging": "none", "queue_batch": {}, "etcd": {}}}"#,
            outbox_path::own_outbox(queue_batch),
            self.section(extra)
        )
    }

    /// The index of the leader, once every running member names the same
    /// one among them (after a kill, once a new one is elected).
    pub fn leader(&self) -> usize {
        let give_up = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(leader) = self.agreed_leader() {
                return leader;
            }
            assert!(
                Instant::now() < give_up,
                "the etcd cluster agreed on no leader"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn agreed_leader(&self) -> Option<usize> {
        let output = self.etcdctl(&["endpoint", "status", "-w", "json"]);
        if !output.status.success() {
            return None;
        }
        let reply: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        let statuses = reply.as_array()?;
        let leader = statuses.first()?["Status"]["leader"].as_u64()?;
        if leader == 0 || statuses.len() != self.running().len() {
            return None;
        }
        let mut found = None;
        for status in statuses {
            if status["Status"]["leader"].as_u64() != Some(leader) {
                return None;
            }
            if status["Status"]["header"]["member_id"].as_u64() == Some(leader) {
                let url = status["Endpoint"].as_str()?;
                found = self
                    .members
                    .iter()
                    .position(|m| url.ends_with(&format!("//{}", m.endpoint)));
            }
        }
        found
    }

    /// Kills member `index` with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self, index: usize) {
        let mut child = self.members[index].child.take().expect("killed already");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// The URLs of the members still running.
    fn running(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("http://{}", m.endpoint))
            .collect()
    }

    /// Runs etcdctl (API v3) against the members still running.
    pub fn etcdctl<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        etcdctl(&self.running())
            .args(args)
            .output()
            .expect("cannot run etcdctl")
    }

    /// The value etcdctl prints for `key`, or `None`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        value_of(self.etcdctl(&["get", "--print-value-only", key]))
    }

    /// How many keys start with `prefix`, as etcd counts them.
    pub fn count(&self, prefix: &str) -> usize {
        count_of(self.etcdctl(&count_args(prefix)))
    }

    /// Every key starting with `prefix`, in key order.
    pub fn kvs(&self, prefix: &str) -> Vec<Kv> {
        kvs_of(self.etcdctl(&["get", "--prefix", "-w", "json", prefix]))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl TlsFiles {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate,
    /// written into `dir`.
    fn create(dir: &Path) -> TlsFiles {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let signed = |names: Vec<String>| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = signed(vec!["127.0.0.1".into(), "localhost".into()]);
        let (client_cert, client_key) = signed(vec!["client".into()]);
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        TlsFiles {
            ca: write("ca.pem", &ca.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server-key.pem", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client-key.pem", &client_key),
        }
    }
}

/// Whether etcd and etcdctl are installed. In CI, where the test script
/// installs them, a missing binary fails the test; elsewhere the test is
/// skipped with a message.
fn installed() -> bool {
    if binary_present("etcd") && binary_present("etcdctl") {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "etcd or etcdctl is missing: install the Debian packages etcd-server and etcd-client"
    );
    eprintln!("skipped: etcd or etcdctl is not installed");
    false
}

fn binary_present(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
