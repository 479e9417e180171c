"""The naturalness measure and the real-motion expression table, on synthetic faces with known moves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kernel.errors import EngineError
from models.evaluate import naturalness
from models.evaluate.metrics import similarity_align as align
from models.evaluate.real_faces import LandmarkTrack, face_frame_track, neutral_reference
from models.render import topology as topo
from models.render.expressions import (
    ExpressionTable,
    landmark_gain,
    load_expressions,
    mirror_pairs,
    speech_opening,
    symmetrise,
    within_range,
)


def synthetic_face(seed: int = 0) -> np.ndarray:
    """A frontal 'face' in the face frame: 468 points spread over a face-sized area, with the eye corners
    and lips where the renderer expects them (IOD units, eyes at y = 0, mouth around y = 1)."""
    rng = np.random.default_rng(seed)
    points = rng.uniform([-1.2, -1.0], [1.2, 1.6], size=(468, 2))
    points[list(topo.EYE_R_CORNERS)] = [[-0.75, 0.0], [-0.25, 0.0]]
    points[list(topo.EYE_L_CORNERS)] = [[0.75, 0.0], [0.25, 0.0]]
    for contour, y, bend in (
        (topo.LIP_OUTER_UPPER, 0.95, -0.05),
        (topo.LIP_OUTER_LOWER, 1.05, 0.08),
        (topo.LIP_INNER_UPPER, 1.0, 0.0),
        (topo.LIP_INNER_LOWER, 1.0, 0.02),
    ):
        x = np.linspace(-0.4, 0.4, len(contour))
        points[list(contour)] = np.stack([x, y + bend * (1 - (x / 0.4) ** 2)], axis=1)
    return points


def test_region_displacement_is_the_mean_move_of_each_region() -> None:
    neutral = synthetic_face()
    frames = np.repeat(neutral[None], 3, axis=0)
    brows = list(naturalness.REGIONS["brows"])
    frames[1, brows, 1] -= 0.05  # brows up by 0.05 IOD in frame 1
    frames[2, list(topo.MOUTH_CORNERS), 0] += [-0.03, 0.03]  # corners out by 0.03 in frame 2
    moves = naturalness.region_displacement(frames, neutral)
    assert moves["brows"] == pytest.approx([0.0, 0.05, 0.0])
    assert moves["mouth_corners"] == pytest.approx([0.0, 0.0, 0.03])
    assert moves["jaw"] == pytest.approx([0.0, 0.0, 0.0])


def test_range_ratio_compares_the_clips_p95_with_the_real_p95() -> None:
    per_region = {"brows": np.linspace(0.0, 0.1, 101), "jaw": np.full(20, 0.02)}
    table = {
        "emotions": {"sad": {"brows": {"median": 0.03, "p95": 0.05}, "jaw": {"median": 0.01, "p95": 0.04}}}
    }
    ratio = naturalness.range_ratio(per_region, "sad", table)
    assert ratio["brows"] == pytest.approx(0.095 / 0.05)  # beyond human range
    assert ratio["jaw"] == pytest.approx(0.5)  # within it


def test_the_shipped_range_covers_every_emotion_and_region() -> None:
    real = naturalness.real_range()
    assert set(real["emotions"]) == {"neutral", "happy", "sad", "angry", "fear", "surprise", "disgust"}
    for regions in real["emotions"].values():
        assert set(regions) == set(naturalness.REGIONS)
        assert all(0.0 < r["median"] <= r["p95"] < 0.5 for r in regions.values())


def test_a_smooth_lip_passes_and_a_wavy_one_is_caught() -> None:
    rest = synthetic_face()
    smooth = rest.copy()
    smooth[list(topo.LIP_OUTER_LOWER), 1] += 0.02  # the whole lip lower: same shape
    wavy = rest.copy()
    lower = list(topo.LIP_OUTER_LOWER)
    wavy[lower[2:-2], 1] += 0.04 * np.array([1, -1, 1, -1, 1, -1, 1])  # a zigzag along the lip
    check = naturalness.lip_check(np.stack([smooth, wavy]), rest)
    assert check.frames == 2 and check.wavy_frames == 1 and check.crossed_frames == 0


def test_lips_passing_through_each_other_or_a_folded_outline_are_caught() -> None:
    rest = synthetic_face()
    through = rest.copy()
    through[list(topo.LIP_INNER_UPPER[3:8]), 1] += 0.06  # the upper lip pushed below the lower one
    folded = rest.copy()
    upper = list(topo.LIP_OUTER_UPPER)
    folded[upper[3]], folded[upper[6]] = rest[upper[6]].copy(), rest[upper[3]].copy()  # outline crosses
    check = naturalness.lip_check(np.stack([rest, through, folded]), rest)
    assert check.crossed_frames == 2
    assert naturalness.self_intersections(rest[upper + list(reversed(topo.LIP_OUTER_LOWER[1:-1]))]) == 0


def test_ripple_ignores_smooth_bends_and_noise_but_measures_a_wave() -> None:
    x = np.linspace(-1, 1, 11)
    arc = np.stack([x, 0.3 * x**2], axis=1)
    noisy = arc + np.random.default_rng(0).normal(0, 0.002, arc.shape)
    assert naturalness.ripple(arc) < 0.01  # a parabola, resampled along its length: nearly a cubic
    assert naturalness.ripple(noisy) < 0.01
    wave = arc.copy()
    wave[:, 1] += 0.05 * np.sin(3 * np.pi * x)
    assert 0.03 < naturalness.ripple(wave) < 0.06


def test_alignment_removes_head_motion_but_keeps_the_expression() -> None:
    neutral = np.concatenate([synthetic_face(), np.zeros((468, 1))], axis=1) * 100.0  # a mesh in pixels
    frame = neutral.copy()
    brows = list(naturalness.REGIONS["brows"])
    frame[brows, 1] -= 5.0  # brows up by 5 px: 0.05 IOD (the eye centres are 1 unit = 100 px apart)
    angle = np.radians(8)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    moved = 1.3 * frame @ rot.T + [40.0, -25.0, 3.0]  # the head turned, scaled and shifted
    track, rest = face_frame_track(moved[None], neutral)
    shift = track[0] - rest
    iod = 100.0  # px between the eye centres
    assert np.abs(shift[brows, 1] * iod + 5.0).max() < 0.5
    stable = [i for i in range(468) if i not in brows]
    assert np.abs(shift[stable]).max() * iod < 0.5


def test_neutral_reference_is_the_median_face_after_alignment() -> None:
    neutral = np.concatenate([synthetic_face(), np.zeros((468, 1))], axis=1)
    frames = np.stack([neutral + np.array([dx, 0.0, 0.0]) for dx in (-0.1, 0.0, 0.1)])
    reference = neutral_reference(frames)
    assert np.abs(align(reference, neutral) - neutral).max() < 1e-9


def test_mirror_pairs_and_symmetrise_make_a_lopsided_move_even() -> None:
    half = synthetic_face()
    half[:, 0] = np.abs(half[:, 0]) + 0.01
    face = np.concatenate([half[:234], half[:234] * [-1, 1]])  # each point has a mirrored twin
    partner = mirror_pairs(face)
    assert (partner[partner] == np.arange(468)).all()
    field = np.zeros((468, 2))
    field[5] = [0.04, -0.02]  # one side only
    even = symmetrise(field, partner)
    assert even[5] == pytest.approx([0.02, -0.01])
    assert even[partner[5]] == pytest.approx([-0.02, -0.01])


def test_played_fields_are_the_measured_ones_over_the_detectors_gain() -> None:
    neutral = synthetic_face()
    field = np.zeros((468, 2))
    brow = naturalness.REGIONS["brows"][0]
    field[brow] = [0.0, -0.03]
    doc = {"neutral": neutral.tolist(), "fields": {"sad": field.tolist()}, "detector_gain": {"brows": 0.5}}
    table = ExpressionTable.from_document(doc)
    assert table.fields["sad"][brow] == pytest.approx([0.0, -0.06])
    assert landmark_gain(neutral, {})[brow] == 1.0
    assert table.field_stack(["sad", "unknown"]).shape == (2, 936)
    assert not table.field_stack(["unknown"]).any()


def test_the_shipped_expression_table_loads_and_explains_each_emotion() -> None:
    table = load_expressions()
    assert set(table.fields) >= {"neutral", "happy", "sad", "angry", "fear", "surprise", "disgust"}
    assert not table.fields["neutral"].any()
    assert table.units["happy"].get("AU12", 0.0) > 0.5  # a smile pulls the lip corners
    assert table.units["surprise"].get("AU1", 0.0) > 0.3  # surprise raises the brows
    # human magnitudes: no landmark moves further than a fifth of the eye distance
    assert max(float(np.abs(f).max()) for f in table.fields.values()) < 0.2


def test_a_field_over_the_actors_p95_is_scaled_down_whole_and_one_within_is_left_alone() -> None:
    brow = list(topo.FACE_REGIONS["brows"])
    lips = list(topo.FACE_REGIONS["lips"])
    over = np.zeros((468, 2))
    over[brow, 1] = -0.05  # brows up by 0.05 IOD, where the actors' p95 is 0.04
    over[lips, 0] = 0.01
    within = over * 0.5
    p95 = {"surprise": {"brows": {"p95": 0.04}, "lips": {"p95": 0.1}}}
    p95["fear"] = p95["surprise"]
    scales = within_range({"surprise": over, "fear": within, "unknown": over}, p95)
    assert scales["surprise"] == pytest.approx(0.8)  # the worst region lands on the p95
    assert scales["fear"] == 1.0  # never amplified
    assert scales["unknown"] == 1.0  # no range to compare with: played as measured


def test_the_shipped_fields_stay_within_the_actors_range_at_full_intensity() -> None:
    table = load_expressions()
    real = naturalness.real_range()["emotions"]
    for emotion, field in table.fields.items():
        moves = naturalness.region_displacement(field[None], np.zeros_like(field))
        for region, move in moves.items():
            assert float(move[0]) <= real[emotion][region]["p95"] * (1 + 1e-9), (emotion, region)
    assert table.range_scale["surprise"] < 0.9  # the two actors' averaged brows went over
    raw = load_expressions(range_path=None)
    factor = table.range_scale["surprise"]
    assert table.fields["surprise"] == pytest.approx(raw.fields["surprise"] * factor)
    assert table.units["surprise"]["AU1"] == pytest.approx(raw.units["surprise"]["AU1"] * factor)


def test_a_broken_expression_table_is_refused_with_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "expressions.json"
    bad.write_text(json.dumps({"neutral": [[0, 0]] * 468, "fields": {"sad": [[0, 0]] * 10}}))
    with pytest.raises(EngineError, match=r"expressions\.json"):
        load_expressions(bad)
    bad.write_text("{not json")
    with pytest.raises(EngineError, match="cannot read"):
        load_expressions(bad)
    missing = tmp_path / "expression_range.json"
    with pytest.raises(EngineError, match=r"expression range .*expression_range\.json"):
        load_expressions(range_path=missing)


def test_speech_opening_is_each_emotions_lip_gap_motion_over_the_speakers_neutral() -> None:
    """Per speaker, the std of the inner-lip gap over the clip against that speaker's neutral clip; then
    the mean over speakers (a speaker who talks wider in every emotion does not weigh more)."""
    bottom = topo.LIP_INNER_MID[1]
    rest = np.zeros((468, 2))
    t = np.linspace(0.0, 6.0, 200)

    def track(speaker: str, emotion: str, amplitude: float, offset: float) -> LandmarkTrack:
        points = np.zeros((len(t), 468, 2))
        points[:, bottom, 1] = offset + amplitude * np.sin(t)  # the expression's offset does not count
        return LandmarkTrack(speaker, emotion, "", points, rest, 0)

    tracks = [
        track("A", "neutral", 0.10, 0.0),
        track("A", "sad", 0.06, -0.05),
        track("B", "neutral", 0.05, 0.0),
        track("B", "sad", 0.04, 0.02),
    ]
    ratio = speech_opening(tracks)
    assert ratio["neutral"] == pytest.approx(1.0)
    assert ratio["sad"] == pytest.approx((0.6 + 0.8) / 2, abs=0.005)


def test_the_shipped_table_opens_sad_speech_less_than_neutral() -> None:
    """MEAD's two actors part their lips less when they speak sadly (one of them much less, the other
    a little more: a weak, two-person figure); neutral speech is scaled to their neutral talking."""
    table = load_expressions()
    assert table.speech_ratio["neutral"] == 1.0
    assert table.speech_ratio["sad"] < 0.9
    assert table.speech_ratio["angry"] > 1.0
    assert 0.5 < table.speech_scale < 1.0
    weights = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.5], [0.0, 0.0]])  # neutral, sad, half sad, nothing
    factor = table.speech_factor(["neutral", "sad"], weights)
    sad = table.speech_ratio["sad"]
    scale = table.speech_scale
    assert factor == pytest.approx([scale, scale * sad, scale * (1 + 0.5 * (sad - 1)), scale])
