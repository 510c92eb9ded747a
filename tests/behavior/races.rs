//! Races on one key that must lose no write: increments (plain and
//! sharded), and the read-version, conditional-write loop that versions
//! allow (docs/design.md, Versions and Counters). On `local`, whose store
//! one process holds, 16 threads of this process race; on a server, 8
//! threads in each of two processes: this one and a child, the same
//! binary run with `RACE_CHILD` set (see [`child_main`]), so that the
//! engine's atomicity is tested across handles and processes, not only
//! across the threads of one handle.
//!
//! Each race prints its figures (successes, conflicts, the final value)
//! on stderr. `TETHER_RACE_ROUNDS` sets each thread's count.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tetherdb::{Db, Error, WriteOptions};

use crate::engine::{cases, Cap, Space};

/// Set in a child's environment: the race it runs (a [`Race`]'s name).
const RACE_CHILD: &str = "TETHERDB_RACE_CHILD";
/// The child's configuration, threads and rounds.
const RACE_CONFIG: &str = "TETHERDB_RACE_CONFIG";
const RACE_THREADS: &str = "TETHERDB_RACE_THREADS";
const RACE_ROUNDS: &str = "TETHERDB_RACE_ROUNDS";

/// No outbox: both processes open a handle on one key space, and nothing
/// here is queued.
const NO_QUEUE: &str = r#"{"durable": false}"#;

/// The shards of the sharded race.
const SHARDS: u32 = 8;

/// How long a child may take to open its handle, and to finish its race:
/// bounds that only keep a broken build from hanging the suite.
const READY_WITHIN: Duration = Duration::from_secs(120);
const DONE_WITHIN: Duration = Duration::from_secs(900);

cases![
    #[needs(AtomicConditions)]
    racing_increments_count_every_one,
    #[needs(AtomicConditions)]
    racing_sharded_increments_count_every_one,
    #[needs(AtomicConditions)]
    racing_conditional_writes_across_processes_lose_none,
];

#[derive(Clone, Copy, Debug)]
enum Race {
    /// `increment` by 1, unsharded.
    Increments,
    /// `increment` by 1 over [`SHARDS`] shards.
    Sharded,
    /// Read the value and its version, write one more at that version.
    Conditional,
}

impl Race {
    fn name(self) -> &'static str {
        match self {
            Race::Increments => "increments",
            Race::Sharded => "sharded",
            Race::Conditional => "conditional",
        }
    }

    fn named(name: &str) -> Race {
        [Race::Increments, Race::Sharded, Race::Conditional]
            .into_iter()
            .find(|race| race.name() == name)
            .unwrap_or_else(|| panic!("no race named {name:?}"))
    }
}

/// What one process's threads did.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    won: usize,
    conflicts: usize,
}

/// `threads` threads of `rounds` rounds each of `race` through `db`.
fn run(db: &Db, race: Race, threads: usize, rounds: usize) -> Tally {
    let (won, conflicts) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..rounds {
                    let won_round = match race {
                        Race::Increments => increment(db, 0),
                        Race::Sharded => increment(db, SHARDS),
                        Race::Conditional => conditional_increment(db),
                    };
                    match won_round {
                        true => won.fetch_add(1, Ordering::Relaxed),
                        false => conflicts.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
    });
    Tally {
        won: won.into_inner(),
        conflicts: conflicts.into_inner(),
    }
}

fn increment(db: &Db, shards: u32) -> bool {
    db.increment(None, Some("race"), "counter", 1, shards, false)
        .unwrap_or_else(|e| panic!("increment: {e}"));
    true
}

/// One round of the loop versions allow; `false` when another writer
/// changed the key between the read and the write.
fn conditional_increment(db: &Db) -> bool {
    let (value, version) = db.read_ex(None, Some("race"), "counter", true).unwrap();
    let count: u64 = std::str::from_utf8(&value).unwrap().parse().unwrap();
    let at_version = WriteOptions {
        if_version: Some(version),
        ..WriteOptions::default()
    };
    let next = (count + 1).to_string();
    match db.write_ex(None, Some("race"), "counter", next.as_bytes(), &at_version) {
        Ok(_) => true,
        Err(Error::Conflict { .. }) => false,
        Err(e) => panic!("conditional write: {e}"),
    }
}

