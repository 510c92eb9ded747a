"""TetherDB for Python: ctypes over libtetherdb, with the Python TetherDB's
API (`from tetherdb import DB` in place of `from TetherDB import DB`)."""

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
from .db import DB

__version__ = "0.1.0"


def version():
    """The loaded library's version, "MAJOR.MINOR.PATCH"."""
    return _lib.tether_version().decode()


__all__ = [
    "DB",
    "ConfigError",
    "InvalidArgumentError",
    "NotRunningError",
    "Status",
    "TetherError",
    "UnknownBackendError",
    "library_path",
    "version",
]
