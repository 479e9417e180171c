"""List the tensor layout of Hallo2's ``net.pth`` by running Hallo2's ORIGINAL code (not run in CI).

Hallo2 (fudan-generative-vision/hallo2, MIT; written against commit 58a9aa6) keeps Hallo's ``hallo``
package. This script imports it from a checkout given with ``--hallo2``, builds the ``Net`` that
``scripts/inference_long.py`` strictly loads ``net.pth`` into, on the meta device, from SD-1.5's public
UNet config and the checkout's ``configs/inference/long.yaml`` (no weights are read), and writes
``{source, count, counts, parameters, tensors: {name: shape}, buffers}`` as JSON. With ``--compare`` it
also diffs that layout against another listing (``tests/fixtures/hallo/hallo_tensors.json``) and records
the result under ``comparison``.

The module constructor arguments are read from ``scripts/inference_long.py`` itself (its literal keyword
arguments to ``FaceLocator``, ``ImageProjModel`` and ``AudioProjModel``) and checked against Hallo's.

It reuses ``make_fixtures.py``'s helpers and throwaway environment (see there). Hallo2's requirements
pin diffusers 0.32.2 (0.27.2 until its commit 58a9aa6, i.e. when ``net.pth`` was released); to list
the layout under 0.32.2 put a copy of it first on ``PYTHONPATH`` instead of changing the environment::

    /tmp/hallo-env/bin/pip install --no-deps --target /tmp/hallo2-work/diffusers-0.32.2 diffusers==0.32.2
    HF_HOME=/tmp/hallo-work/hf /tmp/hallo-env/bin/python bench/hallo_fixtures/hallo2_tensors.py \\
        --hallo2 /tmp/hallo2 --out tests/fixtures/hallo/hallo2_tensors.json \\
        --compare tests/fixtures/hallo/hallo_tensors.json
    PYTHONPATH=/tmp/hallo2-work/diffusers-0.32.2 /tmp/hallo-env/bin/python \\
        bench/hallo_fixtures/hallo2_tensors.py --hallo2 /tmp/hallo2 --out /tmp/hallo2-work/t.json \\
        --compare tests/fixtures/hallo/hallo_tensors.json
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_fixtures as mf  # first: it sets HF_HUB_OFFLINE / TQDM_DISABLE before torch is imported
import torch

HALLO2_COMMIT = "58a9aa6"
INFERENCE_SCRIPT = "scripts/inference_long.py"
INFERENCE_CONFIG = "configs/inference/long.yaml"
# The modules whose constructor keywords are read from the inference script, and Hallo's values.
CONSTRUCTORS: dict[str, dict[str, Any]] = {
    "FaceLocator": mf.FULL_FACE_LOCATOR,
    "ImageProjModel": mf.FULL_IMAGE_PROJ,
    "AudioProjModel": mf.FULL_AUDIO_PROJ,
}
SHOWN = 20  # names listed per kind of difference


def constructor_kwargs(script: Path) -> dict[str, dict[str, Any]]:
    """The literal keyword arguments of each call to a CONSTRUCTORS class in ``script``."""
    found: dict[str, dict[str, Any]] = {}
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CONSTRUCTORS:
            kwargs: dict[str, Any] = {}
            for keyword in node.keywords:
                try:
                    kwargs[str(keyword.arg)] = ast.literal_eval(keyword.value)
                except ValueError:
                    kwargs[str(keyword.arg)] = None  # not a literal (e.g. read from the UNet's config)
            assert node.func.id not in found, f"{node.func.id} is constructed twice in {script}"
            found[node.func.id] = kwargs
    return found


def literal_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in kwargs.items() if value is not None}


def load_yaml(path: Path) -> dict[str, Any]:
    from omegaconf import OmegaConf

    config: Any = OmegaConf.to_container(OmegaConf.load(path))
    assert isinstance(config, dict)
    return config


def layout(net: torch.nn.Module) -> dict[str, Any]:
    """Names, shapes, parameter count and persistent buffers of ``net.state_dict()``."""
    state = net.state_dict()
    buffers = dict(net.named_buffers())
    names = sorted(state)
    return {
        "count": len(names),
        "counts": dict(sorted(Counter(name.split(".")[0] for name in names).items())),
        "parameters": sum(state[name].numel() for name in names if name not in buffers),
        "tensors": {name: list(state[name].shape) for name in names},
        "buffers": {"names": sorted(name for name in buffers if name in state)},
    }


def compare(ours: dict[str, list[int]], theirs: dict[str, list[int]], reference: str) -> dict[str, Any]:
    """Names only in ours / only in theirs, and shared names whose shapes differ."""
    only_ours = sorted(set(ours) - set(theirs))
    only_theirs = sorted(set(theirs) - set(ours))
    reshaped = sorted(name for name in set(ours) & set(theirs) if ours[name] != theirs[name])
    return {
        "reference": reference,
        "reference_count": len(theirs),
        "identical": not (only_ours or only_theirs or reshaped),
        "only_in_hallo2": {"total": len(only_ours), "first": only_ours[:SHOWN]},
        "only_in_reference": {"total": len(only_theirs), "first": only_theirs[:SHOWN]},
        "shape_differences": {
            "total": len(reshaped),
            "first": {name: {"hallo2": ours[name], "reference": theirs[name]} for name in reshaped[:SHOWN]},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--hallo2", type=Path, required=True, help="a checkout of fudan-generative-vision/hallo2"
    )
    parser.add_argument("--config", default=INFERENCE_CONFIG, help="inference config, relative to --hallo2")
    parser.add_argument("--out", type=Path, required=True, help="output JSON file")
    parser.add_argument("--compare", type=Path, help="a listing to diff against (hallo_tensors.json)")
    args = parser.parse_args()

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)

    kwargs = constructor_kwargs(args.hallo2 / INFERENCE_SCRIPT)
    assert sorted(kwargs) == sorted(CONSTRUCTORS), f"constructors found: {sorted(kwargs)}"
    for name, hallo_kwargs in CONSTRUCTORS.items():
        literal = literal_kwargs(kwargs[name])
        assert literal == hallo_kwargs, f"{name}: Hallo2 {literal} != Hallo {hallo_kwargs}"
    yaml_config = load_yaml(args.hallo2 / args.config)

    hallo2 = mf.import_hallo(args.hallo2)
    with torch.device("meta"):
        net = mf.build_net(
            hallo2,
            mf.SD15_UNET_CONFIG,
            yaml_config["unet_additional_kwargs"],
            literal_kwargs(kwargs["FaceLocator"]),
            literal_kwargs(kwargs["ImageProjModel"]),
            literal_kwargs(kwargs["AudioProjModel"]),
        )
    versions = mf.versions()
    listing: dict[str, Any] = {
        "source": (
            f"fudan-generative-vision/hallo2@{HALLO2_COMMIT}: {INFERENCE_SCRIPT}'s Net built on the meta "
            f"device from runwayml/stable-diffusion-v1-5 unet/config.json and {args.config} "
            "(unet_additional_kwargs), by bench/hallo_fixtures/hallo2_tensors.py; "
            f"diffusers {versions['diffusers']}, torch {versions['torch']}. Keys are net.state_dict() "
            "keys, i.e. those of the released net.pth (the script loads it strictly)."
        ),
        "constructor_kwargs": kwargs,
        **layout(net),
    }
    if args.compare is not None:
        reference = json.loads(args.compare.read_text())["tensors"]
        listing["comparison"] = compare(listing["tensors"], reference, args.compare.name)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(mf.dump_json(listing))

    counts, parameters = listing["counts"], listing["parameters"]
    print(f"{args.out.name}: {listing['count']} tensors {counts}, {parameters:,} parameters")
    if "comparison" in listing:
        result = listing["comparison"]
        print(
            f"vs {result['reference']} ({result['reference_count']}): identical={result['identical']}, "
            f"only in Hallo2 {result['only_in_hallo2']['total']}, "
            f"only in reference {result['only_in_reference']['total']}, "
            f"shape differences {result['shape_differences']['total']}"
        )


if __name__ == "__main__":
    main()
