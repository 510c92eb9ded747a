"""DB: the Python TetherDB's API over libtetherdb."""

from __future__ import annotations

import functools
import json
import math
import os
import uuid
from ctypes import byref, c_int64, c_size_t, c_uint64, c_void_p, string_at
from datetime import timedelta
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Literal,
    Mapping,
    Optional,
    Tuple,
    Type,
    TypedDict,
    Union,
    overload,
)

from ._native import (
    TETHER_IF_ABSENT,
    TETHER_IF_VERSION,
    TETHER_KEYS_ONLY,
    TETHER_QUEUE,
    TETHER_SLIDING,
    InvalidArgumentError,
    Status,
    check,
    lib,
)

if TYPE_CHECKING:
    # The parameters of a function @DB.tether wraps; only in annotations, so
    # that Python 3.9 (whose typing has no ParamSpec) needs no typing_extensions.
    from typing_extensions import ParamSpec

    P = ParamSpec("P")

# What a write stores: a dict as JSON text, a str as its UTF-8, bytes as
# they are.
Value = Union[Dict[str, Any], str, bytes, bytearray, memoryview]


# A ttl: seconds (an int or a float, as the rest of the Python API counts
# time) or a timedelta; None for no expiry.
Ttl = Union[float, timedelta, None]


class Page(TypedDict):
    """What list_messages returns."""

    messages: List[Any]
    next_marker: Optional[str]


class KeyPage(TypedDict):
    """What list_messages(keys_only=True) returns: the keys, no values."""

    keys: List[str]
    next_marker: Optional[str]


class OutboxStats(TypedDict):
    """The outbox's part of stats()."""

    path: str
    bytes: int
    max_bytes: int
    sync: bool
    syncs: int


class BackendStats(TypedDict):
    """One backend's part of stats()."""

    queued: int
    applied: int
    retried: int
    failed: int
    expired: int
    batches: int
    pending: int
    oldest_pending_ms: int
    unreachable_ms: int
    last_error: Optional[str]


class CopyReport(TypedDict):
    """What copy() returns (tether_copy's report, decoded)."""

    copied: int
    deleted: int
    unchanged: int
    keys: List[str]


class Stats(TypedDict):
    """What stats() returns (tether_stats, decoded)."""

    running: bool
    outbox: Optional[OutboxStats]
    backends: Dict[str, BackendStats]


def _c(text: str, what: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}")
    return text.encode("utf-8")


_U64_MAX = 2**64 - 1
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_U32_MAX = 2**32 - 1


def _invalid(message: str) -> InvalidArgumentError:
    """An argument C cannot take (a ttl of 0 s, an int beyond its C type):
    raised as the library raises the ones it refuses, a ValueError with the
    status TETHER_INVALID_ARGUMENT."""
    return InvalidArgumentError(Status.INVALID_ARGUMENT, message)


def _int(value: int, what: str, low: int, high: int) -> int:
    """An int for a C integer of the range [low, high]: ctypes would wrap one
    beyond it silently."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise _invalid(f"{what} must be from {low} to {high}, got {value}")
    return value


def _ttl_ms(ttl: Ttl, what: str) -> int:
    """A ttl in seconds (or a timedelta) as the C API's ttl_ms: None is 0 (no
    expiry); above 0, whole milliseconds rounded up, so that no key expires
    before its ttl. 0 s and less are refused rather than read as "no expiry",
    which is what ttl_ms 0 means; a ttl beyond 2**64-1 ms is passed as that,
    which the library refuses (its deadline overflows)."""
    if ttl is None:
        return 0
    if isinstance(ttl, timedelta):
        ttl = ttl.total_seconds()
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"{what} must be seconds (int or float), a timedelta or None, got {type(ttl).__name__}")
    if not ttl > 0:  # 0, negative, NaN
        raise _invalid(f"{what} must be above 0 seconds (None: no expiry), got {ttl!r}")
    if ttl == math.inf:
        return _U64_MAX
    # round() first: 0.29 s is 290.00000000000006 ms as a float, and 290 ms.
    return min(math.ceil(round(ttl * 1000, 6)), _U64_MAX)


def _write_flags(
    queue: bool, ttl: Ttl, sliding: bool, if_version: Optional[int], if_absent: bool, what: str
) -> Tuple[int, int, int]:
    """(flags, ttl_ms, version) for tether_write_ex. Combinations it refuses
    (if_absent with if_version, a condition on a queued write, sliding
    without a ttl) are the library's to refuse."""
    flags = (
        (TETHER_QUEUE if queue else 0)
        | (TETHER_IF_ABSENT if if_absent else 0)
        | (TETHER_SLIDING if sliding else 0)
        | (0 if if_version is None else TETHER_IF_VERSION)
    )
    version = 0 if if_version is None else _int(if_version, "if_version", 0, _U64_MAX)
    return flags, _ttl_ms(ttl, f"{what}: ttl"), version


