//! The command line, parsed by hand: a dozen flags do not earn a
//! dependency.

use std::time::Duration;

pub const USAGE: &str = "\
tether-stress: concurrent writes through TetherDB's C ABI, with latency
figures and a read-back check that no write was lost.

usage: tether-stress [options]

  --config FILE|JSON   the configuration: a file, or JSON text starting with '{'.
                       Default: a local store in a temporary directory that is
                       removed afterwards, plus an empty section for --backend
                       when it names another backend (its defaults).
  --backend NAME       the backend the calls name (default: the configuration's
                       default backend)
  --threads N          threads sharing one handle (default 4)
  --writes N           operations in all, shared by the threads (default 100000)
  --duration S         run for S seconds instead of a count of operations
  --value-size BYTES   bytes per value, at least 16 (default 100)
  --direct             writes are stored before the call returns (default)
  --queued             writes go through the queue (TETHER_QUEUE); the
                       run ends with tether_flush, which is timed too
  --mix R:W:U          weights of reads, writes and updates (default 0:1:0).
                       Reads and updates pick keys this thread wrote. With
                       --queued, U must be 0: a direct update could overtake
                       a queued write of its key.
  --keys N             keys per thread; writes beyond it overwrite them in
                       turn (default: every write a new key, or 1000000 per
                       thread with --duration, which bounds memory)
  --bucket NAME        the bucket (default \"stress\"); keys are
                       RUNID-THREAD-INDEX, unique to the run
  --verify read|list|none
                       read every written key back with tether_read (default),
                       page through them with tether_list, or skip the check
  --engine-direct      measure the engine itself instead (sled for local,
                       etcd-client for etcd, aws-sdk-dynamodb for dynamodb)
                       on the same workload: the baseline of the benchmark
                       report
  --json               print the summary as JSON on stdout
  --quiet              no progress lines
  -h, --help           this text

Exit status: 0 when every check passed; 1 when a write was lost or wrong
(verification, or a read that missed a write); 2 for a usage or setup error
(bad flag, handle that does not open, backend this build lacks); 3 when some
calls failed but no write was lost.
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    Read,
    List,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stop {
    /// Operations in all, across the threads.
    Ops(u64),
    Duration(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    pub read: u32,
    pub write: u32,
    pub update: u32,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub config: Option<String>,
    pub backend: Option<String>,
    pub threads: usize,
    pub stop: Stop,
    pub value_size: usize,
    pub queued: bool,
    pub mix: Mix,
    pub keys: Option<u64>,
    pub bucket: String,
    pub verify: Verify,
    pub engine_direct: bool,
    pub json: bool,
    pub quiet: bool,
}

/// The smallest value: a 16-byte header makes every version of every key
/// distinct, so verification is exact.
pub const MIN_VALUE_SIZE: usize = 16;

pub enum Parsed {
    Run(Options),
    Help,
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut o = Options {
        config: None,
        backend: None,
        threads: 4,
        stop: Stop::Ops(100_000),
        value_size: 100,
        queued: false,
        mix: Mix {
            read: 0,
            write: 1,
            update: 0,
        },
        keys: None,
        bucket: "stress".into(),
        verify: Verify::Read,
        engine_direct: false,
        json: false,
        quiet: false,
    };
    let (mut direct, mut writes, mut duration) = (false, false, false);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // Both "--flag value" and "--flag=value".
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--config" => o.config = Some(value(&flag)?),
            "--backend" => o.backend = Some(value(&flag)?).filter(|b| !b.is_empty()),
            "--threads" => o.threads = number(&flag, &value(&flag)?, 1, 1024)? as usize,
            "--writes" => {
                writes = true;
                o.stop = Stop::Ops(number(&flag, &value(&flag)?, 1, u64::MAX)?);
            }
            "--duration" => {
                duration = true;
                let text = value(&flag)?;
                let seconds: f64 = text
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| format!("--duration: {text:?} is not a positive number"))?;
                o.stop = Stop::Duration(Duration::from_secs_f64(seconds));
            }
            "--value-size" => {
                o.value_size =
                    number(&flag, &value(&flag)?, MIN_VALUE_SIZE as u64, 1 << 30)? as usize
            }
            "--direct" => direct = true,
            "--queued" => o.queued = true,
            "--mix" => o.mix = mix(&value(&flag)?)?,
            "--keys" => o.keys = Some(number(&flag, &value(&flag)?, 1, u32::MAX as u64)?),
            "--bucket" => o.bucket = value(&flag)?,
            "--verify" => {
                o.verify = match value(&flag)?.as_str() {
                    "read" => Verify::Read,
                    "list" => Verify::List,
                    "none" => Verify::None,
                    other => return Err(format!("--verify: {other:?} is not read, list or none")),
                }
            }
            "--engine-direct" => o.engine_direct = true,
            "--json" => o.json = true,
            "--quiet" => o.quiet = true,
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
        if inline.is_some() && matches!(flag.as_str(), "--direct" | "--queued" | "--json") {
            return Err(format!("{flag} takes no value"));
        }
    }
    if direct && o.queued {
        return Err("--direct and --queued exclude each other".into());
    }
    if writes && duration {
        return Err("--writes and --duration exclude each other".into());
    }
    if o.queued && o.mix.update > 0 {
        return Err(
            "--queued with updates in --mix: an update is a direct call and could \
                    overtake a queued write of its key, so the last value of a key would \
                    not be known; use --direct, or a mix without updates"
                .into(),
        );
    }
    if o.bucket.contains(':') {
        return Err("--bucket must not contain ':'".into());
    }
    if let Stop::Ops(n) = o.stop {
        if n < o.threads as u64 {
            return Err(format!("--writes {n} is fewer than one per thread"));
        }
    }
    Ok(Parsed::Run(o))
}

