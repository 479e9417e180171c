"""Server-side pictures for the pages: the word-level curve as SVG, the stage timeline."""

from __future__ import annotations

import bisect
from html import escape
from typing import Any

from stores.records import RunRecord

WIDTH, HEIGHT, AXIS = 960, 180, 24  # px (viewBox units): plot, time axis
FALLBACK_COLOR = "#888888"
# word labels: horizontal, centred under their bar, on up to LANES rows; a label that fits on no row
# is left out (the bar's tooltip and the evidence table still name the word)
FONT, LANE, LANES, LABEL_GAP = 11.0, 14.0, 4, 4.0
MIN_BAR, MIN_OPACITY = 6.0, 0.6  # a neutral (intensity 0) word still shows as a grey bar
# advance widths in em, rounded up from DejaVu Sans / Verdana (the widest common sans faces), so the
# estimate is an upper bound for the faces `system-ui, sans-serif` resolves to
_EM_NARROW, _EM_SEMI, _EM_WIDE = 0.36, 0.46, 1.02
_NARROW = frozenset("ijlI.,;:!|'`()[]{} ")
_SEMI = frozenset('frt-"/*')
_WIDE = frozenset("mwMW@%")
_TEXT_MARGIN = 1.06


def explain(point: dict[str, Any]) -> list[dict[str, Any]]:
    """Each evidence source's top label, its confidence and the weight it had in the fusion."""
    rows = []
    for name, distribution in sorted(point.get("sources", {}).items()):
        top = max(distribution, key=distribution.get) if distribution else ""
        rows.append(
            {
                "source": name,
                "label": top,
                "probability": distribution.get(top, 0.0),
                "weight": point.get("weights", {}).get(name, 0.0),
            }
        )
    return rows


def text_width(text: str, size: float = FONT) -> float:
    """An upper estimate of `text`'s rendered width in px at font size `size` (see _EM_*)."""
    em = 0.0
    for char in text:
        if char in _NARROW:
            em += _EM_NARROW
        elif char in _SEMI:
            em += _EM_SEMI
        elif char in _WIDE:
            em += _EM_WIDE
        elif char.isascii():
            em += 0.80 if char.isupper() else 0.66  # capitals; lower case and digits
        else:
            em += 0.80 if ord(char) < 0x0250 else 1.05  # accented Latin; other scripts, CJK at 1 em
    return em * size * _TEXT_MARGIN


def label_lanes(boxes: list[tuple[float, float]], priority: list[float]) -> list[int | None]:
    """A row for each label box (left, right), or None where it fits on no row; higher `priority`
    is placed first, so the words that carry emotion keep their labels when space runs out."""
    lanes: list[list[tuple[float, float]]] = [[] for _ in range(LANES)]  # kept sorted by left edge
    placed: list[int | None] = [None] * len(boxes)
    for i in sorted(range(len(boxes)), key=lambda k: (-priority[k], k)):
        left, right = boxes[i]
        for lane, taken in enumerate(lanes):
            at = bisect.bisect_left(taken, (left, right))
            if at > 0 and taken[at - 1][1] + LABEL_GAP > left:
                continue
            if at < len(taken) and right + LABEL_GAP > taken[at][0]:
                continue
            taken.insert(at, (left, right))
            placed[i] = lane
            break
    return placed


def curve_svg(curve: dict[str, Any], colors: dict[str, str]) -> str:
    """Words on the time axis: one bar per word, coloured by label, as tall as its intensity (a word of
    intensity 0 keeps a low grey bar); word labels below, on rows so that none overlaps another."""
    points = curve.get("points", [])
    end = max((p["end"] for p in points), default=1.0) or 1.0
    scale = (WIDTH - 20) / end
    top = 10
    bars = []
    for p in points:
        x, w = 10 + p["start"] * scale, max(1.5, (p["end"] - p["start"]) * scale - 1)
        bars.append((x, w))
    boxes = []
    for (x, w), p in zip(bars, points, strict=True):
        half = text_width(str(p["text"])) / 2
        centre = min(max(x + w / 2, 10 + half), WIDTH - 10 - half)  # kept inside the plot
        boxes.append((centre - half, centre + half))
    lanes = label_lanes(boxes, [float(p["intensity"]) for p in points])
    rows = max((lane + 1 for lane in lanes if lane is not None), default=1)
    height = top + HEIGHT + AXIS + rows * LANE + 6
    parts = [
        f'<svg class="curve" viewBox="0 0 {WIDTH} {height:g}" role="img" '
        f'aria-label="word-level emotion curve" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="10" y1="{top + HEIGHT}" x2="{WIDTH - 10}" y2="{top + HEIGHT}" class="axis"/>',
    ]
    for level in (0.5, 1.0):
        y = top + HEIGHT * (1 - level)
        parts.append(f'<line x1="10" y1="{y}" x2="{WIDTH - 10}" y2="{y}" class="grid"/>')
        parts.append(f'<text x="12" y="{y - 2}" class="tick">{level:.1f}</text>')
    step = _tick_step(end)
    t = 0.0
    while t <= end + 1e-9:
        x = 10 + t * scale
        parts.append(f'<text x="{x:.1f}" y="{top + HEIGHT + 16}" class="tick">{t:g}s</text>')
        t += step
    for (x, w), p, lane, (left, right) in zip(bars, points, lanes, boxes, strict=True):
        intensity = float(p["intensity"])
        h = max(MIN_BAR, intensity * HEIGHT)
        color = colors.get(p["label"], FALLBACK_COLOR)
        why = "; ".join(
            f"{r['source']}: {r['label']} {r['probability']:.2f} (weight {r['weight']:.2f})"
            for r in explain(p)
        )
        span = f"{p['start']:.2f}-{p['end']:.2f}s"
        title = f"#{p['index']} {p['text']} {span}: {p['label']} {intensity:.2f}. {why}"
        label = ""
        if lane is not None:
            y = top + HEIGHT + AXIS + (lane + 1) * LANE - 3
            label = (
                f'<text x="{(left + right) / 2:.1f}" y="{y:g}" text-anchor="middle" '
                f'class="wordlabel lane-{lane}">{escape(str(p["text"]))}</text>'
            )
        opacity = MIN_OPACITY + (1 - MIN_OPACITY) * min(1.0, max(0.0, intensity))
        parts.append(
            f'<g class="word" data-index="{p["index"]}" data-label="{escape(str(p["label"]))}">'
            f"<title>{escape(title)}</title>"
            f'<rect x="{x:.1f}" y="{top + HEIGHT - h:.1f}" width="{w:.1f}" height="{h:.1f}" '
            f'fill="{escape(color)}" fill-opacity="{opacity:.2f}"/>{label}</g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def timeline(run: RunRecord) -> list[dict[str, Any]]:
    """Each step's share of the run's computed time; cache hits show as thin markers."""
    total = sum(s.seconds or 0.0 for s in run.steps) or 1.0
    rows = []
    for s in run.steps:
        percent = max(2.0, 100.0 * (s.seconds or 0.0) / total)
        rows.append(
            {
                "stage": s.stage,
                "engine": f"{s.engine}@{s.engine_version}",
                "status": "cached" if s.cache_hit else s.status,
                "seconds": s.seconds,
                "attempts": s.attempts,
                "percent": percent,
                # the width as a class (page.css has grow-1 to grow-100): the CSP allows no style attribute
                "grow": round(percent),
                "error": s.error,
            }
        )
    return rows


def _tick_step(end: float) -> float:
    for step in (0.25, 0.5, 1, 2, 5, 10, 30, 60):
        if end / step <= 12:
            return float(step)
    return 120.0
