"""The condition encoders around Hallo's UNets, and TIE-TFG's emotion adapter on top of them.

    face-region mask [b, 3, f, H, W] --FaceLocator--> features [b, 320, f, H/8, W/8], added after conv_in
    identity embedding [b, 512]      --ImageProjection--> face tokens [b, 4, 768], the UNets' cross-attention
    wav2vec2 windows [b, f, 5, 12, 768] --AudioProjection--> audio tokens f_a [b, f, 32, 768]
    emotion per frame                --EmotionAdapter--> c = f_a + sigmoid(W f_a + b) * f_emo (eq. 5-6)

The first three carry Hallo's parameter names and shapes (`face_locator.*`, `imageproj.*`, `audioproj.*`
in its `net.pth`). The adapter is ours: its output layer starts at zero, so at load c = f_a exactly and
the pipeline is Hallo until the adapter is trained (flows/train_renderer.py).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from models.render.diffusion.blocks import to_clips, to_frames

DEFAULT_LABELS = ("neutral", "happy", "sad", "angry", "fear", "surprise", "disgust")


class FaceLocator(ModelMixin, ConfigMixin):  # type: ignore[misc]  # diffusers mixins are untyped
    """Per level a 3x3 conv and a stride-2 3x3 conv, SiLU after each; applied to every frame."""

    @register_to_config
    def __init__(
        self,
        conditioning_embedding_channels: int = 320,
        conditioning_channels: int = 3,
        block_out_channels: tuple[int, ...] = (16, 32, 64, 128),
    ) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(conditioning_channels, block_out_channels[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        for c_in, c_out in itertools.pairwise(block_out_channels):
            self.blocks.append(nn.Conv2d(c_in, c_in, 3, padding=1))
            self.blocks.append(nn.Conv2d(c_in, c_out, 3, padding=1, stride=2))
        self.conv_out = nn.Conv2d(block_out_channels[-1], conditioning_embedding_channels, 3, padding=1)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        """[b, c, f, H, W] -> [b, channels, f, H/8, W/8]."""
        frames = mask.shape[2]
        x = F.silu(self.conv_in(to_frames(mask.transpose(1, 2))))
        for block in self.blocks:
            x = F.silu(block(x))
        return to_clips(self.conv_out(x), frames).transpose(1, 2)


class ImageProjection(ModelMixin, ConfigMixin):  # type: ignore[misc]
    """An identity embedding -> a few cross-attention tokens (IP-Adapter's layout, Hallo's `imageproj`)."""

    @register_to_config
    def __init__(
        self,
        cross_attention_dim: int = 768,
        clip_embeddings_dim: int = 512,
        clip_extra_context_tokens: int = 4,
    ) -> None:
        super().__init__()
        self.proj = nn.Linear(clip_embeddings_dim, clip_extra_context_tokens * cross_attention_dim)
        self.norm = nn.LayerNorm(cross_attention_dim)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(embedding).reshape(
            -1, self.config["clip_extra_context_tokens"], self.config["cross_attention_dim"]
        )
        return self.norm(tokens)


class AudioProjection(ModelMixin, ConfigMixin):  # type: ignore[misc]
    """Windowed wav2vec2 states [b, f, window, layers, channels] -> audio tokens [b, f, tokens, dim]."""

    @register_to_config
    def __init__(
        self,
        seq_len: int = 5,
        blocks: int = 12,
        channels: int = 768,
        intermediate_dim: int = 512,
        output_dim: int = 768,
        context_tokens: int = 32,
    ) -> None:
        super().__init__()
        self.proj1 = nn.Linear(seq_len * blocks * channels, intermediate_dim)
        self.proj2 = nn.Linear(intermediate_dim, intermediate_dim)
        self.proj3 = nn.Linear(intermediate_dim, context_tokens * output_dim)
        self.norm = nn.LayerNorm(output_dim)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        batch, frames = windows.shape[:2]
        x = windows.reshape(batch * frames, -1)
        x = torch.relu(self.proj2(torch.relu(self.proj1(x))))
        tokens = self.proj3(x).reshape(
            batch * frames, self.config["context_tokens"], self.config["output_dim"]
        )
        return self.norm(tokens).reshape(batch, frames, *tokens.shape[1:])


class EmotionAdapter(ModelMixin, ConfigMixin):  # type: ignore[misc]
    """TIE-TFG's gated emotion fusion on Hallo's audio tokens: c = f_a + sigmoid(W f_a + b) * f_emo.

    f_emo comes from the frame's label distribution, its intensity and their product, so "a little
    angry" and "very angry" differ even where the argmax agrees. The projection's last layer is zero at
    construction, hence f_emo = 0 and c = f_a: an untrained adapter leaves Hallo's output unchanged.
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
        self.projection = nn.Sequential(
            nn.Linear(2 * n + 1, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, tokens * dim),
        )
        self.gate = nn.Linear(dim, dim)
        self.reset_output()

    def reset_output(self) -> None:
        """Zero the projection's output layer: the adapter then adds nothing."""
        last = self.projection[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def emotion_tokens(self, probs: torch.Tensor, intensity: torch.Tensor) -> torch.Tensor:
        """probs [N, labels], intensity [N] -> f_emo [N, tokens, dim]."""
        weight = intensity.reshape(-1, 1).to(probs)
        features = torch.cat([probs, probs * weight, weight], dim=1)
        return self.projection(features).reshape(probs.shape[0], self.config["tokens"], self.config["dim"])

    def gate_values(self, audio_tokens: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gate(audio_tokens))

    def forward(
        self, audio_tokens: torch.Tensor, probs: torch.Tensor, intensity: torch.Tensor
    ) -> torch.Tensor:
        """audio_tokens [N, tokens, dim] (N = frames) -> c, the same shape."""
        emotion = self.emotion_tokens(probs, intensity).to(audio_tokens)
        return audio_tokens + self.gate_values(audio_tokens) * emotion
