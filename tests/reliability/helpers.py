"""Shared helpers: a store home for subprocesses, and running `emoflow narrate` in one."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stores.store import ArtifactStore

STAGES = ["plan", "speak", "align", "feel", "render", "publish"]
# espeak and 128 px keep each narration to a few seconds on two cores
FAST_JOB = "tts_engine: espeak\nsize: 128\nportrait: skimage:astronaut\n"


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.root / 'home' / 'emoflow.db'}"

    @property
    def blob_root(self) -> Path:
        return self.root / "home" / "blobs"

    def env(self, prefect_api: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "EMOFLOW_CRASH_AT"}
        return env | {
            "EMOFLOW_HOME": str(self.root / "home"),
            "EMOFLOW_DATABASE_URL": self.database_url,
            "EMOFLOW_OUTPUT_DIR": str(self.root / "outputs"),
            "PREFECT_API_URL": prefect_api,
            **extra,
        }

    def store(self) -> ArtifactStore:
        from stores.store import ArtifactStore

        return ArtifactStore(self.database_url, self.blob_root)


def write_job(folder: Path, name: str, script: str, output_dir: str = "out") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    text = f"name: {name}\nscript: {script!r}\noutput_dir: {output_dir}\n{FAST_JOB}"
    path.write_text(text, encoding="utf-8")
    return path


def narrate_process(job: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "emoflow.cli", "narrate", str(job)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def narrate_cli(job: Path, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    process = narrate_process(job, env)
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)
