"""Every phrase of a brief either shapes the plan (a reading quotes it) or is named in a warning.

Hypothesis builds briefs from the kinds of phrase content teams write: emotion and tone words, places by
position, count, quote and content, extents, negations, other people's feelings, and words the planner
cannot know. No phrase may vanish silently: a misread brief must never become a quiet neutral video.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.plan.rules import RulePlanner
from models.types import EmotionPlan

SCRIPT = (
    "Our new bottle is made from seaweed. Every year, millions of tonnes of plastic reach the sea. "
    "Shipping may take a little longer this month. But we never give up on you. Thank you for listening."
)
PLANNER = RulePlanner(semantic=False)  # the grammar and tables; MiniLM is tested in test_plan_semantic

EMOTION = st.sampled_from(
    ["sad", "very angry", "furious", "creepy", "fed up", "chuffed", "grave", "sombre", "a bit wistful",
     "excited", "cheerful", "tense", "disgusted", "astonished", "calm", "bittersweet", "whispering"]
)  # fmt: skip
PLACE = st.sampled_from(
    ["", "at first", "then", "by the end", "in the middle", "for the last sentence",
     "in the first two sentences", 'on "never give up"', "for the part about shipping",
     "from the second sentence onwards", "until the final sentence", "and stays that way", "for the rest",
     "throughout"]
)  # fmt: skip
# words that join parts rather than say anything of their own
CONNECTIVES = frozenset({"then"})
NOISE = st.sampled_from(
    ["zorbly", "quixotic flange", "like a lighthouse keeper", "with gusto", "per the deck"]
)


@st.composite
def phrases(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["emotion", "negated", "attributed", "noise"]))
    if kind == "emotion":
        return f"{draw(EMOTION)} {draw(PLACE)}".strip()
    if kind == "negated":
        negation = draw(st.sampled_from(["not", "rather than", "instead of", "without sounding"]))
        return f"{negation} {draw(EMOTION)}"
    if kind == "attributed":
        who = draw(st.sampled_from(["the customers are", "the staff feel", "comforting a"]))
        return f"{who} {draw(st.sampled_from(['nervous', 'furious', 'frightened']))}"
    return draw(NOISE)


def mentioned(phrase: str, plan: EmotionPlan) -> bool:
    """A reading or a warning quotes the phrase's distinctive words."""
    said = " ".join([*(r.phrase for r in plan.readings), *plan.warnings]).lower()
    words = [w for w in re.findall(r"[a-z]+", phrase.lower()) if len(w) > 3 and w not in CONNECTIVES]
    return all(w in said for w in words) if words else True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(phrases(), min_size=1, max_size=4), st.sampled_from([", ", "; ", ", then ", ". "]))
def test_every_phrase_shapes_the_plan_or_is_warned_about(parts: list[str], joiner: str) -> None:
    brief = joiner.join(parts)
    plan = PLANNER.plan(SCRIPT, brief)
    for part in parts:
        assert mentioned(part, plan), (brief, part, plan.readings, plan.warnings)


@settings(max_examples=60, deadline=None)
@given(st.lists(phrases(), min_size=1, max_size=4))
def test_a_plan_without_a_single_emotion_says_so(parts: list[str]) -> None:
    plan = PLANNER.plan(SCRIPT, ", ".join(parts))
    if all(w.label == "neutral" for w in plan.words) and all(r.words == 0 for r in plan.readings):
        assert plan.warnings, parts