/// Each thread's rounds: `TETHER_RACE_ROUNDS`, else `full` on `local` and
/// etcd, and `moto` on dynamodb, whose stand-in serves one request at a
/// time (fixtures.rs).
fn rounds(s: &Space, full: usize, moto: usize) -> usize {
    if let Some(rounds) = std::env::var("TETHER_RACE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
    {
        return rounds;
    }
    match s.name() {
        "dynamodb" => moto,
        _ => full,
    }
}

/// Runs `race` on `s`: 16 threads here on a store one process holds
/// (`local`); 8 here and 8 in a child process elsewhere, started together,
/// on a store several share. Gives both processes'
/// tallies, summed, and prints them with `what` the final value is.
fn race(s: &Space, race: Race, rounds: usize) -> Tally {
    let config = patient(s.config(NO_QUEUE));
    let db = Db::open_json(Some(&config)).unwrap();
    if let Race::Conditional = race {
        db.write(None, Some("race"), "counter", b"0").unwrap();
    }
    let started = Instant::now();
    let (processes, tally) = match s.has(Cap::SharedStore) {
        false => (1, run(&db, race, 16, rounds)),
        true => {
            let mut child = Child::spawn(race, &patient(s.config(NO_QUEUE)), 8, rounds);
            child.expect("ready", READY_WITHIN);
            child.go();
            let here = run(&db, race, 8, rounds);
            let there = child.finish();
            let tally = Tally {
                won: here.won + there.won,
                conflicts: here.conflicts + there.conflicts,
            };
            (2, tally)
        }
    };
    let threads = 16 / processes;
    let value = match race {
        Race::Sharded => db.counter_total(None, Some("race"), "counter", SHARDS),
        _ => db.counter_total(None, Some("race"), "counter", 0),
    }
    .unwrap();
    eprintln!(
        "{}: {} race, {processes} process(es) x {threads} threads x {rounds} rounds in {:.1?}: \
         {} successes, {} conflicts, final value {value}",
        s.name(),
        race.name(),
        started.elapsed(),
        tally.won,
        tally.conflicts,
    );
    assert_eq!(
        value, tally.won as i64,
        "{} successes, {} conflicts",
        tally.won, tally.conflicts
    );
    assert_eq!(tally.won + tally.conflicts, 16 * rounds);
    db.close().unwrap();
    tally
}

/// `config` with a longer `timeout` for dynamodb: an increment retries
/// while others win for at most the timeout, and moto served one request
/// at a time (fixtures.rs) is far slower than DynamoDB.
fn patient(config: String) -> String {
    let mut config: serde_json::Value = serde_json::from_str(&config).unwrap();
    if let Some(section) = config.get_mut("dynamodb") {
        section["timeout"] = serde_json::json!(PATIENCE);
    }
    config.to_string()
}

const PATIENCE: u64 = 60;

fn racing_increments_count_every_one(s: &Space) {
    let tally = race(s, Race::Increments, rounds(s, 1000, 25));
    assert_eq!(tally.conflicts, 0, "an increment failed");
}

fn racing_sharded_increments_count_every_one(s: &Space) {
    race(s, Race::Sharded, rounds(s, 250, 25));
}

fn racing_conditional_writes_across_processes_lose_none(s: &Space) {
    let tally = race(s, Race::Conditional, rounds(s, 1000, 25));
    assert!(
        tally.conflicts > 0,
        "the writers never got in each other's way"
    );
    assert!(tally.won > 0);
}

/// A child process running a race, killed if the parent fails first.
struct Child {
    process: std::process::Child,
    /// The child's stdout, a line at a time, from a thread of its own, so
    /// that every wait for it is bounded.
    lines: mpsc::Receiver<String>,
    /// The child ends when this closes: the parent is gone or done.
    stdin: Option<ChildStdin>,
}

impl Child {
    fn spawn(race: Race, config: &str, threads: usize, rounds: usize) -> Child {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .env(RACE_CHILD, race.name())
            .env(RACE_CONFIG, config)
            .env(RACE_THREADS, threads.to_string())
            .env(RACE_ROUNDS, rounds.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the test binary runs again as a child");
        let stdout = process.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = process.stdin.take();
        Child {
            process,
            lines,
            stdin,
        }
    }

    /// The child's next line, which starts with `word`; a panic (and the
    /// child killed) when it says otherwise, ends, or takes longer.
    fn expect(&self, word: &str, within: Duration) -> String {
        let line = self
            .lines
            .recv_timeout(within)
            .unwrap_or_else(|e| panic!("the child said no {word:?} within {within:?}: {e}"));
        assert!(line.starts_with(word), "the child said {line:?}");
        line
    }

    fn go(&mut self) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin
            .write_all(b"go\n")
            .and_then(|()| stdin.flush())
            .unwrap();
    }

    /// The child's tally, once it has ended with success.
    fn finish(mut self) -> Tally {
        let line = self.expect("done", DONE_WITHIN);
        let numbers: Vec<usize> = line
            .split_whitespace()
            .skip(1)
            .map(|n| n.parse().unwrap())
            .collect();
        let give_up = Instant::now() + READY_WITHIN;
        let status = loop {
            if let Some(status) = self.process.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < give_up, "the child did not end");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "the child failed: {status}");
        Tally {
            won: numbers[0],
            conflicts: numbers[1],
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Ended already after `finish`; otherwise the parent failed.
        self.stdin.take();
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The race a child runs, when this process is one: `None` in the suite.
pub fn child_role() -> Option<String> {
    std::env::var(RACE_CHILD).ok()
}

/// A child's life: open a handle, say "ready", wait for "go", race, say
/// "done WON CONFLICTS". Its stdin closing before then (the parent gone)
/// ends it at once, so that no child outlives a failed parent.
pub fn child_main(race: &str) -> ! {
    let race = Race::named(race);
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let threads: usize = var(RACE_THREADS).parse().unwrap();
    let rounds: usize = var(RACE_ROUNDS).parse().unwrap();
    let db = Db::open_json(Some(&var(RACE_CONFIG))).unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut stdin = std::io::stdin();
    let mut go = [0u8; 3];
    if stdin.read_exact(&mut go).is_err() || &go != b"go\n" {
        std::process::exit(2);
    }
    std::thread::spawn(move || {
        let mut rest = [0u8; 64];
        while !matches!(stdin.read(&mut rest), Ok(0) | Err(_)) {}
        eprintln!("race child: the parent is gone");
        std::process::exit(2);
    });
    let tally = run(&db, race, threads, rounds);
    db.close().unwrap();
    println!("done {} {}", tally.won, tally.conflicts);
    std::io::stdout().flush().unwrap();
    std::process::exit(0);
}
