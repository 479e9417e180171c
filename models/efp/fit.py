"""Fitting the embedded EFP's fusion weights: maximum held-out likelihood of the fused distribution.

The engine fuses sources log-linearly: logits[word] = design[word] @ theta, with `design` from
models/efp/engine.py (one column per parameter in `engine.PARAMETERS`: plan where explicit, plan where
default, text, lexicon hit, lexicon borrowed from neighbours, prosody). This module finds theta >= 0 that
minimises the cross-entropy between the fused distribution and the words' target labels, plus an L2 pull
towards 0 (a source earns weight only as far as the data supports it). The loss is convex in theta
(a softmax regression with fixed features), so L-BFGS-B with the analytic gradient finds the optimum.

Temperatures are not separate parameters: a source's log-softmax at temperature T times weight w equals
(w / T) * scores up to a per-word constant, so weight and temperature cannot be told apart by any data.

Where the data comes from (the text set under Piper TTS, EmoDB) is bench/efp_fit.py's business: this module
only sees design tensors and labels, so it is tested without audio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from models.efp.engine import PARAMETERS, Evidence, design
from models.efp.params import FusionWeights
from models.efp.text import softmax

MAX_WEIGHT = 50.0


@dataclass
class FitSet:
    """Words to fit or score: design [words, parameters, labels], target label index, and per-word weight."""

    design: np.ndarray
    target: np.ndarray
    sample_weight: np.ndarray

    @classmethod
    def build(cls, parts: list[tuple[Evidence, np.ndarray]], balance: list[str] | None = None) -> FitSet:
        """Stack (evidence, target indices) parts; `balance[i]` names part i's dataset, and every dataset
        then carries the same total weight however many words it has."""
        designs = [design(ev) for ev, _ in parts]
        targets = [np.asarray(t, dtype=int) for _, t in parts]
        weights = [np.ones(len(t)) for t in targets]
        if balance is not None:
            totals: dict[str, int] = {}
            for name, t in zip(balance, targets, strict=True):
                totals[name] = totals.get(name, 0) + len(t)
            weights = [np.full(len(t), 1.0 / totals[name]) for name, t in zip(balance, targets, strict=True)]
        k = designs[0].shape[2] if designs else 0
        stacked = np.concatenate(designs) if designs else np.zeros((0, len(PARAMETERS), k))
        weight = np.concatenate(weights) if weights else np.zeros(0)
        return cls(
            design=stacked,
            target=np.concatenate(targets) if targets else np.zeros(0, dtype=int),
            sample_weight=weight / max(weight.sum(), 1e-12) * len(weight),
        )

    def __len__(self) -> int:
        return int(self.target.shape[0])


def loss(theta: np.ndarray, data: FitSet, l2: float) -> tuple[float, np.ndarray]:
    """(weighted mean cross-entropy + l2 * |theta|^2, gradient)."""
    logits = np.einsum("npk,p->nk", data.design, theta)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=1))
    rows = np.arange(len(data))
    nll = log_z - shifted[rows, data.target]
    w = data.sample_weight / len(data)
    p = np.exp(shifted - log_z[:, None])
    p[rows, data.target] -= 1.0
    grad = np.einsum("nk,npk,n->p", p, data.design, w)
    return float((w * nll).sum() + l2 * (theta**2).sum()), grad + 2 * l2 * theta


def fit(
    data: FitSet, start: FusionWeights, l2: float = 1e-3, frozen: dict[str, float] | None = None
) -> tuple[FusionWeights, dict[str, object]]:
    """Fitted weights (arousal_gain is copied from `start`) and optimiser facts.

    `frozen` pins parameters to values (an ablation: `{"lexicon": 0, "lexicon_context": 0}`).
    """
    if len(data) == 0:
        raise ValueError("no words to fit on")
    frozen = frozen or {}
    values = start.source_weights()
    theta0 = np.array([values[name] for name in PARAMETERS], dtype=float)
    bounds = [(frozen[name], frozen[name]) if name in frozen else (0.0, MAX_WEIGHT) for name in PARAMETERS]
    for i, name in enumerate(PARAMETERS):
        if name in frozen:
            theta0[i] = frozen[name]
    result = minimize(loss, theta0, args=(data, l2), jac=True, method="L-BFGS-B", bounds=bounds)
    theta = [float(round(x, 4)) for x in result.x]
    fitted = FusionWeights(**dict(zip(PARAMETERS, theta, strict=True)), arousal_gain=start.arousal_gain)
    return fitted, {
        "converged": bool(result.success),
        "message": str(result.message),
        "iterations": int(result.nit),
        "objective": float(result.fun),
    }


def predict(data: FitSet, weights: FusionWeights) -> np.ndarray:
    """[words, labels] fused distributions, exactly as the engine computes them."""
    values = weights.source_weights()
    theta = np.array([values[name] for name in PARAMETERS])
    return softmax(np.einsum("npk,p->nk", data.design, theta))


def scores(data: FitSet, weights: FusionWeights) -> dict[str, float]:
    """Unweighted mean NLL (nats per word) and accuracy of `weights` on `data`."""
    p = predict(data, weights)
    rows = np.arange(len(data))
    return {
        "nll": float(-np.log(np.clip(p[rows, data.target], 1e-12, None)).mean()),
        "accuracy": float((p.argmax(axis=1) == data.target).mean()),
        "words": len(data),
    }
