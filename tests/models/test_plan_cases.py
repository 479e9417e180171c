"""The hand-written description case set: word accuracy of the rule planner (goal >= 90 %)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from models.evaluate.descriptions import compress_runs, evaluate_description_cases, expand_runs, trend_holds
from models.plan.rules import RulePlanner

CASES = Path(__file__).resolve().parents[1] / "data" / "description_cases.yaml"


def test_case_set_is_big_and_covers_every_construct() -> None:
    cases = yaml.safe_load(CASES.read_text(encoding="utf-8"))
    assert len(cases) >= 60
    assert len({c["id"] for c in cases}) == len(cases)
    covered = {part for c in cases for part in c["covers"].split("+")}
    needed = {"plain", "intensity", "phases", "span", "anchor", "ramp", "blend", "manner", "contradiction"}
    assert needed | {"bad-input", "tags"} <= covered


def test_rule_planner_word_accuracy_on_the_case_set() -> None:
    result = evaluate_description_cases(CASES, RulePlanner())
    print(
        f"\ndescription cases: word accuracy {result['word_accuracy']:.4f} over {result['words']} words, "
        f"{result['cases_passed']}/{result['cases']} cases fully right, "
        f"macro-F1 {result['report']['macro_f1']:.3f}"
    )
    for case in result["results"]:
        if not case["passed"]:
            print(f"  failing {case['id']}: expected {case['expected']}, got {case.get('predicted')}")
    assert not [r for r in result["results"] if "error" in r], "every case plans to its expected word count"
    assert result["report"]["n"] == result["words"]
    assert result["word_accuracy"] >= 0.9


def test_evaluation_counts_wrong_words_trends_and_missing_warnings(tmp_path: Path) -> None:
    cases = [
        {"id": "right", "script": "One two.", "description": "sad", "expect": "sad*2"},
        {"id": "half", "script": "One two.", "description": "sad", "expect": "sad*1 angry*1"},
        {
            "id": "flat",
            "script": "One two.",
            "description": "sad",
            "expect": "sad*2",
            "trend": {"sad": "rising"},
        },
        {"id": "quiet", "script": "One two.", "description": "sad", "expect": "sad*2", "warnings": ["nope"]},
        {"id": "count", "script": "One two.", "description": "sad", "expect": "sad*3"},
    ]
    path = tmp_path / "cases.yaml"
    path.write_text(yaml.safe_dump(cases), encoding="utf-8")
    result = evaluate_description_cases(path, RulePlanner())
    assert result["words"] == 11
    assert result["word_accuracy"] == pytest.approx(7 / 11)
    assert result["failing"] == ["half", "flat", "quiet", "count"]
    by_id = {r["id"]: r for r in result["results"]}
    assert by_id["flat"]["trends_failed"] == ["sad"]
    assert by_id["quiet"]["warnings_missing"] == ["nope"]
    assert "3" in by_id["count"]["error"]
    assert result["report"]["per_class"]["angry"]["support"] == 1.0


def test_run_notation_round_trips() -> None:
    labels = expand_runs("neutral*2 angry*1 neutral*1")
    assert labels == ["neutral", "neutral", "angry", "neutral"]
    assert compress_runs(labels) == "neutral*2 angry*1 neutral*1"
    with pytest.raises(ValueError, match="label\\*count"):
        expand_runs("angry x3")


def test_trend() -> None:
    assert trend_holds([0.2, 0.2, 0.5], "rising")
    assert not trend_holds([0.2, 0.5, 0.4], "rising")
    assert trend_holds([1.0, 0.2], "falling")
    assert not trend_holds([0.5, 0.5], "falling")
