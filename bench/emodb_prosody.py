"""What EmoDB's actors do to their voices per emotion, relative to their own neutral reading of the sentence.

Two parts:
- prosody: the rows of `prompts/emotions.yaml`'s `prosody` come from this table (median over the six
  speakers, each speaker's median over its clips). Writes bench/results/emodb_prosody.json.
- envelope: the spectral envelope per emotion in mel bands (`emodb_envelope`), the table
  `prompts/spectral_envelope.yaml` that Piper's equaliser applies (models/tts/shaping.py). Writes
  bench/results/emodb_envelope.json and the table; `--speakers` derives it from some speakers only (the
  leave-speakers-out check in bench/speech.py --sections listener_split).

Run: .venv/bin/python bench/emodb_prosody.py --data ../shared/data [--parts prosody,envelope] \
        [--clipset outputs/evaluate/speech/listener/clipset] [--speakers 03,08,10 --table-out PATH]
(prosody about 3 minutes; `--clipset` adds the speaking rate from the words `emoflow evaluate speech`
aligned; envelope about 2 minutes)
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.evaluate.prosody import ClipProsody, emodb_profile, measure, read_emodb  # noqa: E402

CACHE = ROOT / "outputs" / "bench" / "emodb_prosody_clips.json"
ENVELOPE_CACHE = ROOT / "outputs" / "bench" / "emodb_envelope_clips.json"
ENVELOPE_TABLE = ROOT / "prompts" / "spectral_envelope.yaml"
# Mel bands of the envelope table: enough to follow F1 and the 1-4 kHz effort region, few enough that
# ~40 clips per emotion average out the vowels. EmoDB was recorded at 16 kHz, so nothing above 8 kHz.
ENVELOPE_BANDS, ENVELOPE_FMIN_HZ, ENVELOPE_FMAX_HZ = 20, 50.0, 7500.0
ENVELOPE_EMOTIONS = ("happy", "sad", "angry", "fear", "disgust")  # EmoDB's, in the vocabulary's names


@functools.cache
def _cache() -> dict[str, dict[str, float] | None]:
    """CACHE as read once per run; `_measured` adds to it and writes it back."""
    return json.loads(CACHE.read_text(encoding="utf-8")) if CACHE.is_file() else {}


def _measured(path: Path) -> ClipProsody:
    """One clip's prosody, kept in CACHE by file name and size (EmoDB's files do not change)."""
    cache = _cache()
    key = f"{path.name}:{path.stat().st_size}"
    if key not in cache:
        samples, rate = sf.read(path, dtype="float32", always_2d=False)
        try:
            cache[key] = measure(samples, int(rate)).as_dict()
        except ValueError:
            cache[key] = None
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        CACHE.write_text(json.dumps(cache), encoding="utf-8")
    facts = cache[key]
    if facts is None:
        raise ValueError("under 0.2 s of voiced speech")
    return ClipProsody(**facts)


def band_edges_hz(
    bands: int = ENVELOPE_BANDS, fmin: float = ENVELOPE_FMIN_HZ, fmax: float = ENVELOPE_FMAX_HZ
) -> np.ndarray:
    """`bands + 2` frequencies equally spaced in mel; band i spans edges i..i+2 and peaks at edge i+1."""
    import librosa

    return np.asarray(librosa.mel_frequencies(n_mels=bands + 2, fmin=fmin, fmax=fmax, htk=False))


def band_levels_db(samples: np.ndarray, sample_rate: int, edges_hz: np.ndarray) -> np.ndarray | None:
    """Mean over voiced frames of the envelope's level in each triangular mel band (dB); None for under
    0.2 s of voice. F0 by pYIN and the envelope by WORLD's CheapTrick, as `measure` takes them, so the
    harmonics (which move with F0) are smoothed out and the table says what the vocal tract and the
    source's slope do."""
    import pyworld

    from models.evaluate.prosody import FRAME_S, track_f0

    x = np.ascontiguousarray(samples, dtype=np.float64)
    times = np.arange(int(len(x) / (sample_rate * FRAME_S)) + 1) * FRAME_S
    f0 = track_f0(samples, sample_rate, len(times))
    voiced = f0 > 0
    if voiced.sum() * FRAME_S < 0.2:
        return None
    envelope = pyworld.cheaptrick(x, f0, times, sample_rate)[voiced]
    weights = triangular_bands(envelope.shape[1], sample_rate, edges_hz)
    power = envelope @ weights.T / weights.sum(axis=1)
    return np.asarray(10.0 * np.log10(np.maximum(power, 1e-12)).mean(axis=0))


