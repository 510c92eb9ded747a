//! `tether` run as a user runs it: arguments, stdin, stdout, stderr and
//! exit codes, on a local store and a real etcd.

#[path = "../../tests/common/etcd.rs"]
#[allow(dead_code)]
mod etcd;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use etcd::Etcd;

/// `tether ARGS` in `dir`, with `stdin`.
fn tether(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// `tether FROM_ARGS | tether TO_ARGS` in `dir`, an OS pipe between the
/// two processes as a shell makes it; checks that both succeeded.
fn pipe(dir: &Path, from_args: &[&str], to_args: &[&str]) {
    let mut from = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(from_args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let to = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(to_args)
        .current_dir(dir)
        .stdin(from.stdout.take().unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(from.wait().unwrap().success(), "tether {from_args:?}");
    assert!(
        to.status.success() && to.stderr.is_empty(),
        "tether {to_args:?}: {:?}\n{}",
        to.status,
        String::from_utf8_lossy(&to.stderr)
    );
}

/// Its stdout, checking that it succeeded with nothing on stderr.
fn ok(dir: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let out = tether(dir, args, stdin);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "tether {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Its exit code and stderr, checking that it failed.
fn fails(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = tether(dir, args, b"");
    assert!(!out.status.success(), "tether {args:?} succeeded");
    assert!(out.stdout.is_empty());
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// A handle over one backend, `disk` (the local store of
/// [`two_backends`]) or `cluster` (the etcd), with an outbox of its own:
/// the two ends of a pipe are two processes, and one process at a time
/// holds a local store.
fn one_backend(dir: &Path, etcd: &Etcd, name: &str) -> String {
    let section = match name {
        "disk" => format!(
            r#"{{"engine": "local", "filepath": {:?}}}"#,
            dir.join("disk")
        ),
        _ => format!(
            r#"{{"engine": "etcd", "endpoints": ["{}"]}}"#,
            etcd.endpoint()
        ),
    };
    format!(
        r#"{{"logging": "none", "queue_batch": {{"outbox_path": {:?}}},
            "backends": {{"{name}": {section}}}}}"#,
        dir.join(format!("{name}.outbox")),
    )
}

/// A handle over a local store (`disk`) and an etcd (`cluster`).
fn two_backends(dir: &Path, etcd: &Etcd) -> String {
    format!(
        r#"{{"logging": "none", "default_backend": "disk", "queue_batch": {{"outbox_path": {:?}}},
            "backends": {{"disk": {{"engine": "local", "filepath": {:?}}},
                          "cluster": {{"engine": "etcd", "endpoints": ["{}"]}}}}}}"#,
        dir.join("outbox").to_str().unwrap(),
        dir.join("disk").to_str().unwrap(),
        etcd.endpoint()
    )
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    let help = String::from_utf8(ok(dir.path(), &["--help"], b"")).unwrap();
    let commands = [
        "get",
        "put",
        "rm",
        "ls",
        "incr",
        "stats",
        "export",
        "import",
        "copy",
        "push",
        "pull",
        "diff",
        "import-dbm",
        "completions",
    ];
    for command in commands {
        assert!(
            help.contains(&format!("  {command} ")),
            "{command} not in\n{help}"
        );
        let own = ok(dir.path(), &[command, "--help"], b"");
        let own = String::from_utf8(own).unwrap();
        assert!(own.contains(&format!("Usage: tether {command}")), "{own}");
    }
    let bash = ok(dir.path(), &["completions", "bash"], b"");
    assert!(String::from_utf8(bash).unwrap().contains("import-dbm"));
    // A command line clap cannot parse: its usage error, 2.
    assert_eq!(
        tether(dir.path(), &["frobnicate"], b"").status.code(),
        Some(2)
    );
}

#[test]
fn keys_values_counters_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["put", "k", "hello"], b"");
    // A value that looks like a negative number is a value, not a flag.
    ok(d, &["put", "minus", "-5"], b"");
    assert_eq!(ok(d, &["get", "minus"], b""), b"-5");
    assert_eq!(ok(d, &["get", "k"], b""), b"hello");
    // `-` reads the value from stdin, byte for byte.
    ok(d, &["--bucket", "b", "put", "bin", "-"], &[0xff, 0, b'\n']);
    assert_eq!(
        ok(d, &["--bucket", "b", "get", "bin"], b""),
        [0xff, 0, b'\n']
    );
    assert_eq!(ok(d, &["incr", "n"], b""), b"1\n");
    assert_eq!(ok(d, &["incr", "n", "-5"], b""), b"-4\n");
    assert_eq!(ok(d, &["incr", "hot", "2", "--shards", "4"], b""), b"2\n");
    assert_eq!(ok(d, &["ls", "--keys-only", "--prefix", "n"], b""), b"n\n");
    assert_eq!(
        ok(d, &["--bucket", "b", "ls"], b""),
        b"{\"key\":\"bin\",\"value_base64\":\"/wAK\"}\n"
    );
    ok(d, &["rm", "k"], b"");

    // Exit codes: 10 plus the status, its name on stderr.
    let (code, stderr) = fails(d, &["get", "k"]);
    assert_eq!(code, 11, "{stderr}");
    assert!(stderr.starts_with("tether: TETHER_NOT_FOUND: "), "{stderr}");
    assert_eq!(fails(d, &["--bucket", "a:b", "get", "k"]).0, 12);
    assert_eq!(fails(d, &["--config", "{\"local\": 3}", "get", "k"]).0, 13);
    assert_eq!(fails(d, &["--backend", "etcd", "get", "k"]).0, 14);
    assert_eq!(fails(d, &["incr", "b:bin"]).0, 18); // not a number: TETHER_CONFLICT
                                                    // A store under a regular file: its directory cannot be made.
    std::fs::write(d.join("a_file"), b"").unwrap();
    let under_a_file = r#"{"logging": "none", "local": {"filepath": "a_file/store"}}"#;
    let (code, stderr) = fails(d, &["--config", under_a_file, "get", "k"]);
    assert_eq!(code, 19, "{stderr}");
    assert!(stderr.starts_with("tether: TETHER_IO: "), "{stderr}");
    // Nothing listens on port 9 (discard) of loopback: refused at once.
    let unreachable =
        r#"{"logging": "none", "etcd": {"endpoints": ["127.0.0.1:9"], "timeout": 1}}"#;
    let (code, stderr) = fails(
        d,
        &["--config", unreachable, "--backend", "etcd", "get", "k"],
    );
    assert_eq!(code, 15, "{stderr}");
    assert!(
        stderr.starts_with("tether: TETHER_UNAVAILABLE: "),
        "{stderr}"
    );
    let read_only = r#"{"logging": "none", "default_backend": "d", "backends": {
        "d": {"engine": "local", "filepath": "tetherdb_data"},
        "ro": {"engine": "read_only", "of": "d"}}}"#;
    let (code, stderr) = fails(
        d,
        &["--config", read_only, "--backend", "ro", "put", "k", "v"],
    );
    assert_eq!(code, 21, "{stderr}");
    assert!(
        stderr.starts_with("tether: TETHER_UNSUPPORTED: "),
        "{stderr}"
    );
    let stats: String = String::from_utf8(ok(d, &["stats"], b"")).unwrap();
    assert!(stats.contains("\"backends\""), "{stats}");
}

