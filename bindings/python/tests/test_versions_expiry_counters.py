"""Tests of what the binding adds over the Python TetherDB's API: versions and
conditions (read_message(with_version=True), read_version, write_message's
if_absent / if_version, write_versioned, delete_message(if_version=)),
expiry (ttl, sliding, touch), counters (increment, counter_total), and
listing and deleting by prefix (list_messages(prefix=, keys_only=),
delete_prefix). Each runs on local and on the etcd of TETHERDB_TEST_ETCD
(the `bdb`, `backend` and `bucket` fixtures of conftest.py), in a bucket of
its own. Expiry is awaited by polling, with a bound, never by a threshold on
how long a call takes."""

import math
import os
import threading
import time
from datetime import timedelta

import pytest

import tetherdb
from tetherdb import DB, ConflictError, InvalidArgumentError, NotFoundError, Status, TetherError
from tetherdb.db import _ttl_ms

# How long a key written with a short ttl may take to read as absent: a
# bound for slow machines, not a measure (the library makes a key absent
# from its deadline on).
EXPIRY_BOUND = 30.0


def eventually(predicate, what, bound=EXPIRY_BOUND):
    """Polls predicate until it is true; fails after `bound` seconds."""
    give_up = time.monotonic() + bound
    while not predicate():
        if time.monotonic() > give_up:
            pytest.fail(f"{what}: still not the case after {bound} s")
        time.sleep(0.02)


# --- versions -----------------------------------------------------------------


def test_read_message_with_version(bdb, backend, bucket):
    assert bdb.read_message("k", bucket, backend, with_version=True) == (None, None)
    bdb.write_message("k", {"n": 1}, bucket, backend)
    value, version = bdb.read_message("k", bucket, backend, with_version=True)
    assert value == {"n": 1}
    assert isinstance(version, int) and version > 0
    assert bdb.read_message("k", bucket, backend) == {"n": 1}  # without: the value alone
    assert bdb.read_version("k", bucket, backend) == version
    assert bdb.read_version("absent", bucket, backend) is None

    bdb.write_message("k", {"n": 2}, bucket, backend)
    _, second = bdb.read_message("k", bucket, backend, with_version=True)
    assert second > version
    assert bdb.update_message("k", "v3", bucket, backend) is True
    assert bdb.read_version("k", bucket, backend) > second


def test_write_versioned_returns_the_version_reads_give(bdb, backend, bucket):
    first = bdb.write_versioned("k", "v1", bucket, backend)
    assert first > 0
    assert bdb.read_message("k", bucket, backend, with_version=True) == ("v1", first)
    second = bdb.write_versioned("k", "v2", bucket, backend, if_version=first)
    assert second > first
    assert bdb.read_message("k", bucket, backend, with_version=True) == ("v2", second)


def test_versions_grow_across_a_delete(bdb, backend, bucket):
    before = bdb.write_versioned("k", "v", bucket, backend)
    assert bdb.delete_message("k", bucket, backend) is True
    after = bdb.write_versioned("k", "v", bucket, backend)
    assert after > before


def test_write_message_if_absent(bdb, backend, bucket):
    assert bdb.write_message("k", "first", bucket, backend, if_absent=True) is True
    assert bdb.write_message("k", "second", bucket, backend, if_absent=True) is False
    assert bdb.read_message("k", bucket, backend) == "first"  # a failed condition changes nothing


def test_write_message_if_version(bdb, backend, bucket):
    bdb.write_message("k", "v1", bucket, backend)
    _, version = bdb.read_message("k", bucket, backend, with_version=True)
    assert bdb.write_message("k", "v2", bucket, backend, if_version=version) is True
    assert bdb.write_message("k", "v3", bucket, backend, if_version=version) is False  # stale now
    assert bdb.read_message("k", bucket, backend) == "v2"
    assert bdb.write_message("absent", "v", bucket, backend, if_version=version) is False
    assert bdb.read_message("absent", bucket, backend) is None


def test_write_versioned_raises_for_failed_conditions(bdb, backend, bucket):
    version = bdb.write_versioned("k", "v1", bucket, backend, if_absent=True)

    with pytest.raises(ConflictError) as info:
        bdb.write_versioned("k", "v2", bucket, backend, if_absent=True)
    assert isinstance(info.value, TetherError)
    assert info.value.status == Status.CONFLICT
    assert str(info.value).startswith("TETHER_CONFLICT: ")
    assert "k" in info.value.message

    with pytest.raises(ConflictError):
        bdb.write_versioned("k", "v2", bucket, backend, if_version=version + 1)

    with pytest.raises(NotFoundError) as absent:
        bdb.write_versioned("absent", "v", bucket, backend, if_version=version)
    assert isinstance(absent.value, LookupError)
    assert absent.value.status == Status.NOT_FOUND

    assert bdb.read_message("k", bucket, backend, with_version=True) == ("v1", version)


