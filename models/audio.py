"""Reading speech artifacts back into samples."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from kernel.errors import InputError


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the sample rate; stereo is averaged."""
    try:
        samples, sample_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise InputError(f"not a readable audio file: {exc}") from exc
    return samples.mean(axis=1), int(sample_rate)