/// `tether export | tether import` from a local store into etcd: every
/// value byte for byte, ttls kept, the other backend's configuration.
#[test]
fn export_piped_into_import_moves_a_store_to_etcd() {
    let Some(etcd) = Etcd::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = two_backends(d, &etcd);
    let on = |backend: &'static str| ["--config", config.as_str(), "--backend", backend];
    let values: [&[u8]; 4] = [b"text", b"", &[0xc3, 0x28, 0xff], "é\n\"".as_bytes()];
    for (i, value) in values.iter().enumerate() {
        let key = format!("k{i}");
        ok(
            d,
            &[&on("disk")[..], &["--bucket", "b", "put", &key, "-"]].concat(),
            value,
        );
    }
    ok(
        d,
        &[&on("disk")[..], &["put", "short", "s", "--ttl", "600000"]].concat(),
        b"",
    );
    let exported = ok(d, &[&on("disk")[..], &["export"]].concat(), b"");
    assert_eq!(exported.iter().filter(|&&b| b == b'\n').count(), 5);
    let (disk, cluster) = (
        one_backend(d, &etcd, "disk"),
        one_backend(d, &etcd, "cluster"),
    );
    pipe(
        d,
        &["--config", &disk, "export"],
        &["--config", &cluster, "import"],
    );
    for (i, value) in values.iter().enumerate() {
        let key = format!("b:k{i}");
        assert_eq!(etcd.get(&key).as_deref(), Some(*value), "{key}");
    }
    // The ttl came along: the key is on a lease, and exports again with one.
    let again = String::from_utf8(ok(
        d,
        &[&on("cluster")[..], &["export", "--prefix", "short"]].concat(),
        b"",
    ))
    .unwrap();
    assert!(again.contains("\"ttl_ms\":"), "{again}");
    let line = String::from_utf8(exported).unwrap();
    assert!(
        line.contains(r#"{"key":"b:k2","value_base64":"wyj/"}"#),
        "{line}"
    );

    // A value over etcd's request limit (1.5 MiB by default): refused
    // before it is sent, exit 16.
    let big = vec![b'x'; 2 << 20];
    let out = tether(
        d,
        &[&on("cluster")[..], &["put", "big", "-"]].concat(),
        &big,
    );
    assert_eq!(out.status.code(), Some(16));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("tether: TETHER_TOO_LARGE: "));

    // A line import cannot take: its number, and exit 12.
    let out = tether(
        d,
        &[&on("cluster")[..], &["import"]].concat(),
        b"{\"key\": \"k\"}\n",
    );
    assert_eq!(out.status.code(), Some(12));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
    // A line that is not UTF-8 is the input's fault too, not stdin's (19).
    let out = tether(
        d,
        &[&on("cluster")[..], &["import"]].concat(),
        b"{\"key\": \"k\", \"value\": \"v\"}\n\xff\n",
    );
    assert_eq!(out.status.code(), Some(12));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
}

