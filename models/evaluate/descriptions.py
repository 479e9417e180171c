"""Scoring a planner on hand-written (script, description, expected per-word labels) cases."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any, Protocol

import yaml

from kernel.errors import InputError
from models.evaluate.classification import score_labels
from models.types import EmotionPlan

_RUN_RE = re.compile(r"^([a-z_]+)\*(\d+)$")


class Planner(Protocol):
    def plan(self, script: str, description: str = "") -> EmotionPlan: ...


def expand_runs(runs: str) -> list[str]:
    """ "neutral*2 angry*1" -> ["neutral", "neutral", "angry"]."""
    labels: list[str] = []
    for run in runs.split():
        match = _RUN_RE.match(run)
        if match is None:
            raise ValueError(f"bad run {run!r}: write label*count, e.g. angry*3")
        labels += [match.group(1)] * int(match.group(2))
    return labels


def compress_runs(labels: list[str]) -> str:
    """The inverse of expand_runs, for reports."""
    runs: list[str] = []
    for label in labels:
        if runs and runs[-1].rsplit("*", 1)[0] == label:
            name, count = runs[-1].rsplit("*", 1)
            runs[-1] = f"{name}*{int(count) + 1}"
        else:
            runs.append(f"{label}*1")
    return " ".join(runs)


def trend_holds(values: list[float], direction: str) -> bool:
    """Rising: never falls and ends above its start; falling: the mirror image."""
    if len(values) < 2:
        return False
    sign = 1.0 if direction == "rising" else -1.0
    steps = [sign * (b - a) for a, b in itertools.pairwise(values)]
    return all(step >= -1e-9 for step in steps) and sign * (values[-1] - values[0]) > 0


def evaluate_description_cases(path: Path, planner: Planner) -> dict[str, Any]:
    """Word accuracy over all cases, per-case results and a classification report over the words.

    A case passes when every word has its expected label, its trends hold and its expected warnings appear.
    A case whose plan fails (InputError) or has a different number of words counts all its words as wrong.
    """
    cases = yaml.safe_load(path.read_text(encoding="utf-8"))
    truth: list[str] = []
    predicted: list[str] = []
    n_words = n_correct = 0
    results: list[dict[str, Any]] = []
    for case in cases:
        expected = expand_runs(case["expect"])
        n_words += len(expected)
        result: dict[str, Any] = {
            "id": case["id"],
            "covers": case.get("covers", ""),
            "expected": case["expect"],
        }
        try:
            plan = planner.plan(case["script"], case.get("description", ""))
        except InputError as exc:
            results.append(
                {**result, "error": str(exc), "correct": 0, "words": len(expected), "passed": False}
            )
            continue
        labels = [w.label for w in plan.words]
        result.update(predicted=compress_runs(labels), warnings=plan.warnings, words=len(expected))
        if len(labels) != len(expected):
            result.update(error=f"plan has {len(labels)} words, case expects {len(expected)}", correct=0)
            results.append({**result, "passed": False})
            continue
        correct = sum(t == p for t, p in zip(expected, labels, strict=True))
        n_correct += correct
        truth += expected
        predicted += labels
        trends_failed = [
            label
            for label, direction in (case.get("trend") or {}).items()
            if not trend_holds([w.intensity for w in plan.words if w.label == label], direction)
        ]
        missing = [s for s in case.get("warnings", []) if not any(s in w for w in plan.warnings)]
        result.update(
            correct=correct,
            trends_failed=trends_failed,
            warnings_missing=missing,
            passed=correct == len(expected) and not trends_failed and not missing,
        )
        results.append(result)
    report = score_labels(truth, predicted)
    passed = sum(r["passed"] for r in results)
    return {
        "cases": len(results),
        "cases_passed": passed,
        "words": n_words,
        "word_accuracy": n_correct / n_words if n_words else 0.0,
        "failing": [r["id"] for r in results if not r["passed"]],
        "results": results,
        "report": report.to_dict(),
    }
