from __future__ import annotations

import itertools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from adapter_registry import AdapterRecord, AdapterRegistry
from adapter_registry._lora_files import lora_bytes, lora_config

from postgres import PostgresServer

# No test reaches a hub: models are built from configs, nothing is downloaded.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: Every test that takes the `backend` fixture (the registry fixtures do) runs on each of these,
#: unless its module narrows them with a BACKENDS list of its own.
BACKENDS = ["sqlite", "postgresql"]
_databases = itertools.count()


#: ADAPTER_REGISTRY_STRESS_SCALE=N runs the stress and property tests N times over.
STRESS_SCALE = int(os.environ.get("ADAPTER_REGISTRY_STRESS_SCALE", "1"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under a stress scale, every test's time limit (pyproject's `timeout`, or its own
    marker's) grows by the same factor: the limit is for hangs, not for the scale asked."""
    if STRESS_SCALE <= 1:
        return
    default = float(config.getini("timeout") or 0)
    for item in items:
        own = item.get_closest_marker("timeout")
        seconds = float(own.args[0]) if own is not None and own.args else default
        if seconds:
            item.add_marker(pytest.mark.timeout(seconds * STRESS_SCALE), append=False)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", getattr(metafunc.module, "BACKENDS", BACKENDS))


#: A stand-in for the next release's first migration (a template: format it with head=).
NEXT_MIGRATION = '''
"""A stand-in for the next release's first migration: a new nullable column.

Revision ID: 9999
Revises: {head}
"""

from alembic import op

revision = "9999"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE adapter_records ADD COLUMN notes TEXT")
'''


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole run, started on first use."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def db_url(request: pytest.FixtureRequest, backend: str, home: Path) -> str:
    """A fresh, empty database of the backend under test."""
    if backend == "sqlite":
        return f"sqlite:///{home / 'registry.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"t{os.getpid()}_{next(_databases)}")


@pytest.fixture
def registry(home: Path, db_url: str) -> Iterator[AdapterRegistry]:
    reg = AdapterRegistry(root=home / "adapters", db_url=db_url)
    yield reg
    reg.close()


def empty_registry(request: pytest.FixtureRequest, backend: str, home: Path) -> AdapterRegistry:
    """A new registry at ``home`` on ``backend`` (a database of its own)."""
    if backend == "sqlite":
        url = f"sqlite:///{home / 'adapter_registry.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.create_database(f"b{os.getpid()}_{next(_databases)}")
    return AdapterRegistry(root=home / "adapters", db_url=url)


@pytest.fixture
def target(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> Iterator[AdapterRegistry]:
    """A second registry, new and empty, on the test's backend: where a bundle is imported."""
    registry = empty_registry(request, backend, tmp_path / "target")
    yield registry
    registry.close()


@pytest.fixture
def store_one(registry: AdapterRegistry) -> Any:
    """store() with sensible defaults: store_one(seed=..., **overrides)."""

    def store(seed: int = 0, r: int = 4, **kwargs: Any) -> AdapterRecord:
        kwargs.setdefault("config", lora_config(r=r))
        kwargs.setdefault("task_type", "bug-fix")
        kwargs.setdefault("source", "manual")
        kwargs.setdefault("session_id", "session-1")
        return registry.store(lora_bytes(r=r, seed=seed), **kwargs)

    return store


def ctrl_c_as_at_a_terminal() -> None:
    """A child's ``preexec_fn``: SIGINT back to its default, so that Python in the child turns
    it into KeyboardInterrupt, as a Ctrl-C at a terminal is. A job a shell starts in the
    background inherits SIGINT ignored, and Python then installs no handler for it: a test of
    Ctrl-C run that way would see the signal vanish."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def raw_sql(registry: AdapterRegistry, sql: str, **params: Any) -> list[Any]:
    """Run SQL on the registry's database through a connection of its own, as anyone could."""
    engine = create_engine(registry.db_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def rows(registry: AdapterRegistry) -> int:
    return int(raw_sql(registry, "SELECT count(*) FROM adapter_records")[0][0])


def entries(registry: AdapterRegistry) -> list[str]:
    """Everything under the root, staging included, as relative paths."""
    out = []
    for dirpath, dirnames, filenames in os.walk(registry.root):
        for name in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, name), registry.root))
    return sorted(out)


def assert_nothing_written(registry: AdapterRegistry, before_rows: int, before: list[str]) -> None:
    assert rows(registry) == before_rows
    after = [e for e in entries(registry) if e != ".staging"]
    assert after == [e for e in before if e != ".staging"]


@contextmanager
def at_core_call(
    qualname: str | tuple[str, ...], action: Callable[[], None], event: str = "c_call"
) -> Iterator[list[str]]:
    """Run `action` in this thread when a call into the core named `qualname` (such as
    "OpenedWeights.stage" or "read_verified", or any of several) starts ("c_call") or returns
    ("c_return"): a controlled point inside the library, observed with sys.setprofile and
    nothing replaced. Yields the names of the calls the action ran at, as they come (a test
    asserts that it did run)."""
    names = (qualname,) if isinstance(qualname, str) else qualname
    ran: list[str] = []

    def profile(_frame: Any, what: str, arg: Any) -> None:
        name = getattr(arg, "__qualname__", None)
        if what == event and name in names:
            ran.append(name)
            action()  # the profiler is off while its own callback runs: no recursion

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield ran
    finally:
        sys.setprofile(previous)
