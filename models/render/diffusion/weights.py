"""Hallo's released files: which ones the renderer reads, checking them, and loading them strictly.

A weights folder is Hallo's `pretrained_models/` as its README lays it out (the download list is in
docs/diffusion.md). The renderer reads:

    hallo/net.pth (or hallo2/net.pth)        every tensor of both UNets, the face locator, the projections
    stable-diffusion-v1-5/unet/config.json   the UNet architecture
    sd-vae-ft-mse/                           the VAE (config + weights)
    wav2vec/wav2vec2-base-960h/              the audio encoder (config + weights)
    face_analysis/models/                    insightface's models for the identity embedding
    emoflow/emotion_adapter/                 optional: a trained emotion adapter (flows/train_renderer.py)

Hallo's own loader also reads SD-1.5's UNet weights and the AnimateDiff motion module, then overwrites
every one of those tensors from net.pth; they change nothing, so they are not read here.

An optional `emoflow.json` overrides architecture settings (the tests' tiny weights use it); Hallo's
release needs none.
"""

from __future__ import annotations

import importlib.util
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers.models import AutoencoderKL, UNet2DConditionModel  # not `diffusers`: mypy sees dummies there
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from safetensors import safe_open
from torch import nn
from transformers import Wav2Vec2Model

from kernel.errors import EngineError
from models.render.diffusion.conditions import (
    DEFAULT_LABELS,
    AudioProjection,
    EmotionAdapter,
    FaceLocator,
    ImageProjection,
)
from models.render.diffusion.identity import face_analysis_files
from models.render.diffusion.pipeline import HalloPipeline, hallo_scheduler_config
from models.render.diffusion.reference import strip_output_head
from models.render.diffusion.unet import HALLO_UNET_KWARGS, DenoisingUNet

HF_REPO = "fudan-generative-ai/hallo"  # the weights; the code is github.com/fudan-generative-vision/hallo
NET = "hallo/net.pth"


@dataclass(frozen=True)
class Release:
    """A published checkpoint with Hallo's tensor layout, and the inference settings it was made for."""

    name: str
    net: str  # path in the weights folder
    motion_mask_rate: float | None  # Hallo2 blanks this share of the motion frames' pixels off the face
    audio_segment_seconds: float | None  # Hallo2 encodes long speech in pieces of this length


RELEASES = {
    "hallo": Release("hallo", NET, None, None),
    # fudan-generative-vision/hallo2, configs/inference/long.yaml: the same 2,656 tensors (compared in
    # tests/fixtures/hallo/hallo2_tensors.json), masked motion frames, audio cut every 60 s
    "hallo2": Release("hallo2", "hallo2/net.pth", 0.25, 60.0),
}
UNET_CONFIG = "stable-diffusion-v1-5/unet/config.json"
VAE_DIR = "sd-vae-ft-mse"
WAV2VEC_DIR = "wav2vec/wav2vec2-base-960h"
FACE_ANALYSIS_DIR = "face_analysis"
ADAPTER_DIR = "emoflow/emotion_adapter"
OVERRIDES = "emoflow.json"
NOT_READ = {  # in Hallo's download, read by its loader, but every tensor in them is replaced by net.pth
    "stable-diffusion-v1-5/unet/diffusion_pytorch_model.safetensors": "both UNets' tensors are in net.pth",
    "motion_module/mm_sd_v15_v2.ckpt": "the motion modules' tensors are in net.pth",
}
# runwayml/stable-diffusion-v1-5 unet/config.json: the architecture of Hallo's base_model_path (public)
SD15_UNET_CONFIG: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.6.0",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
NET_PARTS = ("reference_unet", "denoising_unet", "face_locator", "imageproj", "audioproj")
_WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.bin",
                 "pytorch_model.bin")  # fmt: skip


class HalloNet(nn.Module):
    """The five modules of Hallo's `Net`, under its attribute names: net.pth's keys are their paths."""

    def __init__(
        self,
        reference_unet: UNet2DConditionModel,
        denoising_unet: DenoisingUNet,
        face_locator: FaceLocator,
        imageproj: ImageProjection,
        audioproj: AudioProjection,
    ) -> None:
        super().__init__()
        self.reference_unet = reference_unet
        self.denoising_unet = denoising_unet
        self.face_locator = face_locator
        self.imageproj = imageproj
        self.audioproj = audioproj


