"""The preview renderer on the astronaut, with synthetic speech; effects are checked by re-running the
face mesh on rendered frames."""

from __future__ import annotations

import dataclasses
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from kernel.errors import EngineError, InputError
from models.evaluate import naturalness
from models.render import PreviewRenderer
from models.render import topology as topo
from models.render.expressions import load_expressions
from models.render.mouth import EyeWhitePainter, MouthPainter
from models.render.rig import FaceFrame, FaceRig, HeadPose
from models.render.tables import SILENCE, load_facs, load_visemes
from models.types import CurvePoint, EmotionCurve, PhonemeTiming, Speech, Timings, WordTiming
from models.vision import Portrait, detect_landmarks, prepare_portrait
from models.vocabulary import load_vocabulary

LABELS = ["neutral", "happy", "sad", "angry", "fear", "surprise", "disgust"]
SR = 16000
FPS = 25
# three "syllables" of a 150 Hz tone, silence around them
SYLLABLES = [(0.25, 0.55), (0.75, 1.05), (1.3, 1.6)]
LOUD_FRAMES = [10, 22, 36]  # frame times 0.40, 0.88, 1.44 s: the middle of each syllable
SILENT_FRAMES = [2, 16, 30, 45]  # 0.08, 0.64, 1.20, 1.80 s


def make_speech(duration: float = 2.0, phonemes: bool = False, silent: bool = False) -> Speech:
    t = np.arange(int(duration * SR)) / SR
    envelope = np.zeros_like(t)
    words, phones = [], []
    for i, (start, end) in enumerate(SYLLABLES):
        inside = (t >= start) & (t < end)
        envelope[inside] = np.sin(np.pi * (t[inside] - start) / (end - start)) ** 0.5
        words.append(WordTiming(i, f"ma{i}", start, end))
        phones += [
            PhonemeTiming("m", start, start + 0.06, i),
            PhonemeTiming("ˈa", start + 0.06, end - 0.05, i),
            PhonemeTiming(" ", end - 0.05, end, i),
        ]
    samples = (0.5 * envelope * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    if silent:
        samples[:] = 0.0
    return Speech(samples, SR, Timings(words, phones if phonemes else []))


def constant_curve(label: str, intensity: float = 1.0, duration: float = 2.0) -> EmotionCurve:
    dist = {name: float(name == label) for name in LABELS}
    return EmotionCurve(LABELS, [CurvePoint(0, "all", 0.0, duration, label, intensity, dist, {}, {})])


def iod(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[[263, 362]].mean(axis=0) - points[[33, 133]].mean(axis=0)))


def lip_gap(frame: np.ndarray) -> float:
    """Inner-lip distance over inter-ocular distance, measured by a fresh face mesh."""
    points = detect_landmarks(frame)
    assert points is not None, "the face mesh lost the face in a rendered frame"
    return float(np.linalg.norm(points[14] - points[13])) / iod(points)


def corner_lift(frame: np.ndarray) -> float:
    """How far the mouth corners sit above the centre of the lips, over inter-ocular distance."""
    points = detect_landmarks(frame)
    assert points is not None
    middle = points[[13, 14]].mean(axis=0)[1]
    corners = points[[61, 291]].mean(axis=0)[1]
    return float(middle - corners) / iod(points)


@pytest.fixture(scope="module")
def portrait() -> Portrait:
    return prepare_portrait(data.astronaut())


@pytest.fixture(scope="module")
def renderer() -> PreviewRenderer:
    return PreviewRenderer(size=512, fps=FPS, seed=0)


@pytest.fixture(scope="module")
def energy_frames(portrait: Portrait, renderer: PreviewRenderer) -> list[np.ndarray]:
    return list(renderer.render(portrait, make_speech(), constant_curve("neutral", 0.0)))


def test_frame_count_is_the_ceiling_of_duration_times_fps(renderer: PreviewRenderer) -> None:
    assert renderer.frame_count(2.0) == 50
    assert renderer.frame_count(1.96) == 49
    assert renderer.frame_count(2.001) == 51
    assert renderer.frame_count(0.0) == 0
    assert renderer.name == "preview" and renderer.version


def test_renders_the_right_number_of_rgb_frames(energy_frames: list[np.ndarray], portrait: Portrait) -> None:
    assert len(energy_frames) == 50
    for frame in energy_frames:
        assert frame.shape == (512, 512, 3) and frame.dtype == np.uint8
    # the frames are the portrait, moved a little: not a blank or a different picture
    assert np.abs(energy_frames[0].astype(int) - portrait.image).mean() < 25


