//! What versions, conditions and expiry cost: on each engine, in one run, a
//! plain `tether_write` beside `tether_write_ex` with `TETHER_IF_VERSION`
//! (the version the previous write of the key gave), with
//! `TETHER_IF_ABSENT` (new keys), and with a ttl; and a plain `tether_read`
//! beside `tether_read_ex`.
//!
//! Run with `cargo bench -p tetherdb-bench --bench versions`. It prints
//! figures and asserts nothing about time. Every call goes through the
//! `extern "C"` entry points with C strings, as a C caller's would, with
//! 100-byte values. Each figure is the median of five runs or more, the kinds of
//! call alternating in order from run to run, with the spread (lowest and
//! highest) beside it. etcd and moto_server are started on loopback ports
//! as the tests start them.

#[path = "../../../tests/common/etcd.rs"]
#[allow(dead_code)]
mod etcd;
#[path = "../../../tests/common/moto.rs"]
mod moto;

use std::ffi::CString;
use std::ptr;
use std::time::{Duration, Instant};

use tetherdb::ffi::{
    tether_close, tether_free, tether_last_error, tether_open, tether_read, tether_read_ex,
    tether_write, tether_write_ex, TetherDb, TETHER_IF_ABSENT, TETHER_IF_VERSION,
};
use tetherdb::Status;
use tetherdb_bench::{preamble, repeats, Spread};

const VALUE: [u8; 100] = [b'v'; 100];

/// The kinds of call measured, each over its own keys.
#[derive(Clone, Copy)]
enum Kind {
    Plain,
    IfVersion,
    IfAbsent,
    WithTtl,
    Read,
    ReadEx,
}

const KINDS: [Kind; 6] = [
    Kind::Plain,
    Kind::IfVersion,
    Kind::IfAbsent,
    Kind::WithTtl,
    Kind::Read,
    Kind::ReadEx,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Plain => "tether_write",
            Kind::IfVersion => "tether_write_ex IF_VERSION",
            Kind::IfAbsent => "tether_write_ex IF_ABSENT (new keys)",
            Kind::WithTtl => "tether_write_ex ttl 10 min",
            Kind::Read => "tether_read",
            Kind::ReadEx => "tether_read_ex (value and version)",
        }
    }
}

struct Bench {
    db: *mut TetherDb,
    bucket: CString,
    keys: Vec<CString>,
    /// The version each key's last write gave.
    versions: Vec<u64>,
}

impl Bench {
    fn open(config: &str, ops: usize) -> Bench {
        let config = CString::new(config).unwrap();
        let mut db = ptr::null_mut();
        assert_eq!(unsafe { tether_open(config.as_ptr(), &mut db) }, Status::Ok);
        Bench {
            db,
            bucket: CString::new("bench").unwrap(),
            keys: (0..ops)
                .map(|i| CString::new(format!("key-{i:07}")).unwrap())
                .collect(),
            versions: vec![0; ops],
        }
    }

    fn write_ex(&mut self, i: usize, flags: u32, ttl_ms: u64, version: u64) {
        let mut out = 0;
        let status = unsafe {
            tether_write_ex(
                self.db,
                ptr::null(),
                self.bucket.as_ptr(),
                self.keys[i].as_ptr(),
                VALUE.as_ptr(),
                VALUE.len(),
                flags,
                ttl_ms,
                version,
                &mut out,
            )
        };
        assert_eq!(status, Status::Ok, "{}", last_error());
        self.versions[i] = out;
    }

    /// Writes every key once (untimed), so that versioned writes and reads
    /// find them.
    fn fill(&mut self) {
        for i in 0..self.keys.len() {
            self.write_ex(i, 0, 0, 0);
        }
    }

