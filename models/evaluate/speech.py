"""Synthetic, TTS-free speech for render evaluation: a voiced-like signal with phoneme timings.

Syllables are consonant + vowel pairs grouped into words with short pauses. Vowels are a harmonic tone
(F0 ~120 Hz with slow drift) whose loudness follows how open the vowel is, as in real speech (open
vowels are louder); stops are a short burst, fricatives noise, nasals a quiet hum. Seeded, so every run
renders the same mouth track.
"""

from __future__ import annotations

import numpy as np

from models.types import PhonemeTiming, Speech, Timings, WordTiming

# (phoneme, relative loudness); loudness of vowels roughly tracks their opening in prompts/visemes.yaml
_VOWELS = (
    ("a", 1.0),
    ("ɑ", 1.0),
    ("æ", 0.9),
    ("ʌ", 0.8),
    ("ɛ", 0.7),
    ("e", 0.6),
    ("ə", 0.5),
    ("ɪ", 0.45),
    ("i", 0.35),
)
_CONSONANTS = (
    ("m", 0.12),
    ("b", 0.05),
    ("p", 0.03),
    ("t", 0.06),
    ("d", 0.08),
    ("n", 0.12),
    ("l", 0.2),
    ("s", 0.1),
    ("k", 0.06),
)
_NOISY = {"s", "t", "k", "p"}


def synthetic_speech(duration_s: float = 3.0, sample_rate: int = 16000, seed: int = 0) -> Speech:
    """About `duration_s` seconds of speech-like audio with word and phoneme timings."""
    rng = np.random.default_rng(seed)
    n = round(duration_s * sample_rate)
    t = np.arange(n) / sample_rate
    envelope = np.zeros(n)
    noise_env = np.zeros(n)
    words: list[WordTiming] = []
    phones: list[PhonemeTiming] = []
    now = 0.15  # a breath of silence first
    word = 0
    while now < duration_s - 0.45:
        start = now
        for _ in range(int(rng.integers(1, 4))):
            cons, c_amp = _CONSONANTS[int(rng.integers(len(_CONSONANTS)))]
            vow, v_amp = _VOWELS[int(rng.integers(len(_VOWELS)))]
            c_end = now + float(rng.uniform(0.05, 0.09))
            v_end = c_end + float(rng.uniform(0.12, 0.22))
            if v_end > duration_s - 0.2:
                break
            phones += [PhonemeTiming(cons, now, c_end, word), PhonemeTiming(vow, c_end, v_end, word)]
            for lo, hi, amp, noisy in ((now, c_end, c_amp, cons in _NOISY), (c_end, v_end, v_amp, False)):
                inside = (t >= lo) & (t < hi)
                shape = np.sin(np.pi * (t[inside] - lo) / (hi - lo)) ** 0.4  # soft on- and offsets
                (noise_env if noisy else envelope)[inside] = amp * shape
            now = v_end
        if now > start:
            words.append(WordTiming(word, f"w{word}", start, now))
            word += 1
        now += float(rng.uniform(0.12, 0.3))  # pause between words: the mouth closes
    f0 = 120.0 + 12.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))  # a buzz with falling harmonics
    samples = 0.3 * envelope * voiced / 1.6 + 0.15 * noise_env * rng.standard_normal(n)
    return Speech(samples.astype(np.float32), sample_rate, Timings(words, phones))


def frame_energy(speech: Speech, fps: float, n_frames: int, window_s: float = 0.04) -> np.ndarray:
    """RMS level of the speech around each video frame time (linear, not dB)."""
    samples = np.asarray(speech.samples, dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(samples**2)])
    centres = np.arange(n_frames) / fps * speech.sample_rate
    half = window_s / 2 * speech.sample_rate
    lo = np.clip(np.round(centres - half).astype(int), 0, len(samples))
    hi = np.clip(np.round(centres + half).astype(int), 0, len(samples))
    return np.sqrt((cum[hi] - cum[lo]) / np.maximum(hi - lo, 1))
