"""Training the learned EFP from word-labelled clips (models/efp/dataset.py).

    clips ─ features per word (cached on disk) ─ split by speaker ─ AdamW, class-weighted per-word CE
    ─ early stopping on the held-out speakers' word accuracy ─ refit on every clip for the best epoch count

Deterministic on CPU for a given seed: torch and numpy are seeded, batches are shuffled by a seeded
generator, and no nondeterministic kernel is involved at these sizes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kernel.errors import InputError
from models.efp.dataset import LabelledClip
from models.efp.features import POOLING_VERSION, FrameExtractor, extractor_spec
from models.efp.learned import EFPNet, ModelConfig, TrainedEFP, word_inputs

Log = Callable[[str], None]


@dataclass
class ClipInputs:
    """One clip, ready for the network: per-word vectors, label indices and intensities (NaN: unknown)."""

    clip_id: str
    speaker: str
    audio: np.ndarray  # [W, A]
    text: np.ndarray | None  # [W, 384]
    labels: np.ndarray  # [W] int64
    intensity: np.ndarray  # [W] float32


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 150
    patience: int = 30
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    d_model: int = 32
    heads: int = 4
    layers: int = 1
    dropout: float = 0.5
    use_text: bool = True
    text_context: int = 2
    aux_weight: float = 0.3  # single-modality heads
    intensity_weight: float = 1.0
    noise: float = 0.5  # Gaussian noise on the standardised audio vectors, in standard deviations
    normalise: str = "global"  # or "speaker": see models.efp.learned.ModelConfig
    prior_words: float = 20.0
    ensemble: int = 3  # members trained with seeds seed, seed + 1, ...; their probabilities are averaged
    val_share: float = 0.2  # of clips, taken as whole speakers where the clips name them
    val_speakers: tuple[str, ...] = ()  # explicit validation speakers (overrides val_share)
    refit: bool = True  # after early stopping, train again on every clip for the best epoch count
    seed: int = 0


@dataclass
class TrainResult:
    model: TrainedEFP
    best_epochs: list[int]  # per ensemble member
    val_accuracy: float | None  # mean over members, each at its best epoch
    val_speakers: list[str]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "best_epochs": self.best_epochs,
            "val_word_accuracy": None if self.val_accuracy is None else round(self.val_accuracy, 4),
            "val_speakers": self.val_speakers,
            "members": len(self.best_epochs),
            "seconds": round(self.seconds, 3),
        }


def check_clips(clips: list[LabelledClip], labels: list[str]) -> None:
    """InputError for an empty set, a clip without words, unknown labels or impossible spans."""
    if not clips:
        raise InputError("the clip set holds no clips to train on")
    for clip in clips:
        if not clip.words:
            raise InputError(f"clip {clip.clip_id!r} has no words; every training clip needs labelled words")
        for word in clip.words:
            if word.label not in labels:
                raise InputError(
                    f"clip {clip.clip_id!r}: unknown label {word.label!r} for {word.text!r}; "
                    f"labels are: {', '.join(labels)}"
                )
            if not (np.isfinite(word.start) and np.isfinite(word.end)) or word.end < word.start:
                raise InputError(f"clip {clip.clip_id!r}: word {word.text!r} has an impossible span")
            if word.intensity is not None and not 0.0 <= word.intensity <= 1.0:
                raise InputError(f"clip {clip.clip_id!r}: intensity of {word.text!r} is outside 0..1")


def clip_inputs(
    clips: list[LabelledClip],
    folder: Path,
    extractor: FrameExtractor,
    labels: list[str],
    use_text: bool,
    text_context: int = 2,
    cache_dir: Path | None = None,
    log: Log | None = None,
) -> list[ClipInputs]:
    """Features for every clip; with `cache_dir`, each clip's vectors are kept there (npz, no pickle)."""
    import soundfile as sf

    check_clips(clips, labels)
    out: list[ClipInputs] = []
    for n, clip in enumerate(clips, start=1):
        audio_path = folder / clip.audio
        spans = [(w.start, w.end) for w in clip.words]
        texts = [w.text for w in clip.words]
        cached = None
        if cache_dir is not None:
            key = hashlib.sha256(
                json.dumps(
                    [
                        extractor.version,
                        POOLING_VERSION,
                        _file_sha256(audio_path),
                        spans,
                        texts,
                        use_text,
                        text_context,
                    ]
                ).encode()
            ).hexdigest()[:24]
            cached = cache_dir / f"{clip.clip_id}-{key}.npz"
        if cached is not None and cached.is_file():
            with np.load(cached, allow_pickle=False) as data:
                audio = data["audio"]
                text = data["text"] if use_text else None
        else:
            try:
                samples, rate = sf.read(audio_path, dtype="float32", always_2d=False)
            except Exception as exc:
                raise InputError(f"clip {clip.clip_id!r}: cannot read {audio_path}: {exc}") from None
            audio, text = word_inputs(extractor, samples, int(rate), spans, texts, use_text, text_context)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                partial = cached.with_name(f".{cached.stem}.part.npz")
                np.savez(partial, audio=audio, text=text if text is not None else np.zeros((0, 0)))
                partial.replace(cached)
        out.append(
            ClipInputs(
                clip_id=clip.clip_id,
                speaker=clip.speaker,
                audio=audio.astype(np.float32),
                text=None if text is None else text.astype(np.float32),
                labels=np.array([labels.index(w.label) for w in clip.words], dtype=np.int64),
                intensity=np.array(
                    [np.nan if w.intensity is None else w.intensity for w in clip.words], dtype=np.float32
                ),
            )
        )
        if log is not None and (n % 50 == 0 or n == len(clips)):
            log(f"features: {n}/{len(clips)} clips")
    return out


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- training --------------------------------------------------------------------------------------


