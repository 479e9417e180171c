"""Time-domain pitch-synchronous overlap-add (TD-PSOLA): pitch and tempo changes that keep the voice's
own waveform, so a neural voice stays as voiced and as smooth as it was spoken.

1. Analysis marks (`pitch_marks`): in voiced stretches one mark per glottal period. The first sits on the
   largest peak of the low-passed (900 Hz) waveform in the first period; each next one where the period
   around it best matches the period around the previous mark, searched within +-30 % of where one
   period on (from the F0 track) predicts it, so every grain starts at the same point of its cycle.
   Unvoiced stretches (and silence) get evenly spaced marks about 5 ms apart. The first and last samples
   are marks too, so the marks cover the whole signal.
2. Synthesis marks (`synthesis_marks`): walking along the output, each mark looks up the input time it
   stands for (the inverse of the time map), takes the nearest analysis mark as its grain, and steps on by
   the spacing of the analysis marks around that time, divided by the pitch ratio where both are voiced.
   Raising pitch repeats grains, lowering skips them, and a slower rate repeats them along time. An
   unvoiced grain is cut at the input time itself, so noise keeps its own continuity.
3. Overlap-add (`overlap_add`): each grain is cut with a Hann window whose two halves reach the
   neighbouring marks. Analysis windows built that way sum to exactly 1, so marks that stay where they
   were give the input back. A voiced grain is never wider than its own periods (a wider one would carry
   the next pulse and sound doubled); an unvoiced grain spans its output neighbours, so noise has no gaps.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

LOWPASS_HZ = 900.0  # keeps the first harmonics and F1, where a period's main peak sits
SEARCH = 0.3  # a mark may move this share of a period from where the previous period predicts it
UNVOICED_HOP_S = 0.005
MIN_VOICED_PERIODS = 2  # shorter voiced runs are treated as unvoiced


def pitch_marks(
    x: np.ndarray, sample_rate: int, f0: np.ndarray, frame_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Analysis marks (increasing sample indices, first 0 and last len(x) - 1) and whether each is a
    voiced epoch."""
    from scipy.signal import butter, sosfiltfilt

    n = len(x)
    voiced_frames = f0 > 0
    low = sosfiltfilt(butter(4, LOWPASS_HZ, fs=sample_rate, output="sos"), np.asarray(x, dtype=np.float64))
    frame_times = np.arange(len(f0)) * frame_s
    hop = max(2, round(UNVOICED_HOP_S * sample_rate))

    # 1. Voiced stretches: one mark per period
    voiced_marks: list[np.ndarray] = []
    if voiced_frames.any():

        def period_at(sample: float) -> float:
            return sample_rate / float(
                np.interp(sample / sample_rate, frame_times[voiced_frames], f0[voiced_frames])
            )

        for first, last in _runs(voiced_frames):
            start = max(0, round((frame_times[first] - frame_s / 2) * sample_rate))
            end = min(n - 1, round((frame_times[last] + frame_s / 2) * sample_rate))
            marks = _epochs(low, start, end, period_at)
            if len(marks) >= MIN_VOICED_PERIODS + 1:
                voiced_marks.append(marks)

    # 2. Unvoiced gaps (and the edges) filled with evenly spaced marks
    all_marks: list[np.ndarray] = []
    voiced_flags: list[np.ndarray] = []
    previous = 0
    for marks in voiced_marks:
        gap = _even(previous, int(marks[0]), hop)
        all_marks += [gap[:-1], marks]
        voiced_flags += [np.zeros(len(gap) - 1, dtype=bool), np.ones(len(marks), dtype=bool)]
        previous = int(marks[-1])
    if previous < n - 1 or not all_marks:
        gap = _even(previous, n - 1, hop)
        start = 1 if all_marks else 0  # `previous` is already the last voiced mark
        all_marks.append(gap[start:])
        voiced_flags.append(np.zeros(len(gap) - start, dtype=bool))
    marks = np.concatenate(all_marks)
    voiced = np.concatenate(voiced_flags)
    keep = np.concatenate([[True], np.diff(marks) > 0])  # a 0-length gap repeats a mark
    return marks[keep].astype(np.int64), voiced[keep]


