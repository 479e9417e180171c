"""The train-renderer flow on tiny Hallo weights: trains the adapter, registers it, exports its folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from flows.train_renderer import train_renderer
from models.render.diffusion import load_pipeline, write_tiny_weights
from models.render.diffusion.conditions import EmotionAdapter
from models.render.diffusion.training import apply_trained_weights, save_clip, trainable_parameters
from tasks.context import open_store
from tests.models.test_diffusion_training import make_clip


@pytest.mark.parametrize("emoflow_home", ["sqlite"], indirect=True)  # not about the database
def test_train_renderer_registers_weights_in_the_store(
    prefect_api: str, emoflow_home: Path, tmp_path: Path, one_thread: None
) -> None:
    base = tmp_path / "base"
    write_tiny_weights(base)
    clips = [str(save_clip(make_clip(3, label), tmp_path / f"clip{label}.npz")) for label in (1, 3)]
    export = tmp_path / "trained"

    result = train_renderer(str(base), clips, steps=4, learning_rate=1e-3, export_dir=str(export))

    assert len(result.losses) == 4 and all(np.isfinite(result.losses))
    store = open_store()
    ref = store.artifact(result.weights_sha256, kind="renderer-weights")
    assert ref.metadata["settings"]["steps"] == 4
    assert ref.metadata["clips"] == result.clip_sha256 and len(set(result.clip_sha256)) == 2
    assert len(ref.metadata["base_weights_sha256"]) == 64
    assert [store.artifact(s, kind="training-clip").sha256 for s in result.clip_sha256] == result.clip_sha256
    assert any(e.action == "renderer.train" for e in store.audit_events())

    # the registered tensors turn the base into the exported adapter; in place, the renderer reads it
    patched = load_pipeline(base)
    apply_trained_weights(patched, store.blob_path(ref.sha256))
    exported = EmotionAdapter.from_pretrained(export)
    for key, value in exported.state_dict().items():
        assert torch.equal(value, patched.emotion_adapter.state_dict()[key]), key
    (base / "emoflow").mkdir()
    export.rename(base / "emoflow" / "emotion_adapter")
    installed = load_pipeline(base)
    for key, value in trainable_parameters(patched).items():
        assert torch.equal(value, trainable_parameters(installed)[key]), key
