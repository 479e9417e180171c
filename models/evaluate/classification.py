"""Scores for any labelling task (EFP words, judge frames, planner words): accuracy, macro-F1,
per-class precision/recall/F1 and a confusion-matrix PNG."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class ClassificationReport:
    labels: list[str]
    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]  # label -> precision, recall, f1, support
    confusion: list[list[int]]  # rows: true label, columns: predicted, in `labels` order
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "n": self.n,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class": self.per_class,
            "confusion": self.confusion,
        }


def score_labels(
    truth: list[str], predicted: list[str], labels: list[str] | None = None
) -> ClassificationReport:
    """Macro-F1 averages over the labels that occur in `truth`, so absent classes do not count as zeros."""
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} true labels but {len(predicted)} predictions")
    order = list(labels) if labels is not None else sorted(set(truth) | set(predicted))
    index = {label: i for i, label in enumerate(order)}
    unknown = sorted({x for x in [*truth, *predicted] if x not in index})
    if unknown:
        raise ValueError(f"labels {unknown} are not in {order}")
    matrix = np.zeros((len(order), len(order)), dtype=int)
    for t, p in zip(truth, predicted, strict=True):
        matrix[index[t], index[p]] += 1
    per_class: dict[str, dict[str, float]] = {}
    f1s: list[float] = []
    for i, label in enumerate(order):
        tp = float(matrix[i, i])
        support = float(matrix[i].sum())
        claimed = float(matrix[:, i].sum())
        precision = tp / claimed if claimed else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
        if support:
            f1s.append(f1)
    n = len(truth)
    return ClassificationReport(
        labels=order,
        accuracy=float(np.trace(matrix) / n) if n else 0.0,
        macro_f1=float(np.mean(f1s)) if f1s else 0.0,
        per_class=per_class,
        confusion=matrix.tolist(),
        n=n,
    )


def save_confusion_png(report: ClassificationReport, path: Path, title: str) -> Path:
    """Row-normalised confusion matrix with counts, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.array(report.confusion, dtype=float)
    rows = np.clip(counts.sum(axis=1, keepdims=True), 1.0, None)
    share = counts / rows
    k = len(report.labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * k, 0.8 + 0.7 * k), dpi=120)
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(k), report.labels, rotation=45, ha="right")
    ax.set_yticks(range(k), report.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\naccuracy {report.accuracy:.1%}, macro-F1 {report.macro_f1:.2f}, n={report.n}")
    for i in range(k):
        for j in range(k):
            if counts[i, j]:
                colour = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", color=colour, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part.png")
    fig.savefig(partial)
    plt.close(fig)
    partial.replace(path)
    return path