def triangular_bands(n_bins: int, sample_rate: int, edges_hz: np.ndarray) -> np.ndarray:
    """(bands, bins) triangular weights over the bins 0..sample_rate/2, from `edges_hz`."""
    freqs = np.linspace(0.0, sample_rate / 2.0, n_bins)
    lo, mid, hi = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (freqs - lo) / (mid - lo)
    falling = (hi - freqs) / (hi - mid)
    return np.asarray(np.clip(np.minimum(rising, falling), 0.0, None))


def _envelope_measured(path: Path, edges_hz: np.ndarray) -> np.ndarray | None:
    """One clip's band levels, kept in ENVELOPE_CACHE by file name, size and band edges."""
    cache = _envelope_cache()
    key = f"{path.name}:{path.stat().st_size}:{','.join(f'{e:.1f}' for e in edges_hz)}"
    if key not in cache:
        samples, rate = sf.read(path, dtype="float32", always_2d=False)
        levels = band_levels_db(samples, int(rate), edges_hz)
        cache[key] = None if levels is None else [float(v) for v in levels]
        ENVELOPE_CACHE.parent.mkdir(parents=True, exist_ok=True)
        ENVELOPE_CACHE.write_text(json.dumps(cache), encoding="utf-8")
    value = cache[key]
    return None if value is None else np.array(value)


@functools.cache
def _envelope_cache() -> dict[str, list[float] | None]:
    return json.loads(ENVELOPE_CACHE.read_text(encoding="utf-8")) if ENVELOPE_CACHE.is_file() else {}


def smooth_bands(gains: np.ndarray) -> np.ndarray:
    """[1 2 1] / 4 across neighbouring bands, edge bands held: removes single-band wiggles that ~40
    clips cannot pin down, keeps formant-region changes that span several bands."""
    padded = np.pad(gains, 1, mode="edge")
    return np.asarray(0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:])


