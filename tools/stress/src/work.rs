//! The timed phase: each thread's share of the operations (its plan), the
//! threads started together and watched by the progress line, and the work
//! loop that picks read, write or update, calls the target and records the
//! latency, the status and the version each key was last written with.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use tetherdb::Status;

use crate::args::{Options, Stop};
use crate::histogram::Histogram;
use crate::progress::{Counter, Progress};
use crate::target::{Failure, KeyBuf, Session, Target};
use crate::verify::judge_read;
use crate::workload::{self, classify, Rng, Values, UNCERTAIN, VERSION};
use crate::{READ, STATUSES, UPDATE, WRITE};

/// Keys per thread with --duration and no --keys: bounds the version table
/// at 4 MB per thread however long the run.
const DURATION_KEYS: u64 = 1_000_000;

/// What one thread did in the timed phase.
pub struct Worked {
    pub latency: [Histogram; 3],
    pub statuses: [[u64; STATUSES]; 3],
    pub messages: BTreeMap<(usize, usize), String>,
    /// Reads that found no value, or a wrong or stale one, where the last
    /// write was certain to be applied: lost or wrong writes.
    pub bad_reads: u64,
    pub bad_read_example: Option<String>,
    /// Reads of a queued write not applied yet: expected.
    pub pending_reads: u64,
    /// The version last written, per key index (see workload.rs).
    pub versions: Vec<u32>,
    pub values: Values,
    pub finish: Option<Failure>,
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

pub fn write_phase(
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
