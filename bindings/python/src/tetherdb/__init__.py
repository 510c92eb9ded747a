"""TetherDB for Python: ctypes over libtetherdb, with the Python TetherDB's
API (`from tetherdb import DB` in place of `from TetherDB import DB`)."""

from __future__ import annotations

from ._native import (
    ConfigError,
    InvalidArgumentError,
    NotRunningError,
    Status,
    TetherError,
    UnknownBackendError,
    lib as _lib,
    library_path,
)
from .db import DB, BackendStats, OutboxStats, Page, Stats, Value

__version__ = "0.1.0"


def version() -> str:
    """The loaded library's version, "MAJOR.MINOR.PATCH"."""
    text: bytes = _lib.tether_version()
    return text.decode()


__all__ = [
    "DB",
    "BackendStats",
    "ConfigError",
    "InvalidArgumentError",
    "NotRunningError",
    "OutboxStats",
    "Page",
    "Stats",
    "Status",
    "TetherError",
    "UnknownBackendError",
    "Value",
    "library_path",
    "version",
]
