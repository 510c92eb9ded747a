import os
import uuid

import pytest

import tetherdb

# The etcd of the tests, "127.0.0.1:PORT": scripts/test_bindings.sh starts one.
ETCD = os.environ.get("TETHERDB_TEST_ETCD")


@pytest.fixture
def config(tmp_path):
    """A configuration with its store in this test's temporary directory."""
    return {"logging": "none", "local": {"filepath": str(tmp_path / "data")}}


@pytest.fixture
def db(config):
    db = tetherdb.DB(config=config)
    yield db
    db.close()


@pytest.fixture(params=["local", "etcd"])
def backend(request):
    """The backend of a core test, which runs once on each: local, and the
    etcd of TETHERDB_TEST_ETCD. Without one, the etcd run is skipped, or
    fails when CI is set."""
    if request.param == "etcd" and not ETCD:
        if os.environ.get("CI"):
            pytest.fail(
                "CI is set but TETHERDB_TEST_ETCD is not: run the tests with "
                "scripts/test_bindings.sh, which starts etcd"
            )
        pytest.skip(
            "no etcd: set TETHERDB_TEST_ETCD=127.0.0.1:PORT, or run "
            "scripts/test_bindings.sh, which starts one"
        )
    return request.param


@pytest.fixture
def bucket():
    """A bucket of this test's own: the etcd is shared by every test of every binding."""
    return f"py-{uuid.uuid4().hex}"


@pytest.fixture
def outbox_path(backend, tmp_path):
    """Where the DBs of backend_config keep their outbox of queued writes."""
    return str(tmp_path / ("data.outbox" if backend == "local" else "outbox"))


@pytest.fixture
def backend_config(backend, config, outbox_path):
    """A configuration whose only backend is `backend`. Without a local
    section the outbox would default to one per cluster under
    ~/.local/state/tetherdb, shared by every test: on etcd it goes in this
    test's temporary directory."""
    if backend == "local":
        return config
    return {
        "logging": "none",
        "etcd": {"endpoints": [ETCD]},
        "queue_batch": {"outbox_path": outbox_path},
    }


@pytest.fixture
def bdb(backend_config):
    """A DB on `backend`: pass backend= to each call, as the default is local."""
    db = tetherdb.DB(config=backend_config)
    yield db
    db.close()


def pytest_report_header(config):
    # Which package and library the run tests: the installed ones, not the sources.
    return [
        f"tetherdb: {tetherdb.__file__}, library: {tetherdb.library_path}",
        f"etcd: {ETCD or 'none (TETHERDB_TEST_ETCD is not set)'}",
    ]
