"""A tiny Parler-TTS checkpoint with random weights, laid out as the public ones are.

    <parler env>/venv/bin/python -P -m models.tts.parler_fixture OUT_DIR

It exercises the parler engine's real loading and generation code (parler-tts's `from_pretrained`,
a T5 text encoder, the decoder over 9 DAC codebooks, the DAC codec at 44.1 kHz) where no checkpoint
can be downloaded. The files are those of parler-tts/parler-tts-mini-expresso (config.json,
generation_config.json, model.safetensors, the T5 tokenizer's files); only the sizes differ: a
one-layer encoder and decoder, and a 128-piece tokenizer trained here on a few sentences. The DAC
codec keeps its real size (its layout is fixed by `dac`), so the folder takes about 300 MB.
Its speech is noise: it proves the code path, not the voice. Runs only where parler-tts is installed.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

# sentences the tokenizer is trained on: every letter, digit and mark a test script uses
_TOKENIZER_TEXT = (
    "the quick brown fox jumps over the lazy dog",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG 0123456789",
    "Hello there, my friends. This must never happen again! Why? Well; it's done: yes - no.",
    "Thomas speaks moderately slowly in a sad tone with emphasis and high quality audio.",
)
CODEBOOKS = 9
CODEBOOK_SIZE = 1024
# frames one generation may run to: about 2 s of audio at DAC's 86 frames per second
MAX_FRAMES = 172


def write_tiny_checkpoint(folder: Path, seed: int = 0) -> Path:
    """Write the checkpoint into `folder` (created) and return it."""
    import sentencepiece as spm
    import torch
    from parler_tts import ParlerTTSConfig, ParlerTTSDecoderConfig, ParlerTTSForConditionalGeneration
    from parler_tts.dac_wrapper import DACConfig
    from transformers import AutoTokenizer, T5Config, T5Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    # 1. A T5 tokenizer, slow and fast, as the public checkpoints ship both
    with tempfile.TemporaryDirectory() as scratch:
        prefix = str(Path(scratch) / "spiece")
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(_TOKENIZER_TEXT * 20),
            model_prefix=prefix,
            vocab_size=128,
            hard_vocab_limit=False,
            model_type="unigram",
            pad_id=0,
            eos_id=1,
            unk_id=2,
            bos_id=-1,
            minloglevel=2,
        )
        slow = T5Tokenizer(f"{prefix}.model", extra_ids=0, legacy=False)
        slow.save_pretrained(folder)
    AutoTokenizer.from_pretrained(folder).save_pretrained(folder)  # the fast one: tokenizer.json

    # 2. The model: Parler's three parts at their smallest, codebook ids as in the public configs
    pad, bos = CODEBOOK_SIZE, CODEBOOK_SIZE + 1
    config = ParlerTTSConfig.from_sub_models_config(
        T5Config(vocab_size=len(slow), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2),
        DACConfig(num_codebooks=CODEBOOKS, codebook_size=CODEBOOK_SIZE, latent_dim=1024),
        # ids above bos are never needed: a random head must not be able to emit them
        ParlerTTSDecoderConfig(
            vocab_size=bos + 1,
            hidden_size=32,
            ffn_dim=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_codebooks=CODEBOOKS,
            pad_token_id=pad,
            bos_token_id=bos,
            eos_token_id=pad,
            max_position_embeddings=2 * MAX_FRAMES,
        ),
    )
    config.decoder_start_token_id = bos
    config.pad_token_id = pad
    model = ParlerTTSForConditionalGeneration(config)
    generation = model.generation_config
    generation.max_length = MAX_FRAMES
    generation.do_sample = True
    generation.decoder_start_token_id = bos
    generation.bos_token_id = bos
    generation.pad_token_id = pad
    generation.eos_token_id = pad
    model.save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m models.tts.parler_fixture OUT_DIR", file=sys.stderr)
        return 2
    print(write_tiny_checkpoint(Path(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
