//! `tether`: TetherDB from a shell (docs/cli.md). Each command opens one
//! handle from `--config`, makes its calls through the library's Rust API
//! (the same code as the C ABI's), and closes it. Failures print
//! `tether: TETHER_…: message` on stderr and exit with 10 plus the status.

mod dbm;
mod lines;

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tetherdb::{Config, CopyOptions, Db, Error, Status, WriteOptions};

/// Exit codes of failures: this plus the status (`TETHER_NOT_FOUND`, 1,
/// exits with 11). 2 stays clap's, for a command line it cannot parse.
const STATUS_EXIT_BASE: u8 = 10;
/// Keys a listing page of `ls` and `export` holds.
const PAGE: usize = 1000;

#[derive(Parser)]
#[command(
    name = "tether",
    version,
    about = "TetherDB from a shell: read, write, list, count, export, import and copy keys"
)]
struct Cli {
    /// The configuration: a JSON file's path, or JSON text (starting with
    /// `{`). Without it: a local store in ./tetherdb_data.
    #[arg(long, global = true, value_name = "FILE_OR_JSON")]
    config: Option<String>,
    /// The backend calls go to; without it the configuration's default.
    #[arg(long, global = true, value_name = "NAME")]
    backend: Option<String>,
    /// The bucket keys are in (the stored key is `bucket:key`).
    #[arg(long, global = true, value_name = "NAME")]
    bucket: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a key's value (its bytes as stored).
    Get { key: String },
    /// Store a value under a key; `-` as the value reads it from stdin.
    Put {
        key: String,
        /// The value's text; `-` reads its bytes from stdin.
        #[arg(allow_negative_numbers = true)]
        value: String,
        /// Expire the key this many milliseconds from now.
        #[arg(long, value_name = "MS")]
        ttl: Option<u64>,
    },
    /// Remove a key.
    Rm { key: String },
    /// List keys, with their values as JSON Lines, or alone.
    Ls {
        /// Only keys starting with this.
        #[arg(long, value_name = "P")]
        prefix: Option<String>,
        /// One key per line, without values.
        #[arg(long)]
        keys_only: bool,
    },
    /// Add DELTA (default 1) to a counter and print its new value.
    Incr {
        key: String,
        #[arg(allow_negative_numbers = true)]
        delta: Option<i64>,
        /// Spread the counter over this many keys (hot counters).
        #[arg(long, value_name = "N", default_value_t = 0)]
        shards: u32,
    },
    /// Print the handle's statistics (JSON).
    Stats,
    /// Write every key (with its value and remaining ttl) to stdout as JSON Lines.
    Export {
        #[arg(long, value_name = "P")]
        prefix: Option<String>,
    },
    /// Read JSON Lines from stdin (as export writes them) and store each key.
    Import,
    /// Copy every key from one named backend to another.
    Copy { from: String, to: String },
    /// Copy only the keys whose value differs, FROM to TO.
    Push { from: String, to: String },
    /// Copy only the keys whose value differs, FROM to TO (push's twin, for the other direction's habit).
    Pull { from: String, to: String },
    /// Report the keys that differ between FROM and TO, changing nothing.
    Diff { from: String, to: String },
    /// Import a Python TetherDB `local` store (GNU dbm or dbm.dumb files).
    ImportDbm {
        /// The store's path, as the Python TetherDB's `filepath`.
        path: PathBuf,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Tether(err)) => {
            let status = err.status();
            eprintln!("tether: {}: {err}", status.name());
            ExitCode::from(STATUS_EXIT_BASE + status as u8)
        }
        Err(Failure::Io(err)) if err.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Io(err)) => {
            eprintln!("tether: TETHER_IO: {err}");
            ExitCode::from(STATUS_EXIT_BASE + Status::Io as u8)
        }
        Err(Failure::Input(message)) => {
            eprintln!("tether: TETHER_INVALID_ARGUMENT: {message}");
            ExitCode::from(STATUS_EXIT_BASE + Status::InvalidArgument as u8)
        }
    }
}

/// Why a command failed: a call of the library, stdin/stdout, or input
/// the command itself refuses (a line of an import, a dbm file).
enum Failure {
    Tether(Error),
    Io(io::Error),
    Input(String),
}

