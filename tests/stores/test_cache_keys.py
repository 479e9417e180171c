import math

import pytest

from kernel.errors import InputError
from stores.cache_keys import canonical_json, step_cache_key

INPUTS = {"plan": "a" * 64}


def key(**overrides: object) -> str:
    args: dict = {"stage": "render", "engine": "preview", "engine_version": "1.0", "params": {"fps": 25}}
    args.update(overrides)
    return step_cache_key(args["stage"], args["engine"], args["engine_version"], args["params"], INPUTS)


def test_key_ignores_mapping_order_and_number_spelling() -> None:
    a = step_cache_key("render", "preview", "1", {"fps": 25, "size": 512.0, "x": (1, 2)}, INPUTS)
    b = step_cache_key("render", "preview", "1", {"x": [1, 2], "size": 512, "fps": 25.0}, INPUTS)
    assert a == b


def test_float_noise_below_twelve_digits_is_absorbed() -> None:
    assert canonical_json({"v": 0.1 + 0.2}) == canonical_json({"v": 0.3})
    assert canonical_json({"v": 0.3001}) != canonical_json({"v": 0.3})


@pytest.mark.parametrize(
    "change",
    [
        {"stage": "publish"},
        {"engine": "diffusion"},
        {"engine_version": "1.1"},
        {"params": {"fps": 30}},
        {"params": {"fps": 25, "seed": 1}},
    ],
)
def test_every_determinant_changes_the_key(change: dict) -> None:
    assert key(**change) != key()


def test_input_hashes_change_the_key() -> None:
    base = step_cache_key("feel", "efp", "1", {}, {"speech": "1" * 64})
    assert base != step_cache_key("feel", "efp", "1", {}, {"speech": "2" * 64})
    assert base != step_cache_key("feel", "efp", "1", {}, {"audio": "1" * 64})


def test_key_is_hex_sha256() -> None:
    assert len(key()) == 64
    int(key(), 16)


@pytest.mark.parametrize("bad", [math.nan, math.inf, object()])
def test_unhashable_parameters_are_rejected(bad: object) -> None:
    with pytest.raises(InputError):
        key(params={"x": bad})
