"""What every renderer shares: its input checks and how many frames a clip has."""

from __future__ import annotations

import math

import numpy as np

from kernel.errors import InputError
from models.types import Speech
from models.vision.face import Portrait


def check_render_inputs(portrait: Portrait, speech: Speech) -> None:
    """InputError naming the argument when the portrait or speech cannot be rendered."""
    check_portrait(portrait)
    if speech.sample_rate <= 0:
        raise InputError(f"speech.sample_rate must be positive, got {speech.sample_rate}")


def check_portrait(portrait: Portrait) -> None:
    image = np.asarray(portrait.image)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] != image.shape[1] or image.dtype != np.uint8:
        raise InputError(
            f"portrait.image must be a square (size, size, 3) uint8 RGB array, got {image.shape}"
        )
    if np.asarray(portrait.landmarks).shape != (468, 2):
        raise InputError(f"portrait.landmarks must have shape (468, 2), got {np.shape(portrait.landmarks)}")


def frame_count(duration_s: float, fps: float) -> int:
    """Frames that cover `duration_s` of speech at `fps`."""
    # round first so 1.96 s * 25 fps = 49.000000000000001 gives 49 frames, not 50
    return max(0, math.ceil(round(float(duration_s) * fps, 6)))
