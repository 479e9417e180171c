"""Scores and the confusion PNG used by every evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.evaluate.classification import save_confusion_png, score_labels


def test_scores_match_hand_counts() -> None:
    report = score_labels(["a", "a", "b", "c"], ["a", "b", "b", "a"], ["a", "b", "c"])
    assert report.accuracy == pytest.approx(0.5)
    assert report.confusion == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert report.per_class["a"]["precision"] == pytest.approx(0.5)
    assert report.per_class["b"]["recall"] == pytest.approx(1.0)
    # f1: a = 0.5, b = 2/3, c = 0 -> macro over the three present classes
    assert report.macro_f1 == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)


def test_absent_classes_do_not_dilute_macro_f1() -> None:
    report = score_labels(["a", "b"], ["a", "b"], ["a", "b", "c"])
    assert report.macro_f1 == pytest.approx(1.0)
    assert report.per_class["c"]["support"] == 0


def test_rejects_unknown_labels_and_length_mismatch() -> None:
    with pytest.raises(ValueError, match="not in"):
        score_labels(["a"], ["z"], ["a"])
    with pytest.raises(ValueError, match="predictions"):
        score_labels(["a", "a"], ["a"])


def test_confusion_png_is_written(tmp_path: Path) -> None:
    report = score_labels(["x", "y", "y"], ["x", "x", "y"])
    path = save_confusion_png(report, tmp_path / "sub" / "cm.png", "title")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(path.parent.glob("*.part*"))
