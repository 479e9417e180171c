"""Hallo's denoising UNet: SD-1.5's UNet per frame, with motion modules, audio modules and reference reads.

    conv_in (+ face-locator features) -> down blocks -> mid block -> up blocks -> norm, SiLU, conv_out

Each cross-attention block runs, per layer: resnet -> spatial transformer (self-attention over its tokens
and the ReferenceNet's portrait tokens, cross-attention with the face-identity tokens) -> audio module
(masked cross-attention with the audio tokens) -> motion module (temporal attention over the clip, with
the ReferenceNet's motion-frame tokens placed before it, then cut off again).

The configuration keys are Hallo's (SD-1.5's UNet config plus `unet_additional_kwargs` of Hallo's
`configs/inference/default.yaml`), so a Hallo config builds the same tensors under the same names.

One behaviour follows Hallo's released inference rather than its code's appearance: Hallo runs this UNet
in training mode with gradient checkpointing on (models built by `from_config` are never put in eval
mode), and that code path is the one its weights were trained and published with. On it, the blocks
without cross-attention (`DownBlock3D`, `UpBlock3D`) skip their motion modules, and the cross-attention
blocks pass the reference motion frames to theirs. This module always takes that path; the skipped
motion modules' weights are still loaded, because `net.pth` holds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from torch import nn

from models.render.diffusion.blocks import (
    AudioModule,
    MaskLevels,
    MotionModule,
    drop_leading_frames,
    prepend_frames,
    to_clips,
    to_frames,
)
from models.render.diffusion.reference import ReaderState, ReferenceBank, install_bank_readers

# Hallo's inference configuration (configs/inference/default.yaml, unet_additional_kwargs)
HALLO_UNET_KWARGS: dict[str, Any] = {
    "use_inflated_groupnorm": True,
    "unet_use_cross_frame_attention": False,
    "unet_use_temporal_attention": False,
    "use_motion_module": True,
    "use_audio_module": True,
    "motion_module_resolutions": [1, 2, 4, 8],
    "motion_module_mid_block": True,
    "motion_module_decoder_only": False,
    "motion_module_type": "Vanilla",
    "motion_module_kwargs": {
        "num_attention_heads": 8,
        "num_transformer_block": 1,
        "attention_block_types": ["Temporal_Self", "Temporal_Self"],
        "temporal_position_encoding": True,
        "temporal_position_encoding_max_len": 32,
        "temporal_attention_dim_div": 1,
    },
    "audio_attention_dim": 768,
    "stack_enable_blocks_name": ["up", "down", "mid"],
    "stack_enable_blocks_depth": [0, 1, 2, 3],
}
DOWN_TYPES = ("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D")
UP_TYPES = ("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D")


@dataclass(frozen=True)
class AudioConditions:
    """What the audio modules read: tokens per frame, region masks per depth, region weights."""

    tokens: torch.Tensor  # [(b f), tokens, dim]
    masks: dict[str, MaskLevels]  # "full" / "face" / "lip" -> per depth [(b f), h*w]
    weights: tuple[float, float, float] | None  # full (pose), face, lip; None = all 1


@dataclass(frozen=True)
class _Layout:
    """Per-block settings shared by the block constructors."""

    temb: int
    groups: int
    eps: float
    cross_dim: int
    audio_dim: int
    linear_projection: bool
    motion_kwargs: dict[str, Any]
    audio: bool
    stack_names: tuple[str, ...]
    stack_depths: tuple[int, ...]

    def resnet(self, cin: int, cout: int) -> ResnetBlock2D:
        return ResnetBlock2D(
            in_channels=cin, out_channels=cout, temb_channels=self.temb, eps=self.eps, groups=self.groups
        )

    def spatial(self, channels: int, heads: int) -> Transformer2DModel:
        return Transformer2DModel(
            num_attention_heads=heads,
            attention_head_dim=channels // heads,
            in_channels=channels,
            num_layers=1,
            cross_attention_dim=self.cross_dim,
            norm_num_groups=self.groups,
            use_linear_projection=self.linear_projection,
        )

    def audio_module(
        self, channels: int, inner: int, heads: int, depth: int, block: str
    ) -> AudioModule | None:
        if not self.audio:
            return None
        stacked = block in self.stack_names and depth in self.stack_depths
        return AudioModule(channels, heads, inner // heads, self.audio_dim, self.groups, depth, stacked)

    def motion(self, channels: int, enabled: bool) -> MotionModule | None:
        return MotionModule(channels, **self.motion_kwargs) if enabled else None


def _module_list(items: list[Any]) -> nn.ModuleList:
    return nn.ModuleList(items)  # None entries keep Hallo's indices where a module is switched off


class _Block(nn.Module):
    """The resnet / spatial attention / audio / motion layers of one UNet block, run in Hallo's order."""

    def __init__(self) -> None:
        super().__init__()
        self.resnets = nn.ModuleList()
        self.attentions: nn.ModuleList | None = None
        self.audio_modules: nn.ModuleList | None = None
        self.motion_modules = nn.ModuleList()

    def _attend(
        self, i: int, hidden: torch.Tensor, faces: torch.Tensor, audio: AudioConditions, state: ReaderState
    ) -> torch.Tensor:
        """Spatial transformer, then audio module, then motion module with the bank's motion frames."""
        assert self.attentions is not None and self.audio_modules is not None
        state.motion = None
        hidden = self.attentions[i](hidden, encoder_hidden_states=faces, return_dict=False)[0]
        motion = _motion_frames(state, hidden)
        audio_module = self.audio_modules[i]
        if audio_module is not None:
            hidden = audio_module(hidden, audio.tokens, audio.masks, audio.weights)
        motion_module = self.motion_modules[i]
        if motion_module is not None:
            count = motion.shape[1]
            widened = prepend_frames(hidden, state.frames, motion)
            hidden = drop_leading_frames(
                motion_module(widened, state.frames + count), state.frames + count, count
            )
        return hidden


