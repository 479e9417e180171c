"""Sentence joins for streamed speech, assembled with pydub: each sentence crossfades into its pause.

A sentence that stops on a non-zero sample and is followed by digital silence clicks. So at every join
the sentence crossfades into the pause: its last few ms fade out over the silence, and the next
sentence fades in from it. Nothing overlaps or moves, so the timeline (and every word timing computed
from sample counts) is exactly the one without fades; only the first and last `JOIN_FADE_MS` of a
sentence at a join change level.

pydub works in milliseconds and rounds a segment's length to whole ms; at 22.05 kHz that drops or adds
samples when it slices or fades an arbitrary-length segment (and its `append(crossfade=...)` overlaps,
shortening the audio). So pydub only ever fades an edge cut by sample index to `floor(ms * rate)`
samples, a length it handles exactly; the middle of the sentence is passed through untouched, and the
assembled chunk's length is checked. The chunk is one sentence plus its pause: the caller streams it to
its WAV writer and drops it, so memory stays flat for scripts of any length.
"""

from __future__ import annotations

import warnings

import imageio_ffmpeg
import numpy as np

from kernel.errors import EngineError

with warnings.catch_warnings():
    # pydub warns at import when no ffmpeg is on PATH (we point it at imageio-ffmpeg's just below),
    # and Python 3.11 warns that its audioop is deprecated
    warnings.simplefilter("ignore", RuntimeWarning)
    warnings.simplefilter("ignore", DeprecationWarning)
    from pydub import AudioSegment

# pydub needs an ffmpeg only for compressed formats; it should be the one the rest of the project uses
AudioSegment.converter = imageio_ffmpeg.get_ffmpeg_exe()

JOIN_FADE_MS = 5  # long enough to hide a cut waveform, short enough to leave the words alone
_SILENT_DB = -120.0  # pydub's own "silent" end of a fade
_SAMPLE_WIDTH = 2  # 16-bit PCM, what the streamed WAV holds


def pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as 16-bit PCM (clipped, so a loud sample never wraps around)."""
    return np.round(np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0) * 32767.0).astype(np.int16)


def segment(samples: np.ndarray, sample_rate: int) -> AudioSegment:
    """16-bit mono PCM samples as a pydub segment."""
    return AudioSegment(
        data=np.ascontiguousarray(samples, dtype=np.int16).tobytes(),
        sample_width=_SAMPLE_WIDTH,
        frame_rate=sample_rate,
        channels=1,
    )


def fade_samples(sample_rate: int, fade_ms: int = JOIN_FADE_MS) -> int:
    """Samples in a join's fade: the whole-ms length pydub fades exactly (see the module docstring)."""
    return fade_ms * sample_rate // 1000


def sentence_chunk(
    samples: np.ndarray,
    sample_rate: int,
    *,
    fade_in: bool,
    fade_out: bool,
    pause_samples: int,
    fade_ms: int = JOIN_FADE_MS,
) -> np.ndarray:
    """One sentence as 16-bit PCM, faded in from the previous pause and out into its own, then the pause.

    The result holds exactly len(samples) + pause_samples samples. A sentence shorter than four fades
    gets shorter fades (a quarter of it each), never fades that meet in the middle.
    """
    pcm = pcm16(samples)
    ms = min(fade_ms, 1000 * len(pcm) // (4 * sample_rate))
    n = fade_samples(sample_rate, ms)
    parts: list[AudioSegment] = []
    head, body, tail = 0, len(pcm), len(pcm)
    if n > 0 and fade_in:
        parts.append(segment(pcm[:n], sample_rate).fade(from_gain=_SILENT_DB, start=0, duration=ms))
        head = n
    if n > 0 and fade_out:
        tail = len(pcm) - n
    parts.append(segment(pcm[head:tail], sample_rate))
    if tail < body:
        edge = segment(pcm[tail:], sample_rate)
        parts.append(edge.fade(to_gain=_SILENT_DB, start=0, duration=ms))
    parts.append(segment(np.zeros(pause_samples, dtype=np.int16), sample_rate))
    chunk = sum(parts[1:], parts[0])  # pydub's `+` joins without overlap
    out = np.frombuffer(chunk.raw_data, dtype=np.int16)
    if len(out) != len(pcm) + pause_samples:  # would shift every later word timing: never let it pass
        raise EngineError(
            f"joining a sentence gave {len(out)} samples, expected {len(pcm) + pause_samples} "
            f"(pydub {fade_ms} ms fades at {sample_rate} Hz)"
        )
    return out
