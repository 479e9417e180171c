"""The clip-set format shared by EmoDB, pseudo-labelling and EFP training."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.errors import InputError
from models.efp.dataset import LabelledClip, LabelledWord, read_clip_set, write_clip_set


def test_round_trip(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    clip = LabelledClip("c1", "a.wav", [LabelledWord("hello", 0.1, 0.4, "happy", 0.7, 0.9)], speaker="s1")
    write_clip_set(tmp_path, [clip])
    assert read_clip_set(tmp_path) == [clip]


def test_errors_name_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing"):
        read_clip_set(tmp_path)
    (tmp_path / "clips.jsonl").write_text('{"clip_id": "x", "audio": "gone.wav", "words": []}\n')
    with pytest.raises(InputError, match=r"clips.jsonl:1: audio file 'gone.wav' not found"):
        read_clip_set(tmp_path)
    (tmp_path / "clips.jsonl").write_text("\n{not json\n")
    with pytest.raises(InputError, match=r"clips.jsonl:2: malformed"):
        read_clip_set(tmp_path)
