"""`emoflow evaluate speech`: lines spoken per tag, the voice as one speaker, scores, and input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emoflow.cli import app
from models.align.engine_timings import EngineTimingAligner
from models.efp.train import ClipInputs
from models.evaluate.listener import TAGS, load_lines, score, speak_lines
from models.plan.rules import RulePlanner
from models.tts.espeak_engine import EspeakEngine
from models.vocabulary import load_vocabulary

LABELS = load_vocabulary().labels


def test_the_lines_are_neutral_content() -> None:
    vocabulary = load_vocabulary()
    lines = load_lines()
    assert len(lines) >= 10
    emotional = {w for e in vocabulary.emotions.values() if e.name != vocabulary.neutral for w in e.synonyms}
    for line in lines:
        words = {w.strip(".,").lower() for w in line.split()}
        assert not words & emotional, line


def test_every_line_is_spoken_under_every_tag_once_and_reused(tmp_path: Path) -> None:
    engine = EspeakEngine()
    lines = ["The bus leaves at ten.", "Put the folders on the shelf."]
    clips = speak_lines(engine, RulePlanner(), EngineTimingAligner(), lines, tmp_path, log=lambda _: None)
    # neutral once, every other tag at 0.5 and 1.0
    assert len(clips) == len(lines) * (1 + 2 * (len(TAGS) - 1))
    assert {c.speaker for c in clips} == {"espeak"}
    for clip in clips:
        assert clip.words and len({w.label for w in clip.words}) == 1
        assert (tmp_path / clip.audio).is_file()
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.wav")}
    again = speak_lines(engine, RulePlanner(), EngineTimingAligner(), lines, tmp_path, log=lambda _: None)
    assert [c.clip_id for c in again] == [c.clip_id for c in clips]
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.wav")} == before


def _clip(label: str, n: int) -> ClipInputs:
    return ClipInputs(
        clip_id=f"{label}{n}",
        speaker="voice",
        audio=np.zeros((n, 2), dtype=np.float32),
        text=None,
        labels=np.full(n, LABELS.index(label)),
        intensity=np.ones(n, dtype=np.float32),
    )


def test_clip_labels_are_the_majority_of_their_words() -> None:
    clips = [_clip("angry", 3), _clip("sad", 2)]
    heard = [
        np.array([LABELS.index(x) for x in ("angry", "angry", "happy")]),
        np.array([LABELS.index("happy")] * 2),
    ]
    reports = score(LABELS, clips, heard)
    assert reports["words"].accuracy == pytest.approx(2 / 5)
    assert reports["clips"].accuracy == pytest.approx(1 / 2)
    assert reports["words"].per_class["angry"]["recall"] == pytest.approx(2 / 3)
    assert reports["words"].labels[: len(TAGS)] == list(TAGS)  # tags first, surprise only if heard


def test_bad_input_is_refused_before_any_work(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "speech", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "no EmoDB labels.csv" in result.output
    (tmp_path / "labels.csv").write_text("path,emotion,speaker,text_id\n", encoding="utf-8")
    result = runner.invoke(app, ["evaluate", "speech", "--data", str(tmp_path), "--engines", "parler"])
    assert result.exit_code == 1 and "unknown engine" in result.output
    assert not (tmp_path / "o").exists()
