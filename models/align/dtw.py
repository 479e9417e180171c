"""The align stage for engines that report no word timings: DTW against an espeak rendering.

espeak-ng speaks the same plan instantly and says exactly where each of its words starts and ends.
Its audio and the target audio say the same words in the same order, so a dynamic-time-warping path
between their feature sequences maps every espeak word boundary onto the target's time axis. No
model weights are involved.

Features (10 ms frames): MFCCs 1-19 (the spectral envelope, which two voices saying the same phoneme
share better than anything else cheap) with per-utterance mean/variance normalisation, so that
speaker and channel offsets cancel, plus a weighted loudness track, so that pauses match pauses.
The path comes from `librosa.sequence.dtw` (default steps), and the mapped
boundaries are then snapped to quiet frames by `EngineTimingAligner`, as for engine timings.
espeak's phoneme timings are warped the same way and clipped to their word.

The cost matrix is frames(target) x frames(reference), float64, and librosa keeps an accumulated
copy: about 60 MB for a 20 s pair, growing with the square of the length. One call is therefore
limited to `max_piece_s` (60 s: about 0.6 GB); longer speech raises InputError and must be
aligned sentence by sentence (engines without timings synthesise segment by segment, so each
segment is aligned on its own).

Measured (bench/speech.py) against Piper's own alignments on 6 sentences x 4 emotions: mean
word-boundary error 28.5 ms, median 19.7 ms, 86 % within 50 ms, at a real-time factor of 0.025.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kernel.errors import EngineError, InputError
from models.align.engine_timings import EngineTimingAligner
from models.identity import EngineIdentity, describe
from models.types import EmotionPlan, PhonemeTiming, PlannedWord, Speech, Timings, WordTiming

if TYPE_CHECKING:
    from models.tts.espeak_engine import EspeakEngine

FRAME_S = 0.01
N_MFCC = 20  # c0 (level) is dropped: loudness has its own track
LOUDNESS_WEIGHT = 2.0  # in units of one normalised MFCC; silence vs speech must dominate a mismatch


class DtwAligner:
    """Word timings for any speech of a plan, by DTW against espeak's rendering of the same plan."""

    name = "dtw"
    version = "1.0"

    def __init__(self, snap_window_s: float = 0.03, max_piece_s: float = 60.0) -> None:
        self.snap_window_s = snap_window_s
        self.max_piece_s = max_piece_s
        self._reference_engine: EspeakEngine | None = None  # built on first use

    def identity(self) -> EngineIdentity:
        """Its own code and espeak's, with the prosody rows espeak reads for the reference rendering."""
        from models.vocabulary import PROSODY_PARTS, load_vocabulary, vocabulary_table

        return describe(
            self,
            tables=[vocabulary_table(load_vocabulary(), *PROSODY_PARTS)],
            packages=("espeakng-loader", "librosa"),
            modules=("models.tts.espeak_engine",),
        )

    def align(self, speech: Speech, plan: EmotionPlan) -> Timings:
        if not plan.words:
            raise InputError("plan has no words to align")
        if speech.duration <= 0 or not np.any(speech.samples):
            raise EngineError("cannot align silent or empty speech; the speech engine produced no audio")
        reference = self._reference(plan)
        mapped = self._warp(speech, reference)
        # tidy like engine timings: boundaries move to the quietest frame nearby
        draft = Speech(
            samples=speech.samples, sample_rate=speech.sample_rate, timings=Timings(words=mapped.words)
        )
        words = EngineTimingAligner(snap_window_s=self.snap_window_s).align(draft, plan).words
        # espeak's phonemes, warped the same way, kept inside their (snapped) word: lip sync needs them
        span = {w.index: (w.start, w.end) for w in words}
        phonemes = []
        for p in mapped.phonemes:
            lo, hi = (
                span.get(p.word_index, (p.start, p.end)) if p.word_index is not None else (p.start, p.end)
            )
            start, end = max(p.start, lo), min(p.end, hi)
            if end > start:
                phonemes.append(PhonemeTiming(p.phoneme, round(start, 4), round(end, 4), p.word_index))
        return Timings(words=words, phonemes=phonemes)

    def _reference(self, plan: EmotionPlan) -> Speech:
        # neutral prosody: espeak's emotional rate changes would only add warping for DTW to undo
        from models.tts.espeak_engine import EspeakEngine

        if self._reference_engine is None:
            self._reference_engine = EspeakEngine()
        flat = EmotionPlan(
            script=plan.script,
            words=[
                PlannedWord(w.index, w.text, w.char_start, w.char_end, "neutral", 0.0, w.source)
                for w in plan.words
            ],
        )
        return self._reference_engine.synthesize(flat)

    def _warp(self, speech: Speech, reference: Speech) -> Timings:
        target = features(speech.samples, speech.sample_rate)
        ref = features(reference.samples, reference.sample_rate)
        if target.shape[1] * ref.shape[1] > (self.max_piece_s / FRAME_S) ** 2:
            raise InputError(
                f"speech of {speech.duration:.0f} s is too long to align in one piece "
                f"(limit {self.max_piece_s:.0f} s); align it sentence by sentence"
            )
        path = dtw_path(target, ref)
        # reference frame -> mean target frame on the path; monotone by construction of the path
        ref_to_target = np.zeros(ref.shape[1], dtype=np.float64)
        counts = np.zeros(ref.shape[1], dtype=np.float64)
        np.add.at(ref_to_target, path[:, 1], path[:, 0])
        np.add.at(counts, path[:, 1], 1.0)
        ref_to_target /= np.maximum(counts, 1.0)

        def mapped(t: float) -> float:
            frame = np.clip(t / FRAME_S, 0, ref.shape[1] - 1)
            return float(np.interp(frame, np.arange(ref.shape[1]), ref_to_target)) * FRAME_S

        duration = speech.duration
        words: list[WordTiming] = []
        previous_end = 0.0
        for w in reference.timings.words:
            start = min(max(mapped(w.start), previous_end), duration)
            end = min(max(mapped(w.end), start + 0.01), duration)
            words.append(WordTiming(index=w.index, text=w.text, start=start, end=end))
            previous_end = end
        phonemes = [
            PhonemeTiming(p.phoneme, mapped(p.start), mapped(p.end), p.word_index)
            for p in reference.timings.phonemes
        ]
        return Timings(words=words, phonemes=phonemes)


