"""The speech-engine protocol: EmotionPlan in, Speech (audio + word and phoneme timings) out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from models.types import EmotionPlan, ProgressFn, Speech


@runtime_checkable
class SpeechEngine(Protocol):
    """Speaks an EmotionPlan with the emotion of every word.

    `name` and `version` go into cache keys and the audit trail: an engine bumps its version whenever
    the same plan would give different audio or timings. `synthesize` returns float32 mono samples in
    [-1, 1] and exactly one WordTiming per plan word (same index and text, in order, non-overlapping,
    inside the audio); it calls `progress(done, total)` as it goes. Bad plans raise InputError, engine
    failures EngineError.
    """

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def synthesize(self, plan: EmotionPlan, progress: ProgressFn | None = None) -> Speech: ...
