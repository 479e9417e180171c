"""Train the learned EFP from a clip set and register the model in the store.

The training itself is models/efp/train.py; this task adds the store: the model is committed as an
"efp-model" artifact (one safetensors file: tensors + JSON config) whose metadata names the model, its
features, the clip set's hash, the label set and the validation metrics; it is registered under its
name in the store's model registry (kind "efp", where tasks/efp_model.py finds models by name), and an
"efp.train" audit event records who trained what under which name.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from kernel.errors import InputError
from kernel.settings import get_settings
from stores.records import NewArtifact
from stores.store import SYSTEM_ACTOR
from tasks.context import open_store
from tasks.efp_model import MODEL_KIND, REGISTRY_KIND, TRAIN_ACTION

SAFETENSORS = "application/vnd.safetensors"


@task(name="train-efp", tags=["train"], cache_policy=NO_CACHE)
def train_efp_model(
    clip_set: str,
    name: str,
    features: str = "embedded",
    emotion2vec_dir: str | None = None,
    use_text: bool = True,
    epochs: int = 150,
    seed: int = 0,
    normalise: str = "speaker",
    actor: str = SYSTEM_ACTOR,
) -> dict[str, Any]:
    """Returns {"model": ArtifactRef, "metrics": {...}, "clip_set_sha256": str}."""
    # imported here so importing the flow module does not pull in torch
    from models.efp.dataset import read_clip_set
    from models.efp.features import build_extractor
    from models.efp.learned import save_model
    from models.efp.train import TrainConfig, clip_inputs, train_efp
    from models.vocabulary import load_vocabulary

    if normalise not in ("global", "speaker"):
        raise InputError(f"normalise must be global or speaker, not {normalise!r}")
    if not name.strip():
        raise InputError("give the model a name (--name), so `feel` can find it")
    folder = Path(clip_set).expanduser().resolve()
    clips = read_clip_set(folder)  # InputError for a missing, malformed or empty clip set
    logger = get_run_logger()
    labels = load_vocabulary().labels
    extractor = build_extractor(features, emotion2vec_dir)
    cache = get_settings().home_dir / "cache" / "efp-features"
    inputs = clip_inputs(clips, folder, extractor, labels, use_text, cache_dir=cache, log=logger.info)
    config = replace(TrainConfig(), use_text=use_text, epochs=epochs, seed=seed, normalise=normalise)
    result = train_efp(inputs, labels, extractor, config, log=logger.info)
    store = open_store()
    clip_set_sha256 = hash_clip_set(folder, [c.audio for c in clips])
    metrics = result.summary()
    with tempfile.TemporaryDirectory(prefix="emoflow-train-efp-") as tmp:
        path = save_model(result.model, Path(tmp) / "efp-model.safetensors")
        ref = store.put_artifact(
            NewArtifact(
                name="efp-model",
                kind=MODEL_KIND,
                media_type=SAFETENSORS,
                path=path,
                metadata={
                    "name": name,
                    "features": result.model.config.features,
                    "text": use_text,
                    "normalise": normalise,
                    "clip_set": str(folder),
                    "clip_set_sha256": clip_set_sha256,
                    "clips": len(clips),
                    "words": sum(len(c.words) for c in clips),
                    "speakers": sorted({c.speaker for c in clips}),
                    "labels": result.model.config.labels,
                    "metrics": metrics,
                    "content_hash": result.model.content_hash,
                    "load_with": "models.efp.learned.load_model",
                },
            )
        )
    store.register_model(
        REGISTRY_KIND,
        name,
        ref,
        metadata={"clip_set_sha256": clip_set_sha256, "features": features, "metrics": metrics},
        actor=actor,
    )
    store.record_event(
        TRAIN_ACTION,
        actor,
        details={"name": name, "model": ref.sha256, "clip_set_sha256": clip_set_sha256, "metrics": metrics},
    )
    logger.info("train-efp: %s -> efp-model %s (%s)", name, ref.sha256[:12], metrics)
    return {"model": ref, "metrics": metrics, "clip_set_sha256": clip_set_sha256}


def hash_clip_set(folder: Path, audio: list[str]) -> str:
    """sha256 over the manifest and every audio file it names, in manifest order."""
    from models.efp.dataset import MANIFEST

    digest = hashlib.sha256((folder / MANIFEST).read_bytes())
    for relative in audio:
        digest.update(hashlib.sha256((folder / relative).read_bytes()).digest())
    return digest.hexdigest()