def test_mouth_opens_with_loudness_and_closes_in_silence(energy_frames: list[np.ndarray]) -> None:
    loud = [lip_gap(energy_frames[i]) for i in LOUD_FRAMES]
    silent = [lip_gap(energy_frames[i]) for i in SILENT_FRAMES]
    # speech opens the mouth a little less than 1.3.0 did (visemes.yaml open_scale), so the gap is
    # a few hundredths of an inter-ocular distance, not a shout
    assert min(loud) > max(silent) + 0.03, (loud, silent)


def test_mouth_changes_more_than_the_border(energy_frames: list[np.ndarray], portrait: Portrait) -> None:
    points = portrait.landmarks
    x0, y0 = np.floor(points[[61, 291, 13, 14, 17]].min(axis=0)).astype(int) - 5
    x1, y1 = np.ceil(points[[61, 291, 13, 14, 17]].max(axis=0)).astype(int) + 25
    loud, silent = energy_frames[LOUD_FRAMES[0]].astype(int), energy_frames[SILENT_FRAMES[0]].astype(int)
    mouth_change = np.abs(loud[y0:y1, x0:x1] - silent[y0:y1, x0:x1]).mean()
    ring = np.ones((512, 512), dtype=bool)
    ring[8:-8, 8:-8] = False
    border_change = np.abs(loud[ring] - silent[ring]).mean()
    assert mouth_change > 10 * max(border_change, 0.5), (mouth_change, border_change)


def test_phoneme_timings_drive_the_mouth(portrait: Portrait, renderer: PreviewRenderer) -> None:
    frames = list(renderer.render(portrait, make_speech(phonemes=True), constant_curve("neutral", 0.0)))
    assert len(frames) == 50
    loud = [lip_gap(frames[i]) for i in LOUD_FRAMES]
    silent = [lip_gap(frames[i]) for i in SILENT_FRAMES]
    assert min(loud) > max(silent) + 0.05, (loud, silent)


def inner_brow_height(frame: np.ndarray) -> float:
    """How far the inner brow ends sit above the eye corners, over inter-ocular distance."""
    points = detect_landmarks(frame)
    assert points is not None
    return float(points[[133, 362]].mean(axis=0)[1] - points[[107, 336]].mean(axis=0)[1]) / iod(points)


def test_facs_rows_lift_the_mouth_corners_for_happy_and_lower_them_for_sad(portrait: Portrait) -> None:
    still = PreviewRenderer(seed=0, head_motion=0.0, expressions="facs")
    speech = make_speech(duration=1.0, silent=True)
    happy = list(still.render(portrait, speech, constant_curve("happy", duration=1.0)))[-1]
    sad = list(still.render(portrait, speech, constant_curve("sad", duration=1.0)))[-1]
    neutral = list(still.render(portrait, speech, constant_curve("neutral", 0.0, duration=1.0)))[-1]
    lift = {"happy": corner_lift(happy), "sad": corner_lift(sad), "neutral": corner_lift(neutral)}
    assert lift["happy"] > lift["neutral"] + 0.02 > lift["sad"] + 0.04, lift


def test_real_motion_smiles_for_happy_and_moves_the_brows_for_sad_as_the_actors_did(
    portrait: Portrait,
) -> None:
    """The MEAD actors' sad is mostly in the brows (drawn together), not in a drawn-down mouth: the
    rendered inner brows move the way the table's field says, far enough for the face mesh to see."""
    still = PreviewRenderer(seed=0, head_motion=0.0)
    speech = make_speech(duration=1.0, silent=True)
    frames = {
        e: list(still.render(portrait, speech, constant_curve(e, 1.0 if e != "neutral" else 0.0, 1.0)))[-1]
        for e in ("happy", "sad", "neutral")
    }
    assert corner_lift(frames["happy"]) > corner_lift(frames["neutral"]) + 0.02
    field_lift = -float(load_expressions().fields["sad"][[107, 336], 1].mean())  # y points down
    seen = inner_brow_height(frames["sad"]) - inner_brow_height(frames["neutral"])
    assert abs(field_lift) > 0.01
    assert np.sign(seen) == np.sign(field_lift) and abs(seen) > 0.3 * abs(field_lift), (seen, field_lift)


