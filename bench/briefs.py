"""The planner on realistic briefs (issue #17): the held-out set written before any parser change,
beside the project's own 105-case set, with word accuracy per difficulty kind.

Writes bench/results/briefs.json. Run: .venv/bin/python bench/briefs.py [--label before]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.evaluate.descriptions import evaluate_description_cases  # noqa: E402
from models.plan.rules import RulePlanner  # noqa: E402

SETS = {
    "realistic (tests/data/brief_cases.yaml)": ROOT / "tests" / "data" / "brief_cases.yaml",
    "project's own (tests/data/description_cases.yaml)": ROOT / "tests" / "data" / "description_cases.yaml",
}


def by_kind(path: Path, results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Word accuracy over the cases of each `covers` kind (a case counts for each of its kinds)."""
    kinds = {c["id"]: c.get("covers") or [] for c in yaml.safe_load(path.read_text(encoding="utf-8"))}
    words: dict[str, int] = defaultdict(int)
    correct: dict[str, int] = defaultdict(int)
    for result in results:
        covers = kinds[result["id"]]
        for kind in [covers] if isinstance(covers, str) else covers:  # the older set names one kind
            words[kind] += result["words"]
            correct[kind] += result["correct"]
    return {k: {"words": words[k], "word_accuracy": round(correct[k] / words[k], 4)} for k in sorted(words)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--label", default="before", help="which state of the planner this measures")
    args = parser.parse_args()
    planner = RulePlanner()
    document: dict[str, Any] = {"planner": f"{planner.name}@{planner.version}", "label": args.label}
    for name, path in SETS.items():
        scores = evaluate_description_cases(path, planner)
        document[name] = {
            "cases": scores["cases"],
            "cases_passed": scores["cases_passed"],
            "words": scores["words"],
            "word_accuracy": round(scores["word_accuracy"], 4),
            "by_kind": by_kind(path, scores["results"]),
        }
        print(
            f"{name}: {scores['word_accuracy']:.1%} of {scores['words']} words, "
            f"{scores['cases_passed']} of {scores['cases']} cases"
        )
    out = ROOT / "bench" / "results" / "briefs.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous[args.label] = document
    out.write_text(json.dumps(previous, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
