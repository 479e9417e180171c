"""The learned EFP (the paper's model): word-level emotion from audio frames and text, trained on clips.

    per word: pooled audio frames (models/efp/features.py) ─ linear ─┐
              MiniLM embedding of the word in its ±2-word window ─ linear ─┴─ + position
    ─> transformer encoder over the word sequence (the multimodal encoder) ─> linear + GELU
    ─> token-level classification head (the vocabulary's labels) and intensity head (sigmoid)

Loss (models/efp/train.py): per-word cross-entropy (the paper's eq. 2), class-weighted, plus intensity MSE
on words whose intensity is labelled, plus small auxiliary heads that see one modality each; their outputs
are reported in `CurvePoint.sources` so the inspector shows what audio alone and text alone said.

Normalisation: audio word vectors are standardised with the mean and standard deviation of the training
words, stored in the model; each vector also carries its utterance's level, spread and range, so
per-utterance contrast is available to the encoder. A "speaker" model (the flow's default) first
standardises every word against the other words of its speaker: in training, all of that speaker's clips;
when predicting, the narration itself, shrunk towards the training statistics so that a short narration
leans on them.

A trained model is one safetensors file: the tensors plus the JSON config in its metadata (no pickle).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kernel.errors import EngineError, InputError
from models.efp.features import POOLING_VERSION, FrameExtractor, build_extractor, pooled_dim, word_vectors
from models.identity import EngineIdentity, describe
from models.types import CurvePoint, EmotionCurve, EmotionPlan, Speech, Timings, word_spans
from models.vocabulary import Vocabulary, load_vocabulary, vocabulary_table

FORMAT = "emoflow-efp/1"
MODEL_FILE = "model.safetensors"
TEXT_DIM = 384  # all-MiniLM-L6-v2
TRAIN_HINT = (
    "train one with `python -m flows.train_efp CLIPSET_DIR --name NAME` and set EMOFLOW_EFP_MODEL=NAME "
    "(a model name or sha256 in the store, or a model file or folder)"
)


@dataclass(frozen=True)
class ModelConfig:
    labels: list[str]
    features: dict[str, Any]  # models.efp.features.extractor_spec of the frames it was trained on
    use_text: bool = True
    text_context: int = 2  # words either side in the text window
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    dropout: float = 0.2
    intensity_trained: bool = False  # False: no labelled intensities, intensity comes from confidence
    # "global": training-word statistics only. "speaker": first standardise every word against its
    # speaker's words (at prediction: the utterance's), shrunk towards the training statistics by
    # `prior_words` pseudo-words, so a short utterance leans on the prior
    normalise: str = "global"
    prior_words: float = 20.0
    extra: dict[str, Any] = field(default_factory=dict)  # training metadata, informational

    @property
    def audio_dim(self) -> int:
        return pooled_dim(int(self.features["dim"]))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class EFPNet(nn.Module):
    """Word sequence in, per-word label logits and intensity out."""

    # buffers (register_buffer), declared so they type as tensors
    prior_mean: torch.Tensor
    prior_std: torch.Tensor
    audio_mean: torch.Tensor
    audio_std: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d, k = config.d_model, len(config.labels)
        self.config = config
        self.register_buffer("prior_mean", torch.zeros(config.audio_dim))  # raw training-word statistics
        self.register_buffer("prior_std", torch.ones(config.audio_dim))
        self.register_buffer("audio_mean", torch.zeros(config.audio_dim))
        self.register_buffer("audio_std", torch.ones(config.audio_dim))
        self.audio_proj = nn.Linear(config.audio_dim, d)
        self.text_proj = nn.Linear(TEXT_DIM, d) if config.use_text else None
        self.input_drop = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(
            d, config.heads, dim_feedforward=2 * d, dropout=config.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.linear = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Dropout(config.dropout))
        self.classify = nn.Linear(d, k)
        self.intensity = nn.Linear(d, 1)
        self.audio_head = nn.Linear(d, k)
        self.text_head = nn.Linear(d, k) if config.use_text else None

    def forward(
        self, audio: torch.Tensor, text: torch.Tensor | None, mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """audio [B, W, A], text [B, W, 384] or None, mask [B, W] (True for real words)."""
        a = self.audio_proj((audio - self.audio_mean) / self.audio_std)
        x = a
        out: dict[str, torch.Tensor] = {"audio_logits": self.audio_head(a)}
        if self.text_proj is not None and self.text_head is not None:
            if text is None:
                raise InputError("this EFP model uses text features, but none were given")
            t = self.text_proj(text)
            out["text_logits"] = self.text_head(t)
            x = x + t
        x = self.input_drop(x + _positions(x.shape[1], x.shape[2], x.device))
        h = self.linear(self.encoder(x, src_key_padding_mask=~mask))
        out["logits"] = self.classify(h)
        out["intensity"] = torch.sigmoid(self.intensity(h)).squeeze(-1)
        return out


def _positions(n: int, d: int, device: torch.device) -> torch.Tensor:
    """Sinusoidal word-position encoding [n, d]: any sentence length, nothing to learn."""
    position = torch.arange(n, device=device, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    table = torch.zeros(n, d, device=device)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate[: d // 2])
    return table


@dataclass
class TrainedEFP:
    """One or more networks (an ensemble of seeds, whose probabilities are averaged) with their shared
    config and the hash of all of it (the model's identity in versions and caches)."""

    nets: list[EFPNet]
    config: ModelConfig
    content_hash: str

    @classmethod
    def wrap(cls, nets: list[EFPNet]) -> TrainedEFP:
        return cls(nets, nets[0].config, content_hash(nets))

    @property
    def net(self) -> EFPNet:
        """The first member; every member holds the same normalisation statistics."""
        return self.nets[0]

    def normalised(self, audio: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
        """Word vectors as the network expects them: for "speaker" models, standardised against
        `reference` (the speaker's word vectors; default: these words themselves)."""
        if self.config.normalise != "speaker":
            return np.asarray(audio, dtype=np.float32)
        return speaker_standardised(
            audio,
            audio if reference is None else reference,
            self.net.prior_mean.numpy(),
            self.net.prior_std.numpy(),
            self.config.prior_words,
        )

    @torch.inference_mode()
    def predict_words(
        self, audio: np.ndarray, text: np.ndarray | None, reference: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Probabilities for one clip's words: {"model", "audio"[, "text"]: [W, K], "intensity": [W]}."""
        a = torch.from_numpy(self.normalised(audio, reference))[None]
        t = torch.from_numpy(np.asarray(text, dtype=np.float32))[None] if text is not None else None
        mask = torch.ones(a.shape[:2], dtype=torch.bool)
        members: list[dict[str, np.ndarray]] = []
        for net in self.nets:
            net.eval()
            out = net(a, t if self.config.use_text else None, mask)
            probs = {
                "model": torch.softmax(out["logits"][0], -1).numpy(),
                "audio": torch.softmax(out["audio_logits"][0], -1).numpy(),
                "intensity": out["intensity"][0].numpy(),
            }
            if "text_logits" in out:
                probs["text"] = torch.softmax(out["text_logits"][0], -1).numpy()
            members.append(probs)
        return {key: np.mean([m[key] for m in members], axis=0) for key in members[0]}


def speaker_standardised(
    audio: np.ndarray,
    reference: np.ndarray,
    prior_mean: np.ndarray,
    prior_std: np.ndarray,
    prior_words: float,
) -> np.ndarray:
    """`audio` z-scored with the mean and variance of `reference`, each pooled with the prior's as if the
    prior were `prior_words` more words."""
    n, k = float(len(reference)), float(prior_words)
    m = reference.mean(axis=0) if n else prior_mean
    v = reference.var(axis=0) if n else prior_std**2
    mean = (n * m + k * prior_mean) / (n + k)
    var = (n * (v + (m - mean) ** 2) + k * (prior_std**2 + (prior_mean - mean) ** 2)) / (n + k)
    return ((audio - mean) / np.sqrt(np.clip(var, 1e-6, None))).astype(np.float32)


def content_hash(nets: list[EFPNet]) -> str:
    """sha256 over the config JSON and every tensor (name, dtype, shape, bytes) in name order."""
    digest = hashlib.sha256(nets[0].config.to_json().encode())
    for name, tensor in sorted(_tensors(nets).items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}".encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()


def _tensors(nets: list[EFPNet]) -> dict[str, torch.Tensor]:
    """Every member's tensors, named "m<i>.<name>"."""
    return {f"m{i}.{k}": v for i, net in enumerate(nets) for k, v in net.state_dict().items()}


def save_model(model: TrainedEFP, path: Path) -> Path:
    """One safetensors file; the config rides in its metadata. Written atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in _tensors(model.nets).items()}
    metadata = {
        "format": FORMAT,
        "config": model.config.to_json(),
        "members": str(len(model.nets)),
        "content_hash": model.content_hash,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    save_file(tensors, str(partial), metadata=metadata)
    partial.replace(path)
    return path


def load_model(path: Path) -> TrainedEFP:
    """A model from its safetensors file, or from a folder holding `model.safetensors`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise InputError(f"no EFP model at {path}; {TRAIN_HINT}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise InputError(f"{path} is not an emoflow EFP model (format {metadata.get('format')!r})")
        config = ModelConfig(**json.loads(metadata["config"]))
        tensors = load_file(str(path))
        nets = []
        for i in range(int(metadata["members"])):
            net = EFPNet(config)
            prefix = f"m{i}."
            net.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
            nets.append(net.eval())
        if not nets or len(tensors) != sum(len(n.state_dict()) for n in nets):
            raise ValueError("the file's tensors do not match its member count")
    except InputError:
        raise
    except Exception as exc:
        raise EngineError(f"cannot load the EFP model {path}: {exc}") from exc
    model = TrainedEFP.wrap(nets)
    if metadata.get("content_hash") not in (None, model.content_hash):
        raise EngineError(f"{path} is damaged: its tensors no longer match the hash it was saved with")
    return model


# ---- inputs -------------------------------------------------------------------------------------------


def text_windows(words: list[str], context: int) -> list[str]:
    """Each word with `context` words either side, as one string (the text branch's input)."""
    return [" ".join(words[max(0, i - context) : i + context + 1]) for i in range(len(words))]


def text_vectors(words: list[str], context: int) -> np.ndarray:
    """[W, 384] MiniLM embeddings of each word's window; repeated windows are embedded once."""
    from models.efp.text import embed

    windows = text_windows(words, context)
    unique = list(dict.fromkeys(windows))
    vectors = embed(unique)
    row = {w: i for i, w in enumerate(unique)}
    return vectors[[row[w] for w in windows]].reshape(len(windows), TEXT_DIM)


def word_inputs(
    extractor: FrameExtractor,
    samples: np.ndarray,
    sample_rate: int,
    spans: list[tuple[float, float]],
    words: list[str],
    use_text: bool,
    context: int = 2,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(audio vectors [W, A], text vectors [W, 384] or None) for one clip's words."""
    frames, times = extractor.frames(samples, sample_rate)
    audio = word_vectors(frames, times, spans)
    return audio, (text_vectors(words, context) if use_text else None)


# ---- the engine ---------------------------------------------------------------------------------------


class LearnedEFP:
    """The EFP stage engine for a trained model; `version` carries the model's content hash."""

    name = "learned"
    BASE_VERSION = "1"

    def __init__(self, model: TrainedEFP | Path | str | None = None, vocabulary: Vocabulary | None = None):
        if model is None:
            model = _model_path_from_settings()
        self.model = model if isinstance(model, TrainedEFP) else load_model(Path(model))
        self.vocabulary = vocabulary or load_vocabulary()
        missing = [label for label in self.model.config.labels if label not in self.vocabulary.labels]
        if missing:
            raise EngineError(
                f"the EFP model knows labels {missing} that the vocabulary lacks; retrain it ({TRAIN_HINT})"
            )
        self._extractor: FrameExtractor | None = None
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return f"{self.BASE_VERSION}+{self.model.content_hash[:16]}"

    @property
    def engine(self) -> str:
        return f"{self.name}@{self.version}"

    def identity(self) -> EngineIdentity:
        """The trained model (its content hash is in the version) and the intensity defaults it reads."""
        return describe(
            self,
            tables=[vocabulary_table(self.vocabulary, "neutral_label", "emotions.*.default_intensity")],
            packages=("torch", "librosa"),
        )

    def extractor(self) -> FrameExtractor:
        with self._lock:
            if self._extractor is None:
                spec = self.model.config.features
                self._extractor = build_extractor(spec["features"], spec.get("emotion2vec_dir"))
                if self._extractor.version != spec["version"] or spec.get("pooling") != POOLING_VERSION:
                    raise EngineError(
                        f"the EFP model was trained on {spec['version']} features, "
                        f"this machine gives {self._extractor.version}; retrain it or restore those weights"
                    )
            return self._extractor

    def predict(self, speech: Speech, timings: Timings, plan: EmotionPlan) -> EmotionCurve:
        labels = self.vocabulary.labels
        if not plan.words:
            return EmotionCurve(labels=labels, points=[], engine=self.engine)
        cfg = self.model.config
        spans = word_spans(timings, plan.words)
        audio, text = word_inputs(
            self.extractor(),
            speech.samples,
            speech.sample_rate,
            spans,
            [w.text for w in plan.words],
            cfg.use_text,
            cfg.text_context,
        )
        out = self.model.predict_words(audio, text)
        # the model's label order -> the vocabulary's; labels it never learned get probability 0
        columns = [cfg.labels.index(label) if label in cfg.labels else None for label in labels]

        def reorder(p: np.ndarray) -> np.ndarray:
            return np.array([p[c] if c is not None else 0.0 for c in columns])

        source_names = [name for name in ("audio", "text") if name in out]
        points: list[CurvePoint] = []
        for i, word in enumerate(plan.words):
            fused = reorder(out["model"][i])
            j = int(np.argmax(fused))
            points.append(
                CurvePoint(
                    index=word.index,
                    text=word.text,
                    start=spans[i][0],
                    end=spans[i][1],
                    label=labels[j],
                    intensity=self._intensity(labels[j], float(fused[j]), float(out["intensity"][i])),
                    distribution=_as_dict(labels, fused),
                    sources={
                        "model": _as_dict(labels, fused),
                        **{name: _as_dict(labels, reorder(out[name][i])) for name in source_names},
                    },
                    # the single-modality heads are diagnostics; the encoder's head alone decides
                    weights={"model": 1.0, **dict.fromkeys(source_names, 0.0)},
                )
            )
        return EmotionCurve(labels=labels, points=points, engine=self.engine)

    def _intensity(self, label: str, probability: float, predicted: float) -> float:
        if label == self.vocabulary.neutral:
            return 0.0  # neutral has no strength, matching the planner's convention
        if self.model.config.intensity_trained:
            return round(min(1.0, max(0.0, predicted)), 4)
        k = len(self.model.config.labels)
        confidence = max(0.0, (probability - 1.0 / k) / (1.0 - 1.0 / k))
        return round(self.vocabulary.emotions[label].default_intensity * confidence, 4)


def _model_path_from_settings() -> Path:
    from kernel.settings import get_settings

    ref = get_settings().efp_model
    if not ref:
        raise InputError(f"the learned EFP has no model; {TRAIN_HINT}")
    path = Path(ref).expanduser()
    if not path.exists():
        raise InputError(
            f"EMOFLOW_EFP_MODEL={ref!r} is not a model file or folder here; names and sha256s of models in "
            "the store are resolved by the feel stage (tasks/efp_model.py)"
        )
    return path


def _as_dict(labels: list[str], values: np.ndarray) -> dict[str, float]:
    return {label: float(v) for label, v in zip(labels, values, strict=True)}
