"""Train the diffusion renderer's emotion adapter and register the result in the store.

The training itself is models/render/diffusion/training.py; this task adds the store: every input clip
is committed as a "training-clip" artifact, the trained parameters as a "renderer-weights" artifact (a
safetensors file of only the trained tensors) whose metadata names the base weights, clips, settings and
losses, registered in the store's model registry (kind "renderer") under a name, and an audit event
records who trained what.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from kernel.errors import InputError
from stores.records import NewArtifact
from stores.store import SYSTEM_ACTOR
from tasks.context import open_store

WEIGHTS_KIND = "renderer-weights"  # the artifact kind
REGISTRY_KIND = "renderer"  # the kind of its registered name
DEFAULT_NAME = "renderer"  # unnamed trainings: the name then means "the newest trained weights"
CLIP_KIND = "training-clip"
SAFETENSORS = "application/vnd.safetensors"


@task(name="train-renderer", tags=["train"], cache_policy=NO_CACHE)
def train_renderer_weights(
    weights: str,
    clips: list[str],
    steps: int,
    learning_rate: float = 1e-5,
    seed: int = 0,
    device: str = "cpu",
    dtype: str | None = None,
    motion_frames: int = 2,
    condition_drop: float = 0.05,
    export_dir: str | None = None,
    name: str = DEFAULT_NAME,
    actor: str = SYSTEM_ACTOR,
) -> dict[str, Any]:
    """Train from `clips` (.npz files, see training.save_clip) on the pipeline at `weights`.

    Returns {"weights": ArtifactRef of the trained tensors, "clips": [ArtifactRef], "losses": [...],
    "export_dir": str | None}. With `export_dir`, the trained adapter is also saved there as a folder;
    the renderer uses it when it sits at <weights>/emoflow/emotion_adapter. The weights are registered
    as `name`.
    """
    # imported here so importing the flow module does not pull in torch/diffusers
    from models.render.diffusion import hash_weights_dir, load_pipeline
    from models.render.diffusion.engine import resolve_dtype
    from models.render.diffusion.training import TrainConfig, save_trained_weights, train

    if not clips:
        raise InputError("train-renderer needs at least one clip (.npz)")
    if not name.strip():
        raise InputError("give the trained weights a name (--name)")
    missing = [c for c in clips if not Path(c).is_file()]
    if missing:
        raise InputError(f"training clips not found: {missing}")
    store = open_store()
    logger = get_run_logger()
    clip_refs = [
        store.put_artifact(
            NewArtifact(name=Path(c).name, kind=CLIP_KIND, media_type="application/x-npz", path=Path(c))
        )
        for c in clips
    ]
    base_sha256 = hash_weights_dir(weights) if Path(weights).is_dir() else None
    pipeline = load_pipeline(weights, device=device, dtype=resolve_dtype(dtype))
    config = TrainConfig(
        steps=steps,
        learning_rate=learning_rate,
        seed=seed,
        motion_frames=motion_frames,
        condition_drop=condition_drop,
    )
    every = max(1, steps // 20)

    def progress(step: int, total: int, loss: float) -> None:
        if step % every == 0 or step == total:
            logger.info("train-renderer: step %d/%d loss %.5f", step, total, loss)

    result = train(pipeline, clips, config, progress)  # read lazily: a dataset need not fit in memory
    settings = dict(vars(config))
    with tempfile.TemporaryDirectory(prefix="emoflow-train-") as tmp:
        path = save_trained_weights(
            pipeline, Path(tmp) / "renderer-weights.safetensors", base=str(base_sha256)
        )
        ref = store.put_artifact(
            NewArtifact(
                name="renderer-weights",
                kind=WEIGHTS_KIND,
                media_type=SAFETENSORS,
                path=path,
                metadata={
                    "base_weights": str(weights),
                    "base_weights_sha256": base_sha256,
                    "clips": [r.sha256 for r in clip_refs],
                    "settings": settings,
                    "losses": [round(v, 6) for v in result.losses],
                    "trainable_parameters": result.trainable,
                    "frozen_parameters": result.frozen,
                    "seconds": round(result.seconds, 3),
                    "apply_with": "models.render.diffusion.training.apply_trained_weights",
                },
            )
        )
    if export_dir is not None:
        pipeline.emotion_adapter.save_pretrained(export_dir, safe_serialization=True)
    store.register_model(
        REGISTRY_KIND,
        name,
        ref,
        metadata={"base_weights_sha256": base_sha256, "steps": steps, "export_dir": export_dir},
        actor=actor,
    )
    store.record_event(
        "renderer.train",
        actor,
        details={
            "name": name,
            "weights": ref.sha256,
            "base_weights_sha256": base_sha256,
            "steps": steps,
            "export_dir": export_dir,
        },
    )
    return {"weights": ref, "clips": clip_refs, "losses": result.losses, "export_dir": export_dir}
