"""One local Prefect server per EMOFLOW_HOME: started by the first command that needs it, then kept.

Without it every `emoflow` process starts Prefect's ephemeral server (seconds of start-up, 220-250 MB),
and a process that is killed leaves that server behind, re-parented to init. Here the server is a
process of its own session, found again through a state file under PREFECT_HOME:

    emoflow-server.json   {"pid", "url", "started_at"}: written as soon as the process exists
    emoflow-server.lock   held while a command looks for the server or starts it: never two servers
    emoflow-server.log    the server's output

A command killed at any point leaves at most this one server, which the next command reuses;
`emoflow server stop` ends it. Settings: EMOFLOW_PREFECT_SERVER=ephemeral keeps Prefect's own per-process
server, and a PREFECT_API_URL that is already set (a shared `prefect server start`) always wins.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from kernel.errors import EngineError
from kernel.settings import get_settings

STATE = "emoflow-server.json"
LOCK = "emoflow-server.lock"
LOG = "emoflow-server.log"
START_TIMEOUT_S = 120.0  # the first start creates and migrates Prefect's database: ~15 s here


@dataclass(frozen=True)
class ServerInfo:
    pid: int
    url: str  # the API root, e.g. http://127.0.0.1:41234/api
    started_at: str
    log: Path


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or get_settings().prefect_home).expanduser()


def _read_state(home: Path) -> ServerInfo | None:
    try:
        data = json.loads((home / STATE).read_text())
        return ServerInfo(int(data["pid"]), str(data["url"]), str(data["started_at"]), home / LOG)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(home: Path, info: ServerInfo) -> None:
    temporary = home / f"{STATE}.tmp"
    temporary.write_text(json.dumps({"pid": info.pid, "url": info.url, "started_at": info.started_at}))
    temporary.replace(home / STATE)  # readers see the old file or the new one, never half of one


def _is_server(pid: int) -> bool:
    """The pid is alive and is a Prefect server (not another process that reused the number)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():  # not Linux: trust the pid
        return True
    with contextlib.suppress(OSError):
        parts = cmdline.read_bytes().split(b"\0")
        return any(part.endswith(b"prefect") for part in parts) and b"server" in parts
    return False


def _healthy(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    home.mkdir(parents=True, exist_ok=True)
    with (home / LOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def status(home: Path | None = None) -> ServerInfo | None:
    """The home's server if it is running and answers; None otherwise."""
    home = home or prefect_home()
    info = _read_state(home)
    if info is None or not _is_server(info.pid) or not _healthy(info.url):
        return None
    return info


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_healthy(info: ServerInfo, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _healthy(info.url):
            return
        if not _is_server(info.pid):
            break
        time.sleep(0.25)
    tail = info.log.read_text(errors="replace").splitlines()[-5:] if info.log.exists() else []
    raise EngineError(
        f"the local Prefect server (pid {info.pid}) did not come up within {timeout:.0f} s; "
        f"its log {info.log} ends: {' | '.join(tail) or '(empty)'}"
    )


def start(home: Path | None = None, timeout: float = START_TIMEOUT_S) -> ServerInfo:
    """The home's server, started if none runs; waits until it answers."""
    home = home or prefect_home()
    with _locked(home):
        info = _read_state(home)
        if info is not None and _is_server(info.pid):
            _wait_healthy(info, timeout)  # running, or still starting for a command that was killed
            return info
        executable = shutil.which("prefect", path=str(Path(sys.executable).parent)) or shutil.which("prefect")
        if executable is None:
            raise EngineError(
                "the `prefect` command is not installed next to this Python: run `make install`"
            )
        port = _free_port()
        env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
        env |= {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
        with (home / LOG).open("ab") as log:
            process = subprocess.Popen(
                [executable, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # not killed with the command that started it
            )
        info = ServerInfo(
            process.pid, f"http://127.0.0.1:{port}/api", datetime.now(UTC).isoformat(), home / LOG
        )
        _write_state(home, info)
        try:
            _wait_healthy(info, timeout)
        except EngineError:
            _terminate(process.pid)
            (home / STATE).unlink(missing_ok=True)
            raise
        return info


def _terminate(pid: int, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _is_server(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when this process started it
        time.sleep(0.1)
    if _is_server(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def stop(home: Path | None = None) -> ServerInfo | None:
    """Stop the home's server; returns what was stopped, None if nothing ran."""
    home = home or prefect_home()
    with _locked(home):
        info = _read_state(home)
        if info is None or not _is_server(info.pid):
            (home / STATE).unlink(missing_ok=True)
            return None
        _terminate(info.pid)
        (home / STATE).unlink(missing_ok=True)
        return info


def use_shared_server() -> None:
    """Point this process's Prefect client at the home's server; call before Prefect is imported."""
    if get_settings().prefect_server == "ephemeral" or os.environ.get("PREFECT_API_URL"):
        return
    if "prefect" in sys.modules:
        from prefect.settings import PREFECT_API_URL

        if PREFECT_API_URL.value():  # a test harness or a profile already chose a server
            return
        raise EngineError("use_shared_server() must run before Prefect is imported")  # settings are frozen
    os.environ["PREFECT_API_URL"] = start().url
