"""Engine environments: a speech engine installed in a virtual environment of its own.

Each folder `engines/<name>/` of the repository holds a `requirements.lock`: exact pins with hashes of
every package the engine's child process imports. `install` builds `<engines dir>/<name>/venv` from it
(`pip install --no-deps --only-binary :all:`, so nothing outside the lock is resolved), checks that the
engine speaks there, and only then writes `installed.json`; an environment without that record, or
with a record of another lock, is not used. The child runs this repository's own engine code
(`models.tts.engine_server`) with the environment's Python: its first-party modules come from the
repository, its third-party packages from its own venv. docs/engines.md has the whole story.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kernel.errors import EngineError, InputError

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCKS_ROOT = REPO_ROOT / "engines"
LOCK_FILE = "requirements.lock"
RECORD_FILE = "installed.json"
# the check an install ends with: one short sentence through the child, end to end
SMOKE_SCRIPT = "Hello there."
# a lock line naming the pure-Python projects that publish no wheel, which pip may build from their sdists
SOURCE_BUILD_MARK = "# source-build:"
# engines that cannot speak without a model the user may not have yet: the module that writes a tiny
# random-weight one in the new environment, and the setting that points the engine at it
SMOKE_MODELS: dict[str, tuple[str, str]] = {"parler": ("models.tts.parler_fixture", "EMOFLOW_PARLER_MODEL")}
SMOKE_MODEL_DIR = "smoke-model"

Status = Literal["installed", "not installed", "stale"]


@dataclass(frozen=True)
class EngineEnvironment:
    """The environment of engine `name`: its lock in the repository and the folder it is built in."""

    name: str  # the engine it serves (models.tts.get_speech_engine) and its folder under engines/
    lock: Path
    root: Path

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def record_path(self) -> Path:
        return self.root / RECORD_FILE

    @property
    def option(self) -> str:
        """The `tts_engine` name that selects this environment's engine."""
        return f"{self.name}-env"

    def lock_digest(self) -> str:
        """sha256 of the lock file's bytes: part of the engine's identity, so of every cache key."""
        try:
            return hashlib.sha256(self.lock.read_bytes()).hexdigest()
        except OSError as exc:
            raise EngineError(f"cannot read the lock file of engine environment {self.name}: {exc}") from exc

    def record(self) -> dict[str, Any] | None:
        """What the last successful install wrote, or None (never installed, or an install that failed)."""
        try:
            record = json.loads(self.record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def status(self) -> Status:
        record = self.record()
        if record is None or not self.python.exists():
            return "not installed"
        return "installed" if record.get("lock_sha256") == self.lock_digest() else "stale"

    def require_installed(self) -> Path:
        """The environment's Python; EngineError with the command to run when it is absent or stale."""
        status = self.status()
        if status == "not installed":
            raise EngineError(
                f"engine environment {self.name} is not installed in {self.root}; "
                f"run `emoflow engines install {self.name}`"
            )
        if status == "stale":
            raise EngineError(
                f"engine environment {self.name} was built from another {self.lock.name}; "
                f"run `emoflow engines install {self.name}` to rebuild it"
            )
        return self.python


def environments_dir() -> Path:
    """Where environments are built: EMOFLOW_ENGINES_DIR, else $EMOFLOW_HOME/engines."""
    from kernel.settings import get_settings

    settings = get_settings()
    return (settings.engines_dir or settings.home_dir / "engines").expanduser().resolve()


def known_environments() -> list[str]:
    """Engines with a lock file in the repository."""
    if not LOCKS_ROOT.is_dir():
        return []
    return sorted(path.parent.name for path in LOCKS_ROOT.glob(f"*/{LOCK_FILE}"))


def environment(name: str, root: Path | None = None) -> EngineEnvironment:
    """Engine environment `name`, built under `root` (default: `environments_dir()`)."""
    known = known_environments()
    if name not in known:
        raise InputError(f"unknown engine environment {name!r}; known: {', '.join(known) or 'none'}")
    base = root if root is not None else environments_dir()
    return EngineEnvironment(name=name, lock=LOCKS_ROOT / name / LOCK_FILE, root=base / name)


def install(env: EngineEnvironment, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build `env` from its lock, check that its engine speaks, and record the install.

    Any earlier build is removed first, so a failed install leaves the environment "not installed".
    """
    say = log or (lambda _line: None)
    lock_digest = env.lock_digest()
    started = time.perf_counter()

    # 1. A fresh venv, with this interpreter's Python (the source digest depends on its version);
    # this process's pip installs into it when it has one, which saves seeding the venv with its own
    remove(env)
    env.root.mkdir(parents=True, exist_ok=True)
    say(f"creating {env.venv}")
    own_pip = importlib.util.find_spec("pip") is not None
    venv_options = ["--without-pip"] if own_pip else []
    _run([sys.executable, "-m", "venv", *venv_options, str(env.venv)], f"creating the venv of {env.name}")

    # 2. Exactly the lock: no dependency resolution, no source builds but those the lock names, hashes
    # checked. Not compiling every module up front takes a 30 s install to 9 s; the child compiles
    # what it imports.
    say(f"installing {_package_count(env.lock)} packages from {env.lock}")
    sources = source_builds(env.lock)
    pip = (
        [sys.executable, "-m", "pip", "--python", str(env.python)]
        if own_pip
        else [str(env.python), "-m", "pip"]
    )
    _run(
        [
            *pip,
            "install",
            "--progress-bar",
            "off",
            "--no-input",
            "--disable-pip-version-check",
            "--no-compile",
            "--no-deps",
            "--only-binary",
            ":all:",
            *(option for name in sources for option in ("--no-binary", name)),
            "--requirement",
            str(env.lock),
        ],
        f"installing {env.lock.name} into {env.venv}",
        on_line=_PipProgress(_package_count(env.lock), say),
    )

    # 3. The engine must load and speak there before anything may use it
    overrides = _smoke_model(env, say)
    say(f"checking that {env.name} speaks in its environment")
    identity = _smoke_test(env, overrides)

    record = {
        "environment": env.name,
        "lock": str(env.lock),
        "lock_sha256": lock_digest,
        "python": platform.python_version(),
        "engine": identity.name,
        "engine_version": identity.version,
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    partial = env.record_path.with_name(f".{RECORD_FILE}.partial")
    partial.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    partial.replace(env.record_path)  # the record appears whole or not at all
    return record


def remove(env: EngineEnvironment) -> bool:
    """Delete the built environment (the lock stays); False when there was nothing to delete."""
    existed = env.root.exists()
    env.record_path.unlink(missing_ok=True)  # first, so a half-deleted venv never counts as installed
    shutil.rmtree(env.root, ignore_errors=True)
    return existed


def source_builds(lock: Path) -> list[str]:
    """The projects a lock lets pip build from source: its `# source-build: NAME ...` lines."""
    names: list[str] = []
    for line in lock.read_text(encoding="utf-8").splitlines():
        if line.startswith(SOURCE_BUILD_MARK):
            names.extend(line[len(SOURCE_BUILD_MARK) :].split())
    return names


def _smoke_model(env: EngineEnvironment, say: Callable[[str], None]) -> dict[str, str]:
    """Settings for the install's check: a tiny random-weight model when the engine needs one."""
    if env.name not in SMOKE_MODELS:
        return {}
    module, setting = SMOKE_MODELS[env.name]
    folder = env.root / SMOKE_MODEL_DIR
    say(f"writing a tiny random-weight model for the check to {folder}")
    _run(
        [str(env.python), "-P", "-m", module, str(folder)],
        f"writing the check's model for {env.name}",
        env=_child_environment(),
    )
    return {setting: str(folder)}


def _smoke_test(env: EngineEnvironment, overrides: dict[str, str]) -> Any:
    # imported here: remote imports this module
    from models.tts.remote import RemoteSpeechEngine
    from models.types import EmotionPlan, PlannedWord

    words = [
        PlannedWord(0, "Hello", 0, 5, "neutral", 0.0, "default"),
        PlannedWord(1, "there", 6, 11, "neutral", 0.0, "default"),
    ]
    engine = RemoteSpeechEngine(env, python=env.python, environment_overrides=overrides)
    try:
        engine.synthesize(EmotionPlan(script=SMOKE_SCRIPT, words=words))
        return engine.identity()
    finally:
        engine.close()


def _package_count(lock: Path) -> int:
    lines = lock.read_text(encoding="utf-8").splitlines()
    return sum(1 for line in lines if "==" in line and not line.lstrip().startswith("#"))


def _child_environment() -> dict[str, str]:
    from models.tts.remote import child_environment  # imported here: remote imports this module

    return child_environment()


class _PipProgress:
    """pip's output lines as a few progress lines: packages fetched (every tenth, at least every 10
    packages), sdists being built."""

    def __init__(self, total: int, say: Callable[[str], None]) -> None:
        self.total = max(1, total)
        self.step = max(10, -(-self.total // 10))
        self.say = say
        self.fetched = 0

    def __call__(self, line: str) -> None:
        if line.startswith(("Collecting ", "Processing ")):
            self.fetched += 1
            if self.fetched % self.step == 0 or self.fetched == self.total:
                self.say(f"{self.fetched}/{self.total} packages fetched")
        elif line.startswith("Building wheel for "):
            self.say(f"building {line.split()[3]} from its sdist")
        elif line.startswith("Installing collected packages"):
            self.say("unpacking them into the venv")


def _run(
    command: list[str],
    what: str,
    env: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> None:
    """Run `command`; EngineError quoting its last lines when it fails. `on_line` sees each output line."""
    try:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
    except OSError as exc:
        raise EngineError(f"{what} failed: {exc}") from exc
    assert process.stdout is not None
    tail: list[str] = []
    with process:
        for raw in process.stdout:
            line = raw.rstrip()
            if line and not line.startswith("WARNING:"):  # pip's configuration warnings hide the cause
                tail = [*tail[-5:], line]
            if on_line is not None and line:
                on_line(line.strip())
    if process.returncode != 0:
        quoted = " | ".join(tail)
        raise EngineError(f"{what} failed (exit {process.returncode}): {quoted}")
