"""The layers of Hallo's denoising UNet that SD-1.5 does not have, and the frame bookkeeping they need.

Every layer here runs on frames flattened into the batch, `[(batch frames), channels, h, w]`, as the
spatial layers do; only the temporal attention regroups them by pixel. Names and shapes of every
parameter are Hallo's, so its released `net.pth` loads strictly:

    motion_modules.N.temporal_transformer.{norm, proj_in, transformer_blocks.K, proj_out}
        AnimateDiff's temporal self-attention over the frames of a clip, with sinusoidal positions
    audio_modules.N.{norm, proj_in, transformer_blocks.0, proj_out}
        cross-attention of the latents with the audio tokens, three times: once over the whole image
        ("full", the pose region), once over the face without the lips, once over the lips; each
        masked, passed through a 1x1 convolution and summed with its weight

Hallo's code (fudan-generative-vision/hallo, MIT) was read to learn this layout; the code is our own.
"""

from __future__ import annotations

import math

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn

MaskLevels = list[torch.Tensor]  # per UNet depth: [(batch frames), h*w] weights in 0..1


def to_clips(x: torch.Tensor, frames: int) -> torch.Tensor:
    """[(b f), ...] -> [b, f, ...]."""
    return x.reshape(x.shape[0] // frames, frames, *x.shape[1:])


def to_frames(x: torch.Tensor) -> torch.Tensor:
    """[b, f, ...] -> [(b f), ...]."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def prepend_frames(hidden: torch.Tensor, frames: int, extra: torch.Tensor) -> torch.Tensor:
    """Put `extra` [b, m, c, h, w] before each clip's `frames` frames of `hidden` [(b f), c, h, w]."""
    return to_frames(torch.cat([extra.to(hidden), to_clips(hidden, frames)], dim=1))


def drop_leading_frames(hidden: torch.Tensor, frames: int, count: int) -> torch.Tensor:
    """Remove the first `count` of each clip's `frames` frames."""
    return to_frames(to_clips(hidden, frames)[:, count:])


# -- motion module (AnimateDiff's "Vanilla" temporal transformer) ---------------------------------------


class SinusoidalPositions(nn.Module):
    """Fixed sin/cos positions added along the frame axis; a registered buffer, so `net.pth` holds it."""

    pe: torch.Tensor

    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32)[:, None]
        rate = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
        table = torch.zeros(1, max_len, dim)
        table[0, :, 0::2] = torch.sin(position * rate)
        table[0, :, 1::2] = torch.cos(position * rate)
        self.register_buffer("pe", table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.pe.shape[1]:
            raise ValueError(
                f"temporal attention over {x.shape[1]} frames, but positions exist for {self.pe.shape[1]}"
            )
        return x + self.pe[:, : x.shape[1]]


class TemporalSelfAttention(Attention):
    """Self-attention across frames at each pixel: [(b f), d, c] in and out."""

    def __init__(self, dim: int, heads: int, head_dim: int, positions: int | None) -> None:
        super().__init__(query_dim=dim, heads=heads, dim_head=head_dim, bias=False)
        self.pos_encoder = SinusoidalPositions(dim, positions) if positions else None

    def forward(  # type: ignore[override]
        self, hidden_states: torch.Tensor, frames: int
    ) -> torch.Tensor:
        batch_frames, pixels, channels = hidden_states.shape
        x = hidden_states.reshape(batch_frames // frames, frames, pixels, channels)
        x = x.permute(0, 2, 1, 3).reshape(-1, frames, channels)
        if self.pos_encoder is not None:
            x = self.pos_encoder(x)
        x = self.processor(self, x)
        x = x.reshape(batch_frames // frames, pixels, frames, channels).permute(0, 2, 1, 3)
        return x.reshape(batch_frames, pixels, channels)


class TemporalTransformerBlock(nn.Module):
    """Pre-norm temporal self-attention (one per entry of `attention_block_types`), then a GEGLU FF."""

    def __init__(
        self, dim: int, heads: int, head_dim: int, attention_blocks: int, positions: int | None
    ) -> None:
        super().__init__()
        self.attention_blocks = nn.ModuleList(
            TemporalSelfAttention(dim, heads, head_dim, positions) for _ in range(attention_blocks)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(attention_blocks))
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, hidden_states: torch.Tensor, frames: int) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms, strict=True):
            hidden_states = attention(norm(hidden_states), frames) + hidden_states
        return self.ff(self.ff_norm(hidden_states)) + hidden_states


class TemporalTransformer(nn.Module):
    """GroupNorm -> per-pixel linear in -> temporal blocks -> linear out, residual."""

    def __init__(
        self,
        channels: int,
        heads: int,
        head_dim: int,
        layers: int,
        attention_blocks: int,
        positions: int | None,
    ) -> None:
        super().__init__()
        inner = heads * head_dim
        # AnimateDiff fixes 32 groups here, whatever the UNet's own norm_num_groups
        self.norm = nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            TemporalTransformerBlock(inner, heads, head_dim, attention_blocks, positions)
            for _ in range(layers)
        )
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, hidden_states: torch.Tensor, frames: int) -> torch.Tensor:
        batch_frames, channels, height, width = hidden_states.shape
        residual = hidden_states
        x = self.norm(hidden_states).permute(0, 2, 3, 1).reshape(batch_frames, height * width, channels)
        x = self.proj_in(x)
        for block in self.transformer_blocks:
            x = block(x, frames)
        x = self.proj_out(x)
        return x.reshape(batch_frames, height, width, channels).permute(0, 3, 1, 2) + residual


