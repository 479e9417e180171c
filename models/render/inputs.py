"""Checks every renderer makes before its first frame."""

from __future__ import annotations

import numpy as np

from models.types import Speech
from models.vision.face import Portrait


def check_render_inputs(portrait: Portrait, speech: Speech) -> None:
    """ValueError naming the argument when the portrait or speech cannot be rendered."""
    image = np.asarray(portrait.image)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] != image.shape[1] or image.dtype != np.uint8:
        raise ValueError(
            f"portrait.image must be a square (size, size, 3) uint8 RGB array, got {image.shape}"
        )
    if np.asarray(portrait.landmarks).shape != (468, 2):
        raise ValueError(f"portrait.landmarks must have shape (468, 2), got {np.shape(portrait.landmarks)}")
    if speech.sample_rate <= 0:
        raise ValueError(f"speech.sample_rate must be positive, got {speech.sample_rate}")
