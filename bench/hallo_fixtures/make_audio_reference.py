"""Reference outputs of Hallo's own audio path for a tiny random wav2vec2 (not run in CI).

Writes the file tests/models/test_hallo_inputs.py compares models/render/diffusion/audio.py against.
Needs a Hallo checkout and the throwaway environment of make_fixtures.py (transformers 4.39.2):

    /tmp/hallo-env/bin/python bench/hallo_fixtures/make_audio_reference.py HALLO_CHECKOUT \
        tests/fixtures/hallo/audio_reference.safetensors
"""

import json
import math
import sys

import numpy as np
import torch
from safetensors.torch import save_file

HALLO, OUT = sys.argv[1], sys.argv[2]
sys.path.insert(0, HALLO)
import transformers  # noqa: E402  # after the checkout is on the path
from hallo.models.wav2vec import Wav2VecModel  # noqa: E402
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor  # noqa: E402

assert transformers.__version__ == "4.39.2", transformers.__version__
CONFIG = dict(
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=32,
    conv_dim=(8,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)
torch.manual_seed(1234)
model = Wav2VecModel(Wav2Vec2Config(**CONFIG)).eval()
extractor = Wav2Vec2FeatureExtractor(
    feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=False
)
rng = np.random.default_rng(1234)
t = np.arange(12320) / 16000
samples = (
    0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t) + 0.05 * rng.standard_normal(t.size) + 0.02
).astype(np.float32)


def windows_reference(emb):  # process_audio_emb, scripts/inference.py
    rows = []
    for i in range(emb.shape[0]):
        rows.append(torch.stack([emb[max(min(i + j, emb.shape[0] - 1), 0)] for j in range(-2, 3)]))
    return torch.stack(rows)


def hallo(fps, clip_length):  # AudioProcessor.preprocess without the vocal separator
    feature = np.squeeze(extractor(samples, sampling_rate=16000).input_values)
    seq_len = math.ceil(len(feature) / 16000 * fps)
    length = seq_len
    feature = torch.from_numpy(feature).float()
    if clip_length > 0 and seq_len % clip_length != 0:
        feature = torch.nn.functional.pad(
            feature, (0, (clip_length - seq_len % clip_length) * (16000 // fps)), "constant", 0.0
        )
        seq_len += clip_length - seq_len % clip_length
    with torch.no_grad():
        out = model(feature[None], seq_len=seq_len, output_hidden_states=True)
    emb = torch.stack(out.hidden_states[1:], dim=1).squeeze(0).permute(1, 0, 2)  # s b d
    return windows_reference(emb).contiguous(), length


tensors = {"samples": torch.from_numpy(samples)}
cases = {"fps25_clip16": (25, 16), "fps30_noclip": (30, -1)}
meta = {"config": json.dumps(CONFIG), "transformers": transformers.__version__}
for name, (fps, clip) in cases.items():
    w, length = hallo(fps, clip)
    tensors[f"{name}.windows"] = w
    meta[f"{name}.fps"] = str(fps)
    meta[f"{name}.clip"] = str(clip)
    meta[f"{name}.frames"] = str(length)
    print(name, tuple(w.shape), length)
for key, value in model.state_dict().items():
    tensors[f"weights.{key}"] = value.contiguous()
save_file(tensors, OUT, metadata=meta)
