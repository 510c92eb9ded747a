//! Whole runs on a local store in a temporary directory, as the tool opens
//! it without --config: mixed and queued runs lose nothing, and a faulty
//! target that drops or tears writes is caught by every kind of check.

use super::*;
use target::Session;

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
