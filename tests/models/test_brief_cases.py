"""The held-out brief set (tests/data/brief_cases.yaml) is well formed: every case labels every word.

Its scores are figures, not test assertions: `bench/briefs.py` reports them before and after planner work.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from models.evaluate.descriptions import expand_runs
from models.plan.tokens import WORD_RE
from models.vocabulary import load_vocabulary

CASES = Path(__file__).resolve().parents[1] / "data" / "brief_cases.yaml"


def test_every_case_labels_each_word_of_its_script_with_a_known_emotion() -> None:
    cases = yaml.safe_load(CASES.read_text(encoding="utf-8"))
    labels = set(load_vocabulary().labels)
    assert len(cases) >= 80 and len({c["id"] for c in cases}) == len(cases)
    for case in cases:
        expected = expand_runs(case["expect"])
        assert len(expected) == len(WORD_RE.findall(case["script"])), case["id"]
        assert set(expected) <= labels, case["id"]
        assert case["domain"] and case["covers"] and case["description"].strip(), case["id"]