@dataclass
class _Batch:
    audio: torch.Tensor
    text: torch.Tensor | None
    mask: torch.Tensor
    labels: torch.Tensor
    intensity: torch.Tensor


def _collate(items: list[ClipInputs], use_text: bool) -> _Batch:
    n, w = len(items), max(len(c.labels) for c in items)
    a_dim = items[0].audio.shape[1]
    audio = np.zeros((n, w, a_dim), dtype=np.float32)
    text = np.zeros((n, w, 384), dtype=np.float32) if use_text else None
    mask = np.zeros((n, w), dtype=bool)
    labels = np.zeros((n, w), dtype=np.int64)
    intensity = np.full((n, w), np.nan, dtype=np.float32)
    for i, c in enumerate(items):
        k = len(c.labels)
        audio[i, :k], mask[i, :k], labels[i, :k], intensity[i, :k] = c.audio, True, c.labels, c.intensity
        if text is not None:
            if c.text is None:
                raise InputError(f"clip {c.clip_id!r} has no text features")
            text[i, :k] = c.text
    return _Batch(
        torch.from_numpy(audio),
        None if text is None else torch.from_numpy(text),
        torch.from_numpy(mask),
        torch.from_numpy(labels),
        torch.from_numpy(intensity),
    )


def split_by_speaker(clips: list[ClipInputs], config: TrainConfig) -> tuple[list[int], list[int], list[str]]:
    """(train indices, validation indices, validation speakers). Whole speakers are held out where the
    clips name at least two; otherwise a seeded share of the clips."""
    speakers = sorted({c.speaker for c in clips})
    rng = np.random.default_rng(config.seed)
    if config.val_speakers:
        unknown = [s for s in config.val_speakers if s not in speakers]
        if unknown:
            raise InputError(f"validation speakers {unknown} are not in the clip set ({speakers})")
        held = list(config.val_speakers)
    elif len(speakers) >= 2 and "" not in speakers:
        held = []
        for s in rng.permutation(speakers):
            if len(held) + 1 >= len(speakers):
                break
            held.append(str(s))
            if sum(c.speaker in held for c in clips) >= config.val_share * len(clips):
                break
    else:
        order = rng.permutation(len(clips))
        n_val = min(len(clips) - 1, max(1, round(config.val_share * len(clips)))) if len(clips) > 1 else 0
        val = sorted(int(i) for i in order[:n_val])
        return [i for i in range(len(clips)) if i not in set(val)], val, []
    val = [i for i, c in enumerate(clips) if c.speaker in held]
    return [i for i in range(len(clips)) if i not in set(val)], val, sorted(held)


