"""Facial-emotion pseudo-labels: per-frame judge, smoothing, aggregation to words and windows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
from skimage import data

from kernel.errors import InputError
from models.plan.rules import RulePlanner
from models.publish.video import encode_frames, mux
from models.types import Speech, WordTiming
from models.vision.judge import LABELS
from models.vision.pseudo_labels import (
    FrameJudgements,
    judge_video,
    label_spans,
    probe_video,
    pseudo_label_video,
    smooth,
    window_spans,
)

FPS = 25
SIZE = 256


def astronaut_frame(face: bool) -> np.ndarray:
    """The smiling astronaut (the judge reads her as happy), or upside down, where no detector finds a
    face."""
    image = cv2.resize(data.astronaut(), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return image if face else np.ascontiguousarray(image[::-1])


def make_video(
    path: Path, seconds: float, face_at: Callable[[float], bool], speech: Speech | None = None
) -> Path:
    """An H.264 clip of the astronaut, shown upright while `face_at(t)`; with `speech`, muxed as AAC."""
    n = round(seconds * FPS)
    frames = [astronaut_frame(face_at(i / FPS)) for i in range(n)]
    if speech is None:
        encode_frames(frames, path, fps=FPS, size=SIZE, total=n)
        return path
    silent, wav = path.with_suffix(".frames.mp4"), path.with_suffix(".speech.wav")
    encode_frames(frames, silent, fps=FPS, size=SIZE, total=n)
    sf.write(str(wav), speech.samples, speech.sample_rate, subtype="PCM_16")
    mux(silent, wav, path)
    silent.unlink()
    wav.unlink()
    return path


def espeak_speech(script: str) -> Speech:
    from models.tts.espeak_engine import EspeakEngine

    return EspeakEngine().synthesize(RulePlanner().plan(script))


def judgements(probs: np.ndarray, fps: float = 10.0, sigma: float = 0.0) -> FrameJudgements:
    return FrameJudgements(fps=fps, raw=probs, smoothed=smooth(probs, sigma), crop="test")


def one_hot(label: str, strength: float = 0.9) -> np.ndarray:
    row = np.full(len(LABELS), (1.0 - strength) / (len(LABELS) - 1))
    row[LABELS.index(label)] = strength
    return row


def test_words_take_the_majority_of_their_frames() -> None:
    # 10 fps: frames 0-9 angry, 10-19 sad except frame 12 happy, frames 14-16 without a face
    probs = np.stack([one_hot("angry")] * 10 + [one_hot("sad")] * 10)
    probs[12] = one_hot("happy", 0.6)
    probs[14:17] = np.nan
    spans = [
        WordTiming(0, "first", 0.0, 0.95),  # frames 0-9
        WordTiming(1, "second", 1.0, 2.0),  # frames 10-19: 6 sad, 1 happy with a face
        WordTiming(2, "blink", 1.42, 1.68),  # frames 14-16: no face at all
        WordTiming(3, "tiny", 0.51, 0.52),  # shorter than a frame: the frame under its midpoint (5)
    ]
    result = label_spans(judgements(probs), spans)
    words = {w.text: w for w in result.words}
    assert result.dropped == ["blink"]
    assert [w.text for w in result.words] == ["first", "second", "tiny"]
    assert words["first"].label == "angry" and words["first"].confidence == 1.0
    assert words["first"].intensity == pytest.approx(0.9)
    assert words["second"].label == "sad" and words["second"].confidence == pytest.approx(6 / 7, abs=1e-4)
    assert words["tiny"].label == "angry" and (words["tiny"].start, words["tiny"].end) == (0.51, 0.52)
    assert result.frames.frames_without_face == 3
    assert result.frames.label_counts() == {"angry": 10, "happy": 1, "sad": 6}


def test_smoothing_votes_away_a_single_frame_and_keeps_gaps() -> None:
    probs = np.stack([one_hot("sad")] * 12)
    probs[5] = one_hot("happy", 0.7)
    probs[9] = np.nan
    smoothed = smooth(probs, sigma_frames=2.0)
    assert np.isnan(smoothed[9]).all() and not np.isnan(np.delete(smoothed, 9, axis=0)).any()
    assert np.allclose(np.nansum(smoothed, axis=1)[np.arange(12) != 9], 1.0)
    labels = judgements(probs, sigma=2.0).frame_labels()
    assert labels[9] is None and set(labels) - {None} == {"sad"}
    assert judgements(probs).frame_labels(smoothed=False)[5] == "happy"
    assert np.array_equal(smooth(probs, 0.0), probs, equal_nan=True)


def test_windows_cover_the_clip() -> None:
    spans = window_spans(1.3, 0.5)
    assert [(s.start, s.end) for s in spans] == [(0.0, 0.5), (0.5, 1.0), (1.0, 1.3)]
    assert all(s.text == "" for s in spans)
    with pytest.raises(InputError):
        window_spans(1.0, 0.0)


def test_real_video_faces_and_gaps(tmp_path: Path) -> None:
    video = make_video(tmp_path / "half.mp4", 2.0, face_at=lambda t: t < 1.0)
    frames = judge_video(video)
    assert frames.frames == 50 and frames.fps == FPS
    assert frames.frames_without_face == 25 and frames.has_face[:25].all()
    assert frames.label_counts() == {"happy": 25}

    labels = pseudo_label_video(video, window_s=0.5)  # word-free mode
    assert [(w.start, w.end, w.label) for w in labels.words] == [
        (0.0, 0.5, "happy"),
        (0.5, 1.0, "happy"),
    ]
    assert all(w.confidence == 1.0 and w.intensity is not None and w.intensity > 0.8 for w in labels.words)
    assert len(labels.dropped) == 2  # the two upside-down windows
    haar = judge_video(video, crop="haar")
    assert haar.frames_without_face == 25 and haar.label_counts() == {"happy": 25}


def test_bad_videos_are_input_errors(tmp_path: Path) -> None:
    no_face = make_video(tmp_path / "noface.mp4", 0.4, face_at=lambda t: False)
    with pytest.raises(InputError, match="no face found in any of the 10 frames"):
        judge_video(no_face)
    audio_only = tmp_path / "speech.wav"
    sf.write(str(audio_only), np.zeros(8000, dtype=np.float32), 16000)
    with pytest.raises(InputError, match="no video stream"):
        judge_video(audio_only)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(InputError, match="not a readable video"):
        judge_video(junk)
    with pytest.raises(InputError, match="not found"):
        judge_video(tmp_path / "missing.mp4")
    with pytest.raises(InputError, match="unknown crop"):
        judge_video(no_face, crop="retina")


def test_probe_sees_the_audio_track(tmp_path: Path) -> None:
    speech = espeak_speech("Hello there.")
    talking = make_video(tmp_path / "talk.mp4", speech.duration, lambda t: True, speech=speech)
    silent = make_video(tmp_path / "silent.mp4", 0.4, lambda t: True)
    assert probe_video(talking).has_audio and not probe_video(silent).has_audio
    assert probe_video(talking).duration == pytest.approx(speech.duration, abs=0.1)
