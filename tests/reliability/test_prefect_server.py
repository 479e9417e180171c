"""One Prefect server per EMOFLOW_HOME: a killed command leaves no extra server, the next one reuses it."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emoflow.prefect_server import STATE, _read_state
from tests.reliability.helpers import Home, narrate_process, write_job


def _servers(prefect_home: Path) -> list[int]:
    """Pids of Prefect servers whose PREFECT_HOME is this one."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        is_server = b"server" in cmdline and any(part.endswith(b"prefect") for part in cmdline)
        if is_server and f"PREFECT_HOME={prefect_home}".encode() in environ:
            found.append(int(entry.name))
    return found


def _has_runs(home: Home) -> bool:
    """Read-only, so the test never races the command to create the database."""
    database = home.root / "home" / "emoflow.db"
    if not database.exists():
        return False
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as connection:
            return bool(connection.execute("SELECT count(*) FROM runs").fetchone()[0])
    except sqlite3.Error:
        return False


def _cli(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "emoflow.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="counts processes through /proc")
def test_a_killed_narrate_leaves_one_server_and_the_next_reuses_it(tmp_path: Path) -> None:
    home = Home(tmp_path)
    prefect_home = tmp_path / "prefect"
    env = {key: value for key, value in home.env("unused").items() if key != "PREFECT_API_URL"}
    env |= {"EMOFLOW_PREFECT_SERVER": "shared", "PREFECT_HOME": str(prefect_home)}
    job = write_job(tmp_path / "jobs", "kept", "The server outlives the command that started it.")
    try:
        process = narrate_process(job, env)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not _has_runs(home):
            time.sleep(0.5)  # killed once its run exists: mid-job, with the server up
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        first = _read_state(prefect_home)
        assert first is not None and _servers(prefect_home) == [first.pid]

        again = _cli("narrate", str(job), env=env)
        assert again.returncode == 0, again.stderr
        second = _read_state(prefect_home)
        assert second is not None and second.pid == first.pid and _servers(prefect_home) == [first.pid]

        shown = _cli("server", "status", env=env, timeout=60)
        assert shown.returncode == 0 and str(first.pid) in shown.stdout
    finally:
        stopped = _cli("server", "stop", env=env, timeout=60)
    assert stopped.returncode == 0 and _servers(prefect_home) == []
    assert not (prefect_home / STATE).exists()
    assert _cli("server", "status", env=env, timeout=60).returncode == 1
