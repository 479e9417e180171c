"""The curve editor's form: which words a posted form changes, as edits, and the word rows a page shows
(as the curve has them, or as a rejected form sent them, with the faulty fields marked)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from kernel.errors import InputError, ItemError


def form_edits(curve: dict[str, Any], form: Any) -> list[dict[str, Any]]:
    """Per-word rows that differ from the curve (neighbours given the same label and intensity
    become one span, as the transcript editor selects them), then the optional span row (applied last)."""
    changed: list[tuple[int, Any, Any]] = []
    for point in curve["points"]:
        i = point["index"]
        label, intensity = form.get(f"label_{i}"), form.get(f"intensity_{i}")
        if label is None or intensity is None:
            continue
        try:
            differs = label != point["label"] or abs(float(intensity) - point["intensity"]) > 1e-6
        except ValueError:
            differs = True  # let validation name the bad number
        if differs:
            changed.append((i, label, intensity))
    edits = _spans(changed)
    if form.get("span_start") not in (None, "") and form.get("span_stop") not in (None, ""):
        edits.append(
            {
                "start": form.get("span_start"),
                "stop": form.get("span_stop"),
                "label": form.get("span_label"),
                "intensity": form.get("span_intensity"),
            }
        )
    return edits


def _spans(changed: list[tuple[int, Any, Any]]) -> list[dict[str, Any]]:
    """(index, label, intensity) rows in index order as edits: a run of neighbours that got the very
    same label and intensity is one {start, stop} span, a lone word one {index}."""
    runs: list[list[tuple[int, Any, Any]]] = []
    for row in changed:
        last = runs[-1][-1] if runs else None
        if last is not None and row[0] == last[0] + 1 and row[1:] == last[1:]:
            runs[-1].append(row)
        else:
            runs.append([row])
    edits: list[dict[str, Any]] = []
    for group in runs:
        first, label, intensity = group[0]
        if len(group) == 1:
            edits.append({"index": first, "label": label, "intensity": intensity})
        else:
            edits.append({"start": first, "stop": first + len(group), "label": label, "intensity": intensity})
    return edits


def rejected_words(edits: list[dict[str, Any]], error: InputError, n_words: int) -> dict[int, set[str]]:
    """Word index -> the fields ("label", "intensity") of it that a rejected edit got wrong: the words
    of the edit the ItemError names (validation stops at the first bad one); both fields when it names
    the edit's words or shape. {} when the error names no edit of `edits`: the page shows the message."""
    if not isinstance(error, ItemError) or not 0 <= error.item < len(edits):
        return {}
    fields = {error.field} if error.field in ("label", "intensity") else {"label", "intensity"}
    return {i: set(fields) for i in _edit_words(edits[error.item], n_words)}


def _edit_words(edit: dict[str, Any], n_words: int) -> set[int]:
    """The curve's words an edit (form_edits' {index} or {start, stop}) covers; none where its
    numbers are not integers (the span row's fields arrive as typed)."""
    try:
        if "index" in edit:
            first = int(edit["index"])
            stop = first + 1
        else:
            first, stop = int(edit["start"]), int(edit["stop"])
    except (TypeError, ValueError):
        return set()
    return set(range(max(first, 0), min(stop, n_words)))


def editor_rows(
    curve: dict[str, Any], sent: Mapping[str, Any], wrong: Mapping[int, set[str]], labels: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """One row per word for the transcript and the word table: its label and intensity as `sent` has
    them (strings, kept as typed, even invalid ones) or as the curve has them, and the fields to mark."""
    rows = []
    for point in curve["points"]:
        i = point["index"]
        label = sent.get(f"label_{i}")
        label = label if isinstance(label, str) else str(point["label"])
        intensity = sent.get(f"intensity_{i}")
        intensity = intensity if isinstance(intensity, str) else str(point["intensity"])
        value = _unit(intensity)
        bad = set(wrong.get(i, set()))
        if value is None:
            bad.add("intensity")  # a slider cannot hold it, and validation would refuse it
        shown = value if value is not None else max(0.0, min(1.0, float(point["intensity"])))
        rows.append(
            {
                **point,
                "label": label,
                "intensity": intensity,
                "saved_label": point["label"],
                "saved_intensity": point["intensity"],
                "fits": value is not None,
                "shown": f"{value:.2f}" if value is not None else intensity,
                "level": round(shown * 10),  # the transcript bar's int-N opacity class
                "known_label": label in labels,  # else the select gets an option of its own
                "edited": label != point["label"] or value is None or abs(value - point["intensity"]) > 1e-6,
                "wrong": bad,
            }
        )
    return rows


def _unit(text: str) -> float | None:
    """`text` as a number in 0..1 (what the intensity slider holds), else None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and 0.0 <= value <= 1.0 else None
