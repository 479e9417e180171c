"""Train the diffusion renderer's emotion adapter on Hallo's frozen model; register the weights.

    Hallo's weights folder (--weights DIR) + clips (*.npz) ─ train N steps ─> "renderer-weights" artifact
                                                                    (+ the adapter folder, optional)

Run: .venv/bin/python -m flows.train_renderer --weights DIR --steps 1000 [--name NAME] clip1.npz ...
See docs/diffusion.md for the data format and the GPU recipe.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from prefect import flow

from stores.store import SYSTEM_ACTOR
from tasks.train_renderer import DEFAULT_NAME, train_renderer_weights


@dataclass(frozen=True)
class TrainedRenderer:
    weights_sha256: str  # the "renderer-weights" artifact
    clip_sha256: list[str]
    losses: list[float]
    export_dir: str | None


@flow(name="train-renderer", validate_parameters=False)
def train_renderer(
    weights: str,
    clips: list[str],
    steps: int = 1000,
    learning_rate: float = 1e-5,
    seed: int = 0,
    device: str = "cpu",
    dtype: str | None = None,
    motion_frames: int = 2,
    condition_drop: float = 0.05,
    export_dir: str | None = None,
    name: str = DEFAULT_NAME,
    actor: str = SYSTEM_ACTOR,
) -> TrainedRenderer:
    out = train_renderer_weights(
        weights,
        clips,
        steps,
        learning_rate=learning_rate,
        seed=seed,
        device=device,
        dtype=dtype,
        motion_frames=motion_frames,
        condition_drop=condition_drop,
        export_dir=export_dir,
        name=name,
        actor=actor,
    )
    return TrainedRenderer(
        weights_sha256=out["weights"].sha256,
        clip_sha256=[r.sha256 for r in out["clips"]],
        losses=out["losses"],
        export_dir=out["export_dir"],
    )


def main(argv: list[str] | None = None) -> TrainedRenderer:
    parser = argparse.ArgumentParser(prog="python -m flows.train_renderer", description=__doc__)
    parser.add_argument("clips", nargs="+", help="training clips, .npz (models/render/diffusion/training.py)")
    parser.add_argument(
        "--weights", required=True, help="Hallo's pretrained_models folder (docs/diffusion.md)"
    )
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dtype", default=None, help="float32 (default), bfloat16; float16 is not for training"
    )
    parser.add_argument(
        "--export",
        default=None,
        help="also save the adapter here (use it as <weights>/emoflow/emotion_adapter)",
    )
    parser.add_argument(
        "--name", default=DEFAULT_NAME, help="register the trained weights under this name in the store"
    )
    args = parser.parse_args(argv)
    result = train_renderer(
        args.weights,
        args.clips,
        steps=args.steps,
        learning_rate=args.lr,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
        export_dir=args.export,
        name=args.name,
    )
    print(f"renderer-weights {result.weights_sha256}  final loss {result.losses[-1]:.5f}")
    return result


if __name__ == "__main__":
    main()
