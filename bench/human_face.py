"""Calibration of the human-face check (`models/vision/human.py`, issue #16 item 5) on the shared data.

Human faces: the nine human portraits of ../shared/data/portraits (photos, two paintings, a drawing, a
statue), skimage's astronaut, two frames of each of the 16 MEAD clips (acted expressions, open mouths),
and rotated (+-20 degrees) and greyscale copies of the portraits and the astronaut. Non-human: the
dog (lp_s25) and its copies, pushed through MediaPipe's detector at a low threshold, since intake's
detector already refuses it; the cats give no face mesh at any threshold; no monkey image is here.

Writes bench/results/human_face.json (the cues per face, each cue's range per group, and the time the check
adds to `prepare_portrait`) and prints the Markdown table for bench/README.md.
Run: .venv/bin/python bench/human_face.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.vision import face as face_module  # noqa: E402
from models.vision.human import HumanCues, human_cues  # noqa: E402

NON_HUMAN = ("lp_s25",)  # the dog
SKIPPED = ("lp_s39",)  # the cat: no detection gives it a face mesh


def faces(data: Path) -> dict[str, np.ndarray]:
    """Every test image by name: portraits, astronaut, MEAD frames, then the augmented copies."""
    from skimage import data as skimage_data

    images = {
        p.stem: face_module.load_image(p)
        for p in sorted((data / "portraits").glob("*.jpg"))
        if p.stem not in SKIPPED
    }
    images["astronaut"] = skimage_data.astronaut()
    originals = list(images.items())
    for clip in sorted((data / "mead").glob("*.mp4")):
        reader = cv2.VideoCapture(str(clip))
        count = int(reader.get(cv2.CAP_PROP_FRAME_COUNT))
        for k in (count // 3, 2 * count // 3):
            reader.set(cv2.CAP_PROP_POS_FRAMES, k)
            ok, bgr = reader.read()
            if ok:
                frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                images[f"{clip.stem}@{k}"] = cv2.resize(frame, (512, 512), interpolation=cv2.INTER_CUBIC)
        reader.release()
    for name, image in originals:
        h, w = image.shape[:2]
        for angle in (-20, 20):
            matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
            images[f"{name}_rot{angle}"] = cv2.warpAffine(
                image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT_101
            )
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        images[f"{name}_grey"] = np.repeat(grey[:, :, None], 3, axis=2)
    return images


def forced_cues(image: np.ndarray) -> HumanCues | None:
    """The cues as intake computes them, but with MediaPipe's detectors at a 0.05 threshold, so faces that
    intake's detector refuses (the dog) are measured too. None where no face mesh fits."""
    from mediapipe.python.solutions import face_detection

    h, w = image.shape[:2]
    scale = min(1.0, 1024 / max(h, w))
    small = (
        image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    )
    best = None
    for model in (1, 0):
        with face_detection.FaceDetection(model_selection=model, min_detection_confidence=0.05) as graph:
            for det in graph.process(np.ascontiguousarray(small)).detections or []:
                if best is None or det.score[0] > best.score[0]:
                    best = det
    if best is None:
        return None
    rel = best.location_data.relative_bounding_box
    box = face_module.FaceBox(rel.xmin * w, rel.ymin * h, rel.width * w, rel.height * h, best.score[0])
    x0, y0, side = face_module._crop_square(box, w, h)
    crop = face_module._crop_resize(image, x0, y0, side, 512)
    meshes = face_module._meshes(crop)
    if not meshes:
        return None
    keypoints = np.array([(k.x * w, k.y * h) for k in best.location_data.relative_keypoints])
    return human_cues(crop, meshes[0][0], (keypoints - (x0, y0)) * (512 / side))


def check_cost(image: np.ndarray, repeats: int = 10) -> dict[str, float]:
    """ms of prepare_portrait with and without the check, and of the check alone, on one portrait."""
    face_module.prepare_portrait(image)  # build the graphs and load the cascades first
    times = {}
    for allow in (False, True):
        start = time.perf_counter()
        for _ in range(repeats):
            face_module.prepare_portrait(image, allow_non_human=allow)
        times["with_check" if not allow else "without_check"] = (time.perf_counter() - start) / repeats * 1000
    portrait = face_module.prepare_portrait(image, allow_non_human=True)
    start = time.perf_counter()
    for _ in range(repeats):
        human_cues(portrait.image, portrait.landmarks, None)
    times["check_alone"] = (time.perf_counter() - start) / repeats * 1000
    return {key: round(value, 1) for key, value in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for name, image in faces(args.data).items():
        cues = forced_cues(image)
        group = "non-human" if name.split("_rot")[0].split("_grey")[0] in NON_HUMAN else "human"
        if cues is None:
            rows.append({"name": name, "group": group, "mesh": False})
            continue
        row = {"name": name, "group": group, "mesh": True, **cues.__dict__, "human": cues.human}
        row["failures"] = cues.failures()
        rows.append(row)
    summary: dict[str, Any] = {}
    for group in ("human", "non-human"):
        measured = [r for r in rows if r["group"] == group and r["mesh"]]
        summary[group] = {
            "faces": len(measured),
            "accepted": sum(r["human"] for r in measured),
            **{
                cue: [round(min(r[cue] for r in measured), 3), round(max(r[cue] for r in measured), 3)]
                for cue in ("keypoint_offset", "nose_drop", "eye_mouth", "haar_overlap")
            },
        }
    from skimage import data as skimage_data

    result = {"summary": summary, "cost_ms": check_cost(skimage_data.astronaut()), "faces": rows}
    out = ROOT / "bench" / "results" / "human_face.json"
    out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print("| group | faces | accepted | keypoint offset | nose drop | eye-mouth | Haar overlap |")
    print("|---|---|---|---|---|---|---|")
    for group, s in summary.items():
        cells = " | ".join(
            f"{s[c][0]:.2f}-{s[c][1]:.2f}"
            for c in ("keypoint_offset", "nose_drop", "eye_mouth", "haar_overlap")
        )
        print(f"| {group} | {s['faces']} | {s['accepted']} | {cells} |")
    print("cost ms:", result["cost_ms"])
    for r in rows:
        if r["mesh"] and r["human"] != (r["group"] == "human"):
            print("misjudged:", r["name"], r.get("failures"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