class MotionModule(nn.Module):
    """One AnimateDiff motion module: `temporal_transformer` over the frames of each clip."""

    def __init__(
        self,
        channels: int,
        num_attention_heads: int = 8,
        num_transformer_block: int = 1,
        attention_block_types: tuple[str, ...] | list[str] = ("Temporal_Self", "Temporal_Self"),
        temporal_position_encoding: bool = True,
        temporal_position_encoding_max_len: int = 32,
        temporal_attention_dim_div: int = 1,
    ) -> None:
        super().__init__()
        if any(kind != "Temporal_Self" for kind in attention_block_types):
            raise ValueError(f"only Temporal_Self motion attention is supported, got {attention_block_types}")
        head_dim = channels // num_attention_heads // temporal_attention_dim_div
        self.temporal_transformer = TemporalTransformer(
            channels,
            num_attention_heads,
            head_dim,
            num_transformer_block,
            len(attention_block_types),
            temporal_position_encoding_max_len if temporal_position_encoding else None,
        )

    def forward(self, hidden_states: torch.Tensor, frames: int) -> torch.Tensor:
        return self.temporal_transformer(hidden_states, frames)


# -- audio module ---------------------------------------------------------------------------------------

AUDIO_REGIONS = ("full", "face", "lip")  # Hallo's pose, expression and lip levels, in its order


class AudioAttentionBlock(nn.Module):
    """Self-attention, then region-masked cross-attention with the audio tokens, then a GEGLU FF.

    `stacked` (Hallo's stack_enable_blocks) gives each region its own cross-attention `attn2_{0,1,2}`
    and 1x1 convolution; otherwise a single unmasked `attn2` attends to the audio. The convolutions
    exist either way, since Hallo creates them either way.
    """

    def __init__(
        self, dim: int, heads: int, head_dim: int, audio_dim: int, depth: int, stacked: bool
    ) -> None:
        super().__init__()
        self.depth = depth
        self.zero_conv_full = nn.Conv2d(dim, dim, kernel_size=1)
        self.zero_conv_face = nn.Conv2d(dim, dim, kernel_size=1)
        self.zero_conv_lip = nn.Conv2d(dim, dim, kernel_size=1)
        self.attn1 = Attention(query_dim=dim, heads=heads, dim_head=head_dim, bias=False)
        self.norm1 = nn.LayerNorm(dim)
        self.attn2: Attention | None = None
        if stacked:
            self.attn2_0 = Attention(dim, cross_attention_dim=audio_dim, heads=heads, dim_head=head_dim)
            self.attn2_1 = Attention(dim, cross_attention_dim=audio_dim, heads=heads, dim_head=head_dim)
            self.attn2_2 = Attention(dim, cross_attention_dim=audio_dim, heads=heads, dim_head=head_dim)
        else:
            self.attn2 = Attention(dim, cross_attention_dim=audio_dim, heads=heads, dim_head=head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.norm3 = nn.LayerNorm(dim)

    def forward(
        self,
        hidden_states: torch.Tensor,
        audio: torch.Tensor,
        masks: dict[str, MaskLevels],
        weights: tuple[float, float, float] | None,
    ) -> torch.Tensor:
        hidden_states = self.attn1(self.norm1(hidden_states)) + hidden_states
        normed = self.norm2(hidden_states)
        if self.attn2 is not None:
            hidden_states = self.attn2(normed, encoder_hidden_states=audio) + hidden_states
        else:
            attentions = (self.attn2_0, self.attn2_1, self.attn2_2)
            convs = (self.zero_conv_full, self.zero_conv_face, self.zero_conv_lip)
            scales = weights if weights is not None else (1.0, 1.0, 1.0)
            batch, pixels, channels = normed.shape
            side = math.isqrt(pixels)  # square maps only, as in Hallo
            for region, attention, conv, scale in zip(AUDIO_REGIONS, attentions, convs, scales, strict=True):
                region_out = (
                    attention(normed, encoder_hidden_states=audio) * masks[region][self.depth][:, :, None]
                )
                region_out = region_out.reshape(batch, side, side, channels).permute(0, 3, 1, 2)
                region_out = conv(region_out).permute(0, 2, 3, 1).reshape(batch, pixels, channels)
                hidden_states = hidden_states + scale * region_out
        return self.ff(self.norm3(hidden_states)) + hidden_states


class AudioModule(nn.Module):
    """GroupNorm -> 1x1 conv in -> AudioAttentionBlock -> 1x1 conv out, residual (Hallo's audio_modules.N)."""

    def __init__(
        self,
        channels: int,
        heads: int,
        head_dim: int,
        audio_dim: int,
        norm_groups: int,
        depth: int,
        stacked: bool,
    ) -> None:
        super().__init__()
        inner = heads * head_dim
        self.norm = nn.GroupNorm(num_groups=norm_groups, num_channels=channels, eps=1e-6, affine=True)
        self.proj_in = nn.Conv2d(channels, inner, kernel_size=1)
        self.transformer_blocks = nn.ModuleList(
            [AudioAttentionBlock(inner, heads, head_dim, audio_dim, depth, stacked)]
        )
        self.proj_out = nn.Conv2d(inner, channels, kernel_size=1)

    def forward(
        self,
        hidden_states: torch.Tensor,
        audio: torch.Tensor,
        masks: dict[str, MaskLevels],
        weights: tuple[float, float, float] | None,
    ) -> torch.Tensor:
        batch_frames, _, height, width = hidden_states.shape
        residual = hidden_states
        x = self.proj_in(self.norm(hidden_states))
        inner = x.shape[1]
        x = x.permute(0, 2, 3, 1).reshape(batch_frames, height * width, inner)
        for block in self.transformer_blocks:
            x = block(x, audio, masks, weights)
        x = x.reshape(batch_frames, height, width, inner).permute(0, 3, 1, 2)
        return self.proj_out(x) + residual
