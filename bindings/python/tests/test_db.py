"""Tests of the Python binding: the Python TetherDB's API and semantics, and
what this binding adds. The core tests (the `bdb`, `backend` and `bucket`
fixtures of conftest.py) run on the embedded local backend and on the etcd
of TETHERDB_TEST_ETCD, each in a bucket of its own; the others on local."""

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid

import pytest

import tetherdb
from tetherdb import DB, Status


def raw(db, key, bucket="", backend="local"):
    """The stored bytes, through the C API, to see how a value was encoded."""
    value, length = ctypes.c_void_p(), ctypes.c_size_t()
    lib = tetherdb._lib
    status = lib.tether_read(
        db._handle, backend.encode(), bucket.encode(), key.encode(), ctypes.byref(value), ctypes.byref(length)
    )
    assert status == 0
    try:
        return ctypes.string_at(value, length.value)
    finally:
        lib.tether_free(value, length)


# --- construction ---------------------------------------------------------


def test_config_and_config_file_together_is_a_value_error(config, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"^Provide either 'config' or 'config_file', not both\.$"):
        DB(config=config, config_file=str(path))


def test_config_file(config, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    db = DB(config_file=str(path))
    db.write_message("k", "v")
    assert db.read_message("k") == "v"
    db.close()


def test_the_python_tetherdbs_config_loads(tmp_path):
    # The configuration of the Python TetherDB's own tests, store moved to
    # tmp_path, less its dynamodb section: opening that one checks the table
    # on DynamoDB (tests/dynamodb.rs opens it against moto_server, and
    # src/config.rs parses the whole file).
    config = {
        "logging": "none",
        "queue_batch": {"size": 2, "interval": 1.0},
        "local": {"filepath": str(tmp_path / "test_local.db")},
        "etcd": {"host": "localhost", "port": 2379},
    }
    with DB(config=config) as db:
        db.write_message("key1", "value1", backend="local")
        assert db.read_message("key1", backend="local") == "value1"


def test_invalid_config_is_a_value_error_with_status(tmp_path):
    with pytest.raises(ValueError, match="no_such_key") as info:
        DB(config={"no_such_key": 1, "local": {"filepath": str(tmp_path / "d")}})
    assert isinstance(info.value, tetherdb.ConfigError)
    assert info.value.status == Status.CONFIG


# --- the worker -------------------------------------------------------------


def test_a_new_db_does_not_start_the_worker(db):
    with pytest.raises(RuntimeError) as info:
        db.write_message("k", "v", queue=True)
    assert isinstance(info.value, tetherdb.NotRunningError)
    assert info.value.status == Status.NOT_RUNNING
    assert "tether_write" in info.value.message


def test_start_and_stop_are_idempotent_and_stop_applies_queued_writes(backend_config, backend, bucket):
    backend_config.setdefault("queue_batch", {})["interval"] = 60  # only stop() can apply the write in time
    db = DB(config=backend_config)
    db.start()
    db.start()
    db.write_message("k", {"n": 1}, bucket, backend, queue=True)
    db.stop()
    assert db.read_message("k", bucket, backend) == {"n": 1}
    db.stop()
    with pytest.raises(RuntimeError):
        db.write_message("k", "v", bucket, backend, queue=True)
    db.close()


def test_flush_applies_queued_writes(backend_config, backend, bucket):
    backend_config.setdefault("queue_batch", {})["interval"] = 60
    db = DB(config=backend_config)
    with pytest.raises(RuntimeError):
        db.write_message("k", "v", bucket, backend, queue=True)  # not started
    db.start()
    db.write_message("k", "v", bucket, backend, queue=True)
    db.flush()
    assert db.read_message("k", bucket, backend) == "v"
    db.close()


def test_stats(backend_config, backend, bucket, outbox_path):
    backend_config.setdefault("queue_batch", {})["interval"] = 60
    db = DB(config=backend_config)
    stats = db.stats()
    assert stats["running"] is False  # a new DB does not start the worker
    assert set(stats["backends"]) == {backend}
    with db:
        for key in ("a", "b", "c"):
            db.write_message(key, {"n": key}, bucket, backend, queue=True)
        db.flush()
        stats = db.stats()
        assert stats["running"] is True
        counts = stats["backends"][backend]
        assert set(counts) >= {"queued", "applied", "pending", "retried", "failed", "batches"}
        assert (counts["queued"], counts["applied"], counts["pending"]) == (3, 3, 0), stats
        assert counts["failed"] == 0 and counts["last_error"] is None, stats
        assert stats["outbox"]["path"] == outbox_path
        assert stats["outbox"]["max_bytes"] > 0
        assert os.path.isdir(outbox_path)
    assert db.stats()["running"] is False
    db.close()
    with pytest.raises(tetherdb.InvalidArgumentError):
        db.stats()


def test_stats_without_the_outbox(config):
    config["queue_batch"] = {"durable": False}
    db = DB(config=config)
    assert db.stats()["outbox"] is None
    db.close()


def test_a_config_that_sets_autostart_starts_the_worker(config):
    config["queue_batch"] = {"autostart": True}
    db = DB(config=config)
    db.write_message("k", "v", queue=True)
    db.close()  # applies the queued write
    db = DB(config=config)
    assert db.read_message("k") == "v"
    db.close()


def test_context_manager_starts_and_stops_the_worker(backend_config, backend, bucket):
    backend_config.setdefault("queue_batch", {})["interval"] = 60
    with DB(config=backend_config) as db:
        db.write_message("k", "v", bucket, backend, queue=True)
    assert db.read_message("k", bucket, backend) == "v"  # stop() applied it
    with pytest.raises(RuntimeError):
        db.write_message("k2", "v", bucket, backend, queue=True)
    db.close()


def test_close_is_idempotent_and_releases_the_store(config):
    db = DB(config=config)
    db.write_message("k", "v")
    db.close()
    db.close()
    with pytest.raises(tetherdb.TetherError) as info:
        db.read_message("k")
    assert info.value.status == Status.INVALID_ARGUMENT
    again = DB(config=config)  # the store's lock was released
    assert again.read_message("k") == "v"
    again.close()


def test_a_dropped_db_releases_the_store(config):
    db = DB(config=config)
    db.write_message("k", "v")
    del db  # no close(): __del__ closes
    again = DB(config=config)
    assert again.read_message("k") == "v"
    again.close()


def test_other_failures_carry_their_status(db, config):
    with pytest.raises(tetherdb.TetherError) as info:
        DB(config=config)  # db holds the store
    assert info.value.status == Status.IO
    assert info.value.message
    assert str(info.value).startswith("TETHER_IO: ")


# --- values -----------------------------------------------------------------


def test_dict_values_are_stored_as_json_and_str_as_they_are(bdb, backend, bucket):
    bdb.write_message("d", {"name": "Alice", "n": 1}, bucket, backend)
    bdb.write_message("s", "plain text", bucket, backend)
    bdb.write_message("j", '{"a": 1}', bucket, backend)
    assert raw(bdb, "d", bucket, backend) == json.dumps({"name": "Alice", "n": 1}).encode()
    assert raw(bdb, "s", bucket, backend) == b"plain text"
    assert bdb.read_message("d", bucket, backend) == {"name": "Alice", "n": 1}
    assert bdb.read_message("s", bucket, backend) == "plain text"
    assert bdb.read_message("j", bucket, backend) == {"a": 1}  # JSON text reads back decoded
    bdb.write_message("s", {"now": "a dict"}, bucket, backend)  # a write overwrites
    assert bdb.read_message("s", bucket, backend) == {"now": "a dict"}


def test_bytes_values_round_trip(bdb, backend, bucket):
    bdb.write_message("b", b"\x00\xff\x01", bucket, backend)
    assert raw(bdb, "b", bucket, backend) == b"\x00\xff\x01"
    assert bdb.read_message("b", bucket, backend) == b"\x00\xff\x01"
    bdb.write_message("empty", "", bucket, backend)
    assert bdb.read_message("empty", bucket, backend) == ""


def test_other_value_types_are_a_type_error(db):
    with pytest.raises(TypeError, match="got int"):
        db.write_message("k", 123)


def test_read_of_an_absent_key_is_none(bdb, backend, bucket):
    assert bdb.read_message("absent", bucket, backend) is None


def test_buckets(bdb, backend, bucket):
    logs, logs_x = bucket, bucket + "X"  # one the prefix of the other
    bdb.write_message("k", "in logs", bucket=logs, backend=backend)
    bdb.write_message("k", "in logsX", bucket=logs_x, backend=backend)
    assert bdb.read_message("k", bucket=logs, backend=backend) == "in logs"
    assert bdb.read_message("k", bucket=logs_x, backend=backend) == "in logsX"
    # The Python TetherDB's key scheme: bucket:key.
    assert bdb.read_message(f"{logs}:k", backend=backend) == "in logs"
    # A bucket's listing holds its keys only, not those of a bucket its name prefixes.
    assert bdb.list_messages(bucket=logs, backend=backend) == {"messages": ["in logs"], "next_marker": None}


def test_update_message(bdb, backend, bucket):
    assert bdb.update_message("k", "v", bucket, backend) is False
    assert bdb.read_message("k", bucket, backend) is None  # update created nothing
    assert bdb.list_messages(bucket=bucket, backend=backend) == {"messages": [], "next_marker": None}
    bdb.write_message("k", "v", bucket, backend)
    assert bdb.update_message("k", {"v": 2}, bucket, backend) is True
    assert bdb.read_message("k", bucket, backend) == {"v": 2}


def test_delete_message(bdb, backend, bucket):
    bdb.write_message("k", "v", bucket, backend)
    assert bdb.delete_message("k", bucket, backend) is True
    assert bdb.delete_message("k", bucket, backend) is False
    assert bdb.read_message("k", bucket, backend) is None


def test_invalid_arguments_are_value_errors(db):
    for call in (
        lambda: db.write_message("", "v"),
        lambda: db.write_message("k", "v", bucket="a:b"),
        lambda: db.list_messages(page_size=0),
        lambda: db.list_messages(page_size=-1),
    ):
        with pytest.raises(ValueError) as info:
            call()
        assert info.value.status == Status.INVALID_ARGUMENT


# --- listing ----------------------------------------------------------------


def test_list_messages_pages(bdb, backend, bucket):
    for i in range(5):
        bdb.write_message(f"k{i}", {"i": i} if i % 2 else f"v{i}", bucket, backend)
    bdb.write_message("other", "x", bucket + "X", backend)  # another bucket: never listed

    first = bdb.list_messages(page_size=2, bucket=bucket, backend=backend)
    assert first == {"messages": ["v0", json.dumps({"i": 1})], "next_marker": "k1"}
    second = bdb.list_messages(page_size=2, start_after=first["next_marker"], bucket=bucket, backend=backend)
    assert second == {"messages": ["v2", json.dumps({"i": 3})], "next_marker": "k3"}
    last = bdb.list_messages(page_size=2, start_after="k3", bucket=bucket, backend=backend)
    assert last == {"messages": ["v4"], "next_marker": None}
    # None exactly on the last page, also when that page is full.
    full = bdb.list_messages(page_size=5, bucket=bucket, backend=backend)
    assert len(full["messages"]) == 5 and full["next_marker"] is None
    four = bdb.list_messages(page_size=4, bucket=bucket, backend=backend)
    assert four["next_marker"] == "k3"
    rest = bdb.list_messages(page_size=4, start_after="k3", bucket=bucket, backend=backend)
    assert rest == {"messages": ["v4"], "next_marker": None}


def test_list_messages_defaults(bdb, backend, bucket):
    for i in range(12):
        bdb.write_message(f"k{i:02d}", "v", bucket, backend)
    page = bdb.list_messages(bucket=bucket, backend=backend)
    assert len(page["messages"]) == 10
    assert page["next_marker"] == "k09"
    assert bdb.list_messages(bucket=bucket + "-empty", backend=backend) == {"messages": [], "next_marker": None}


# --- backends -----------------------------------------------------------------


def test_an_unknown_backend_is_a_value_error(db):
    calls = (
        lambda: db.write_message("k", "v", backend="nosuch"),
        lambda: db.read_message("k", backend="nosuch"),
        lambda: db.update_message("k", "v", backend="nosuch"),
        lambda: db.delete_message("k", backend="nosuch"),
        lambda: db.list_messages(backend="nosuch"),
        lambda: db.tether(backend="nosuch")(lambda: {"value": "v"})(),
    )
    for call in calls:
        with pytest.raises(ValueError, match="nosuch") as info:
            call()
        assert info.value.status == Status.UNKNOWN_BACKEND


def test_an_unreachable_etcd_is_unavailable(tmp_path):
    # Nothing listens on port 1: a call fails at once, with the status
    # TETHER_UNAVAILABLE (the handle opens while its server is down: it
    # connects on first use).
    db = DB(
        config={
            "logging": "none",
            "etcd": {"endpoints": ["127.0.0.1:1"], "timeout": 1},
            "queue_batch": {"outbox_path": str(tmp_path / "outbox")},
        }
    )
    started = time.monotonic()
    for call in (
        lambda: db.write_message("k", "v", backend="etcd"),
        lambda: db.read_message("k", backend="etcd"),  # not None: nothing is known
    ):
        with pytest.raises(tetherdb.TetherError) as info:
            call()
        assert info.value.status == Status.UNAVAILABLE
        assert str(info.value).startswith("TETHER_UNAVAILABLE: ")
        assert "etcd" in info.value.message
    assert time.monotonic() - started < 5
    db.close()


def test_a_backend_not_in_the_config_is_unknown(db):
    # db's configuration has a local section only.
    for backend in ("etcd", "nosuch"):
        with pytest.raises(ValueError) as info:
            db.write_message("k", "v", backend=backend)
        assert isinstance(info.value, tetherdb.UnknownBackendError)
        assert info.value.status == Status.UNKNOWN_BACKEND
        assert f'"{backend}"' in info.value.message


# --- tether -----------------------------------------------------------------


def test_tether_writes_the_return_value(bdb, backend, bucket):
    @bdb.tether(bucket=bucket, backend=backend)
    def example_function():
        return {"key": "tether_key", "value": "tether_value"}

    assert example_function() is True
    assert bdb.read_message("tether_key", bucket, backend) == "tether_value"
    assert example_function.__name__ == "example_function"


def test_tether_makes_a_uuid4_key(bdb, backend, bucket, monkeypatch):
    made = []
    real = uuid.uuid4

    def recording_uuid4():
        made.append(real())
        return made[-1]

    monkeypatch.setattr(uuid, "uuid4", recording_uuid4)

    @bdb.tether(bucket=bucket, backend=backend)
    def log(event):
        return {"value": {"event": event}}

    assert log("login") is True
    assert len(made) == 1 and made[0].version == 4
    assert bdb.read_message(str(made[0]), bucket=bucket, backend=backend) == {"event": "login"}


def test_tether_queue(bdb, backend, bucket):
    @bdb.tether(bucket=bucket, queue=True, backend=backend)
    def queued():
        return {"key": "q", "value": "v"}

    with pytest.raises(RuntimeError):
        queued()  # the worker is not started
    bdb.start()
    assert queued() is True
    bdb.flush()
    assert bdb.read_message("q", bucket, backend) == "v"


@pytest.mark.parametrize(
    "result, message",
    [
        ("not a dict", "Function return value must be a dictionary containing 'value'."),
        ({"key": "k"}, "Function return value must be a dictionary containing 'value'."),
        ({"key": "k", "value": 123}, "The 'value' field must be a dict or string, got int."),
        ({"value": [1, 2]}, "The 'value' field must be a dict or string, got list."),
    ],
)
def test_tether_value_errors(bdb, backend, bucket, result, message):
    @bdb.tether(bucket=bucket, backend=backend)
    def bad():
        return result

    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        bad()
    assert bdb.list_messages(bucket=bucket, backend=backend)["messages"] == []


# --- threads ------------------------------------------------------------------


def test_threads_share_a_db_and_keep_their_own_errors(db):
    failures = []

    def work(n):
        for i in range(50):
            db.write_message(f"t{n}-{i}", "v", bucket="t")
            try:
                db.write_message("k", "v", backend=f"nosuch-{n}")
            except ValueError as e:
                if f'"nosuch-{n}"' not in e.message:
                    failures.append(e.message)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(db.list_messages(page_size=1000, bucket="t")["messages"]) == 400


# --- loading the library ------------------------------------------------------

LOAD = "import tetherdb; print(tetherdb.library_path); print(tetherdb.version())"


def run_python(env, cwd):
    result = subprocess.run(
        [sys.executable, "-c", LOAD], env=env, cwd=cwd, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def clean_env():
    env = dict(os.environ)
    env.pop("TETHERDB_LIBRARY", None)
    env.pop("LD_LIBRARY_PATH", None)
    return env


def package_copy(tmp_path, with_library):
    """A copy of the tetherdb package under tmp_path/site, with or without
    a library of its own; returns its folder."""
    package = tmp_path / "site" / "tetherdb"
    shutil.copytree(
        os.path.dirname(tetherdb.__file__),
        package,
        ignore=shutil.ignore_patterns(tetherdb._native.LIBRARY_NAME, "__pycache__"),
    )
    if with_library:
        shutil.copy(tetherdb.library_path, package / tetherdb._native.LIBRARY_NAME)
    return package


def test_the_installed_package_loads_the_library_inside_it(tmp_path):
    # What `pip install ./bindings/python` installs: the package and, inside
    # it, the library it built; no environment variable needed.
    bundled = os.path.join(os.path.dirname(tetherdb.__file__), tetherdb._native.LIBRARY_NAME)
    if not os.path.exists(bundled):
        message = f"the package under test has no library of its own ({bundled})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI tests the package as pip installs it")
        pytest.skip(message)
    path, version = run_python(clean_env(), tmp_path)
    assert path == bundled and version == tetherdb.version()


def test_library_from_the_environment_variable_first(tmp_path):
    # TETHERDB_LIBRARY wins over the library inside the package.
    elsewhere = tmp_path / "elsewhere" / tetherdb._native.LIBRARY_NAME
    elsewhere.parent.mkdir()
    shutil.copy(tetherdb.library_path, elsewhere)
    env = clean_env()
    env["TETHERDB_LIBRARY"] = str(elsewhere)
    env["PYTHONPATH"] = str(package_copy(tmp_path, with_library=True).parent)
    path, version = run_python(env, tmp_path)
    assert path == str(elsewhere) and version == tetherdb.version()


def test_library_next_to_the_package(tmp_path):
    package = package_copy(tmp_path, with_library=True)
    env = clean_env()
    env["PYTHONPATH"] = str(package.parent)
    path, _ = run_python(env, tmp_path)
    assert path == str(package / tetherdb._native.LIBRARY_NAME)


def test_library_from_the_loader_search_path(tmp_path):
    # A package without a library of its own (as the sources are) takes the
    # one the dynamic loader finds.
    env = clean_env()
    env["PYTHONPATH"] = str(package_copy(tmp_path, with_library=False).parent)
    env["LD_LIBRARY_PATH"] = os.path.dirname(os.path.abspath(tetherdb.library_path))
    path, version = run_python(env, tmp_path)
    assert path == tetherdb._native.LIBRARY_NAME and version == tetherdb.version()


def test_a_missing_library_is_an_import_error(tmp_path):
    env = clean_env()
    env["TETHERDB_LIBRARY"] = str(tmp_path / "absent.so")
    result = subprocess.run([sys.executable, "-c", LOAD], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "ImportError: tetherdb: cannot load" in result.stderr
