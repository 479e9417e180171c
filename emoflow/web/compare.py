"""What differs between two runs, for the compare page: words aligned by their text, and stages.

Pure functions over curve documents and step records, so the page's highlights are computed (and
tested) here; compare.js only plays the two runs' media in step.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stores.records import ArtifactRef, StepRecord

INTENSITY_CHANGE = 0.05  # a word whose intensity moved by more than this counts as changed
# what "play both" plays, best first: the published video, else the speech a listener hears
PLAYBACK = (("publish", "video"), ("publish", "delivery_speech"), ("speak", "speech"))


@dataclass(frozen=True)
class WordRow:
    """One word of either run: `a` and `b` are its curve points (None where only the other run has it)."""

    a: dict[str, Any] | None
    b: dict[str, Any] | None
    differences: tuple[str, ...]  # "label", "intensity", "only in a", "only in b"

    @property
    def changed(self) -> bool:
        return bool(self.differences)

    @property
    def text(self) -> str:
        return str((self.b or self.a or {}).get("text", ""))


@dataclass(frozen=True)
class StageRow:
    """One stage of either run, with what differs between the two steps."""

    stage: str
    a: StepRecord | None
    b: StepRecord | None
    differences: tuple[str, ...]  # "cache key", "outputs", "only in a", "only in b"

    @property
    def changed(self) -> bool:
        return bool(self.differences)

    @property
    def reused(self) -> tuple[bool, bool]:
        """Whether each side's step was a cache hit (its outputs reused from an earlier run)."""
        return (self.a is not None and self.a.cache_hit, self.b is not None and self.b.cache_hit)


def word_rows(
    a: dict[str, Any] | None, b: dict[str, Any] | None, threshold: float = INTENSITY_CHANGE
) -> list[WordRow]:
    """The two curves' words aligned by their text (the same script aligns word for word); a word
    present in both is changed when its label differs or its intensity moved by more than `threshold`."""
    points_a = list((a or {}).get("points", []))
    points_b = list((b or {}).get("points", []))
    matcher = difflib.SequenceMatcher(
        a=[_word_key(p) for p in points_a], b=[_word_key(p) for p in points_b], autojunk=False
    )
    rows: list[WordRow] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            pairs = zip(points_a[i1:i2], points_b[j1:j2], strict=True)
            rows += [_pair(pa, pb, threshold) for pa, pb in pairs]
            continue
        # replaced stretches pair up in order; what is left over is in one run only
        left, right = points_a[i1:i2], points_b[j1:j2]
        paired = min(len(left), len(right)) if tag == "replace" else 0
        for pa, pb in zip(left[:paired], right[:paired], strict=True):
            row = _pair(pa, pb, threshold)
            rows.append(WordRow(pa, pb, ("text", *row.differences)))
        rows += [WordRow(pa, None, ("only in a",)) for pa in left[paired:]]
        rows += [WordRow(None, pb, ("only in b",)) for pb in right[paired:]]
    return rows


def stage_rows(a: Sequence[StepRecord], b: Sequence[StepRecord]) -> list[StageRow]:
    """Each stage of either run (in the order the runs ran them); a stage differs when its cache key
    or any of its outputs' hashes differ. The last step of a stage stands for it (a retried step)."""
    steps_a = {s.stage: s for s in a}
    steps_b = {s.stage: s for s in b}
    order = list(dict.fromkeys([*steps_a, *steps_b]))
    rows = []
    for stage in order:
        sa, sb = steps_a.get(stage), steps_b.get(stage)
        if sa is None or sb is None:
            rows.append(StageRow(stage, sa, sb, ("only in b",) if sa is None else ("only in a",)))
            continue
        differences = []
        if sa.cache_key != sb.cache_key:
            differences.append("cache key")
        if _hashes(sa.outputs) != _hashes(sb.outputs):
            differences.append("outputs")
        rows.append(StageRow(stage, sa, sb, tuple(differences)))
    return rows


def playback_media(steps: Sequence[StepRecord]) -> tuple[str, ArtifactRef] | None:
    """The (stage/name, artifact) "play both" plays for a run: its video, else its speech."""
    outputs = {(s.stage, name): ref for s in steps for name, ref in s.outputs.items()}
    for key in PLAYBACK:
        if key in outputs:
            return f"{key[0]}/{key[1]}", outputs[key]
    return None


def _pair(a: dict[str, Any], b: dict[str, Any], threshold: float) -> WordRow:
    differences = []
    if a.get("label") != b.get("label"):
        differences.append("label")
    if abs(float(a.get("intensity", 0.0)) - float(b.get("intensity", 0.0))) > threshold:
        differences.append("intensity")
    return WordRow(a, b, tuple(differences))


def _word_key(point: dict[str, Any]) -> str:
    return "".join(ch for ch in str(point.get("text", "")).lower() if ch.isalnum())


def _hashes(outputs: dict[str, ArtifactRef]) -> dict[str, str]:
    return {name: ref.sha256 for name, ref in outputs.items()}
