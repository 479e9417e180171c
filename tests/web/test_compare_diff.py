"""Issue #18, items 4 and 5 without a server: the compare view's differences and the editor's form."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from emoflow.web.compare import playback_media, stage_rows, word_rows
from emoflow.web.edit_form import form_edits
from stores.records import ArtifactRef, StepRecord, StepStatus


def point(index: int, text: str, label: str = "neutral", intensity: float = 0.2) -> dict[str, Any]:
    return {
        "index": index,
        "text": text,
        "label": label,
        "intensity": intensity,
        "start": index,
        "end": index + 1,
    }


def curve(*points: dict[str, Any]) -> dict[str, Any]:
    return {"points": list(points)}


def ref(sha: str, media_type: str = "application/json") -> ArtifactRef:
    return ArtifactRef(sha256=sha * 64, kind="k", media_type=media_type, size=1, uri="", metadata={})


def step(stage: str, key: str, cache_hit: bool = False, **outputs: ArtifactRef) -> StepRecord:
    now = datetime.now(UTC)
    return StepRecord(
        id=0,
        stage=stage,
        engine="e",
        engine_version="1",
        params={},
        cache_key=key * 64,
        status=StepStatus.SUCCEEDED,
        cache_hit=cache_hit,
        attempts=1,
        started_at=now,
        finished_at=now,
        seconds=0.1,
        error=None,
        inputs={},
        outputs=outputs,
    )


def test_words_of_the_same_script_pair_up_and_only_real_changes_count() -> None:
    a = curve(point(0, "The"), point(1, "boats", "sad", 0.5), point(2, "came"), point(3, "home", "calm", 0.4))
    b = curve(
        point(0, "The"),
        point(1, "boats", "sad", 0.54),  # moved by 0.04: not a change
        point(2, "came", "angry", 0.2),  # label
        point(3, "home", "calm", 0.47),  # intensity by 0.07
    )
    rows = word_rows(a, b)
    assert [r.text for r in rows] == ["The", "boats", "came", "home"]
    assert [r.differences for r in rows] == [(), (), ("label",), ("intensity",)]
    assert [r.changed for r in rows] == [False, False, True, True]
    assert all(r.a is not None and r.b is not None for r in rows)
    assert [r.changed for r in word_rows(a, b, threshold=0.01)] == [False, True, True, True]


def test_words_align_by_text_when_the_scripts_differ() -> None:
    a = curve(point(0, "Boats"), point(1, "came"), point(2, "home."))
    b = curve(point(0, "Boats"), point(1, "never"), point(2, "came"), point(3, "back."))
    rows = word_rows(a, b)
    assert [(r.a and r.a["text"], r.b and r.b["text"], r.differences) for r in rows] == [
        ("Boats", "Boats", ()),
        (None, "never", ("only in b",)),
        ("came", "came", ()),
        ("home.", "back.", ("text",)),
    ]
    # a run with no curve yet: every word of the other is its own
    assert [r.differences for r in word_rows(None, a)] == [("only in b",)] * 3
    assert word_rows(None, None) == []


def test_stages_differ_by_cache_key_or_outputs_and_reuse_is_marked() -> None:
    source = [
        step("plan", "1", plan=ref("a")),
        step("feel", "2", curve=ref("b")),
        step("render", "3", frames=ref("c")),
    ]
    rerender = [
        step("plan", "1", cache_hit=True, plan=ref("a")),
        step("feel", "4", curve=ref("d")),  # an edit: another key, another curve
        step("render", "3", frames=ref("e")),  # the same key giving other bytes still differs
        step("publish", "5", video=ref("f", "video/mp4")),
    ]
    rows = stage_rows(source, rerender)
    assert [(r.stage, r.differences) for r in rows] == [
        ("plan", ()),
        ("feel", ("cache key", "outputs")),
        ("render", ("outputs",)),
        ("publish", ("only in b",)),
    ]
    assert [r.reused for r in rows] == [(False, True), (False, False), (False, False), (False, False)]
    assert [r.changed for r in rows] == [False, True, True, True]
    # a retried stage: its last step stands for it
    retried = [step("plan", "9"), step("plan", "1", plan=ref("a"))]
    assert stage_rows(source[:1], retried)[0].differences == ()


def test_play_both_plays_the_video_else_the_speech() -> None:
    video, delivery, speech = ref("v", "video/mp4"), ref("d", "audio/wav"), ref("s", "audio/wav")
    published = [
        step("speak", "1", speech=speech),
        step("publish", "2", video=video, delivery_speech=delivery),
    ]
    assert playback_media(published) == ("publish/video", video)
    assert playback_media([step("speak", "1", speech=speech)]) == ("speak/speech", speech)
    assert playback_media([step("plan", "1", plan=ref("p"))]) is None


def test_the_editor_form_sends_only_changed_words_and_neighbours_as_one_span() -> None:
    source = curve(*(point(i, f"w{i}", "neutral", 0.8731) for i in range(7)))
    form = {f"label_{i}": "neutral" for i in range(7)} | {f"intensity_{i}": "0.8731" for i in range(7)}
    assert form_edits(source, form) == []
    # what editor.js writes for a 3-word span set to angry 0.9, and a lone word further on
    form |= {f"label_{i}": "angry" for i in (2, 3, 4)} | {f"intensity_{i}": "0.9" for i in (2, 3, 4)}
    form |= {"label_6": "sad"}
    assert form_edits(source, form) == [
        {"start": 2, "stop": 5, "label": "angry", "intensity": "0.9"},
        {"index": 6, "label": "sad", "intensity": "0.8731"},
    ]
    # neighbours with different values stay apart; the span fields still come last
    form |= {
        "intensity_4": "0.5",
        "span_start": "0",
        "span_stop": "1",
        "span_label": "calm",
        "span_intensity": "1",
    }
    assert form_edits(source, form) == [
        {"start": 2, "stop": 4, "label": "angry", "intensity": "0.9"},
        {"index": 4, "label": "angry", "intensity": "0.5"},
        {"index": 6, "label": "sad", "intensity": "0.8731"},
        {"start": "0", "stop": "1", "label": "calm", "intensity": "1"},
    ]
    # a bad number is an edit, for validation to name
    assert form_edits(source, {"label_0": "neutral", "intensity_0": "lots"}) == [
        {"index": 0, "label": "neutral", "intensity": "lots"}
    ]
