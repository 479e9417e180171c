"""Curve edits: a person's corrected labels and intensities, applied to a predicted emotion curve.

The edit is the `feel` stage's other engine, `curve-edit`: its cache key covers the source curve's hash
and the edits, so the same edit is committed once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from kernel.errors import InputError, ItemError
from models.identity import EngineIdentity, describe
from models.types import EmotionCurve
from models.vocabulary import load_vocabulary, vocabulary_table

EDIT_SOURCE = "edit"  # the source name an edited point's explanation shows


class CurveEditor:
    """The engine of an edited curve: edits are its parameters, the source curve its input."""

    name = "curve-edit"
    version = "1"

    def identity(self) -> EngineIdentity:
        return describe(
            self, tables=[vocabulary_table(load_vocabulary(), "neutral_label", "emotions.*.synonyms")]
        )

    def apply(self, curve: EmotionCurve, edits: list[CurveEdit]) -> EmotionCurve:
        return apply_edits(curve, edits)


@dataclass(frozen=True)
class CurveEdit:
    """Words [first, stop) get `label` at `intensity`."""

    first: int
    stop: int
    label: str
    intensity: float


def parse_edits(raw: list[dict[str, Any]], n_words: int) -> list[CurveEdit]:
    """Validate edits given as {index | start+stop, label, intensity}; labels may be synonyms."""
    if not raw:
        raise InputError("no edits given: send at least one {index, label, intensity}")
    vocabulary = load_vocabulary()
    edits = []
    for number, item in enumerate(raw):
        where = f"edit {number}"
        if not isinstance(item, dict):
            raise ItemError(
                f"{where}: expected an object with index (or start and stop), label, intensity", number
            )
        if "index" in item:
            first = _int(item["index"], number, "index")
            stop = first + 1
        elif "start" in item and "stop" in item:
            first, stop = _int(item["start"], number, "start"), _int(item["stop"], number, "stop")
        else:
            raise ItemError(f"{where}: give a word `index`, or a span `start` and `stop` (exclusive)", number)
        if not 0 <= first < stop <= n_words:
            raise ItemError(
                f"{where}: words {first}..{stop - 1} are outside the curve's {n_words} words", number
            )
        try:
            label = vocabulary.emotion(str(item.get("label", ""))).name  # its message lists valid labels
        except InputError as exc:
            raise ItemError(f"{where}.label: {exc}", number, "label") from None
        try:
            intensity = float(item.get("intensity"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ItemError(
                f"{where}.intensity: expected a number from 0 to 1", number, "intensity"
            ) from None
        if not (math.isfinite(intensity) and 0.0 <= intensity <= 1.0):
            raise ItemError(f"{where}.intensity: {intensity} is outside 0..1", number, "intensity")
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


def _int(value: Any, number: int, field: str) -> int:
    problem = ItemError(f"edit {number}.{field}: expected a word index (an integer)", number, field)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise problem
    try:
        return int(value)
    except ValueError:
        raise problem from None
