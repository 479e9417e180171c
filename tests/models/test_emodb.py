"""EmoDB reader: labels, German word alignment of full and cut clips, bad folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kernel.errors import InputError
from models.efp.dataset import read_clip_set
from models.efp.emodb import SENTENCES, GermanAligner, emodb_clip_set, read_labels


@pytest.fixture(scope="module")
def aligner() -> GermanAligner:
    return GermanAligner()


def _fake_emodb(folder: Path, aligner: GermanAligner, keep: float = 1.0) -> None:
    (folder / "wav").mkdir(parents=True)
    speech = aligner.reference(SENTENCES["a05"])
    samples = speech.samples[: int(len(speech.samples) * keep)]
    sf.write(folder / "wav" / "03a05Lb.wav", samples, speech.sample_rate)
    (folder / "labels.csv").write_text("path,emotion,speaker,text_id\nwav/03a05Lb.wav,bored,03,a05\n")


def test_full_rendering_aligns_onto_itself(aligner: GermanAligner) -> None:
    speech = aligner.reference(SENTENCES["a01"])
    spans = aligner.align(speech.samples, speech.sample_rate, SENTENCES["a01"])
    assert [text for text, _, _ in spans] == SENTENCES["a01"].rstrip(".").split()
    truth = {w.text: (w.start, w.end) for w in speech.timings.words}
    for text, start, end in spans:
        assert abs(start - truth[text][0]) < 0.05 and abs(end - truth[text][1]) < 0.05


def test_cut_clip_keeps_only_spoken_words(tmp_path: Path, aligner: GermanAligner) -> None:
    _fake_emodb(tmp_path / "emodb", aligner, keep=0.5)
    out = emodb_clip_set(tmp_path / "emodb", tmp_path / "set")
    (clip,) = read_clip_set(out.parent)
    words = [w.text for w in clip.words]
    all_words = SENTENCES["a05"].rstrip(".").split()
    assert 2 <= len(words) < len(all_words)
    assert words == all_words[: len(words)]
    duration = sf.info(tmp_path / "emodb" / "wav" / "03a05Lb.wav").duration
    assert all(0 <= w.start < w.end <= duration + 1e-6 for w in clip.words)
    assert {w.label for w in clip.words} == {"neutral"}  # bored maps to neutral
    assert clip.speaker == "03" and clip.extra["text_id"] == "a05"
    assert np.all(np.diff([w.start for w in clip.words]) > 0)


def test_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"labels\.csv is missing"):
        read_labels(tmp_path)
    (tmp_path / "labels.csv").write_text("path,emotion,speaker,text_id\nwav/x.wav,sad,03,z99\n")
    with pytest.raises(InputError, match=r"labels.csv:2: unknown EmoDB text id 'z99'"):
        read_labels(tmp_path)
    (tmp_path / "labels.csv").write_text("path,emotion,speaker,text_id\nwav/x.wav,sad,03,a01\n")
    with pytest.raises(InputError, match=r"labels.csv:2: audio file 'wav/x.wav' not found"):
        read_labels(tmp_path)


def test_command_line_writes_the_clip_set(tmp_path: Path, aligner: GermanAligner) -> None:
    from models.efp.emodb import main

    _fake_emodb(tmp_path / "emodb", aligner)
    path = main([str(tmp_path / "emodb"), str(tmp_path / "out")])
    assert path == tmp_path / "out" / "clips.jsonl"
    assert len(read_clip_set(tmp_path / "out")[0].words) == len(SENTENCES["a05"].split())
