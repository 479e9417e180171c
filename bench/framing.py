"""Frames per second of the preview renderer with output framing (issue #16 item 4), against the crop alone.

For each portrait, a 512 px crop is rendered and then pasted into the whole portrait at 1920x1080 (16:9)
and 1080x1920 (9:16) by `models/render/framing.py`. Measured per portrait: the crop alone (render), the
framing alone on those frames (composite), and both (render + composite), each as frames per second.
Portrait preparation and the Framer's one-off set-up are excluded and reported apart.

Writes bench/results/framing.json and prints the Markdown table for bench/README.md.
Run: .venv/bin/python bench/framing.py [--seconds 4] [--portrait PATH ...] [--sheet out.png]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.evaluate.render import constant_curve  # noqa: E402
from models.evaluate.speech import synthetic_speech  # noqa: E402
from models.render import PreviewRenderer  # noqa: E402
from models.render.framing import Framer  # noqa: E402
from models.vision.face import load_image, prepare_portrait  # noqa: E402

FRAMES = ("1920x1080", "1080x1920")


def measure(name: str, image: np.ndarray, seconds: float, sheet: Path | None) -> dict[str, Any]:
    portrait = prepare_portrait(image, size=512)
    renderer = PreviewRenderer(size=512, fps=25, seed=0)
    speech = synthetic_speech(seconds)
    curve = constant_curve("happy", 0.8, speech.duration)
    list(renderer.render(portrait, synthetic_speech(0.2), curve))  # per-portrait work, cached
    start = time.perf_counter()
    crops = list(renderer.render(portrait, speech, curve))
    render_s = time.perf_counter() - start
    row: dict[str, Any] = {"portrait": name, "source": f"{image.shape[1]}x{image.shape[0]}"}
    row["frames"] = len(crops)
    row["crop_fps"] = round(len(crops) / render_s, 1)
    for frame in FRAMES:
        start = time.perf_counter()
        framer = Framer(portrait, frame)
        setup_ms = (time.perf_counter() - start) * 1000
        middle = None
        start = time.perf_counter()
        for i, crop in enumerate(crops):  # streamed, as into the encoder: frames are not kept
            out = framer(crop)
            middle = out if i == len(crops) // 2 else middle
        composite_s = time.perf_counter() - start
        row[frame] = {
            "setup_ms": round(setup_ms, 1),
            "composite_ms_per_frame": round(composite_s / len(crops) * 1000, 2),
            "composite_fps": round(len(crops) / composite_s, 1),
            "render_composite_fps": round(len(crops) / (render_s + composite_s), 1),
            "ratio_to_crop": round(render_s / (render_s + composite_s), 3),
        }
        if sheet is not None and middle is not None:
            small = cv2.resize(middle, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(sheet.with_name(f"{sheet.stem}_{name}_{frame}{sheet.suffix}")), small[:, :, ::-1])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--portrait", type=Path, action="append", default=None)
    parser.add_argument("--sheet", type=Path, default=None, help="write the middle frame of each as PNGs")
    args = parser.parse_args()
    from skimage import data

    images: dict[str, np.ndarray] = {"astronaut": data.astronaut()}
    shared = ROOT.parent / "shared" / "data" / "portraits"
    for path in args.portrait or [shared / "hallo_7.jpg", shared / "lp_s2.jpg"]:
        if path.is_file():
            images[path.stem] = load_image(path)
    rows = [measure(name, image, args.seconds, args.sheet) for name, image in images.items()]
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "seconds_of_speech": args.seconds,
        "crop_size": 512,
        "rows": rows,
    }
    out = ROOT / "bench" / "results" / "framing.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print("| portrait (source) | crop fps | frame | composite ms/frame | render + composite fps | vs crop |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        for frame in FRAMES:
            f = row[frame]
            print(
                f"| {row['portrait']} ({row['source']}) | {row['crop_fps']} | {frame} | "
                f"{f['composite_ms_per_frame']} | {f['render_composite_fps']} | {f['ratio_to_crop']:.2f} |"
            )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
