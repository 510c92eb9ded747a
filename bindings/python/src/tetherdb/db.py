"""DB: the Python TetherDB's API over libtetherdb."""

from __future__ import annotations

import functools
import json
import os
import uuid
from ctypes import byref, c_size_t, c_void_p, string_at
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Type, TypedDict, Union

from ._native import TETHER_QUEUE, Status, check, lib

if TYPE_CHECKING:
    # The parameters of a function @DB.tether wraps; only in annotations, so
    # that Python 3.9 (whose typing has no ParamSpec) needs no typing_extensions.
    from typing_extensions import ParamSpec

    P = ParamSpec("P")

# What a write stores: a dict as JSON text, a str as its UTF-8, bytes as
# they are.
Value = Union[Dict[str, Any], str, bytes, bytearray, memoryview]


class Page(TypedDict):
    """What list_messages returns."""

    messages: List[Any]
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
    batches: int
    pending: int
    oldest_pending_ms: int
    unreachable_ms: int
    last_error: Optional[str]


class Stats(TypedDict):
    """What stats() returns (tether_stats, decoded)."""

    running: bool
    outbox: Optional[OutboxStats]
    backends: Dict[str, BackendStats]


def _c(text: str, what: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}")
    return text.encode("utf-8")


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
        "applied", "retried", "failed", "batches", "pending",
        "oldest_pending_ms", "unreachable_ms", "last_error"}}}. Counts are of
        writes since the DB was opened."""
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
        self, key: str, value: Value, bucket: str = "", backend: str = "local", queue: bool = False
    ) -> bool:
        """Stores value (a dict as JSON text, a str as it is, bytes as they
        are) under key; queue=True hands it to the worker. Returns True."""
        data = _encode(value)
        check(
            lib.tether_write(
                self._handle,
                _c(backend, "backend"),
                _c(bucket, "bucket"),
                _c(key, "key"),
                data,
                len(data),
                TETHER_QUEUE if queue else 0,
            )
        )
        return True

    def read_message(self, key: str, bucket: str = "", backend: str = "local") -> Any:
        """The value under key, JSON-decoded where it is JSON; None when absent."""
        value, length = c_void_p(), c_size_t()
        status = lib.tether_read(
            self._handle,
            _c(backend, "backend"),
            _c(bucket, "bucket"),
            _c(key, "key"),
            byref(value),
            byref(length),
        )
        if status == Status.NOT_FOUND:
            return None
        check(status)
        try:
            raw = string_at(value, length.value)
        finally:
            lib.tether_free(value, length)
        return _decode(raw)

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

    def delete_message(self, key: str, bucket: str = "", backend: str = "local") -> bool:
        """Removes key: True, or False when there was nothing to remove."""
        status = lib.tether_delete(self._handle, _c(backend, "backend"), _c(bucket, "bucket"), _c(key, "key"))
        if status == Status.NOT_FOUND:
            return False
        check(status)
        return True

    def list_messages(
        self,
        page_size: int = 10,
        start_after: Optional[str] = None,
        bucket: str = "",
        backend: str = "local",
    ) -> Page:
        """One page of a bucket's values, in key order:
        {"messages": [...], "next_marker": key or None on the last page}.
        Pass next_marker as start_after for the next page. As in the Python
        TetherDB, a message is the decoded value, with dicts as JSON text."""
        page = c_void_p()
        check(
            lib.tether_list(
                self._handle,
                _c(backend, "backend"),
                _c(bucket, "bucket"),
                None,
                None if start_after is None else _c(start_after, "start_after"),
                max(page_size, 0),  # size_t: a negative size would wrap; 0 is rejected
                byref(page),
            )
        )
        try:
            messages: List[Any] = []
            length = c_size_t()
            for i in range(lib.tether_page_len(page)):
                value = _decode(string_at(lib.tether_page_value(page, i, byref(length)), length.value))
                messages.append(json.dumps(value) if isinstance(value, dict) else value)
            next_marker: Optional[bytes] = lib.tether_page_next(page)
        finally:
            lib.tether_page_free(page)
        return {
            "messages": messages,
            "next_marker": None if next_marker is None else next_marker.decode("utf-8"),
        }

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
