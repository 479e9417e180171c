"""espeak-ng (the library shipped in the espeakng-loader wheel) driven through ctypes.

Robotic but instant (real-time factor about 0.001) and fully deterministic. Emotion is applied by
espeak itself: every run of words with one emotion becomes an SSML `<prosody pitch range rate volume>`
element and a segment's pause a `<break>`. Timings come from espeak's own WORD and PHONEME events.

Quirks handled here (see the guide):

- a `<prosody>` right after a full stop is ignored, so every sentence is its own `espeak_Synth` call
  and starts fresh; emotions that change inside a sentence use mid-sentence tags, which work;
- the first event after a tag can point one character off, and "I am" gives one WORD event: events
  are mapped to plan words through the character offsets of the SSML we built, tolerating an offset
  of one or two characters, and taken in order; words without an event share the event before them
  (split at phoneme boundaries by character proportions);
- espeak's percentages are not semitones: `pitch` and `range` go through curves measured on this
  voice (en-us, 22.05 kHz), `volume` is linear in amplitude;
- espeak is one global C library: a module lock guards every call, and the ctypes callback is kept
  referenced for the life of the process.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

import numpy as np

from kernel.errors import EngineError
from models.identity import EngineIdentity, describe
from models.tts import common, streaming
from models.tts.common import Sentence, Unit, WordSpan
from models.types import EmotionPlan, PlannedWord, ProgressFn, Speech
from models.vocabulary import PROSODY_PARTS, Prosody, Vocabulary, load_vocabulary, vocabulary_table

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8, _SSML = 0x01, 0x10
_POS_CHARACTER = 1
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_PHONEME = 0, 1, 7
_PARAM_VOLUME = 2
# espeak's volume is 100 by default and clips at about twice that: speak at half so +6 dB still fits.
_BASE_VOLUME = 50

# Measured on en-us: mean F0 change in semitones for SSML pitch="+N%" (relative to the default voice).
_PITCH_PERCENT = np.array([-50.0, -30.0, -15.0, 0.0, 15.0, 30.0, 60.0, 100.0])
_PITCH_SEMITONES = np.array([-3.80, -2.30, -1.18, 0.0, 1.18, 2.67, 5.26, 8.91])
# range="N%" scales F0 excursions about linearly up to ~140 % and drags the mean along
# (about +0.024 semitones per percent), which the pitch setting compensates.
_RANGE_LIMITS = (30.0, 140.0)
_RANGE_MEAN_SHIFT = 0.024


class _EspeakEvent(ctypes.Structure):
    class _Id(ctypes.Union):
        _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _Id),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_EspeakEvent)
)


@dataclass
class _Output:
    """What one espeak_Synth call produced."""

    chunks: list[np.ndarray] = field(default_factory=list)
    words: list[tuple[int, int, int]] = field(default_factory=list)  # (sample, 1-based position, order)
    phonemes: list[tuple[int, str, int]] = field(default_factory=list)  # (sample, IPA, event order)
    order: int = 0


class _Espeak:
    """The process-wide espeak-ng library; use only under `_LOCK`."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise EngineError("the espeak engine needs espeakng-loader; run `make install`") from exc
        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data_path = espeakng_loader.get_data_path()
        except (OSError, RuntimeError) as exc:
            raise EngineError(f"cannot load espeak-ng from espeakng-loader: {exc}") from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA | _INITIALIZE_DONT_EXIT
        sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), options)
        if sample_rate <= 0:
            raise EngineError(f"espeak_Initialize failed ({sample_rate}) with data at {data_path}")
        self.lib = lib
        self.sample_rate = int(sample_rate)
        self._output = _Output()
        # ctypes frees a callback that nothing references; espeak would then call freed memory
        self._callback = _SynthCallback(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav: ctypes._Pointer, n_samples: int, events: ctypes._Pointer) -> int:
        out = self._output
        if n_samples > 0 and wav:
            out.chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_WORD:
                out.words.append((int(event.sample), int(event.text_position), out.order))
            elif event.type == _EVENT_PHONEME:
                name = bytes(event.id.string).split(b"\0", 1)[0].decode("utf-8", errors="replace")
                out.phonemes.append((int(event.sample), name, out.order))
            out.order += 1
            i += 1
        return 0  # 0 = go on

    def synth(self, ssml: str, voice: str) -> _Output:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise EngineError(f"espeak has no voice {voice!r}; try 'en-us' or 'en'")
        self.lib.espeak_SetParameter(_PARAM_VOLUME, _BASE_VOLUME, 0)
        self._output = _Output()
        data = ssml.encode("utf-8")
        status = self.lib.espeak_Synth(
            data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _SSML, None, None
        )
        if status != 0:
            raise EngineError(f"espeak_Synth failed with status {status}")
        output, self._output = self._output, _Output()
        return output


_LOCK = threading.Lock()
_ESPEAK: _Espeak | None = None