@dataclass
class FileCheck:
    path: str
    status: str  # "ok", "missing", "unreadable", "mismatch", "not read"
    detail: str = ""


@dataclass
class WeightsReport:
    """What `emoflow weights check` prints: one line per file, and the tensor accounting of net.pth."""

    root: Path
    files: list[FileCheck] = field(default_factory=list)
    expected_tensors: int = 0
    loadable_tensors: int = 0
    per_part: dict[str, tuple[int, int]] = field(default_factory=dict)  # part -> (loadable, expected)

    @property
    def ok(self) -> bool:
        return all(check.status in ("ok", "not read") for check in self.files)

    def problems(self) -> list[str]:
        return [
            f"{check.path}: {check.status}: {check.detail}"
            for check in self.files
            if check.status not in ("ok", "not read")
        ]


def overrides(root: Path) -> dict[str, Any]:
    path = root / OVERRIDES
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EngineError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise EngineError(f"{path}: expected a JSON object")
    return data


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise EngineError(f"missing {path}: download it from {_source(path)}")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EngineError(
            f"{path} is not valid JSON ({exc}); download it again from {_source(path)}"
        ) from exc
    if not isinstance(data, dict):
        raise EngineError(f"{path}: expected a JSON object")
    return data


def _source(path: Path) -> str:
    """Where a file of Hallo's layout comes from (the Hugging Face repo holds all of pretrained_models/)."""
    return f"huggingface.co/{HF_REPO} (pretrained_models/{path.parent.name}/{path.name} or its folder)"


@dataclass(frozen=True)
class NetConfig:
    """The constructor arguments of net.pth's five modules and of the emotion adapter."""

    sd_unet: dict[str, Any]
    unet_additional: dict[str, Any]
    face_locator: dict[str, Any]
    image_proj: dict[str, Any]
    audio_proj: dict[str, Any]
    emotion_adapter: dict[str, Any]


def release(root: Path) -> Release:
    """Which checkpoint the folder holds: emoflow.json's "checkpoint" if set, else the one net.pth present."""
    chosen = overrides(root).get("checkpoint")
    if chosen is not None:
        if chosen not in RELEASES:
            raise EngineError(
                f"{root / OVERRIDES}: checkpoint must be one of {sorted(RELEASES)}, got {chosen!r}"
            )
        return RELEASES[chosen]
    present = [item for item in RELEASES.values() if (root / item.net).is_file()]
    if len(present) > 1:
        names = ", ".join(item.net for item in present)
        raise EngineError(
            f'{root} holds {names}: say which to use in {OVERRIDES}, e.g. {{"checkpoint": "hallo2"}}'
        )
    return present[0] if present else RELEASES["hallo"]


def net_config(root: Path) -> NetConfig:
    """Hallo's inference arguments (scripts/inference.py), derived from the folder's configs."""
    sd_unet = _read_json(root / UNET_CONFIG)
    wav2vec = _read_json(root / WAV2VEC_DIR / "config.json")
    extra = overrides(root)
    cross = int(sd_unet.get("cross_attention_dim", 768))
    audio_proj = {
        "seq_len": 5,
        "blocks": int(wav2vec.get("num_hidden_layers", 12)),
        "channels": int(wav2vec.get("hidden_size", 768)),
        "intermediate_dim": 512,
        "output_dim": 768,
        "context_tokens": 32,
    } | extra.get("audio_proj", {})
    return NetConfig(
        sd_unet=sd_unet,
        unet_additional=HALLO_UNET_KWARGS | extra.get("unet_additional_kwargs", {}),
        face_locator={"conditioning_embedding_channels": int(sd_unet["block_out_channels"][0])}
        | extra.get("face_locator", {}),
        image_proj={"cross_attention_dim": cross, "clip_embeddings_dim": 512, "clip_extra_context_tokens": 4}
        | extra.get("image_proj", {}),
        audio_proj=audio_proj,
        emotion_adapter={
            "labels": list(DEFAULT_LABELS),
            "tokens": audio_proj["context_tokens"],
            "dim": audio_proj["output_dim"],
        }
        | extra.get("emotion_adapter", {}),
    )