def _motion_frames(state: ReaderState, hidden: torch.Tensor) -> torch.Tensor:
    """The last reader's motion-frame tokens as [clips, m, c, h, w]; Hallo's 4 zero frames without a bank."""
    clips = to_clips(hidden, state.frames)
    count, _, channels, height, width = clips.shape
    if state.motion is None:
        return hidden.new_zeros(count, 4, channels, height, width)
    tokens = state.motion
    return tokens.permute(0, 1, 3, 2).reshape(count, tokens.shape[1], channels, height, width)


class DownBlock(_Block):
    """CrossAttnDownBlock3D, or DownBlock3D without attention (whose motion modules Hallo never runs)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        layers: int,
        heads: int,
        layout: _Layout,
        depth: int,
        cross_attention: bool,
        motion: bool,
        downsample: bool,
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(layout.resnet(cin if i == 0 else cout, cout) for i in range(layers))
        if cross_attention:
            self.attentions = nn.ModuleList(layout.spatial(cout, heads) for _ in range(layers))
            self.audio_modules = _module_list(
                [
                    layout.audio_module(cout, cin if i == 0 else cout, heads, depth, "down")
                    for i in range(layers)
                ]
            )
        self.motion_modules = _module_list([layout.motion(cout, motion) for _ in range(layers)])
        self.downsamplers = (
            nn.ModuleList([Downsample2D(cout, use_conv=True, out_channels=cout, padding=1, name="op")])
            if downsample
            else None
        )

    def forward(
        self,
        hidden: torch.Tensor,
        temb: torch.Tensor,
        faces: torch.Tensor,
        audio: AudioConditions,
        state: ReaderState,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for i, resnet in enumerate(self.resnets):
            hidden = resnet(hidden, temb)
            if self.attentions is not None:
                hidden = self._attend(i, hidden, faces, audio, state)
            skips.append(hidden)
        if self.downsamplers is not None:
            hidden = self.downsamplers[0](hidden)
            skips.append(hidden)
        return hidden, skips


class MidBlock(_Block):
    """UNetMidBlock3DCrossAttn: resnet, then (attention, audio, motion, resnet)."""

    def __init__(self, channels: int, heads: int, layout: _Layout, motion: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([layout.resnet(channels, channels), layout.resnet(channels, channels)])
        self.attentions = nn.ModuleList([layout.spatial(channels, heads)])
        self.audio_modules = _module_list([layout.audio_module(channels, channels, heads, 3, "mid")])
        self.motion_modules = _module_list([layout.motion(channels, motion)])

    def forward(
        self,
        hidden: torch.Tensor,
        temb: torch.Tensor,
        faces: torch.Tensor,
        audio: AudioConditions,
        state: ReaderState,
    ) -> torch.Tensor:
        hidden = self.resnets[0](hidden, temb)
        return self.resnets[1](self._attend(0, hidden, faces, audio, state), temb)


class UpBlock(_Block):
    """CrossAttnUpBlock3D, or UpBlock3D without attention (whose motion modules Hallo never runs)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        previous: int,
        layers: int,
        heads: int,
        layout: _Layout,
        depth: int,
        cross_attention: bool,
        motion: bool,
        upsample: bool,
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            layout.resnet((previous if i == 0 else cout) + (cin if i == layers - 1 else cout), cout)
            for i in range(layers)
        )
        if cross_attention:
            self.attentions = nn.ModuleList(layout.spatial(cout, heads) for _ in range(layers))
            self.audio_modules = _module_list(
                [layout.audio_module(cout, cin, heads, depth, "up") for _ in range(layers)]
            )
        self.motion_modules = _module_list([layout.motion(cout, motion) for _ in range(layers)])
        self.upsamplers = (
            nn.ModuleList([Upsample2D(cout, use_conv=True, out_channels=cout)]) if upsample else None
        )

    def forward(
        self,
        hidden: torch.Tensor,
        skips: list[torch.Tensor],
        temb: torch.Tensor,
        faces: torch.Tensor,
        audio: AudioConditions,
        state: ReaderState,
        upsample_size: tuple[int, int] | None,
    ) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            hidden = resnet(torch.cat([hidden, skips.pop()], dim=1), temb)
            if self.attentions is not None:
                hidden = self._attend(i, hidden, faces, audio, state)
        if self.upsamplers is not None:
            hidden = self.upsamplers[0](hidden, upsample_size)
        return hidden


