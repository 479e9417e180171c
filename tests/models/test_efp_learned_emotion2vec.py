"""emotion2vec features through the real loading code: funasr's Emotion2vec class built from a TINY config
with random weights, saved as a funasr-style folder (config.yaml + model.pt) and loaded back. No real
checkpoint is involved (none may be downloaded here); this checks the code path, shapes and frame rate."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from kernel.errors import EngineError, InputError
from models.efp.dataset import read_clip_set
from models.efp.features import Emotion2vecFeatures, build_extractor, pooled_dim, word_vectors
from models.efp.learned import LearnedEFP, save_model
from models.efp.train import TrainConfig, clip_inputs, train_efp
from models.vocabulary import load_vocabulary
from tests.models.test_efp_learned import make_clip_set

EMBED_DIM = 24


def tiny_conf() -> dict:
    """The emotion2vec_plus_base config's structure with few layers and small dims (same 320x stride)."""
    audio = {
        "type": "AUDIO",
        "prenet_depth": 1,
        "prenet_layerdrop": 0.0,
        "prenet_dropout": 0.0,
        "start_drop_path_rate": 0.0,
        "end_drop_path_rate": 0.0,
        "num_extra_tokens": 10,
        "init_extra_token_zero": True,
        "mask_noise_std": 0.01,
        "mask_prob_min": None,
        "inverse_mask": False,
        "mask_prob": 0.5,
        "mask_prob_adjust": 0.05,
        "keep_masked_pct": 0.0,
        "mask_length": 5,
        "add_masks": False,
        "remove_masks": False,
        "mask_dropout": 0.0,
        "encoder_zero_mask": True,
        "mask_channel_prob": 0.0,
        "mask_channel_length": 64,
        "ema_local_encoder": False,
        "local_grad_mult": 1.0,
        "use_alibi_encoder": True,
        "alibi_scale": 1.0,
        "learned_alibi": False,
        "alibi_max_pos": None,
        "learned_alibi_scale": True,
        "learned_alibi_scale_per_head": True,
        "learned_alibi_scale_per_layer": False,
        "num_alibi_heads": 2,
        "model_depth": 2,
        "decoder": None,
        "extractor_mode": "layer_norm",
        "feature_encoder_spec": "[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16,2,2)] + [(16,2,2)]",
        "conv_pos_width": 15,
        "conv_pos_groups": 4,
        "conv_pos_depth": 1,
        "conv_pos_pre_ln": False,
    }
    return {
        "loss_beta": 0.0,
        "loss_scale": None,
        "depth": 2,
        "start_drop_path_rate": 0.0,
        "end_drop_path_rate": 0.0,
        "num_heads": 2,
        "norm_eps": 1e-5,
        "norm_affine": True,
        "encoder_dropout": 0.1,
        "post_mlp_drop": 0.1,
        "attention_dropout": 0.1,
        "activation_dropout": 0.0,
        "dropout_input": 0.0,
        "layerdrop": 0.0,
        "embed_dim": EMBED_DIM,
        "mlp_ratio": 2.0,
        "layer_norm_first": False,
        "average_top_k_layers": 2,
        "end_of_block_targets": False,
        "clone_batch": 1,
        "normalize": True,
        "modalities": {"audio": audio},
    }


@pytest.fixture(scope="module")
def tiny_emotion2vec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A funasr-style model folder with random weights, as a checkpoint download would look."""
    from models.efp.features import load_emotion2vec

    folder = tmp_path_factory.mktemp("emotion2vec")
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": "Emotion2vec", "model_conf": tiny_conf()}))
    # funasr prints an ffmpeg notice on import and pydub warns; neither matters here
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from funasr.models.emotion2vec.model import Emotion2vec

    torch.manual_seed(0)
    model = Emotion2vec(model_conf=tiny_conf(), vocab_size=-1)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}  # as multi-GPU checkpoints name them
    state["proj.weight"] = torch.zeros(9, EMBED_DIM)  # the classifier the features do not use
    torch.save({"model": state}, folder / "model.pt")
    loaded, _, _ = load_emotion2vec(folder)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    return folder


def test_tiny_emotion2vec_gives_frames_at_50_hz(tiny_emotion2vec: Path, one_thread: None) -> None:
    extractor = build_extractor("emotion2vec", tiny_emotion2vec)
    assert isinstance(extractor, Emotion2vecFeatures) and extractor.dim == EMBED_DIM
    audio = (0.1 * np.random.default_rng(0).standard_normal(22050)).astype(np.float32)  # 1 s at 22.05 kHz
    frames, times = extractor.frames(audio, 22050)
    assert frames.shape[1] == EMBED_DIM and 49 <= frames.shape[0] <= 50
    assert np.isfinite(frames).all() and np.allclose(np.diff(times), 0.02)
    again, _ = extractor.frames(audio, 22050)
    assert np.array_equal(frames, again)  # eval mode: no dropout, no masking
    assert word_vectors(frames, times, [(0.0, 0.5)]).shape == (1, pooled_dim(EMBED_DIM))
    assert extractor.version.startswith("emotion2vec-")


def test_a_model_trained_on_emotion2vec_frames_predicts(tiny_emotion2vec: Path, tmp_path, one_thread) -> None:
    folder = make_clip_set(tmp_path / "clips", per_label=1, speakers=("s1", "s2"))
    labels = load_vocabulary().labels
    extractor = build_extractor("emotion2vec", tiny_emotion2vec)
    inputs = clip_inputs(read_clip_set(folder), folder, extractor, labels, use_text=False)
    config = TrainConfig(epochs=2, use_text=False, d_model=16, layers=1)
    model = train_efp(inputs, labels, extractor, config).model
    assert model.config.features["features"] == "emotion2vec"
    engine = LearnedEFP(save_model(model, tmp_path / "efp.safetensors"))
    assert engine.extractor() is extractor  # the model finds its emotion2vec folder again


def test_missing_or_mismatched_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="emotion2vec_plus_base"):
        build_extractor("emotion2vec", tmp_path / "nowhere")
    with pytest.raises(InputError, match="need a model folder"):
        build_extractor("emotion2vec", None)
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": "Emotion2vec", "model_conf": tiny_conf()}))
    with pytest.raises(InputError, match=r"no model\.pt"):
        Emotion2vecFeatures(folder)
    torch.save({"model": {"blocks.0.attn.qkv.weight": torch.zeros(3, 3)}}, folder / "model.pt")
    with pytest.raises(EngineError, match="does not fit"):
        Emotion2vecFeatures(folder)
