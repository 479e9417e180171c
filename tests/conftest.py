"""Test-wide setup: every test gets its own EMOFLOW_HOME; Prefect state lives in a temp dir."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

# Prefect reads these at import, so they are set before any test module imports it.
_PREFECT_HOME = tempfile.mkdtemp(prefix="emoflow-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ["HF_HUB_OFFLINE"] = "1"
# tests get Prefect from the prefect_api fixture or their own process; none may leave a shared server
# running (tests/reliability/test_prefect_server.py starts and stops one on purpose)
os.environ["EMOFLOW_PREFECT_SERVER"] = "ephemeral"


def _worker_database(url: str | None) -> str | None:
    """Under pytest-xdist each worker gets a database of its own on the shared server: the tests empty
    theirs before they start, which would pull tables from under another worker's test."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not url or not worker:
        return url
    from sqlalchemy import create_engine, make_url, text

    base = make_url(url)
    name = f"{base.database}_{worker}"
    engine = create_engine(base, isolation_level="AUTOCOMMIT")  # CREATE DATABASE cannot run in a transaction
    with engine.connect() as connection:
        found = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
        if found is None:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


# CI starts a throwaway PostgreSQL (.ci/postgres.sh); then store and flow tests run on both databases.
POSTGRES_URL = _worker_database(os.environ.get("EMOFLOW_TEST_POSTGRES_URL"))
BACKENDS = ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]


def database_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'home' / 'emoflow.db'}"
    from sqlalchemy import create_engine, text

    assert POSTGRES_URL
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as connection:  # an empty database for every test
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return POSTGRES_URL


@pytest.fixture(params=BACKENDS)
def emoflow_home(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A fresh store and output folder, wired through EMOFLOW_* settings."""
    from tasks.context import reset_stores

    home = tmp_path / "home"
    monkeypatch.setenv("EMOFLOW_HOME", str(home))
    monkeypatch.setenv("EMOFLOW_DATABASE_URL", database_url(request.param, tmp_path))
    monkeypatch.setenv("EMOFLOW_OUTPUT_DIR", str(tmp_path / "outputs"))
    reset_stores()
    yield home
    reset_stores()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    from stores.store import ArtifactStore

    opened = ArtifactStore(database_url(request.param, tmp_path), tmp_path / "blobs")
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One Prefect test server for every flow test (it takes 11-13 s to start here)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread: tiny tensors run 10-40x slower on two contended threads than on one."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long end-to-end files first: under pytest-xdist (`make test`) a 2-minute file that starts last
    keeps one worker busy while the other idles. The sort is stable, so each file stays in order."""
    items.sort(
        key=lambda item: 0 if "reliability" in item.path.parts or item.get_closest_marker("slow") else 1
    )


def pytest_configure(config: pytest.Config) -> None:
    """Compile librosa's numba functions once, before any worker or test process runs them.

    numba caches their machine code beside the package. Processes that compile the same function at
    once (xdist workers, or a test's six concurrent CLI processes on a fresh venv) can leave an index
    and code of different compilations, and every later call segfaults. A warm cache is only read.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # the controller did it
    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import librosa

        rng = np.random.default_rng(0)
        for dtype in (np.float32, np.float64):
            y = rng.standard_normal(8000).astype(dtype)
            librosa.yin(y, fmin=60.0, fmax=400.0, sr=16000, frame_length=1024)
            librosa.pyin(y[:4000], fmin=60.0, fmax=400.0, sr=16000, frame_length=1024)
            spectrum = librosa.stft(y, n_fft=512, hop_length=128)
            librosa.istft(spectrum, hop_length=128, length=len(y))
            librosa.feature.zero_crossing_rate(y)
            librosa.util.peak_pick(np.abs(y), pre_max=3, post_max=3, pre_avg=3, post_avg=3, delta=0.1, wait=2)
            librosa.sequence.dtw(C=np.abs(rng.standard_normal((20, 30))).astype(dtype))
            librosa.sequence.dtw(X=y[:400].reshape(4, 100), Y=y[400:800].reshape(4, 100), metric="euclidean")
