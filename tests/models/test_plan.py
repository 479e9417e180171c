"""RulePlanner: inline tags, description cues, warnings and offsets."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.errors import InputError
from models.plan.lexicon import load_lexicon
from models.plan.rules import RulePlanner
from models.plan.tags import check_script
from models.types import EmotionPlan
from models.vocabulary import load_vocabulary


@pytest.fixture(scope="module")
def planner() -> RulePlanner:
    return RulePlanner()


def labels_of(plan: EmotionPlan) -> list[tuple[str, str, float, str]]:
    return [(w.text, w.label, w.intensity, w.source) for w in plan.words]


def assert_offsets(plan: EmotionPlan) -> None:
    for i, w in enumerate(plan.words):
        assert w.index == i
        assert plan.script[w.char_start : w.char_end] == w.text


def test_words_keep_apostrophes_hyphens_digits_and_drop_punctuation(planner: RulePlanner) -> None:
    plan = planner.plan("I'm sure — don't  you know?\nIt's well-known: 3 cats… don’t!")
    assert [w.text for w in plan.words] == [
        "I'm",
        "sure",
        "don't",
        "you",
        "know",
        "It's",
        "well-known",
        "3",
        "cats",
        "don’t",
    ]
    assert plan.script == "I'm sure — don't you know? It's well-known: 3 cats… don’t!"
    assert_offsets(plan)
    assert all(w.label == "neutral" and w.intensity == 0.0 and w.source == "default" for w in plan.words)


def test_tags_intensities_synonyms_and_reset(planner: RulePlanner) -> None:
    plan = planner.plan(
        "[happy] Hello there. [angry 0.8] Stop it. [furious]Get out! [neutral] Fine. "
        "[very sad] Goodbye [angry 40%] now"
    )
    assert plan.script == "Hello there. Stop it. Get out! Fine. Goodbye now"
    assert_offsets(plan)
    assert labels_of(plan) == [
        ("Hello", "happy", 0.7, "tag"),
        ("there", "happy", 0.7, "tag"),
        ("Stop", "angry", 0.8, "tag"),
        ("it", "angry", 0.8, "tag"),
        ("Get", "angry", 1.0, "tag"),  # furious is a synonym with intensity 1.0
        ("out", "angry", 1.0, "tag"),
        ("Fine", "neutral", 0.0, "tag"),  # [neutral] resets
        ("Goodbye", "sad", 0.85, "tag"),  # "very" = 0.85
        ("now", "angry", 0.4, "tag"),
    ]
    assert plan.warnings == []


def test_tag_glued_inside_a_word_splits_it(planner: RulePlanner) -> None:
    plan = planner.plan("well[sad]then")
    assert plan.script == "well then"
    assert labels_of(plan) == [("well", "neutral", 0.0, "default"), ("then", "sad", 0.7, "tag")]


def test_unknown_tag_names_the_tag_and_lists_valid_emotions(planner: RulePlanner) -> None:
    with pytest.raises(InputError) as info:
        planner.plan("[happpy] Hello")
    message = str(info.value)
    assert "[happpy]" in message
    for label in load_vocabulary().labels:
        assert label in message


@pytest.mark.parametrize(
    "tag", ["[angry 1.7]", "[angry x]", "[angry -0.2]", "[angry 0.5 0.6]", "[angry very 0.4]"]
)
def test_malformed_intensity_is_an_input_error(planner: RulePlanner, tag: str) -> None:
    with pytest.raises(InputError, match="intensity"):
        planner.plan(f"{tag} Hello there")


@pytest.mark.parametrize("script", ["", "   \n\t", "[sad]", "[happy]  [angry 0.3] ", "... !?"])
def test_empty_script_is_an_input_error(planner: RulePlanner, script: str) -> None:
    with pytest.raises(InputError, match="script is empty"):
        planner.plan(script)


@pytest.mark.parametrize(
    "script", ["[sad]", "... !?", "[grumpy] Hello.", "[angry 1.7] Hi", "Hello [] there", "[angry sad] Hi"]
)
def test_submission_checks_refuse_what_planning_refuses(planner: RulePlanner, script: str) -> None:
    with pytest.raises(InputError) as planned:
        planner.plan(script)
    with pytest.raises(InputError) as checked:
        check_script(script)
    assert str(checked.value) == str(planned.value)


@pytest.mark.parametrize(
    "script", ["Hello [there. [sad]", "[angry 0.8] Never again.", "Fine [bittersweet] day"]
)
def test_submission_checks_pass_what_planning_plans(planner: RulePlanner, script: str) -> None:
    check_script(script)
    assert planner.plan(script).words


def test_trailing_tag_and_stray_bracket_are_warnings(planner: RulePlanner) -> None:
    plan = planner.plan("Hello [there. [sad]")
    assert plan.script == "Hello [there."
    assert [w.text for w in plan.words] == ["Hello", "there"]
    assert len(plan.warnings) == 2


@pytest.mark.parametrize(
    ("description", "label", "intensity"),
    [
        ("sad", "sad", 0.7),
        ("very angry", "angry", 0.85),
        ("slightly happy", "happy", 0.3),
        ("furious", "angry", 1.0),
        ("Angry 0.6", "angry", 0.6),
        ("a bit scared", "fear", 0.35),
        ("calm", "neutral", 0.0),
    ],
)
def test_plain_description_covers_every_word(
    planner: RulePlanner, description: str, label: str, intensity: float
) -> None:
    plan = planner.plan("One two. Three four five.", description)
    assert {(w.label, w.intensity, w.source) for w in plan.words} == {(label, intensity, "description")}
    assert plan.warnings == []


def test_paper_example_calm_then_anchor_then_sad_last_sentence(planner: RulePlanner) -> None:
    script = "I waited for you all day. I told you never again would I trust you. Now it is over."
    plan = planner.plan(script, "calm at first, angry at 'never again', sad at the end")
    assert plan.warnings == []
    assert {w.label for w in plan.words[:9]} == {"neutral"}  # calm is a neutral synonym
    assert [(w.text, w.label) for w in plan.words[9:11]] == [("never", "angry"), ("again", "angry")]
    assert {w.label for w in plan.words[11:15]} == {"neutral"}
    assert [(w.text, w.label, w.intensity) for w in plan.words[15:]] == [
        ("Now", "sad", 0.7),
        ("it", "sad", 0.7),
        ("is", "sad", 0.7),
        ("over", "sad", 0.7),
    ]
    assert {w.source for w in plan.words} == {"cue"}
    assert_offsets(plan)


def test_double_quoted_anchor_matches_case_insensitively_everywhere(planner: RulePlanner) -> None:
    plan = planner.plan("Never again. Fine, never AGAIN!", 'very angry at "never again"')
    assert [(w.text, w.label, w.intensity) for w in plan.words] == [
        ("Never", "angry", 0.85),
        ("again", "angry", 0.85),
        ("Fine", "neutral", 0.0),
        ("never", "angry", 0.85),
        ("AGAIN", "angry", 0.85),
    ]


def test_unmatched_anchor_and_unknown_parts_are_warnings(planner: RulePlanner) -> None:
    plan = planner.plan("Hello there, friend.", "happy, angry at 'goodbye forever', zorbly at the end")
    assert {w.label for w in plan.words} == {"happy"}
    assert any("goodbye forever" in m and "not found" in m for m in plan.warnings)
    assert any("zorbly" in m for m in plan.warnings)


def test_negated_emotion_is_read_as_what_to_avoid(planner: RulePlanner) -> None:
    plan = planner.plan("Hello there.", "not sad")
    assert {w.label for w in plan.words} == {"neutral"}
    assert [(r.label, r.words, r.where) for r in plan.readings] == [("sad", 0, "nowhere")]
    assert "negated" in plan.readings[0].how
    assert len(plan.warnings) == 1 and "every word is neutral" in plan.warnings[0]  # never a silent neutral


def test_negation_and_contrast_keep_the_wanted_emotion(planner: RulePlanner) -> None:
    script = "The trains are late again. Nobody told us why."
    for brief in ("rather than sad, go for irritated", "not sad, just irritated", "irritated rather than sad",
                  "instead of sounding sad, irritated", "irritated, without sounding sad"):  # fmt: skip
        assert {w.label for w in planner.plan(script, brief).words} == {"angry"}, brief


def test_anchor_without_emotion_is_one_warning(planner: RulePlanner) -> None:
    plan = planner.plan("Hello there.", "stress 'hello'")
    assert {w.label for w in plan.words} == {"neutral"}
    assert len(plan.warnings) == 2 and "hello" in plan.warnings[0]
    assert "every word is neutral" in plan.warnings[1]


def test_temporal_cues_split_words_into_thirds_without_sentences(planner: RulePlanner) -> None:
    plan = planner.plan("a b c d e f g h i", "happy at the start, then fearful, sad by the end")
    assert [w.label for w in plan.words] == ["happy"] * 3 + ["fear"] * 3 + ["sad"] * 3


def test_two_phase_sequence_splits_in_halves_and_holds_until_the_end(planner: RulePlanner) -> None:
    plan = planner.plan("One. Two. Three. Four.", "happy at first, later sad")
    assert [w.label for w in plan.words] == ["happy", "happy", "sad", "sad"]


def test_only_an_end_cue_leaves_the_start_neutral(planner: RulePlanner) -> None:
    plan = planner.plan("One. Two. Three.", "finally, very sad")
    assert [(w.label, w.source) for w in plan.words] == [
        ("neutral", "default"),
        ("neutral", "default"),
        ("sad", "cue"),
    ]


def test_tags_override_the_description(planner: RulePlanner) -> None:
    plan = planner.plan("Hello there [happy 0.5] my friend [neutral] bye", "sad")
    assert labels_of(plan) == [
        ("Hello", "sad", 0.7, "description"),
        ("there", "sad", 0.7, "description"),
        ("my", "happy", 0.5, "tag"),
        ("friend", "happy", 0.5, "tag"),
        ("bye", "neutral", 0.0, "tag"),
    ]


def test_plan_round_trips_through_dict(planner: RulePlanner) -> None:
    plan = planner.plan("[angry] No! [sad] Please stay.", "happy")
    again = EmotionPlan.from_dict(plan.to_dict())
    assert again == plan
    assert [s.text for s in plan.segments()] == ["No", "Please stay"]


_PIECES = st.sampled_from(
    [
        "Hello",
        "don't",
        "well-known",
        "3",
        " ",
        "  ",
        "\n",
        ".",
        ",",
        "!",
        "—",
        "[sad]",
        "[angry 0.4]",
        "[neutral]",
        "x",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=12))
def test_offsets_round_trip_for_any_script(pieces: list[str]) -> None:
    planner = RulePlanner()
    try:
        plan = planner.plan("".join(pieces))
    except InputError as exc:
        assert "script is empty" in str(exc)
        return
    assert_offsets(plan)
    assert "[" not in plan.script
    assert plan.script == plan.script.strip()
    assert "  " not in plan.script


def test_the_tone_lexicon_and_minilm_are_in_the_planners_cache_key(tmp_path: Path) -> None:
    vocabulary = load_vocabulary()
    shipped = Path(str(resources.files("prompts") / "tone_words.yaml")).read_text(encoding="utf-8")
    edited = tmp_path / "tone_words.yaml"
    edited.write_text(shipped.replace("creepy: [fear, 0.6]", "creepy: [fear, 0.7]"), encoding="utf-8")
    base = RulePlanner(vocabulary).identity().digests
    changed = RulePlanner(vocabulary, load_lexicon(vocabulary, edited)).identity().digests
    assert "creepy: [fear, 0.6]" in shipped
    assert base["table:tone_words.yaml"] != changed["table:tone_words.yaml"]
    assert any(k.startswith("model:minilm:") for k in base) and "model:tone_confidence" in base
    assert not any(k.startswith("model:") for k in RulePlanner(vocabulary, semantic=False).identity().digests)
