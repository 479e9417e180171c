"""The planner's readings by meaning (models/plan/semantic.py): accuracy and speed on the 2-core machine.

    .venv/bin/python bench/plan_semantic.py

- `locate` on the dev set it was tuned on (tests/models/test_plan_semantic.py), on the concatenation of
  all its scripts (70 sentences, where near topics compete), and on HELD_OUT, written after the tuning
  and never tuned on;
- speed: model load, `locate` for 3 queries over 600 sentences (a 10,000-word script), cold and again
  (cached), `guess` for 20 words after the anchors are embedded, and MiniLM throughput per batch size.

Writes bench/results/plan_semantic.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models import text_embedding  # noqa: E402
from models.plan.lexicon import load_lexicon  # noqa: E402
from models.plan.semantic import DEFAULT_LOCATE, ToneGuesser, locate  # noqa: E402
from models.vocabulary import load_vocabulary  # noqa: E402
from tests.models.test_plan_semantic import DEV_SET, Case  # noqa: E402

HELD_OUT: tuple[Case, ...] = (
    Case(
        "news",
        (
            "Welcome back to the sports desk.",
            "United won the cup final three goals to one.",
            "Their captain was sent off in the second half.",
            "Fans celebrated in the streets until dawn.",
            "Next week, the transfer window opens.",
        ),
        {
            "the red card": ((2, 2),),
            "the celebrations": ((3, 3),),
            "the final score": ((1, 1),),
            "the royal wedding": (),
        },
    ),
    Case(
        "marketing",
        (
            "Start your morning with Brewly.",
            "Our beans are roasted in small batches every Tuesday.",
            "Each cup is smooth, rich and never bitter.",
            "Subscribe and get your first bag free.",
            "Delivery is always carbon neutral.",
        ),
        {
            "the taste": ((2, 2),),
            "the free bag offer": ((3, 3),),
            "the environmental promise": ((4, 4),),
            "the roasting": ((1, 1),),
            "the mortgage rates": (),
        },
    ),
    Case(
        "e-learning",
        (
            "Before you begin, check the area is safe.",
            "If the person is not breathing, call an ambulance.",
            "Place your hands in the centre of their chest.",
            "Push down hard and fast, twice a second.",
            "Keep going until help arrives.",
        ),
        {
            "the emergency call": ((1, 1),),
            "the compressions": ((3, 3), (2, 3)),
            "the safety check": ((0, 0),),
            "the stock market": (),
        },
    ),
    Case(
        "trailer",
        (
            "Five thieves.",
            "One vault.",
            "No second chances.",
            "When the plan goes wrong, trust is the first thing to break.",
            "Coming to cinemas this autumn.",
        ),
        {
            "the betrayal": ((3, 3),),
            "the release date": ((4, 4),),
            "the safe": ((1, 1),),
            "the cooking tips": (),
        },
    ),
    Case(
        "support",
        (
            "Thank you for your message about your latest bill.",
            "We can see you were charged twice in March.",
            "We have refunded the extra payment to your card.",
            "It should appear within three to five days.",
            "Sorry for the trouble this caused.",
        ),
        {
            "the double charge": ((1, 1),),
            "the money back": ((2, 2),),
            "the apology": ((4, 4),),
            "the football results": (),
        },
    ),
    Case(
        "news",
        (
            "Astronomers have found water vapour on a distant planet.",
            "The planet orbits a small red star forty light years away.",
            "It is slightly larger than Earth.",
            "Scientists say it could hold liquid oceans.",
            "The findings were published on Wednesday.",
        ),
        {
            "the discovery": ((0, 0),),
            "the size comparison": ((2, 2),),
            "the publication": ((4, 4),),
            "the chance of seas": ((3, 3),),
            "the train strike": (),
        },
    ),
)


def score(cases: tuple[Case, ...]) -> dict[str, object]:
    found = expected = rejected = unrelated = confident = confident_right = 0
    misses: list[str] = []
    for case in cases:
        queries = list(case.queries)
        for query, match in zip(queries, locate(queries, list(case.units)), strict=True):
            ranges = case.queries[query]
            got = None if match is None else (match.first_unit, match.last_unit)
            right = got in ranges if ranges else got is None
            if match is not None and match.confident:
                confident += 1
                confident_right += right
            if ranges:
                expected += 1
                found += right
            else:
                unrelated += 1
                rejected += right
            if not right:
                detail = (
                    "" if match is None else f" (score {match.similarity:.2f}, margin {match.margin:.2f})"
                )
                misses.append(
                    f"{case.domain}: {query!r} -> {got}{detail}, wanted {ranges[0] if ranges else None}"
                )
    return {
        "references": expected,
        "found": round(found / expected, 3),
        "unrelated": unrelated,
        "rejected": round(rejected / unrelated, 3),
        "confident_matches": confident,
        "right_when_confident": round(confident_right / confident, 3) if confident else None,
        "misses": misses,
    }


def concatenated() -> dict[str, object]:
    """All dev scripts as one 70-sentence script: near topics compete, margins shrink."""
    units: list[str] = []
    queries: list[str] = []
    wanted: list[list[tuple[int, int]]] = []
    for case in DEV_SET:
        offset = len(units)
        units += case.units
        for query, ranges in case.queries.items():
            if ranges:  # an unrelated query may meet another script's topic here
                queries.append(query)
                wanted.append([(a + offset, b + offset) for a, b in ranges])
    matches = locate(queries, units)
    got = [None if m is None else (m.first_unit, m.last_unit) for m in matches]
    return {
        "units": len(units),
        "references": len(queries),
        "found": round(float(np.mean([g in w for g, w in zip(got, wanted, strict=True)])), 3),
        "wrong_place": round(
            float(np.mean([g is not None and g not in w for g, w in zip(got, wanted, strict=True)])), 3
        ),
        "none": round(float(np.mean([g is None for g in got])), 3),
    }


def long_script(n: int = 600) -> list[str]:
    """n distinct sentences of about 17 words: pairs of dev-set sentences, numbered apart."""
    pool = [u.rstrip(".!?") for case in DEV_SET + HELD_OUT for u in case.units]
    rng = np.random.default_rng(0)
    return [
        f"{pool[i % len(pool)]}, and {pool[j].lower()} ({k})."
        for k, (i, j) in enumerate(rng.integers(0, len(pool), (n, 2)))
    ]


def timings() -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    t = time.perf_counter()
    text_embedding.load_text_model()
    out["model_load_s"] = round(time.perf_counter() - t, 2)

    units = long_script()
    out["sentences"] = len(units)
    out["words"] = sum(len(u.split()) for u in units)
    queries = ["the storm and flood", "the injury figures", "the price is revealed"]
    t = time.perf_counter()
    locate(queries, units)
    out["locate_3_queries_600_sentences_cold_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    locate(queries, units)
    out["locate_again_cached_s"] = round(time.perf_counter() - t, 3)

    vocabulary = load_vocabulary()
    guesser = ToneGuesser(vocabulary, load_lexicon(vocabulary).words)
    t = time.perf_counter()
    guesser.guess(["heartsore"])
    out["anchors"] = len(guesser.anchors)
    out["guess_first_call_with_anchors_s"] = round(time.perf_counter() - t, 2)
    words = [
        "gleeful",
        "incensed",
        "spooked",
        "gobsmacked",
        "repelled",
        "placid",
        "weepy",
        "chipper",
        "huffy",
        "jumpy",
        "agog",
        "icky",
        "toneless",
        "router",
        "battery",
        "modem",
        "parcel",
        "monday",
        "thermostat",
        "spreadsheet",
    ]
    t = time.perf_counter()
    guesser.guess(words)
    out["guess_20_words_s"] = round(time.perf_counter() - t, 3)

    # MiniLM alone on the 600 sentences, per batch size (text_embedding.BATCH_SIZE is the one used)
    model = text_embedding.load_text_model()
    fresh = [u.replace("(", "[") for u in units]
    for batch in (16, 32, 64):
        t = time.perf_counter()
        model.encode(fresh, batch_size=batch, normalize_embeddings=True, show_progress_bar=False)
        out[f"encode_600_batch{batch}_s"] = round(time.perf_counter() - t, 2)
    return out


def main() -> None:
    import torch

    load_before = os.getloadavg()[0]
    speed = timings()  # first, so the model load is measured
    # other jobs on the 2 cores slow MiniLM several-fold: a load average above ~1 before or after says so
    speed["load_average_before"] = round(load_before, 2)
    speed["load_average_after"] = round(os.getloadavg()[0], 2)
    results = {
        "machine": f"{torch.get_num_threads()} torch threads",
        "params": dict(DEFAULT_LOCATE.__dict__),
        "dev_set": score(DEV_SET),
        "dev_set_concatenated": concatenated(),
        "held_out": score(HELD_OUT),
        "timings": speed,
    }
    print(json.dumps(results, indent=2))
    out = ROOT / "bench" / "results" / "plan_semantic.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
