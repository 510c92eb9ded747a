//! A `moto_server` (PyPI `moto[server]`, a DynamoDB emulator) on a free
//! loopback port, stopped when the last test holding it drops it; and a
//! loopback HTTP proxy in front of it that counts requests and injects the
//! faults moto cannot produce (unprocessed items, throttling, an outage).
//!
//! Every request stays on the loopback: the fixture gives the AWS SDK fake
//! credentials and turns off the instance metadata service, so the
//! credential chain never looks beyond this machine.
//!
//! Benchmarks include this file too, so it depends on no other test helper.
#![allow(dead_code)] // each test binary uses a part of it

// Both server fixtures carry it: a bench borrows one of them alone.
#[allow(clippy::duplicate_mod)]
#[path = "outbox_path.rs"]
pub mod outbox_path;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, Weak};
use std::time::Duration;

/// The region the tests' configurations name; any works with moto.
pub const REGION: &str = "us-east-1";

/// A running moto_server.
pub struct Moto {
    child: Mutex<Child>,
    pub addr: SocketAddr,
}

impl Moto {
    /// The endpoint URL for the `dynamodb` section.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The server the running tests share, started on first use. `None` when
/// moto_server is not installed and `CI` is not set (the caller skips);
/// with `CI` set, a missing moto_server fails the test.
pub fn server() -> Option<Arc<Moto>> {
    static SHARED: Mutex<Weak<Moto>> = Mutex::new(Weak::new());
    aws_test_environment();
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(moto) = shared.upgrade() {
        return Some(moto);
    }
    let moto = Arc::new(start()?);
    *shared = Arc::downgrade(&moto);
    Some(moto)
}

/// A server that handles one request at a time, shared like [`server`]'s.
///
/// moto_server answers each request on a thread of its own, and checks a
/// condition and applies the write without a lock between them: racing
/// conditional writes there can all win. Served one at a time, each
/// request's check and write are one atomic step, as on DynamoDB, so a
/// lost update in a race is the library's. The same moto, through
/// werkzeug's `run_simple(..., threaded=False)`; it speaks HTTP/1.0, one
/// connection per request, so that no client holds it between requests.
pub fn serial_server() -> Option<Arc<Moto>> {
    static SHARED: Mutex<Weak<Moto>> = Mutex::new(Weak::new());
    aws_test_environment();
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(moto) = shared.upgrade() {
        return Some(moto);
    }
    let moto = Arc::new(launch(Serving::Serial)?);
    *shared = Arc::downgrade(&moto);
    Some(moto)
}

/// How a started moto handles requests.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Serving {
    /// `moto_server`: a thread per request.
    Threaded,
    /// One request at a time ([`serial_server`]).
    Serial,
}

/// The Python that serves moto one request at a time: moto_server's own
/// application, without its threads. Exit status 3: moto is not installed.
const SERIAL_MOTO: &str = r#"
import os, sys
try:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple
except ImportError as e:
    print(e, file=sys.stderr)
    sys.exit(3)
host, port = sys.argv[1], sys.argv[2]
os.environ.setdefault("MOTO_PORT", port)
run_simple(host, int(port), DomainDispatcherApplication(create_backend_app), threaded=False)
"#;

/// Fake credentials and no instance metadata service, set once before any
/// handle is opened (the SDK reads them when a handle opens).
pub fn aws_test_environment() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        // Nothing from the developer's own AWS setup.
        std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/aws/config");
        std::env::set_var(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws/credentials",
        );
        for name in [
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_DYNAMODB",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ] {
            std::env::remove_var(name);
        }
    });
}

/// A server of this test's own, which it may stop (drop) and replace.
/// `None` as for [`server`].
pub fn own_server() -> Option<Moto> {
    aws_test_environment();
    start()
}

fn start() -> Option<Moto> {
    launch(Serving::Threaded)
}