impl From<Error> for Failure {
    fn from(err: Error) -> Failure {
        Failure::Tether(err)
    }
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Failure {
        Failure::Io(err)
    }
}

type Outcome = Result<(), Failure>;

fn run(cli: Cli) -> Outcome {
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "tether", &mut io::stdout());
        return Ok(());
    }
    let db = open(cli.config.as_deref())?;
    let at = At {
        db: &db,
        backend: cli.backend.as_deref(),
        bucket: cli.bucket.as_deref(),
    };
    let done = at.command(cli.command);
    // Closing applies and syncs what the command wrote: its failure is the
    // command's, unless the command failed first.
    let closed = db.close();
    done?;
    Ok(closed?)
}

fn open(config: Option<&str>) -> Result<Db, Error> {
    match config {
        Some(json) if json.trim_start().starts_with('{') => Db::open_json(Some(json)),
        Some(path) => Db::open(Config::from_file(path)?),
        None => Db::open_json(None),
    }
}

/// A handle, and where the command's calls go.
struct At<'a> {
    db: &'a Db,
    backend: Option<&'a str>,
    bucket: Option<&'a str>,
}

impl At<'_> {
    fn command(&self, command: Command) -> Outcome {
        let (db, backend, bucket) = (self.db, self.backend, self.bucket);
        let mut out = io::stdout().lock();
        match command {
            Command::Get { key } => {
                let value = db.read(backend, bucket, &key)?;
                out.write_all(&value)?;
                if io::stdout().is_terminal() {
                    out.write_all(b"\n")?;
                }
            }
            Command::Put { key, value, ttl } => {
                let value = match value.as_str() {
                    "-" => {
                        let mut bytes = Vec::new();
                        io::stdin().lock().read_to_end(&mut bytes)?;
                        bytes
                    }
                    _ => value.into_bytes(),
                };
                let options = WriteOptions {
                    ttl_ms: ttl.unwrap_or(0),
                    ..WriteOptions::default()
                };
                db.write_ex(backend, bucket, &key, &value, &options)?;
            }
            Command::Rm { key } => db.delete(backend, bucket, &key)?,
            Command::Ls { prefix, keys_only } => self.ls(prefix.as_deref(), keys_only, &mut out)?,
            Command::Incr { key, delta, shards } => {
                let value =
                    db.increment(backend, bucket, &key, delta.unwrap_or(1), shards, true)?;
                writeln!(out, "{}", value.expect("asked for the total"))?;
            }
            Command::Stats => writeln!(out, "{:#}", db.stats())?,
            Command::Export { prefix } => self.export(prefix.as_deref(), &mut out)?,
            Command::Import => self.import(io::stdin().lock())?,
            Command::Copy { from, to } => {
                self.copy(&from, &to, CopyOptions::default(), &mut out)?
            }
            Command::Push { from, to } | Command::Pull { from, to } => {
                let changed = CopyOptions {
                    changed: true,
                    ..CopyOptions::default()
                };
                self.copy(&from, &to, changed, &mut out)?
            }
            Command::Diff { from, to } => {
                let diff = CopyOptions {
                    changed: true,
                    mirror: true,
                    dry_run: true,
                };
                self.copy(&from, &to, diff, &mut out)?
            }
            Command::ImportDbm { path } => self.import_dbm(&path)?,
            Command::Completions { .. } => unreachable!("handled before opening"),
        }
        out.flush()?;
        Ok(())
    }

    fn ls(&self, prefix: Option<&str>, keys_only: bool, out: &mut impl Write) -> Outcome {
        self.each_page(prefix, keys_only, |entries| {
            for entry in entries {
                match keys_only {
                    true => writeln!(out, "{}", entry.key)?,
                    false => writeln!(out, "{}", lines::encode(&entry.key, &entry.value, None))?,
                }
            }
            Ok(())
        })
    }

    /// Every key with its value and remaining ttl, as JSON Lines. A key
    /// that expires or goes between the listing and its read is left out.
    fn export(&self, prefix: Option<&str>, out: &mut impl Write) -> Outcome {
        let bar = progress("exporting");
        self.each_page(prefix, true, |entries| {
            let keys: Vec<String> = entries.into_iter().map(|entry| entry.key).collect();
            let reads = self
                .db
                .peek_many_with_ttl(self.backend, self.bucket, &keys)?;
            // A key gone or expired since the listing is left out.
            for (key, read) in keys.iter().zip(reads) {
                if let Some((value, ttl_ms)) = read {
                    writeln!(out, "{}", lines::encode(key, &value, ttl_ms))?;
                    bar.inc(1);
                }
            }
            Ok(())
        })?;
        bar.finish_and_clear();
        Ok(())
    }

    fn each_page(
        &self,
        prefix: Option<&str>,
        keys_only: bool,
        mut each: impl FnMut(Vec<tetherdb::Entry>) -> Outcome,
    ) -> Outcome {
        let mut after: Option<String> = None;
        loop {
            let page = match keys_only {
                true => {
                    let page = self.db.list_keys(
                        self.backend,
                        self.bucket,
                        prefix,
                        after.as_deref(),
                        PAGE,
                    )?;
                    let entries = page
                        .keys
                        .into_iter()
                        .map(|key| tetherdb::Entry {
                            key,
                            value: Vec::new(),
                        })
                        .collect();
                    (entries, page.next)
                }
                false => {
                    let page =
                        self.db
                            .list(self.backend, self.bucket, prefix, after.as_deref(), PAGE)?;
                    (page.entries, page.next)
                }
            };
            each(page.0)?;
            match page.1 {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Stores each line's key as queued writes, which the worker applies
    /// in the engine's batches; the handle's close applies the rest.
    fn import(&self, input: impl BufRead) -> Outcome {
        let bar = progress("importing");
        self.db.start()?;
        // Lines as bytes: a line that is not UTF-8 is the input's fault,
        // with its number, not a failure of stdin.
        for (at, line) in input.split(b'\n').enumerate() {
            let line = line?;
            let bad = |e: String| Failure::Input(format!("line {}: {e}", at + 1));
            let line = std::str::from_utf8(&line).map_err(|e| bad(e.to_string()))?;
            if line.trim().is_empty() {
                continue;
            }
            let record = lines::decode(line).map_err(bad)?;
            self.write_queued(&record.key, &record.value, record.ttl_ms.unwrap_or(0))?;
            bar.inc(1);
        }
        self.db.flush()?;
        bar.finish_and_clear();
        Ok(())
    }

    fn write_queued(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<(), Error> {
        let options = WriteOptions {
            queue: true,
            ttl_ms,
            ..WriteOptions::default()
        };
        self.db
            .write_ex(self.backend, self.bucket, key, value, &options)
            .map(drop)
    }

    fn copy(&self, from: &str, to: &str, options: CopyOptions, out: &mut impl Write) -> Outcome {
        let bar = progress(if options.dry_run {
            "comparing"
        } else {
            "copying"
        });
        let report = self.db.copy(from, to, self.bucket, None, options);
        bar.finish_and_clear();
        writeln!(out, "{}", report?.to_json())?;
        Ok(())
    }

    /// Each pair of the store, its key as stored (`bucket:key`): the keys
    /// go in without `--bucket`.
    fn import_dbm(&self, path: &std::path::Path) -> Outcome {
        let bar = progress("importing");
        let at = At {
            bucket: None,
            ..*self
        };
        self.db.start()?;
        dbm::each_pair(path, |key, value| {
            let key = std::str::from_utf8(key).map_err(|_| {
                Failure::Input(format!("{}: a key is not UTF-8: {key:?}", path.display()))
            })?;
            at.write_queued(key, value, 0)?;
            bar.inc(1);
            Ok(())
        })?;
        self.db.flush()?;
        bar.finish_and_clear();
        Ok(())
    }
}

/// A counter of keys on stderr while it is a terminal; hidden otherwise
/// (pipes, files, CI), so that scripts see nothing of it.
fn progress(what: &'static str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner().with_message(what);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}: {human_pos} keys ({elapsed})")
            .expect("a valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    // Drawn at once: a command quicker than a tick shows it too.
    bar.tick();
    bar
}
