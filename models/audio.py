"""WAV in and out of memory, so speech can travel as an artifact."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from emoflow.errors import InputError


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(samples, dtype=np.float32), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the sample rate; stereo is averaged."""
    try:
        samples, sample_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise InputError(f"not a readable audio file: {exc}") from exc
    return samples.mean(axis=1), int(sample_rate)
