"""Loads libtetherdb and declares the C functions of tetherdb.h.

The library is, in this order: the file TETHERDB_LIBRARY names, the one
inside this package (where `pip install` puts the one it builds), or the one
the dynamic loader finds by name (LD_LIBRARY_PATH, the ld.so cache, the
system directories).
"""

from __future__ import annotations

import ctypes
import enum
import os
import sys
from ctypes import POINTER, c_char_p, c_int, c_int64, c_size_t, c_uint32, c_uint64, c_void_p
from typing import Any, Dict, List, Optional, Tuple, Type

LIBRARY_NAME = {"darwin": "libtetherdb.dylib", "win32": "tetherdb.dll"}.get(
    sys.platform, "libtetherdb.so"
)


def _library_path() -> str:
    from_env = os.environ.get("TETHERDB_LIBRARY")
    if from_env:
        return from_env
    beside = os.path.join(os.path.dirname(os.path.abspath(__file__)), LIBRARY_NAME)
    return beside if os.path.exists(beside) else LIBRARY_NAME


library_path = _library_path()
try:
    lib = ctypes.CDLL(library_path)
except OSError as e:
    raise ImportError(
        f"tetherdb: cannot load {library_path!r} ({e}); set TETHERDB_LIBRARY to the "
        f"path of {LIBRARY_NAME}"
    ) from e


class Status(enum.IntEnum):
    """The C enum tether_status."""

    OK = 0
    NOT_FOUND = 1
    INVALID_ARGUMENT = 2
    CONFIG = 3
    UNKNOWN_BACKEND = 4
    UNAVAILABLE = 5
    TOO_LARGE = 6
    NOT_RUNNING = 7
    CONFLICT = 8
    IO = 9
    INTERNAL = 10
    UNSUPPORTED = 11


# The flags of tetherdb.h.
TETHER_QUEUE = 1
TETHER_IF_ABSENT = 2
TETHER_IF_VERSION = 4
TETHER_SLIDING = 8
TETHER_KEYS_ONLY = 1
TETHER_MAX_SHARDS = 1024

# Handles and pages are opaque pointers; values and strings come back as raw
# pointers so that ctypes does not copy or convert them before
# tether_free/page_free/free_string.
_db, _page, _status = c_void_p, c_void_p, c_int
_signatures: Dict[str, Tuple[Optional[type], List[Any]]] = {
    "tether_open": (_status, [c_char_p, POINTER(_db)]),
    "tether_open_file": (_status, [c_char_p, POINTER(_db)]),
    "tether_start": (_status, [_db]),
    "tether_stop": (_status, [_db]),
    "tether_flush": (_status, [_db]),
    "tether_close": (_status, [_db]),
    "tether_write": (_status, [_db, c_char_p, c_char_p, c_char_p, c_char_p, c_size_t, c_uint32]),
    "tether_update": (_status, [_db, c_char_p, c_char_p, c_char_p, c_char_p, c_size_t]),
    "tether_read": (
        _status,
        [_db, c_char_p, c_char_p, c_char_p, POINTER(c_void_p), POINTER(c_size_t)],
    ),
    "tether_delete": (_status, [_db, c_char_p, c_char_p, c_char_p]),
    "tether_write_ex": (
        _status,
        [
            _db, c_char_p, c_char_p, c_char_p, c_char_p, c_size_t, c_uint32,
            c_uint64, c_uint64, POINTER(c_uint64),
        ],
    ),
    "tether_read_ex": (
        _status,
        [
            _db, c_char_p, c_char_p, c_char_p, POINTER(c_void_p), POINTER(c_size_t),
            POINTER(c_uint64),
        ],
    ),
    "tether_delete_ex": (_status, [_db, c_char_p, c_char_p, c_char_p, c_uint32, c_uint64]),
    "tether_touch": (_status, [_db, c_char_p, c_char_p, c_char_p, c_uint64]),
    "tether_increment": (
        _status,
        [_db, c_char_p, c_char_p, c_char_p, c_int64, c_uint32, POINTER(c_int64)],
    ),
    "tether_counter_total": (
        _status,
        [_db, c_char_p, c_char_p, c_char_p, c_uint32, POINTER(c_int64)],
    ),
    "tether_list": (
        _status,
        [_db, c_char_p, c_char_p, c_char_p, c_char_p, c_size_t, POINTER(_page)],
    ),
    "tether_list_ex": (
        _status,
        [_db, c_char_p, c_char_p, c_char_p, c_char_p, c_size_t, c_uint32, POINTER(_page)],
    ),
    "tether_delete_prefix": (
        _status,
        [_db, c_char_p, c_char_p, c_char_p, POINTER(c_uint64)],
    ),
    "tether_page_len": (c_size_t, [_page]),
    "tether_page_key": (c_char_p, [_page, c_size_t]),
    "tether_page_value": (c_void_p, [_page, c_size_t, POINTER(c_size_t)]),
    "tether_page_next": (c_char_p, [_page]),
    "tether_page_free": (None, [_page]),
    "tether_free": (None, [c_void_p, c_size_t]),
    "tether_stats": (_status, [_db, POINTER(c_void_p)]),
    "tether_copy": (_status, [_db, c_char_p, c_char_p, c_char_p, c_char_p, c_uint32, POINTER(c_void_p)]),
    "tether_free_string": (None, [c_void_p]),
    "tether_last_error": (c_char_p, []),
    "tether_status_name": (c_char_p, [c_int]),
    "tether_version": (c_char_p, []),
}
for _name, (_restype, _argtypes) in _signatures.items():
    _function = getattr(lib, _name)
    _function.restype = _restype
    _function.argtypes = _argtypes


