"""Tests of the Python binding on the embedded local backend: the Python
TetherDB's API and semantics, and what this binding adds."""

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid

import pytest

import tetherdb
from tetherdb import DB, Status


def raw(db, key, bucket=""):
    """The stored bytes, through the C API, to see how a value was encoded."""
    value, length = ctypes.c_void_p(), ctypes.c_size_t()
    lib = tetherdb._lib
    assert lib.tether_read(db._handle, None, bucket.encode(), key.encode(), ctypes.byref(value), ctypes.byref(length)) == 0
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


def test_start_and_stop_are_idempotent_and_stop_applies_queued_writes(config):
    config["queue_batch"] = {"interval": 60}  # only stop() can apply the write in time
    db = DB(config=config)
    db.start()
    db.start()
    db.write_message("k", {"n": 1}, queue=True)
    db.stop()
    assert db.read_message("k") == {"n": 1}
    db.stop()
    with pytest.raises(RuntimeError):
        db.write_message("k", "v", queue=True)
    db.close()


def test_flush_applies_queued_writes(config):
    config["queue_batch"] = {"interval": 60}
    db = DB(config=config)
    db.start()
    db.write_message("k", "v", queue=True)
    db.flush()
    assert db.read_message("k") == "v"
    db.close()


def test_a_config_that_sets_autostart_starts_the_worker(config):
    config["queue_batch"] = {"autostart": True}
    db = DB(config=config)
    db.write_message("k", "v", queue=True)
    db.close()  # applies the queued write
    db = DB(config=config)
    assert db.read_message("k") == "v"
    db.close()


def test_context_manager_starts_and_stops_the_worker(config):
    config["queue_batch"] = {"interval": 60}
    with DB(config=config) as db:
        db.write_message("k", "v", queue=True)
    assert db.read_message("k") == "v"  # stop() applied it
    with pytest.raises(RuntimeError):
        db.write_message("k2", "v", queue=True)
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


def test_dict_values_are_stored_as_json_and_str_as_they_are(db):
    db.write_message("d", {"name": "Alice", "n": 1})
    db.write_message("s", "plain text")
    db.write_message("j", '{"a": 1}')
    assert raw(db, "d") == json.dumps({"name": "Alice", "n": 1}).encode()
    assert raw(db, "s") == b"plain text"
    assert db.read_message("d") == {"name": "Alice", "n": 1}
    assert db.read_message("s") == "plain text"
    assert db.read_message("j") == {"a": 1}  # JSON text reads back decoded


def test_bytes_values_round_trip(db):
    db.write_message("b", b"\x00\xff\x01")
    assert raw(db, "b") == b"\x00\xff\x01"
    assert db.read_message("b") == b"\x00\xff\x01"
    db.write_message("empty", "")
    assert db.read_message("empty") == ""


def test_other_value_types_are_a_type_error(db):
    with pytest.raises(TypeError, match="got int"):
        db.write_message("k", 123)


def test_read_of_an_absent_key_is_none(db):
    assert db.read_message("absent") is None


def test_buckets(db):
    db.write_message("k", "in logs", bucket="logs")
    db.write_message("k", "no bucket")
    assert db.read_message("k", bucket="logs") == "in logs"
    assert db.read_message("logs:k") == "in logs"  # the Python TetherDB's key scheme
    assert db.read_message("k") == "no bucket"


def test_update_message(db):
    assert db.update_message("k", "v") is False
    assert db.read_message("k") is None
    db.write_message("k", "v")
    assert db.update_message("k", {"v": 2}) is True
    assert db.read_message("k") == {"v": 2}


def test_delete_message(db):
    db.write_message("k", "v")
    assert db.delete_message("k") is True
    assert db.delete_message("k") is False
    assert db.read_message("k") is None


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


def test_list_messages_pages(db):
    for i in range(5):
        db.write_message(f"k{i}", {"i": i} if i % 2 else f"v{i}", bucket="b")
    db.write_message("other", "x", bucket="bX")  # another bucket: never listed

    first = db.list_messages(page_size=2, bucket="b")
    assert first == {"messages": ["v0", json.dumps({"i": 1})], "next_marker": "k1"}
    second = db.list_messages(page_size=2, start_after=first["next_marker"], bucket="b")
    assert second == {"messages": ["v2", json.dumps({"i": 3})], "next_marker": "k3"}
    last = db.list_messages(page_size=2, start_after="k3", bucket="b")
    assert last == {"messages": ["v4"], "next_marker": None}


