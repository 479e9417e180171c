"""Parler-TTS: a neural voice whose emotion is asked for in words; word timings by DTW.

Parler-TTS (huggingface/parler-tts, Apache-2.0) speaks a prompt in the voice that a second sentence,
the *description*, describes: "Thomas speaks moderately slowly in a sad tone with emphasis and high
quality audio." The engine turns each run of same-emotion words into one such description
(`prompts/parler.yaml`), generates that run, and finds its words in the audio with the DTW aligner
(Parler reports no timings). Runs are joined as the embedded engines join sentences.

Its packages (torch 2.9 with torchaudio, transformers 4.46.1, parler-tts) cannot live beside the
project's, so it runs in an environment of its own: `emoflow engines install parler`, then
`tts_engine: parler-env` (docs/engines.md). The checkpoint is loaded by parler-tts's own
`from_pretrained` from a local folder, never from the hub: EMOFLOW_PARLER_MODEL names it. Its files
are part of the engine's identity, so another checkpoint gives other cache keys.

Only the standard library, numpy and the project's own modules load at import, so the main
environment can read the descriptions (tests, docs) without torch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from kernel.errors import EngineError, InputError
from models.align.dtw import DtwAligner
from models.identity import EngineIdentity, describe, table_file
from models.tts import common, streaming
from models.types import EmotionPlan, ProgressFn, Speech, Timings
from models.vocabulary import PROSODY_PARTS, Vocabulary, load_vocabulary, vocabulary_table

DESCRIPTIONS_FILE = "parler.yaml"
# the distributions whose code shapes the audio: part of the identity
PACKAGES = ("parler-tts", "transformers", "torch", "descript-audio-codec-unofficial")
INSTALL_HINT = (
    "download a Parler-TTS checkpoint on a machine with hub access "
    "(`huggingface-cli download parler-tts/parler-tts-mini-expresso --local-dir DIR`) "
    "and set EMOFLOW_PARLER_MODEL=DIR"
)
# silence between sentences: Parler's own output already starts and ends with a little
SENTENCE_GAP_S = 0.12


def default_descriptions() -> Path:
    return Path(str(resources.files("prompts") / DESCRIPTIONS_FILE))


@dataclass(frozen=True)
class Descriptions:
    """prompts/parler.yaml (or EMOFLOW_PARLER_DESCRIPTIONS, for a checkpoint trained on other wording):
    how an emotion at an intensity and speaking rate is described."""

    speaker: str
    template: str
    emphasis_from: float
    emphasis: str
    speed: tuple[tuple[float, str], ...]  # (rate below which, words), in order
    styles: dict[str, str]
    source: Path = field(default=Path(), compare=False)  # the file it was read from

    @classmethod
    def load(cls, path: Path | None = None) -> Descriptions:
        source = path or default_descriptions()
        try:
            data = yaml.safe_load(source.read_text(encoding="utf-8"))
            table = cls(
                speaker=str(data["speaker"]),
                template=str(data["template"]),
                emphasis_from=float(data["emphasis_from"]),
                emphasis=str(data["emphasis"]),
                speed=tuple((float(row["below"]), str(row["words"])) for row in data["speed"]),
                styles={str(label): str(style) for label, style in data["styles"].items()},
                source=source,
            )
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
            raise EngineError(f"cannot read the Parler descriptions in {source}: {exc}") from exc
        if [below for below, _ in table.speed] != sorted(below for below, _ in table.speed):
            raise EngineError(f"{source}: the speed rows must be in increasing order of `below`")
        return table

    def describe(self, label: str, intensity: float, rate: float) -> str:
        """The description sentence for words of `label` at `intensity`, spoken at `rate` x neutral."""
        if label not in self.styles:
            raise InputError(f"the Parler descriptions have no style for emotion {label!r}")
        speed = next((words for below, words in self.speed if rate < below), self.speed[-1][1])
        emphasis = self.emphasis if intensity >= self.emphasis_from else ""
        return self.template.format(
            speaker=self.speaker, speed=speed, style=self.styles[label], emphasis=emphasis
        )


@dataclass(frozen=True)
class Piece:
    """Plan words[first:stop], inside one sentence, spoken in one generation with one description."""

    first: int
    stop: int
    text: str  # the script from the first word to where the next piece (or the sentence) starts
    char_start: int
    description: str


def pieces(
    plan: EmotionPlan, sentence: common.Sentence, descriptions: Descriptions, vocabulary: Vocabulary
) -> list[Piece]:
    """The sentence cut where the emotion label changes; each run described by its mean intensity."""
    words = plan.words
    sentence_end = sentence.char_start + len(sentence.text)
    runs: list[tuple[int, int]] = []
    first = sentence.first
    for i in range(sentence.first + 1, sentence.stop):
        if words[i].label != words[i - 1].label:
            runs.append((first, i))
            first = i
    runs.append((first, sentence.stop))
    result = []
    for first, stop in runs:
        start = words[first].char_start if first > sentence.first else sentence.char_start
        end = words[stop].char_start if stop < sentence.stop else sentence_end
        label = words[first].label
        intensity = float(np.mean([w.intensity for w in words[first:stop]]))
        rate = vocabulary.emotion(label).prosody.scaled(intensity).rate
        text = plan.script[start:end].rstrip()
        result.append(Piece(first, stop, text, start, descriptions.describe(label, intensity, rate)))
    return result


class ParlerEngine(streaming.StreamingSynthesis):
    """Parler-TTS from a local checkpoint folder; one generation per same-emotion run of words."""

    name = "parler"
    version = "1.0.0"

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        seed: int | None = None,
        device: str | None = None,
        vocabulary: Vocabulary | None = None,
        descriptions: Descriptions | None = None,
    ) -> None:
        from kernel.settings import get_settings

        settings = get_settings()
        chosen = model_dir if model_dir is not None else settings.parler_model
        self.model_dir = Path(chosen).expanduser() if chosen else None
        self.seed = settings.seed if seed is None else seed
        self.device = device or settings.device
        self.vocabulary = vocabulary or load_vocabulary()
        self.descriptions = descriptions or Descriptions.load(settings.parler_descriptions)
        self.aligner = DtwAligner()
        self._lock = threading.Lock()  # one generation at a time: each seeds torch's global generator
        self._loaded: tuple[Any, Any] | None = None  # (model, tokenizer)

    def identity(self) -> EngineIdentity:
        """The descriptions, the prosody rows (rates; the aligner's reference), the checkpoint's files."""
        return describe(
            self,
            tables=[table_file(self.descriptions.source), vocabulary_table(self.vocabulary, *PROSODY_PARTS)],
            files={"checkpoint": self.checkpoint()},
            packages=(*PACKAGES, "espeakng-loader", "librosa"),
        )

    def checkpoint(self) -> Path:
        """The checkpoint folder; EngineError saying how to get one when it is unset or not a checkpoint."""
        if self.model_dir is None:
            raise EngineError(f"the parler engine has no checkpoint: {INSTALL_HINT}")
        if not (self.model_dir / "config.json").is_file():
            raise EngineError(
                f"{self.model_dir} is not a Parler-TTS checkpoint (no config.json there); {INSTALL_HINT}"
            )
        return self.model_dir

    @property
    def _stream_gap_s(self) -> float:
        return SENTENCE_GAP_S

    def _synthesize(self, plan: EmotionPlan, progress: ProgressFn | None = None) -> Speech:
        """Generate every piece, align its words by DTW, join them; one WordTiming per plan word."""
        # 1. Check inputs and cut the plan into pieces
        common.check_plan(plan)
        prosody = common.word_prosody(plan, self.vocabulary)
        segment_ids = common.segment_of_word(plan)
        sentences = common.split_sentences(plan)
        work = [
            (number, piece)
            for number, sentence in enumerate(sentences)
            for piece in pieces(plan, sentence, self.descriptions, self.vocabulary)
        ]
        if progress:
            progress(0, len(work))

        # 2. One generation and one alignment per piece
        chunks: list[np.ndarray] = []
        spans: list[common.WordSpan] = []
        offset = 0.0
        sample_rate = 0
        for done, (number, piece) in enumerate(work, start=1):
            piece_plan = streaming.sentence_plan(
                plan, common.Sentence(piece.first, piece.stop, piece.text, piece.char_start)
            )
            audio, sample_rate = self._generate(piece.description, piece_plan.script)
            common.check_audible(audio, sample_rate, piece.text)
            timings = self.aligner.align(Speech(audio, sample_rate, Timings(words=[])), piece_plan)
            spans.extend(_spans(timings, offset))
            audio = common.fade_edges(audio, sample_rate)
            # a sentence's last piece is followed by the sentence gap, and by its segment's pause
            gap = 0.0
            last = piece.stop - 1
            if last + 1 < len(plan.words) and piece.stop == sentences[number].stop:
                gap = SENTENCE_GAP_S
                if segment_ids[last] != segment_ids[last + 1]:
                    gap += prosody[last].pause_ms / 1000.0
            chunks.extend([audio, np.zeros(round(gap * sample_rate), dtype=np.float32)])
            offset += (len(audio) + len(chunks[-1])) / sample_rate
            if progress:
                progress(done, len(work))

        # 3. Post-process
        samples = common.limit_peaks(np.concatenate(chunks), sample_rate)
        return Speech(
            samples, sample_rate, common.build_timings(plan.words, spans, len(samples) / sample_rate)
        )

    def _generate(self, description: str, text: str) -> tuple[np.ndarray, int]:
        """Parler's audio for `text` in the voice `description` describes: float32 mono, its rate."""
        import torch

        model, tokenizer = self._model()
        with self._lock:
            torch.manual_seed(self.seed)  # the same piece gives the same audio
            voice = tokenizer(description, return_tensors="pt").to(self.device)
            prompt = tokenizer(text, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                generated = model.generate(
                    input_ids=voice.input_ids,
                    attention_mask=voice.attention_mask,
                    prompt_input_ids=prompt.input_ids,
                    prompt_attention_mask=prompt.attention_mask,
                )
        audio = generated.to(torch.float32).cpu().numpy().reshape(-1)
        if audio.size == 0 or not np.all(np.isfinite(audio)):
            raise EngineError(f"Parler-TTS gave no usable audio for {text!r}")
        return np.clip(audio, -1.0, 1.0).astype(np.float32), int(model.config.sampling_rate)

    def _model(self) -> tuple[Any, Any]:
        """The checkpoint's model and tokenizer, loaded on first use by parler-tts's own loader."""
        with self._lock:
            if self._loaded is None:
                folder = self.checkpoint()
                try:
                    from parler_tts import ParlerTTSForConditionalGeneration
                    from transformers import AutoTokenizer
                except ImportError as exc:
                    raise EngineError(
                        "the parler engine runs in its own environment (parler-tts needs torch 2.9 and "
                        "transformers 4.46.1): run `emoflow engines install parler` and choose "
                        f"tts_engine parler-env ({exc})"
                    ) from exc
                try:
                    model = ParlerTTSForConditionalGeneration.from_pretrained(folder, local_files_only=True)
                    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
                except (OSError, ValueError, KeyError, RuntimeError) as exc:
                    raise EngineError(f"cannot load the Parler-TTS checkpoint in {folder}: {exc}") from exc
                self._loaded = (model.to(self.device).eval(), tokenizer)
            return self._loaded


def _spans(timings: Timings, offset: float) -> list[common.WordSpan]:
    """A piece's word timings as spans of the whole utterance, phonemes inside their word."""
    phonemes: dict[int, list[tuple[str, float, float]]] = {}
    for p in timings.phonemes:
        if p.word_index is not None:
            phonemes.setdefault(p.word_index, []).append((p.phoneme, p.start + offset, p.end + offset))
    return [
        common.WordSpan(w.start + offset, w.end + offset, phonemes.get(w.index, []))
        for w in sorted(timings.words, key=lambda w: w.index)
    ]