def _espeak() -> _Espeak:
    global _ESPEAK
    if _ESPEAK is None:
        _ESPEAK = _Espeak()
    return _ESPEAK


class EspeakEngine(streaming.StreamingSynthesis):
    """Formant speech from espeak-ng; emotion as SSML prosody per segment; exact event timings."""

    name = "espeak"
    base_version = "1.1.0"

    def __init__(self, voice: str = "en-us", vocabulary: Vocabulary | None = None) -> None:
        self.voice = voice
        self.vocabulary = vocabulary or load_vocabulary()

    @property
    def version(self) -> str:
        return self.base_version if self.voice == "en-us" else f"{self.base_version}+{self.voice}"

    def identity(self) -> EngineIdentity:
        """The prosody rows of the vocabulary and espeak-ng's library with its voice data."""
        return describe(
            self, tables=[vocabulary_table(self.vocabulary, *PROSODY_PARTS)], packages=("espeakng-loader",)
        )

    @property
    def _stream_gap_s(self) -> float:
        return 0.0  # espeak's sentences end in their own pause

    def _synthesize(self, plan: EmotionPlan, progress: ProgressFn | None = None) -> Speech:
        """Speak the plan one sentence per espeak call; one WordTiming per plan word."""
        # 1. Check inputs
        common.check_plan(plan)
        prosody = common.word_prosody(plan, self.vocabulary)
        segment_ids = common.segment_of_word(plan)
        sentences = common.split_sentences(plan)
        if progress:
            progress(0, len(sentences))

        # 2. One espeak call per sentence
        pieces: list[np.ndarray] = []
        spans: list[WordSpan] = []
        offset = 0.0
        sample_rate = 22050
        for number, sentence in enumerate(sentences):
            ssml, ssml_to_script = _sentence_ssml(plan, sentence, prosody, segment_ids)
            with _LOCK:
                engine = _espeak()
                sample_rate = engine.sample_rate
                output = engine.synth(ssml, self.voice)
            audio = (
                np.concatenate(output.chunks).astype(np.float32) / 32768.0
                if output.chunks
                else np.zeros(int(0.1 * sample_rate), dtype=np.float32)
            )
            common.check_audible(audio, sample_rate, sentence.text)
            sentence_spans = _spans(
                plan.script,
                plan.words[sentence.first : sentence.stop],
                output,
                ssml_to_script,
                audio,
                sample_rate,
            )
            # a segment that ends with the sentence gets its pause as silence after it
            last = sentence.stop - 1
            gap = 0.0
            if last + 1 < len(plan.words) and segment_ids[last] != segment_ids[last + 1]:
                gap = prosody[last].pause_ms / 1000.0
            audio = common.fade_edges(audio, sample_rate)
            pieces.extend([audio, np.zeros(round(gap * sample_rate), dtype=np.float32)])
            spans.extend(
                WordSpan(
                    s.start + offset, s.end + offset, [(p, a + offset, b + offset) for p, a, b in s.phonemes]
                )
                for s in sentence_spans
            )
            offset += (len(audio) + len(pieces[-1])) / sample_rate
            if progress:
                progress(number + 1, len(sentences))

        # 3. Post-process
        samples = common.limit_peaks(np.concatenate(pieces), sample_rate)
        timings = common.build_timings(plan.words, spans, len(samples) / sample_rate)
        return Speech(samples=samples, sample_rate=sample_rate, timings=timings)


# SSML -----------------------------------------------------------------------------------------------------


def prosody_attributes(p: Prosody) -> dict[str, str]:
    """SSML prosody attributes that make espeak's en-us voice do what `p` asks."""
    range_percent = float(np.clip(100.0 * p.pitch_range, *_RANGE_LIMITS))
    semitones = p.pitch_semitones - _RANGE_MEAN_SHIFT * (range_percent - 100.0)
    pitch_percent = float(np.interp(semitones, _PITCH_SEMITONES, _PITCH_PERCENT))
    return {
        "pitch": f"{pitch_percent:+.0f}%",
        "range": f"{range_percent:.0f}%",
        "rate": f"{100.0 * max(p.rate, 0.2):.0f}%",
        "volume": f"{100.0 * 10.0 ** (p.energy_db / 20.0):.0f}%",
    }


def _sentence_ssml(
    plan: EmotionPlan, sentence: Sentence, prosody: Sequence[Prosody], segment_ids: Sequence[int]
) -> tuple[str, list[int]]:
    """SSML for one sentence and, for every SSML character, the script offset it came from (-1: markup)."""
    parts: list[str] = []
    origin: list[int] = []

    def markup(text: str) -> None:
        parts.append(text)
        origin.extend([-1] * len(text))

    def content(begin: int, end: int) -> None:
        for offset in range(begin, end):
            text = escape(plan.script[offset])
            parts.append(text)
            origin.extend([offset] * len(text))

    end_of_sentence = sentence.char_start + len(sentence.text)
    markup("<speak>")
    first = sentence.first
    while first < sentence.stop:
        stop = first + 1
        while stop < sentence.stop and segment_ids[stop] == segment_ids[first]:
            stop += 1
        attributes = " ".join(f'{k}="{v}"' for k, v in prosody_attributes(prosody[first]).items())
        markup(f"<prosody {attributes}>")
        begin = plan.words[first].char_start
        end = plan.words[stop].char_start if stop < sentence.stop else end_of_sentence
        content(begin, end)
        markup("</prosody>")
        if stop < sentence.stop and prosody[stop - 1].pause_ms > 0:
            markup(f'<break time="{prosody[stop - 1].pause_ms:.0f}ms"/>')
        first = stop
    markup("</speak>")
    return "".join(parts), origin