/// copy, push, pull and diff between named backends: the reports, and
/// that diff changes nothing.
#[test]
fn copy_push_pull_and_diff_between_backends() {
    let Some(etcd) = Etcd::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = two_backends(d, &etcd);
    let run = |args: &[&str]| {
        ok(
            d,
            &[&["--config", config.as_str(), "--bucket", "b"][..], args].concat(),
            b"",
        )
    };
    let report =
        |args: &[&str]| -> serde_json::Value { serde_json::from_slice(&run(args)).unwrap() };
    for key in ["a", "b", "c"] {
        run(&["put", key, key]);
    }
    assert_eq!(report(&["copy", "disk", "cluster"])["copied"], 3);
    run(&["put", "b", "changed"]);
    run(&["--backend", "cluster", "put", "extra", "x"]);
    let diff = report(&["diff", "disk", "cluster"]);
    assert_eq!(diff["copied"], 1, "{diff}");
    assert_eq!(diff["deleted"], 1, "{diff}");
    assert_eq!(diff["keys"], serde_json::json!(["b", "extra"]));
    assert_eq!(
        etcd.get("b:b").as_deref(),
        Some(&b"b"[..]),
        "diff changed nothing"
    );
    let push = report(&["push", "disk", "cluster"]);
    assert_eq!(
        (push["copied"].as_u64(), push["unchanged"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(etcd.get("b:b").as_deref(), Some(&b"changed"[..]));
    // pull names the source first as well: cluster's extra key comes to disk.
    let pull = report(&["pull", "cluster", "disk"]);
    assert_eq!(pull["copied"], 1, "{pull}");
    assert_eq!(run(&["get", "extra"]), b"x");
    let same = report(&["diff", "disk", "cluster"]);
    assert_eq!(
        (same["copied"].as_u64(), same["deleted"].as_u64()),
        (Some(0), Some(0))
    );
}

/// A python3 whose dbm has GNU dbm: Debian's (python3-gdbm), which the
/// test script installs; the first on PATH may be another.
fn python_with_gdbm() -> &'static str {
    for python in ["/usr/bin/python3", "python3"] {
        let has = Command::new(python).args(["-c", "import dbm.gnu"]).status();
        if has.is_ok_and(|s| s.success()) {
            return python;
        }
    }
    panic!("no python3 with dbm.gnu: install python3-gdbm (scripts/test.sh does)");
}

/// Stores as the Python TetherDB writes them with `dbm.open(path, "c")`:
/// GNU dbm where Python has it, `dbm.dumb` otherwise; `import-dbm` takes
/// both, keys as stored (`bucket:key`), values byte for byte.
#[test]
fn import_dbm_reads_the_stores_python_writes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let python = python_with_gdbm();
    let write = r#"
import dbm, dbm.dumb, dbm.gnu, json, sys
for path, module in (("gnu.db", dbm), ("dumb.db", dbm.dumb)):
    with module.open(path, "c") as db:
        db["users:alice"] = "first"
        db["users:é\n'"] = b"\xff\x00"
        db["plain"] = "v" * 3000
        # Rewritten longer (dbm.dumb appends it elsewhere in .dat) and a
        # key deleted: the files keep bytes that are no longer values.
        db["users:alice"] = json.dumps({"name": "Alice", "n": 1})
        db["gone"] = "x" * 5000
        del db["gone"]
dbm.gnu.open("empty.db", "c").close()
with open("junk.db", "wb") as junk:
    junk.write(b"not a dbm file\n" * 100)
print(dbm.whichdb("gnu.db"), dbm.whichdb("dumb.db"))
"#;
    let made = Command::new(python)
        .args(["-c", write])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert_eq!(
        String::from_utf8(made.stdout).unwrap().trim(),
        "dbm.gnu dbm.dumb"
    );
    for store in ["gnu.db", "dumb.db"] {
        let config = format!(r#"{{"logging": "none", "local": {{"filepath": "{store}.tether"}}}}"#);
        ok(d, &["--config", &config, "import-dbm", store], b"");
        let exported = String::from_utf8(ok(d, &["--config", &config, "export"], b"")).unwrap();
        let lines: Vec<&str> = exported.lines().collect();
        assert_eq!(lines.len(), 3, "{store}: {exported}");
        assert_eq!(
            lines[0],
            format!(r#"{{"key":"plain","value":"{}"}}"#, "v".repeat(3000))
        );
        assert_eq!(
            lines[1],
            r#"{"key":"users:alice","value":"{\"name\": \"Alice\", \"n\": 1}"}"#
        );
        assert_eq!(lines[2], r#"{"key":"users:é\n'","value_base64":"/wA="}"#);
        let via_bucket = ok(
            d,
            &["--config", &config, "--bucket", "users", "get", "alice"],
            b"",
        );
        assert!(via_bucket.starts_with(b"{\"name\""));
    }
    let (code, stderr) = fails(d, &["import-dbm", "missing.db"]);
    assert_eq!(code, 12, "{stderr}");
    // A GNU dbm store without keys imports none; a file of another kind
    // fails with gdbm's reason.
    let other = r#"{"logging": "none", "local": {"filepath": "other.tether"}}"#;
    ok(d, &["--config", other, "import-dbm", "empty.db"], b"");
    assert_eq!(ok(d, &["--config", other, "ls"], b""), b"");
    let (code, stderr) = fails(d, &["--config", other, "import-dbm", "junk.db"]);
    assert_eq!(code, 12, "{stderr}");
    assert!(stderr.contains("junk.db: GNU dbm"), "{stderr}");

    // A GNU dbm file cut short: libgdbm's walk ends early with an error,
    // which fails the import instead of passing for the whole store.
    let write = r#"
import dbm.gnu
with dbm.gnu.open("cut.db", "c") as db:
    for i in range(20000):
        db[f"b:k{i}"] = b"x" * 100
"#;
    let made = Command::new(python)
        .args(["-c", write])
        .current_dir(d)
        .status()
        .unwrap();
    assert!(made.success());
    let cut = std::fs::OpenOptions::new()
        .write(true)
        .open(d.join("cut.db"))
        .unwrap();
    let len = cut.metadata().unwrap().len();
    cut.set_len(len / 2).unwrap();
    let (code, stderr) = fails(d, &["import-dbm", "cut.db"]);
    assert_eq!(code, 12, "{stderr}");
    assert!(stderr.contains("cut.db: GNU dbm"), "{stderr}");
}