fn launch(serving: Serving) -> Option<Moto> {
    // A free port can be taken between our look and moto's bind: try again.
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut command = match serving {
            Serving::Threaded => {
                let mut command = Command::new("moto_server");
                command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                command
            }
            Serving::Serial => {
                let mut command = Command::new("python3");
                command.args(["-c", SERIAL_MOTO, "127.0.0.1", &port.to_string()]);
                command
            }
        };
        let spawned = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return not_installed(),
            Err(e) => panic!("cannot start moto_server: {e}"),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // Python takes a second or two to import moto; the bound only keeps
        // a broken install from hanging the tests.
        for _ in 0..600 {
            if let Some(status) = child.try_wait().unwrap() {
                if serving == Serving::Serial && status.code() == Some(3) {
                    return not_installed();
                }
                eprintln!("moto_server on port {port} ended ({status}); trying another port");
                break;
            }
            if TcpStream::connect(addr).is_ok() {
                return Some(Moto {
                    child: Mutex::new(child),
                    addr,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("moto_server did not start");
}

/// `None`, for a caller to skip, when moto is not installed; with `CI`
/// set, a panic: the test fails.
fn not_installed() -> Option<Moto> {
    if std::env::var_os("CI").is_some() {
        panic!(
            "moto_server not found (CI is set, so this fails rather than skips): \
             install it with python3 -m pip install 'moto[server]'"
        );
    }
    eprintln!("skipped: moto_server not found (python3 -m pip install 'moto[server]')");
    None
}

/// A unique table name for one test, so tests sharing a server never see
/// each other's items.
pub fn table(test: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "tether-{test}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A configuration with one `dynamodb` backend at `url` whose table is
/// created when missing, plus `extra` keys of the section.
pub fn config(url: &str, table: &str, extra: &str, queue_batch: &str) -> String {
    let queue_batch = outbox_path::own_outbox(queue_batch);
    format!(
        r#"{{"logging": "none", "queue_batch": {queue_batch},
            "dynamodb": {{"table_name": "{table}", "region": "{REGION}",
                          "endpoint_url": "{url}", "create_table": true{extra}}}}}"#
    )
}

/// An error answer the proxy gives instead of forwarding a request, so
/// that the request is certainly not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 400, `ProvisionedThroughputExceededException`: the table's
    /// capacity is exceeded.
    ProvisionedThroughputExceeded,
    /// HTTP 400, `ThrottlingException`: the request rate is too high.
    Throttling,
    /// HTTP 500, `InternalServerError`, as DynamoDB answers it.
    InternalServerError,
    /// HTTP 503 with an empty body and no error type, as a load balancer
    /// in front of an endpoint answers.
    ServiceUnavailable,
}

impl Fault {
    pub const ALL: [Fault; 4] = [
        Fault::ProvisionedThroughputExceeded,
        Fault::Throttling,
        Fault::InternalServerError,
        Fault::ServiceUnavailable,
    ];

    fn answer(self) -> Message {
        let (first, error_type) = match self {
            Fault::ProvisionedThroughputExceeded => (
                "HTTP/1.1 400 Bad Request",
                Some("ProvisionedThroughputExceededException"),
            ),
            Fault::Throttling => ("HTTP/1.1 400 Bad Request", Some("ThrottlingException")),
            Fault::InternalServerError => (
                "HTTP/1.1 500 Internal Server Error",
                Some("InternalServerError"),
            ),
            Fault::ServiceUnavailable => ("HTTP/1.1 503 Service Unavailable", None),
        };
        let mut answer = Message {
            first: first.into(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        if let Some(error_type) = error_type {
            let qualified = format!("com.amazonaws.dynamodb.v20120810#{error_type}");
            answer.body = serde_json::to_vec(&serde_json::json!({
                "__type": qualified,
                "message": "injected by the test proxy",
            }))
            .unwrap();
            answer.headers = vec![
                ("content-type".into(), "application/x-amz-json-1.0".into()),
                ("x-amzn-ErrorType".into(), qualified),
            ];
        }
        answer
    }
}

/// Which requests the proxy answers with a [`Fault`] of its own.
#[derive(Clone, Debug)]
pub struct Faults {
    /// The faults given in turn: the first injected answer is `kinds[0]`,
    /// the next `kinds[1]`, and so on round.
    pub kinds: Vec<Fault>,
    /// The operations concerned (`PutItem`, `BatchWriteItem`...); all
    /// when empty.
    pub operations: Vec<String>,
    share: Share,
    /// Requests of the operations concerned seen so far.
    seen: u64,
    /// Faults injected so far.
    injected: usize,
}

#[derive(Clone, Debug)]
enum Share {
    /// The n-th, 2n-th... request.
    EveryNth(u64),
    /// Each request with this probability (in percent), drawn from a
    /// seeded generator: the same seed gives the same sequence of draws.
    Random { percent: u64, state: u64 },
    /// The i-th request where `hits[i]` is set; none after the last.
    Pattern(Vec<bool>),
}

impl Faults {
    /// Every request, of any operation, answered with `fault`.
    pub fn all(fault: Fault) -> Faults {
        Faults::every_nth(1, &[fault])
    }

    /// The n-th, 2n-th... request answered with the next of `kinds`.
    pub fn every_nth(n: u64, kinds: &[Fault]) -> Faults {
        assert!(n > 0 && !kinds.is_empty());
        Faults::with(Share::EveryNth(n), kinds)
    }

    /// About `percent` in 100 requests, drawn from `seed`, answered with
    /// the next of `kinds`.
    pub fn random(percent: u64, seed: u64, kinds: &[Fault]) -> Faults {
        assert!(percent <= 100 && !kinds.is_empty());
        Faults::with(
            Share::Random {
                percent,
                state: seed,
            },
            kinds,
        )
    }

    /// The i-th request answered with the next of `kinds` where `hits[i]`
    /// is set; those after the last of `hits` go through.
    pub fn pattern(hits: &[bool], kinds: &[Fault]) -> Faults {
        assert!(!kinds.is_empty());
        Faults::with(Share::Pattern(hits.to_vec()), kinds)
    }

    fn with(share: Share, kinds: &[Fault]) -> Faults {
        Faults {
            kinds: kinds.to_vec(),
            operations: Vec::new(),
            share,
            seen: 0,
            injected: 0,
        }
    }

    /// Only requests of these operations.
    pub fn on(mut self, operations: &[&str]) -> Faults {
        self.operations = operations.iter().map(|o| o.to_string()).collect();
        self
    }

    /// The fault to answer a request of `operation` with, if any.
    fn pick(&mut self, operation: &str) -> Option<Fault> {
        if !self.operations.is_empty() && !self.operations.iter().any(|o| o == operation) {
            return None;
        }
        self.seen += 1;
        let hit = match &mut self.share {
            Share::EveryNth(n) => self.seen.is_multiple_of(*n),
            Share::Random { percent, state } => splitmix64(state) % 100 < *percent,
            Share::Pattern(hits) => hits.get(self.seen as usize - 1) == Some(&true),
        };
        if !hit {
            return None;
        }
        let fault = self.kinds[self.injected % self.kinds.len()];
        self.injected += 1;
        Some(fault)
    }
}

/// The next number of a SplitMix64 sequence: enough randomness for
/// choosing requests, reproducible from its seed, and no dependency.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What the proxy saw and what it is told to do.
#[derive(Default)]
pub struct ProxyState {
    /// Requests received, by operation (`PutItem`, `BatchWriteItem`...),
    /// injected answers included.
    pub requests: HashMap<String, usize>,
    /// Requests answered with an injected [`Fault`], by operation.
    pub injected: HashMap<String, usize>,
    /// How many times each request body was answered with an injected
    /// fault. The SDK's retries of a request send the same body again: a
    /// count of its attempts means the SDK gave up on that request.
    pub faulted_bodies: HashMap<Vec<u8>, usize>,
    /// The key of every put request of a BatchWriteItem that reached moto,
    /// in order: each key once means each write was applied once.
    pub batch_written: Vec<String>,
    /// How many times a write of each key was forwarded to moto: the key
    /// of a PutItem, and of each put request of a BatchWriteItem.
    pub written: HashMap<String, usize>,
    /// The bytes of the bodies of moto's answers, by operation: what the
    /// requests made DynamoDB send.
    pub answered_bytes: HashMap<String, usize>,
    /// Answer the next this-many BatchWriteItem requests with a
    /// ProvisionedThroughputExceededException, without forwarding them.
    pub throttle: usize,
    /// Answer a share of the requests with an error, without forwarding
    /// them; `None`: forward every request.
    pub faults: Option<Faults>,
    /// For the next this-many BatchWriteItem requests, forward only the
    /// first half of the items and answer that the rest went unprocessed,
    /// as DynamoDB does when it throttles part of a batch.
    pub leave_unprocessed: usize,
    /// Close every connection without an answer, as an unreachable
    /// endpoint would.
    pub down: bool,
}

impl ProxyState {
    pub fn count(&self, operation: &str) -> usize {
        self.requests.get(operation).copied().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.requests.values().sum()
    }

    /// Injected answers to requests of `operation`.
    pub fn injected(&self, operation: &str) -> usize {
        self.injected.get(operation).copied().unwrap_or(0)
    }

    /// Requests of `operation` forwarded to moto.
    pub fn forwarded(&self, operation: &str) -> usize {
        self.count(operation) - self.injected(operation)
    }
}

/// A loopback HTTP/1.1 proxy in front of moto. Each request is forwarded
/// on a connection of its own, so the proxy needs no HTTP client.
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    stopping: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let stopping = Arc::new(AtomicBool::new(false));
        let (shared, stop) = (state.clone(), stopping.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let (state, stop) = (shared.clone(), stop.clone());
                std::thread::spawn(move || serve(client, upstream, &state, &stop));
            }
        });
        Proxy {
            addr,
            state,
            stopping,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> MutexGuard<'_, ProxyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

struct Message {
    /// The request or status line.
    first: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Reads one message; `None` at the end of the stream.
    fn read(reader: &mut impl BufRead, to_eof_without_length: bool) -> Option<Message> {
        let mut first = String::new();
        if reader.read_line(&mut first).ok()? == 0 {
            return None;
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).ok()?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':')?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let mut message = Message {
            first: first.trim_end().to_owned(),
            headers,
            body: Vec::new(),
        };
        match message.header("content-length") {
            Some(length) => {
                message.body = vec![0; length.parse().ok()?];
                reader.read_exact(&mut message.body).ok()?;
            }
            None if to_eof_without_length => {
                reader.read_to_end(&mut message.body).ok()?;
            }
            None => {}
        }
        Some(message)
    }

    /// Writes the message with its body's length and `connection`.
    fn write(&self, out: &mut impl Write, connection: &str) -> std::io::Result<()> {
        let mut head = format!("{}\r\n", self.first);
        for (name, value) in &self.headers {
            let hop = [
                "content-length",
                "connection",
                "keep-alive",
                "transfer-encoding",
            ];
            if !hop.iter().any(|h| name.eq_ignore_ascii_case(h)) {
                head += &format!("{name}: {value}\r\n");
            }
        }
        head += &format!(
            "content-length: {}\r\nconnection: {connection}\r\n\r\n",
            self.body.len()
        );
        out.write_all(head.as_bytes())?;
        out.write_all(&self.body)?;
        out.flush()
    }
}

/// Serves one client connection, request after request.
fn serve(client: TcpStream, upstream: SocketAddr, state: &Mutex<ProxyState>, stop: &AtomicBool) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut writer = client;
    while let Some(request) = Message::read(&mut reader, false) {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let answer = answer(request, upstream, state);
        let Some(answer) = answer else {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        };
        if answer.write(&mut writer, "keep-alive").is_err() {
            return;
        }
    }
}

/// The answer to one request: moto's, or an injected one; `None` to close
/// the connection without one.
fn answer(
    mut request: Message,
    upstream: SocketAddr,
    state: &Mutex<ProxyState>,
) -> Option<Message> {
    let operation = request
        .header("x-amz-target")
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("")
        .to_owned();
    let mut unprocessed = None;
    {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        *state.requests.entry(operation.clone()).or_default() += 1;
        if state.down {
            return None;
        }
        let fault = state.faults.as_mut().and_then(|f| f.pick(&operation));
        let fault = match operation.as_str() {
            "BatchWriteItem" if fault.is_none() && state.throttle > 0 => {
                state.throttle -= 1;
                Some(Fault::ProvisionedThroughputExceeded)
            }
            _ => fault,
        };
        if let Some(fault) = fault {
            *state.injected.entry(operation).or_default() += 1;
            *state.faulted_bodies.entry(request.body).or_default() += 1;
            return Some(fault.answer());
        }
        if operation == "BatchWriteItem" {
            if state.leave_unprocessed > 0 {
                state.leave_unprocessed -= 1;
                let (forwarded, left) = split_batch(&request.body);
                request.body = forwarded;
                unprocessed = Some(left);
            }
            let keys = batch_keys(&request.body);
            for key in &keys {
                *state.written.entry(key.clone()).or_default() += 1;
            }
            state.batch_written.extend(keys);
        }
        if operation == "PutItem" {
            if let Some(key) = put_key(&request.body) {
                *state.written.entry(key).or_default() += 1;
            }
        }
    }
    let empty = unprocessed
        .as_ref()
        .is_some_and(|_| batch_requests(&request.body) == 0);
    let mut response = match empty {
        // Nothing left to forward: moto would refuse an empty batch.
        true => Message {
            first: "HTTP/1.1 200 OK".into(),
            headers: vec![("content-type".into(), "application/x-amz-json-1.0".into())],
            body: Vec::new(),
        },
        false => forward(&request, upstream)?,
    };
    if let Some(left) = unprocessed {
        response.body = left;
        // moto's checksum was of its own body.
        response
            .headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("x-amz-crc32"));
    }
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    *state.answered_bytes.entry(operation).or_default() += response.body.len();
    Some(response)
}

