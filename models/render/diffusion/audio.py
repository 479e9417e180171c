"""Hallo's audio conditioning: wav2vec2 hidden states, one row per video frame, in 5-frame windows.

    windows, frames = hallo_audio_features(encoder, samples, sample_rate, fps, clip_frames=16)
    windows: [padded_frames, 5, layers, channels]    (12 layers x 768 channels for wav2vec2-base)

The steps are Hallo's (`AudioProcessor.preprocess`, its `Wav2VecModel` and `process_audio_emb` in
scripts/inference.py): normalise the clip to zero mean and unit variance, pad it with silence to a whole
number of clips, run the encoder's convolutional front end, stretch its 50 Hz frames linearly to exactly
one per video frame, then the feature projection and the transformer; every transformer layer's output
is kept. Hallo's released audio projection reads all 12 layers (its `wav2vec.features: all`); its other
mode, `features: last`, keeps only the final hidden state and does not fit those weights, so it is not
offered. Hallo's optional vocal separation (an MDX-Net model) is the caller's business: pass the vocals.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import resample_poly
from transformers import Wav2Vec2Model

from kernel.errors import EngineError, InputError

AUDIO_SAMPLE_RATE = 16_000  # wav2vec2's rate
WINDOW = 5  # audio frames per video frame: the frame and two either side
_MAX_FPS = 120
_NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor's variance floor


def audio_windows(features: torch.Tensor, width: int = WINDOW) -> torch.Tensor:
    """[T, ...] -> [T, width, ...]: for frame t the frames t - width//2 .. t + width//2.

    Indices past either end repeat the first or last frame, as Hallo's `process_audio_emb` does.
    """
    if width < 1 or width % 2 == 0:
        raise ValueError(f"window width must be a positive odd number, got {width}")
    if features.shape[0] == 0:
        raise ValueError("features have no frames")
    frames = features.shape[0]
    half = width // 2
    offsets = torch.arange(-half, half + 1, device=features.device)
    index = (torch.arange(frames, device=features.device)[:, None] + offsets[None, :]).clamp(0, frames - 1)
    return features[index]


def _whole(value: object) -> bool:
    """An integer (numpy's too), not a bool or a float that happens to be whole."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _check_audio(samples: np.ndarray, sample_rate: int, fps: int, clip_frames: int | None) -> None:
    if not isinstance(samples, np.ndarray) or samples.ndim != 1:
        shape = getattr(samples, "shape", type(samples).__name__)
        raise InputError(f"audio must be a mono 1-D sample array, got shape {shape}; mix channels down first")
    if not np.issubdtype(samples.dtype, np.floating):
        raise InputError(f"audio samples must be floats in [-1, 1], got dtype {samples.dtype}; convert first")
    if samples.size == 0:
        raise InputError("audio is empty: give at least a fraction of a second of speech")
    if not np.isfinite(samples).all():
        raise InputError("audio contains NaN or infinite samples; fix or re-decode the file")
    if not _whole(sample_rate) or sample_rate <= 0:
        raise InputError(f"sample rate must be a positive whole number of Hz, got {sample_rate!r}")
    if not _whole(fps) or not 1 <= fps <= _MAX_FPS:
        raise InputError(f"fps must be a whole number from 1 to {_MAX_FPS}, got {fps!r}")
    if clip_frames is not None and (not _whole(clip_frames) or clip_frames < 1):
        raise InputError(f"clip length must be a positive number of frames or None, got {clip_frames!r}")


def _min_samples(encoder: Wav2Vec2Model) -> int:
    """The fewest samples the conv front end turns into one frame (400, 25 ms, for wav2vec2-base)."""
    need = 1
    for kernel, stride in zip(
        reversed(encoder.config.conv_kernel), reversed(encoder.config.conv_stride), strict=True
    ):
        need = (need - 1) * stride + kernel
    return need


def _normalise(samples: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance over the clip, in float32 like Wav2Vec2FeatureExtractor(do_normalize=True)."""
    audio = samples.astype(np.float32)
    return (audio - audio.mean()) / np.sqrt(audio.var() + _NORM_EPS)


@torch.no_grad()
def hallo_audio_features(
    encoder: Wav2Vec2Model,
    samples: np.ndarray,
    sample_rate: int,
    fps: int,
    clip_frames: int | None = None,
    segment_seconds: float | None = None,
) -> tuple[torch.Tensor, int]:
    """(windows [padded_frames, 5, layers, channels] float32 on the encoder's device, frames of speech).

    `frames` is ceil(duration * fps); with `clip_frames` the features are padded with silence to the next
    multiple of it, so the windows cover whole clips and their first `frames` rows are the speech. The
    encoder runs in its own dtype and must be in eval mode (as `from_pretrained` returns it).

    `segment_seconds` (Hallo2: 60) encodes the speech in pieces of that length, each normalised and
    encoded on its own, as Hallo2's long-video inference does; None (Hallo) encodes it whole.
    """
    _check_audio(samples, sample_rate, fps, clip_frames)
    if encoder.training:
        raise EngineError("the wav2vec2 encoder is in training mode (dropout on); call encoder.eval() first")
    if segment_seconds is not None and not segment_seconds > 0:
        raise InputError(f"segment_seconds must be positive or None, got {segment_seconds!r}")
    if sample_rate != AUDIO_SAMPLE_RATE:
        # Hallo decodes with librosa at 16 kHz (soxr); this polyphase filter gives the same length and
        # differs only in its anti-alias filter's ripple and roll-off near 8 kHz.
        common = math.gcd(AUDIO_SAMPLE_RATE, sample_rate)
        samples = resample_poly(samples, AUDIO_SAMPLE_RATE // common, sample_rate // common)
    need = _min_samples(encoder)
    pieces = _pieces(samples, segment_seconds, need)
    states: list[torch.Tensor] = []
    frames = 0
    for number, piece in enumerate(pieces):
        audio = _normalise(piece)
        piece_frames = math.ceil(len(audio) / AUDIO_SAMPLE_RATE * fps)
        short = 0
        if clip_frames is not None and number == len(pieces) - 1:
            # Hallo pads after normalising, with a whole number of samples per missing frame; the last
            # piece takes the whole video's padding (Hallo2 skips it when that piece alone is whole)
            short = -(frames + piece_frames) % clip_frames
            audio = np.pad(audio, (0, short * (AUDIO_SAMPLE_RATE // fps)))
        if len(audio) < need:
            raise InputError(
                f"audio is too short: {len(audio)} samples at 16 kHz, the encoder needs at least {need} "
                f"({1000 * need / AUDIO_SAMPLE_RATE:.0f} ms)"
            )
        states.append(_layer_states(encoder, audio, piece_frames + short))
        frames += piece_frames
    return audio_windows(torch.cat(states)).float(), frames


def _pieces(samples: np.ndarray, segment_seconds: float | None, need: int) -> list[np.ndarray]:
    """The speech cut every `segment_seconds`; a last piece too short to encode joins the one before."""
    if segment_seconds is None:
        return [samples]
    step = max(1, round(segment_seconds * AUDIO_SAMPLE_RATE))
    pieces = [samples[start : start + step] for start in range(0, len(samples), step)]
    if len(pieces) > 1 and len(pieces[-1]) < need:
        pieces[-2:] = [np.concatenate(pieces[-2:])]
    return pieces


def _layer_states(encoder: Wav2Vec2Model, audio: np.ndarray, frames: int) -> torch.Tensor:
    """Every transformer layer's output, one row per video frame: [frames, layers, channels]."""
    weight = next(encoder.parameters())
    values = torch.from_numpy(audio).to(device=weight.device, dtype=weight.dtype)[None]
    conv = encoder.feature_extractor(values)  # [1, channels, 50 Hz frames]
    # stretched to one row per video frame; float32 because half-precision linear interpolation is not
    # implemented on every device
    conv = F.interpolate(conv.float(), size=frames, mode="linear", align_corners=True).to(weight.dtype)
    hidden = encoder.feature_projection(conv.transpose(1, 2))[0]

    # The encoder's own hidden-state output changed between transformers 4 and 5 (returned by the
    # encoder, then recorded by the top model only), so each layer's output is taken with a hook. The
    # last one is replaced by the encoder's result, which for the stable-layer-norm variant is normed,
    # as Hallo's last hidden state is.
    layers: list[torch.Tensor] = []

    def keep(_module: torch.nn.Module, _args: object, output: object) -> None:
        layers.append(output[0] if isinstance(output, tuple) else output)  # type: ignore[arg-type]

    hooks = [layer.register_forward_hook(keep) for layer in encoder.encoder.layers]
    try:
        last = encoder.encoder(hidden)[0]
    finally:
        for hook in hooks:
            hook.remove()
    if len(layers) != len(encoder.encoder.layers):
        raise EngineError(f"the wav2vec2 encoder ran {len(layers)} of {len(encoder.encoder.layers)} layers")
    return torch.stack([*layers[:-1], last], dim=2)[0]