class TetherError(Exception):
    """A failed call: `status` (a Status) and the library's `message`, which
    names the function, the backend, the key and the cause."""

    status: Status | int
    message: str

    def __init__(self, status: int, message: str) -> None:
        try:
            self.status = Status(status)
            name = f"TETHER_{self.status.name}"
        except ValueError:  # a status newer than this binding
            self.status, name = status, f"status {status}"
        self.message = message
        super().__init__(f"{name}: {message}")


# Failures that the Python TetherDB raised as built-in exceptions keep those
# types as bases, so that `except ValueError` / `except RuntimeError` still work.
class InvalidArgumentError(TetherError, ValueError):
    pass


class ConfigError(TetherError, ValueError):
    pass


class UnknownBackendError(TetherError, ValueError):
    pass


class NotRunningError(TetherError, RuntimeError):
    pass


# The statuses the calls of versions, conditions, expiry and counters
# raise: a key absent where a condition needs it (write_versioned with
# if_version), a failed condition or a stored value that is no counter
# (TETHER_CONFLICT), and a call the backend cannot do (TETHER_UNSUPPORTED:
# docs/engines.md's capability table says which).
class NotFoundError(TetherError, LookupError):
    pass


class ConflictError(TetherError):
    pass


class UnsupportedError(TetherError):
    pass


_ERROR_TYPES: Dict[int, Type[TetherError]] = {
    Status.NOT_FOUND: NotFoundError,
    Status.INVALID_ARGUMENT: InvalidArgumentError,
    Status.CONFIG: ConfigError,
    Status.UNKNOWN_BACKEND: UnknownBackendError,
    Status.NOT_RUNNING: NotRunningError,
    Status.CONFLICT: ConflictError,
    Status.UNSUPPORTED: UnsupportedError,
}


def check(status: int) -> None:
    """Raises the error of a failed call. Call it right after the C call, on
    the same thread: tether_last_error() is per thread, and ctypes runs the
    call on the calling thread."""
    if status != Status.OK:
        message: str = lib.tether_last_error().decode("utf-8", "replace")
        raise _ERROR_TYPES.get(status, TetherError)(status, message)
