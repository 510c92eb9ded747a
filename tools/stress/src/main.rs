//! tether-stress: N threads sharing one TetherDB handle write (and read,
//! and update) through the C ABI exactly as a C program would, then every
//! written key is read back and checked. See `--help`, and
//! docs/stress.md.

mod args;
mod histogram;
mod target;
mod workload;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tetherdb::Status;

use args::{Options, Parsed, Stop, Verify};
use histogram::Histogram;
use target::{status_name, CAbi, ConfigSource, Failure, KeyBuf, Session, Target};
use workload::{classify, Rng, Seen, Values, UNCERTAIN, VERSION};

const KINDS: [&str; 3] = ["read", "write", "update"];
const READ: usize = 0;
const WRITE: usize = 1;
const UPDATE: usize = 2;
/// Statuses are 0..=10 (the values are part of the ABI).
const STATUSES: usize = 11;
/// Keys per thread with --duration and no --keys: bounds the version table
/// at 4 MB per thread however long the run.
const DURATION_KEYS: u64 = 1_000_000;

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

/// One counter per thread, each on its own cache line, read by the
/// progress line while the threads count.
#[repr(align(128))]
#[derive(Default)]
struct Counter(AtomicU64);

/// What one thread did in the timed phase.
struct Worked {
    latency: [Histogram; 3],
    statuses: [[u64; STATUSES]; 3],
    messages: BTreeMap<(usize, usize), String>,
    /// Reads that found no value, or a wrong or stale one, where the last
    /// write was certain to be applied: lost or wrong writes.
    bad_reads: u64,
    bad_read_example: Option<String>,
    /// Reads of a queued write not applied yet: expected.
    pending_reads: u64,
    /// The version last written, per key index (see workload.rs).
    versions: Vec<u32>,
    values: Values,
    finish: Option<Failure>,
}

/// What the read-back found.
#[derive(Default)]
struct Verified {
    keys: u64,
    ok: u64,
    missing: u64,
    wrong: u64,
    /// Keys whose last write failed with an unknown outcome: any version
    /// they hold, or none, is accepted.
    uncertain: u64,
    /// Keys of this run that the listing returned and no thread wrote.
    unexpected: u64,
    errors: [u64; STATUSES],
    messages: BTreeMap<usize, String>,
    examples: Vec<String>,
    latency: Histogram,
    seconds: f64,
}

impl Verified {
    fn merge(&mut self, other: Verified) {
        self.keys += other.keys;
        self.ok += other.ok;
        self.missing += other.missing;
        self.wrong += other.wrong;
        self.uncertain += other.uncertain;
        self.unexpected += other.unexpected;
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        for (k, v) in other.messages {
            self.messages.entry(k).or_insert(v);
        }
        self.examples.extend(other.examples);
        self.examples.truncate(5);
        self.latency.merge(&other.latency);
    }

