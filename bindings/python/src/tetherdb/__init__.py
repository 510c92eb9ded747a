"""TetherDB for Python: ctypes over libtetherdb, with the Python TetherDB's
API (`from tetherdb import DB` in place of `from TetherDB import DB`)."""

from __future__ import annotations

from ._native import (
    TETHER_MAX_SHARDS as MAX_SHARDS,
    ConfigError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    NotRunningError,
    Status,
    TetherError,
    UnknownBackendError,
    UnsupportedError,
    lib as _lib,
    library_path,
)
from .db import DB, BackendStats, CopyReport, KeyPage, OutboxStats, Page, Stats, Ttl, Value

__version__ = "0.1.0"


def version() -> str:
    """The loaded library's version, "MAJOR.MINOR.PATCH"."""
    text: bytes = _lib.tether_version()
    return text.decode()


__all__ = [
    "DB",
    "BackendStats",
    "CopyReport",
    "ConfigError",
    "ConflictError",
    "InvalidArgumentError",
    "KeyPage",
    "MAX_SHARDS",
    "NotFoundError",
    "NotRunningError",
    "OutboxStats",
    "Page",
    "Stats",
    "Status",
    "TetherError",
    "Ttl",
    "UnknownBackendError",
    "UnsupportedError",
    "Value",
    "library_path",
    "version",
]