def synthesis_marks(
    marks: np.ndarray,
    voiced: np.ndarray,
    input_position: np.ndarray,
    ratio: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Output marks (sample indices), the analysis mark each one copies, and the input sample its grain is
    centred on: the mark itself when voiced; the input time the output mark stands for when not, so that
    noise (and any voice the tracker missed) keeps its own continuity.

    `input_position[i]`: the input sample that output sample i stands for (the inverse time map);
    `ratio[j]`: the pitch ratio (new F0 / old F0) at input sample j. Each step is the spacing of the two
    analysis marks around the input time, over the ratio where both are voiced: with no pitch or tempo
    change the output marks fall exactly on the analysis marks and the input comes back unchanged.
    """
    n_out = len(input_position)
    spacing = np.diff(marks).astype(np.float64)
    voiced_step = voiced[:-1] & voiced[1:]
    outs: list[int] = []
    sources: list[int] = []
    centres: list[int] = []
    position = 0.0
    last = len(marks) - 1
    while position < n_out - 1:
        at = float(input_position[round(position)])
        interval = min(max(int(np.searchsorted(marks, at, side="right")) - 1, 0), last - 1)
        nearest = interval + 1 if marks[interval + 1] - at < at - marks[interval] else interval
        outs.append(round(position))
        sources.append(nearest)
        centres.append(int(marks[nearest]) if voiced[nearest] else round(at))
        step = spacing[interval]
        if voiced_step[interval]:
            step /= ratio[min(int(at), len(ratio) - 1)]
        position += max(step, 2.0)
    outs.append(n_out - 1)
    sources.append(last)
    centres.append(int(marks[last]))
    out = np.asarray(outs, dtype=np.int64)
    keep = np.concatenate([np.diff(out) > 0, [True]])  # the final mark may fall on the one before
    return out[keep], np.asarray(sources, dtype=np.int64)[keep], np.asarray(centres, dtype=np.int64)[keep]


def overlap_add(
    x: np.ndarray,
    marks: np.ndarray,
    voiced: np.ndarray,
    out_marks: np.ndarray,
    sources: np.ndarray,
    centres: np.ndarray,
) -> np.ndarray:
    """Hann-windowed grains of `x` around `centres` (from the analysis marks `sources`), added at
    `out_marks`."""
    n_in, n_out = len(x), int(out_marks[-1]) + 1
    y = np.zeros(n_out, dtype=np.float64)
    signal = np.asarray(x, dtype=np.float64)
    for j, (centre_out, k, centre_in) in enumerate(
        zip(out_marks.tolist(), sources.tolist(), centres.tolist(), strict=True)
    ):
        out_left = centre_out - int(out_marks[j - 1]) if j > 0 else 0
        out_right = int(out_marks[j + 1]) - centre_out if j + 1 < len(out_marks) else 0
        if voiced[k]:
            in_left = centre_in - int(marks[k - 1]) if k > 0 else 0
            in_right = int(marks[k + 1]) - centre_in if k + 1 < len(marks) else 0
            left, right = min(out_left, in_left), min(out_right, in_right)
        else:
            left, right = out_left, out_right
        left = min(left, centre_in)  # the grain must lie inside the input
        right = min(right, n_in - 1 - centre_in)
        window = _window(left, right)
        y[centre_out - left : centre_out + right + 1] += (
            signal[centre_in - left : centre_in + right + 1] * window
        )
    return y


def _window(left: int, right: int) -> np.ndarray:
    """A Hann window rising over `left` samples to 1 at the centre and falling to 0 over `right`."""
    rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(left) / left) if left > 0 else np.zeros(0)
    fall = 0.5 + 0.5 * np.cos(np.pi * np.arange(right + 1) / right) if right > 0 else np.ones(1)
    return np.concatenate([rise, fall])


def _epochs(low: np.ndarray, start: int, end: int, period_at: Callable[[float], float]) -> np.ndarray:
    """Marks one period apart over [start, end]: the first at the low-passed waveform's largest peak in the
    first period, each next one where the period around it best matches the period around the previous
    mark (normalised cross-correlation, within +-30 % of one period on), so every grain starts at the
    same point of its cycle even where the cycle's peaks change shape."""
    first_period = period_at(start)
    head = low[start : min(end, start + math.ceil(first_period)) + 1]
    if head.size == 0:
        return np.zeros(0, dtype=np.int64)
    marks = [start + int(np.argmax(head))]
    while True:
        period = period_at(marks[-1])
        predicted = marks[-1] + period
        half = round(period / 2)
        lo = max(marks[-1] + 1, math.floor(predicted - SEARCH * period))
        hi = min(len(low) - half - 1, math.ceil(predicted + SEARCH * period))
        if predicted > end or hi <= lo or marks[-1] - half < 0:
            break
        template = low[marks[-1] - half : marks[-1] + half + 1]
        candidates = np.lib.stride_tricks.sliding_window_view(low[lo - half : hi + half + 1], len(template))
        energy = np.sqrt(np.sum(candidates**2, axis=1) * float(np.sum(template**2))) + 1e-12
        similarity = candidates @ template / energy
        # a lag far from the prediction must match clearly better to win: keeps the marks one period apart
        distance = (np.arange(lo, hi + 1) - predicted) / (SEARCH * period)
        marks.append(lo + int(np.argmax(similarity - 0.2 * distance**2)))
    return np.asarray(marks, dtype=np.int64)


def _even(a: int, b: int, hop: int) -> np.ndarray:
    """Marks from a to b (both included) about `hop` apart."""
    count = max(1, round((b - a) / hop))
    return np.unique(np.round(np.linspace(a, b, count + 1)).astype(np.int64))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) indices of each run of True."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]
