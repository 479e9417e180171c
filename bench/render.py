"""Benchmark of the preview renderer against the issue's goals, and of the FER judge that scores it.

Measures, on the shared evaluation data (never used by unit tests):
- render-only frames per second at 512x512 (portrait preparation excluded; goal >= 60);
- EF-agreement per emotion and mean, over all portraits and split into the tuning portraits (hallo_1-4,
  lp_s12) and the held-out ones (hallo_5-7, lp_s2), lip-sync correlation, identity drift and background
  SSIM, via `models.evaluate.render.evaluate_render`;
- naturalness: per clip and face region, the p95 landmark move over real MEAD actors' p95 for the same
  emotion (goal <= 1.0 everywhere), and frames with wavy or crossed lips (goal 0);
- the judge's accuracy on CK+ (ckplus48; contempt, which the judge has no class for, separately);
- the judge on real MEAD talking clips: the EF-agreement that real acted faces reach, a reference ceiling.

Writes bench/results/render.json and contact sheets, and prints the Markdown table for bench/README.md.
Run: .venv/bin/python bench/render.py [--data ../shared/data] [--seconds 3] [--expressions real|facs]
(`facs` plays the hand-tuned FACS rows of renderer 1.3.0 through today's rig, for before/after.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from skimage import data as skimage_data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.evaluate.judge import MEAD_MAP, judge_ckplus  # noqa: E402
from models.evaluate.metrics import correlation, mouth_opening  # noqa: E402
from models.evaluate.naturalness import real_range  # noqa: E402
from models.evaluate.render import (  # noqa: E402
    ClipResult,
    PortraitStatus,
    RenderEvalConfig,
    constant_curve,
    evaluate_render,
    finite,
    summarise,
)
from models.evaluate.speech import frame_energy, synthetic_speech  # noqa: E402
from models.render import PreviewRenderer  # noqa: E402
from models.types import EmotionCurve, Speech, Timings  # noqa: E402
from models.vision.face import detect_landmarks, load_image, prepare_portrait  # noqa: E402
from models.vision.judge import LABELS, FaceEmotionJudge  # noqa: E402

# the last rounds' split: the FACS rows were tuned on these; the rest stay held out
TUNING = ("hallo_1", "hallo_2", "hallo_3", "hallo_4", "lp_s12")
HELD_OUT = ("hallo_5", "hallo_6", "hallo_7", "lp_s2")


def render_speed(portraits: list[Path], expressions: str, seconds: float = 4.0) -> dict[str, Any]:
    """Render-only fps at 512 px: the portrait is prepared (cached) by a first short clip, then timed."""
    renderer = PreviewRenderer(size=512, fps=25, expressions=expressions)
    speech = synthetic_speech(seconds, seed=1)
    rates = []
    for path in portraits:
        portrait = prepare_portrait(load_image(path), size=512)
        list(renderer.render(portrait, synthetic_speech(0.2), constant_curve("happy", 1.0, 0.2)))  # cache
        for emotion in ("happy", "surprise"):
            start = time.perf_counter()
            frames = list(renderer.render(portrait, speech, constant_curve(emotion, 1.0, seconds)))
            rates.append(len(frames) / (time.perf_counter() - start))
    return {"fps_median": float(np.median(rates)), "fps_min": float(np.min(rates)), "clips": len(rates)}


NARRATION = "Hello there, my friends. [angry 0.9] This must never happen again!"  # tests/flows' script


def narration_inputs(cache: Path) -> tuple[Speech, EmotionCurve]:
    """The flow test's narration as the pipeline's engines make it (rules plan, Piper, engine timings,
    embedded EFP: neutral words, then angry ones), built once and kept in `cache`, so a before/after pair
    reads the same speech and curve while the speech engines change under it."""
    audio, meta = cache / "narration_samples.npy", cache / "narration.json"
    if not (audio.is_file() and meta.is_file()):
        from models.align.engine_timings import EngineTimingAligner
        from models.efp import EmbeddedEFP
        from models.plan.rules import RulePlanner
        from models.tts.piper_engine import PiperEngine

        plan = RulePlanner().plan(NARRATION, "")
        spoken = PiperEngine().synthesize(plan)
        timings = EngineTimingAligner().align(spoken, plan)
        spoken = Speech(spoken.samples, spoken.sample_rate, timings)
        found = EmbeddedEFP().predict(spoken, timings, plan)
        cache.mkdir(parents=True, exist_ok=True)
        np.save(audio, spoken.samples)
        doc = {"sample_rate": spoken.sample_rate, "timings": timings.to_dict(), "curve": found.to_dict()}
        meta.write_text(json.dumps(doc))
    doc = json.loads(meta.read_text())
    speech = Speech(np.load(audio), doc["sample_rate"], Timings.from_dict(doc["timings"]))
    return speech, EmotionCurve.from_dict(doc["curve"])


def narration_lip_sync(portraits: Path, cache: Path, size: int = 256) -> dict[str, Any]:
    """Lip sync of the narration (real speech, emotion changing between words) against steady curves on
    the same speech, at `size` px: lip_sync is corr(re-detected lip gap, speech RMS), as the flow test
    and `evaluate render` measure it; lip_follow is corr(re-detected gap, the gap the warp was given)."""
    speech, changing = narration_inputs(cache)
    renderer = PreviewRenderer(size=size, fps=25)
    n = renderer.frame_count(speech.duration)
    energy = frame_energy(speech, renderer.fps, n)
    curves = {
        "changing": changing,
        "neutral": constant_curve("neutral", 1.0, speech.duration),
        "angry": constant_curve("angry", 1.0, speech.duration),
        "sad": constant_curve("sad", 1.0, speech.duration),
    }
    faces = {"astronaut": skimage_data.astronaut()}
    faces |= {name: load_image(portraits / f"{name}.jpg") for name in TUNING + HELD_OUT}
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for name, image in faces.items():
        portrait = prepare_portrait(image, size=size)
        for label, curve in curves.items():
            frames = renderer.render(portrait, speech, curve)
            seen = np.array(
                [np.nan if (p := detect_landmarks(f)) is None else mouth_opening(p) for f in frames]
            )
            asked = np.array([mouth_opening(t) for t in renderer.landmark_track(portrait, speech, curve)])
            rows.setdefault(name, {})[label] = {
                "lip_sync": correlation(seen, energy),
                "lip_follow": correlation(seen, asked),
                "asked_vs_rms": correlation(asked, energy),
            }
    summary = {}
    for group, names in (("astronaut", ("astronaut",)), ("tuning", TUNING), ("held_out", HELD_OUT)):
        summary[group] = {
            label: {k: float(np.mean([rows[n][label][k] for n in names])) for k in rows[names[0]][label]}
            for label in curves
        }
    return {"size": size, "renderer": PreviewRenderer.version, "summary": summary, "portraits": rows}


def mead_reference(root: Path, judge: FaceEmotionJudge) -> dict[str, Any]:
    """EF-agreement the judge gives real acted talking faces (MEAD, level 3; neutral level 1)."""
    per_emotion: dict[str, list[float]] = {}
    for path in sorted(root.glob("*.mp4")):
        label = MEAD_MAP.get(path.stem.split("_")[2])
        if label is None:  # contempt: no judge class
            continue
        capture = cv2.VideoCapture(str(path))
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        capture.release()
        if frames:
            judged = judge.classify(frames).argmax(axis=1)
            per_emotion.setdefault(label, []).append(float(np.mean([LABELS[i] == label for i in judged])))
    agreement = {k: float(np.mean(v)) for k, v in per_emotion.items()}
    return {
        "ef_agreement": agreement,
        "mean": float(np.mean(list(agreement.values()))) if agreement else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "render.json")
    parser.add_argument("--sheets", type=Path, default=ROOT / "outputs" / "bench" / "render")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--expressions", choices=("real", "facs"), default="real")
    parser.add_argument(
        "--narration",
        type=Path,
        help="only the narration's lip sync (real speech, changing curve) at 256 px: write it here",
    )
    parser.add_argument("--narration-cache", type=Path, default=ROOT / "outputs" / "render_lipsync")
    args = parser.parse_args()
    if args.narration is not None:
        found = narration_lip_sync(args.data / "portraits", args.narration_cache)
        args.narration.parent.mkdir(parents=True, exist_ok=True)
        args.narration.write_text(json.dumps(found, indent=2))
        print(json.dumps(found["summary"], indent=1))
        return

    judge = FaceEmotionJudge.shared()
    portraits = sorted((args.data / "portraits").glob("*.jpg"))
    humans = [p for p in portraits if p.stem not in {"lp_s25", "lp_s39"}]  # dog and cat
    results: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_before": os.getloadavg()},
        "renderer": {
            "name": PreviewRenderer.name,
            "version": PreviewRenderer.version,
            "expressions": args.expressions,
        },
    }
    t0 = time.perf_counter()
    results["speed"] = render_speed(humans[:3], args.expressions)
    print(f"speed: {results['speed']}", file=sys.stderr)
    evaluated = evaluate_render(
        args.data / "portraits",
        args.sheets,
        RenderEvalConfig(seconds=args.seconds, expressions=args.expressions),
        log=lambda m: print(m, file=sys.stderr),
    )
    report = evaluated.to_dict()
    results["render"] = {
        "summary": report["summary"],
        "split": {
            "tuning": split_summary(evaluated.clips, evaluated.portraits, TUNING),
            "held_out": split_summary(evaluated.clips, evaluated.portraits, HELD_OUT),
        },
        "portraits": report["portraits"],
        "clips": report["clips"],
    }
    results["real_range"] = real_range()["emotions"]
    results["contact_sheets"] = [_relative(p) for p in report["contact_sheets"]]
    results["judge_ckplus"] = judge_ckplus(args.data / "ckplus48", judge).summary()
    results["judge_mead"] = mead_reference(args.data / "mead", judge)
    results["machine"]["load_after"] = os.getloadavg()
    results["wall_s"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(markdown(results))


def _relative(path: str) -> str:
    """A path under the checkout as relative to it (sheets written elsewhere stay absolute)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved)


