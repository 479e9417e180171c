"""Cache keys tell the truth: an edit of a table or of engine code recomputes exactly the stages that
depend on it, and nothing else. Each narration is a fresh `emoflow narrate` process over a copy of the
source tree, as a user who edits `prompts/` or the code and runs again would see it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.helpers import STAGES, Home, write_job

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("kernel", "models", "stores", "tasks", "flows", "emoflow", "prompts")


class Tree:
    """A copy of the project's packages, a job, and a way to narrate it in a new process."""

    def __init__(self, root: Path, prefect_api: str) -> None:
        self.src = root / "src"
        for package in PACKAGES:
            shutil.copytree(ROOT / package, self.src / package, ignore=shutil.ignore_patterns("__pycache__"))
        self.home = Home(root)
        script = "Good morning. [angry 0.9] This must never happen again!"
        self.job = write_job(root / "job", "truth", script)
        # the copy comes before the editable install on sys.path, so the copy is what runs
        self.env = self.home.env(prefect_api, PYTHONPATH=str(self.src))

    def narrate(self) -> dict[str, bool]:
        """Stage -> whether it was computed (True) or a cache hit (False)."""
        done = subprocess.run(
            [sys.executable, "-m", "emoflow.cli", "narrate", str(self.job)],
            env=self.env,
            cwd=self.src.parent,  # `python -m` puts the working directory first on sys.path
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        run_id = re.search(r"run (\S+): \d+ of \d+ steps computed", done.stdout)
        assert run_id, done.stdout
        store = self.home.store()
        try:
            steps = store.run(run_id.group(1)).steps
        finally:
            store.close()
        assert [s.stage for s in steps] == STAGES
        return {s.stage: not s.cache_hit for s in steps}

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.src / relative
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} is not unique in {relative}"
        path.write_text(text.replace(old, new), encoding="utf-8")


def computed(*stages: str) -> dict[str, bool]:
    return {stage: stage in stages for stage in STAGES}


def test_edits_recompute_exactly_the_stages_that_read_them(prefect_api: str, tmp_path: Path) -> None:
    tree = Tree(tmp_path, prefect_api)
    assert tree.narrate() == computed(*STAGES)

    # the depth of the brow furrow that angry's fitted AU4 shades: only the face changes
    furrow = "[[9, -0.06, -0.04], [8, -0.045, 0.03]], depth: 0.16"
    deeper = furrow.replace("depth: 0.16", "depth: 0.3")
    tree.edit("prompts/facs.yaml", furrow, deeper)
    assert tree.narrate() == computed("render", "publish")

    # the FACS emotion rows are not read by real-motion expressions: editing one recomputes nothing
    row = re.search(r"^  angry: \{[^}]*\}", (tree.src / "prompts/facs.yaml").read_text(), re.M)
    assert row, "facs.yaml has an angry row"
    changed = re.sub(r"(\d\.\d+)", lambda m: f"{float(m.group(1)) + 0.1:.2f}", row.group(0), count=1)
    tree.edit("prompts/facs.yaml", row.group(0), changed)
    assert tree.narrate() == computed()

    # put both back, and add a comment to another table: every step is a cache hit
    tree.edit("prompts/facs.yaml", changed, row.group(0))
    tree.edit("prompts/facs.yaml", deeper, furrow)
    tree.edit("prompts/emotions.yaml", "emotions:\n", "emotions:  # edited by hand\n")
    assert tree.narrate() == computed()

    # an angry prosody value: the voice changes, and everything after it
    emotions = (tree.src / "prompts/emotions.yaml").read_text()
    angry = emotions[emotions.index("\n  angry:") :]
    prosody = re.search(r"prosody: \{pitch_semitones: ([-\d.]+)", angry)
    assert prosody
    pitch = f"{float(prosody.group(1)) + 1.0:.1f}"
    tree.edit("prompts/emotions.yaml", angry[: prosody.end()], angry[: prosody.start(1)] + pitch)
    assert tree.narrate() == computed("speak", "align", "feel", "render", "publish")

    # a one-line change in the preview renderer's code (a narrower mouth): render and publish
    tree.edit(
        "models/render/preview.py", "opening = float(mouth_open[i])", "opening = 0.9 * float(mouth_open[i])"
    )
    assert tree.narrate() == computed("render", "publish")