    /// Counts what a key's value (or its absence) says.
    fn judge(&mut self, name: impl FnOnce() -> String, tracked: u32, seen: Option<Seen>) {
        let (last, uncertain) = (tracked & VERSION, tracked & UNCERTAIN != 0);
        if uncertain {
            self.uncertain += 1;
        }
        let problem = match seen {
            Some(Seen::Current) => None,
            // After a call with an unknown outcome, an earlier version or
            // none is as good as the last; a value of no version is not.
            Some(Seen::Earlier) | None if uncertain => None,
            None if last == 0 => None,
            Some(Seen::Earlier) => Some("an earlier version"),
            Some(Seen::Wrong) if last == 0 => Some("a value though no write succeeded"),
            Some(Seen::Wrong) => Some("a wrong value"),
            None => Some("missing"),
        };
        match problem {
            None => self.ok += 1,
            Some(what) => {
                if seen.is_none() {
                    self.missing += 1;
                } else {
                    self.wrong += 1;
                }
                if self.examples.len() < 5 {
                    self.examples
                        .push(format!("{}: {what} (last version written {last})", name()));
                }
            }
        }
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

/// Which operations a thread does, and how many keys it has.
struct Plan {
    ops: Option<u64>,
    deadline: Option<Instant>,
    keys: u64,
}

fn plan(o: &Options, thread: usize, started: Instant) -> Plan {
    let threads = o.threads as u64;
    match o.stop {
        Stop::Ops(n) => {
            let mine = n / threads + u64::from((thread as u64) < n % threads);
            Plan {
                ops: Some(mine),
                deadline: None,
                keys: o.keys.unwrap_or(mine.max(1)),
            }
        }
        Stop::Duration(d) => Plan {
            ops: None,
            deadline: Some(started + d),
            keys: o.keys.unwrap_or(DURATION_KEYS),
        },
    }
}

fn write_phase(
    target: &dyn Target,
    o: &Options,
    run: u64,
    progress: &Progress,
) -> (Vec<Worked>, f64) {
    let barrier = Barrier::new(o.threads + 1);
    let counters: Vec<Counter> = (0..o.threads).map(|_| Counter::default()).collect();
    let errors = Counter::default();
    let done = AtomicBool::new(false);
    let (worked, elapsed) = std::thread::scope(|s| {
        let threads: Vec<_> = (0..o.threads)
            .map(|t| {
                let (barrier, counter, errors) = (&barrier, &counters[t], &errors);
                s.spawn(move || {
                    let session = target.session();
                    let values = Values::new(run, t, o.value_size);
                    barrier.wait();
                    let plan = plan(o, t, Instant::now());
                    work(session, o, run, t, plan, values, counter, errors)
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let total = match o.stop {
            Stop::Ops(n) => Some(n),
            Stop::Duration(_) => None,
        };
        let (counters, errors, done) = (&counters, &errors, &done);
        let watcher = s.spawn(move || {
            progress.watch(("writing", "ops"), started, counters, total, errors, done)
        });
        let worked: Vec<Worked> = threads
            .into_iter()
            .map(|t| t.join().expect("a worker thread panicked"))
            .collect();
        let elapsed = started.elapsed().as_secs_f64();
        done.store(true, Ordering::Relaxed);
        watcher.join().expect("the progress thread panicked");
        (worked, elapsed)
    });
    (worked, elapsed)
}

#[allow(clippy::too_many_arguments)]
fn work(
    mut session: Box<dyn Session + '_>,
    o: &Options,
    run: u64,
    t: usize,
    plan: Plan,
    values: Values,
    counter: &Counter,
    errors: &Counter,
) -> Worked {
    let mut w = Worked {
        latency: Default::default(),
        statuses: [[0; STATUSES]; 3],
        messages: BTreeMap::new(),
        bad_reads: 0,
        bad_read_example: None,
        pending_reads: 0,
        versions: Vec::new(),
        values,
        finish: None,
    };
    let mut key = KeyBuf::new(&o.bucket);
    let mut rng = Rng::new(run ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let weights = o.mix.read as u64 + o.mix.write as u64 + o.mix.update as u64;
    let mut writes: u64 = 0;
    let mut done: u64 = 0;
    loop {
        if plan.ops.is_some_and(|n| done >= n) || plan.deadline.is_some_and(|d| Instant::now() >= d)
        {
            break;
        }
        // Reads and updates need a key this thread wrote: until there is
        // one, every operation is a write.
        let pick = rng.below(weights);
        let kind = match w.versions.is_empty() {
            true => WRITE,
            false if pick < o.mix.read as u64 => READ,
            false if pick < (o.mix.read + o.mix.write) as u64 => WRITE,
            false => UPDATE,
        };
        let index = match kind {
            WRITE => {
                let index = writes % plan.keys;
                writes += 1;
                if index as usize == w.versions.len() {
                    w.versions.push(0);
                }
                index
            }
            _ => rng.below(w.versions.len() as u64),
        };
        let tracked = w.versions[index as usize];
        key.set(workload::key(run, t, index));
        let started = Instant::now();
        let status = match kind {
            READ => {
                let mut seen = None;
                let status = session.read(&key, &mut |value| {
                    seen = Some(classify(&w.values, index, tracked, value))
                });
                let elapsed = started.elapsed();
                judge_read(&mut w, o, &key, tracked, status, seen);
                record(&mut w, kind, status, elapsed, &*session)
            }
            _ => {
                let version = (tracked & VERSION) + 1;
                let value = w.values.of(index, version);
                let status = match kind {
                    WRITE => session.write(&key, value, o.queued),
                    _ => session.update(&key, value),
                };
                let elapsed = started.elapsed();
                w.versions[index as usize] = match status {
                    Status::Ok => version,
                    // A queued write that failed was refused before it
                    // was queued; an update that found no key wrote
                    // nothing. Either leaves the key as it was.
                    _ if (kind == WRITE && o.queued) || status == Status::NotFound => tracked,
                    // A direct call that failed otherwise (a timeout, say)
                    // may have been applied: the key's value is unknown.
                    _ => version | UNCERTAIN,
                };
                record(&mut w, kind, status, elapsed, &*session)
            }
        };
        if !status {
            errors.0.fetch_add(1, Ordering::Relaxed);
        }
        done += 1;
        counter.0.store(done, Ordering::Relaxed);
    }
    w.finish = session.finish().err();
    w
}

/// Counts a read's outcome against the key's last write.
fn judge_read(
    w: &mut Worked,
    o: &Options,
    key: &KeyBuf,
    tracked: u32,
    status: Status,
    seen: Option<Seen>,
) {
    let certain = tracked & UNCERTAIN == 0 && tracked != 0;
    let bad = match (status, seen) {
        // Queued: an earlier version, or none, while a later write may
        // still wait in the queue.
        (Status::Ok, Some(Seen::Earlier)) => certain && !o.queued,
        (Status::Ok, Some(Seen::Wrong)) => true,
        (Status::NotFound, _) if o.queued => {
            w.pending_reads += 1;
            false
        }
        (Status::NotFound, _) => certain,
        _ => false,
    };
    if bad {
        w.bad_reads += 1;
        w.bad_read_example.get_or_insert_with(|| {
            format!(
                "read {:?}: {} after version {} was written",
                String::from_utf8_lossy(key.stored()),
                match seen {
                    None => "no value".to_string(),
                    Some(seen) => format!("{seen:?} value"),
                },
                tracked & VERSION
            )
        });
    }
}

/// Records a call's latency and status; returns whether it counts as a
/// success (a read that found no queued write yet does).
fn record(
    w: &mut Worked,
    kind: usize,
    status: Status,
    elapsed: Duration,
    session: &dyn Session,
) -> bool {
    w.latency[kind].record(elapsed.as_nanos() as u64);
    // A read that finds nothing is no failed call: judge_read tells
    // whether a write was lost.
    if status == Status::Ok || (kind == READ && status == Status::NotFound) {
        return true;
    }
    w.statuses[kind][status as usize] += 1;
    w.messages
        .entry((kind, status as usize))
        .or_insert_with(|| session.last_error());
    false
}

fn verify_by_reading(
    target: &dyn Target,
    o: &Options,
    run: u64,
    worked: &[Worked],
    progress: &Progress,
) -> Verified {
    let counters: Vec<Counter> = worked.iter().map(|_| Counter::default()).collect();
    let errors = Counter::default();
    let done = AtomicBool::new(false);
    let total: u64 = worked.iter().map(|w| w.versions.len() as u64).sum();
    let started = Instant::now();
    let mut verified = std::thread::scope(|s| {
        // Each thread reads back the keys its writer wrote, in parallel.
        let threads: Vec<_> = worked
            .iter()
            .enumerate()
            .map(|(t, w)| {
                let (counter, errors) = (&counters[t], &errors);
                s.spawn(move || {
                    let mut session = target.session();
                    let mut key = KeyBuf::new(&o.bucket);
                    let mut v = Verified::default();
                    for (index, &tracked) in w.versions.iter().enumerate() {
                        let index = index as u64;
                        key.set(workload::key(run, t, index));
                        let mut seen = None;
                        let started = Instant::now();
                        let status = session.read(&key, &mut |value| {
                            seen = Some(classify(&w.values, index, tracked, value))
                        });
                        v.latency.record(started.elapsed().as_nanos() as u64);
                        v.keys += 1;
                        match status {
                            Status::Ok | Status::NotFound => v.judge(
                                || String::from_utf8_lossy(key.stored()).into_owned(),
                                tracked,
                                seen,
                            ),
                            status => {
                                v.errors[status as usize] += 1;
                                v.messages
                                    .entry(status as usize)
                                    .or_insert_with(|| session.last_error());
                                errors.0.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        counter.0.store(index + 1, Ordering::Relaxed);
                    }
                    v
                })
            })
            .collect();
        let (counters, errors, done) = (&counters, &errors, &done);
        let watcher = s.spawn(move || {
            progress.watch(
                ("verifying", "keys"),
                started,
                counters,
                Some(total),
                errors,
                done,
            )
        });
        let mut all = Verified::default();
        for thread in threads {
            all.merge(thread.join().expect("a verifying thread panicked"));
        }
        done.store(true, Ordering::Relaxed);
        watcher.join().expect("the progress thread panicked");
        all
    });
    verified.seconds = started.elapsed().as_secs_f64();
    verified
}

fn verify_by_listing(
    target: &dyn Target,
    o: &Options,
    run: u64,
    worked: &[Worked],
    progress: &Progress,
) -> Verified {
    progress.note("verifying: listing the run's keys");
    let started = Instant::now();
    let mut v = Verified::default();
    let mut seen: Vec<Vec<bool>> = worked
        .iter()
        .map(|w| vec![false; w.versions.len()])
        .collect();
    let prefix = format!("{}-", workload::run_tag(run));
    // Pages of about 8 MiB, at most 10,000 entries: each page is a request
    // and, on etcd 3.4, each request walks the rest of the range to count
    // it, so fewer, larger pages make listing a million keys minutes faster.
    let page = (8 << 20) / (o.value_size + 64);
    let page = page.clamp(16, 10_000);
    let listed = target.list(&o.bucket, &prefix, page, &mut |key, value| {
        let Some((t, index)) = workload::parse_key(run, key)
            .filter(|&(t, i)| t < worked.len() && (i as usize) < worked[t].versions.len())
        else {
            v.unexpected += 1;
            return;
        };
        if std::mem::replace(&mut seen[t][index as usize], true) {
            // Listed twice: a paging bug, counted as a wrong value.
            v.wrong += 1;
            if v.examples.len() < 5 {
                v.examples.push(format!("{key}: listed twice"));
            }
            return;
        }
        let w = &worked[t];
        let tracked = w.versions[index as usize];
        v.keys += 1;
        v.judge(
            || key.to_owned(),
            tracked,
            Some(classify(&w.values, index, tracked, value)),
        );
    });
    // Keys the listing did not return are missing, unless the listing
    // failed: then they are unchecked, and counted under its status.
    let failed = listed.err();
    if let Some(f) = &failed {
        v.messages.insert(f.status as usize, f.message.clone());
    }
    for (t, w) in worked.iter().enumerate() {
        for (index, &tracked) in w.versions.iter().enumerate() {
            if !seen[t][index] {
                v.keys += 1;
                match &failed {
                    Some(f) => v.errors[f.status as usize] += 1,
                    None => v.judge(
                        || workload::key(run, t, index as u64).to_string(),
                        tracked,
                        None,
                    ),
                }
            }
        }
    }
    v.seconds = started.elapsed().as_secs_f64();
    v
}

// --- progress --------------------------------------------------------------

struct Progress {
    enabled: bool,
    tty: bool,
}

impl Progress {
    fn new(o: &Options) -> Progress {
        Progress {
            enabled: !o.quiet,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn note(&self, text: &str) {
        if self.enabled {
            eprintln!("{text}");
        }
    }

    /// Until `done`: on a terminal, one line rewritten four times a
    /// second; otherwise a plain line each second.
    /// `phase`: what is counted, and the unit, e.g. `("writing", "ops")`.
    fn watch(
        &self,
        (phase, unit): (&str, &str),
        started: Instant,
        counters: &[Counter],
        total: Option<u64>,
        errors: &Counter,
        done: &AtomicBool,
    ) {
        if !self.enabled {
            return;
        }
        let every = if self.tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(1)
        };
        let (mut last_count, mut last_time) = (0u64, started);
        let mut next = started + every;
        let mut printed = false;
        loop {
            // Short naps, so that a short run does not wait for a tick.
            while Instant::now() < next && !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if done.load(Ordering::Relaxed) {
                break;
            }
            let now = Instant::now();
            let count: u64 = counters.iter().map(|c| c.0.load(Ordering::Relaxed)).sum();
            let rate = (count - last_count) as f64 / (now - last_time).as_secs_f64();
            (last_count, last_time) = (count, now);
            let of = total.map_or(String::new(), |t| format!(" of {}", thousands(t)));
            let line = format!(
                "[{:6.1}s] {phase}: {}{of} {unit}, {} {unit}/s, {} errors",
                (now - started).as_secs_f64(),
                thousands(count),
                thousands(rate as u64),
                thousands(errors.0.load(Ordering::Relaxed)),
            );
            if self.tty {
                eprint!("\r\x1b[2K{line}");
                let _ = std::io::stderr().flush();
                printed = true;
            } else {
                eprintln!("{line}");
            }
            next += every;
        }
        if printed {
            eprint!("\r\x1b[2K");
        }
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// --- the summary -------------------------------------------------------------

struct Summary<'a> {
    o: &'a Options,
    /// What was measured: the library, or an engine used directly.
    described: String,
    run: u64,
    worked: Vec<Worked>,
    run_secs: f64,
    flush: Option<Failure>,
    flush_secs: f64,
    /// Peak RSS once the writes were done (and flushed), before the read-back.
    rss_written: Option<u64>,
    verified: Option<Verified>,
    close: Option<Failure>,
}

/// The largest memory the process held (Linux: VmHWM), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl Summary<'_> {
    fn latency(&self, kind: usize) -> Histogram {
        let mut h = Histogram::default();
        for w in &self.worked {
            h.merge(&w.latency[kind]);
        }
        h
    }

    /// (kind, status, count, first message) for every failed call.
    fn errors(&self) -> Vec<(usize, usize, u64, String)> {
        let mut out = Vec::new();
        for kind in 0..3 {
            for status in 0..STATUSES {
                let count: u64 = self.worked.iter().map(|w| w.statuses[kind][status]).sum();
                if count > 0 {
                    let message = self
                        .worked
                        .iter()
                        .find_map(|w| w.messages.get(&(kind, status)))
                        .cloned()
                        .unwrap_or_default();
                    out.push((kind, status, count, message));
                }
            }
        }
        out
    }

    fn bad_reads(&self) -> u64 {
        self.worked.iter().map(|w| w.bad_reads).sum()
    }

    fn finish_failures(&self) -> Vec<&Failure> {
        self.worked
            .iter()
            .filter_map(|w| w.finish.as_ref())
            .collect()
    }

    fn lost(&self) -> bool {
        let verified = self
            .verified
            .as_ref()
            .is_some_and(|v| v.missing + v.wrong + v.errors.iter().sum::<u64>() > 0);
        verified
            || self.bad_reads() > 0
            || self.flush.is_some()
            || self.close.is_some()
            || !self.finish_failures().is_empty()
    }

    fn exit_code(&self) -> u8 {
        match (self.lost(), self.errors().is_empty()) {
            (true, _) => 1,
            (false, false) => 3,
            (false, true) => 0,
        }
    }

    fn ops(&self) -> u64 {
        (0..3).map(|k| self.latency(k).count()).sum()
    }

    fn writes(&self) -> u64 {
        self.latency(WRITE).count()
    }

    fn mode(&self) -> &'static str {
        match (self.o.queued, self.o.mix.read + self.o.mix.update > 0) {
            (true, false) => "queued writes",
            (false, false) => "direct writes",
            (true, true) => "mix, queued writes",
            (false, true) => "mix, direct calls",
        }
    }

    fn backend(&self) -> String {
        self.o.backend.clone().unwrap_or_else(|| "(default)".into())
    }

    fn to_json(&self) -> Value {
        let o = self.o;
        let latency = |h: &Histogram| {
            json!({
                "count": h.count(),
                "ops_per_sec": h.count() as f64 / self.run_secs,
                "mean_us": h.mean() as f64 / 1e3,
                "p50_us": h.quantile(0.5) as f64 / 1e3,
                "p90_us": h.quantile(0.9) as f64 / 1e3,
                "p99_us": h.quantile(0.99) as f64 / 1e3,
                "max_us": h.max() as f64 / 1e3,
            })
        };
        let mut kinds = serde_json::Map::new();
        for (k, name) in KINDS.iter().enumerate() {
            let h = self.latency(k);
            if h.count() > 0 {
                kinds.insert(name.to_string(), latency(&h));
            }
        }
        let failure = |f: &Failure| json!({"status": status_name(f.status), "message": f.message});
        let verification = self.verified.as_ref().map(|v| {
            let mut errors = serde_json::Map::new();
            for (s, &n) in v.errors.iter().enumerate().filter(|(_, n)| **n > 0) {
                errors.insert(
                    name_of(s).into(),
                    json!({"count": n, "first_message": v.messages.get(&s)}),
                );
            }
            let mut out = json!({
                "method": match o.verify { Verify::List => "list", _ => "read" },
                "keys": v.keys,
                "ok": v.ok,
                "missing": v.missing,
                "wrong": v.wrong,
                "uncertain": v.uncertain,
                "unexpected": v.unexpected,
                "errors": errors,
                "examples": v.examples,
                "seconds": v.seconds,
            });
            if o.verify == Verify::Read {
                out["reads"] = latency(&v.latency);
                out["reads"]["ops_per_sec"] = json!(v.latency.count() as f64 / v.seconds);
            }
            out
        });
        json!({
            "tool": "tether-stress",
            // The library's, not this tool's (a crate of its own).
            "library_version": library_version(),
            "target": self.described,
            "engine_direct": o.engine_direct,
            "backend": o.backend,
            "bucket": o.bucket,
            "run": workload::run_tag(self.run),
            "threads": o.threads,
            "value_size": o.value_size,
            "mode": self.mode(),
            "queued": o.queued,
            "mix": {"read": o.mix.read, "write": o.mix.write, "update": o.mix.update},
            "ops": self.ops(),
            "seconds": self.run_secs,
            "ops_per_sec": self.ops() as f64 / self.run_secs,
            "kinds": kinds,
            "flush": o.queued.then(|| json!({
                "seconds": self.flush_secs,
                "failure": self.flush.as_ref().map(failure),
                "applied_writes_per_sec": self.writes() as f64 / (self.run_secs + self.flush_secs),
            })),
            "errors": self.errors().iter().map(|(k, s, n, m)| json!({
                "kind": KINDS[*k], "status": name_of(*s), "count": n, "first_message": m,
            })).collect::<Vec<_>>(),
            "reads_not_applied_yet": self.worked.iter().map(|w| w.pending_reads).sum::<u64>(),
            "bad_reads": self.bad_reads(),
            "bad_read_example": self.worked.iter().find_map(|w| w.bad_read_example.clone()),
            "thread_finish_failures": self.finish_failures().into_iter().map(failure).collect::<Vec<_>>(),
            "verification": verification,
            "close": self.close.as_ref().map(failure),
            "peak_rss_bytes": peak_rss(),
            "peak_rss_after_writes_bytes": self.rss_written,
            "lost_writes": self.lost(),
            "exit_code": self.exit_code(),
        })
    }

    fn print(&self) {
        let o = self.o;
        let stop = match o.stop {
            Stop::Ops(n) => format!("{} ops", thousands(n)),
            Stop::Duration(d) => format!("{:.1} s", d.as_secs_f64()),
        };
        println!(
            "tether-stress: {} on backend {}, {}, {} thread(s), {stop}, {}-byte values, bucket {:?}, run {}",
            self.described,
            self.backend(),
            self.mode(),
            o.threads,
            o.value_size,
            o.bucket,
            workload::run_tag(self.run),
        );
        println!(
            "ran {} ops in {:.2} s: {} ops/s",
            thousands(self.ops()),
            self.run_secs,
            thousands((self.ops() as f64 / self.run_secs) as u64)
        );
        println!();
        println!(
            "{:<16} {:>11} {:>11} {:>10} {:>10} {:>10} {:>10}",
            "operation", "count", "ops/s", "p50 µs", "p90 µs", "p99 µs", "max µs"
        );
        let row = |name: &str, h: &Histogram, secs: f64| {
            let us = |ns: u64| format!("{:.1}", ns as f64 / 1e3);
            println!(
                "{name:<16} {:>11} {:>11} {:>10} {:>10} {:>10} {:>10}",
                thousands(h.count()),
                thousands((h.count() as f64 / secs) as u64),
                us(h.quantile(0.5)),
                us(h.quantile(0.9)),
                us(h.quantile(0.99)),
                us(h.max()),
            );
        };
        for (k, name) in KINDS.iter().enumerate() {
            let h = self.latency(k);
            if h.count() > 0 {
                let name = match (k, o.queued) {
                    (WRITE, true) => "write (queued)".to_string(),
                    (WRITE, false) => "write (direct)".to_string(),
                    _ => name.to_string(),
                };
                row(&name, &h, self.run_secs);
            }
        }
        if let Some(v) = self.verified.as_ref().filter(|_| o.verify == Verify::Read) {
            row("read (verify)", &v.latency, v.seconds);
        }
        println!();
        if o.queued {
            println!(
                "flush: {:.2} s; writes applied, queueing and flush: {} writes/s{}",
                self.flush_secs,
                thousands((self.writes() as f64 / (self.run_secs + self.flush_secs)) as u64),
                match &self.flush {
                    None => String::new(),
                    Some(f) => format!("; FAILED: {}: {}", status_name(f.status), f.message),
                }
            );
        }
        let errors = self.errors();
        if errors.is_empty() {
            println!("errors: none");
        } else {
            println!("errors:");
            for (k, s, n, m) in errors {
                println!(
                    "  {:<7} {:<24} {:>9}  first: {m}",
                    KINDS[k],
                    name_of(s),
                    thousands(n)
                );
            }
        }
        let pending: u64 = self.worked.iter().map(|w| w.pending_reads).sum();
        if pending > 0 {
            println!(
                "reads of queued writes not applied yet (expected): {}",
                thousands(pending)
            );
        }
        if self.bad_reads() > 0 {
            println!(
                "reads that missed a write: {} (first: {})",
                thousands(self.bad_reads()),
                self.worked
                    .iter()
                    .find_map(|w| w.bad_read_example.clone())
                    .unwrap_or_default()
            );
        }
        for f in self.finish_failures() {
            println!(
                "a thread's last batch FAILED: {}: {}",
                status_name(f.status),
                f.message
            );
        }
        match &self.verified {
            None => println!("verification: skipped (--verify none)"),
            Some(v) => {
                println!(
                    "verification ({}): {} keys in {:.2} s: {} ok, {} missing, {} wrong{}{}",
                    if o.verify == Verify::List {
                        "tether_list"
                    } else {
                        "tether_read"
                    },
                    thousands(v.keys),
                    v.seconds,
                    thousands(v.ok),
                    thousands(v.missing),
                    thousands(v.wrong),
                    match v.uncertain {
                        0 => String::new(),
                        n => format!(
                            ", {} after a failed call (any outcome accepted)",
                            thousands(n)
                        ),
                    },
                    match v.unexpected {
                        0 => String::new(),
                        n => format!(", {} unexpected keys listed", thousands(n)),
                    },
                );
                for (s, &n) in v.errors.iter().enumerate().filter(|(_, n)| **n > 0) {
                    println!(
                        "  could not check {} keys: {}: {}",
                        thousands(n),
                        name_of(s),
                        v.messages.get(&s).map_or("", String::as_str)
                    );
                }
                for example in &v.examples {
                    println!("  {example}");
                }
            }
        }
        if let Some(f) = &self.close {
            println!("close FAILED: {}: {}", status_name(f.status), f.message);
        }
        if let (Some(written), Some(end)) = (self.rss_written, peak_rss()) {
            println!(
                "peak RSS: {:.1} MB once written{}, {:.1} MB in all",
                written as f64 / 1e6,
                if o.queued { " and flushed" } else { "" },
                end as f64 / 1e6
            );
        }
        println!(
            "result: {}",
            match self.exit_code() {
                0 => "OK, no write lost",
                1 => "WRITES LOST OR WRONG",
                _ => "no write lost, but some calls failed",
            }
        );
    }
}

/// The C name of status number `s`.
fn name_of(s: usize) -> &'static str {
    const ALL: [Status; STATUSES] = [
        Status::Ok,
        Status::NotFound,
        Status::InvalidArgument,
        Status::Config,
        Status::UnknownBackend,
        Status::Unavailable,
        Status::TooLarge,
        Status::NotRunning,
        Status::Conflict,
        Status::Io,
        Status::Internal,
    ];
    status_name(ALL[s])
}

/// The version of the library this tool is linked with, as its C ABI says.
fn library_version() -> String {
    // SAFETY: tether_version returns a static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(tetherdb::ffi::tether_version()) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str]) -> Options {
        let args = args.iter().chain(&["--quiet"]).map(|s| s.to_string());
        match args::parse(args).unwrap() {
            Parsed::Run(o) => o,
            Parsed::Help => unreachable!(),
        }
    }

    /// The library on a local store in a temporary directory, as the tool
    /// opens it without --config.
    fn library(o: &Options, run: u64) -> (Box<dyn Target>, Option<TempDir>) {
        let (source, dir) = configuration(o, run).unwrap();
        let target = CAbi::open(&source, o.backend.as_deref(), &o.bucket).unwrap();
        (Box::new(target), dir)
    }

    #[test]
    fn a_mixed_run_on_local_loses_nothing() {
        for verify in ["read", "list"] {
            let o = options(&[
                "--threads",
                "3",
                "--writes",
                "3000",
                "--mix",
                "2:3:1",
                "--keys",
                "200",
                "--verify",
                verify,
            ]);
            let (target, _dir) = library(&o, 1);
            let summary = exercise(target, &o, 1);
            assert_eq!(summary.exit_code(), 0, "{:#}", summary.to_json());
            let v = summary.verified.as_ref().unwrap();
            let keys: u64 = summary.worked.iter().map(|w| w.versions.len() as u64).sum();
            assert_eq!((v.keys, v.ok, v.missing, v.wrong), (keys, keys, 0, 0));
            assert_eq!(summary.ops(), 3000);
            // With 200 keys a thread, writes overwrite: versions above 1.
            assert!(summary
                .worked
                .iter()
                .all(|w| w.versions.iter().any(|&v| v > 1)));
        }
    }

    #[test]
    fn queued_writes_are_flushed_and_verified() {
        let o = options(&[
            "--threads",
            "2",
            "--writes",
            "2000",
            "--queued",
            "--mix",
            "1:1:0",
        ]);
        let (target, _dir) = library(&o, 2);
        let summary = exercise(target, &o, 2);
        assert_eq!(summary.exit_code(), 0, "{:#}", summary.to_json());
        assert!(summary.flush.is_none());
    }

    /// Fault injection: a target that acknowledges writes it drops or
    /// stores wrongly. The tool must notice every one.
    struct Faulty {
        inner: Box<dyn Target>,
    }

    struct FaultySession<'a> {
        inner: Box<dyn Session + 'a>,
        writes: u64,
    }

    impl Session for FaultySession<'_> {
        fn write(&mut self, key: &KeyBuf, value: &[u8], queued: bool) -> Status {
            self.writes += 1;
            match self.writes % 10 {
                // Every tenth write is acknowledged and dropped.
                0 => Status::Ok,
                // Every tenth but five is stored with a flipped last byte.
                5 => {
                    let mut torn = value.to_vec();
                    *torn.last_mut().unwrap() ^= 1;
                    self.inner.write(key, &torn, queued)
                }
                _ => self.inner.write(key, value, queued),
            }
        }
        fn update(&mut self, key: &KeyBuf, value: &[u8]) -> Status {
            self.inner.update(key, value)
        }
        fn read(&mut self, key: &KeyBuf, check: &mut dyn FnMut(&[u8])) -> Status {
            self.inner.read(key, check)
        }
        fn last_error(&self) -> String {
            self.inner.last_error()
        }
    }

    impl Target for Faulty {
        fn describe(&self) -> String {
            "faulty".into()
        }
        fn session(&self) -> Box<dyn Session + '_> {
            Box::new(FaultySession {
                inner: self.inner.session(),
                writes: 0,
            })
        }
        fn flush(&self) -> target::Outcome {
            self.inner.flush()
        }
        fn list(
            &self,
            b: &str,
            p: &str,
            page: usize,
            visit: &mut dyn FnMut(&str, &[u8]),
        ) -> target::Outcome {
            self.inner.list(b, p, page, visit)
        }
        fn close(self: Box<Self>) -> target::Outcome {
            self.inner.close()
        }
    }

    #[test]
    fn dropped_and_torn_writes_are_caught() {
        for verify in ["read", "list"] {
            // One thread, every write a new key: exactly 10 dropped, 10 torn.
            let o = options(&["--threads", "1", "--writes", "100", "--verify", verify]);
            let (inner, _dir) = library(&o, 3);
            let summary = exercise(Box::new(Faulty { inner }), &o, 3);
            let v = summary.verified.as_ref().unwrap();
            assert_eq!(
                (v.keys, v.ok, v.missing, v.wrong),
                (100, 80, 10, 10),
                "{verify}"
            );
            assert_eq!(summary.exit_code(), 1);
            assert_eq!(summary.to_json()["lost_writes"], true);
        }
    }

    #[test]
    fn reads_notice_a_lost_direct_write() {
        // Reads after a dropped direct write find nothing: a lost write.
        let o = options(&[
            "--threads",
            "1",
            "--writes",
            "400",
            "--mix",
            "1:1:0",
            "--verify",
            "none",
        ]);
        let (inner, _dir) = library(&o, 4);
        let summary = exercise(Box::new(Faulty { inner }), &o, 4);
        assert!(summary.bad_reads() > 0);
        assert_eq!(summary.exit_code(), 1);
    }

    #[test]
    fn keys_after_a_failed_call_accept_any_version_but_no_garbage() {
        let mut v = Verified::default();
        let name = || "k".to_string();
        v.judge(name, 3 | UNCERTAIN, Some(Seen::Earlier));
        v.judge(name, 3 | UNCERTAIN, None);
        v.judge(name, 3 | UNCERTAIN, Some(Seen::Current));
        v.judge(name, 3 | UNCERTAIN, Some(Seen::Wrong));
        assert_eq!((v.ok, v.missing, v.wrong, v.uncertain), (3, 0, 1, 4));
        let mut v = Verified::default();
        v.judge(name, 3, Some(Seen::Earlier));
        v.judge(name, 3, None);
        v.judge(name, 0, None);
        assert_eq!((v.ok, v.missing, v.wrong), (1, 1, 1));
    }

    #[test]
    fn a_backend_the_build_lacks_is_named_by_the_library() {
        // Whichever those are: dynamodb until its backend lands.
        for name in tetherdb::engines_not_built() {
            let o = options(&["--backend", name]);
            let (target, _dir) = library(&o, 5);
            let error = probe(&*target, &o, 5).unwrap_err();
            assert!(error.contains("TETHER_UNKNOWN_BACKEND"), "{error}");
            assert!(error.contains(&format!("has no {name} backend")), "{error}");
            target.close().unwrap();
        }
    }
}