fn number(flag: &str, text: &str, min: u64, max: u64) -> Result<u64, String> {
    // Underscores as digit separators: --writes 1_000_000.
    text.replace('_', "")
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("{flag}: {text:?} is not a whole number from {min} to {max}"))
}

fn mix(text: &str) -> Result<Mix, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let weights: Vec<u32> = parts
        .iter()
        .map(|p| p.parse::<u32>().ok().filter(|&w| w <= 1_000_000))
        .collect::<Option<_>>()
        .filter(|w: &Vec<u32>| w.len() == 3)
        .ok_or_else(|| format!("--mix: {text:?} is not READ:WRITE:UPDATE, three whole numbers"))?;
    if weights[1] == 0 {
        return Err("--mix: the write weight must be above 0: reads and updates need keys".into());
    }
    Ok(Mix {
        read: weights[0],
        write: weights[1],
        update: weights[2],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        match parse(args.iter().map(|s| s.to_string()))? {
            Parsed::Run(o) => Ok(o),
            Parsed::Help => Err("help".into()),
        }
    }

    #[test]
    fn flags_take_values_both_ways() {
        let o = run(&[
            "--threads=8",
            "--writes",
            "1_000",
            "--mix",
            "2:1:1",
            "--json",
        ])
        .unwrap();
        assert_eq!(o.threads, 8);
        assert_eq!(o.stop, Stop::Ops(1000));
        assert_eq!(
            o.mix,
            Mix {
                read: 2,
                write: 1,
                update: 1
            }
        );
        assert!(o.json && !o.queued);
    }

    #[test]
    fn contradictions_are_refused() {
        assert!(run(&["--queued", "--direct"]).is_err());
        assert!(run(&["--writes", "5", "--duration", "1"]).is_err());
        assert!(run(&["--queued", "--mix", "1:1:1"]).is_err());
        assert!(run(&["--queued", "--mix", "1:1:0"]).is_ok());
        assert!(run(&["--value-size", "15"]).is_err());
        assert!(run(&["--mix", "1:0:1"]).is_err());
        assert!(run(&["--bucket", "a:b"]).is_err());
        assert!(run(&["--bogus"]).is_err());
        assert!(run(&["--json=yes"]).is_err());
    }
}
