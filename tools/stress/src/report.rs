//! The summary of a run: what each thread did, the flush, the read-back and
//! the close, printed as a table or as JSON (`--json`), with the exit code
//! they add up to; and the helpers it prints with (thousands separators,
//! peak RSS, status names, the library's version).

use serde_json::{json, Value};
use tetherdb::Status;

use crate::args::{Options, Stop, Verify};
use crate::histogram::Histogram;
use crate::target::{status_name, Failure};
use crate::verify::Verified;
use crate::work::Worked;
use crate::workload;
use crate::{KINDS, STATUSES, WRITE};

pub fn thousands(n: u64) -> String {
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

pub struct Summary<'a> {
    pub o: &'a Options,
    /// What was measured: the library, or an engine used directly.
    pub described: String,
    pub run: u64,
    pub worked: Vec<Worked>,
    pub run_secs: f64,
    pub flush: Option<Failure>,
    pub flush_secs: f64,
    /// Peak RSS once the writes were done (and flushed), before the read-back.
    pub rss_written: Option<u64>,
    pub verified: Option<Verified>,
    pub close: Option<Failure>,
}

/// The largest memory the process held (Linux: VmHWM), in bytes.
pub fn peak_rss() -> Option<u64> {
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

    pub fn bad_reads(&self) -> u64 {
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

    pub fn exit_code(&self) -> u8 {
        match (self.lost(), self.errors().is_empty()) {
            (true, _) => 1,
            (false, false) => 3,
            (false, true) => 0,
        }
    }

    pub fn ops(&self) -> u64 {
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

    pub fn to_json(&self) -> Value {
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

    pub fn print(&self) {
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
