"""The speech-engine protocol: EmotionPlan in, Speech (audio + word and phoneme timings) out."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from models.types import EmotionPlan, ProgressFn, Speech, Timings


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


@runtime_checkable
class StreamingSpeechEngine(SpeechEngine, Protocol):
    """An engine that can also speak long scripts straight into a WAV file.

    `synthesize_to` returns the same timings `synthesize` would and keeps memory flat: audio is
    written sentence by sentence (mono 16-bit PCM) and only the timings grow with the script.
    """

    def synthesize_to(
        self, plan: EmotionPlan, path: str | Path, progress: ProgressFn | None = None
    ) -> Timings: ...
