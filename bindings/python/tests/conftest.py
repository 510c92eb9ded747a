import pytest

import tetherdb


@pytest.fixture
def config(tmp_path):
    """A configuration with its store in this test's temporary directory."""
    return {"logging": "none", "local": {"filepath": str(tmp_path / "data")}}


@pytest.fixture
def db(config):
    db = tetherdb.DB(config=config)
    yield db
    db.close()


def pytest_report_header(config):
    # Which package and library the run tests: the installed ones, not the sources.
    return f"tetherdb: {tetherdb.__file__}, library: {tetherdb.library_path}"