fn forward(request: &Message, upstream: SocketAddr) -> Option<Message> {
    let mut moto = TcpStream::connect(upstream).ok()?;
    request.write(&mut moto, "close").ok()?;
    let mut reader = BufReader::new(moto);
    let mut response = Message::read(&mut reader, true)?;
    // Answer in HTTP/1.1 whatever moto spoke, so the client keeps the
    // connection.
    if let Some(rest) = response.first.strip_prefix("HTTP/1.0") {
        response.first = format!("HTTP/1.1{rest}");
    }
    Some(response)
}

/// The key of a PutItem body.
fn put_key(body: &[u8]) -> Option<String> {
    let request: serde_json::Value = serde_json::from_slice(body).ok()?;
    request["Item"]["key"]["S"].as_str().map(str::to_owned)
}

/// Splits a BatchWriteItem body: the request with the first half of its
/// put requests, and an answer listing the rest as unprocessed.
fn split_batch(body: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut request: serde_json::Value = serde_json::from_slice(body).unwrap();
    let tables = request["RequestItems"].as_object_mut().unwrap();
    let mut unprocessed = serde_json::Map::new();
    for (table, writes) in tables.iter_mut() {
        let writes = writes.as_array_mut().unwrap();
        let left = writes.split_off(writes.len() / 2);
        unprocessed.insert(table.clone(), serde_json::Value::Array(left));
    }
    tables.retain(|_, writes| !writes.as_array().unwrap().is_empty());
    let answer = serde_json::json!({ "UnprocessedItems": unprocessed });
    (
        serde_json::to_vec(&request).unwrap(),
        serde_json::to_vec(&answer).unwrap(),
    )
}