def emodb_envelope(
    folder: Path,
    speakers: Sequence[str] | None = None,
    levels_of: Callable[[Path, np.ndarray], np.ndarray | None] = _envelope_measured,
    edges_hz: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Per emotion, the envelope's band levels against the same speaker's neutral (dB), on voiced frames.

    Each clip is compared with the same speaker's neutral reading of the same sentence (the speaker's
    mean neutral where that reading is missing), so vowel content cancels. Each difference has its mean
    over bands removed: the shared copy is peak-normalised, so only the shape is known (the engine keeps
    loudness to the rows' `energy_db`). Per speaker the mean over its clips, then the mean over
    speakers with equal weight, then `smooth_bands`."""
    edges = band_edges_hz() if edges_hz is None else edges_hz
    clips = [c for c in read_emodb(folder) if speakers is None or c.speaker in set(speakers)]
    levels: dict[Path, np.ndarray] = {}
    for n, clip in enumerate(clips, start=1):
        measured = levels_of(clip.path, edges)
        if measured is not None:
            levels[clip.path] = measured
        if progress is not None:
            progress(n, len(clips))
    neutral_by_text: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    neutral_by_speaker: dict[str, list[np.ndarray]] = defaultdict(list)
    for clip in clips:
        if clip.emotion == "neutral" and clip.path in levels:
            neutral_by_text[(clip.speaker, clip.text_id)].append(levels[clip.path])
            neutral_by_speaker[clip.speaker].append(levels[clip.path])
    per_speaker: dict[str, dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    for clip in clips:
        if clip.emotion not in ENVELOPE_EMOTIONS or clip.path not in levels:
            continue
        refs = neutral_by_text.get((clip.speaker, clip.text_id)) or neutral_by_speaker.get(clip.speaker)
        if not refs:
            continue
        delta = levels[clip.path] - np.mean(refs, axis=0)
        per_speaker[clip.emotion][clip.speaker].append(delta - delta.mean())
    centres = edges[1:-1]
    emotions: dict[str, Any] = {}
    for emotion in ENVELOPE_EMOTIONS:
        by_speaker = per_speaker.get(emotion, {})
        if not by_speaker:
            continue
        speaker_means = np.array([np.mean(v, axis=0) for v in by_speaker.values()])
        gains = smooth_bands(speaker_means.mean(axis=0))
        emotions[emotion] = {
            "gains_db": [round(float(g), 2) for g in gains],
            "speaker_spread_db": [round(float(s), 2) for s in speaker_means.std(axis=0)],
            "speakers": sorted(by_speaker),
            "clips": int(sum(len(v) for v in by_speaker.values())),
            # the table's own 1-4 kHz against 50 Hz-1 kHz, for comparison with the rows' tilt_db
            "tilt_1_4khz_db": round(
                float(
                    gains[(centres >= 1000) & (centres < 4000)].mean()
                    - gains[(centres > 50) & (centres < 1000)].mean()
                ),
                2,
            ),
        }
    used = sorted({s for row in emotions.values() for s in row["speakers"]})
    return {
        "bands_hz": [round(float(c), 1) for c in centres],
        "band_edges_hz": [round(float(e), 1) for e in edges],
        "speakers": used,
        "clips_measured": len(levels),
        "emotions": emotions,
    }


def write_envelope_table(envelope: dict[str, Any], path: Path) -> None:
    """The table as the engine reads it (models/tts/shaping.load_envelope), with its source and method."""
    header = (
        "# Spectral envelope per emotion, from EmoDB's actors: what the Piper engine's band equaliser\n"
        "# applies at intensity 1.0 (models/tts/shaping.py; scaled linearly by intensity, voiced frames).\n"
        "# Generated by bench/emodb_prosody.py (--parts envelope); do not edit by hand.\n"
        "# gains_db: per mel band (centres in bands_hz), the level of WORLD's CheapTrick envelope on\n"
        "# voiced frames (F0 by pYIN) against the same speaker's neutral reading of the same sentence,\n"
        "# the mean over bands removed (the shared copy is peak-normalised: only the shape is known),\n"
        "# mean over each speaker's clips, then over speakers with equal weight, smoothed [1 2 1]/4.\n"
        "# These gains already hold the emotion's spectral tilt: the engine applies them, not tilt_db.\n"
    )
    speakers = " ".join(envelope["speakers"])
    document = {
        "version": 1,
        "source": f"EmoDB (Berlin Emotional Speech Database), shared copy, speakers {speakers}",
        "method": "CheapTrick envelope, voiced frames, triangular mel bands, vs same speaker's neutral",
        "bands_hz": envelope["bands_hz"],
        "emotions": {name: row["gains_db"] for name, row in envelope["emotions"].items()},
    }
    text = yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=200)
    path.write_text(header + text, encoding="utf-8")


def _word_spans(clipset: Path) -> dict[str, list[tuple[float, float]]]:
    from models.efp.dataset import read_clip_set

    return {Path(c.audio).name: [(w.start, w.end) for w in c.words] for c in read_clip_set(clipset)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--clipset", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "emodb_prosody.json")
    parser.add_argument("--parts", default="prosody,envelope", help="prosody, envelope or both")
    parser.add_argument("--speakers", default=None, help="envelope from these speakers only: 03,08,10")
    parser.add_argument("--table-out", type=Path, default=ENVELOPE_TABLE)
    parser.add_argument(
        "--envelope-out", type=Path, default=ROOT / "bench" / "results" / "emodb_envelope.json"
    )
    args = parser.parse_args()
    folder = args.data / "emodb" if (args.data / "emodb").is_dir() else args.data
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if "envelope" in parts:
        speakers = args.speakers.split(",") if args.speakers else None
        envelope_main(folder, speakers, args.table_out, args.envelope_out)
    if "prosody" in parts:
        prosody_main(folder, args.clipset, args.out)


def envelope_main(folder: Path, speakers: Sequence[str] | None, table_out: Path, json_out: Path) -> None:
    started = time.perf_counter()
    envelope = emodb_envelope(folder, speakers)
    envelope["seconds"] = round(time.perf_counter() - started, 1)
    envelope["machine"] = platform.platform()
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(envelope, indent=2), encoding="utf-8")
    write_envelope_table(envelope, table_out)
    print("| emotion | " + " | ".join(f"{c:.0f}" for c in envelope["bands_hz"]) + " | tilt 1-4 kHz |")
    for emotion, row in envelope["emotions"].items():
        cells = " | ".join(f"{g:+.1f}" for g in row["gains_db"])
        print(f"| {emotion} ({row['clips']} clips) | {cells} | {row['tilt_1_4khz_db']:+.1f} |")
    print(f"written {json_out} and {table_out}")


def prosody_main(folder: Path, clipset: Path | None, out: Path) -> None:
    started = time.perf_counter()
    spans = _word_spans(clipset) if clipset else None

    def progress(done: int, total: int) -> None:
        if done % 50 == 0 or done == total:
            print(f"measured {done}/{total}", flush=True)

    profile = emodb_profile(folder, _measured, spans, progress)
    profile["seconds"] = round(time.perf_counter() - started, 1)
    profile["machine"] = platform.platform()
    out.write_text(json.dumps(profile, indent=2), encoding="utf-8")
    keys = sorted({k for row in profile["emotions"].values() for k in row})
    print("| emotion | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for emotion, row in profile["emotions"].items():
        cells = [
            f"{row[k]['median']:+.2f} ({row[k]['min']:+.1f}..{row[k]['max']:+.1f})" if k in row else "-"
            for k in keys
        ]
        print(f"| {emotion} | " + " | ".join(cells) + " |")
    print(f"written {out}")


if __name__ == "__main__":
    main()