def test_list_messages_defaults(db):
    for i in range(12):
        db.write_message(f"k{i:02d}", "v")
    page = db.list_messages()
    assert len(page["messages"]) == 10
    assert page["next_marker"] == "k09"
    assert db.list_messages(bucket="empty") == {"messages": [], "next_marker": None}


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


def test_backend_names_reach_the_library(config):
    # Whether or not this build has the etcd backend, the library itself
    # answers for it (unknown backend, or unreachable: nothing listens on
    # port 1): the binding does not filter backend names.
    config["etcd"] = {"endpoints": ["127.0.0.1:1"], "timeout": 1}
    db = DB(config=config)
    with pytest.raises(tetherdb.TetherError) as info:
        db.write_message("k", "v", backend="etcd")
    db.close()
    assert info.value.status in (Status.UNKNOWN_BACKEND, Status.UNAVAILABLE)
    assert "etcd" in info.value.message


# --- tether -----------------------------------------------------------------


def test_tether_writes_the_return_value(db):
    @db.tether(bucket="test_bucket", backend="local")
    def example_function():
        return {"key": "tether_key", "value": "tether_value"}

    assert example_function() is True
    assert db.read_message("tether_key", "test_bucket", "local") == "tether_value"
    assert example_function.__name__ == "example_function"


def test_tether_makes_a_uuid4_key(db, monkeypatch):
    made = []
    real = uuid.uuid4

    def recording_uuid4():
        made.append(real())
        return made[-1]

    monkeypatch.setattr(uuid, "uuid4", recording_uuid4)

    @db.tether(bucket="logs")
    def log(event):
        return {"value": {"event": event}}

    assert log("login") is True
    assert len(made) == 1 and made[0].version == 4
    assert db.read_message(str(made[0]), bucket="logs") == {"event": "login"}


def test_tether_queue(db):
    @db.tether(queue=True)
    def queued():
        return {"key": "q", "value": "v"}

    with pytest.raises(RuntimeError):
        queued()  # the worker is not started
    db.start()
    assert queued() is True
    db.flush()
    assert db.read_message("q") == "v"


@pytest.mark.parametrize(
    "result, message",
    [
        ("not a dict", "Function return value must be a dictionary containing 'value'."),
        ({"key": "k"}, "Function return value must be a dictionary containing 'value'."),
        ({"key": "k", "value": 123}, "The 'value' field must be a dict or string, got int."),
        ({"value": [1, 2]}, "The 'value' field must be a dict or string, got list."),
    ],
)
def test_tether_value_errors(db, result, message):
    @db.tether(bucket="test_bucket")
    def bad():
        return result

    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        bad()
    assert db.list_messages(bucket="test_bucket")["messages"] == []


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


def test_library_from_the_environment_variable(tmp_path):
    env = clean_env()
    env["TETHERDB_LIBRARY"] = tetherdb.library_path
    path, version = run_python(env, tmp_path)
    assert path == tetherdb.library_path and version == tetherdb.version()


def test_library_next_to_the_package(tmp_path):
    package = tmp_path / "site" / "tetherdb"
    shutil.copytree(os.path.dirname(tetherdb.__file__), package)
    shutil.copy(tetherdb.library_path, package / "libtetherdb.so")
    env = clean_env()
    env["PYTHONPATH"] = str(tmp_path / "site")
    path, _ = run_python(env, tmp_path)
    assert path == str(package / "libtetherdb.so")


def test_library_from_the_loader_search_path(tmp_path):
    env = clean_env()
    env["LD_LIBRARY_PATH"] = os.path.dirname(os.path.abspath(tetherdb.library_path))
    path, version = run_python(env, tmp_path)
    assert path == "libtetherdb.so" and version == tetherdb.version()


def test_a_missing_library_is_an_import_error(tmp_path):
    env = clean_env()
    env["TETHERDB_LIBRARY"] = str(tmp_path / "absent.so")
    result = subprocess.run([sys.executable, "-c", LOAD], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "ImportError: tetherdb: cannot load" in result.stderr
