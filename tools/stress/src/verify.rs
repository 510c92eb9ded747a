//! Whether any write was lost: a read in the timed phase judged against its
//! key's last write, and the read-back after it, which checks every key a
//! thread wrote either by reading each one (`--verify read`, in parallel) or
//! by listing the run's keys (`--verify list`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tetherdb::Status;

use crate::args::Options;
use crate::histogram::Histogram;
use crate::progress::{Counter, Progress};
use crate::target::{KeyBuf, Target};
use crate::work::Worked;
use crate::workload::{self, classify, Seen, UNCERTAIN, VERSION};
use crate::STATUSES;

/// What the read-back found.
#[derive(Default)]
pub struct Verified {
    pub keys: u64,
    pub ok: u64,
    pub missing: u64,
    pub wrong: u64,
    /// Keys whose last write failed with an unknown outcome: any version
    /// they hold, or none, is accepted.
    pub uncertain: u64,
    /// Keys of this run that the listing returned and no thread wrote.
    pub unexpected: u64,
    pub errors: [u64; STATUSES],
    pub messages: BTreeMap<usize, String>,
    pub examples: Vec<String>,
    pub latency: Histogram,
    pub seconds: f64,
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

/// Counts a read's outcome against the key's last write.
pub fn judge_read(
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

pub fn verify_by_reading(
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

pub fn verify_by_listing(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
