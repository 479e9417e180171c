"""Benchmark of the speech stage: speed, emotion in the acoustics, aligner error, memory on long scripts.

Sections (all on this machine's CPU, engines as shipped):
- rtf:      real-time factor (synthesis seconds / audio seconds) of each engine on a ~30 s script with
            four emotions, Piper with and without PSOLA reshaping; voice load time reported apart.
- prosody:  per engine, emotion and intensity 0.3 / 0.6 / 1.0 on the same three sentences: mean F0
            change (semitones, pYIN), F0 range ratio (10-90th percentile span), energy change (dB over
            speaking frames) and speaking-rate ratio (words per second), all relative to neutral,
            and whether each moves monotonically with intensity.
- align:    DTW aligner (models/align/dtw.py) word-boundary error against Piper's own alignments.
- memory:   peak RSS of a fresh process speaking 1, 5 and 10 minutes with `synthesize_to` (streamed)
            and `synthesize` (in memory).
- quality:  whether Piper's reshaping stays natural (models/evaluate/speech_quality.py): the largest F0
            step near a word boundary where the emotion changes mid-sentence (against the same boundary
            in the neutral reading), clicks, and the MFCC distance of each emotion's reshaped speech from
            the same plan spoken without reshaping (piper-noshape), and pYIN's voiced share of both and
            of the unreshaped speech resampled to the row's pitch shift (periodicity intact: what pitch
            alone does to pYIN's voicing); neutral must come out unchanged. `--envelope off` measures
            Piper without the band table (tilt only, as 1.3), into `quality_noenvelope`.
- envelope_wavs: WAVs and spectrogram PNGs of one sentence per emotion at 1.0, Piper without and with the
            band table, into outputs/speech_envelope/ (for a human listener; not committed).
- listener_split: does the spectral envelope generalise to people the table never heard? The band
            table is derived from `--table-speakers` of the shared EmoDB copy, the listener (as
            `emoflow evaluate speech` trains it) from `--listener-speakers` only, and Piper without
            the table (1.3's tilt) and with it is heard at intensities 0.5 and 1.0 (needs `--data`).

Writes bench/results/speech.json and prints the Markdown tables of bench/README.md.
Run: .venv/bin/python bench/speech.py [--sections rtf,prosody,align,memory,quality,listener_split]
        [--out PATH] [--envelope on|off] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.plan.tokens import WORD_RE  # noqa: E402
from models.types import EmotionPlan, PlannedWord, Speech, Timings  # noqa: E402

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "After the long winter, the village finally woke up. Children ran to the river, laughing.",
    "Please call me tomorrow morning before nine o'clock, because I will be out all afternoon.",
]
ALIGN_SENTENCES = [
    *SENTENCES,
    "She sells sea shells by the sea shore, and the shells she sells are surely seashells.",
    "I'm sure it's fine. Don't worry: 3 well-known cats ate 1995 fish & chips! Dr. Smith agreed, right?",
    "We waited at the station for an hour, but the last train never came.",
]
PARAGRAPH = (
    "Good morning, and welcome to the quarterly update from the harbour office. "
    "This season we repaired the north pier and replaced forty lamps along the promenade. "
    "Visitor numbers rose by a third, and the summer market was the busiest we have ever had. "
    "But the storm in October flooded the warehouses again, and the sea wall has still not been funded. "
    "Two of our oldest boats were lost, and the families who ran them have had to leave the harbour. "
    "The full report is available at the office, and we welcome your questions. "
)
CYCLE = [("neutral", 0.0), ("happy", 0.8), ("angry", 0.8), ("sad", 0.7)]
INTENSITIES = (0.3, 0.6, 1.0)
WORDS_PER_MINUTE = 200  # Piper speaks this paragraph at about 204 words per minute


def make_plan(script: str, labels: Any = ("neutral", 0.0)) -> EmotionPlan:
    """One word per WORD_RE match (the planner's rule); labels: a pair or f(sentence number) -> pair."""
    words: list[PlannedWord] = []
    sentence = 0
    for i, match in enumerate(WORD_RE.finditer(script)):
        if i and any(c in ".!?" for c in script[words[-1].char_end : match.start()]):
            sentence += 1
        label, intensity = labels(sentence) if callable(labels) else labels
        words.append(PlannedWord(i, match.group(), match.start(), match.end(), label, intensity, "tag"))
    return EmotionPlan(script=script, words=words)


def long_script(minutes: float) -> str:
    n_words = len(WORD_RE.findall(PARAGRAPH))
    return (PARAGRAPH * max(1, round(minutes * WORDS_PER_MINUTE / n_words))).strip()


ENVELOPE = True  # `--envelope off`: Piper without the band table (the rows' tilt alone, as 1.3)


def engines() -> dict[str, Any]:
    from models.tts import get_speech_engine

    return {
        "piper": get_speech_engine("piper") if ENVELOPE else get_speech_engine("piper", envelope=False),
        "piper-noshape": get_speech_engine("piper", reshape=False),
        "espeak": get_speech_engine("espeak"),
    }


# 1. Real-time factor ------------------------------------------------------------------------------


def bench_rtf() -> dict[str, Any]:
    plan = make_plan(PARAGRAPH.strip(), lambda s: CYCLE[s % len(CYCLE)])
    results: dict[str, Any] = {}
    for name, engine in engines().items():
        started = time.perf_counter()
        engine.synthesize(make_plan("Warm up."))  # loads the voice
        load = time.perf_counter() - started
        runs, cpu = [], []
        for _ in range(2):
            started, started_cpu = time.perf_counter(), time.process_time()
            speech = engine.synthesize(plan)
            runs.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        results[name] = {
            "version": engine.version,
            "audio_s": round(speech.duration, 2),
            "synth_s": round(min(runs), 3),
            "rtf": round(min(runs) / speech.duration, 4),
            # CPU seconds of this process (all its threads): less moved by other jobs on a shared machine
            "cpu_rtf": round(min(cpu) / speech.duration, 4),
            "load_s": round(load, 2),
        }
        print(f"rtf {name}: {results[name]}", flush=True)
    return results


# 2. Emotion in the acoustics ----------------------------------------------------------------------


def voiced_f0(speech: Speech) -> np.ndarray:
    """F0 (Hz) of voiced frames by probabilistic YIN at 16 kHz.

    Plain YIN's octave errors put the 95th percentile of this ~95 Hz voice near 360 Hz, which made
    the F0 range meaningless; pYIN's voicing decision and pitch tracking avoid them.
    """
    import librosa

    y = librosa.resample(speech.samples, orig_sr=speech.sample_rate, target_sr=16000)
    f0, voiced, _ = librosa.pyin(y, fmin=60, fmax=400, sr=16000, frame_length=1024, hop_length=160)
    return f0[voiced & np.isfinite(f0)]


def features(speech: Speech) -> dict[str, float]:
    import librosa

    f0 = voiced_f0(speech)
    semis = 12 * np.log2(f0 / 100.0)
    rms = librosa.feature.rms(y=speech.samples, frame_length=1024, hop_length=256)[0]
    active = rms > 0.1 * rms.max()
    words = speech.timings.words
    return {
        "f0_mean_semitones": float(np.mean(semis)),
        "f0_range_semitones": float(np.percentile(semis, 90) - np.percentile(semis, 10)),
        "energy_db": float(20 * np.log10(np.sqrt(np.mean(rms[active] ** 2)))),
        "words_per_s": len(words) / (words[-1].end - words[0].start),
    }


def bench_prosody() -> dict[str, Any]:
    from models.vocabulary import load_vocabulary

    vocabulary = load_vocabulary()
    script = " ".join(SENTENCES)
    results: dict[str, Any] = {}
    for name, engine in engines().items():
        if name == "piper-noshape":
            continue  # reshaping is what carries pitch for Piper; without it only rate/gain move
        base = features(engine.synthesize(make_plan(script, ("neutral", 0.0))))
        table: dict[str, Any] = {"neutral": {k: round(v, 2) for k, v in base.items()}}
        for label in vocabulary.labels:
            if label == vocabulary.neutral:
                continue
            rows = {}
            for intensity in INTENSITIES:
                f = features(engine.synthesize(make_plan(script, (label, intensity))))
                rows[str(intensity)] = {
                    "f0_shift_st": round(f["f0_mean_semitones"] - base["f0_mean_semitones"], 2),
                    "f0_range_ratio": round(f["f0_range_semitones"] / base["f0_range_semitones"], 2),
                    "energy_db": round(f["energy_db"] - base["energy_db"], 2),
                    "rate_ratio": round(f["words_per_s"] / base["words_per_s"], 3),
                }
            target = vocabulary.emotion(label).prosody
            wanted = {
                "f0_shift_st": target.pitch_semitones,
                "f0_range_ratio": target.pitch_range - 1.0,
                "energy_db": target.energy_db,
                "rate_ratio": target.rate - 1.0,
            }
            monotone = {}
            for key, direction in wanted.items():
                values = [rows[str(i)][key] - (1.0 if key.endswith("ratio") else 0.0) for i in INTENSITIES]
                values = [0.0, *values]
                steps = np.diff(values) * np.sign(direction) if direction else np.zeros(len(values) - 1)
                # monotone = each step goes the way the vocabulary asks (a target of 0 is not scored)
                monotone[key] = None if not direction else bool(np.all(steps > 0))
            table[label] = {"by_intensity": rows, "target": wanted, "monotone": monotone}
        results[name] = table
        print(f"prosody {name}: done", flush=True)
    return results


# 3. Aligner ---------------------------------------------------------------------------------------


def bench_align() -> dict[str, Any]:
    from models.align.dtw import DtwAligner
    from models.tts import get_speech_engine

    piper, aligner = get_speech_engine("piper"), DtwAligner()
    errors: list[float] = []
    per_emotion: dict[str, float] = {}
    seconds = 0.0
    audio = 0.0
    for label, intensity in [("neutral", 0.0), ("happy", 0.8), ("sad", 1.0), ("angry", 1.0)]:
        mine: list[float] = []
        for script in ALIGN_SENTENCES:
            plan = make_plan(script, (label, intensity))
            speech = piper.synthesize(plan)
            untimed = Speech(speech.samples, speech.sample_rate, Timings(words=[]))
            started = time.perf_counter()
            timings = aligner.align(untimed, plan)
            seconds += time.perf_counter() - started
            audio += speech.duration
            for got, truth in zip(timings.words, speech.timings.words, strict=True):
                mine += [abs(got.start - truth.start), abs(got.end - truth.end)]
        per_emotion[label] = round(1000 * float(np.mean(mine)), 1)
        errors += mine
    result = {
        "aligner": f"{aligner.name} {aligner.version}",
        "reference": "piper word alignments",
        "sentences": len(ALIGN_SENTENCES),
        "boundaries": len(errors),
        "mean_ms": round(1000 * float(np.mean(errors)), 1),
        "median_ms": round(1000 * float(np.median(errors)), 1),
        "p90_ms": round(1000 * float(np.percentile(errors, 90)), 1),
        "within_50ms": round(float(np.mean(np.asarray(errors) <= 0.05)), 3),
        "mean_ms_by_emotion": per_emotion,
        "rtf": round(seconds / audio, 4),
    }
    print(f"align: {result}", flush=True)
    return result


# 4. Memory on long scripts ------------------------------------------------------------------------


def _proc_status_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process in MB.

    Not getrusage's ru_maxrss: Linux carries it across fork+exec, so a child started by a large
    parent reports the parent's peak. VmHWM belongs to the new address space only.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _memory_child(engine_name: str, minutes: float, mode: str, path: str) -> None:
    """Runs in a fresh process: speak `minutes` of script and print one JSON line."""
    from models.tts import get_speech_engine

    engine = get_speech_engine(engine_name)
    engine.synthesize(make_plan("Warm up."))
    before = _proc_status_mb("VmRSS")
    plan = make_plan(long_script(minutes), lambda s: CYCLE[s % len(CYCLE)])
    started = time.perf_counter()
    if mode == "stream":
        engine.synthesize_to(plan, path)  # type: ignore[attr-defined]  # piper and espeak both stream
        import soundfile as sf

        duration = sf.info(path).duration
    else:
        duration = engine.synthesize(plan).duration
    print(
        json.dumps(
            {
                "audio_min": round(duration / 60, 2),
                "seconds": round(time.perf_counter() - started, 1),
                "rss_after_load_mb": round(before, 1),
                "peak_rss_mb": round(_proc_status_mb("VmHWM"), 1),
            }
        )
    )


def bench_memory(engine_names: list[str], minutes: list[float], modes: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in engine_names:
            for mode in modes:
                for m in minutes:
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", name, str(m), mode, f"{folder}/long.wav"],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    row = json.loads(out.stdout.strip().splitlines()[-1])
                    results[f"{name}/{mode}/{m:g}min"] = row
                    print(f"memory {name} {mode} {m:g} min: {row}", flush=True)
    return results


# Report -------------------------------------------------------------------------------------------


# 5. Naturalness of the reshaping ------------------------------------------------------------------

QUALITY_EMOTIONS = ("happy", "sad", "angry", "fear", "disgust", "surprise")


def bench_quality() -> dict[str, Any]:
    import librosa

    from models.evaluate.speech_quality import boundary_jumps, clicks, spectral_distortion, voiced_share
    from models.vocabulary import load_vocabulary

    vocabulary = load_vocabulary()
    shaped, plain = engines()["piper"], engines()["piper-noshape"]
    rows: dict[str, Any] = {}
    for label in ("neutral", *QUALITY_EMOTIONS):
        jumps, baseline, n_clicks, n_clicks_plain, distances, seconds = [], [], 0, 0, [], 0.0
        voiced, voiced_plain, voiced_resampled = [], [], []
        shift = 0.0 if label == "neutral" else vocabulary.emotion(label).prosody.pitch_semitones
        for sentence in SENTENCES:
            whole = make_plan(sentence, (label, 0.0 if label == "neutral" else 1.0))
            speech, reference = shaped.synthesize(whole), plain.synthesize(whole)
            distances.append(spectral_distortion(speech.samples, reference.samples, speech.sample_rate))
            n_clicks += clicks(speech.samples, speech.sample_rate)
            n_clicks_plain += clicks(reference.samples, reference.sample_rate)
            seconds += speech.duration
            voiced.append(voiced_share(speech.samples, speech.sample_rate))
            voiced_plain.append(voiced_share(reference.samples, reference.sample_rate))
            # the same speech with its pitch moved by resampling, which cannot add noise
            rate = reference.sample_rate
            moved = librosa.resample(
                reference.samples, orig_sr=round(rate * 2 ** (shift / 12)), target_sr=rate
            )
            voiced_resampled.append(voiced_share(moved, rate))
            if label == "neutral":
                continue
            # the emotion starts halfway through the sentence
            half = len(whole.words) // 2
            neutral_plan = make_plan(sentence)
            mixed = replace(
                neutral_plan,
                words=[
                    w if w.index < half else replace(w, label=label, intensity=1.0)
                    for w in neutral_plan.words
                ],
            )
            changed, neutral = shaped.synthesize(mixed), shaped.synthesize(neutral_plan)

            jumps += boundary_jumps(changed.samples, changed.sample_rate, [_boundary(changed, half)])
            baseline += boundary_jumps(neutral.samples, neutral.sample_rate, [_boundary(neutral, half)])
        rows[label] = {
            "mfcc_distance": round(float(np.mean(distances)), 2),
            "clicks": n_clicks,
            "clicks_noshape": n_clicks_plain,
            "audio_s": round(seconds, 1),
            "voiced_share": round(float(np.mean(voiced)), 3),
            "voiced_share_noshape": round(float(np.mean(voiced_plain)), 3),
            "voiced_share_resampled": round(float(np.mean(voiced_resampled)), 3),
            "boundary_jump_st": None if not jumps else round(float(np.nanmax(jumps)), 2),
            "neutral_boundary_jump_st": None if not baseline else round(float(np.nanmax(baseline)), 2),
        }
        print(f"quality {label}: {rows[label]}", flush=True)
    return rows


# 6. The envelope heard by a listener that never heard the table's speakers -------------------------------


def bench_listener_split(
    data: Path, table_speakers: list[str], listener_speakers: list[str]
) -> dict[str, Any]:
    from bench.emodb_prosody import emodb_envelope, write_envelope_table
    from models.align.engine_timings import EngineTimingAligner
    from models.evaluate.listener import engine_report, load_lines, speak_lines, train_listener
    from models.plan.rules import RulePlanner
    from models.tts.piper_engine import PiperEngine

    if set(table_speakers) & set(listener_speakers):
        raise SystemExit(
            f"table and listener share speakers {sorted(set(table_speakers) & set(listener_speakers))}"
        )
    started = time.perf_counter()
    emodb = data / "emodb" if (data / "emodb").is_dir() else data
    work = ROOT / "outputs" / "bench" / "listener_split"
    work.mkdir(parents=True, exist_ok=True)
    # 1. The band table from the table's speakers only
    envelope = emodb_envelope(emodb, table_speakers)
    table = work / f"spectral_envelope_{'-'.join(table_speakers)}.yaml"
    write_envelope_table(envelope, table)
    # 2. Piper without and with the table speaks the listener's lines
    variants = {"piper-tilt": PiperEngine(envelope=False), "piper-envelope": PiperEngine(envelope=table)}
    lines = load_lines()
    spoken = {
        name: speak_lines(engine, RulePlanner(), EngineTimingAligner(), lines, work / "spoken" / name)
        for name, engine in variants.items()
    }
    # 3. The listener from the other speakers only hears them
    listener = train_listener(emodb, work, speakers=listener_speakers)
    result: dict[str, Any] = {
        "table_speakers": table_speakers,
        "listener_speakers": listener.speakers,
        "listener_clips": listener.clips,
        "listener_model": listener.path.name,
        "table": {k: v["gains_db"] for k, v in envelope["emotions"].items()},
        "bands_hz": envelope["bands_hz"],
        "engines": {},
    }
    for name, engine in variants.items():
        report = engine_report(listener, spoken[name], work / "spoken" / name, work / "report", name)
        result["engines"][name] = {
            "version": engine.version,
            "by_intensity": {
                k: {
                    "word_accuracy": round(r["word_accuracy"], 4),
                    "clip_accuracy": round(r["clip_accuracy"], 4),
                    "recall": {label: round(v, 3) for label, v in r["recall"].items()},
                    "confusion": r["words"].get("confusion"),
                }
                for k, r in report["by_intensity"].items()
            },
        }
        for k, r in result["engines"][name]["by_intensity"].items():
            print(f"listener_split {name} at {k}: words {r['word_accuracy']:.1%} {r['recall']}", flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def bench_envelope_wavs(out: Path = ROOT / "outputs" / "speech_envelope") -> dict[str, Any]:
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf

    from models.tts.piper_engine import PiperEngine

    out.mkdir(parents=True, exist_ok=True)
    variants = {"tilt": PiperEngine(envelope=False), "envelope": PiperEngine()}
    sentence = SENTENCES[1]
    written: dict[str, Any] = {}
    for label in ("neutral", *QUALITY_EMOTIONS):
        plan = make_plan(sentence, (label, 0.0 if label == "neutral" else 1.0))
        spoken = {name: engine.synthesize(plan) for name, engine in variants.items()}
        figure, axes = plt.subplots(3, 1, figsize=(11, 9))
        for axis, (name, speech) in zip(axes[:2], spoken.items(), strict=True):
            sf.write(out / f"{label}_{name}.wav", speech.samples, speech.sample_rate)
            level = librosa.amplitude_to_db(
                np.abs(librosa.stft(speech.samples, n_fft=1024, hop_length=128)), ref=np.max
            )
            axis.imshow(
                level,
                origin="lower",
                aspect="auto",
                vmin=-80,
                vmax=0,
                cmap="magma",
                extent=(0, speech.duration, 0, speech.sample_rate / 2),
            )
            axis.set_ylim(0, 8000)
            axis.set_title(f"{label} at 1.0, Piper {speech_version(variants[name])}")
        # long-term average spectra of both, to see the band gains as applied
        for name, speech in spoken.items():
            power = np.mean(np.abs(librosa.stft(speech.samples, n_fft=1024, hop_length=256)) ** 2, axis=1)
            freqs = librosa.fft_frequencies(sr=speech.sample_rate, n_fft=1024)
            axes[2].semilogx(freqs[1:], 10 * np.log10(power[1:] + 1e-12), label=name)
        axes[2].set_xlim(50, 11000)
        axes[2].legend()
        axes[2].set_xlabel("Hz")
        figure.tight_layout()
        figure.savefig(out / f"{label}.png", dpi=80)
        plt.close(figure)
        written[label] = sorted(p.name for p in out.glob(f"{label}*"))
        print(f"envelope_wavs {label}: {written[label]}", flush=True)
    return written


def speech_version(engine: Any) -> str:
    return str(engine.version)


def _boundary(speech: Speech, word: int) -> float:
    """The time between word `word - 1` and word `word`."""
    a, b = speech.timings.words[word - 1], speech.timings.words[word]
    return 0.5 * (a.end + b.start)


def markdown(results: dict[str, Any]) -> str:
    lines: list[str] = []
    if "rtf" in results:
        lines += [
            "| engine | version | audio (s) | synthesis (s) | real-time factor | CPU seconds per second "
            "| voice load (s) |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in results["rtf"].items():
            lines.append(
                f"| {name} | {r['version']} | {r['audio_s']} | {r['synth_s']} | {r['rtf']} "
                f"| {r.get('cpu_rtf', '-')} | {r['load_s']} |"
            )
        lines.append("")
    for engine, table in results.get("prosody", {}).items():
        lines += [
            f"**{engine}** (vs neutral: F0 shift in semitones, F0 range ratio, energy dB, "
            "speaking-rate ratio; ✓ = moves monotonically with intensity in the direction the "
            "vocabulary asks)",
            "",
            "| emotion | intensity | F0 shift | F0 range | energy | rate |",
            "|---|---|---|---|---|---|",
        ]
        for label, row in table.items():
            if label == "neutral":
                continue
            for intensity, r in row["by_intensity"].items():
                marks = {k: ("" if v is None else " ✓" if v else " ✗") for k, v in row["monotone"].items()}
                m = marks if intensity == "1.0" else dict.fromkeys(marks, "")
                lines.append(
                    f"| {label} | {intensity} | {r['f0_shift_st']:+.2f}{m['f0_shift_st']} "
                    f"| {r['f0_range_ratio']:.2f}{m['f0_range_ratio']} "
                    f"| {r['energy_db']:+.1f}{m['energy_db']} "
                    f"| {r['rate_ratio']:.2f}{m['rate_ratio']} |"
                )
        lines.append("")
    if "align" in results:
        a = results["align"]
        lines += [
            "| aligner | reference | boundaries | mean | median | p90 | ≤ 50 ms | real-time factor |",
            "|---|---|---|---|---|---|---|---|",
            f"| {a['aligner']} | {a['reference']} | {a['boundaries']} | {a['mean_ms']} ms "
            f"| {a['median_ms']} ms | {a['p90_ms']} ms | {100 * a['within_50ms']:.0f} % | {a['rtf']} |",
            "",
        ]
    if "memory" in results:
        lines += [
            "| run | audio (min) | wall (s) | RSS after load (MB) | peak RSS (MB) |",
            "|---|---|---|---|---|",
        ]
        for key, r in results["memory"].items():
            lines.append(
                f"| {key} | {r['audio_min']} | {r['seconds']} | {r['rss_after_load_mb']} "
                f"| {r['peak_rss_mb']} |"
            )
        lines.append("")
    if "quality" in results:
        lines += [
            "| emotion at 1.0 | MFCC distance from unreshaped speech | clicks (noshape) | audio (s) "
            "| largest F0 step at the mid-sentence change (st) | same boundary, neutral reading (st) "
            "| voiced share (noshape; resampled to the row's pitch) |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, r in results["quality"].items():
            jump = "-" if r["boundary_jump_st"] is None else r["boundary_jump_st"]
            base = "-" if r["neutral_boundary_jump_st"] is None else r["neutral_boundary_jump_st"]
            lines.append(
                f"| {label} | {r['mfcc_distance']} | {r['clicks']} ({r['clicks_noshape']}) | {r['audio_s']} "
                f"| {jump} | {base} | {r['voiced_share']:.2f} ({r['voiced_share_noshape']:.2f}; "
                f"{r.get('voiced_share_resampled', float('nan')):.2f}) |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _memory_child(sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="rtf,prosody,align,memory")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "speech.json")
    parser.add_argument("--minutes", default="1,5,10")
    parser.add_argument("--memory-engines", default="piper,espeak")
    parser.add_argument("--memory-modes", default="stream,memory")
    parser.add_argument("--envelope", choices=("on", "off"), default="on")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--table-speakers", default="03,08,10")
    parser.add_argument("--listener-speakers", default="09,11,12")
    args = parser.parse_args()
    sections = args.sections.split(",")
    global ENVELOPE
    ENVELOPE = args.envelope == "on"
    results: dict[str, Any] = {}
    if args.out.exists():  # keep sections not re-run
        results = json.loads(args.out.read_text())
    results["machine"] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": __import__("os").cpu_count(),
    }
    if "rtf" in sections:
        results["rtf"] = bench_rtf()
    if "prosody" in sections:
        results["prosody"] = bench_prosody()
    if "align" in sections:
        results["align"] = bench_align()
    if "quality" in sections:
        results["quality" if ENVELOPE else "quality_noenvelope"] = bench_quality()
    if "envelope_wavs" in sections:
        bench_envelope_wavs()
    if "listener_split" in sections:
        results["listener_split"] = bench_listener_split(
            args.data, args.table_speakers.split(","), args.listener_speakers.split(",")
        )
    if "memory" in sections:
        results["memory"] = bench_memory(
            args.memory_engines.split(","),
            [float(m) for m in args.minutes.split(",")],
            args.memory_modes.split(","),
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