def _new_net(clips: list[ClipInputs], labels: list[str], spec: dict[str, Any], config: TrainConfig) -> EFPNet:
    intensity_known = any(np.isfinite(c.intensity).any() for c in clips)
    model_config = ModelConfig(
        labels=list(labels),
        features=spec,
        use_text=config.use_text,
        text_context=config.text_context,
        d_model=config.d_model,
        heads=config.heads,
        layers=config.layers,
        dropout=config.dropout,
        intensity_trained=bool(intensity_known),
        normalise=config.normalise,
        prior_words=config.prior_words,
        extra={"train": json.loads(json.dumps(asdict(config)))},  # as it reads back from the file
    )
    net = EFPNet(model_config)
    raw = np.concatenate([c.audio for c in clips])
    net.prior_mean.copy_(torch.from_numpy(raw.mean(axis=0)))
    net.prior_std.copy_(torch.from_numpy(np.clip(raw.std(axis=0), 1e-3, None)))
    stacked = np.concatenate([c.audio for c in _normalised(TrainedEFP([net], model_config, ""), clips)])
    net.audio_mean.copy_(torch.from_numpy(stacked.mean(axis=0)))
    net.audio_std.copy_(torch.from_numpy(np.clip(stacked.std(axis=0), 1e-3, None)))
    return net


def _normalised(model: TrainedEFP, clips: list[ClipInputs]) -> list[ClipInputs]:
    """Clips with word vectors as the network takes them (per speaker for "speaker" models; a clip
    without a speaker name is its own speaker)."""
    if model.config.normalise != "speaker":
        return clips
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        groups.setdefault(c.speaker or f"\0{i}", []).append(i)
    out = list(clips)
    for members in groups.values():
        reference = np.concatenate([clips[i].audio for i in members])
        for i in members:
            out[i] = replace(clips[i], audio=model.normalised(clips[i].audio, reference))
    return out


def _class_weights(clips: list[ClipInputs], k: int) -> torch.Tensor:
    """Inverse word frequency, mean 1 over the labels that occur; absent labels weigh 0."""
    counts = np.bincount(np.concatenate([c.labels for c in clips]), minlength=k).astype(np.float64)
    present = counts > 0
    weights = np.zeros(k)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def _loss(
    net: EFPNet, batch: _Batch, weights: torch.Tensor, config: TrainConfig, train: bool
) -> torch.Tensor:
    audio = batch.audio
    if train and config.noise > 0:
        audio = audio + config.noise * net.audio_std * torch.randn_like(audio)
    out = net(audio, batch.text, batch.mask)
    m = batch.mask
    y = batch.labels[m]
    loss = F.cross_entropy(out["logits"][m], y, weight=weights)
    aux = [F.cross_entropy(out["audio_logits"][m], y, weight=weights)]
    if "text_logits" in out:
        aux.append(F.cross_entropy(out["text_logits"][m], y, weight=weights))
    loss = loss + config.aux_weight * sum(aux)
    known = m & torch.isfinite(batch.intensity)
    if known.any():
        loss = loss + config.intensity_weight * F.mse_loss(out["intensity"][known], batch.intensity[known])
    return loss


