"""Builds libtetherdb with cargo (setuptools-rust) and puts it inside the
package, as tetherdb/libtetherdb.so, which _native.py loads with ctypes.

The Rust crate is the repository's root (../../Cargo.toml) in a checkout,
and rust/ in an sdist: the sdist carries the crate's workspace (see
sdist_with_crate). The metadata is in pyproject.toml.
"""

import os
import shutil
import sys
from pathlib import Path
from typing import List, Tuple

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.sdist import sdist
from setuptools_rust import Binding, RustExtension
from setuptools_rust.build import build_rust

HERE = Path(__file__).resolve().parent
# Where the sdist puts the crate, relative to this folder.
SDIST_CRATE = "rust"
# What cargo needs to build the library from the workspace at the root: its
# manifest and lock file, the build script and its cbindgen.toml, the
# sources and the header; tests/ too, whose [[test]] targets the manifest
# names, and cli/ and tools/, the workspace's other members, which cargo loads.
CRATE_FILES = ["Cargo.toml", "Cargo.lock", "build.rs", "cbindgen.toml"]
CRATE_DIRS = ["src", "include", "tests", "cli", "tools"]
LIBRARY_NAME = {"darwin": "libtetherdb.dylib", "win32": "tetherdb.dll"}.get(
    sys.platform, "libtetherdb.so"
)


def crate_dir() -> Path:
    """The crate to build: the sdist's copy, else the repository's root."""
    for candidate in (HERE / SDIST_CRATE, HERE.parent.parent):
        manifest = candidate / "Cargo.toml"
        if manifest.is_file() and 'name = "tetherdb"' in manifest.read_text(encoding="utf-8"):
            return candidate
    raise SystemExit(
        f"error: no TetherDB crate at {HERE / SDIST_CRATE} nor at {HERE.parent.parent}: "
        "install from a TetherDB checkout (pip install ./bindings/python) or from its sdist"
    )


class build_library(build_rust):
    """Names the library as cargo does (libtetherdb.so), not as a Python
    extension module (libtetherdb.cpython-311-x86_64-linux-gnu.so): it is
    loaded with ctypes, by any Python 3."""

    def get_dylib_ext_path(self, ext: RustExtension, target_fname: str) -> str:
        path = super().get_dylib_ext_path(ext, target_fname)
        return os.path.join(os.path.dirname(path), LIBRARY_NAME)


class bdist_platform_wheel(bdist_wheel):
    """A wheel for one platform and any Python 3 (py3-none-linux_x86_64):
    the library does not link to Python."""

    def get_tag(self) -> Tuple[str, str, str]:
        _, _, platform = super().get_tag()
        return "py3", "none", platform


class sdist_with_crate(sdist):
    """Puts the crate's workspace, as cargo needs it, in the sdist's rust/,
    so that a wheel builds from the sdist alone."""

    def make_release_tree(self, base_dir: str, files: List[str]) -> None:
        super().make_release_tree(base_dir, files)
        source, target = crate_dir(), Path(base_dir) / SDIST_CRATE
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        for name in CRATE_FILES:
            shutil.copy2(source / name, target / name)
        for name in CRATE_DIRS:
            shutil.copytree(
                source / name, target / name, ignore=shutil.ignore_patterns("__pycache__", "target")
            )


setup(
    rust_extensions=[
        RustExtension(
            "tetherdb.libtetherdb",
            path=str(crate_dir() / "Cargo.toml"),
            binding=Binding.NoBinding,
            # The library alone, with its default features, in release,
            # with the committed Cargo.lock. The crate types of [lib] in
            # Cargo.toml (keep them in step): setuptools-rust would otherwise
            # pass --crate-type cdylib, and cargo then could not reuse a
            # `cargo build --release` in the same target directory (nor the
            # other way round), but would compile the crate again.
            debug=False,
            args=["--locked", "--crate-type", "cdylib,staticlib,rlib"],
        )
    ],
    cmdclass={
        "build_rust": build_library,
        "bdist_wheel": bdist_platform_wheel,
        "sdist": sdist_with_crate,
    },
    zip_safe=False,
)
