"""Initialise an EmoTalkPipeline from Hallo's published checkpoint (hallo/net.pth), where layouts agree.

Hallo saves one `Net` module: `reference_unet.*`, `denoising_unet.*`, `face_locator.*`, `imageproj.*`,
`audioproj.*` (layout read from fudan-generative-vision/hallo, MIT; no code taken from it).

    Hallo                                   here
    reference_unet.<k>                      reference_net.<k>          (both diffusers 2D UNets)
    denoising_unet.<k>  (spatial layers)    denoising_unet.unet.<k>    (its 3D convs are 2D-shaped)
    denoising_unet.*.motion_modules.*       not converted: our TemporalAttention is a different module
    denoising_unet.*.audio_modules.*        not converted: our masked hierarchy lives in attn2 with
                                            shared projections, Hallo's in separate blocks
    audioproj.proj1/proj2/proj3/norm        audio_projection.net.0/net.2/net.4/norm
    face_locator.conv_in/blocks.N/conv_out  face_locator.conv_in/blocks.N/conv_out
    imageproj.*                             not converted: no face-identity encoder here

Hallo's spatial attn2 attended to face-identity tokens; here it attends to the fused audio-emotion
tokens, so those weights are a starting point for fine-tuning, not a trained model. The VAE
(sd-vae-ft-mse) and wav2vec2 (wav2vec2-base-960h) are separate downloads loaded with their own
`from_pretrained`. The emotion projection, gate, region projections and temporal modules stay at
their initial values: the converted pipeline needs training before it renders anything sensible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from models.render.diffusion.pipeline import EmoTalkPipeline

_AUDIO_PROJ = {"proj1.": "net.0.", "proj2.": "net.2.", "proj3.": "net.4.", "norm.": "norm."}
_SKIPPED_PARTS = (".motion_modules.", ".audio_modules.")


@dataclass
class HalloConversion:
    """What happened to each key of the Hallo checkpoint."""

    loaded: dict[str, list[str]] = field(default_factory=dict)  # component -> our keys now set
    unused: list[str] = field(default_factory=list)  # Hallo keys with no place here
    mismatched: list[str] = field(default_factory=list)  # mapped, but the shapes differ (config?)
    untouched: dict[str, list[str]] = field(default_factory=dict)  # component -> our keys left as they were


def map_hallo_key(key: str) -> tuple[str, str] | None:
    """Hallo checkpoint key -> (component, our key), or None where it has no counterpart."""
    prefix, _, rest = key.partition(".")
    if prefix == "reference_unet":
        return "reference_net", rest
    if prefix == "denoising_unet":
        if any(part in f".{rest}" for part in _SKIPPED_PARTS):
            return None
        return "denoising_unet", f"unet.{rest}"
    if prefix == "face_locator":
        return "face_locator", rest
    if prefix == "audioproj":
        for theirs, ours in _AUDIO_PROJ.items():
            if rest.startswith(theirs):
                return "audio_projection", ours + rest.removeprefix(theirs)
    return None


def load_hallo_state_dict(pipeline: EmoTalkPipeline, state: Mapping[str, torch.Tensor]) -> HalloConversion:
    """Copy every Hallo tensor that has a same-shaped counterpart into `pipeline`, in place.

    Build the pipeline with Hallo's defaults (the component classes' defaults) first; a config that
    differs shows up as `mismatched` keys rather than an exception.
    """
    report = HalloConversion()
    targets: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        mapped = map_hallo_key(key)
        if mapped is None:
            report.unused.append(key)
            continue
        component, ours = mapped
        own = getattr(pipeline, component).state_dict()
        if ours not in own:
            report.unused.append(key)
        elif own[ours].shape != tensor.shape:
            report.mismatched.append(f"{key}: {tuple(tensor.shape)} -> {ours}: {tuple(own[ours].shape)}")
        else:
            targets.setdefault(component, {})[ours] = tensor
    for component, tensors in targets.items():
        module = getattr(pipeline, component)
        module.load_state_dict(tensors, strict=False)
        report.loaded[component] = sorted(tensors)
    for component in ("reference_net", "denoising_unet", "face_locator", "audio_projection"):
        done = set(targets.get(component, {}))
        report.untouched[component] = sorted(
            k for k in getattr(pipeline, component).state_dict() if k not in done
        )
    return report