@dataclass
class DenoisingUNetOutput:
    sample: torch.Tensor  # [b, c, f, h, w]


class DenoisingUNet(ModelMixin, ConfigMixin):  # type: ignore[misc]  # diffusers mixins are untyped
    """Hallo's UNet3DConditionModel: the same configuration keys, parameter names and outputs."""

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 4,
        out_channels: int = 4,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        down_block_types: tuple[str, ...] = DOWN_TYPES,
        up_block_types: tuple[str, ...] = UP_TYPES,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        cross_attention_dim: int = 768,
        attention_head_dim: int | tuple[int, ...] = 8,
        use_linear_projection: bool = False,
        use_inflated_groupnorm: bool = True,
        use_motion_module: bool = True,
        motion_module_resolutions: tuple[int, ...] | list[int] = (1, 2, 4, 8),
        motion_module_mid_block: bool = True,
        motion_module_decoder_only: bool = False,
        motion_module_type: str | None = "Vanilla",
        motion_module_kwargs: dict[str, Any] | None = None,
        use_audio_module: bool = True,
        audio_attention_dim: int = 768,
        stack_enable_blocks_name: tuple[str, ...] | list[str] | None = ("up", "down", "mid"),
        stack_enable_blocks_depth: tuple[int, ...] | list[int] | None = (0, 1, 2, 3),
        **_ignored: Any,  # the rest of SD-1.5's config (act_fn, mid_block_type, ...): SD-1.5's values only
    ) -> None:
        super().__init__()
        if tuple(down_block_types) != DOWN_TYPES or tuple(up_block_types) != UP_TYPES:
            raise ValueError(
                f"Hallo's UNet has blocks {DOWN_TYPES} / {UP_TYPES}; "
                f"got {down_block_types} / {up_block_types}"
            )
        if use_motion_module and motion_module_type != "Vanilla":
            raise ValueError(f"only the Vanilla motion module exists, got {motion_module_type!r}")
        heads = (
            (attention_head_dim,) * len(block_out_channels)
            if isinstance(attention_head_dim, int)
            else tuple(attention_head_dim)
        )
        channels = tuple(block_out_channels)
        temb = channels[0] * 4
        layout = _Layout(
            temb=temb,
            groups=norm_num_groups,
            eps=norm_eps,
            cross_dim=cross_attention_dim,
            audio_dim=audio_attention_dim,
            linear_projection=use_linear_projection,
            motion_kwargs=dict(motion_module_kwargs or {}),
            audio=use_audio_module,
            stack_names=tuple(stack_enable_blocks_name or ()),
            stack_depths=tuple(stack_enable_blocks_depth or ()),
        )
        resolutions = set(motion_module_resolutions)
        self.conv_in = nn.Conv2d(in_channels, channels[0], kernel_size=3, padding=1)
        self.time_proj = Timesteps(channels[0], flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(channels[0], temb)
        last = len(channels) - 1
        self.down_blocks = nn.ModuleList(
            DownBlock(
                channels[max(i - 1, 0)],
                channels[i],
                layers_per_block,
                heads[i],
                layout,
                depth=i,
                cross_attention=down_block_types[i].startswith("CrossAttn"),
                motion=use_motion_module and 2**i in resolutions and not motion_module_decoder_only,
                downsample=i < last,
            )
            for i in range(len(channels))
        )
        up_channels, up_heads = channels[::-1], heads[::-1]
        self.up_blocks = nn.ModuleList(
            UpBlock(
                up_channels[min(i + 1, last)],
                up_channels[i],
                up_channels[max(i - 1, 0)],
                layers_per_block + 1,
                up_heads[i],
                layout,
                depth=last - i,
                cross_attention=up_block_types[i].startswith("CrossAttn"),
                motion=use_motion_module and 2 ** (3 - i) in resolutions,  # Hallo counts from 8 down
                upsample=i < last,
            )
            for i in range(len(channels))
        )
        # registered after up_blocks, as in Hallo and diffusers: module order pairs the reference banks
        self.mid_block = MidBlock(
            channels[-1], heads[-1], layout, use_motion_module and motion_module_mid_block
        )
        norm_class = nn.GroupNorm  # Hallo's InflatedGroupNorm is GroupNorm per frame: the same on flat frames
        del use_inflated_groupnorm
        self.conv_norm_out = norm_class(num_channels=channels[0], num_groups=norm_num_groups, eps=norm_eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(channels[0], out_channels, kernel_size=3, padding=1)
        self.reader = ReaderState()
        install_bank_readers(self, self.reader)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        audio: AudioConditions,
        reference: ReferenceBank | None,
        guidance: bool,
        face_features: torch.Tensor | None = None,
    ) -> DenoisingUNetOutput:
        """sample [b, c, f, h, w]; encoder_hidden_states (face tokens) [b, n, dim]; face_features as sample.

        `guidance`: the batch is [unconditional; conditional] halves, and the unconditional half
        attends to itself only.
        """
        batch, _, frames, height, width = sample.shape
        self.reader.bank, self.reader.frames, self.reader.guidance = reference, frames, guidance
        hidden = to_frames(sample.transpose(1, 2))
        timesteps = torch.as_tensor(timestep, device=sample.device)
        timesteps = timesteps.reshape(-1).expand(batch)
        temb = self.time_embedding(self.time_proj(timesteps).to(self.dtype))
        temb = temb.repeat_interleave(frames, dim=0)
        faces = encoder_hidden_states.repeat_interleave(frames, dim=0)

        hidden = self.conv_in(hidden)
        if face_features is not None:
            hidden = hidden + to_frames(face_features.transpose(1, 2))
        skips = [hidden]
        for down in self.down_blocks:
            hidden, block_skips = down(hidden, temb, faces, audio, self.reader)
            skips.extend(block_skips)
        hidden = self.mid_block(hidden, temb, faces, audio, self.reader)
        odd = any(side % 2 ** (len(self.up_blocks) - 1) for side in (height, width))
        for i, up in enumerate(self.up_blocks):
            assert isinstance(up, UpBlock)
            layers = len(up.resnets)
            block_skips, skips = skips[-layers:], skips[:-layers]
            size = tuple(skips[-1].shape[-2:]) if odd and i < len(self.up_blocks) - 1 else None
            hidden = up(hidden, block_skips, temb, faces, audio, self.reader, size)
        hidden = self.conv_out(self.conv_act(self.conv_norm_out(hidden)))
        self.reader.bank = None
        return DenoisingUNetOutput(sample=to_clips(hidden, frames).transpose(1, 2))

    @classmethod
    def from_sd_config(cls, sd_unet_config: dict[str, Any], **hallo_kwargs: Any) -> DenoisingUNet:
        """Build from SD-1.5's unet/config.json as Hallo's from_pretrained_2d does, reading no weights."""
        config = {key: value for key, value in sd_unet_config.items() if not key.startswith("_")}
        config.update(
            down_block_types=DOWN_TYPES, up_block_types=UP_TYPES, mid_block_type="UNetMidBlock3DCrossAttn"
        )
        config.update(hallo_kwargs or HALLO_UNET_KWARGS)
        return cls(**config)
