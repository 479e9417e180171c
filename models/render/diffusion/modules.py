"""The trainable pieces of the diffusion renderer, each a diffusers `ModelMixin` + `ConfigMixin`.

    wav2vec2 hidden states (5-frame window) --AudioProjection--> f_a   [frames, tokens, dim]
    label distribution + intensity        --EmotionProjection--> f_emo [frames, tokens, dim]
    GatedFusion:  c = f_a + sigmoid(W_g f_a + b_g) * f_emo          (TIE-TFG eq. 5-6)
    FaceLocator:  face-region mask -> features added after the UNet's conv_in
    EmoTalkUNet:  a 2D UNet applied per frame, with
        - reference attention (self-attention keys/values extended by ReferenceNet features),
        - masked hierarchical cross-attention of latents with c (eq. 7-9),
        - temporal attention over the frames of a clip after every spatial transformer.

The architecture follows Hallo (fudan-generative-vision/hallo) as its paper and code describe it;
the code here is our own.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, cast

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models import ModelMixin, UNet2DConditionModel  # not `diffusers`: mypy sees dummies there
from diffusers.models.attention_processor import Attention, AttnProcessor
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from torch import nn

REGIONS = ("lip", "expression", "pose")  # the paper's three levels, finest first
DEFAULT_LABELS = ("neutral", "happy", "sad", "angry", "fear", "surprise", "disgust")

# cross_attention_kwargs every processor here accepts, so diffusers passes them without warnings
ReferenceBank = dict[str, torch.Tensor]  # attention name -> [batch, n_ref * seq, channels]
RegionMasks = dict[int, dict[str, torch.Tensor]]  # tokens per map -> region -> [1 or N, seq, 1]


# -- conditions ----------------------------------------------------------------------------------------


class AudioProjection(ModelMixin, ConfigMixin):  # type: ignore[misc]  # diffusers: config_name str vs None
    """Windowed wav2vec2 features [frames, window, layers, channels] -> [frames, tokens, dim].

    Three linear layers with ReLU and a LayerNorm over each token: Hallo's audio projection layout,
    so its trained weights convert (see convert.py)."""

    @register_to_config
    def __init__(
        self,
        window: int = 5,
        layers: int = 12,
        channels: int = 768,
        hidden_dim: int = 512,
        tokens: int = 32,
        dim: int = 768,
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(window * layers * channels, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, tokens * dim),
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        frames = features.shape[0]
        tokens = self.net(features.reshape(frames, -1))
        return self.norm(tokens.reshape(frames, self.config["tokens"], self.config["dim"]))


class EmotionProjection(ModelMixin, ConfigMixin):  # type: ignore[misc]  # diffusers: config_name str vs None
    """Per-frame label distribution [frames, labels] and intensity [frames] -> [frames, tokens, dim].

    The network sees the distribution, the intensity and their product, so "a little angry" and
    "very angry" are different inputs even where the argmax is the same.
    """

    @register_to_config
    def __init__(
        self,
        labels: tuple[str, ...] | list[str] = DEFAULT_LABELS,
        hidden_dim: int = 512,
        tokens: int = 32,
        dim: int = 768,
    ) -> None:
        super().__init__()
        n = len(labels)
        self.net = nn.Sequential(
            nn.Linear(2 * n + 1, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, tokens * dim),
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, probs: torch.Tensor, intensity: torch.Tensor) -> torch.Tensor:
        intensity = intensity.reshape(-1, 1)
        x = torch.cat([probs, probs * intensity, intensity], dim=1)
        tokens = self.net(x).reshape(probs.shape[0], self.config["tokens"], self.config["dim"])
        return self.norm(tokens)


class GatedFusion(ModelMixin, ConfigMixin):  # type: ignore[misc]  # diffusers: config_name str vs None
    """c = f_a + sigmoid(W_g f_a + b_g) * f_emo (eq. 5-6): audio decides how much emotion gets through."""

    @register_to_config
    def __init__(self, dim: int = 768) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, dim)

    def gate_values(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gate(audio))

    def forward(self, audio: torch.Tensor, emotion: torch.Tensor) -> torch.Tensor:
        return audio + self.gate_values(audio) * emotion


class FaceLocator(ModelMixin, ConfigMixin):  # type: ignore[misc]  # diffusers: config_name str vs None
    """Face-region mask [batch, C, H, W] -> features [batch, out_channels, H/8, W/8] added after conv_in.

    Per level a 3x3 conv then a stride-2 conv (the layout of Hallo's locator, so its weights convert);
    the last conv starts at zero, as ControlNet-style adapters do, so an untrained locator is a no-op.
    The mask is repeated over `conditioning_channels` (3 in Hallo, which feeds a mask image).
    """

    @register_to_config
    def __init__(
        self,
        conditioning_channels: int = 3,
        block_out_channels: tuple[int, ...] = (16, 32, 64, 128),
        out_channels: int = 320,
    ) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(conditioning_channels, block_out_channels[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        for c_in, c_out in itertools.pairwise(block_out_channels):
            self.blocks.append(nn.Conv2d(c_in, c_in, 3, padding=1))
            self.blocks.append(nn.Conv2d(c_in, c_out, 3, padding=1, stride=2))
        self.conv_out = nn.Conv2d(block_out_channels[-1], out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        assert self.conv_out.bias is not None  # built with bias=True
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        x = mask.expand(-1, self.config["conditioning_channels"], -1, -1)
        x = F.silu(self.conv_in(x))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x)


# -- attention processors ------------------------------------------------------------------------------


def _attend(attn: Attention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Multi-head scaled dot-product attention with `attn`'s head layout; [N, seq, inner] in and out."""
    n, seq, _ = query.shape
    head_dim = query.shape[-1] // attn.heads

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1, attn.heads, head_dim).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(query), split(key), split(value))
    return out.transpose(1, 2).reshape(n, seq, attn.heads * head_dim).to(query.dtype)


