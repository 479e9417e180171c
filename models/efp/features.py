"""Frame-level audio features for the learned EFP, and their pooling into one vector per word.

Two extractors share one small interface (`frames(samples, sample_rate) -> (frames [T, D], times [T])`,
50 frames a second, `times` the centre of each frame in seconds):

- `EmbeddedFeatures`: no weights. At 16 kHz with a 20 ms hop: 40 log-mel bands, F0 (librosa YIN, in
  semitones re 100 Hz, interpolated through unvoiced frames) with a voicing flag and its delta, RMS energy
  in dB with its delta, and spectral voice-quality cues (centroid, bandwidth, roll-off, flatness,
  zero-crossing rate, alpha ratio = energy above 1 kHz over below). Values are raw: normalisation is the
  model's (statistics of its training words; see models/efp/learned.py).
- `Emotion2vecFeatures`: funasr's `Emotion2vec` model class (the paper's audio encoder, e.g.
  `iic/emotion2vec_plus_base`: 768-d at 50 Hz) loaded from a local folder holding `config.yaml` and
  `model.pt` (or `model.safetensors`); nothing is downloaded at run time.

`word_vectors` pools the frames inside each word's span (mean, standard deviation and max) and appends
the word's log duration and the mean, standard deviation and 10th/90th percentiles of all speech frames of
the clip, so a word is judged both on its own and against its utterance.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import threading
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kernel.errors import EngineError, InputError

FRAME_RATE = 50.0  # frames per second, emotion2vec's rate; the embedded extractor matches it
SAMPLE_RATE = 16_000  # both extractors work at 16 kHz
HOP = int(SAMPLE_RATE / FRAME_RATE)
POOLS = ("mean", "std", "max")  # of the frames inside a word
CONTEXT_POOLS = ("mean", "std", "p10", "p90")  # of all speech frames of the clip
POOLING_VERSION = "2"  # changes whenever word_vectors does: cached and trained vectors must match


class FrameExtractor(Protocol):
    name: str
    dim: int

    @property
    def version(self) -> str: ...

    def frames(self, samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]: ...


def to_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float32 at 16 kHz; InputError for empty or non-finite audio."""
    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if audio.size == 0:
        raise InputError("cannot extract features from empty audio")
    if not np.isfinite(audio).all():
        raise InputError("audio contains NaN or infinite samples")
    if sample_rate != SAMPLE_RATE:
        import librosa

        audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=SAMPLE_RATE).astype(np.float32)
    return audio


