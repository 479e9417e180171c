"""Curve edits: a user's corrected labels and intensities become a new "emotion-curve" artifact.

The edit is a `feel` step whose engine is `curve-edit`; its cache key covers the source curve's
hash and the edits, so the same edit is committed once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from kernel.errors import InputError
from kernel.settings import get_settings
from models.types import EmotionCurve, ProgressFn
from models.vocabulary import load_vocabulary
from stores.records import ArtifactRef, NewArtifact
from stores.store import ArtifactStore
from tasks.artifacts import json_artifact, load_curve
from tasks.context import open_store
from tasks.stage import retry_transient, run_stage

EDIT_ENGINE = "curve-edit"
EDIT_VERSION = "1"
EDIT_SOURCE = "edit"  # the source name an edited point's explanation shows


@dataclass(frozen=True)
class CurveEdit:
    """Words [first, stop) get `label` at `intensity`."""

    first: int
    stop: int
    label: str
    intensity: float


def emotion_colors() -> dict[str, str]:
    """Vocabulary label -> plot colour, for callers that must not import models (the web layer)."""
    return {name: emotion.color for name, emotion in load_vocabulary().emotions.items()}


def parse_edits(raw: list[dict[str, Any]], n_words: int) -> list[CurveEdit]:
    """Validate edits given as {index | start+stop, label, intensity}; labels may be synonyms."""
    if not raw:
        raise InputError("no edits given: send at least one {index, label, intensity}")
    vocabulary = load_vocabulary()
    edits = []
    for number, item in enumerate(raw):
        where = f"edit {number}"
        if not isinstance(item, dict):
            raise InputError(f"{where}: expected an object with index (or start and stop), label, intensity")
        if "index" in item:
            first = _int(item["index"], f"{where}.index")
            stop = first + 1
        elif "start" in item and "stop" in item:
            first, stop = _int(item["start"], f"{where}.start"), _int(item["stop"], f"{where}.stop")
        else:
            raise InputError(f"{where}: give a word `index`, or a span `start` and `stop` (exclusive)")
        if not 0 <= first < stop <= n_words:
            raise InputError(f"{where}: words {first}..{stop - 1} are outside the curve's {n_words} words")
        label = vocabulary.emotion(str(item.get("label", ""))).name  # InputError lists valid labels
        try:
            intensity = float(item.get("intensity"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InputError(f"{where}.intensity: expected a number from 0 to 1") from None
        if not (math.isfinite(intensity) and 0.0 <= intensity <= 1.0):
            raise InputError(f"{where}.intensity: {intensity} is outside 0..1")
        edits.append(CurveEdit(first, stop, label, round(intensity, 4)))
    return edits


def apply_edits(curve: EmotionCurve, edits: list[CurveEdit]) -> EmotionCurve:
    """Edited words become certain of their new label; their evidence is kept for the explanation,
    with an `edit` source that carries all the weight. Later edits win over earlier ones."""
    points = list(curve.points)
    for edit in edits:
        for i in range(edit.first, edit.stop):
            point = points[i]
            onehot = {label: (1.0 if label == edit.label else 0.0) for label in curve.labels}
            points[i] = replace(
                point,
                label=edit.label,
                intensity=edit.intensity,
                distribution=onehot,
                sources={**point.sources, EDIT_SOURCE: {edit.label: 1.0}},
                weights={**{name: 0.0 for name in point.weights}, EDIT_SOURCE: 1.0},
            )
    return EmotionCurve(labels=list(curve.labels), points=points, engine=curve.engine)


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


@task(
    name="edit-curve",
    retries=get_settings().task_retries,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def edit_curve(run_id: str, source: ArtifactRef, edits: list[dict[str, Any]]) -> dict[str, ArtifactRef]:
    store = open_store()
    parsed = [CurveEdit(**e) for e in edits]

    def compute(_workdir: Path, _progress: ProgressFn) -> list[NewArtifact]:
        return [edited_curve_artifact(store, source, parsed)]

    return run_stage(
        store,
        run_id=run_id,
        stage="feel",  # the curve a run renders is always its feel output, edited or predicted
        engine=EDIT_ENGINE,
        engine_version=EDIT_VERSION,
        params={"edits": edits},
        inputs={"curve": source},
        compute=compute,
    )


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InputError(f"{where}: expected a word index (an integer)")
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{where}: expected a word index (an integer)") from None