def _project_out(attn: Attention, hidden_states: torch.Tensor) -> torch.Tensor:
    hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
    return hidden_states / attn.rescale_output_factor


class PlainAttnProcessor:
    """Ordinary attention that accepts (and ignores) our cross_attention_kwargs."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        reference_bank: ReferenceBank | None = None,
        region_masks: RegionMasks | None = None,
    ) -> torch.Tensor:
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        out = _attend(attn, attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context))
        return _project_out(attn, out)


class ReferenceAttnProcessor:
    """Self-attention that shares features between the ReferenceNet and the denoising UNet.

    mode "write" (ReferenceNet): store the normalised input of this self-attention in the bank, then attend
    as usual. mode "read" (denoising UNet): keys and values are this frame's tokens plus the bank entry of
    the same-named layer (the reference image and the motion frames), so every frame can copy identity
    and texture from the reference. Without a bank, "read" is plain self-attention.
    """

    def __init__(self, name: str, mode: str) -> None:
        if mode not in ("read", "write"):
            raise ValueError(f"mode must be 'read' or 'write', got {mode!r}")
        self.name = name
        self.mode = mode

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        reference_bank: ReferenceBank | None = None,
        region_masks: RegionMasks | None = None,
    ) -> torch.Tensor:
        context = hidden_states
        if reference_bank is not None and self.mode == "write":
            reference_bank[self.name] = hidden_states
        elif reference_bank is not None and self.name in reference_bank:
            reference = reference_bank[self.name]  # [batch, n_ref * seq, C]
            frames = hidden_states.shape[0] // reference.shape[0]
            reference = reference.repeat_interleave(frames, dim=0)
            context = torch.cat([hidden_states, reference.to(hidden_states.dtype)], dim=1)
        out = _attend(attn, attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context))
        return _project_out(attn, out)


class HierarchicalCrossAttnProcessor(nn.Module):
    """Masked hierarchical cross-attention of latents with the fused condition c (eq. 7-9).

    One attention A = softmax(Q(z) K(c)^T / sqrt(d)) V(c) (eq. 7, projections shared with the block's
    own cross-attention so SD weights still fit), then one branch per region:
        branch_r = M_r * P_r(A)                                     (eq. 8: M_r from landmarks)
        out      = to_out( sum_r softmax(w)_r * branch_r )           (eq. 9: learned weights w)
    P_r starts as the identity, so before training the three levels differ only by their masks.
    A token outside every mask receives nothing from c.
    """

    def __init__(self, inner_dim: int, regions: tuple[str, ...] | list[str] = REGIONS) -> None:
        super().__init__()
        self.regions = tuple(regions)
        projections = {r: nn.Linear(inner_dim, inner_dim) for r in self.regions}
        for proj in projections.values():
            nn.init.eye_(proj.weight)
            nn.init.zeros_(proj.bias)
        self.region_proj = nn.ModuleDict(projections)
        self.region_logits = nn.Parameter(torch.zeros(len(self.regions)))

    def region_weights(self) -> torch.Tensor:
        return torch.softmax(self.region_logits, dim=0)

    def branches(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        region_masks: RegionMasks | None,
    ) -> dict[str, torch.Tensor]:
        """Each region's masked branch, [N, seq, inner], before weighting and the output projection."""
        shared = _attend(
            attn,
            attn.to_q(hidden_states),
            attn.to_k(encoder_hidden_states),
            attn.to_v(encoder_hidden_states),
        )
        seq = hidden_states.shape[1]
        masks = (region_masks or {}).get(seq)
        if region_masks is not None and masks is None:
            raise ValueError(
                f"region_masks has no masks for a {seq}-token feature map (has {list(region_masks)})"
            )
        out: dict[str, torch.Tensor] = {}
        for region in self.regions:
            branch = self.region_proj[region](shared)
            if masks is not None:  # no masks at all: every region covers the whole frame
                branch = branch * masks[region].to(branch.dtype)
            out[region] = branch
        return out

    def __call__(  # diffusers calls processors directly, not via forward
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        reference_bank: ReferenceBank | None = None,
        region_masks: RegionMasks | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is None:
            raise ValueError("encoder_hidden_states (the fused audio-emotion tokens c) is required")
        branches = self.branches(attn, hidden_states, encoder_hidden_states, region_masks)
        weights = self.region_weights().to(hidden_states.dtype)
        mixed = sum(w * branches[r] for w, r in zip(weights, self.regions, strict=True))
        return _project_out(attn, mixed)


# -- temporal attention --------------------------------------------------------------------------------


def _sinusoid(frames: int, channels: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    position = torch.arange(frames, device=device, dtype=torch.float32)[:, None]
    half = channels // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / half)
    emb = torch.cat([torch.sin(position * freq), torch.cos(position * freq)], dim=1)
    if channels % 2:
        emb = F.pad(emb, (0, 1))
    return emb.to(dtype)


class TemporalAttention(nn.Module):
    """Self-attention across the frames of a clip at every pixel (an AnimateDiff-style motion module)."""

    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        heads = max(1, min(heads, channels))
        while channels % heads:
            heads -= 1
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.attn = Attention(query_dim=channels, heads=heads, dim_head=channels // heads, bias=False)
        # diffusers annotates AttnProcessor, but Attention takes any processor callable
        self.attn.set_processor(cast(AttnProcessor, PlainAttnProcessor()))
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, hidden_states: torch.Tensor, frames: int) -> torch.Tensor:
        bf, c, h, w = hidden_states.shape
        batch = bf // frames
        x = self.norm(hidden_states)
        x = x.reshape(batch, frames, c, h * w).permute(0, 3, 1, 2).reshape(batch * h * w, frames, c)
        x = self.proj_in(x) + _sinusoid(frames, c, x.device, x.dtype)
        x = self.proj_out(self.attn(x))
        x = x.reshape(batch, h * w, frames, c).permute(0, 2, 3, 1).reshape(bf, c, h, w)
        return hidden_states + x


# -- the denoising UNet --------------------------------------------------------------------------------


class EmoTalkUNet(ModelMixin, ConfigMixin):  # type: ignore[misc]  # diffusers: config_name str vs None
    """Denoising UNet over a clip: [batch, 4, frames, h, w] -> the same shape (v-prediction).

    Inside is a plain `UNet2DConditionModel` run on batch*frames images. Its self-attention processors
    read the ReferenceNet bank, its cross-attention processors are the masked hierarchical ones, a
    `TemporalAttention` follows each spatial transformer (forward hook), and the face locator's features
    are added to the output of conv_in (forward hook). Defaults are Stable Diffusion 1.5's UNet, as in
    Hallo.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        sample_size: int = 64,
        in_channels: int = 4,
        out_channels: int = 4,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ),
        up_block_types: tuple[str, ...] = (
            "UpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
        ),
        layers_per_block: int = 2,
        cross_attention_dim: int = 768,
        attention_head_dim: int = 8,
        norm_num_groups: int = 32,
        motion_heads: int = 8,
        regions: tuple[str, ...] = REGIONS,
    ) -> None:
        super().__init__()
        self.unet = UNet2DConditionModel(
            sample_size=sample_size,
            in_channels=in_channels,
            out_channels=out_channels,
            block_out_channels=tuple(block_out_channels),
            down_block_types=tuple(down_block_types),
            up_block_types=tuple(up_block_types),
            layers_per_block=layers_per_block,
            cross_attention_dim=cross_attention_dim,
            attention_head_dim=attention_head_dim,
            norm_num_groups=norm_num_groups,
        )
        # processors: installed here so that save/load sees the same parameter names every time
        processors: dict[str, Any] = {}
        for key in self.unet.attn_processors:
            name = key.removesuffix(".processor")
            if name.endswith("attn1"):
                processors[key] = ReferenceAttnProcessor(name, "read")
            else:
                inner = self.unet.get_submodule(name).inner_dim
                processors[key] = HierarchicalCrossAttnProcessor(inner, regions)
        self.unet.set_attn_processor(processors)

        self.motion_modules = nn.ModuleDict()
        for name, module in self.unet.named_modules():
            if isinstance(module, Transformer2DModel):
                key = name.replace(".", "_")
                self.motion_modules[key] = TemporalAttention(
                    module.in_channels, motion_heads, norm_num_groups
                )
                module.register_forward_hook(self._temporal_hook(key))
        self.unet.conv_in.register_forward_hook(self._face_hook)
        # per-call state the hooks read; set only for the duration of forward()
        self._frames = 1
        self._face_features: torch.Tensor | None = None

    # The hooks close over this wrapper: reload (from_pretrained) rather than deepcopy an EmoTalkUNet.
    def _temporal_hook(self, key: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            sample = output[0] if isinstance(output, tuple) else output.sample
            sample = self.motion_modules[key](sample, self._frames)
            return (sample, *output[1:]) if isinstance(output, tuple) else type(output)(sample=sample)

        return hook

    def _face_hook(self, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        if self._face_features is None:
            return output
        return output + self._face_features.to(output.dtype)

    def hierarchical_processors(self) -> dict[str, HierarchicalCrossAttnProcessor]:
        return {
            k: p
            for k, p in self.unet.attn_processors.items()
            if isinstance(p, HierarchicalCrossAttnProcessor)
        }

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        reference_bank: ReferenceBank | None = None,
        region_masks: RegionMasks | None = None,
        face_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """sample [B, C, F, h, w]; encoder_hidden_states [B, F, tokens, dim] (one c per frame);
        face_features [B, C0, h, w] or None. Returns [B, C, F, h, w]."""
        b, c, f, h, w = sample.shape
        x = sample.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        context = encoder_hidden_states.reshape(b * f, *encoder_hidden_states.shape[2:])
        t = torch.as_tensor(timestep, device=sample.device)
        t = t.expand(b) if t.ndim == 0 else t
        t = t.repeat_interleave(f)
        self._frames = f
        self._face_features = None if face_features is None else face_features.repeat_interleave(f, dim=0)
        try:
            out = self.unet(
                x,
                t,
                encoder_hidden_states=context,
                cross_attention_kwargs={"reference_bank": reference_bank, "region_masks": region_masks},
                return_dict=False,
            )[0]
        finally:
            self._frames, self._face_features = 1, None
        return out.reshape(b, f, -1, h, w).permute(0, 2, 1, 3, 4)


def install_reference_writers(reference_net: UNet2DConditionModel) -> None:
    """Make a ReferenceNet write its self-attention inputs into the bank passed in cross_attention_kwargs."""
    processors: dict[str, Any] = {}
    for key in reference_net.attn_processors:
        name = key.removesuffix(".processor")
        processors[key] = (
            ReferenceAttnProcessor(name, "write") if name.endswith("attn1") else PlainAttnProcessor()
        )
    reference_net.set_attn_processor(processors)