def test_delete_message_if_version(bdb, backend, bucket):
    version = bdb.write_versioned("k", "v", bucket, backend)
    assert bdb.delete_message("k", bucket, backend, if_version=version + 1) is False
    assert bdb.read_message("k", bucket, backend) == "v"
    assert bdb.delete_message("k", bucket, backend, if_version=version) is True
    assert bdb.read_message("k", bucket, backend) is None
    assert bdb.delete_message("k", bucket, backend, if_version=version) is False


def test_conditions_the_library_refuses_are_value_errors(bdb, backend, bucket):
    bdb.start()
    calls = (
        # Both conditions at once.
        lambda: bdb.write_message("k", "v", bucket, backend, if_absent=True, if_version=1),
        lambda: bdb.write_versioned("k", "v", bucket, backend, if_absent=True, if_version=1),
        # A condition on a queued write.
        lambda: bdb.write_message("k", "v", bucket, backend, queue=True, if_absent=True),
        lambda: bdb.write_message("k", "v", bucket, backend, queue=True, if_version=1),
        # sliding without a ttl.
        lambda: bdb.write_message("k", "v", bucket, backend, sliding=True),
    )
    for call in calls:
        with pytest.raises(ValueError) as info:
            call()
        assert isinstance(info.value, InvalidArgumentError)
        assert info.value.status == Status.INVALID_ARGUMENT
    assert bdb.read_message("k", bucket, backend) is None


def test_integers_beyond_their_c_type_are_value_errors(db):
    db.write_message("k", "v")
    for call in (
        lambda: db.write_message("k", "v", if_version=-1),
        lambda: db.write_message("k", "v", if_version=2**64),
        lambda: db.delete_message("k", if_version=2**64),
        lambda: db.increment("n", 2**63),
        lambda: db.increment("n", -(2**63) - 1),
        lambda: db.increment("n", shards=-1),
        lambda: db.counter_total("n", shards=2**32),
    ):
        with pytest.raises(InvalidArgumentError) as info:
            call()
        assert info.value.status == Status.INVALID_ARGUMENT
    for call in (
        lambda: db.write_message("k", "v", if_version="1"),
        lambda: db.write_message("k", "v", if_version=True),
        lambda: db.increment("n", 1.5),
    ):
        with pytest.raises(TypeError):
            call()
    assert db.read_message("k") == "v"
    assert db.read_message("n") is None


# --- expiry ---------------------------------------------------------------------


def test_ttl_in_seconds_becomes_whole_milliseconds_rounded_up():
    assert _ttl_ms(None, "ttl") == 0
    assert _ttl_ms(1, "ttl") == 1000
    assert _ttl_ms(0.29, "ttl") == 290  # 290.00000000000006 as a float product
    assert _ttl_ms(1.0005, "ttl") == 1001
    assert _ttl_ms(0.0001, "ttl") == 1  # never 0, which would mean no expiry
    assert _ttl_ms(timedelta(minutes=2), "ttl") == 120_000
    assert _ttl_ms(math.inf, "ttl") == 2**64 - 1  # the library refuses it
    assert _ttl_ms(1e30, "ttl") == 2**64 - 1


def test_a_key_with_a_ttl_expires(bdb, backend, bucket):
    bdb.write_message("long", "v", bucket, backend, ttl=3600)
    bdb.write_message("short", "v", bucket, backend, ttl=0.05)
    bdb.write_message("plain", "v", bucket, backend)
    eventually(lambda: bdb.read_message("short", bucket, backend) is None, "the key with a 50 ms ttl expired")
    # Absent for every call: listings, existence, conditions, deletes.
    assert bdb.read_version("short", bucket, backend) is None
    assert bdb.list_messages(bucket=bucket, backend=backend, keys_only=True)["keys"] == ["long", "plain"]
    assert bdb.delete_message("short", bucket, backend) is False
    assert bdb.touch("short", 60, bucket, backend) is False
    assert bdb.write_message("short", "again", bucket, backend, if_absent=True) is True
    assert bdb.read_message("long", bucket, backend) == "v"