def test_border_pixels_stay_put(energy_frames: list[np.ndarray], portrait: Portrait) -> None:
    for frame in energy_frames:
        diff = np.abs(frame.astype(int) - portrait.image)
        assert diff[0].max() <= 2 and diff[-1].max() <= 2
        assert diff[:, 0].max() <= 2 and diff[:, -1].max() <= 2


def test_same_seed_same_frames_other_seed_other_motion(portrait: Portrait) -> None:
    speech = make_speech(duration=1.0)
    curve = constant_curve("surprise", 0.6, duration=1.0)
    first = list(PreviewRenderer(seed=3).render(portrait, speech, curve))
    second = list(PreviewRenderer(seed=3).render(portrait, speech, curve))
    other = list(PreviewRenderer(seed=4).render(portrait, speech, curve))
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_progress_is_reported_up_to_the_total(portrait: Portrait, renderer: PreviewRenderer) -> None:
    calls: list[tuple[int, int]] = []
    frames = list(
        renderer.render(
            portrait,
            make_speech(duration=1.0),
            constant_curve("happy", 0.5, 1.0),
            lambda done, total: calls.append((done, total)),
        )
    )
    assert calls and calls[-1] == (len(frames), len(frames))
    assert all(total == len(frames) for _, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_render_streams_with_flat_memory(portrait: Portrait) -> None:
    small = PreviewRenderer(size=128, seed=0)
    tiny = prepare_portrait(data.astronaut(), size=128)
    peaks = []
    for seconds in (2.0, 8.0):
        speech = make_speech(duration=seconds)
        curve = constant_curve("happy", 0.5, duration=seconds)
        list(small.render(tiny, speech, curve))  # warm the per-portrait cache
        tracemalloc.start()
        count = sum(1 for _ in small.render(tiny, speech, curve))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert count == small.frame_count(seconds)
    # 150 more frames of 128x128 would be 7 MB if they were kept; the audio grows by 0.4 MB
    assert peaks[1] - peaks[0] < 2_000_000, peaks


def test_bad_portrait_fails_at_the_call(renderer: PreviewRenderer) -> None:
    bad = Portrait(image=np.zeros((100, 80, 3), np.uint8), landmarks=np.zeros((468, 2), np.float32))
    with pytest.raises(InputError, match=r"portrait\.image"):
        renderer.render(bad, make_speech(duration=0.5), constant_curve("neutral", 0.0, 0.5))


def test_empty_audio_gives_no_frames(portrait: Portrait, renderer: PreviewRenderer) -> None:
    empty = Speech(np.zeros(0, np.float32), SR, Timings([]))
    assert list(renderer.render(portrait, empty, EmotionCurve(LABELS, []))) == []


def test_viseme_lookup_handles_espeak_ipa() -> None:
    table = load_visemes()
    assert table.lookup("ˈa") == table.visemes["a"]
    assert table.lookup("aɪə") == table.visemes["aɪ"]
    assert table.lookup("tʃʰ") == table.visemes["tʃ"]
    assert table.lookup("ẽ") == table.visemes["e"]
    assert table.lookup("_") == SILENCE and table.lookup(".") == SILENCE
    assert table.lookup(" ") is None and table.lookup("ˈ") is None
    assert table.lookup("ʘ") == table.default
    assert table.is_bilabial("m") and not table.is_bilabial("a")


def test_facs_table_covers_the_vocabulary() -> None:
    facs = load_facs()
    assert set(load_vocabulary().labels) <= set(facs.emotions)
    assert facs.emotions["happy"].keys() == {"AU6", "AU12"}
    assert facs.emotions["angry"].keys() == {"AU4", "AU5", "AU7", "AU9", "AU23"}
    for unit in facs.units.values():
        for dx, dy in unit.moves.values():
            assert abs(dx) <= 0.25 and abs(dy) <= 0.25


def test_raised_upper_lids_bare_the_eye_white(portrait: Portrait) -> None:
    """AU5 (fear's wide eyes) paints the portrait's own sclera colour between the raised lid and where
    the lid was; without a lid rise nothing is painted."""
    facs = load_facs()
    rig = FaceRig(portrait.landmarks, None, facs, load_visemes())
    units = np.asarray(facs.weights(["fear"])[0])
    rise = rig.bared_sclera(units)
    points = rig.pose(units, 0.0, 0.0, 0.0, HeadPose())
    painter = EyeWhitePainter(portrait.image, portrait.landmarks)
    lum = np.array([0.299, 0.587, 0.114])
    assert painter.white @ lum > 150  # the astronaut's eye whites, not her iris or skin
    mid = topo.EYE_R_UPPER.index(159)
    assert rise[mid] > 2.0  # px: the lid centre rises most
    assert rise[0] < 0.5 * rise[mid]  # and the corners hardly at all

    # painted on a dark frame, so that only the painting is bright
    dark = np.full_like(portrait.image, 40)
    frame = dark.copy()
    painter.paint(frame, points, rise, rig.frame.ex, rig.frame.ey)
    # just under the raised lid centre, half way down to where the lid was
    x, y = np.round(points[159] + 0.5 * rise[mid] * rig.frame.ey).astype(int)
    bared = float(frame[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3).mean(axis=0) @ lum)
    assert bared > 0.6 * float(painter.white @ lum), bared
    # the painting stays in the eyes
    changed = np.abs(frame.astype(int) - dark).sum(axis=2) > 0
    eyes = points[list(topo.EYE_R_UPPER + topo.EYE_L_UPPER + topo.EYE_R_LOWER + topo.EYE_L_LOWER)]
    ys, xs = np.nonzero(changed)
    assert changed.any() and xs.min() >= eyes[:, 0].min() - 3 and xs.max() <= eyes[:, 0].max() + 3
    assert ys.min() >= eyes[:, 1].min() - 3 and ys.max() <= eyes[:, 1].max() + 3

    # a lid tightener pulling the lid down again covers the white; angry's brow and lids cover it all
    wide = np.array([float(u == "AU5") for u in rig.unit_names])
    tight = wide + np.array([1.4 * (u == "AU7") for u in rig.unit_names])
    assert 0.0 < rig.bared_sclera(tight).max() < rig.bared_sclera(wide).max()
    assert rig.bared_sclera(np.asarray(facs.weights(["angry"])[0])).max() == 0.0

    still = portrait.image.copy()
    painter.paint(still, points, np.zeros_like(rise), rig.frame.ex, rig.frame.ey)
    assert np.array_equal(still, portrait.image)


def test_a_portraits_smile_is_bent_out_of_the_whole_mouth(portrait: Portrait) -> None:
    """The astronaut smiles: the neutraliser lowers her mouth corners, leaves the lip centre and the face
    outline in place, and moves both lips alike (no kink); a face without a smile is left alone."""
    facs, visemes = load_facs(), load_visemes()
    spec = facs.neutralise
    rig = FaceRig(portrait.landmarks, None, facs, visemes)
    assert rig.corner_lift > spec.max_corner_lift and rig.smile > 0
    down = rig.neutral_offset @ rig.frame.ey / rig.frame.iod  # IOD, positive = towards the chin
    corners = down[list(topo.MOUTH_CORNERS)]
    assert np.all(corners > 0.5 * spec.max_drop * min(1.0, rig.smile)), corners
    top, bottom = topo.LIP_INNER_MID
    assert abs(down[top]) < 0.2 * corners.min() and abs(down[bottom]) < 0.2 * corners.min()
    assert np.allclose(rig.neutral_offset[list(topo.FACE_OVAL)], 0.0)
    # the upper and lower outer lip at the same place across the mouth move (nearly) together
    upper, lower = list(topo.LIP_OUTER_UPPER), list(topo.LIP_OUTER_LOWER)
    for i in upper[1:-1]:
        j = lower[int(np.argmin(np.abs(rig.norm[lower, 0] - rig.norm[i, 0])))]
        assert abs(down[i] - down[j]) < 0.3 * corners.max() + 0.01

    # the same face with its corners pulled below the lip line: nothing to neutralise
    frowning = portrait.landmarks.astype(np.float64).copy()
    frowning[list(topo.MOUTH_CORNERS)] += 0.15 * rig.frame.iod * rig.frame.ey
    sober = FaceRig(frowning, None, facs, visemes)
    assert sober.smile == 0.0 and np.allclose(sober.neutral_offset, 0.0)


def test_teeth_show_by_lip_raise_not_by_jaw_drop(portrait: Portrait) -> None:
    """A dropped jaw (surprise) opens a dark mouth under a thin band of teeth; a raised upper lip (a smile's
    teeth value in facs.yaml) bares a taller band in the same opening."""
    facs, visemes = load_facs(), load_visemes()
    rig = FaceRig(portrait.landmarks, None, facs, visemes)
    painter = MouthPainter(portrait.image, portrait.landmarks, visemes.mouth)
    points = rig.pose(np.zeros(len(rig.unit_names)), 0.35, 0.0, 0.0, HeadPose())
    lum = np.array([0.299, 0.587, 0.114])

    def bright_pixels(teeth: float) -> int:
        frame = np.full_like(portrait.image, 40)
        painter.paint(frame, points, rig.frame.ex, rig.frame.ey, rig.frame.iod, teeth)
        return int(((frame @ lum) > 0.6 * float(painter.teeth @ lum)).sum())

    smile_teeth = facs.units["AU12"].teeth
    assert facs.units["AU26"].teeth == 0.0 and smile_teeth > 0
    jaw, smile = bright_pixels(0.0), bright_pixels(smile_teeth)
    assert jaw > 0 and smile > 2 * jaw, (jaw, smile)


def test_neutraliser_that_undoes_an_unknown_unit_is_refused(tmp_path: Path) -> None:
    text = Path(load_facs().source).read_text(encoding="utf-8")
    broken = tmp_path / "facs.yaml"
    broken.write_text(text.replace("undo: {AU6: 0.75}", "undo: {AU99: 0.75}"), encoding="utf-8")
    with pytest.raises(EngineError, match="AU99"):
        load_facs(broken)


def test_speech_still_moves_a_dropped_jaw(portrait: Portrait) -> None:
    """The FACS surprise row holds the jaw open (AU26); the syllables must still open it further, or lip
    sync is lost. (Real-motion fields leave the lip gap to speech: FaceRig.field_moves.)"""
    renderer = PreviewRenderer(size=512, fps=FPS, seed=0, expressions="facs")
    frames = list(renderer.render(portrait, make_speech(), constant_curve("surprise", 1.0)))
    loud = np.mean([lip_gap(frames[i]) for i in LOUD_FRAMES])
    silent = np.mean([lip_gap(frames[i]) for i in SILENT_FRAMES[1:3]])
    assert silent > 0.1  # the jaw drop alone parts the lips
    assert loud > silent + 0.08, (loud, silent)


def test_lips_stay_smooth_and_apart_whatever_the_field_asks(portrait: Portrait) -> None:
    """A field that ripples the lower lip and pushes the upper lip through it gives smooth, touching lips."""
    facs, visemes = load_facs(), load_visemes()
    rig = FaceRig(portrait.landmarks, None, facs, visemes)
    field = np.zeros((468, 2))
    lower = list(topo.LIP_OUTER_LOWER[1:-1])
    field[lower, 1] = 0.04 * np.array([1, -1, 1, -1, 1, -1, 1, -1, 1])  # a zigzag along the lip
    # the upper lip down through the lower beside the centre (the centre's gap is speech's: field_moves)
    field[[topo.LIP_INNER_UPPER[i] for i in (2, 3, 7, 8)], 1] += 0.08
    units = np.zeros(len(facs.units))
    points = rig.pose(units, 0.0, 0.0, 0.0, HeadPose(), field)
    face = rig.frame
    check = naturalness.lip_check(face.normalise(points)[None], face.normalise(rig.rest))
    assert check.wavy_frames == 0 and check.crossed_frames == 0, check


def test_a_smiling_portrait_loses_at_most_one_and_a_half_real_smiles(portrait: Portrait) -> None:
    """The astronaut grins (about 1.8 of the actors' smile): with the real happy field the neutraliser
    takes out at most 1.5 smiles as the rig plays them on this face, so the neutral stays a face a person
    makes (2 folded another portrait's upper lip into the nose)."""
    facs, visemes = load_facs(), load_visemes()
    smile = load_expressions().fields["happy"]
    rig = FaceRig(portrait.landmarks, None, facs, visemes, smile)
    whole_smile = np.linalg.norm(rig.smile_moves(smile), axis=1)
    offset = np.linalg.norm(rig.neutral_offset, axis=1)
    assert 1.0 < rig.smile <= 1.5
    assert offset.max() <= 1.5 * whole_smile.max() + 1e-9


def test_a_field_leaves_the_whole_lip_gap_to_speech_and_never_lifts_the_jaw_past_rest(
    portrait: Portrait,
) -> None:
    """Every inner-lip pair keeps its gap under every real field, and the chin, brought back with the
    lower lip, stops at rest: 2.0.0 lifted it 0.06 IOD above rest under angry, whose gap is mostly a raised
    upper lip, and the face mesh then read the astronaut's closed angry mouth as open (issue #16)."""
    rig = FaceRig(portrait.landmarks, None, load_facs(), load_visemes())
    up, lo = list(topo.LIP_INNER_UPPER[1:-1]), list(topo.LIP_INNER_LOWER[1:-1])
    for emotion, field in load_expressions().fields.items():
        moves = rig.field_moves(field)
        gap = (moves[lo] - moves[up]) @ rig.frame.ey / rig.frame.iod
        assert np.abs(gap).max() < 1e-9, emotion
        chin = float(moves[topo.CHIN] @ rig.frame.ey / rig.frame.iod)
        asked = float(field[topo.CHIN, 1])
        assert min(asked, 0.0) - 1e-9 <= chin <= max(asked, 0.0) + 1e-9, (emotion, chin, asked)


def _word_curve(labels: list[str]) -> EmotionCurve:
    spans = [(0.0, 0.7), (0.7, 1.2), (1.2, 2.0)]  # boundaries in the pauses between the syllables
    return EmotionCurve(
        LABELS,
        [
            CurvePoint(i, f"w{i}", a, b, label, 1.0, {n: float(n == label) for n in LABELS}, {}, {})
            for i, ((a, b), label) in enumerate(zip(spans, labels, strict=True))
        ],
    )


def _inner_gaps(renderer: PreviewRenderer, portrait: Portrait, curve: EmotionCurve) -> np.ndarray:
    """(frames, 9) the target inner-lip gap of every inner-lip pair, IOD in each frame's face frame."""
    up, lo = list(topo.LIP_INNER_UPPER[1:-1]), list(topo.LIP_INNER_LOWER[1:-1])
    track = renderer.landmark_track(portrait, make_speech(phonemes=True), curve)
    gaps = []
    for points in track:
        frame = FaceFrame.from_landmarks(points)
        norm = frame.normalise(points)
        gaps.append(norm[lo, 1] - norm[up, 1])
    return np.array(gaps)


def test_an_expression_change_at_a_word_boundary_leaves_the_lip_opening_to_speech(portrait: Portrait) -> None:
    """With the speech opening's emotion factor held at 1, a curve that changes emotion word by word
    opens the lips as the neutral curve does, within 0.025 IOD (a tenth of an open vowel) at every
    inner-lip pair and frame; with the factor, the mouth track follows the emotion's measured ratio."""
    renderer = PreviewRenderer(size=512, fps=FPS, seed=0)
    assert renderer.real is not None
    table = renderer.real
    renderer.real = dataclasses.replace(table, speech_ratio={}, speech_scale=1.0)
    base = _inner_gaps(renderer, portrait, constant_curve("neutral", 0.0))
    for labels in (
        ["neutral", "angry", "sad"],
        ["happy", "fear", "surprise"],
        ["disgust", "angry", "neutral"],
    ):
        changed = _inner_gaps(renderer, portrait, _word_curve(labels))
        assert np.abs(changed - base).max() < 0.025, labels
    renderer.real = table
    speech = make_speech(phonemes=True)
    _, sad = renderer._tracks(portrait, speech, constant_curve("sad", 1.0), 50)
    _, neutral = renderer._tracks(portrait, speech, constant_curve("neutral", 1.0), 50)
    talking = neutral.mouth_open > 0.01
    ratio = sad.mouth_open[talking] / neutral.mouth_open[talking]
    assert ratio == pytest.approx(table.speech_ratio["sad"], rel=1e-4)
    assert table.speech_ratio["sad"] < 0.9  # sad speech opens less, as the MEAD actors' does


def test_the_landmark_track_with_the_head_still_is_the_face_without_head_motion(portrait: Portrait) -> None:
    """What the naturalness measure reads as the geometry given: the same expression, speech and blinks
    as a render, with only the head pose left out."""
    speech, curve = make_speech(phonemes=True), constant_curve("sad", 1.0)
    held = PreviewRenderer(size=256, fps=FPS, seed=0).landmark_track(portrait, speech, curve, still_head=True)
    still = PreviewRenderer(size=256, fps=FPS, seed=0, head_motion=0.0).landmark_track(
        portrait, speech, curve
    )
    assert held == pytest.approx(still, abs=1e-6)
    with_head = PreviewRenderer(size=256, fps=FPS, seed=0).landmark_track(portrait, speech, curve)
    assert float(np.abs(with_head - still).max()) > 0.5  # px: the head does move in a render
