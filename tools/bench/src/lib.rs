//! What every bench shares: each pair (the library, and the engine used
//! directly) runs [`REPEATS`] times or more, alternating which side goes
//! first, and is reported as the median of each side with its spread
//! (lowest–highest), and the ratio of the medians with the spread of the
//! ratios run by run. On a shared machine one run proves nothing.
//!
//! The benches are the `[[bench]]` targets in `benches/`
//! (`cargo bench -p tetherdb-bench --bench local`, `etcd`, `dynamodb`,
//! `versions`, `listing`).

/// The fewest runs of a pair; `TETHERDB_BENCH_REPEATS` may ask for more.
pub const REPEATS: usize = 5;

/// Runs of each pair: [`REPEATS`], or `TETHERDB_BENCH_REPEATS` if larger.
pub fn repeats() -> usize {
    std::env::var("TETHERDB_BENCH_REPEATS")
        .ok()
        .and_then(|n| n.parse().ok())
        .map_or(REPEATS, |n: usize| n.max(REPEATS))
}

/// Runs both sides of run `run`, the library first in even runs and the
/// engine first in odd ones; returns (library, engine).
pub fn alternate<T>(run: usize, library: impl FnOnce() -> T, engine: impl FnOnce() -> T) -> (T, T) {
    if run.is_multiple_of(2) {
        let l = library();
        (l, engine())
    } else {
        let e = engine();
        (library(), e)
    }
}

/// The median of some figures, with the lowest and the highest.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `values` must not be empty. With an even count, the upper median.
    pub fn of(values: &[f64]) -> Spread {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Spread {
            median: sorted[sorted.len() / 2],
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        }
    }

    /// `median (min–max)`, with `decimals` decimals and thousands apart.
    pub fn show(&self, decimals: usize) -> String {
        let f = |v| number(v, decimals);
        format!("{} ({}–{})", f(self.median), f(self.min), f(self.max))
    }
}

/// `value` with `decimals` decimals and `,` between thousands.
pub fn number(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    let (int, frac) = text
        .split_once('.')
        .map_or((&text[..], ""), |(i, f)| (i, f));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        "" => format!("{sign}{grouped}"),
        _ => format!("{sign}{grouped}.{frac}"),
    }
}

/// One pair's figures, run by run: the library's and the engine's.
#[derive(Clone, Debug, Default)]
pub struct Pair {
    pub library: Vec<f64>,
    pub engine: Vec<f64>,
}

impl Pair {
    /// Times both sides of run `run` in [`alternate`] order and keeps them.
    pub fn run(&mut self, run: usize, library: impl FnOnce() -> f64, engine: impl FnOnce() -> f64) {
        let (l, e) = alternate(run, library, engine);
        self.push(l, e);
    }

    pub fn push(&mut self, library: f64, engine: f64) {
        self.library.push(library);
        self.engine.push(engine);
    }

    /// The ratio library / engine: that of the medians, with the lowest and
    /// highest of the runs' own ratios.
    pub fn ratio(&self) -> Spread {
        let runs: Vec<f64> = self
            .library
            .iter()
            .zip(&self.engine)
            .map(|(l, e)| l / e)
            .collect();
        Spread {
            median: Spread::of(&self.library).median / Spread::of(&self.engine).median,
            ..Spread::of(&runs)
        }
    }
}

/// A table of pairs, printed the same way by every bench.
pub struct Table {
    /// What a figure is, e.g. "ops/s" or "s".
    pub unit: &'static str,
    pub library: &'static str,
    pub engine: &'static str,
    /// Decimals of the figures (the ratio has two).
    pub decimals: usize,
}

impl Table {
    pub fn header(&self) {
        let (l, e) = (self.library, self.engine);
        println!("| pair | {l} {u} | {e} {u} | {l} / {e} |", u = self.unit);
        println!("|---|---:|---:|---:|");
    }

    /// One row: each side's median (lowest–highest), and the ratio.
    pub fn row(&self, name: &str, pair: &Pair) {
        let ratio = pair.ratio();
        println!(
            "| {name} | {} | {} | {:.2}× ({:.2}–{:.2}) |",
            Spread::of(&pair.library).show(self.decimals),
            Spread::of(&pair.engine).show(self.decimals),
            ratio.median,
            ratio.min,
            ratio.max,
        );
    }

    /// The header, then each row; says how many runs each is the median of.
    pub fn print(&self, rows: &[(&str, &Pair)]) {
        let runs = rows.first().map_or(0, |(_, p)| p.library.len());
        println!(
            "\nmedian (lowest–highest) of {runs} runs, alternating which side goes first; \
             ratio: of the medians (lowest–highest of the runs' own ratios)"
        );
        self.header();
        for (name, pair) in rows {
            self.row(name, pair);
        }
        println!("load average after: {}", load());
    }
}

/// The machine's load averages (1, 5, 15 min), as `uptime` gives them.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Prints the date, load, CPUs and build kind: a bench's first line.
pub fn preamble(what: &str) {
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%F %H:%M UTC")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "{what}\n{}; {nproc} CPUs; load average {}; {} build",
        date.trim(),
        load(),
        if cfg!(debug_assertions) {
            "debug (figures meaningless)"
        } else {
            "release"
        }
    );
}

/// A handle as a benchmark's threads share it: the C contract says it is
/// thread-safe.
#[derive(Clone, Copy)]
pub struct Handle(pub *mut tetherdb::ffi::TetherDb);
// SAFETY: a `tether_db*` may be used from any thread (include/tetherdb.h).
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

impl Handle {
    /// The pointer; a method, so that closures capture the whole handle.
    pub fn get(self) -> *mut tetherdb::ffi::TetherDb {
        self.0
    }
}
