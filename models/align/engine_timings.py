"""The align stage for engines that report word timings: check them and tidy the boundaries.

Engines report where they *scheduled* each word; the audio's energy says where the word really
starts. Each boundary between two words moves to the quietest 10 ms frame within a short window,
so lips close in the gaps and the curve's word spans do not bleed into silence.
"""

from __future__ import annotations

import numpy as np

from kernel.errors import EngineError
from models.identity import EngineIdentity, describe
from models.types import EmotionPlan, Speech, Timings, WordTiming

FRAME_S = 0.01
MIN_WORD_S = 0.03


class EngineTimingAligner:
    name = "engine-timings"
    version = "1.0"

    def __init__(self, snap_window_s: float = 0.04) -> None:
        self.snap_window_s = snap_window_s

    def identity(self) -> EngineIdentity:
        return describe(self)

    def align(self, speech: Speech, plan: EmotionPlan) -> Timings:
        words = sorted(speech.timings.words, key=lambda w: w.index)
        indices = [w.index for w in words]
        if indices != [w.index for w in plan.words]:
            missing = sorted({w.index for w in plan.words} - set(indices))
            raise EngineError(
                f"speech engine gave timings for {len(words)} of {len(plan.words)} words "
                f"(missing word indices {missing[:10]}); choose another engine or aligner"
            )
        energy = _frame_energy(speech.samples, speech.sample_rate)
        duration = speech.duration
        starts = np.clip([w.start for w in words], 0.0, duration)
        ends = np.clip([w.end for w in words], 0.0, duration)
        for i in range(1, len(words)):
            # adjacent words that touch share one boundary; snap it to the quietest point nearby
            if abs(starts[i] - ends[i - 1]) < 0.02:
                boundary = _quietest(energy, (starts[i] + ends[i - 1]) / 2, self.snap_window_s)
                lo, hi = starts[i - 1] + MIN_WORD_S, ends[i] - MIN_WORD_S
                if lo < hi:
                    ends[i - 1] = starts[i] = float(np.clip(boundary, lo, hi))
            starts[i] = max(starts[i], ends[i - 1])
            ends[i] = max(ends[i], starts[i])
        aligned = [
            WordTiming(index=w.index, text=w.text, start=round(float(s), 4), end=round(float(e), 4))
            for w, s, e in zip(words, starts, ends, strict=True)
        ]
        return Timings(words=aligned, phonemes=list(speech.timings.phonemes))


def _frame_energy(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    hop = max(1, int(FRAME_S * sample_rate))
    n = len(samples) // hop
    if n == 0:
        return np.zeros(1, dtype=np.float32)
    frames = samples[: n * hop].reshape(n, hop)
    return np.sqrt(np.mean(frames**2, axis=1) + 1e-12)


def _quietest(energy: np.ndarray, around_s: float, window_s: float) -> float:
    lo = max(0, int((around_s - window_s) / FRAME_S))
    hi = min(len(energy), int((around_s + window_s) / FRAME_S) + 1)
    if hi <= lo:
        return around_s
    return (lo + int(np.argmin(energy[lo:hi])) + 0.5) * FRAME_S