def features(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """[20, frames] normalised MFCC 1-19 and loudness at 10 ms hops."""
    import librosa

    y = np.asarray(samples, dtype=np.float32)
    hop = max(1, round(FRAME_S * sample_rate))
    n_fft = 1 << int(np.ceil(np.log2(0.025 * sample_rate)))  # ~25 ms window
    mfcc = librosa.feature.mfcc(y=y, sr=sample_rate, n_mfcc=N_MFCC, n_fft=n_fft, hop_length=hop, n_mels=40)
    rms = librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop)[0]
    loud = 20 * np.log10(rms + 1e-5)
    loud = np.clip((loud - loud.max()) / 40.0 + 1.0, 0.0, 1.0)  # 1 at the loudest, 0 at -40 dB
    spectral = mfcc[1:]
    spectral = (spectral - spectral.mean(axis=1, keepdims=True)) / (
        spectral.std(axis=1, keepdims=True) + 1e-6
    )
    n = min(spectral.shape[1], len(loud))
    return np.vstack([spectral[:, :n], LOUDNESS_WEIGHT * np.sqrt(N_MFCC - 1) * loud[None, :n]])


def dtw_path(target: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """[(target frame, reference frame)] from start to end."""
    import librosa
    from scipy.spatial.distance import cdist

    cost = cdist(target.T, reference.T, metric="euclidean")
    # librosa's default steps (1,1), (1,0), (0,1) at equal weight: on 10 sentences x 2 emotions this
    # beat slope-limited patterns (42 ms vs 60-450 ms), which stall on pauses only one voice makes
    _, path = librosa.sequence.dtw(C=cost)
    return np.asarray(path[::-1], dtype=np.int64)
