"""Train the learned EFP (the paper's model) from word-labelled clips; register it in the store.

    clip set (clips.jsonl + audio) ─ features ─ train ─> "efp-model" artifact, found by --name

Run: .venv/bin/python -m flows.train_efp CLIPSET_DIR --name NAME [--features embedded|emotion2vec
     --emotion2vec-dir DIR] [--no-text] [--normalise speaker|global]
Then narrate with EMOFLOW_EFP_ENGINE=learned EMOFLOW_EFP_MODEL=NAME. A clip set is what
models/efp/dataset.py describes; for EmoDB: python -m models.efp.emodb ../shared/data/emodb DIR.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from prefect import flow

from stores.store import SYSTEM_ACTOR
from tasks.train_efp import train_efp_model


@dataclass(frozen=True)
class TrainedEFPModel:
    name: str
    model_sha256: str  # the "efp-model" artifact
    clip_set_sha256: str
    metrics: dict[str, object]


@flow(name="train-efp", validate_parameters=False)
def train_efp(
    clip_set: str,
    name: str,
    features: str = "embedded",
    emotion2vec_dir: str | None = None,
    use_text: bool = True,
    epochs: int = 150,
    seed: int = 0,
    normalise: str = "speaker",
    actor: str = SYSTEM_ACTOR,
) -> TrainedEFPModel:
    out = train_efp_model(
        clip_set,
        name,
        features=features,
        emotion2vec_dir=emotion2vec_dir,
        use_text=use_text,
        epochs=epochs,
        seed=seed,
        normalise=normalise,
        actor=actor,
    )
    return TrainedEFPModel(
        name=name,
        model_sha256=out["model"].sha256,
        clip_set_sha256=out["clip_set_sha256"],
        metrics=out["metrics"],
    )


def main(argv: list[str] | None = None) -> TrainedEFPModel:
    parser = argparse.ArgumentParser(prog="python -m flows.train_efp", description=__doc__)
    parser.add_argument("clip_set", help="folder with clips.jsonl (models/efp/dataset.py)")
    parser.add_argument("--name", required=True, help="the model's name; EMOFLOW_EFP_MODEL=NAME uses it")
    parser.add_argument("--features", choices=("embedded", "emotion2vec"), default="embedded")
    parser.add_argument(
        "--emotion2vec-dir",
        default=None,
        help="local iic/emotion2vec_plus_base folder (config.yaml, model.pt)",
    )
    parser.add_argument(
        "--no-text", action="store_true", help="audio only (e.g. when every class says the same)"
    )
    parser.add_argument(
        "--normalise",
        choices=("speaker", "global"),
        default="speaker",
        help="standardise word features per speaker (at prediction: per narration) or only globally",
    )
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = train_efp(
        args.clip_set,
        args.name,
        features=args.features,
        emotion2vec_dir=args.emotion2vec_dir,
        use_text=not args.no_text,
        epochs=args.epochs,
        seed=args.seed,
        normalise=args.normalise,
    )
    print(f"efp-model {result.model_sha256}  name {result.name}  {result.metrics}")
    return result


if __name__ == "__main__":
    main()