# Events -> word spans ---------------------------------------------------------------------------------------


def _spans(
    script: str,
    words: Sequence[PlannedWord],
    output: _Output,
    ssml_to_script: Sequence[int],
    audio: np.ndarray,
    sample_rate: int,
) -> list[WordSpan]:
    duration = len(audio) / sample_rate
    weights = common.char_weights([w.text for w in words])
    if not output.words:
        return [WordSpan(s, e) for s, e in common.proportional(weights, 0.0, duration)]

    # phonemes: each lasts until the next phoneme event (pauses are phoneme events with no name)
    phonemes = sorted(output.phonemes, key=lambda p: (p[0], p[2]))
    timed = [
        (
            name,
            start / sample_rate,
            (phonemes[k + 1][0] if k + 1 < len(phonemes) else len(audio)) / sample_rate,
            order,
        )
        for k, (start, name, order) in enumerate(phonemes)
    ]
    # a phoneme belongs to the WORD event before it in the event stream, not in time: espeak may
    # announce a word before the last consonant of the previous one ("I'll go": l comes after "go")
    orders = [order for _, _, order in output.words]
    units: list[Unit] = []
    for j, (sample, _, order) in enumerate(output.words):
        stop = orders[j + 1] if j + 1 < len(orders) else float("inf")
        spoken = [(name, a, b) for name, a, b, o in timed if order < o < stop and name]
        # a word runs from its first to its last sounding phoneme: the pause after it is not the word
        start = spoken[0][1] if spoken else sample / sample_rate
        end = spoken[-1][2] if spoken else min(start + 0.05, duration)
        units.append(
            Unit(start=start, end=max(end, start), phonemes=spoken, label="".join(p[0] for p in spoken))
        )

    first_word = [_word_of_event(position, ssml_to_script, script, words) for _, position, _ in output.words]
    return common.word_spans(weights, units, _in_order(first_word), 0.0, duration)


def _in_order(first_word: Sequence[int]) -> list[int]:
    """Give a run of events that point at one word to the skipped words before it, in order.

    After a full stop espeak can point the next two events at the same later word ("So. A cat": both
    at "cat"); when words just before that word got no event, the earlier events of the run are theirs.
    """
    fixed = list(first_word)
    owned = -1  # last word that has an event
    j = 0
    while j < len(fixed):
        k = j
        while k + 1 < len(fixed) and fixed[k + 1] == fixed[j]:
            k += 1
        word, run = fixed[j], k - j + 1
        skipped = word - owned - 1
        if word >= 0 and run > 1 and skipped > 0:
            moved = min(run - 1, skipped)
            for t in range(moved):
                fixed[j + t] = word - moved + t
        owned = max(owned, fixed[k])
        j = k + 1
    return fixed


def _word_of_event(
    position: int, ssml_to_script: Sequence[int], script: str, words: Sequence[PlannedWord]
) -> int:
    """Local index of the word a WORD event points at; events may be off by a character or two.

    An event on a symbol the planner did not count as a word belongs to the word it is attached to
    ("$5" -> "5") or, standing alone ("&" read as "and"), to the word before it. Returns -1 when
    nothing usable is there (the caller then keeps the order of events).
    """
    index = position - 1  # espeak counts characters from 1
    offset = ssml_to_script[index] if 0 <= index < len(ssml_to_script) else -1
    if offset >= 0 and not script[offset].isspace():
        word = _word_containing(offset, words)
        if word is not None:
            return word
        if offset + 1 < len(script) and not script[offset + 1].isspace():
            following = [i for i, w in enumerate(words) if w.char_start > offset]
            return following[0] if following else len(words) - 1
        before = [i for i, w in enumerate(words) if w.char_end <= offset]
        return before[-1] if before else 0
    for delta in (-1, 1, -2, 2):  # on markup or a space: the quirk, look next door
        k = index + delta
        if 0 <= k < len(ssml_to_script) and ssml_to_script[k] >= 0:
            word = _word_containing(ssml_to_script[k], words)
            if word is not None:
                return word
    return -1


def _word_containing(offset: int, words: Sequence[PlannedWord]) -> int | None:
    for i, word in enumerate(words):
        if word.char_start <= offset < word.char_end:
            return i
    return None
