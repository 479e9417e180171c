"""Build the preview renderer's real-face tables from MEAD actors (run by hand; the outputs are committed).

    python bench/face_tables.py ../shared/data/mead ../shared/data/portraits [--speech-report REPORT]

writes
  prompts/expression_range.json  per emotion and region, the median and p95 of the landmark move from the
                                 actor's neutral (IOD), the naturalness measure's reference
  prompts/expressions.json       per emotion, the actors' speech opening against neutral, and the mean
                                 displacement field of the actors' expression (IOD,
                                 face frame), which the renderer plays scaled by intensity, and the face
                                 mesh's gain per region, measured on the tuning portraits only (the last
                                 round's split: hallo_1-4 and lp_s12; hallo_5-7 and lp_s2 stay held out)

Only derived statistics are written; no frame or landmark track of MEAD is kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.evaluate.naturalness import region_displacement, summarise_displacement  # noqa: E402
from models.evaluate.real_faces import LandmarkTrack, detect_mesh, face_frame_track, read_mead  # noqa: E402
from models.render.expressions import (  # noqa: E402
    EXPRESSIONS_FILE,
    RANGE_FILE,
    ExpressionTable,
    expression_fields,
    speech_opening,
    with_gain,
)
from models.render.preview import PreviewRenderer  # noqa: E402
from models.render.topology import FACE_REGIONS  # noqa: E402
from models.vision.face import load_image, prepare_portrait  # noqa: E402

TUNING = ("hallo_1", "hallo_2", "hallo_3", "hallo_4", "lp_s12")
_GAIN_RANGE = (0.35, 1.5)  # never amplify a region more than 1 / 0.35 times
_REFINE = 2
LABELS = ["neutral", "happy", "sad", "angry", "fear", "surprise", "disgust"]


def detector_gain(doc: dict[str, object], portraits: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Per region, how much of a warped move the face mesh re-detects: (projection of the detected move on
    the played move) / (played move)^2 over the tuning portraits and every emotion, clipped to 0.35..1.5,
    then refined twice.
    Also returns what is re-detected after dividing by that gain, as a share of the measured field (the
    closed loop: about 1 when the calibration holds). The lip gap is speech's (`FaceRig.field_moves`), so
    the target is the measured field less its gap."""
    renderer = PreviewRenderer()
    raw = ExpressionTable.from_document({**doc, "detector_gain": {}})
    fields = {e: f for e, f in raw.fields.items() if e != "neutral"}
    stills = [prepare_portrait(load_image(portraits / f"{name}.jpg")) for name in TUNING]

    def redetected(table: ExpressionTable) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
        renderer.real = table
        pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {r: [] for r in FACE_REGIONS}
        for portrait in stills:
            rest = detect_mesh(renderer.expression_still(portrait, LABELS, np.eye(len(LABELS))[0]))
            assert rest is not None
            rig = renderer.prepared_rig(portrait)
            for i, emotion in enumerate(LABELS[1:], start=1):
                # the target: the measured field as the rig plays it (less its lip gap), in the face frame
                px = rig.field_moves(fields[emotion])
                target = np.stack([px @ rig.frame.ex, px @ rig.frame.ey], axis=1) / rig.frame.iod
                found = detect_mesh(renderer.expression_still(portrait, LABELS, np.eye(len(LABELS))[i]))
                assert found is not None
                track, base = face_frame_track(found[None], rest)
                moved = track[0] - base
                for region, idx in FACE_REGIONS.items():
                    pairs[region].append((moved[list(idx)], target[list(idx)]))
        return pairs

    def projection(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
        num = sum(float((d * f).sum()) for d, f in pairs)
        return num / max(sum(float((f * f).sum()) for _, f in pairs), 1e-12)

    gain = {r: float(np.clip(projection(p), *_GAIN_RANGE)) for r, p in redetected(raw).items()}
    # neighbouring regions drag each other (amplified lips pull the re-detected chin): refine twice
    for _ in range(_REFINE):
        played = ExpressionTable.from_document({**doc, "detector_gain": gain})
        loop = {r: projection(p) for r, p in redetected(played).items()}
        gain = {r: float(np.clip(gain[r] * loop[r], *_GAIN_RANGE)) for r in gain}
    played = ExpressionTable.from_document({**doc, "detector_gain": gain})
    loop = {r: round(projection(p), 3) for r, p in redetected(played).items()}
    return gain, loop


def expression_range(tracks: list[LandmarkTrack]) -> dict[str, object]:
    emotions: dict[str, dict[str, dict[str, float]]] = {}
    per_speaker: dict[str, dict[str, dict[str, float]]] = {}
    for emotion in sorted({t.emotion for t in tracks}):
        chosen = [t for t in tracks if t.emotion == emotion]
        moves = [region_displacement(t.points, t.neutral) for t in chosen]
        pooled = {name: np.concatenate([m[name] for m in moves]) for name in moves[0]}
        emotions[emotion] = summarise_displacement(pooled)
        for t, m in zip(chosen, moves, strict=True):
            per_speaker.setdefault(t.speaker, {})[emotion] = {
                name: round(s["p95"], 4) for name, s in summarise_displacement(m).items()
            }
    return {
        "source": "MEAD front clips, level 3 (neutral: level 1), speakers "
        + ", ".join(sorted({t.speaker for t in tracks})),
        "unit": "mean landmark move of the region from the speaker's neutral, inter-ocular distances",
        "frames": sum(len(t.points) for t in tracks),
        "emotions": {
            e: {r: {k: round(v, 4) for k, v in s.items()} for r, s in rs.items()}
            for e, rs in emotions.items()
        },
        "p95_per_speaker": per_speaker,
    }


def speech_calibration(report: Path) -> dict[str, float]:
    """Neutral speech's scale from a `bench/render.py` report of the renderer before it (its clips'
    `range_ratio`), on the tuning portraits only: the scale that brings the largest neutral clip's lips
    or jaw ratio (speech is all that moves them there) to the actors' p95."""
    clips = json.loads(report.read_text(encoding="utf-8"))["clips"]
    worst = max(
        max(c["range_ratio"].get("lips", 0.0), c["range_ratio"].get("jaw", 0.0))
        for c in clips
        if c["emotion"] == "neutral" and c["portrait"] in TUNING and c["range_ratio"]
    )
    return {"scale": round(min(1.0, 1.0 / worst), 3), "tuning_neutral_ratio_before": round(worst, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mead", type=Path, help="the MEAD folder (labels.csv and the clips)")
    parser.add_argument("portraits", type=Path, help="the shared portraits (the tuning ones are used)")
    parser.add_argument(
        "--speech-report",
        type=Path,
        help="bench/render.py's report.json at speech scale 1 (calibrates neutral speech's opening)",
    )
    args = parser.parse_args()
    tracks = read_mead(args.mead)
    RANGE_FILE.write_text(json.dumps(expression_range(tracks), indent=1) + "\n", encoding="utf-8")
    doc = expression_fields(tracks)
    speech: dict[str, object] = {"ratio": speech_opening(tracks), "scale": 1.0}
    if args.speech_report is not None:
        speech |= speech_calibration(args.speech_report)
    speech["source"] = (
        "ratio: std of the inner-lip gap over each MEAD clip, over the speaker's neutral clip's, mean of "
        "speakers; scale: neutral speech's opening, from the tuning portraits' neutral clips"
    )
    doc["speech_opening"] = speech
    print("speech opening:", speech)
    gain, loop = detector_gain(doc, args.portraits)
    print("detector gain per region:", {k: round(v, 3) for k, v in gain.items()})
    print("re-detected share of the measured field after calibration:", loop)
    how = f"warp and re-detect on {', '.join(TUNING)}; closed loop after calibration {loop}"
    EXPRESSIONS_FILE.write_text(json.dumps(with_gain(doc, gain, how)) + "\n", encoding="utf-8")
    print(f"wrote {RANGE_FILE.relative_to(ROOT)} and {EXPRESSIONS_FILE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