def _encode(value: Value) -> bytes:
    """dict -> JSON text, str -> its UTF-8, bytes as they are."""
    if isinstance(value, dict):
        return json.dumps(value).encode("utf-8")
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"value must be a dict, str or bytes, got {type(value).__name__}")


def _decode(raw: bytes) -> Any:
    """The JSON-decoded value where the text is JSON, else the text (else the
    bytes, when they are not UTF-8): what the Python TetherDB returned."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    try:
        return json.loads(text)
    except ValueError:
        return text


class DB:
    """A TetherDB handle, a drop-in for the Python TetherDB's DB.

    As there, a new DB does not run the worker that applies queued writes:
    start() or `with DB(...) as db:` does, and a queued write before that
    raises RuntimeError (NotRunningError). A configuration that sets
    queue_batch.autostart chooses for itself.

    One DB may be used by many threads at once, except close().
    """

    def __init__(
        self,
        config: Optional[Mapping[str, Any]] = None,
        config_file: Union[str, os.PathLike[str], None] = None,
    ) -> None:
        if config is not None and config_file is not None:
            raise ValueError("Provide either 'config' or 'config_file', not both.")
        if config_file is not None:
            with open(config_file, "r", encoding="utf-8") as f:
                config = json.load(f)
        config = dict(config or {})
        queue_batch = dict(config.get("queue_batch") or {})
        queue_batch.setdefault("autostart", False)
        config["queue_batch"] = queue_batch
        handle = c_void_p()
        check(lib.tether_open(json.dumps(config).encode("utf-8"), byref(handle)))
        self._handle: Optional[c_void_p] = handle

    # --- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Starts the worker that applies queued writes; idempotent."""
        check(lib.tether_start(self._handle))

    def stop(self) -> None:
        """Applies every queued write, then stops the worker; idempotent."""
        check(lib.tether_stop(self._handle))

    def flush(self) -> None:
        """Waits until every write queued before it is applied and durable."""
        check(lib.tether_flush(self._handle))

    def stats(self) -> Stats:
        """What the worker of each backend has done and what waits for it
        (tether_stats), decoded: {"running": bool, "outbox": {"path",
        "bytes", "max_bytes", "sync", "syncs"} or None, "backends": {name: {"queued",
        "applied", "retried", "failed", "expired", "batches", "pending",
        "oldest_pending_ms", "unreachable_ms", "last_error"}}}. Counts are of
        writes since the DB was opened ("expired": queued writes not applied
        because their ttl ran out first)."""
        text = c_void_p()
        check(lib.tether_stats(self._handle, byref(text)))
        try:
            raw = string_at(text)
        finally:
            lib.tether_free_string(text)
        stats: Stats = json.loads(raw.decode("utf-8"))
        return stats

    def close(self) -> None:
        """Applies queued writes, stops the worker and frees the handle
        (even when it raises). Closing twice is a no-op."""
        handle, self._handle = self._handle, None
        if handle:
            check(lib.tether_close(handle))

    def __enter__(self) -> DB:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc_value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        # A DB dropped without close() still releases its store (and its lock
        # on it); errors have nowhere to go here.
        handle = getattr(self, "_handle", None)
        if handle:
            self._handle = None
            lib.tether_close(handle)

    # --- data --------------------------------------------------------------

    def write_message(
        self,
        key: str,
        value: Value,
        bucket: str = "",
        backend: str = "local",
        queue: bool = False,
        *,
        ttl: Ttl = None,
        sliding: bool = False,
        if_version: Optional[int] = None,
        if_absent: bool = False,
    ) -> bool:
        """Stores value (a dict as JSON text, a str as it is, bytes as they
        are) under key; queue=True hands it to the worker. Returns True.

        ttl: seconds (or a timedelta) after which the key is absent; None (the
        default) for none, which also clears an earlier one. sliding=True:
        each read restarts the ttl. if_absent=True: only where the key is
        absent; if_version=V: only where its version is V. A condition that
        fails writes nothing and returns False (as update_message does); a
        condition on a queued write raises InvalidArgumentError.
        write_versioned is the same write that returns the new version."""
        flags, ttl_ms, version = _write_flags(queue, ttl, sliding, if_version, if_absent, "write_message")
        data = _encode(value)
        status = lib.tether_write_ex(
            self._handle,
            _c(backend, "backend"),
            _c(bucket, "bucket"),
            _c(key, "key"),
            data,
            len(data),
            flags,
            ttl_ms,
            version,
            None,
        )
        if status in (Status.CONFLICT, Status.NOT_FOUND) and flags & (TETHER_IF_ABSENT | TETHER_IF_VERSION):
            return False
        check(status)
        return True

    def write_versioned(
        self,
        key: str,
        value: Value,
        bucket: str = "",
        backend: str = "local",
        *,
        ttl: Ttl = None,
        sliding: bool = False,
        if_version: Optional[int] = None,
        if_absent: bool = False,
    ) -> int:
        """write_message without the queue, returning the key's new version:
        a number that grows at every change of the key's value (pass it as
        if_version to the next write). A failed condition raises: ConflictError
        where if_absent finds the key or if_version another version,
        NotFoundError where if_version finds no key."""
        flags, ttl_ms, version = _write_flags(False, ttl, sliding, if_version, if_absent, "write_versioned")
        data = _encode(value)
        new_version = c_uint64()
        check(
            lib.tether_write_ex(
                self._handle,
                _c(backend, "backend"),
                _c(bucket, "bucket"),
                _c(key, "key"),
                data,
                len(data),
                flags,
                ttl_ms,
                version,
                byref(new_version),
            )
        )
        return new_version.value

    @overload
    def read_message(
        self, key: str, bucket: str = ..., backend: str = ..., *, with_version: Literal[False] = ...
    ) -> Any: ...

    @overload
    def read_message(
        self, key: str, bucket: str = ..., backend: str = ..., *, with_version: Literal[True]
    ) -> Tuple[Any, Optional[int]]: ...

    @overload
    def read_message(
        self, key: str, bucket: str = ..., backend: str = ..., *, with_version: bool
    ) -> Any: ...

    def read_message(self, key: str, bucket: str = "", backend: str = "local", *, with_version: bool = False) -> Any:
        """The value under key, JSON-decoded where it is JSON; None when absent.
        with_version=True: (value, version), and (None, None) when absent."""
        value, length, version = c_void_p(), c_size_t(), c_uint64()
        status = lib.tether_read_ex(
            self._handle,
            _c(backend, "backend"),
            _c(bucket, "bucket"),
            _c(key, "key"),
            byref(value),
            byref(length),
            byref(version) if with_version else None,
        )
        if status == Status.NOT_FOUND:
            return (None, None) if with_version else None
        check(status)
        try:
            raw = string_at(value, length.value)
        finally:
            lib.tether_free(value, length)
        return (_decode(raw), version.value) if with_version else _decode(raw)

    def read_version(self, key: str, bucket: str = "", backend: str = "local") -> Optional[int]:
        """The key's version, None when absent, without reading its value
        (tether_read_ex's existence check). A sliding ttl restarts, as on a read."""
        version = c_uint64()
        status = lib.tether_read_ex(
            self._handle, _c(backend, "backend"), _c(bucket, "bucket"), _c(key, "key"), None, None, byref(version)
        )
        if status == Status.NOT_FOUND:
            return None
        check(status)
        return version.value

    def update_message(self, key: str, value: Value, bucket: str = "", backend: str = "local") -> bool:
        """Replaces the value only where the key exists: True, else False."""
        data = _encode(value)
        status = lib.tether_update(
            self._handle, _c(backend, "backend"), _c(bucket, "bucket"), _c(key, "key"), data, len(data)
        )
        if status == Status.NOT_FOUND:
            return False
        check(status)
        return True

    def delete_message(
        self, key: str, bucket: str = "", backend: str = "local", *, if_version: Optional[int] = None
    ) -> bool:
        """Removes key: True, or False when there was nothing to remove.
        if_version=V: only where the key's version is V; False for another."""
        version = 0 if if_version is None else _int(if_version, "if_version", 0, _U64_MAX)
        status = lib.tether_delete_ex(
            self._handle,
            _c(backend, "backend"),
            _c(bucket, "bucket"),
            _c(key, "key"),
            0 if if_version is None else TETHER_IF_VERSION,
            version,
        )
        if status == Status.NOT_FOUND or (status == Status.CONFLICT and if_version is not None):
            return False
        check(status)
        return True

    def touch(self, key: str, ttl: Ttl, bucket: str = "", backend: str = "local") -> bool:
        """Sets a present key to expire ttl seconds (or a timedelta) from now,
        keeping its value; None removes its deadline. A sliding key stops
        sliding. True, or False when the key is absent."""
        status = lib.tether_touch(
            self._handle, _c(backend, "backend"), _c(bucket, "bucket"), _c(key, "key"), _ttl_ms(ttl, "touch: ttl")
        )
        if status == Status.NOT_FOUND:
            return False
        check(status)
        return True

    def increment(self, key: str, delta: int = 1, bucket: str = "", backend: str = "local", shards: int = 0) -> int:
        """Adds delta (a 64-bit int, negative or 0 too) to the counter under
        key, atomically, and returns its new value. The counter is stored as
        decimal text ("42"), which read_message reads as the int 42; an absent
        key counts from 0. shards > 1 (at most 1024) spreads it over keys
        KEY#shard0...; the value returned is then the total. ConflictError
        when the stored value is not a decimal 64-bit int or the sum is beyond
        one."""
        value = c_int64()
        check(
            lib.tether_increment(
                self._handle,
                _c(backend, "backend"),
                _c(bucket, "bucket"),
                _c(key, "key"),
                _int(delta, "delta", _I64_MIN, _I64_MAX),
                _int(shards, "shards", 0, _U32_MAX),
                byref(value),
            )
        )
        return value.value

    def counter_total(self, key: str, bucket: str = "", backend: str = "local", shards: int = 0) -> int:
        """The counter's value: the key's (shards 0 or 1), or the sum of its
        shards; 0 when absent. ConflictError where a value is no counter."""
        value = c_int64()
        check(
            lib.tether_counter_total(
                self._handle,
                _c(backend, "backend"),
                _c(bucket, "bucket"),
                _c(key, "key"),
                _int(shards, "shards", 0, _U32_MAX),
                byref(value),
            )
        )
        return value.value

    def copy(
        self,
        from_backend: str,
        to_backend: str,
        bucket: str = "",
        prefix: str = "",
        *,
        changed: bool = False,
        mirror: bool = False,
        dry_run: bool = False,
    ) -> CopyReport:
        """Copies the keys of bucket starting with prefix ("" and "": every
        key) from one backend of this DB to another, with their remaining
        ttls (tether_copy). changed: only keys the target lacks or holds
        with another value; mirror: also delete the target's keys the
        source lacks; dry_run: change nothing, report what would change.
        Returns {"copied", "deleted", "unchanged", "keys"} ("keys": the
        first 1,000 keys copied or deleted)."""
        flags = (1 if changed else 0) | (2 if mirror else 0) | (4 if dry_run else 0)
        text = c_void_p()
        check(
            lib.tether_copy(
                self._handle,
                _c(from_backend, "from_backend"),
                _c(to_backend, "to_backend"),
                _c(bucket, "bucket"),
                _c(prefix, "prefix"),
                flags,
                byref(text),
            )
        )
        try:
            raw = string_at(text)
        finally:
            lib.tether_free_string(text)
        report: CopyReport = json.loads(raw.decode("utf-8"))
        return report

    def delete_prefix(self, prefix: str, bucket: str = "", backend: str = "local") -> int:
        """Deletes every key of bucket starting with prefix ("" for all of the
        bucket's keys) and returns how many it deleted: exactly the keys
        list_messages(bucket=bucket, prefix=prefix) lists. No bucket and no
        prefix is a ValueError (InvalidArgumentError): no call empties a
        whole store. Not atomic, except on etcd."""
        deleted = c_uint64()
        check(
            lib.tether_delete_prefix(
                self._handle, _c(backend, "backend"), _c(bucket, "bucket"), _c(prefix, "prefix"), byref(deleted)
            )
        )
        return deleted.value

    @overload
    def list_messages(
        self,
        page_size: int = ...,
        start_after: Optional[str] = ...,
        bucket: str = ...,
        backend: str = ...,
        *,
        prefix: str = ...,
        keys_only: Literal[False] = ...,
    ) -> Page: ...

    @overload
    def list_messages(
        self,
        page_size: int = ...,
        start_after: Optional[str] = ...,
        bucket: str = ...,
        backend: str = ...,
        *,
        prefix: str = ...,
        keys_only: Literal[True],
    ) -> KeyPage: ...

    @overload
    def list_messages(
        self,
        page_size: int = ...,
        start_after: Optional[str] = ...,
        bucket: str = ...,
        backend: str = ...,
        *,
        prefix: str = ...,
        keys_only: bool,
    ) -> Union[Page, KeyPage]: ...

    def list_messages(
        self,
        page_size: int = 10,
        start_after: Optional[str] = None,
        bucket: str = "",
        backend: str = "local",
        *,
        prefix: str = "",
        keys_only: bool = False,
    ) -> Union[Page, KeyPage]:
        """One page of a bucket's values, in key order:
        {"messages": [...], "next_marker": key or None on the last page}.
        Pass next_marker as start_after for the next page. As in the Python
        TetherDB, a message is the decoded value, with dicts as JSON text.
        prefix: only keys (without the bucket part) starting with it.
        keys_only=True: {"keys": [...], "next_marker": ...}, the keys without
        their values, which the backend then does not fetch where it can
        avoid it."""
        page = c_void_p()
        check(
            lib.tether_list_ex(
                self._handle,
                _c(backend, "backend"),
                _c(bucket, "bucket"),
                _c(prefix, "prefix"),
                None if start_after is None else _c(start_after, "start_after"),
                max(page_size, 0),  # size_t: a negative size would wrap; 0 is rejected
                TETHER_KEYS_ONLY if keys_only else 0,
                byref(page),
            )
        )
        try:
            count = lib.tether_page_len(page)
            keys: List[str] = []
            messages: List[Any] = []
            if keys_only:
                keys = [lib.tether_page_key(page, i).decode("utf-8") for i in range(count)]
            else:
                length = c_size_t()
                for i in range(count):
                    value = _decode(string_at(lib.tether_page_value(page, i, byref(length)), length.value))
                    messages.append(json.dumps(value) if isinstance(value, dict) else value)
            next_marker: Optional[bytes] = lib.tether_page_next(page)
        finally:
            lib.tether_page_free(page)
        marker = None if next_marker is None else next_marker.decode("utf-8")
        if keys_only:
            return {"keys": keys, "next_marker": marker}
        return {"messages": messages, "next_marker": marker}

    def tether(
        self, bucket: str = "", queue: bool = False, backend: str = "local"
    ) -> Callable[[Callable[P, Dict[str, Any]]], Callable[P, bool]]:
        """Decorator: writes what the function returns, a dict with a "value"
        (dict or str) and an optional "key" (a UUID v4 when absent), and
        returns True."""

        def decorator(func: Callable[P, Dict[str, Any]]) -> Callable[P, bool]:
            @functools.wraps(func)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> bool:
                result = func(*args, **kwargs)
                if not isinstance(result, dict) or "value" not in result:
                    raise ValueError("Function return value must be a dictionary containing 'value'.")
                value = result["value"]
                if not isinstance(value, (dict, str)):
                    raise ValueError(
                        f"The 'value' field must be a dict or string, got {type(value).__name__}."
                    )
                key = result.get("key") or str(uuid.uuid4())
                return self.write_message(key, value, bucket, backend, queue)

            return wrapper

        return decorator
