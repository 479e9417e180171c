"""Parler-TTS in its own environment, on a tiny random-weight checkpoint: `make test-neural-tts`.

Opt-in, and not in `make test`: the environment is about 7 GB (torch 2.9 with its CUDA libraries,
from PyPI). `make test-neural-tts` builds it with `emoflow engines install parler`, whose check
writes the tiny checkpoint (models/tts/parler_fixture.py) beside it; these tests speak through it
with parler-tts's own loading and generation code, as they would with a real checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kernel.errors import EngineError
from models.tts.environments import SMOKE_MODEL_DIR, EngineEnvironment, environment
from models.tts.remote import RemoteSpeechEngine, child_environment
from models.types import EmotionPlan
from tests.models.test_tts import make_plan

pytestmark = pytest.mark.skipif(
    os.environ.get("EMOFLOW_TEST_NEURAL_TTS") != "1", reason="opt-in: make test-neural-tts"
)

SCRIPT = "Hello there, my friends. This must never happen again!"
REPO = Path(__file__).resolve().parents[2]


def changing_plan(script: str = SCRIPT) -> EmotionPlan:
    return make_plan(script, lambda i: ("angry", 0.9) if i >= 4 else ("neutral", 0.0))


@pytest.fixture(scope="module")
def parler_env() -> EngineEnvironment:
    env = environment("parler", root=Path(os.environ["EMOFLOW_ENGINES_DIR"]))
    assert env.status() == "installed", (
        "run `emoflow engines install parler` first (make test-neural-tts does)"
    )
    return env


@pytest.fixture(scope="module")
def tiny_model(parler_env: EngineEnvironment) -> Path:
    return parler_env.root / SMOKE_MODEL_DIR


@pytest.fixture(scope="module")
def parler(parler_env: EngineEnvironment, tiny_model: Path) -> Iterator[RemoteSpeechEngine]:
    engine = RemoteSpeechEngine(
        parler_env, timeout_s=300, environment_overrides={"EMOFLOW_PARLER_MODEL": str(tiny_model)}
    )
    yield engine
    engine.close()


def test_a_changing_plan_is_spoken_piece_by_piece_with_word_timings(parler: RemoteSpeechEngine) -> None:
    calls: list[tuple[int, int]] = []
    plan = changing_plan()
    speech = parler.synthesize(plan, lambda done, total: calls.append((done, total)))
    assert speech.sample_rate == 44100  # DAC's rate: the audio is parler-tts's own output
    assert calls == [(0, 2), (1, 2), (2, 2)]  # one neutral piece, one angry piece
    assert [w.text for w in speech.timings.words] == [w.text for w in plan.words]
    assert all(w.end > w.start for w in speech.timings.words)
    assert speech.timings.phonemes, "the DTW aligner maps espeak's phonemes onto the audio"
    assert np.max(np.abs(speech.samples)) > 0


def test_the_same_plan_gives_the_same_audio(parler: RemoteSpeechEngine) -> None:
    first = parler.synthesize(changing_plan())
    second = parler.synthesize(changing_plan())
    assert np.array_equal(first.samples, second.samples)


def test_synthesize_to_streams_the_same_words(parler: RemoteSpeechEngine, tmp_path: Path) -> None:
    target = tmp_path / "speech.wav"
    timings = parler.synthesize_to(changing_plan(), target)
    in_memory = parler.synthesize(changing_plan())
    assert sf.info(target).samplerate == 44100
    for streamed, whole in zip(timings.words, in_memory.timings.words, strict=True):
        assert abs(streamed.start - whole.start) < 0.002 and abs(streamed.end - whole.end) < 0.002


def test_the_checkpoint_descriptions_and_lock_are_in_the_identity(
    parler_env: EngineEnvironment, parler: RemoteSpeechEngine, tmp_path: Path
) -> None:
    digests = parler.identity().digests
    assert {"model:checkpoint", "table:parler.yaml", "environment", "packages", "source"} <= set(digests)
    other = tmp_path / "other-model"
    subprocess.run(
        [str(parler_env.python), "-P", "-m", "models.tts.parler_fixture", str(other)],
        check=True,
        capture_output=True,
        env=child_environment(),
    )
    (other / "generation_config.json").write_text(
        (other / "generation_config.json").read_text().replace('"max_length": 172', '"max_length": 86')
    )
    engine = RemoteSpeechEngine(parler_env, environment_overrides={"EMOFLOW_PARLER_MODEL": str(other)})
    try:
        assert engine.identity().digests["model:checkpoint"] != digests["model:checkpoint"]
        assert engine.synthesize(make_plan("Hello there.", "neutral", 0.0)).duration <= 1.1
    finally:
        engine.close()


def test_without_a_checkpoint_the_child_refuses_to_start_and_says_why(
    parler_env: EngineEnvironment, tmp_path: Path
) -> None:
    engine = RemoteSpeechEngine(parler_env, environment_overrides={"EMOFLOW_PARLER_MODEL": str(tmp_path)})
    target = tmp_path / "speech.wav"
    try:
        with pytest.raises(EngineError, match="is not a Parler-TTS checkpoint"):
            engine.synthesize_to(changing_plan(), target)
    finally:
        engine.close()
    assert not target.exists()


def test_a_job_narrates_through_the_environment(
    parler_env: EngineEnvironment, tiny_model: Path, tmp_path: Path
) -> None:
    env = os.environ | {
        "EMOFLOW_HOME": str(tmp_path / "home"),
        "EMOFLOW_ENGINES_DIR": str(parler_env.root.parent),
        "EMOFLOW_PARLER_MODEL": str(tiny_model),
        "EMOFLOW_PREFECT_SERVER": "ephemeral",
    }
    job = tmp_path / "job.yaml"
    job.write_text(
        f"name: parler\nportrait: skimage:astronaut\nscript: {SCRIPT}\n"
        "description: calm, then angry at 'never'\ntts_engine: parler-env\naligner: engine\n"
        f"output_dir: {tmp_path / 'out'}\n",
        encoding="utf-8",
    )
    emoflow = [sys.executable, "-m", "emoflow.cli"]
    done = subprocess.run([*emoflow, "narrate", str(job)], env=env, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert list((tmp_path / "out").glob("*.mp4")), done.stdout
    again = subprocess.run([*emoflow, "narrate", str(job)], env=env, capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 0 and "cached" in again.stdout.lower(), again.stdout + again.stderr
