//! tether-stress: N threads sharing one TetherDB handle write (and read,
//! and update) through the C ABI exactly as a C program would, then every
//! written key is read back and checked. See `--help`, and
//! docs/stress.md.

mod args;
mod histogram;
mod progress;
mod report;
mod target;
#[cfg(test)]
mod tests;
mod verify;
mod work;
mod workload;

use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;
use tetherdb::Status;

use args::{Options, Parsed, Verify};
use progress::Progress;
use report::{peak_rss, Summary};
use target::{status_name, CAbi, ConfigSource, Failure, KeyBuf, Target};
use verify::{verify_by_listing, verify_by_reading};
use work::write_phase;

/// The kinds of operation, indexes of the per-kind tables (work.rs,
/// report.rs).
const KINDS: [&str; 3] = ["read", "write", "update"];
const READ: usize = 0;
const WRITE: usize = 1;
const UPDATE: usize = 2;
/// Statuses are 0..=10 (the values are part of the ABI).
const STATUSES: usize = 11;

fn main() -> ExitCode {
    let options = match args::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("tether-stress: {message}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("tether-stress: {message}");
            ExitCode::from(2)
        }
    }
}

/// A directory removed when dropped: the default configuration's store.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A random 64-bit number: std's hasher keys are random per process.
fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// The configuration to open, and the temporary directory it uses, if any.
fn configuration(o: &Options, run: u64) -> Result<(ConfigSource, Option<TempDir>), String> {
    if let Some(config) = &o.config {
        return Ok(match config.trim_start().starts_with('{') {
            true => (ConfigSource::Json(config.clone()), None),
            false => (ConfigSource::File(config.clone()), None),
        });
    }
    let dir = std::env::temp_dir().join(format!(
        "tether-stress-{}-{}",
        std::process::id(),
        workload::run_tag(run)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let dir = TempDir(dir);
    let mut json = json!({
        "logging": "warn",
        "local": { "filepath": dir.0.join("db") },
    });
    // Another backend gets an empty section: its defaults (etcd on
    // localhost:2379, say). The library judges the name: one this build
    // lacks is reported when the first call names it.
    if let Some(backend) = o.backend.as_deref().filter(|b| *b != "local") {
        json[backend] = json!({});
    }
    Ok((ConfigSource::Json(json.to_string()), Some(dir)))
}

/// The engine under the backend, for --engine-direct: configured from the
/// same configuration, parsed by the library's own parser.
fn engine(o: &Options, source: &ConfigSource) -> Result<Box<dyn Target>, String> {
    let config = match source {
        ConfigSource::Json(json) => tetherdb::Config::from_json(Some(json)),
        ConfigSource::File(path) => tetherdb::Config::from_file(path),
    }
    .map_err(|e| format!("configuration: {e}"))?;
    let name = match &o.backend {
        Some(name) => name.clone(),
        None => config
            .default_backend_name()
            .map_err(|e| e.to_string())?
            .to_owned(),
    };
    let batch = config.queue_batch.size;
    let failed = |f: Failure| format!("{}: {}", status_name(f.status), f.message);
    match name.as_str() {
        "local" => {
            let local = config
                .local_config()
                .ok_or("--engine-direct: the configuration has no local section")?;
            Ok(Box::new(
                target::engines::Sled::open(&local.filepath, local.cache_capacity, batch)
                    .map_err(failed)?,
            ))
        }
        #[cfg(feature = "etcd")]
        "etcd" => {
            let etcd = config
                .etcd
                .as_ref()
                .ok_or("--engine-direct: the configuration has no etcd section")?;
            if etcd.use_ssl {
                return Err("--engine-direct: only a plain (non-TLS) etcd is supported".into());
            }
            let batch = batch.min(etcd.max_txn_ops);
            Ok(Box::new(
                target::engines::Etcd::open(&etcd.urls(), batch, etcd.max_request_bytes)
                    .map_err(failed)?,
            ))
        }
        #[cfg(feature = "dynamodb")]
        "dynamodb" => {
            let dynamodb = config
                .dynamodb
                .as_ref()
                .ok_or("--engine-direct: the configuration has no dynamodb section")?;
            Ok(Box::new(
                target::engines::DynamoDb::open(dynamodb, batch).map_err(failed)?,
            ))
        }
        other => Err(format!(
            "--engine-direct: this tool has no engine of its own for backend {other:?}"
        )),
    }
}

fn run(o: &Options) -> Result<u8, String> {
    let run = random_u64();
    let (source, _dir) = configuration(o, run)?;
    let target: Box<dyn Target> = if o.engine_direct {
        engine(o, &source)?
    } else {
        let opened = CAbi::open(&source, o.backend.as_deref(), &o.bucket);
        Box::new(opened.map_err(|f| {
            format!(
                "the handle does not open: {}: {}",
                status_name(f.status),
                f.message
            )
        })?)
    };
    probe(&*target, o, run)?;
    let summary = exercise(target, o, run);
    let code = summary.exit_code();
    if o.json {
        println!("{:#}", summary.to_json());
    } else {
        summary.print();
    }
    Ok(code)
}

/// The run proper: the timed phase, the flush, the read-back, the close.
fn exercise(target: Box<dyn Target>, o: &Options, run: u64) -> Summary<'_> {
    let progress = Progress::new(o);
    let (worked, run_secs) = write_phase(&*target, o, run, &progress);
    let mut flush = None;
    let mut flush_secs = 0.0;
    if o.queued {
        progress.note("flushing the queue");
        let started = Instant::now();
        flush = target.flush().err();
        flush_secs = started.elapsed().as_secs_f64();
    }
    // Before the read-back, which pulls every value through the engine's
    // cache: the memory the writes themselves took.
    let rss_written = peak_rss();
    let verified = match o.verify {
        Verify::Read => Some(verify_by_reading(&*target, o, run, &worked, &progress)),
        Verify::List => Some(verify_by_listing(&*target, o, run, &worked, &progress)),
        Verify::None => None,
    };
    let described = target.describe();
    let close = target.close().err();
    Summary {
        o,
        described,
        run,
        worked,
        run_secs,
        flush,
        flush_secs,
        rss_written,
        verified,
        close,
    }
}

/// One read before the threads start, so that a handle that cannot reach
/// its backend, or names one this build lacks, says so once in the
/// library's words instead of failing every call.
fn probe(target: &dyn Target, o: &Options, run: u64) -> Result<(), String> {
    let mut key = KeyBuf::new(&o.bucket);
    key.set(format_args!("{}-probe", workload::run_tag(run)));
    let mut session = target.session();
    match session.read(&key, &mut |_| ()) {
        Status::Ok | Status::NotFound => Ok(()),
        status => Err(format!(
            "{} cannot be used: {}: {}",
            o.backend
                .as_deref()
                .map_or("the default backend".into(), |b| format!("backend {b:?}")),
            status_name(status),
            session.last_error()
        )),
    }
}
