"""RulePlanner description constructs: spans, ramps, blends, delivery words, contradictions, bad input."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.errors import InputError
from models.plan.placement import RAMP_LOW, SENTENCE, Instruction, Span, place
from models.plan.rules import RulePlanner
from models.plan.tokens import WORD_RE, sentence_ids
from models.types import EmotionPlan
from models.vocabulary import _default_path, load_vocabulary


@pytest.fixture(scope="module")
def planner() -> RulePlanner:
    return RulePlanner()


def labels(plan: EmotionPlan) -> list[str]:
    return [w.label for w in plan.words]


def intensities(plan: EmotionPlan) -> list[float]:
    return [w.intensity for w in plan.words]


THREE = "The results are in. We did not win this year. But I am so proud of all of you."  # 4 + 6 + 9 words


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("sad, but happy for the last sentence", ["sad"] * 10 + ["happy"] * 9),
        ("happy in the first two sentences", ["happy"] * 10 + ["neutral"] * 9),
        ("angry in the second sentence", ["neutral"] * 4 + ["angry"] * 6 + ["neutral"] * 9),
        ("scared in sentence 2", ["neutral"] * 4 + ["fear"] * 6 + ["neutral"] * 9),
        ("sad for the last two sentences", ["neutral"] * 4 + ["sad"] * 15),
        ("surprised on the last word", ["neutral"] * 18 + ["surprise"]),
        ("happy for the first three words", ["happy"] * 3 + ["neutral"] * 16),
        ("sad in the second and third sentences", ["neutral"] * 4 + ["sad"] * 15),
        ("for the final line, furious", ["neutral"] * 10 + ["angry"] * 9),
    ],
)
def test_sentence_and_word_spans(planner: RulePlanner, description: str, expected: list[str]) -> None:
    plan = planner.plan(THREE, description)
    assert labels(plan) == expected
    assert plan.warnings == []


def test_second_half_splits_by_sentence_when_it_can(planner: RulePlanner) -> None:
    plan = planner.plan("One. Two. Three. Four.", "calm, then happy in the second half")
    assert labels(plan) == ["neutral", "neutral", "happy", "happy"]


def test_span_past_the_end_is_a_warning(planner: RulePlanner) -> None:
    plan = planner.plan("Thank you.", "sad in the third sentence")
    assert labels(plan) == ["neutral", "neutral"]
    assert any("sentence 2" in w and "only 1 sentence" in w for w in plan.warnings)
    assert any("every word is neutral" in w for w in plan.warnings)


def test_gradually_rises_from_the_floor_to_the_emotion(planner: RulePlanner) -> None:
    plan = planner.plan("I asked you once. I asked you twice. Now I am telling you.", "gradually angrier")
    values = intensities(plan)
    assert set(labels(plan)) == {"angry"}
    assert values[0] == RAMP_LOW and values[-1] == 0.75  # "angrier" -> angry at its default intensity
    assert values == sorted(values)


def test_ramp_continues_from_the_previous_part(planner: RulePlanner) -> None:
    plan = planner.plan("This is the third time. I have told you again.", "irritated, growing angrier")
    values = intensities(plan)
    assert set(labels(plan)) == {"angry"}
    assert values[:5] == [0.45] * 5  # irritated
    assert values[5] == 0.45 and values[-1] == 0.75 and values == sorted(values)


def test_calming_down_falls_and_keeps_the_emotion(planner: RulePlanner) -> None:
    plan = planner.plan("Get out! I said move! Okay. Fine.", "furious, then calming down")
    values = intensities(plan)
    assert labels(plan) == ["angry"] * 7
    assert values[:5] == [1.0] * 5
    assert values[5:] == [1.0, RAMP_LOW]


@pytest.mark.parametrize("description", ["fading sadness", "sad, fading by the end", "less and less sad"])
def test_falling_phrases(planner: RulePlanner, description: str) -> None:
    plan = planner.plan("One two three. Four five six. Seven eight nine.", description)
    values = intensities(plan)
    assert set(labels(plan)) == {"sad"}
    assert values == sorted(values, reverse=True) and values[-1] < values[0]


def test_ramp_with_nothing_to_continue_is_a_warning(planner: RulePlanner) -> None:
    plan = planner.plan("Hello there.", "calming down")
    assert labels(plan) == ["neutral", "neutral"]
    assert any("none is named before it" in w for w in plan.warnings)


def test_blend_uses_its_dominant_part_and_says_so(planner: RulePlanner) -> None:
    plan = planner.plan("Graduation day. I will miss this place.", "bittersweet")
    assert {(w.label, w.intensity) for w in plan.words} == {("sad", 0.45)}
    assert len(plan.warnings) == 1 and "bittersweet" in plan.warnings[0] and "happy 0.35" in plan.warnings[0]


def test_blend_tag_is_allowed_with_a_warning(planner: RulePlanner) -> None:
    plan = planner.plan("[very nostalgic] Home again.")
    assert {(w.label, w.intensity) for w in plan.words} == {("sad", 0.85)}
    assert "nostalgic" in plan.warnings[0]


def test_two_emotions_for_the_same_words_pick_the_stronger(planner: RulePlanner) -> None:
    plan = planner.plan("How could you say that to me?", "angry but hurt")
    assert set(labels(plan)) == {"angry"}
    assert any("angry and sad" in w and "angry wins" in w for w in plan.warnings)


def test_real_emotion_beats_neutral_in_a_mix(planner: RulePlanner) -> None:
    plan = planner.plan("The results came back.", "sad but calm")
    assert set(labels(plan)) == {"sad"}
    assert any("a real emotion beats neutral" in w for w in plan.warnings)


@pytest.mark.parametrize(
    ("description", "label", "intensity"),
    [
        ("sobbing", "sad", 1.0),
        ("whispering", "sad", 0.3),
        ("shouting", "angry", 0.85),
        ("laughing", "happy", 0.8),
    ],
)
def test_delivery_words_map_to_emotions(
    planner: RulePlanner, description: str, label: str, intensity: float
) -> None:
    plan = planner.plan("You should have seen his face.", description)
    assert {(w.label, w.intensity) for w in plan.words} == {(label, intensity)}
    assert plan.warnings == []


def test_emotion_word_beats_delivery_word(planner: RulePlanner) -> None:
    assert set(labels(planner.plan("I hate you!", "crying angrily"))) == {"angry"}


def test_delivery_on_an_anchor_keeps_the_scripts_emotion(planner: RulePlanner) -> None:
    plan = planner.plan("We won! We actually won!", 'excited, and shouting "we won"')
    assert set(labels(plan)) == {"happy"}
    assert [w.intensity for w in plan.words[:2]] == [0.85, 0.85]


def test_whispering_anchor(planner: RulePlanner) -> None:
    plan = planner.plan("I'm sorry. I didn't mean it.", 'whispering "I\'m sorry"')
    assert labels(plan) == ["sad", "sad", "neutral", "neutral", "neutral", "neutral"]


def test_contradicting_anchors_warn_and_the_later_wins(planner: RulePlanner) -> None:
    plan = planner.plan("Never again, I promise.", 'angry at "never again", happy at "never again"')
    assert labels(plan) == ["happy", "happy", "neutral", "neutral"]
    (warning,) = plan.warnings
    assert "contradiction" in warning and "angry" in warning and "happy wins" in warning
    assert "Never again" in warning


def test_contradicting_phases_warn(planner: RulePlanner) -> None:
    plan = planner.plan(
        "Welcome home. We missed you. Dinner is ready.", "happy at the start and sad at the start"
    )
    assert labels(plan)[:2] == ["sad", "sad"]
    assert any("contradiction" in w and "sad wins" in w for w in plan.warnings)


def test_refinement_is_not_a_contradiction(planner: RulePlanner) -> None:
    plan = planner.plan("I loved you. And you lied to me.", 'sad, angry at "you lied to me"')
    assert labels(plan) == ["sad"] * 4 + ["angry"] * 4
    assert plan.warnings == []


def test_base_emotion_returns_after_a_middle_phase(planner: RulePlanner) -> None:
    plan = planner.plan("I called. You never answered. Now she is gone.", "sad, but angry in the middle")
    assert labels(plan) == ["sad"] * 2 + ["angry"] * 3 + ["sad"] * 4


def test_spelling_guess_is_a_warning(planner: RulePlanner) -> None:
    plan = planner.plan("Move your car.", "angyr")
    assert set(labels(plan)) == {"angry"}
    assert any('"angyr"' in w and '"angry"' in w for w in plan.warnings)


@pytest.mark.parametrize("description", ["zorbly", "very", "in a spaceship", "qwxz plorb"])
def test_nothing_understood_says_neutral_was_used(planner: RulePlanner, description: str) -> None:
    plan = planner.plan("Please take a seat.", description)
    assert set(labels(plan)) == {"neutral"}
    assert any("was understood as an emotion, so every word is neutral" in w for w in plan.warnings)


def test_nothing_understood_with_tags_names_untagged_words(planner: RulePlanner) -> None:
    plan = planner.plan("Hello [sad] there.", "zorbly")
    assert labels(plan) == ["neutral", "sad"]
    assert any("every word without an inline tag is neutral" in w for w in plan.warnings)


def test_no_description_and_no_tags_is_a_warning(planner: RulePlanner) -> None:
    assert planner.plan("Hello there.").warnings == [
        "no description and no inline tags, so every word is neutral"
    ]


@pytest.mark.parametrize(
    ("script", "description", "fragment"),
    [
        ("Ich habe den ganzen Tag auf dich gewartet.", "angry", "script looks German"),
        ("Te esperé todo el día. Ahora se acabó.", "sad", "script looks Spanish"),
        ("I waited all day.", "wütend am Anfang, dann traurig", "description looks German"),
        ("Я ждал тебя весь день.", "sad", "script is mostly written in Cyrillic letters"),
        ("我今天很高兴见到你。", "happy", "script is mostly written in CJK letters"),
    ],
)
def test_non_english_text_is_a_warning(
    planner: RulePlanner, script: str, description: str, fragment: str
) -> None:
    plan = planner.plan(script, description)
    assert any(fragment in w and "English" in w for w in plan.warnings)


@pytest.mark.parametrize(
    "script",
    ["Welcome to Kraków, Mr. Wiśniewski!", "Hey Jo, gonna grab pizza at Luigi's, u coming?", "I'm fine."],
)
def test_english_with_names_is_not_flagged(planner: RulePlanner, script: str) -> None:
    assert not any("English" in w for w in planner.plan(script, "happy").warnings)


def test_ten_thousand_word_script_plans_fast(planner: RulePlanner) -> None:
    sentence = "I waited for you all day and never again would I trust you."  # 13 words
    script = " ".join([sentence] * 769) + " Goodbye my friend."
    description = (
        'calm at first, angry at "never again", gradually sadder by the end, happy in the last sentence'
    )
    planner.plan("warm up the language check.", "calm")
    start = time.perf_counter()
    plan = planner.plan(script, description)
    elapsed = time.perf_counter() - start
    print(f"\n10,000-word plan: {elapsed:.3f} s")
    assert len(plan.words) == 10_000
    assert elapsed < 1.0
    assert plan.words[0].label == "neutral" and plan.words[-1].label == "happy"
    assert sum(w.label == "angry" for w in plan.words) == 2 * 769


def test_placement_is_shared_and_checks_span_bounds() -> None:
    script = "One two. Three four. Five six."
    words = [m.group() for m in WORD_RE.finditer(script)]
    sentence_of = sentence_ids(script, [m.start() for m in WORD_RE.finditer(script)])
    instructions = [
        Instruction("base", "happy", 0.7),
        Instruction("last", "sad", 0.5, span=Span(SENTENCE, -1, -1)),
        Instruction("nowhere", "angry", 0.5, span=Span(SENTENCE, 5, 5)),
    ]
    placed = place(instructions, words, sentence_of)
    cues, warnings = placed.cues, placed.warnings
    assert [c.label if c else None for c in cues] == ["happy"] * 4 + ["sad"] * 2
    assert len(warnings) == 1 and "only 3 sentences" in warnings[0]


def test_vocabulary_rejects_blends_with_unknown_emotions(tmp_path: Path) -> None:
    data = yaml.safe_load(_default_path().read_text(encoding="utf-8"))
    data["blends"]["drowsy-happy"] = [["sleepy", 0.5], ["happy", 0.3]]
    path = tmp_path / "emotions.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(InputError, match="sleepy"):
        load_vocabulary(path)


@pytest.mark.parametrize(
    ("word", "label"),
    [("whispered", "sad"), ("sobbing", "sad"), ("cried", "sad"), ("shouts", "angry"), ("giggling", "happy")],
)
def test_delivery_word_forms(word: str, label: str) -> None:
    hit = load_vocabulary().manner(word)
    assert hit is not None and hit[0] == label


@pytest.mark.parametrize(
    ("description", "intensity"),
    [("a hint of fear", 0.2), ("a little bit scared", 0.3), ("a bit scared", 0.35)],
)
def test_several_word_intensity_phrases(planner: RulePlanner, description: str, intensity: float) -> None:
    plan = planner.plan("I will be right back.", description)
    assert {(w.label, w.intensity) for w in plan.words} == {("fear", intensity)}
    assert plan.warnings == []


_DESCRIPTION_PIECES = st.sampled_from(
    [
        "sad",
        "furious",
        "bittersweet",
        "whispering",
        "at first",
        "then",
        "by the end",
        "in the middle",
        "for the last sentence",
        "in the first 0 sentences",
        "sentence 3",
        "the second half",
        "gradually",
        "calming down",
        "more and more",
        "angrier and angrier",
        "not",
        "very",
        "0.4",
        "170%",
        "and",
        "but",
        ",",
        "'never again'",
        '"nowhere"',
        "angyr",
        "blah",
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_DESCRIPTION_PIECES, max_size=10).map(" ".join))
def test_any_description_gives_a_full_valid_plan(description: str) -> None:
    plan = RulePlanner().plan("I said never again. Then I left. It is over now.", description)
    assert len(plan.words) == 11
    assert all(0.0 <= w.intensity <= 1.0 for w in plan.words)
    if all(w.source == "default" for w in plan.words):
        assert plan.warnings, "a plan that is neutral everywhere must say why"


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        # a comma lists a register word ("gentle", "sincere") with an emotion: both say how to read it
        ("Gentle, sombre.", ["sad"] * 19),
        ("Sincere, regretful.", ["sad"] * 19),
        # a register word never takes words from an emotion asked for the same words
        (
            "angry for the second sentence, and firm for the second sentence",
            ["neutral"] * 4 + ["angry"] * 6 + ["neutral"] * 9,
        ),
        (
            "firm for the second sentence, and angry for the second sentence",
            ["neutral"] * 4 + ["angry"] * 6 + ["neutral"] * 9,
        ),
        # a comma between two emotions still separates phases, and a calm word still holds its own words
        ("calm, angry for the last sentence", ["neutral"] * 10 + ["angry"] * 9),
        ("sad at first, happy at the end", ["sad"] * 10 + ["happy"] * 9),
    ],
)
def test_register_words_say_how_to_speak_an_emotion_and_do_not_cancel_it(
    planner: RulePlanner, description: str, expected: list[str]
) -> None:
    assert labels(planner.plan(THREE, description)) == expected


def test_a_content_reference_ends_at_a_spaced_dash(planner: RulePlanner) -> None:
    """ "the line about X - that's sombre": the emotion after the dash is the part's, not X's text."""
    plan = planner.plan(THREE, "warm throughout; the line about not winning - that's sombre")
    assert labels(plan) == ["happy"] * 4 + ["sad"] * 6 + ["happy"] * 9


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        # "even the part about ..." is the focusing adverb, not the calm "keep it even"
        ("Keep it warm all the way through, even the part about not winning", ["happy"] * 19),
        ("keep it even", ["neutral"] * 19),
        # "about X can be plain": the reference ends where the delivery begins
        ("sad. The last sentence about the team can be plain.", ["sad"] * 10 + ["neutral"] * 9),
    ],
)
def test_even_and_modal_verbs_end_what_a_part_refers_to(
    planner: RulePlanner, description: str, expected: list[str]
) -> None:
    assert labels(planner.plan(THREE, description)) == expected


def test_what_a_part_says_to_avoid_is_not_guessed_into_an_emotion(planner: RulePlanner) -> None:
    """ "Rather than the usual fire-and-brimstone": the words after "rather than" are what to avoid, so no
    word of them ("usual") is guessed into a calm read that would take the script's first part."""
    plan = planner.plan(THREE, "Rather than the usual fire-and-brimstone, go hopeful and warm here.")
    assert labels(plan) == ["happy"] * 19