def split_summary(clips: list[ClipResult], statuses: list[PortraitStatus], names: tuple[str, ...]) -> Any:
    chosen = [c for c in clips if c.portrait in names]
    return finite(summarise(chosen, [s for s in statuses if s.name in names], float("nan")))


def markdown(r: dict[str, Any]) -> str:
    s = r["render"]["summary"]
    ef = s["ef_agreement"]
    mead = r["judge_mead"]["ef_agreement"]
    ck = r["judge_ckplus"]
    speed = r["speed"]

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.0f} %"

    tuning, held = r["render"]["split"]["tuning"], r["render"]["split"]["held_out"]
    ratio = s["range_ratio_max"]
    lines = [
        "| emotion | EF-agreement, all | tuning | held-out | max range ratio (all clips) "
        "| judge on real MEAD clips | judge on CK+ |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in ef:
        ck_acc = ck["per_class"].get(e, {}).get("accuracy")
        lines.append(
            f"| {e} | {pct(ef[e])} | {pct(tuning['ef_agreement'].get(e))} "
            f"| {pct(held['ef_agreement'].get(e))} | {ratio[e]:.2f} | {pct(mead.get(e))} | {pct(ck_acc)} |"
        )
    mean = f"{pct(s['ef_agreement_mean'])} (non-neutral {pct(s['ef_agreement_mean_non_neutral'])})"
    lines.append(
        f"| **mean** | {mean} | {pct(tuning['ef_agreement_mean'])} | {pct(held['ef_agreement_mean'])} "
        f"| {s['range_ratio_max_overall']:.2f} | {pct(r['judge_mead']['mean'])} | {pct(ck['accuracy'])} |"
    )
    n_ck = ck["images"] - sum(ck["contempt_judged_as"].values())
    rows = [
        (
            f"render-only fps at 512x512 (median of {speed['clips']} clips)",
            f"{speed['fps_median']:.0f}",
            ">= 60",
        ),
        (
            "lip-sync correlation (mean, min over clips)",
            f"{s['lip_sync']:.2f}, {s['lip_sync_min']:.2f}",
            ">= 0.8",
        ),
        (
            "lip follow: corr(re-detected gap, the gap the warp was given) (mean, min)",
            f"{s['lip_follow']:.2f}, {s['lip_follow_min']:.2f}",
            "",
        ),
        (
            f"clips within the real actors' range in every region (of {len(r['render']['clips'])})",
            str(s["clips_within_range"]),
            "all",
        ),
        (
            "the same on the landmarks the warp was given, head still (max ratio)",
            f"{s['clips_within_range_given']} ({s['range_ratio_given_max_overall']:.2f})",
            "",
        ),
        (
            "frames with wavy lips / lips crossed or folded",
            f"{s['wavy_lip_frames']} / {s['crossed_lip_frames']}",
            "0 / 0",
        ),
        (
            "identity: stable-landmark drift, IOD (mean / max clip)",
            f"{s['drift_iod_mean']:.3f} / {s['drift_iod_max']:.3f}",
            "hold",
        ),
        (
            "identity: background SSIM outside the head (mean / min)",
            f"{s['bg_ssim_mean']:.3f} / {s['bg_ssim_min']:.3f}",
            "hold",
        ),
        (
            f"judge accuracy on CK+ (6 classes, {n_ck} crops)",
            f"{pct(ck['accuracy'])} (balanced {pct(ck['balanced_accuracy'])})",
            "",
        ),
        ("CK+ contempt judged as", str(ck["contempt_judged_as"]), ""),
        ("portraits scored / skipped", f"{s['portraits_ok']} / {', '.join(s['portraits_skipped'])}", ""),
    ]
    lines += ["", "| metric | value | goal |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    regions = list(next(iter(r["real_range"].values())))
    lines += ["", "Real MEAD actors, median / p95 landmark move from their own neutral (IOD):", ""]
    lines += ["| emotion | " + " | ".join(regions) + " |", "|---|" + "---|" * len(regions)]
    for emotion, stats in r["real_range"].items():
        cells = " | ".join(f"{stats[g]['median']:.3f} / {stats[g]['p95']:.3f}" for g in regions)
        lines.append(f"| {emotion} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