def build_net(config: NetConfig, device: str | torch.device = "cpu") -> HalloNet:
    """Hallo's Net from its configs; on the meta device nothing is allocated (checks, assign-loading)."""
    sd_kwargs = {key: value for key, value in config.sd_unet.items() if not key.startswith("_")}
    with torch.device(device):
        reference = strip_output_head(UNet2DConditionModel.from_config(sd_kwargs))
        denoising = DenoisingUNet.from_sd_config(config.sd_unet, **config.unet_additional)
        return HalloNet(
            reference,
            denoising,
            FaceLocator(**config.face_locator),
            ImageProjection(**config.image_proj),
            AudioProjection(**config.audio_proj),
        )


def expected_tensors(config: NetConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor net.pth must hold for this configuration."""
    return {name: tuple(tensor.shape) for name, tensor in build_net(config, "meta").state_dict().items()}


def read_net(path: Path, mmap: bool = True) -> Mapping[str, torch.Tensor]:
    """net.pth's state dict; memory-mapped, so shapes are known without reading multi-GB of data."""
    if not path.is_file():
        raise EngineError(
            f"missing {path}: download hallo/net.pth from huggingface.co/{HF_REPO} "
            "(or Hallo2's hallo2/net.pth from huggingface.co/fudan-generative-ai/hallo2)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EngineError(
            f"{path} cannot be read ({reason}); it is truncated or not Hallo's net.pth: "
            f"download it again from huggingface.co/{HF_REPO}"
        ) from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EngineError(f"{path} is not a state dict of tensors (Hallo's net.pth is one)")
    return state


def match_tensors(
    expected: Mapping[str, tuple[int, ...]], found: Mapping[str, torch.Tensor], source: Path
) -> None:
    """Strict: the same names and shapes, or an EngineError naming the first difference."""
    for name, shape in expected.items():
        if name not in found:
            missing = sum(1 for key in expected if key not in found)
            raise EngineError(
                f"{source} lacks {missing} of the {len(expected)} tensors this configuration needs, "
                f"first {name} {list(shape)}; is it Hallo's net.pth for SD-1.5?"
            )
        if tuple(found[name].shape) != shape:
            raise EngineError(
                f"{source}: tensor {name} has shape {list(found[name].shape)}, this configuration expects "
                f"{list(shape)}: the checkpoint is of another configuration (not Hallo on SD-1.5?)"
            )
    extra = [name for name in found if name not in expected]
    if extra:
        raise EngineError(
            f"{source} holds {len(extra)} tensors this configuration does not have, first {extra[0]}; "
            "is it a checkpoint of another model?"
        )


def _check_safetensors_folder(folder: Path, relative: str) -> FileCheck:
    config = folder / "config.json"
    if not config.is_file():
        return FileCheck(f"{relative}/config.json", "missing", f"download {relative}/ from the model's repo")
    weights = next((folder / name for name in _WEIGHT_NAMES if (folder / name).is_file()), None)
    if weights is None:
        return FileCheck(
            f"{relative}/model weights", "missing", f"none of {', '.join(_WEIGHT_NAMES)} in {folder}"
        )
    try:
        if weights.suffix == ".safetensors":
            with safe_open(str(weights), framework="pt") as handle:
                count = len(list(handle.keys()))
        else:
            count = len(torch.load(weights, map_location="cpu", weights_only=True, mmap=True))
    except Exception as exc:  # any reader failure means the same thing: re-download
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return FileCheck(f"{relative}/{weights.name}", "unreadable", f"{reason}; download it again")
    return FileCheck(f"{relative}/{weights.name}", "ok", f"{count} tensors")


def _check_identity(root: Path) -> list[FileCheck]:
    """The face-analysis models and InsightFace itself, unless emoflow.json turns identity off."""
    if overrides(root).get("identity") == "none":
        return [
            FileCheck(FACE_ANALYSIS_DIR, "not read", "emoflow.json: identity none (Hallo's no-face zeros)")
        ]
    checks = []
    try:
        files = face_analysis_files(root / FACE_ANALYSIS_DIR)
        checks.append(FileCheck(f"{FACE_ANALYSIS_DIR}/models", "ok", ", ".join(path.name for path in files)))
    except EngineError as exc:
        checks.append(FileCheck(f"{FACE_ANALYSIS_DIR}/models", "missing", str(exc)))
    if importlib.util.find_spec("insightface") is None:
        checks.append(FileCheck("insightface (package)", "missing", "pip install insightface onnxruntime"))
    return checks


def check_weights(root: str | Path) -> WeightsReport:
    """Every file the renderer reads, checked without a GPU and without loading tensor data."""
    root = Path(root).expanduser()
    report = WeightsReport(root=root)
    if not root.is_dir():
        report.files.append(FileCheck(str(root), "missing", "no such folder"))
        return report
    try:
        config = net_config(root)
        expected = expected_tensors(config)
        report.expected_tensors = len(expected)
        report.files.append(FileCheck(UNET_CONFIG, "ok", "SD-1.5 UNet architecture"))
    except EngineError as exc:
        report.files.append(
            FileCheck(UNET_CONFIG + " / " + WAV2VEC_DIR + "/config.json", "missing", str(exc))
        )
        expected = {}
    try:
        net = release(root).net
    except EngineError as exc:
        report.files.append(FileCheck(OVERRIDES, "mismatch", str(exc)))
        net = NET
    try:
        found = read_net(root / net)
    except EngineError as exc:
        status = "missing" if not (root / net).is_file() else "unreadable"
        report.files.append(FileCheck(net, status, str(exc)))
        found = {}
    if found and expected:
        loadable = {
            name for name, shape in expected.items() if name in found and tuple(found[name].shape) == shape
        }
        report.loadable_tensors = len(loadable)
        for part in NET_PARTS:
            names = [name for name in expected if name.startswith(part + ".")]
            report.per_part[part] = (sum(name in loadable for name in names), len(names))
        try:
            match_tensors(expected, found, root / net)
            report.files.append(
                FileCheck(net, "ok", f"all {len(expected)} tensors, names and shapes as expected")
            )
        except EngineError as exc:
            report.files.append(FileCheck(net, "mismatch", str(exc)))
    report.files.append(_check_safetensors_folder(root / VAE_DIR, VAE_DIR))
    report.files.append(_check_safetensors_folder(root / WAV2VEC_DIR, WAV2VEC_DIR))
    report.files.extend(_check_identity(root))
    for relative, reason in NOT_READ.items():
        present = "present" if (root / relative).is_file() else "absent"
        report.files.append(FileCheck(relative, "not read", f"{present}; {reason}"))
    return report


def load_pipeline(
    root: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> HalloPipeline:
    """Hallo's model from a weights folder, every net.pth tensor loaded strictly; EngineError if not."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise EngineError(f"diffusion weights: no folder at {root} (the layout is in docs/diffusion.md)")
    config = net_config(root)
    net = build_net(config, "meta")
    source = root / release(root).net
    state = read_net(source, mmap=True)
    match_tensors({k: tuple(v.shape) for k, v in net.state_dict().items()}, state, source)
    net.load_state_dict(state, strict=True, assign=True)  # meta tensors replaced by the file's
    left = [name for name, tensor in net.state_dict().items() if tensor.is_meta]
    if left:
        raise EngineError(f"{source}: {len(left)} tensors were not loaded, first {left[0]}")
    for check in (
        _check_safetensors_folder(root / VAE_DIR, VAE_DIR),
        _check_safetensors_folder(root / WAV2VEC_DIR, WAV2VEC_DIR),
    ):
        if check.status != "ok":
            raise EngineError(f"diffusion weights: {check.path}: {check.status}: {check.detail}")
    vae = AutoencoderKL.from_pretrained(str(root / VAE_DIR))
    audio_encoder = Wav2Vec2Model.from_pretrained(str(root / WAV2VEC_DIR))
    adapter_dir = root / ADAPTER_DIR
    adapter = (
        EmotionAdapter.from_pretrained(str(adapter_dir))
        if adapter_dir.is_dir()
        else EmotionAdapter(**config.emotion_adapter)
    )
    pipeline = HalloPipeline(
        vae=vae,
        reference_unet=net.reference_unet,
        denoising_unet=net.denoising_unet,
        face_locator=net.face_locator,
        image_proj=net.imageproj,
        audio_proj=net.audioproj,
        emotion_adapter=adapter,
        audio_encoder=audio_encoder.eval(),
        scheduler=DDIMScheduler(**hallo_scheduler_config()),
    )
    pipeline.to(torch.device(device))
    if dtype != torch.float32:  # diffusers warns on every dtype move, even a no-op one
        pipeline.to(dtype=dtype)
    return pipeline