def test_touch_sets_and_removes_a_deadline(bdb, backend, bucket):
    assert bdb.touch("absent", 60, bucket, backend) is False
    bdb.write_message("k", {"keep": "me"}, bucket, backend)
    version = bdb.read_version("k", bucket, backend)
    assert bdb.touch("k", timedelta(milliseconds=50), bucket, backend) is True
    eventually(lambda: bdb.read_message("k", bucket, backend) is None, "the touched key expired")

    # touch(None) removes the deadline: once it returned True (so before the
    # deadline), the key stays past it.
    for _ in range(5):
        bdb.write_message("k", {"keep": "me"}, bucket, backend, ttl=1)
        written = time.monotonic()  # after the call: its deadline is before written + 1 s
        if bdb.touch("k", None, bucket, backend):
            break
    else:
        pytest.fail("touch never came within the ttl of 1 s of its write, in 5 tries")
    time.sleep(max(0.0, written + 1.2 - time.monotonic()))
    assert bdb.read_message("k", bucket, backend) == {"keep": "me"}
    assert bdb.read_version("k", bucket, backend) > version


def test_a_write_without_ttl_clears_the_deadline(bdb, backend, bucket):
    for _ in range(5):
        bdb.write_message("k", "v1", bucket, backend, ttl=1)
        written = time.monotonic()  # after the call: its deadline is before written + 1 s
        # if_version: only if the key was still there (before its deadline).
        version = bdb.read_version("k", bucket, backend)
        if version is not None and bdb.write_message("k", "v2", bucket, backend, if_version=version):
            break
    else:
        pytest.fail("the rewrite never came within the ttl of 1 s of the write, in 5 tries")
    time.sleep(max(0.0, written + 1.2 - time.monotonic()))
    assert bdb.read_message("k", bucket, backend) == "v2"


def test_a_sliding_ttl_restarts_at_each_read(bdb, backend, bucket):
    ttl = 1.0
    # Write at w, read at r (w + 0.6 s), then look at c: past w's deadline
    # (w + ttl) and before r's (r + ttl). The key is there only if the read
    # restarted its ttl. A machine too slow to keep to that order makes the
    # try inconclusive, and it is made again.
    for _ in range(5):
        bdb.write_message("k", "v", bucket, backend, ttl=ttl, sliding=True)
        written = time.monotonic()  # after the call: its deadline is before written + ttl
        time.sleep(0.6 * ttl)
        read_at = time.monotonic()  # before the read: its new deadline is after read_at + ttl
        if bdb.read_message("k", bucket, backend) != "v":
            continue  # the read came after the first deadline
        time.sleep(max(0.0, written + ttl + 0.05 - time.monotonic()))
        present = bdb.read_message("k", bucket, backend) == "v"
        if time.monotonic() < read_at + ttl:
            assert present, "the sliding key expired although a read restarted its ttl"
            break
    else:
        pytest.fail("no try kept to the order write, read, look within 1 s, in 5 tries")


def test_a_queued_write_with_a_ttl(bdb, backend, bucket):
    bdb.start()
    bdb.write_message("long", "v", bucket, backend, queue=True, ttl=3600)
    bdb.write_message("short", "v", bucket, backend, queue=True, ttl=0.05)
    bdb.flush()
    assert bdb.read_message("long", bucket, backend) == "v"
    eventually(lambda: bdb.read_message("short", bucket, backend) is None, "the queued key with a ttl expired")
    assert "expired" in bdb.stats()["backends"][backend]


def test_ttls_the_binding_or_the_library_refuses(bdb, backend, bucket):
    for ttl in (0, 0.0, -1, math.nan, timedelta(0), math.inf, 1e30):
        with pytest.raises(InvalidArgumentError) as info:
            bdb.write_message("k", "v", bucket, backend, ttl=ttl)
        assert info.value.status == Status.INVALID_ARGUMENT
    with pytest.raises(InvalidArgumentError):
        bdb.touch("k", 0, bucket, backend)
    for ttl in ("1", True, [1]):
        with pytest.raises(TypeError):
            bdb.write_message("k", "v", bucket, backend, ttl=ttl)
    assert bdb.read_message("k", bucket, backend) is None


# --- counters -------------------------------------------------------------------


def test_increment_and_counter_total(bdb, backend, bucket):
    assert bdb.counter_total("n", bucket, backend) == 0  # absent counts 0
    assert bdb.increment("n", bucket=bucket, backend=backend) == 1
    assert bdb.increment("n", 41, bucket, backend) == 42
    assert bdb.read_message("n", bucket, backend) == 42  # stored as the text "42"
    assert bdb.increment("n", -50, bucket, backend) == -8
    assert bdb.counter_total("n", bucket, backend) == -8
    assert bdb.increment("zero", 0, bucket, backend) == 0  # creates the key as "0"
    assert bdb.read_message("zero", bucket, backend) == 0
    bdb.write_message("text", "+007", bucket, backend)  # a counter to the library
    assert bdb.increment("text", 1, bucket, backend) == 8
    big = 2**63 - 1
    bdb.write_message("big", str(big), bucket, backend)
    assert bdb.counter_total("big", bucket, backend) == big


