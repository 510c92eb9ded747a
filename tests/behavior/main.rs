//! The behaviour suite: every call's semantics (docs/c-api.md), each case
//! written once and run on every engine of [`ENGINES`] that has the
//! capabilities it needs, as the trial `ENGINE::CASE`:
//! `cargo test --test behavior -- etcd::` runs etcd's. Its layout, how an
//! engine joins and what belongs here: tests/behavior/README.md.

#[path = "../common/mod.rs"]
mod common;

mod engine;
mod fixtures;

mod c_abi;
mod counters;
mod expiry;
mod keys;
mod listing;
mod queue;
mod races;
mod single_key;
mod threads;
mod versions;

use engine::Cap::*;
use engine::Engine;

/// The engines, one line each: its name (the backend's), the fixture that
/// starts its real server and gives each case a key space there, its
/// capabilities, and the share in percent of a case's bulk counts it runs.
#[rustfmt::skip]
static ENGINES: &[Engine] = &[
    Engine { name: "local", fixture: &fixtures::LOCAL, caps: &[OrderedListing, AtomicConditions], bulk: 100 },
    Engine { name: "tiered", fixture: &fixtures::TIERED, caps: &[OrderedListing, AtomicConditions], bulk: 100 },
    #[cfg(feature = "etcd")]
    Engine { name: "etcd", fixture: &fixtures::ETCD, caps: &[OrderedListing, AtomicConditions, SharedStore], bulk: 25 },
    #[cfg(feature = "dynamodb")]
    Engine { name: "dynamodb", fixture: &fixtures::DYNAMODB, caps: &[AtomicConditions, SharedStore], bulk: 10 },
];

/// The number of keys in `bucket`, listed in one page: on dynamodb each
/// page scans the table anew, and common::count's pages of 1000 would make
/// a count of thousands several scans.
fn count(db: &tetherdb::Db, bucket: &str) -> usize {
    common::all_pages(db, Some(bucket), None, 100_000)
        .iter()
        .map(|p| p.entries.len())
        .sum()
}

fn main() {
    // A race's second process: this binary again (races.rs).
    if let Some(race) = races::child_role() {
        races::child_main(&race);
    }
    let mut args = libtest_mimic::Arguments::from_args();
    // RUST_TEST_THREADS as the built-in harness reads it; by default twice
    // as many threads as cores, since the cases mostly wait on a server.
    if args.test_threads.is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        args.test_threads = Some(
            std::env::var("RUST_TEST_THREADS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(2 * cores),
        );
    }
    // The areas with the longest cases first, so that those start first.
    let cases = [
        races::CASES,
        queue::CASES,
        threads::CASES,
        versions::CASES,
        expiry::CASES,
        single_key::CASES,
        listing::CASES,
        counters::CASES,
        keys::CASES,
        c_abi::CASES,
    ];
    let conclusion = libtest_mimic::run(&args, engine::trials(ENGINES, &cases));
    for engine in ENGINES {
        engine.fixture.stop();
    }
    conclusion.exit();
}
