"""EmoDB (Berlin Emotional Speech Database) as a word-labelled clip set.

EmoDB has ten German sentences, each acted in every emotion; a clip's label is its acted emotion, so every
word of a clip carries that label. The shared copy (`../shared/data/emodb`) is resampled to 22.05 kHz and
padded or cut to exactly 2.0 s: about two clips in three stop mid-sentence.

Word spans come from the project's DTW aligner idea with a German reference: espeak-ng's `de` voice speaks
the sentence (it reports where each of its words is), and the clip is warped onto the prefix of that
rendering that matches it best (lowest DTW cost per step over prefixes of 30-100 %). Words that the cut
removed are dropped; a word the cut splits keeps its spoken part when at least `MIN_WORD_S` of it remains.
EmoDB has no word boundaries to check against, so these spans were only inspected by eye.

Label mapping: EmoDB's seven classes are anger, boredom, disgust, fear, happiness, neutral and sadness.
`bored` has no class among the FER labels this project uses, so it is mapped to `neutral` (low arousal,
no facial display); `surprise` never occurs.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernel.errors import InputError
from models.efp.dataset import LabelledClip, LabelledWord, write_clip_set
from models.types import EmotionPlan, PlannedWord, Speech

# The ten EmoDB sentences by text id (the corpus's published transcripts).
SENTENCES: dict[str, str] = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
LABEL_MAP: dict[str, str] = {"bored": "neutral"}
MIN_WORD_S = 0.08  # a word cut shorter than this carries too little audio to keep
SOURCE = "emodb"
PREFIX_SHARES = tuple(np.linspace(0.3, 1.0, 15))  # how much of the sentence a clip may hold


@dataclass(frozen=True)
class EmodbRow:
    path: str
    emotion: str  # after LABEL_MAP
    speaker: str
    text_id: str


def read_labels(data_dir: Path) -> list[EmodbRow]:
    """Rows of `labels.csv`; InputError names the file and line of anything unusable."""
    labels = data_dir / "labels.csv"
    if not labels.is_file():
        raise InputError(f"{data_dir} is not an EmoDB folder: labels.csv is missing")
    rows: list[EmodbRow] = []
    with labels.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            try:
                text_id, emotion = row["text_id"], row["emotion"]
                path, speaker = row["path"], row["speaker"]
            except KeyError as exc:
                raise InputError(f"{labels}:{number}: missing column {exc}") from None
            if text_id not in SENTENCES:
                raise InputError(f"{labels}:{number}: unknown EmoDB text id {text_id!r}")
            if not (data_dir / path).is_file():
                raise InputError(f"{labels}:{number}: audio file {path!r} not found")
            rows.append(EmodbRow(path, LABEL_MAP.get(emotion, emotion), speaker, text_id))
    if not rows:
        raise InputError(f"{labels} lists no clips")
    return rows


class GermanAligner:
    """Word spans of a (possibly cut) German recording of a known sentence."""

    def __init__(self) -> None:
        from models.tts.espeak_engine import EspeakEngine

        self._engine = EspeakEngine(voice="de")
        self._references: dict[str, Speech] = {}

    def reference(self, sentence: str) -> Speech:
        if sentence not in self._references:
            self._references[sentence] = self._engine.synthesize(_flat_plan(sentence))
        return self._references[sentence]

    def align(self, samples: np.ndarray, sample_rate: int, sentence: str) -> list[tuple[str, float, float]]:
        """(word, start, end) for every word still (mostly) audible in the recording."""
        import librosa
        from scipy.spatial.distance import cdist

        from models.align.dtw import FRAME_S, features

        reference = self.reference(sentence)
        target = features(samples, sample_rate)
        full = features(reference.samples, reference.sample_rate)
        # The clip may stop mid-sentence, so it is matched against prefixes of the rendering and the
        # prefix with the lowest cost per path step wins; the match itself is the aligner's plain DTW.
        best: tuple[float, int, np.ndarray] | None = None
        for share in PREFIX_SHARES:
            length = max(2, round(full.shape[1] * share))
            cost, path = librosa.sequence.dtw(C=cdist(target.T, full[:, :length].T))
            score = float(cost[-1, -1]) / len(path)
            if best is None or score < best[0]:
                best = (score, length, np.asarray(path[::-1], dtype=np.int64))
        assert best is not None
        _, length, path = best
        ref_to_target = np.zeros(length)
        counts = np.zeros(length)
        np.add.at(ref_to_target, path[:, 1], path[:, 0])
        np.add.at(counts, path[:, 1], 1.0)
        ref_to_target /= np.maximum(counts, 1.0)
        duration = len(samples) / float(sample_rate)

        def mapped(t: float) -> float | None:
            frame = t / FRAME_S
            if frame > length:
                return None  # past the cut
            return float(np.interp(frame, np.arange(length), ref_to_target)) * FRAME_S

        spans: list[tuple[str, float, float]] = []
        previous_end = 0.0
        for word in reference.timings.words:
            start = mapped(word.start)
            if start is None or start >= duration:
                break
            end = mapped(word.end)
            end = duration if end is None else min(end, duration)
            start = max(start, previous_end)
            if end - start < MIN_WORD_S:
                if end >= duration - FRAME_S:
                    break  # the cut left only a sliver of this word
                end = start + MIN_WORD_S  # DTW collapsed a short word: give it a minimal span
            # rounded to ms, but never past the last sample (round() can go 0.5 ms beyond it)
            spans.append((word.text, round(start, 3), min(round(end, 3), math.floor(duration * 1000) / 1000)))
            previous_end = spans[-1][2]
        return spans


def emodb_clips(data_dir: Path, progress: Callable[[int, int], None] | None = None) -> list[LabelledClip]:
    """Every EmoDB clip with aligned word spans; `audio` paths are relative to `data_dir`."""
    import soundfile as sf

    rows = read_labels(data_dir)
    aligner = GermanAligner()
    clips: list[LabelledClip] = []
    for i, row in enumerate(rows):
        samples, sample_rate = sf.read(data_dir / row.path, dtype="float32", always_2d=False)
        if samples.ndim == 2:
            samples = samples.mean(axis=1)
        spans = aligner.align(samples, int(sample_rate), SENTENCES[row.text_id])
        words = [LabelledWord(text, start, end, row.emotion) for text, start, end in spans]
        clips.append(
            LabelledClip(
                clip_id=Path(row.path).stem,
                audio=row.path,
                words=words,
                speaker=row.speaker,
                source=SOURCE,
                extra={"text_id": row.text_id, "sentence": SENTENCES[row.text_id]},
            )
        )
        if progress is not None:
            progress(i + 1, len(rows))
    return clips


def emodb_clip_set(data_dir: Path, out_dir: Path, progress: Callable[[int, int], None] | None = None) -> Path:
    """Write `out_dir/clips.jsonl` for EmoDB; audio stays in `data_dir`, referenced by relative path."""
    clips = emodb_clips(data_dir, progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    relative = Path(os.path.relpath(data_dir.resolve(), out_dir.resolve()))
    moved = [
        LabelledClip(c.clip_id, str(relative / c.audio), c.words, c.speaker, c.source, c.extra) for c in clips
    ]
    return write_clip_set(out_dir, moved)


def _flat_plan(sentence: str) -> EmotionPlan:
    from models.plan.tokens import WORD_RE

    words = [
        PlannedWord(i, m.group(), m.start(), m.end(), "neutral", 0.0, "default")
        for i, m in enumerate(WORD_RE.finditer(sentence))
    ]
    return EmotionPlan(script=sentence, words=words)


def main(argv: list[str] | None = None) -> Path:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m models.efp.emodb", description="Write EmoDB as a word-labelled clip set."
    )
    parser.add_argument("data_dir", type=Path, help="the EmoDB folder (labels.csv, wav/)")
    parser.add_argument("out_dir", type=Path, help="where clips.jsonl goes (audio stays where it is)")
    args = parser.parse_args(argv)
    path = emodb_clip_set(args.data_dir, args.out_dir)
    print(path)
    return path


if __name__ == "__main__":
    main()
