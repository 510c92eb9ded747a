//! What the suite is made of: engines and their capabilities, the fixture
//! that gives a case a key space of its own on an engine, and cases, each
//! made a trial per engine.

use libtest_mimic::{Completion, Trial};
use tetherdb::Db;

/// What one engine does and another does not. A case that needs a
/// capability is reported as ignored on an engine that lacks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// Listings come in ascending key order, so that `next` is the last
    /// key listed and `start_after` any position in that order (where an
    /// engine lacking it lists in an order of its own, and resumes only
    /// after a key it listed).
    OrderedListing,
    /// Its server checks a condition and applies the write in one atomic
    /// step also under concurrent requests, so that racing conditional
    /// writes and increments must lose nothing. DynamoDB does; moto_server,
    /// which stands in for it, does only when it serves one request at a
    /// time (its threads check and write without a lock), as the dynamodb
    /// fixture runs it.
    AtomicConditions,
    /// Other processes open the same store at once (a server's), so that
    /// a race runs in two processes; `local` holds its store in one.
    SharedStore,
}

impl Cap {
    pub fn name(self) -> &'static str {
        match self {
            Cap::OrderedListing => "ordered_listing",
            Cap::AtomicConditions => "atomic_conditions",
            Cap::SharedStore => "shared_store",
        }
    }
}

/// One engine the suite runs on: a line of `ENGINES` in main.rs.
pub struct Engine {
    /// The backend's name, as configurations and messages spell it; the
    /// first part of its trials' names.
    pub name: &'static str,
    /// Starts the engine's real server (once, on first use) and gives each
    /// case a key space of its own on it.
    pub fixture: &'static dyn Fixture,
    /// What it can do that another engine may not.
    pub caps: &'static [Cap],
    /// The share, in percent, of a case's bulk counts (thousands of queued
    /// writes, hundreds of rounds of calls) that it runs: 100 in process,
    /// less where each call is a round trip to a server, so that the suite
    /// takes no longer than the tests it replaced.
    pub bulk: usize,
}

/// An engine's server, and key spaces on it.
pub trait Fixture: Sync {
    /// A key space of its own for case `case`; `None` (the case is ignored)
    /// when the server is not installed and `CI` is not set. With `CI` set a
    /// missing server panics: the case fails.
    fn space(&self, case: &str) -> Option<Box<dyn Store>>;

    /// Stops every server it started; the suite calls it once every trial
    /// is done, since statics are never dropped.
    fn stop(&self);
}

/// One case's key space on an engine: nothing another case writes is in
/// it, nor anything from before.
pub trait Store: Send {
    /// A configuration whose only backend is this key space's engine, with
    /// `queue_batch` as its `queue_batch` section.
    fn config(&self, queue_batch: &str) -> String;
}

/// What a case gets: the engine it runs on and a key space of its own
/// there, on which it may open handles (one at a time: `local` allows no
/// second handle on a store while the first is open).
pub struct Space {
    pub engine: &'static Engine,
    store: Box<dyn Store>,
}

impl Space {
    /// The engine's name: the backend's, as messages name it.
    pub fn name(&self) -> &'static str {
        self.engine.name
    }

    /// A configuration of a handle on this key space.
    pub fn config(&self, queue_batch: &str) -> String {
        self.store.config(queue_batch)
    }

    /// A handle on this key space.
    pub fn open(&self, queue_batch: &str) -> Db {
        Db::open_json(Some(&self.config(queue_batch))).unwrap()
    }

    /// Whether the engine has `cap`.
    pub fn has(&self, cap: Cap) -> bool {
        self.engine.caps.contains(&cap)
    }

    /// This engine's share of a bulk count ([`Engine::bulk`]).
    pub fn bulk(&self, count: usize) -> usize {
        (count * self.engine.bulk / 100).max(1)
    }
}

/// A behaviour checked the same way on every engine that has the
/// capabilities it needs.
pub struct Case {
    pub name: &'static str,
    pub needs: &'static [Cap],
    pub run: fn(&Space),
}

/// `pub const CASES`: the cases of a module, each a function of its own,
/// with the capabilities it needs, if any, in `#[needs(...)]`:
///
/// ```ignore
/// cases![
///     twenty_three_keys_in_pages_of_seven,
///     #[needs(OrderedListing)]
///     prefix_and_start_after_narrow_a_listing,
/// ];
/// ```
macro_rules! cases {
    ($($(#[needs($($cap:ident),+)])? $case:ident),* $(,)?) => {
        pub const CASES: &[$crate::engine::Case] = &[$(
            $crate::engine::Case {
                name: stringify!($case),
                needs: &[$($($crate::engine::Cap::$cap),+)?],
                run: $case,
            }
        ),*];
    };
}
pub(crate) use cases;

/// A trial per engine and case, named `ENGINE::CASE`: each case on every
/// engine in turn, so that the engines' servers work side by side.
pub fn trials(engines: &'static [Engine], cases: &[&'static [Case]]) -> Vec<Trial> {
    let mut trials = Vec::new();
    for case in cases.iter().copied().flatten() {
        for engine in engines {
            let name = format!("{}::{}", engine.name, case.name);
            trials.push(Trial::ignorable_test(name, move || {
                if let Some(cap) = case.needs.iter().find(|c| !engine.caps.contains(c)) {
                    let reason = format!("{} lacks {}", engine.name, cap.name());
                    return Ok(Completion::ignored_with(reason));
                }
                let Some(store) = engine.fixture.space(case.name) else {
                    let reason = format!("no {} server installed", engine.name);
                    return Ok(Completion::ignored_with(reason));
                };
                (case.run)(&Space { engine, store });
                Ok(Completion::Completed)
            }));
        }
    }
    trials
}