def test_increments_on_what_is_no_counter_are_conflicts(bdb, backend, bucket):
    bdb.write_message("words", "not a number", bucket, backend)
    bdb.write_message("max", str(2**63 - 1), bucket, backend)
    for call in (
        lambda: bdb.increment("words", 1, bucket, backend),
        lambda: bdb.counter_total("words", bucket, backend),
        lambda: bdb.increment("max", 1, bucket, backend),  # beyond a 64-bit integer
    ):
        with pytest.raises(ConflictError) as info:
            call()
        assert info.value.status == Status.CONFLICT
    assert bdb.read_message("words", bucket, backend) == "not a number"
    assert bdb.read_message("max", bucket, backend) == 2**63 - 1


def test_sharded_counters(bdb, backend, bucket):
    for i in range(1, 21):
        assert bdb.increment("visits", 1, bucket, backend, shards=4) == i
    assert bdb.counter_total("visits", bucket, backend, shards=4) == 20
    keys = bdb.list_messages(100, bucket=bucket, backend=backend, keys_only=True)["keys"]
    assert keys and set(keys) <= {f"visits#shard{i}" for i in range(4)}
    assert bdb.counter_total("visits", bucket, backend) == 0  # the key itself is not written
    with pytest.raises(InvalidArgumentError):
        bdb.increment("visits", 1, bucket, backend, shards=tetherdb.MAX_SHARDS + 1)


def test_increments_from_threads_count_once(bdb, backend, bucket):
    def work():
        for _ in range(25):
            bdb.increment("n", 1, bucket, backend)
            bdb.increment("sharded", 1, bucket, backend, shards=8)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bdb.counter_total("n", bucket, backend) == 100
    assert bdb.counter_total("sharded", bucket, backend, shards=8) == 100


# --- listing and deleting by prefix -----------------------------------------


def test_list_messages_by_prefix(bdb, backend, bucket):
    for key in ("a1", "a2", "a3", "b1"):
        bdb.write_message(key, f"value of {key}", bucket, backend)
    bdb.write_message("a9", "other bucket", bucket + "X", backend)

    first = bdb.list_messages(2, bucket=bucket, backend=backend, prefix="a")
    assert first == {"messages": ["value of a1", "value of a2"], "next_marker": "a2"}
    rest = bdb.list_messages(2, first["next_marker"], bucket, backend, prefix="a")
    assert rest == {"messages": ["value of a3"], "next_marker": None}
    assert bdb.list_messages(bucket=bucket, backend=backend, prefix="zz") == {"messages": [], "next_marker": None}


def test_list_messages_keys_only(bdb, backend, bucket):
    for key in ("a1", "a2", "a3", "b1"):
        bdb.write_message(key, {"key": key}, bucket, backend)
    assert bdb.list_messages(bucket=bucket, backend=backend, keys_only=True) == {
        "keys": ["a1", "a2", "a3", "b1"],
        "next_marker": None,
    }
    page = bdb.list_messages(2, bucket=bucket, backend=backend, prefix="a", keys_only=True)
    assert page == {"keys": ["a1", "a2"], "next_marker": "a2"}
    page = bdb.list_messages(2, page["next_marker"], bucket, backend, prefix="a", keys_only=True)
    assert page == {"keys": ["a3"], "next_marker": None}
    # Without a bucket, keys are listed as stored: bucket:key.
    stored = bdb.list_messages(10, backend=backend, prefix=f"{bucket}:a", keys_only=True)
    assert stored == {"keys": [f"{bucket}:a1", f"{bucket}:a2", f"{bucket}:a3"], "next_marker": None}


def test_delete_prefix(bdb, backend, bucket):
    for key in ("2023-12", "2024-01", "2024-02", "2024-03"):
        bdb.write_message(key, "v", bucket, backend)
    bdb.write_message("2024-01", "other bucket", bucket + "X", backend)

    assert bdb.delete_prefix("2024-", bucket, backend) == 3
    assert bdb.list_messages(bucket=bucket, backend=backend, keys_only=True)["keys"] == ["2023-12"]
    assert bdb.read_message("2024-01", bucket + "X", backend) == "other bucket"
    assert bdb.delete_prefix("2024-", bucket, backend) == 0  # nothing left: 0, no error

    # Without a bucket, the prefix is of the stored keys, bucket part included.
    assert bdb.delete_prefix(f"{bucket}X:", backend=backend) == 1
    assert bdb.read_message("2024-01", bucket + "X", backend) is None

    # "" deletes the whole bucket.
    assert bdb.delete_prefix("", bucket, backend) == 1
    assert bdb.list_messages(bucket=bucket, backend=backend) == {"messages": [], "next_marker": None}


