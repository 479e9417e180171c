"""Texture on top of the warp: do real actors' shading changes (expression ratio images) move the judge?

The sequel to `bench/warp_ceiling.py` (whose warp, stills and judging it reuses). There, an actor's neutral
still warped with the actor's own landmark motion reached 24 % EF-agreement against 60 % for the real
clips, and the contact sheet showed what the warp lacks: furrows, folds and wrinkles. Here each warped
frame also gets a shading change, as a ratio of luminance (Liu, Shan and Zhang's expression ratio image):

- own shading: the same actor's frame t, warped into the still's geometry, over the still, frame by frame
  (an upper bound: the texture that really went with that motion);
- other actor's median shading: the per-pixel median of the *other* actor's ratios for the same emotion,
  carried onto this still through the shared mesh topology (what a table of real actors' shading, shipped
  with the renderer, could give an unseen face).

A ratio is taken on luminance (blurred 1.2 px), its very smooth part (a 25 px Gaussian: lighting) removed,
clipped to +-0.5 in log, and kept to the skin: the face oval less the eyes and the lips, feathered.

Run: .venv/bin/python bench/warp_shading.py [--data ../shared/data] [--sheet PATH]
Writes bench/results/warp_shading.json. One run; two actors, one clip per emotion.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from warp_ceiling import (  # noqa: E402
    EMOTIONS,
    Clip,
    Still,
    StillWarp,
    choose_still,
    judged,
    read_clip,
    tile,
    write_video,
)

from models.evaluate.judge import MEAD_MAP  # noqa: E402
from models.evaluate.real_faces import face_frame_track, neutral_reference  # noqa: E402
from models.render import topology as topo  # noqa: E402
from models.render.warp import PiecewiseAffineWarp  # noqa: E402
from models.vision.judge import FaceEmotionJudge  # noqa: E402

SIZE = 512
VARIANTS = ("geometry", "own_shading", "other_shading")
EDGE = np.linspace(0, SIZE - 1, 9)
BORDER = np.array(
    [(x, 0.0) for x in EDGE]
    + [(x, SIZE - 1.0) for x in EDGE]
    + [(0.0, y) for y in EDGE[1:-1]]
    + [(SIZE - 1.0, y) for y in EDGE[1:-1]]
)


def pa_warp(image: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Move `image`'s content from `source` landmarks to `target` landmarks (border fixed)."""
    src = np.vstack([np.clip(source, 1, SIZE - 2), BORDER])
    dst = np.vstack([np.clip(target, 1, SIZE - 2), BORDER])
    warp = PiecewiseAffineWarp(src, SIZE)
    return cv2.remap(image, warp.maps(dst), None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def face_mask(mesh: np.ndarray) -> np.ndarray:
    """Skin where shading transfers: the face oval, without eyes, brows' hair kept, mouth opening out."""
    mask = np.zeros((SIZE, SIZE), np.float32)
    hull = cv2.convexHull(mesh.astype(np.float32)).astype(np.int32)
    cv2.fillConvexPoly(mask, hull, 1.0)
    for ring in (topo.EYE_R_UPPER + topo.EYE_R_LOWER, topo.EYE_L_UPPER + topo.EYE_L_LOWER):
        pts = cv2.convexHull(mesh[list(ring)].astype(np.float32)).astype(np.int32)
        cv2.fillConvexPoly(mask, pts, 0.0)
    lips = cv2.convexHull(mesh[list(topo.LIP_OUTER_UPPER + topo.LIP_OUTER_LOWER)].astype(np.float32))
    cv2.fillConvexPoly(mask, lips.astype(np.int32), 0.0)
    mask = cv2.erode(mask, np.ones((9, 9), np.uint8))
    return cv2.GaussianBlur(mask, (0, 0), 6)


def luminance(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) + 8.0


def ratio_frames(clip: Clip, still: Still) -> list[np.ndarray]:
    """Per frame: the frame's shading against the still's, in the still's geometry (log ratio)."""
    base = cv2.GaussianBlur(luminance(still.image), (0, 0), 1.2)
    mask = face_mask(still.mesh)
    out = []
    for image, mesh in zip(clip.images, clip.meshes, strict=True):
        crop = still.box.cut(image)
        pts = still.box.points(mesh[:, :2])
        aligned = pa_warp(crop, pts, still.mesh)
        lum = cv2.GaussianBlur(luminance(aligned), (0, 0), 1.2)
        log_ratio = np.log(lum / base)
        # keep the local pattern (wrinkles, folds), not the global lighting: remove a very smooth part
        log_ratio -= cv2.GaussianBlur(log_ratio, (0, 0), 25)
        out.append(np.clip(log_ratio, -0.5, 0.5) * mask)
    return out


def apply(image: np.ndarray, log_ratio: np.ndarray) -> np.ndarray:
    return np.clip(image.astype(np.float32) * np.exp(log_ratio)[..., None], 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "warp_shading.json")
    parser.add_argument("--sheet", type=Path, default=None, help="write the contact sheet PNG here")
    parser.add_argument("--judging", choices=("clips", "render"), default="clips", help="as warp_ceiling.py")
    args = parser.parse_args()
    started = time.perf_counter()
    data = args.data / "mead"
    rows: dict[str, dict[str, str]] = {}
    with (data / "labels.csv").open(encoding="utf-8", newline="") as handle:
        for r in csv.DictReader(handle):
            if MEAD_MAP.get(r["emotion"]):
                rows.setdefault(r["speaker"], {})[MEAD_MAP[r["emotion"]]] = r["path"]
    judge = FaceEmotionJudge.shared()
    tmp = Path(tempfile.mkdtemp(prefix="eri_"))
    speakers = sorted(rows)
    state: dict[str, tuple[Still, np.ndarray, dict[str, Clip], dict[str, list[np.ndarray]]]] = {}
    for s in speakers:
        neutral = read_clip(data / rows[s]["neutral"])
        reference = neutral_reference(neutral.meshes)
        still = choose_still(neutral, reference, "mesh", judge, tmp, s)
        clips = {e: (neutral if e == "neutral" else read_clip(data / rows[s][e])) for e in EMOTIONS}
        ratios = {e: ratio_frames(c, still) for e, c in clips.items()}
        state[s] = (still, reference, clips, ratios)
        print(s, "read", flush=True)
    sheet: list[np.ndarray] = []
    results: dict[str, dict[str, float]] = {}
    for s in speakers:
        still, reference, clips, ratios = state[s]
        other = next(o for o in speakers if o != s)
        o_still, _, _, o_ratios = state[other]
        warp = StillWarp(still.image, still.mesh)
        for e in EMOTIONS:
            clip = clips[e]
            track, rest = face_frame_track(clip.meshes, reference)
            moves = track - rest
            # the other actor's median shading: what a table of real shading could give an unseen face
            median = np.median(np.stack(o_ratios[e]), axis=0).astype(np.float32)
            static_other = pa_warp(median, o_still.mesh, still.mesh)
            own_frames: list[np.ndarray] = []
            cross_frames: list[np.ndarray] = []
            geo_frames: list[np.ndarray] = []
            for t, m in enumerate(moves):
                maps = warp.maps(m)  # one warp per frame, for the three images
                geo = warp.remap(still.image, maps)
                own = warp.remap(apply(still.image, ratios[e][t]), maps)
                cross = warp.remap(apply(still.image, static_other), maps)
                geo_frames.append(geo)
                own_frames.append(own)
                cross_frames.append(cross)
            res: dict[str, float] = {}
            for name, frames in zip(VARIANTS, (geo_frames, own_frames, cross_frames), strict=True):
                path = tmp / f"{s}_{e}_{name}.mp4"
                write_video(frames, path, clip.fps, len(frames))
                res[name] = judged(path, e, judge, args.judging)["agreement"]
            results[f"{s} {e}"] = res
            print(s, e, {k: f"{v:.0%}" for k, v in res.items()}, flush=True)
            mid = int(np.argmax(np.linalg.norm(moves, axis=2).mean(axis=1)))
            tiles = [
                tile(still.box.cut(clip.images[mid]), f"{s} {e} real"),
                tile(geo_frames[mid], "geometry"),
                tile(own_frames[mid], "own shading"),
                tile(cross_frames[mid], f"{other}'s median shading"),
            ]
            sheet.append(np.hstack(tiles))
    summary: dict[str, Any] = {}
    for name in VARIANTS:
        emotional = [r[name] for key, r in results.items() if not key.endswith("neutral")]
        neutral_clips = [r[name] for key, r in results.items() if key.endswith("neutral")]
        summary[name] = {
            "mean_emotional": float(np.mean(emotional)),
            "mean_neutral": float(np.mean(neutral_clips)),
        }
        print(name, f"emotional mean {np.mean(emotional):.1%}", f"neutral mean {np.mean(neutral_clips):.1%}")
    report = {
        "judging": args.judging,
        "clips": results,
        "summary": summary,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.sheet is not None:
        cv2.imwrite(str(args.sheet), cv2.cvtColor(np.vstack(sheet), cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    main()
