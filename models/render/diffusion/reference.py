"""Reference attention: the ReferenceNet's per-block features, banked and read by the denoising UNet.

    ReferenceNet (SD-1.5's UNet without its output head) runs once per clip over the portrait and the
    motion frames. At every spatial transformer block it banks the input of self-attention.
    The denoising UNet's matching block (same module path) then attends over its own tokens and the
    bank's portrait tokens, and hands the bank's motion-frame tokens to the block's motion module,
    which sees them as the frames before the clip.

Hallo implements this by replacing the blocks' forward methods; here it is two attention processors,
so diffusers' own transformer blocks run unchanged. Three of Hallo's details are kept on purpose,
because its released weights were trained and published with them:
- the bank's portrait tokens are tiled over the batch, not repeated per clip, so with guidance the
  conditional frames alternate between the two reference passes;
- under guidance the unconditional half attends to itself only;
- the bank passes through float16 on its way to the denoising UNet, even when both run in float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from torch import nn

_plain = AttnProcessor2_0()


def transformer_block_paths(model: nn.Module) -> list[str]:
    """Module paths of the spatial transformer blocks whose self-attention takes part."""
    return [name for name, module in model.named_modules() if isinstance(module, BasicTransformerBlock)]


@dataclass
class ReferenceBank:
    """Block path -> banked tokens [(clips refs), pixels, channels], refs = 1 portrait + motion frames."""

    states: dict[str, torch.Tensor] = field(default_factory=dict)

    def clear(self) -> None:
        self.states.clear()


class BankWriter:
    """ReferenceNet self-attention that also banks its input."""

    def __init__(self, bank: ReferenceBank, key: str) -> None:
        self.bank = bank
        self.key = key

    def __call__(
        self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: Any = None, **kwargs: Any
    ) -> torch.Tensor:
        self.bank.states[self.key] = hidden_states
        return _plain(attn, hidden_states, encoder_hidden_states, **kwargs)


class TiledCrossAttention:
    """Cross-attention whose conditions are tiled when the batch holds several frames per condition."""

    def __call__(
        self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: Any = None, **kwargs: Any
    ) -> torch.Tensor:
        if encoder_hidden_states is not None and encoder_hidden_states.shape[0] != hidden_states.shape[0]:
            encoder_hidden_states = encoder_hidden_states.repeat(
                hidden_states.shape[0] // encoder_hidden_states.shape[0], 1, 1
            )
        return _plain(attn, hidden_states, encoder_hidden_states, **kwargs)


@dataclass
class ReaderState:
    """What the denoising UNet's readers share during one forward pass."""

    bank: ReferenceBank | None = None
    frames: int = 1
    guidance: bool = False
    # the motion-frame tokens [clips, m, pixels, channels] of the block that ran last; None without a bank
    motion: torch.Tensor | None = None


class BankReader:
    """Denoising-UNet self-attention over its tokens plus the bank's portrait tokens."""

    def __init__(self, state: ReaderState, key: str) -> None:
        self.state = state
        self.key = key

    def __call__(
        self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: Any = None, **kwargs: Any
    ) -> torch.Tensor:
        state = self.state
        banked = state.bank.states.get(self.key) if state.bank is not None else None
        if banked is None:
            state.motion = None
            return _plain(attn, hidden_states, None, **kwargs)
        batch_frames, pixels, channels = hidden_states.shape
        clips = batch_frames // state.frames
        # Hallo hands the bank over in float16 whatever the model's dtype (ReferenceAttentionControl.update)
        refs = banked.to(torch.float16).to(hidden_states).reshape(clips, -1, pixels, channels)
        state.motion = refs[:, 1:]
        portrait = refs[:, 0].repeat(state.frames, 1, 1)  # tiled, as Hallo's weights expect
        context = torch.cat([hidden_states, portrait], dim=1)
        if not state.guidance:
            return _plain(attn, hidden_states, context, **kwargs)
        half = batch_frames // 2
        return torch.cat(
            [
                _plain(attn, hidden_states[:half], None, **kwargs),
                _plain(attn, hidden_states[half:], context[half:], **kwargs),
            ]
        )


def strip_output_head(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """Hallo's ReferenceNet has no output norm and conv: only its banked features are used."""
    # diffusers' forward skips a None norm; Identity stands in for the conv, which has no weights here
    unet.register_module("conv_norm_out", None)
    unet.register_module("conv_act", None)
    unet.register_module("conv_out", nn.Identity())
    return unet


def _use(attention: Attention, processor: object) -> None:
    # diffusers annotates the argument as its classic AttnProcessor, though any callable processor works
    attention.set_processor(processor)  # type: ignore[arg-type]


def _block(model: nn.Module, path: str) -> BasicTransformerBlock:
    block = model.get_submodule(path)
    assert isinstance(block, BasicTransformerBlock)
    return block


def install_bank_writers(unet: UNet2DConditionModel, bank: ReferenceBank) -> None:
    for path in transformer_block_paths(unet):
        block = _block(unet, path)
        _use(block.attn1, BankWriter(bank, path))
        if block.attn2 is not None:
            _use(block.attn2, TiledCrossAttention())


def install_bank_readers(unet: nn.Module, state: ReaderState) -> None:
    for path in transformer_block_paths(unet):
        _use(_block(unet, path).attn1, BankReader(state, path))
