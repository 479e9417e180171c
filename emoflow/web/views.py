"""Server-side pictures for the pages: the word-level curve as SVG, the stage timeline."""

from __future__ import annotations

from html import escape
from typing import Any

from stores.records import RunRecord

WIDTH, HEIGHT, AXIS, LABELS = 960, 180, 24, 70  # px: plot, time axis, rotated words
FALLBACK_COLOR = "#888888"


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


def curve_svg(curve: dict[str, Any], colors: dict[str, str]) -> str:
    """Words on the time axis: one bar per word, coloured by label, as tall as its intensity."""
    points = curve.get("points", [])
    end = max((p["end"] for p in points), default=1.0) or 1.0
    scale = (WIDTH - 20) / end
    top = 10
    parts = [
        f'<svg class="curve" viewBox="0 0 {WIDTH} {HEIGHT + AXIS + LABELS}" role="img" '
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
    for p in points:
        x, w = 10 + p["start"] * scale, max(1.5, (p["end"] - p["start"]) * scale - 1)
        h = max(2.0, p["intensity"] * HEIGHT)
        color = colors.get(p["label"], FALLBACK_COLOR)
        why = "; ".join(
            f"{r['source']}: {r['label']} {r['probability']:.2f} (weight {r['weight']:.2f})"
            for r in explain(p)
        )
        span = f"{p['start']:.2f}-{p['end']:.2f}s"
        title = f"#{p['index']} {p['text']} {span}: {p['label']} {p['intensity']:.2f}. {why}"
        parts.append(
            f'<g class="word" data-index="{p["index"]}"><title>{escape(title)}</title>'
            f'<rect x="{x:.1f}" y="{top + HEIGHT - h:.1f}" width="{w:.1f}" height="{h:.1f}" '
            f'fill="{escape(color)}" fill-opacity="{0.35 + 0.65 * p["intensity"]:.2f}"/>'
            f'<text transform="translate({x + w / 2:.1f},{top + HEIGHT + AXIS + 4}) rotate(50)" '
            f'class="wordlabel">{escape(p["text"])}</text></g>'
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