    /// One pass of `kind` over the keys; the time per call.
    fn run(&mut self, kind: Kind, round: usize) -> Duration {
        let start = Instant::now();
        for i in 0..self.keys.len() {
            match kind {
                Kind::Plain => {
                    let status = unsafe {
                        tether_write(
                            self.db,
                            ptr::null(),
                            self.bucket.as_ptr(),
                            self.keys[i].as_ptr(),
                            VALUE.as_ptr(),
                            VALUE.len(),
                            0,
                        )
                    };
                    assert_eq!(status, Status::Ok);
                }
                Kind::IfVersion => {
                    let version = self.versions[i];
                    self.write_ex(i, TETHER_IF_VERSION, 0, version);
                }
                Kind::IfAbsent => {
                    let key = CString::new(format!("new-{round}-{i:07}")).unwrap();
                    let status = unsafe {
                        tether_write_ex(
                            self.db,
                            ptr::null(),
                            self.bucket.as_ptr(),
                            key.as_ptr(),
                            VALUE.as_ptr(),
                            VALUE.len(),
                            TETHER_IF_ABSENT,
                            0,
                            0,
                            ptr::null_mut(),
                        )
                    };
                    assert_eq!(status, Status::Ok);
                }
                Kind::WithTtl => self.write_ex(i, 0, 600_000, 0),
                Kind::Read | Kind::ReadEx => {
                    let (mut value, mut len, mut version) = (ptr::null_mut(), 0, 0);
                    let status = unsafe {
                        match kind {
                            Kind::Read => tether_read(
                                self.db,
                                ptr::null(),
                                self.bucket.as_ptr(),
                                self.keys[i].as_ptr(),
                                &mut value,
                                &mut len,
                            ),
                            _ => tether_read_ex(
                                self.db,
                                ptr::null(),
                                self.bucket.as_ptr(),
                                self.keys[i].as_ptr(),
                                &mut value,
                                &mut len,
                                &mut version,
                            ),
                        }
                    };
                    assert_eq!(status, Status::Ok);
                    unsafe { tether_free(value, len) };
                }
            }
        }
        start.elapsed() / self.keys.len() as u32
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        assert_eq!(unsafe { tether_close(self.db) }, Status::Ok);
    }
}

fn last_error() -> String {
    unsafe { std::ffi::CStr::from_ptr(tether_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Median, lowest and highest, in µs.
fn spread(times: &[Duration]) -> Spread {
    Spread::of(
        &times
            .iter()
            .map(|t| t.as_secs_f64() * 1e6)
            .collect::<Vec<_>>(),
    )
}

fn measure(engine: &str, config: &str, ops: usize) {
    let mut bench = Bench::open(config, ops);
    bench.fill();
    let runs = repeats();
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); KINDS.len()];
    for round in 0..runs {
        // Each kind in turn, from another start each round. A versioned
        // pass needs each key's version: a plain pass gives none, so the
        // keys are written again after it (untimed), as after the pass
        // with ttls, so that every pass finds keys without a deadline.
        for k in 0..KINDS.len() {
            let at = (k + round) % KINDS.len();
            times[at].push(bench.run(KINDS[at], round));
            if matches!(KINDS[at], Kind::Plain | Kind::WithTtl) {
                bench.fill();
            }
        }
    }
    let plain = spread(&times[0]).median;
    let read = spread(&times[4]).median;
    println!(
        "{engine}, {ops} calls a pass, µs a call, median (lowest–highest) of {runs}; \
         load average after: {}",
        tetherdb_bench::load()
    );
    for (kind, times) in KINDS.iter().zip(&times) {
        let figure = spread(times);
        let base = match kind {
            Kind::Read | Kind::ReadEx => read,
            _ => plain,
        };
        println!(
            "  {:<38} {:>24}  {:.2}× the plain call",
            kind.name(),
            figure.show(1),
            figure.median / base,
        );
    }
}

fn ops(default: usize) -> usize {
    std::env::var("TETHERDB_BENCH_OPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn main() {
    preamble("What versions, conditions and expiry cost, through the C ABI");
    let dir = tempfile::tempdir().unwrap();
    let local = format!(
        r#"{{"logging": "warn", "local": {{"filepath": {:?}}}}}"#,
        dir.path().join("db")
    );
    measure("local", &local, ops(20_000));

    let Some(server) = etcd::Etcd::start() else {
        eprintln!("etcd is not installed: install the Debian packages etcd-server and etcd-client");
        std::process::exit(1);
    };
    measure("etcd", &server.config("{}", ""), ops(2_000));
    drop(server);

    let Some(moto) = moto::server() else {
        eprintln!("moto_server is missing: python3 -m pip install 'moto[server]'");
        std::process::exit(1);
    };
    let config = moto::config(&moto.url(), &moto::table("versions"), "", "{}");
    measure("dynamodb (moto_server)", &config, ops(300));
}