/// How many write requests (puts and deletes) a BatchWriteItem body holds.
fn batch_requests(body: &[u8]) -> usize {
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    request["RequestItems"].as_object().map_or(0, |tables| {
        tables
            .values()
            .filter_map(|writes| writes.as_array())
            .map(Vec::len)
            .sum()
    })
}

/// The keys of the put requests of a BatchWriteItem body.
fn batch_keys(body: &[u8]) -> Vec<String> {
    let request: serde_json::Value = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(_) => return Vec::new(),
    };
    let Some(tables) = request["RequestItems"].as_object() else {
        return Vec::new();
    };
    tables
        .values()
        .filter_map(|writes| writes.as_array())
        .flatten()
        .filter_map(|w| w["PutRequest"]["Item"]["key"]["S"].as_str())
        .map(str::to_owned)
        .collect()
}

/// aws-sdk-dynamodb on its own, against `url`: for looking at items as
/// stored, making tables TetherDB would not, and the benchmark's baseline.
pub fn sdk(url: &str) -> (tokio::runtime::Runtime, aws_sdk_dynamodb::Client) {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_test_environment();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let config = runtime.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http_client)
            .region(aws_config::Region::new(REGION))
            .endpoint_url(url)
            .load(),
    );
    (runtime, aws_sdk_dynamodb::Client::new(&config))
}