def test_delete_prefix_without_bucket_or_prefix_is_a_value_error(bdb, backend, bucket):
    bdb.write_message("k", "v", bucket, backend)
    with pytest.raises(ValueError) as info:
        bdb.delete_prefix("", backend=backend)
    assert info.value.status == Status.INVALID_ARGUMENT
    assert bdb.read_message("k", bucket, backend) == "v"


# --- errors ---------------------------------------------------------------------


def test_the_new_calls_on_an_unknown_backend_are_value_errors(db):
    calls = (
        lambda: db.write_versioned("k", "v", backend="nosuch"),
        lambda: db.read_message("k", backend="nosuch", with_version=True),
        lambda: db.read_version("k", backend="nosuch"),
        lambda: db.delete_message("k", backend="nosuch", if_version=1),
        lambda: db.touch("k", 1, backend="nosuch"),
        lambda: db.increment("k", backend="nosuch"),
        lambda: db.counter_total("k", backend="nosuch"),
        lambda: db.delete_prefix("p", backend="nosuch"),
        lambda: db.list_messages(backend="nosuch", keys_only=True),
    )
    for call in calls:
        with pytest.raises(ValueError, match="nosuch") as info:
            call()
        assert isinstance(info.value, tetherdb.UnknownBackendError)


def test_check_raises_a_type_per_status():
    # Statuses local and etcd never give (TETHER_UNSUPPORTED: every call
    # works on every engine) still raise their own type.
    with pytest.raises(tetherdb.UnsupportedError) as info:
        tetherdb._native.check(Status.UNSUPPORTED)
    assert info.value.status == Status.UNSUPPORTED
    assert str(info.value).startswith("TETHER_UNSUPPORTED: ")
    for status, error in (
        (Status.CONFLICT, ConflictError),
        (Status.NOT_FOUND, NotFoundError),
        (Status.UNAVAILABLE, TetherError),
    ):
        with pytest.raises(error):
            tetherdb._native.check(status)


def test_a_closed_db_refuses_the_new_calls(config):
    db = DB(config=config)
    db.close()
    for call in (
        lambda: db.increment("n"),
        lambda: db.read_version("k"),
        lambda: db.delete_prefix("p", "b"),
    ):
        with pytest.raises(InvalidArgumentError):
            call()


def test_copy_pushes_what_changed_and_mirrors(backend, bucket, tmp_path):
    """copy() from a local store to `backend` under a name of its own: a
    dry run changes nothing, changed= writes only what differs, mirror=
    deletes what the source lacks."""
    target = {"engine": "local", "filepath": str(tmp_path / "target")}
    if backend == "etcd":
        target = {"engine": "etcd", "endpoints": [os.environ["TETHERDB_TEST_ETCD"]]}
    config = {
        "logging": "none",
        "default_backend": "source",
        "queue_batch": {"outbox_path": str(tmp_path / "outbox")},
        "backends": {"source": {"engine": "local", "filepath": str(tmp_path / "source")}, "target": target},
    }
    with DB(config=config) as db:
        for key in ("a", "b", "c"):
            db.write_message(key, {"n": key}, bucket, "source")
        db.write_message("stale", "only on the target", bucket, "target")
        diff = db.copy("source", "target", bucket, changed=True, mirror=True, dry_run=True)
        assert diff == {"copied": 3, "deleted": 1, "unchanged": 0, "keys": ["a", "b", "c", "stale"]}
        assert db.read_message("a", bucket, "target") is None
        assert db.copy("source", "target", bucket) == {"copied": 3, "deleted": 0, "unchanged": 0, "keys": ["a", "b", "c"]}
        db.write_message("b", "changed", bucket, "source")
        push = db.copy("source", "target", bucket, changed=True, mirror=True)
        assert (push["copied"], push["deleted"], push["unchanged"]) == (1, 1, 2)
        assert db.read_message("b", bucket, "target") == "changed"
        assert db.read_message("stale", bucket, "target") is None
        with pytest.raises(tetherdb.UnknownBackendError):
            db.copy("source", "nowhere", bucket)
        with pytest.raises(InvalidArgumentError):
            db.copy("source", "source", bucket)
