"""Word-labelled speech clips: what the learned EFP trains on and what evaluations score against.

A clip set is a folder with `clips.jsonl` (one LabelledClip per line) beside the audio files it names;
audio paths are relative to that folder. Pseudo-labelling (flows/pseudo_label.py) and dataset readers
(EmoDB) both write this format, so training never cares where its labels came from.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kernel.errors import InputError

MANIFEST = "clips.jsonl"


@dataclass(frozen=True)
class LabelledWord:
    text: str
    start: float  # seconds into the clip's audio
    end: float
    label: str  # one of the vocabulary's labels
    intensity: float | None = None  # 0..1 when the source knows it
    confidence: float | None = None  # share of frames that agreed, for pseudo-labels


@dataclass(frozen=True)
class LabelledClip:
    clip_id: str
    audio: str  # path relative to the clip set's folder (wav, or any file soundfile reads)
    words: list[LabelledWord]
    speaker: str = ""  # for speaker-held-out splits
    source: str = ""  # "emodb", "pseudo-label:fer-mini-xception", ...
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelledClip:
        return cls(
            clip_id=str(data["clip_id"]),
            audio=str(data["audio"]),
            words=[LabelledWord(**w) for w in data["words"]],
            speaker=str(data.get("speaker", "")),
            source=str(data.get("source", "")),
            extra=dict(data.get("extra", {})),
        )


def write_clip_set(folder: Path, clips: list[LabelledClip]) -> Path:
    """Write `clips.jsonl` atomically (temp file + rename); the audio files must already be in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / MANIFEST
    partial = target.with_suffix(".jsonl.part")
    with partial.open("w", encoding="utf-8") as handle:
        for clip in clips:
            handle.write(json.dumps(clip.to_dict(), ensure_ascii=False) + "\n")
    partial.replace(target)
    return target


def read_clip_set(folder: Path) -> list[LabelledClip]:
    """Clips from `folder/clips.jsonl`; InputError names the file and line of anything malformed."""
    target = folder / MANIFEST
    if not target.is_file():
        raise InputError(f"{folder} is not a clip set: {MANIFEST} is missing")
    clips: list[LabelledClip] = []
    for number, line in enumerate(target.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            clip = LabelledClip.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{target}:{number}: malformed clip record ({exc})") from None
        if not (folder / clip.audio).is_file():
            raise InputError(f"{target}:{number}: audio file {clip.audio!r} not found")
        clips.append(clip)
    if not clips:
        raise InputError(f"{target} holds no clips")
    return clips