class EmbeddedFeatures:
    """Log-mel + pitch + energy + voice-quality frames at 50 Hz (no model weights)."""

    name = "embedded"
    VERSION = "1"
    N_MELS = 40
    N_FFT = 512
    WIN = 400  # 25 ms
    FMIN, FMAX = 60.0, 500.0  # F0 search range, Hz
    SILENCE_DB = 35.0  # frames this far below the clip's loudest are unvoiced
    NAMES = (
        *[f"mel{i}" for i in range(N_MELS)],
        "f0_st",
        "voiced",
        "d_f0",
        "energy_db",
        "d_energy",
        "centroid",
        "bandwidth",
        "rolloff",
        "flatness",
        "zcr",
        "alpha_ratio",
    )
    dim = len(NAMES)

    @property
    def version(self) -> str:
        return f"{self.name}-{self.VERSION}"

    def frames(self, samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        import librosa

        y = to_16k(samples, sample_rate)
        if len(y) < self.N_FFT:
            y = np.pad(y, (0, self.N_FFT - len(y)))
        power = (
            np.abs(librosa.stft(y, n_fft=self.N_FFT, hop_length=HOP, win_length=self.WIN, center=True)) ** 2
        )
        mel = librosa.feature.melspectrogram(S=power, sr=SAMPLE_RATE, n_mels=self.N_MELS, fmax=8000.0)
        log_mel = np.log(mel + 1e-8)
        n = power.shape[1]
        rms = np.sqrt(np.mean(power, axis=0) / self.N_FFT + 1e-12)
        energy_db = 20 * np.log10(rms + 1e-6)
        f0 = librosa.yin(
            y, fmin=self.FMIN, fmax=self.FMAX, sr=SAMPLE_RATE, frame_length=1024, hop_length=HOP, center=True
        )[:n]
        zcr = librosa.feature.zero_crossing_rate(y, frame_length=self.WIN, hop_length=HOP, center=True)[0][:n]
        loud = energy_db > energy_db.max() - self.SILENCE_DB
        in_range = (f0 > self.FMIN * 1.05) & (f0 < self.FMAX * 0.95)
        voiced = loud & in_range & (zcr < 0.2)
        semitones = 12 * np.log2(np.clip(f0, 1.0, None) / 100.0)
        if voiced.any():  # unvoiced frames carry the pitch line through, flagged by `voiced`
            idx = np.flatnonzero(voiced)
            semitones = np.interp(np.arange(n), idx, semitones[idx])
        else:
            semitones = np.zeros(n)
        freqs = librosa.fft_frequencies(sr=SAMPLE_RATE, n_fft=self.N_FFT)
        centroid = librosa.feature.spectral_centroid(S=np.sqrt(power), freq=freqs)[0]
        bandwidth = librosa.feature.spectral_bandwidth(S=np.sqrt(power), freq=freqs)[0]
        rolloff = librosa.feature.spectral_rolloff(S=np.sqrt(power), freq=freqs)[0]
        flatness = librosa.feature.spectral_flatness(S=np.sqrt(power))[0]
        high = power[freqs >= 1000].sum(axis=0)
        low = power[freqs < 1000].sum(axis=0)
        alpha = 10 * np.log10((high + 1e-10) / (low + 1e-10))
        columns = [
            semitones,
            voiced.astype(float),
            np.gradient(semitones) if n > 1 else np.zeros(n),
            energy_db,
            np.gradient(energy_db) if n > 1 else np.zeros(n),
            np.log(centroid + 1.0),
            np.log(bandwidth + 1.0),
            np.log(rolloff + 1.0),
            np.log(flatness + 1e-6),
            zcr,
            alpha,
        ]
        out = np.concatenate([log_mel.T, np.stack(columns, axis=1)], axis=1).astype(np.float32)
        return out, np.arange(n, dtype=np.float64) / FRAME_RATE


# ---- emotion2vec -------------------------------------------------------------------------------------

EMOTION2VEC_HELP = (
    "download iic/emotion2vec_plus_base (config.yaml and model.pt) from ModelScope "
    "(modelscope.cn/models/iic/emotion2vec_plus_base) or Hugging Face (emotion2vec/emotion2vec_plus_base) "
    "into a folder and pass that folder"
)
# checkpoint entries that are not part of the feature encoder: the classifier and training-only parts
_UNUSED_PREFIXES = ("proj.", "_ema", "ema.", "modality_encoders.AUDIO.decoder.")


class Emotion2vecFeatures:
    """Frame features from funasr's Emotion2vec (the last block's output, extra tokens removed)."""

    name = "emotion2vec"

    def __init__(self, folder: Path | str, device: str = "cpu") -> None:
        self.folder = Path(folder).expanduser()
        self.device = device
        self.model, self.config, self.checkpoint_sha256 = load_emotion2vec(self.folder, device)
        self.dim = int(self.config["embed_dim"])
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return f"{self.name}-{self.checkpoint_sha256[:16]}"

    def frames(self, samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        import torch
        import torch.nn.functional as F

        y = to_16k(samples, sample_rate)
        if len(y) < 2 * HOP:  # the conv stack needs a little audio to make one frame
            y = np.pad(y, (0, 2 * HOP - len(y)))
        source = torch.from_numpy(y).to(self.device)
        if self.config.get("normalize", False):
            source = F.layer_norm(source, source.shape)
        with self._lock, torch.inference_mode():
            out = self.model.extract_features(source.view(1, -1), padding_mask=None)
        frames = out["x"][0].float().cpu().numpy()
        # conv frame i covers samples [i*320, i*320 + 400): its centre is 12.5 ms after i/50 s
        times = np.arange(len(frames), dtype=np.float64) / FRAME_RATE + 0.0125
        return frames.astype(np.float32), times


def load_emotion2vec(folder: Path, device: str = "cpu") -> tuple[Any, dict[str, Any], str]:
    """(model in eval mode, its model_conf, checkpoint sha256) from a funasr-style model folder.

    The folder holds `config.yaml` (funasr's: `model: Emotion2vec` and `model_conf`) and the weights as
    `model.safetensors` or `model.pt` (read with torch.load(weights_only=True): tensors only, no code).
    """
    import yaml

    config_path = folder / "config.yaml"
    if not folder.is_dir() or not config_path.is_file():
        raise InputError(f"emotion2vec folder {folder} has no config.yaml; {EMOTION2VEC_HELP}")
    weights = next((folder / n for n in ("model.safetensors", "model.pt") if (folder / n).is_file()), None)
    if weights is None:
        raise InputError(
            f"emotion2vec folder {folder} has no model.pt or model.safetensors; {EMOTION2VEC_HELP}"
        )
    try:
        document = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        model_conf = dict(document["model_conf"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{config_path} is not a funasr emotion2vec config: {exc}") from None
    if document.get("model", "Emotion2vec") != "Emotion2vec":
        raise InputError(f"{config_path} describes a {document.get('model')!r} model, not Emotion2vec")
    # funasr prints an ffmpeg notice on import; keep the CLI's output clean
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydub's "no ffmpeg" warning: funasr never decodes files here
        try:
            from funasr.models.emotion2vec.model import Emotion2vec
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EngineError(f"emotion2vec features need funasr ({exc}); run `make install`") from exc
    model = Emotion2vec(model_conf=model_conf, vocab_size=-1)
    state = _read_state(weights)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise EngineError(
            f"{weights} does not fit {config_path}: missing {missing[:5]} ({len(missing)} in all)"
        )
    unexpected = [k for k in state if k not in expected and not k.startswith(_UNUSED_PREFIXES)]
    if unexpected:
        raise EngineError(f"{weights} does not fit {config_path}: unexpected {unexpected[:5]}")
    wrong = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        raise EngineError(f"{weights} does not fit {config_path}: shapes differ for {wrong[:5]}")
    model.load_state_dict({k: state[k] for k in expected}, strict=True)
    model.eval().to(device)
    return model, model_conf, _sha256_file(weights)


def _read_state(path: Path) -> dict[str, Any]:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EngineError(f"cannot read {path} as a tensors-only checkpoint: {exc}") from exc
    # funasr checkpoints nest the tensors under one of these keys
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
    if not isinstance(raw, dict):
        raise EngineError(f"{path} holds no state dict")
    return {k.removeprefix("module."): v for k, v in raw.items() if hasattr(v, "shape")}


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_EXTRACTORS: dict[tuple[str, str], FrameExtractor] = {}
_EXTRACTORS_LOCK = threading.Lock()


def build_extractor(features: str, emotion2vec_dir: str | Path | None = None) -> FrameExtractor:
    """One shared extractor per (kind, folder): emotion2vec loads its weights once per process."""
    if features not in ("embedded", "emotion2vec"):
        raise InputError(f"unknown EFP features {features!r}; choose embedded or emotion2vec")
    if features == "emotion2vec" and not emotion2vec_dir:
        raise InputError(f"emotion2vec features need a model folder; {EMOTION2VEC_HELP}")
    key = (features, str(Path(emotion2vec_dir).expanduser().resolve()) if emotion2vec_dir else "")
    with _EXTRACTORS_LOCK:
        if key not in _EXTRACTORS:
            _EXTRACTORS[key] = EmbeddedFeatures() if features == "embedded" else Emotion2vecFeatures(key[1])
        return _EXTRACTORS[key]


# ---- pooling -----------------------------------------------------------------------------------------


def pooled_dim(frame_dim: int) -> int:
    """Length of one `word_vectors` row for frames of `frame_dim`."""
    return len(POOLS) * frame_dim + 1 + len(CONTEXT_POOLS) * frame_dim


def word_vectors(frames: np.ndarray, times: np.ndarray, spans: list[tuple[float, float]]) -> np.ndarray:
    """[words, pooled_dim] from frames [T, D] at `times`, one row per (start, end) span in seconds.

    A span with no frame centre inside it (zero length, or past the audio) takes its nearest frame.
    """
    if frames.ndim != 2 or len(frames) != len(times) or len(frames) == 0:
        raise InputError("word pooling needs a non-empty [frames, dim] array with one time per frame")
    rows: list[np.ndarray] = []
    picks: list[np.ndarray] = []
    for start, end in spans:
        inside = np.flatnonzero((times >= start) & (times < end))
        if inside.size == 0:
            inside = np.array([int(np.argmin(np.abs(times - 0.5 * (start + end))))])
        picks.append(inside)
    speech = frames[np.unique(np.concatenate(picks))] if picks else frames
    # the utterance's level, spread and range: what tells an angry clip from a sad one of one speaker
    low, high = np.percentile(speech, [10, 90], axis=0)
    context = np.concatenate([speech.mean(axis=0), speech.std(axis=0), low, high])
    for (start, end), inside in zip(spans, picks, strict=True):
        chunk = frames[inside]
        pooled = [chunk.mean(axis=0), chunk.std(axis=0), chunk.max(axis=0)]
        duration = np.array([np.log(max(end - start, 0.01))])
        rows.append(np.concatenate([*pooled, duration, context]))
    if not rows:
        return np.zeros((0, pooled_dim(frames.shape[1])), dtype=np.float32)
    return np.stack(rows).astype(np.float32)


def extractor_spec(extractor: FrameExtractor) -> dict[str, Any]:
    """What a trained model records about its features (and checks again when it is loaded)."""
    spec: dict[str, Any] = {
        "features": extractor.name,
        "version": extractor.version,
        "dim": extractor.dim,
        "pooling": POOLING_VERSION,
    }
    if isinstance(extractor, Emotion2vecFeatures):
        spec["emotion2vec_dir"] = str(extractor.folder.resolve())
    return json.loads(json.dumps(spec))
