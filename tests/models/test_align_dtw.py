"""The DTW aligner: word timings for speech that came without any, checked against Piper's own."""

from __future__ import annotations

import numpy as np
import pytest

from kernel.errors import EngineError, InputError
from models.align.dtw import DtwAligner
from models.align.engine_timings import EngineTimingAligner
from models.tts import get_speech_engine
from models.types import Speech, Timings
from tests.models.test_tts import FOX, make_plan

SENTENCES = [
    FOX,
    "After the long winter, the village finally woke up. Children ran to the river, laughing.",
    "Please call me tomorrow morning before nine o'clock, because I will be out all afternoon.",
]


def untimed(speech: Speech) -> Speech:
    """The same audio with the engine's timings thrown away."""
    return Speech(samples=speech.samples, sample_rate=speech.sample_rate, timings=Timings(words=[]))


def test_has_the_aligner_interface() -> None:
    aligner = DtwAligner()
    assert aligner.name == "dtw" and aligner.version
    assert callable(aligner.align) and callable(EngineTimingAligner().align)


@pytest.mark.parametrize(("label", "intensity"), [("neutral", 0.0), ("sad", 1.0)])
def test_boundaries_match_piper_alignments(label: str, intensity: float) -> None:
    piper, aligner = get_speech_engine("piper"), DtwAligner()
    errors: list[float] = []
    for script in SENTENCES:
        plan = make_plan(script, label, intensity)
        speech = piper.synthesize(plan)
        timings = aligner.align(untimed(speech), plan)

        assert [(w.index, w.text) for w in timings.words] == [(w.index, w.text) for w in plan.words]
        previous_end = 0.0
        for w in timings.words:
            assert previous_end <= w.start < w.end <= speech.duration + 1e-6
            previous_end = w.end
        for got, truth in zip(timings.words, speech.timings.words, strict=True):
            errors += [abs(got.start - truth.start), abs(got.end - truth.end)]
        # espeak's phonemes come along, inside their words, for lip sync
        assert len({p.word_index for p in timings.phonemes}) > 0.8 * len(plan.words)
        spans = {w.index: w for w in timings.words}
        for p in timings.phonemes:
            assert p.word_index is not None
            assert spans[p.word_index].start - 1e-6 <= p.start < p.end <= spans[p.word_index].end + 1e-6
    # measured about 30 ms on these (bench/speech.py has the exact figure); a loose bound here
    assert np.mean(errors) < 0.08, np.mean(errors)
    assert np.percentile(errors, 90) < 0.2


def test_silence_cannot_be_aligned() -> None:
    plan = make_plan("Nothing to hear.")
    silent = Speech(samples=np.zeros(22050, dtype=np.float32), sample_rate=22050, timings=Timings(words=[]))
    with pytest.raises(EngineError, match="silent"):
        DtwAligner().align(silent, plan)


def test_too_long_speech_is_refused_with_a_way_out() -> None:
    plan = make_plan(FOX)
    speech = get_speech_engine("espeak").synthesize(plan)
    with pytest.raises(InputError, match="sentence by sentence"):
        DtwAligner(max_piece_s=1.0).align(untimed(speech), plan)
