"""The planner's readings by meaning (models/plan/semantic.py) on the real all-MiniLM-L6-v2.

DEV_SET is the hand-made set `locate`'s weights and thresholds were tuned on (bench/plan_semantic.py
prints its figures): scripts from five kinds of content, each with the content references a brief might
make, the units (sentences) each should find, and references to nothing in the script (None).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from models import text_embedding
from models.plan import semantic
from models.plan.lexicon import load_lexicon
from models.plan.semantic import (
    CONFIDENCE_PATH,
    SpanMatch,
    ToneGuesser,
    load_calibration,
    locate,
    stem,
)
from models.vocabulary import Vocabulary, load_vocabulary


@dataclass(frozen=True)
class Case:
    domain: str
    units: tuple[str, ...]
    # query -> the acceptable (first, last) ranges, the first being the expected one; () for "no match"
    queries: dict[str, tuple[tuple[int, int], ...]]
    paraphrases: tuple[str, ...] = ()  # queries that share no content word with their sentence


DEV_SET: tuple[Case, ...] = (
    Case(
        "marketing",
        (
            "Meet the new Aurora X1 headphones.",
            "They block out the noise of the city so you can focus.",
            "The battery lasts forty hours on a single charge.",
            "And the best part?",
            "They cost just ninety-nine dollars.",
            "Order yours today.",
        ),
        {
            "the battery life": ((2, 2),),
            "the price is revealed": ((4, 4), (3, 4)),
            "noise cancelling": ((1, 1),),
            "the Aurora name": ((0, 0),),
            "the lasagne recipe": (),
        },
        ("the price is revealed",),
    ),
    Case(
        "news",
        (
            "Good evening, here is the news at six.",
            "A powerful storm swept across the coast overnight, tearing roofs from houses.",
            "By morning, rivers had burst their banks and whole streets were under water.",
            "In sport, the city marathon went ahead despite the heat.",
            "Three runners were treated for heat exhaustion.",
            "And finally, a lost parrot has been reunited with its owner.",
        ),
        {
            "the storm and flood": ((1, 2),),
            "the injury figures": ((4, 4), (3, 4)),
            "the parrot": ((5, 5),),
            "the election results": (),
        },
        ("the injury figures",),
    ),
    Case(
        "e-learning",
        (
            "Welcome to module three.",
            "In this lesson you will learn how to set up a pivot table.",
            "First, select the range of cells that holds your data.",
            "Then open the Insert menu and choose PivotTable.",
            "Drag the fields you need into rows and columns.",
            "Finally, take the short quiz to check your understanding.",
        ),
        {
            "the quiz": ((5, 5),),
            "selecting the data": ((2, 2),),
            "the test at the end": ((5, 5),),
            "the dragon attack": (),
        },
        ("the test at the end",),
    ),
    Case(
        "trailer",
        (
            "In a world where the sun never sets.",
            "One girl discovers a secret that could change everything.",
            "But the council will stop at nothing to keep it hidden.",
            "Now she must run.",
            "This summer, the truth comes out.",
        ),
        {
            "the secret": ((1, 1),),
            "the villains": ((2, 2),),
            "the endless daylight": ((0, 0),),
            "the quarterly earnings": (),
        },
        ("the villains", "the endless daylight"),
    ),
    Case(
        "support",
        (
            "Thanks for calling Northwind support.",
            "We're sorry your parcel hasn't arrived yet.",
            "Our couriers are facing delays because of the strike.",
            "Most orders will be delivered within five working days.",
            "If you'd like a refund, reply to this email with your order number.",
            "We appreciate your patience.",
        ),
        {
            "shipping delays": ((2, 2), (2, 3)),
            "the refund": ((4, 4),),
            "the apology": ((1, 1),),
            "the weather forecast": (),
            "the Northwind greeting": ((0, 0),),
        },
        ("the apology",),
    ),
    Case(
        "news",
        (
            "Carmaker Veltra is recalling two hundred thousand vehicles.",
            "A faulty brake sensor may fail in cold weather.",
            "Owners will be contacted by letter.",
            "Shares in the company fell four percent.",
            "Veltra says no accidents have been reported.",
        ),
        {
            "the recall": ((0, 0),),
            "the stock drop": ((3, 3),),
            "the brake fault": ((1, 1),),
            "the Veltra statement": ((4, 4),),
            "the holiday packages": (),
        },
        ("the stock drop",),
    ),
    Case(
        "marketing",
        (
            "Summer is here, and so is our biggest sale of the year.",
            "Everything in store is up to half price.",
            "Swimwear, sandals and sunglasses, all reduced.",
            "The offer ends on Sunday at midnight.",
            "Don't miss out.",
        ),
        {
            "the deadline": ((3, 3), (3, 4)),
            "the beachwear": ((2, 2),),
            "the half price part": ((1, 1), (1, 2)),
            "the wedding speech": (),
        },
        ("the deadline", "the beachwear"),
    ),
    Case(
        "e-learning",
        (
            "Fire safety matters in every workplace.",
            "If you hear the alarm, stop what you are doing.",
            "Leave the building by the nearest exit.",
            "Do not use the lifts.",
            "Gather at the assembly point in the car park.",
            "Wait there until a fire warden tells you it is safe.",
        ),
        {
            "the meeting point": ((4, 4),),
            "the elevators": ((3, 3),),
            "the alarm": ((1, 1),),
            "the customer reviews": (),
        },
        ("the elevators",),
    ),
    Case(
        "trailer",
        (
            "They said the mountain could not be climbed.",
            "Four friends set out to prove them wrong.",
            "Then the avalanche hit.",
            "Trapped, freezing and running out of food, they have one chance.",
            "Summit. In cinemas December.",
        ),
        {
            "the avalanche": ((2, 2),),
            "the survival struggle": ((3, 3),),
            "the release date": ((4, 4),),
            "the spreadsheet formulas": (),
        },
        ("the survival struggle", "the release date"),
    ),
    Case(
        "support",
        (
            "Hello, and thanks for contacting us about your router.",
            "First, unplug the router and wait thirty seconds.",
            "Plug it back in and wait for the light to turn green.",
            "If the light stays red, your line may have a fault.",
            "In that case we will send an engineer at no cost.",
            "Is there anything else I can help with?",
        ),
        {
            "the restart instructions": ((1, 2), (1, 1)),
            "the technician visit": ((4, 4), (3, 4)),
            "the red light": ((3, 3),),
            "the green light": ((2, 2),),
            "the birthday party": (),
        },
        ("the technician visit",),
    ),
    Case(
        "news",
        (
            "Inflation rose to four point two percent last month.",
            "Food and energy prices drove most of the increase.",
            "The central bank is expected to raise interest rates next week.",
            "Meanwhile, unemployment fell to its lowest level in a decade.",
            "Markets closed slightly higher.",
        ),
        {
            "the jobs figures": ((3, 3),),
            "the interest rate decision": ((2, 2),),
            "food and energy costs": ((1, 1),),
            "the football scores": (),
        },
        ("the jobs figures",),
    ),
    Case(
        "marketing",
        (
            "Tired of losing track of your spending?",
            "Pennywise shows every purchase the moment it happens.",
            "Set a budget, and we'll warn you before you go over.",
            "Bank-level encryption keeps your data safe.",
            "Download it free today.",
        ),
        {
            "the security": ((3, 3),),
            "the budget alerts": ((2, 2),),
            "the Pennywise introduction": ((1, 1),),
            "the hurricane damage": (),
            "the free download": ((4, 4),),
        },
        ("the security",),
    ),
    Case(
        "e-learning",
        (
            "The Roman Empire reached its greatest size under Trajan.",
            "Its roads stretched for more than eighty thousand kilometres.",
            "Soldiers, traders and messengers all used them.",
            "But by the fifth century, the western empire had collapsed.",
            "Historians still argue about why it fell.",
        ),
        {
            "the fall of the empire": ((3, 4), (3, 3)),
            "the road network": ((1, 1), (1, 2)),
            "the Trajan part": ((0, 0),),
            "the vaccine trial": (),
        },
        (),
    ),
)


def dev_queries() -> Iterator[tuple[Case, str, tuple[tuple[int, int], ...]]]:
    for case in DEV_SET:
        for query, ranges in case.queries.items():
            yield case, query, ranges


def score_dev_set(cases: Sequence[Case] = DEV_SET) -> dict[str, float]:
    """Share of references found at their expected range (or an acceptable one), and of None answered."""
    found = expected = rejected = unrelated = 0
    for case in cases:
        queries = list(case.queries)
        for query, match in zip(queries, locate(queries, list(case.units)), strict=True):
            ranges = case.queries[query]
            if ranges:
                expected += 1
                found += match is not None and (match.first_unit, match.last_unit) in ranges
            else:
                unrelated += 1
                rejected += match is None
    return {"found": found / expected, "rejected": rejected / unrelated, "n": expected, "none": unrelated}


# -- tone words ----------------------------------------------------------------------------------------

# tone words checked absent from every table at run time: a word a table later learns is skipped
UNKNOWN_TONE_WORDS = {
    "heartsore": "sad",
    "bereaved": "sad",
    "weepy": "sad",
    "ecstatically": "happy",
    "joyously": "happy",
    "frightful": "fear",
    "fearfully": "fear",
    "trembling": "fear",
    "surprisingly": "surprise",
    "repelled": "disgust",
    "ireful": "angry",
    "huffy": "angry",
}
PLAIN = ["battery", "router", "spreadsheet", "thermostat", "postcode", "wednesday"]


@pytest.fixture(scope="module")
def vocabulary() -> Vocabulary:
    return load_vocabulary()


@pytest.fixture(scope="module")
def guesser(vocabulary: Vocabulary) -> ToneGuesser:
    return ToneGuesser(vocabulary, load_lexicon(vocabulary).words)


def test_calibration_file_loads_and_says_how_it_was_fitted() -> None:
    calibration = load_calibration()
    assert "{word}" in calibration.template and calibration.k >= 1
    assert 0.0 <= calibration.confidence(0.0, 0.0) <= 1.0
    assert calibration.confidence(0.9, 0.2) > calibration.confidence(0.5, 0.0)  # closer and clearer: surer
    document = json.loads(CONFIDENCE_PATH.read_text(encoding="utf-8"))
    assert {"fitted_on", "leave_one_out_accuracy", "brier", "reliability"} <= set(document)
    assert 0.5 < document["leave_one_out_accuracy"] <= 1.0


def test_unknown_tone_words_get_their_emotion_with_confidence(guesser: ToneGuesser) -> None:
    anchors = {a.word for a in guesser.anchors}
    words = [w for w in UNKNOWN_TONE_WORDS if w not in anchors]
    assert len(words) >= 6, "the tables learnt most test words: pick new ones"
    guesses = guesser.guess(words)
    right = [g for g, w in zip(guesses, words, strict=True) if g and g.label == UNKNOWN_TONE_WORDS[w]]
    sure = [g for g in right if g.confidence > 0.5]
    # held-out label accuracy is about 0.7 (bench/fit_tone_confidence.py); these are clear cases
    assert len(right) >= len(words) - 1, [(g.word, g.label, round(g.confidence, 2)) for g in guesses if g]
    assert len(sure) >= len(words) - 2, [(g.word, g.label, round(g.confidence, 2)) for g in guesses if g]
    for guess in right:
        assert 0.0 < guess.intensity <= 1.0 and guess.nearest in anchors
        assert -1.0 <= guess.similarity <= 1.0


def test_plain_content_words_are_not_read_as_a_tone(guesser: ToneGuesser) -> None:
    guesses = guesser.guess(PLAIN)
    assert all(g is not None and g.confidence < 0.5 for g in guesses), [
        (g.word, g.label, round(g.confidence, 2)) for g in guesses if g
    ]


def test_guess_keeps_order_and_answers_none_for_empty_words(guesser: ToneGuesser) -> None:
    guesses = guesser.guess(["", "Ecstatically", "  ", "ecstatically"])
    assert guesses[0] is None and guesses[2] is None
    assert guesses[1] == guesses[3] and guesses[1] is not None and guesses[1].word == "ecstatically"
    assert guesser.guess([]) == []


def test_each_call_embeds_once(vocabulary: Vocabulary, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = text_embedding.embed

    def counting(texts: Sequence[str]) -> np.ndarray:
        calls.append(len(texts))
        return real(texts)

    monkeypatch.setattr(text_embedding, "embed", counting)
    fresh = ToneGuesser(vocabulary, {})
    fresh.guess(["heartsore", "gleeful", "router"])
    assert len(calls) == 1 and calls[0] == len(fresh.anchors) + 3  # anchors ride with the first words
    fresh.guess(["ecstatically", "modem"])
    assert calls[1:] == [2]
    case = DEV_SET[1]  # its "the storm and flood" is embedded with its parts, in the same call
    locate(list(case.queries), list(case.units))
    assert calls[2:] == [len(case.queries) + 2 + len(case.units)]


# -- content references --------------------------------------------------------------------------------


def test_stems_meet_the_forms_of_a_word() -> None:
    assert stem("flooding") == stem("floods") == stem("flooded") == stem("flood")
    assert stem("delays") == stem("delayed") == stem("delay")
    assert stem("shipping") == stem("ship") and stem("prices") == stem("price")
    assert stem("injuries") == stem("injury")


def test_locate_finds_lexical_references() -> None:
    case = DEV_SET[4]  # support: parcel delays
    matches = locate(["shipping delays", "the refund"], list(case.units))
    assert [(m.first_unit, m.last_unit) if m else None for m in matches] == [(2, 2), (4, 4)]
    assert all(isinstance(m, SpanMatch) and m.confident for m in matches)


def test_locate_finds_paraphrases_that_share_no_word() -> None:
    news = DEV_SET[1]
    (injury,) = locate(["the injury figures"], list(news.units))
    assert injury is not None and (injury.first_unit, injury.last_unit) in news.queries["the injury figures"]
    assert injury.margin > 0


def test_locate_covers_consecutive_units() -> None:
    news = DEV_SET[1]
    (storm,) = locate(["the storm and flood"], list(news.units))
    assert storm is not None and (storm.first_unit, storm.last_unit) == (1, 2)


def test_locate_answers_none_for_what_the_script_does_not_mention() -> None:
    news = DEV_SET[1]
    # (not "the election results": here it meets the news intro at 0.29, the dev set's one false match)
    assert locate(["the vaccine trial", "the spreadsheet formulas"], list(news.units)) == [None, None]
    assert locate(["anything"], []) == [None]
    assert locate([""], list(news.units)) == [None]


def test_dev_set_accuracy() -> None:
    scores = score_dev_set()
    # tuned on this very set: a floor against regressions, not a measure of accuracy on new briefs
    assert scores["found"] >= 0.8 and scores["rejected"] >= 0.8, scores


def test_thresholds_are_ordered() -> None:
    params = semantic.DEFAULT_LOCATE
    assert params.reject_score < params.confident_score and params.reject_margin < params.confident_margin
    assert semantic.query_parts("the storm and flood") == ["the storm", "flood"]
    assert semantic.query_parts("the injury figures") == []