def _fit(
    net: EFPNet,
    train: list[ClipInputs],
    val: list[ClipInputs],
    config: TrainConfig,
    epochs: int,
    early_stop: bool,
    log: Log | None,
) -> tuple[EFPNet, int, float | None, list[dict[str, float]]]:
    weights = _class_weights(train, len(net.config.labels))
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    val_batch = _collate(val, config.use_text) if val else None
    best: tuple[float, float, int, dict[str, torch.Tensor]] | None = None
    history: list[dict[str, float]] = []
    for epoch in range(1, epochs + 1):
        net.train()
        order = rng.permutation(len(train))
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            batch = _collate([train[i] for i in order[start : start + config.batch_size]], config.use_text)
            optimizer.zero_grad()
            loss = _loss(net, batch, weights, config, train=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            total += float(loss.detach()) * len(batch.audio)
        record = {"epoch": float(epoch), "train_loss": total / len(train)}
        if val_batch is not None:
            net.eval()
            with torch.no_grad():
                out = net(val_batch.audio, val_batch.text, val_batch.mask)
                m = val_batch.mask
                predicted = out["logits"][m].argmax(-1)
                accuracy = float((predicted == val_batch.labels[m]).float().mean())
                val_loss = float(F.cross_entropy(out["logits"][m], val_batch.labels[m]))
            record.update(val_accuracy=accuracy, val_loss=val_loss)
            if best is None or (accuracy, -val_loss) > (best[0], best[1]):
                best = (accuracy, -val_loss, epoch, copy.deepcopy(net.state_dict()))
        history.append(record)
        if log is not None and (epoch % 10 == 0 or epoch == epochs):
            log("epoch " + " ".join(f"{k}={v:.4g}" for k, v in record.items()))
        if early_stop and best is not None and epoch - best[2] >= config.patience:
            break
    if best is None:
        return net, len(history), None, history
    net.load_state_dict(best[3])
    return net, best[2], best[0], history


def train_efp(
    clips: list[ClipInputs],
    labels: list[str],
    extractor: FrameExtractor,
    config: TrainConfig | None = None,
    log: Log | None = None,
) -> TrainResult:
    """Train on `clips`: early stopping on held-out speakers, then (config.refit) every clip again."""
    config = config or TrainConfig()
    if not clips:
        raise InputError("no clips to train on")
    started = time.perf_counter()
    spec = extractor_spec(extractor)
    train_idx, val_idx, val_speakers = split_by_speaker(clips, config)
    train = [clips[i] for i in train_idx]
    val = [clips[i] for i in val_idx]
    nets: list[EFPNet] = []
    best_epochs: list[int] = []
    accuracies: list[float] = []
    history: list[dict[str, float]] = []
    for member in range(max(1, config.ensemble)):
        seeded = replace(config, seed=config.seed + member)
        torch.manual_seed(seeded.seed)
        net = _new_net(train, labels, spec, config)
        ready = TrainedEFP([net], net.config, "")
        net, best_epoch, val_accuracy, member_history = _fit(
            net, _normalised(ready, train), _normalised(ready, val), seeded, config.epochs, True, log
        )
        if config.refit and val:
            torch.manual_seed(seeded.seed)
            net = _new_net(clips, labels, spec, config)
            ready = TrainedEFP([net], net.config, "")
            net, _, _, _ = _fit(net, _normalised(ready, clips), [], seeded, best_epoch, False, log)
        nets.append(net.eval())
        best_epochs.append(best_epoch)
        if val_accuracy is not None:
            accuracies.append(val_accuracy)
        history += [{"member": float(member), **record} for record in member_history]
    return TrainResult(
        model=TrainedEFP.wrap(nets),
        best_epochs=best_epochs,
        val_accuracy=float(np.mean(accuracies)) if accuracies else None,
        val_speakers=val_speakers,
        history=history,
        seconds=time.perf_counter() - started,
    )


def predict_clips(model: TrainedEFP, clips: list[ClipInputs]) -> list[np.ndarray]:
    """Per clip, the predicted label index of every word ("speaker" models: each speaker's clips
    together are the reference)."""
    references: dict[str, np.ndarray] = {}
    out = []
    for clip in clips:
        reference = None
        if model.config.normalise == "speaker" and clip.speaker:
            if clip.speaker not in references:
                references[clip.speaker] = np.concatenate(
                    [c.audio for c in clips if c.speaker == clip.speaker]
                )
            reference = references[clip.speaker]
        probs = model.predict_words(clip.audio, clip.text if model.config.use_text else None, reference)
        out.append(probs["model"].argmax(axis=1))
    return out
