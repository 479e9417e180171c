"""The word-level emotion curve as a picture: one coloured bar per word, height = intensity."""

from __future__ import annotations

import io

from models.types import EmotionCurve
from models.vocabulary import Vocabulary


def curve_png(curve: EmotionCurve, vocabulary: Vocabulary, title: str = "") -> bytes:
    # imported here: matplotlib costs every CLI process ~0.4 s, and only this stage draws. A bare Figure
    # (no pyplot) needs no display, no backend choice and no global figure registry to close.
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    colors = {name: emotion.color for name, emotion in vocabulary.emotions.items()}
    width = min(24.0, max(8.0, 0.35 * len(curve.points)))
    figure = Figure(figsize=(width, 5.0))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for point in curve.points:
        span = max(point.end - point.start, 0.02)
        top.bar(point.start, point.intensity, width=span, align="edge", color=colors.get(point.label, "#444"))
        top.text(
            point.start + span / 2,
            point.intensity + 0.02,
            point.text,
            rotation=90,
            ha="center",
            va="bottom",
            fontsize=7,
        )
        # stacked label distribution beneath: how sure the predictor was
        base = 0.0
        for label in curve.labels:
            share = point.distribution.get(label, 0.0)
            bottom.bar(
                point.start, share, width=span, bottom=base, align="edge", color=colors.get(label, "#444")
            )
            base += share
    top.set_ylim(0, 1.35)
    top.set_ylabel("intensity")
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("p(label)")
    bottom.set_xlabel("time (s)")
    top.set_title(title or "word-level emotion curve")
    top.legend(
        handles=[Patch(color=colors[label], label=label) for label in curve.labels if label in colors],
        loc="upper right",
        ncol=len(curve.labels),
        fontsize=8,
    )
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
