"""Long scripts: speak sentence by sentence and stream the audio to a WAV file on disk.

`synthesize` keeps the whole utterance in memory (float32: 5 MB per minute at 22.05 kHz, plus the
engines' working copies), which is fine for a paragraph but not for a 10-minute script. Here each
sentence is its own small plan, spoken by the engine's ordinary in-memory path, appended to an
open WAV file and dropped; only the timings (a few hundred bytes per word) grow with the script.
Sentences are joined with pydub (`joins`): each crossfades into the pause that follows it, which
leaves the timeline, and so every timing, exactly as the sample counts say.
The file is written under a temporary name and renamed when complete, so a failure never leaves a
truncated WAV where the caller expects a finished one.

Both wrappers also apply `normalize` (URLs, emoji, foreign scripts) so every engine entry point
treats bad input the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from kernel.errors import EngineError, InputError
from models.tts import common, joins, normalize
from models.types import EmotionPlan, PhonemeTiming, PlannedWord, ProgressFn, Speech, Timings, WordTiming
from models.vocabulary import Vocabulary

SynthFn = Callable[[EmotionPlan, ProgressFn | None], Speech]


def speak_normalised(synth: SynthFn, plan: EmotionPlan, progress: ProgressFn | None) -> Speech:
    """`synth` on the normalised plan, with timings mapped back to the original plan words."""
    common.check_plan(plan)
    prepared = normalize.prepare(plan)
    speech = synth(prepared.plan, progress)
    return Speech(
        samples=speech.samples,
        sample_rate=speech.sample_rate,
        timings=normalize.restore(speech.timings, plan, prepared),
    )


def sentence_plan(plan: EmotionPlan, sentence: common.Sentence) -> EmotionPlan:
    """Plan words[first:stop] as a plan of their own (indices from 0, offsets into the sentence)."""
    base = sentence.char_start
    script = plan.script[base : base + len(sentence.text)]
    words = [
        PlannedWord(k, w.text, w.char_start - base, w.char_end - base, w.label, w.intensity, w.source)
        for k, w in enumerate(plan.words[sentence.first : sentence.stop])
    ]
    return EmotionPlan(script=script, words=words)


def synthesize_to(
    synth: SynthFn,
    plan: EmotionPlan,
    path: str | Path,
    progress: ProgressFn | None = None,
    *,
    gap_s: float,
    vocabulary: Vocabulary,
) -> Timings:
    """Speak `plan` into a mono 16-bit WAV at `path`; returns the timings `synthesize` would.

    Between sentences: `gap_s` of silence plus the pause of a segment that ends there, as in the
    engines' own `synthesize`.
    """
    import soundfile as sf

    common.check_plan(plan)
    prepared = normalize.prepare(plan)
    spoken = prepared.plan
    target = Path(path)
    if not target.parent.is_dir():
        raise InputError(f"cannot write speech to {target}: folder {target.parent} does not exist")
    sentences = common.split_sentences(spoken)
    prosody = common.word_prosody(spoken, vocabulary)
    segment_ids = common.segment_of_word(spoken)
    if progress:
        progress(0, len(sentences))

    words: list[WordTiming] = []
    phonemes: list[PhonemeTiming] = []
    partial = target.with_name(f".{target.name}.partial")
    handle: sf.SoundFile | None = None
    written = 0  # samples
    sample_rate = 0
    try:
        for number, sentence in enumerate(sentences):
            speech = synth(sentence_plan(spoken, sentence), None)
            if handle is None:
                sample_rate = speech.sample_rate
                handle = sf.SoundFile(
                    partial, "w", samplerate=sample_rate, channels=1, subtype="PCM_16", format="WAV"
                )
            elif speech.sample_rate != sample_rate:
                raise EngineError(
                    f"the engine changed sample rate mid-script ({sample_rate} -> {speech.sample_rate})"
                )
            offset = written / sample_rate
            words.extend(
                WordTiming(
                    w.index + sentence.first, w.text, round(w.start + offset, 4), round(w.end + offset, 4)
                )
                for w in speech.timings.words
            )
            phonemes.extend(
                PhonemeTiming(
                    p.phoneme,
                    round(p.start + offset, 4),
                    round(p.end + offset, 4),
                    None if p.word_index is None else p.word_index + sentence.first,
                )
                for p in speech.timings.phonemes
            )
            gap = gap_s if number + 1 < len(sentences) else 0.0
            last = sentence.stop - 1
            if last + 1 < len(spoken.words) and segment_ids[last] != segment_ids[last + 1]:
                gap += prosody[last].pause_ms / 1000.0
            # the sentence crossfades into its pause and out of the previous one; lengths are unchanged
            chunk = joins.sentence_chunk(
                speech.samples,
                sample_rate,
                fade_in=number > 0,
                fade_out=number + 1 < len(sentences),
                pause_samples=round(gap * sample_rate),
            )
            handle.write(chunk)
            written += len(chunk)
            del speech, chunk  # the point of streaming: no sentence's audio outlives the loop
            if progress:
                progress(number + 1, len(sentences))
        assert handle is not None  # check_plan guarantees at least one sentence
        handle.close()
        handle = None
        os.replace(partial, target)
    finally:
        if handle is not None:
            handle.close()
        if partial.exists():
            partial.unlink()
    return normalize.restore(Timings(words=words, phonemes=phonemes), plan, prepared)


class StreamingSynthesis:
    """The public synthesis entry points both embedded engines share.

    An engine supplies `_synthesize(plan, progress) -> Speech` for one short, normalised plan,
    `vocabulary`, and `_stream_gap_s` (silence it puts between streamed sentences).
    """

    vocabulary: Vocabulary
    _synthesize: SynthFn

    @property
    def _stream_gap_s(self) -> float:
        """Seconds of silence the engine puts between streamed sentences."""
        raise NotImplementedError

    def synthesize(self, plan: EmotionPlan, progress: ProgressFn | None = None) -> Speech:
        """Speak a short plan in memory (see `synthesize_to` for long scripts)."""
        return speak_normalised(self._synthesize, plan, progress)

    def synthesize_to(
        self, plan: EmotionPlan, path: str | Path, progress: ProgressFn | None = None
    ) -> Timings:
        """Speak a plan of any length into a WAV file sentence by sentence; memory stays flat."""
        return synthesize_to(
            self._synthesize, plan, path, progress, gap_s=self._stream_gap_s, vocabulary=self.vocabulary
        )
