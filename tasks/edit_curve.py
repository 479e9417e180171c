"""Curve edits in the store: a person's corrections (models/efp/edit.py) become a new "emotion-curve".

The edit is a `feel` step whose engine is `curve-edit`; its cache key covers the source curve's
hash and the edits, so the same edit is committed once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kernel.errors import InputError
from models.efp.edit import CurveEdit, CurveEditor, apply_edits, parse_edits
from models.types import ProgressFn
from models.vocabulary import load_vocabulary
from stores.records import ArtifactRef, NewArtifact
from stores.store import ArtifactStore
from tasks.artifacts import json_artifact, load_curve
from tasks.context import open_store
from tasks.stage import run_stage, stage_task
from tasks.stages import EDIT, Felt


def emotion_colors() -> dict[str, str]:
    """Vocabulary label -> plot colour, for callers that must not import models (the web layer)."""
    return {name: emotion.color for name, emotion in load_vocabulary().emotions.items()}


def run_curve(store: ArtifactStore, run_id: str) -> ArtifactRef:
    """The curve a run rendered (the output of its feel step)."""
    for step in store.run(run_id).steps:
        if step.stage == "feel" and "curve" in step.outputs:
            return step.outputs["curve"]
    raise InputError(f"run {run_id} has no emotion curve yet; edit a run whose feel step finished")


def edited_curve_artifact(store: ArtifactStore, source: ArtifactRef, edits: list[CurveEdit]) -> NewArtifact:
    curve = apply_edits(load_curve(store, source), edits)
    labels = sorted({p.label for p in curve.points})
    return json_artifact(
        "curve",
        "emotion-curve",
        curve.to_dict(),
        words=len(curve.points),
        labels=labels,
        edited_from=source.sha256,
    )


def commit_edited_curve(
    store: ArtifactStore, source_run_id: str, raw_edits: list[dict[str, Any]]
) -> tuple[ArtifactRef, list[CurveEdit]]:
    """Validate the edits against the run's curve and store the edited curve (content-addressed,
    so the edit step of the re-render finds the very same artifact)."""
    source = run_curve(store, source_run_id)
    n_words = len(json.loads(store.read_bytes(source.sha256))["points"])
    edits = parse_edits(raw_edits, n_words)
    return store.put_artifact(edited_curve_artifact(store, source, edits)), edits


@stage_task(EDIT)
def edit_curve(run_id: str, source: ArtifactRef, edits: list[dict[str, Any]]) -> Felt:
    store = open_store()
    editor = CurveEditor()
    parsed = [CurveEdit(**e) for e in edits]

    def compute(_workdir: Path, _progress: ProgressFn) -> list[NewArtifact]:
        return [edited_curve_artifact(store, source, parsed)]

    return run_stage(
        store,
        EDIT,  # the curve a run renders is always its feel output, edited or predicted
        run_id=run_id,
        engine=editor,
        params={"edits": edits},
        inputs={"curve": source},
        compute=compute,
    )
