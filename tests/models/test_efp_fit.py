"""Fitting the EFP's fusion weights: the loss, its gradient, recovery of known weights, the shipped file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.efp import EmbeddedEFP
from models.efp.engine import PARAMETERS, Evidence, design, fuse
from models.efp.fit import FitSet, fit, loss, predict, scores
from models.efp.lexicon import CONTEXT, HIT, NONE
from models.efp.params import FITTED_FILE, HAND_SET, FusionWeights, fitted_weights

K = 7
TRUE = FusionWeights(plan=3.0, plan_default=0.2, text=1.5, lexicon=0.8, lexicon_context=0.3, prosody=0.6)


def random_evidence(rng: np.random.Generator, n: int) -> Evidence:
    def dists() -> np.ndarray:
        logits = rng.normal(0.0, 1.5, size=(n, K))
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    return Evidence(
        plan=dists(),
        explicit=rng.random(n) < 0.5,
        text=dists(),
        lexicon=dists(),
        lexicon_kind=rng.choice([NONE, HIT, CONTEXT], size=n).astype(np.int8),
        prosody=dists(),
        prosody_factor=rng.choice([0.0, 0.5, 1.0], size=n),
        z=np.zeros((n, 3)),
    )


def sampled_set(seed: int, n: int) -> FitSet:
    """Words whose labels are drawn from the fused distribution under TRUE weights."""
    rng = np.random.default_rng(seed)
    ev = random_evidence(rng, n)
    p = fuse(ev, TRUE)
    target = np.array([rng.choice(K, p=row) for row in p])
    return FitSet.build([(ev, target)])


def test_gradient_matches_finite_differences() -> None:
    data = sampled_set(0, 200)
    theta = np.array([1.0, 0.5, 0.7, 0.2, 0.1, 0.3])
    value, grad = loss(theta, data, l2=1e-2)
    step = 1e-6
    numeric = [
        (loss(theta + step * e, data, 1e-2)[0] - loss(theta - step * e, data, 1e-2)[0]) / (2 * step)
        for e in np.eye(len(theta))
    ]
    assert value > 0
    assert grad == pytest.approx(numeric, rel=1e-4, abs=1e-7)


def test_fit_recovers_known_weights_and_beats_the_start() -> None:
    train, held_out = sampled_set(1, 6000), sampled_set(2, 2000)
    fitted, info = fit(train, HAND_SET, l2=0.0)
    assert info["converged"]
    got = fitted.source_weights()
    for name, value in TRUE.source_weights().items():
        assert got[name] == pytest.approx(value, abs=0.25), name
    assert scores(held_out, fitted)["nll"] < scores(held_out, HAND_SET)["nll"]
    assert fitted.arousal_gain == HAND_SET.arousal_gain  # not a fitted parameter


def test_frozen_parameters_stay_put_and_l2_shrinks() -> None:
    data = sampled_set(3, 1500)
    ablated, _ = fit(data, HAND_SET, l2=0.0, frozen={"lexicon": 0.0, "lexicon_context": 0.0})
    assert ablated.lexicon == 0.0 and ablated.lexicon_context == 0.0
    free, _ = fit(data, HAND_SET, l2=0.0)
    shrunk, _ = fit(data, HAND_SET, l2=0.5)
    assert sum(shrunk.source_weights().values()) < sum(free.source_weights().values())
    with pytest.raises(ValueError):
        fit(FitSet.build([]), HAND_SET)


def test_fit_set_balances_datasets_and_predict_matches_the_engine() -> None:
    rng = np.random.default_rng(4)
    big, small = random_evidence(rng, 300), random_evidence(rng, 100)
    data = FitSet.build([(big, np.zeros(300, int)), (small, np.ones(100, int))], ["a", "b"])
    assert data.design.shape == (400, len(PARAMETERS), K)
    assert data.sample_weight[:300].sum() == pytest.approx(data.sample_weight[300:].sum())
    assert np.allclose(predict(data, TRUE)[:300], fuse(big, TRUE))
    assert np.allclose(design(big)[~big.explicit, 0], 0.0)  # explicit-plan column only where explicit


def test_the_engine_runs_the_shipped_fitted_weights() -> None:
    data = json.loads(FITTED_FILE.read_text(encoding="utf-8"))
    shipped = fitted_weights()
    assert shipped.source_weights() == {k: data["weights"][k] for k in PARAMETERS}
    assert shipped != HAND_SET
    assert EmbeddedEFP().weights == shipped
    # user intent: an explicit plan outweighs the default neutral prior
    assert shipped.plan > shipped.plan_default


def test_a_missing_fitted_file_is_an_engine_error(tmp_path: Path) -> None:
    from kernel.errors import EngineError

    with pytest.raises(EngineError, match="fitted"):
        fitted_weights(tmp_path / "absent.json")
