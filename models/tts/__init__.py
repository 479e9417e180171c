"""Speech engines, chosen by name: `get_speech_engine("piper")` or `get_speech_engine("espeak")`.

- piper: natural neural voice (en_US-joe-medium), emotion through rate, PSOLA pitch/energy reshaping
  and pauses; deterministic (seeded noise); real-time factor about 0.04 plain, 0.1-0.2 reshaped.
- espeak: espeak-ng formant voice, emotion through SSML prosody; instant (output length can vary
  by a few ms between identical calls).
- parler: Parler-TTS, emotion asked for in a description sentence; runs only in its own environment
  (`emoflow engines install parler`, `tts_engine: parler-env`) from a checkpoint in EMOFLOW_PARLER_MODEL.

Both engines also implement `StreamingSpeechEngine.synthesize_to(plan, path, progress)`, which writes
long scripts to a WAV file sentence by sentence with flat memory, and both normalise bad input the
same way (`models.tts.normalize`: URLs -> "link", emoji dropped, other scripts refused; silence in
the output is an EngineError).
"""

from __future__ import annotations

import threading
from typing import Any

from kernel.errors import InputError
from models.tts.base import SpeechEngine, StreamingSpeechEngine

ENGINES: tuple[str, ...] = ("piper", "espeak")  # embedded: they run in the project's own environment
# engines whose packages clash with the project's: served only in an environment of their own
ENVIRONMENT_ENGINES: tuple[str, ...] = ("parler",)

_SHARED: dict[str, SpeechEngine] = {}
_SHARED_LOCK = threading.Lock()

__all__ = ["ENGINES", "ENVIRONMENT_ENGINES", "SpeechEngine", "StreamingSpeechEngine", "get_speech_engine"]


def get_speech_engine(name: str, **options: Any) -> SpeechEngine:
    """The engine called `name`; InputError lists the valid names.

    Without options, one shared instance per name is returned, so a voice is loaded once per process.
    With options (e.g. `reshape=False` for piper), a new instance is built.
    """
    key = name.strip().lower() if isinstance(name, str) else ""
    if key not in ENGINES + ENVIRONMENT_ENGINES:
        valid = ", ".join(ENGINES + ENVIRONMENT_ENGINES)
        raise InputError(f"unknown speech engine {name!r}; valid engines are: {valid}")
    if options:
        return _build(key, options)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = _build(key, {})
        return _SHARED[key]


def _build(key: str, options: dict[str, Any]) -> SpeechEngine:
    # imported here so that choosing espeak never loads onnxruntime, and vice versa
    if key == "piper":
        from models.tts.piper_engine import PiperEngine

        return PiperEngine(**options)
    if key == "parler":
        from models.tts.parler_engine import ParlerEngine

        return ParlerEngine(**options)
    from models.tts.espeak_engine import EspeakEngine

    return EspeakEngine(**options)
