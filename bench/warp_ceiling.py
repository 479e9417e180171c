"""The ceiling of geometry-only warping: the facial-emotion judge on an actor's neutral still, warped with
that same actor's own real landmark motion.

The preview renderer animates a portrait by moving its face-mesh landmarks and warping the image after
them (piecewise-affine). The FER judge (`models.vision.judge.FaceEmotionJudge`, per frame through
`models.vision.pseudo_labels.judge_video`) agrees with the intended emotion on about 60 % of the frames
of real MEAD clips (64 % pooled: this script's `real` column), and on far fewer of our renders. This asks
how much of that gap geometry could close at best: no field, no rig, no table in between, just the
actor's measured motion replayed on the actor's own face.

Per speaker (MEAD M030, W009):

1. The neutral clip -> a face mesh per frame (`real_faces.detect_mesh`) -> the resting face
   (`real_faces.neutral_reference`, the median mesh). The neutral STILL is the neutral frame whose mesh,
   similarity-aligned, lies closest to that reference. A square around its face (centred on the mesh,
   twice the mesh's height, slid and clamped into the image) is resized to 512 px: image I0, mesh M0 (px).
   `--still judge` instead takes, of the nearer half of the neutral frames, the one the judge finds most
   neutral: a check that the result does not hinge on a still the judge already reads as an emotion.
2. Every emotion clip (contempt has no judge class and is skipped) -> meshes -> its track against the
   neutral reference exactly as `real_faces.read_mead` builds it (`face_frame_track`: similarity-aligned
   to the neutral, so head motion is removed, in the neutral's face frame, in inter-ocular units) ->
   displacement D_t = track - neutral, (frames, 468, 2) IOD.
3. Per frame: target = M0 + FaceFrame.from_landmarks(M0).to_pixels(D_t); I0 is warped from M0 to the
   target with the preview renderer's warp setup (`models/render/preview.py`, `_prepare` and `_frames`):
   the landmarks move, a ring of points around the head (`FaceRig.head_ring`) and points on the image
   border stay fixed, the fold guard (`PiecewiseAffineWarp.untangle`) may collapse the triangles across
   the lips and lids, and boxes round the lips and eyes are solved at full resolution. None of the
   renderer's painting is applied (no teeth or mouth interior, no sclera, no wrinkles): geometry only.
   The frames are written as H.264 at the clip's frame rate (divided by --step when frames are skipped).
4. Everything is judged as `models.evaluate.judge.judge_mead` judges MEAD: `judge_video` (MediaPipe face
   box, judge, temporal smoothing), agreement = share of the frames with a face whose smoothed label is the
   clip's label. Judged per clip:
   - real: the MEAD clip itself (what `judge_mead` reports);
   - real_crop: the real clip cut with the still's square and resized to 512 px like I0 (head motion
     intact): a control for the crop, the upscaling and the re-encoding, without the warp;
   - warped: the still warped with the clip's motion;
   - still: the neutral still repeated (`--still-frames` frames): what the judge says of the unmoved face,
     scored against each clip's label.

Means: over the 12 non-neutral clips (clip mean), the two neutral clips, and over all 14 clips frame-weighted
(all judged frames pooled, as `judge_mead`/`mead_report` pool them).

Writes the JSON to --out (bench/results/warp_ceiling.json), prints a Markdown table, and with --frames-dir
writes warp_ceiling_sheet.png there: one row per speaker x emotion, columns real and warped at the clip's
middle frame, then real and warped at the frame of largest motion (real frames cut like the still).

Run: .venv/bin/python bench/warp_ceiling.py [--data ../shared/data] [--frames-dir DIR] [--videos-dir DIR]
     [--still mesh|judge] [--step N]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.evaluate.judge import MEAD_MAP  # noqa: E402
from models.evaluate.metrics import similarity_align  # noqa: E402
from models.evaluate.real_faces import detect_mesh, face_frame_track, neutral_reference  # noqa: E402
from models.publish.video import encode_frames  # noqa: E402
from models.render import topology as topo  # noqa: E402
from models.render.preview import _BORDER_POINTS, _EYE_BOXES, _MOUTH_BOX  # noqa: E402
from models.render.rig import N_LANDMARKS, FaceFrame, FaceRig  # noqa: E402
from models.render.tables import load_facs, load_visemes  # noqa: E402
from models.render.warp import PiecewiseAffineWarp  # noqa: E402
from models.vision.judge import LABELS, FaceEmotionJudge  # noqa: E402
from models.vision.pseudo_labels import SMOOTHING_S, judge_video, read_frames  # noqa: E402

SIZE = 512  # the preview renderer's default side
CROP_SCALE = 2.0  # the still's square is this many face-mesh heights
EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")  # judge labels, table order
CONDITIONS = ("real", "real_crop", "warped", "still")
SHEET_TILE = 256


@dataclass
class Clip:
    """One video's frames that show a face, with their meshes."""

    fps: float
    images: list[np.ndarray]  # RGB uint8 frames where the face mesh found a face
    meshes: np.ndarray  # (frames, 468, 3) px
    missed: int  # frames without a face


@dataclass(frozen=True)
class Box:
    """A square crop of the source image: top-left corner and side, in source pixels."""

    x0: float
    y0: float
    side: float

    def cut(self, image: np.ndarray, size: int = SIZE) -> np.ndarray:
        """The square resized to `size` px (an affine warp, so a fractional corner is honoured)."""
        scale = size / self.side
        matrix = np.array([[scale, 0.0, -self.x0 * scale], [0.0, scale, -self.y0 * scale]])
        interp = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
        out = cv2.warpAffine(image, matrix, (size, size), flags=interp, borderMode=cv2.BORDER_REPLICATE)
        return np.ascontiguousarray(out)

    def points(self, xy: np.ndarray, size: int = SIZE) -> np.ndarray:
        return (xy - np.array([self.x0, self.y0])) * (size / self.side)


@dataclass(frozen=True)
class Still:
    image: np.ndarray  # (SIZE, SIZE, 3) uint8
    mesh: np.ndarray  # (468, 2) px in `image`
    box: Box
    frame: int  # index among the neutral clip's frames with a face
    distance_iod: float  # its aligned mesh's mean distance from the neutral reference


def read_clip(path: Path) -> Clip:
    fps, frames = read_frames(path)
    images, found, missed = [], [], 0
    for image in frames:
        mesh = detect_mesh(image)
        if mesh is None:
            missed += 1
            continue
        images.append(image)
        found.append(mesh)
    meshes = np.stack(found) if found else np.zeros((0, N_LANDMARKS, 3))
    return Clip(fps=fps, images=images, meshes=meshes, missed=missed)


def square_box(mesh_xy: np.ndarray, width: int, height: int) -> Box:
    """A square centred on the mesh's bounding box, CROP_SCALE mesh heights wide, inside the image."""
    lo, hi = mesh_xy.min(axis=0), mesh_xy.max(axis=0)
    centre = (lo + hi) / 2
    side = min(CROP_SCALE * float(hi[1] - lo[1]), float(width), float(height))
    x0 = min(max(float(centre[0]) - side / 2, 0.0), width - side)
    y0 = min(max(float(centre[1]) - side / 2, 0.0), height - side)
    return Box(x0, y0, side)


def choose_still(
    clip: Clip, reference: np.ndarray, rule: str, judge: FaceEmotionJudge, videos: Path, name: str
) -> Still:
    """The neutral still, cut to SIZE px. rule "mesh": the neutral frame whose similarity-aligned mesh is
    closest to the resting face. rule "judge": of the half of the neutral frames closest to it, the one the
    judge finds most neutral (each frame cut like a still and judged without smoothing), so that the
    baseline face is one the judge calls neutral."""
    iod = FaceFrame.from_landmarks(reference[:, :2]).iod
    gaps = np.array(
        [
            float(np.linalg.norm(similarity_align(m, reference)[:, :2] - reference[:, :2], axis=1).mean())
            for m in clip.meshes
        ]
    )
    gaps /= iod
    boxes = [
        square_box(m[:, :2], im.shape[1], im.shape[0]) for m, im in zip(clip.meshes, clip.images, strict=True)
    ]
    best = int(np.argmin(gaps))
    if rule == "judge":
        path = videos / f"{name}_neutral_candidates.mp4"
        write_video((b.cut(im) for b, im in zip(boxes, clip.images, strict=True)), path, clip.fps, len(boxes))
        frames = judge_video(path, judge=judge, smoothing_s=0.0)
        neutral_prob = np.nan_to_num(frames.raw[:, LABELS.index("neutral")], nan=-1.0)
        close = gaps <= np.median(gaps)
        best = int(np.argmax(np.where(close, neutral_prob, -1.0)))
    box = boxes[best]
    return Still(
        box.cut(clip.images[best]), box.points(clip.meshes[best, :, :2]), box, best, float(gaps[best])
    )


class StillWarp:
    """The still, warped as the preview renderer warps a portrait: moving landmarks, a fixed ring around
    the head and a fixed image border (`PreviewRenderer._prepare`), the fold guard and full-resolution
    boxes round the lips and eyes (`PreviewRenderer._frames`). The head never moves here."""

    def __init__(self, image: np.ndarray, landmarks: np.ndarray) -> None:
        size = image.shape[0]
        self.image = image
        self.lo, self.hi = 1.0, size - 2.0
        self.landmarks = np.clip(landmarks.astype(np.float64), self.lo, self.hi)
        self.frame = FaceFrame.from_landmarks(self.landmarks)
        rig = FaceRig(self.landmarks, None, load_facs(), load_visemes())
        edge = np.linspace(0, size - 1, _BORDER_POINTS + 1)
        last = size - 1.0
        border = np.array(
            [(x, 0.0) for x in edge]
            + [(x, last) for x in edge]
            + [(0.0, y) for y in edge[1:-1]]
            + [(last, y) for y in edge[1:-1]]
        )
        ring = rig.head_ring(size)
        if len(ring):
            near = np.min(np.linalg.norm(ring[:, None] - self.landmarks[None], axis=2), axis=1)
            ring = ring[near > 0.15 * rig.frame.iod]
        border = border[np.min(np.linalg.norm(border[:, None] - self.landmarks[None], axis=2), axis=1) > 2.0]
        self.fixed = np.vstack([ring.reshape(-1, 2), border])
        self.warp = PiecewiseAffineWarp(np.vstack([self.landmarks, self.fixed]), size)
        self.movable = np.zeros(len(self.landmarks) + len(self.fixed), dtype=bool)
        self.movable[: len(self.landmarks)] = True
        corners = {*topo.MOUTH_CORNERS, topo.LIP_INNER_UPPER[0], topo.LIP_INNER_UPPER[-1]}
        upper = sorted(
            {*topo.LIP_INNER_UPPER, *sum(topo.LIP_UPPER_RINGS, ()), *topo.LIP_OUTER_UPPER} - corners
        )
        lower = sorted(
            {*topo.LIP_INNER_LOWER, *sum(topo.LIP_LOWER_RINGS, ()), *topo.LIP_OUTER_LOWER} - corners
        )
        tri = self.warp.triangles
        exempt = np.isin(tri, upper).any(axis=1) & np.isin(tri, lower).any(axis=1)
        for lid_up, lid_lo in ((topo.EYE_R_UPPER, topo.EYE_R_LOWER), (topo.EYE_L_UPPER, topo.EYE_L_LOWER)):
            exempt |= np.isin(tri, lid_up[1:-1]).any(axis=1) & np.isin(tri, lid_lo[1:-1]).any(axis=1)
        self.exempt = np.asarray(exempt)

    def __call__(self, moves_iod: np.ndarray) -> np.ndarray:
        """The still with each landmark moved by `moves_iod` (468, 2) in its face frame's IOD."""
        return self.remap(self.image, self.maps(moves_iod))

    def maps(self, moves_iod: np.ndarray) -> np.ndarray:
        """The sampling map (SIZE, SIZE, 2) of that move: for any image of the still's shape."""
        points = np.clip(self.landmarks + self.frame.to_pixels(moves_iod), self.lo, self.hi)
        target = self.warp.untangle(np.vstack([points, self.fixed]), self.movable, self.exempt)
        moved = target[:N_LANDMARKS]
        boxes = [moved[_MOUTH_BOX]] + [moved[box] for box in _EYE_BOXES]
        return self.warp.maps(target, boxes)

    @staticmethod
    def remap(image: np.ndarray, maps: np.ndarray) -> np.ndarray:
        # map2=None is what remap takes with an (H, W, 2) map1; opencv's stubs leave None out
        return cv2.remap(  # type: ignore[call-overload]
            image, maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )


def write_video(frames: Iterable[np.ndarray], path: Path, fps: float, total: int) -> int:
    return encode_frames(frames, path, max(1, round(fps)), SIZE, total)


# how frames are judged: as `judge_mead` judges MEAD (MediaPipe face box, smoothed), or as `emoflow
# evaluate render` judges renders (Haar box, every frame on its own)
JUDGING: dict[str, dict[str, Any]] = {
    "clips": {"crop": "mediapipe", "smoothing_s": SMOOTHING_S},
    "render": {"crop": "haar", "smoothing_s": 0.0},
}


def judged(path: Path, label: str, judge: FaceEmotionJudge, judging: str = "clips") -> dict[str, Any]:
    """The judge's frame labels of a video against `label`, judged the `judging` way."""
    frames = judge_video(path, judge=judge, **JUDGING[judging])
    labels = [x for x in frames.frame_labels() if x is not None]
    counts = Counter(labels)
    return {
        "frames": len(labels),
        "frames_without_face": frames.frames_without_face,
        "hits": sum(x == label for x in labels),
        "agreement": float(np.mean([x == label for x in labels])) if labels else float("nan"),
        "majority": counts.most_common(1)[0][0] if labels else None,
        "counts": dict(counts.most_common()),
    }


def rescore(base: dict[str, Any], label: str) -> dict[str, Any]:
    """The same judged frames (the still's) scored against another label."""
    hits = int(base["counts"].get(label, 0))
    return {**base, "hits": hits, "agreement": hits / base["frames"] if base["frames"] else float("nan")}


def tile(image: np.ndarray, text: str) -> np.ndarray:
    out = cv2.resize(image, (SHEET_TILE, SHEET_TILE), interpolation=cv2.INTER_AREA)
    for colour, thick in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, thick, cv2.LINE_AA)
    return out


def run_speaker(
    data: Path,
    speaker: str,
    rows: dict[str, str],
    judge: FaceEmotionJudge,
    videos: Path,
    args: argparse.Namespace,
    sheet: list[np.ndarray],
) -> dict[str, Any]:
    """All clips of one speaker; `rows` maps judge label -> clip path."""
    started = time.perf_counter()
    neutral = read_clip(data / rows["neutral"])
    if not len(neutral.meshes):
        raise SystemExit(f"{speaker}: no face in the neutral clip")
    reference = neutral_reference(neutral.meshes)
    still = choose_still(neutral, reference, args.still, judge, videos, speaker)
    warp = StillWarp(still.image, still.mesh)
    still_path = videos / f"{speaker}_still.mp4"
    write_video((still.image for _ in range(args.still_frames)), still_path, neutral.fps, args.still_frames)
    still_judged = judged(still_path, "neutral", judge, args.judging)
    print(
        f"{speaker}: still = neutral frame {still.frame} ({still.distance_iod:.3f} IOD from the reference), "
        f"crop {still.box.side:.0f} px; judge says {still_judged['counts']}",
        flush=True,
    )
    clips: dict[str, Any] = {}
    for emotion in EMOTIONS:
        if emotion not in rows:
            continue
        path = data / rows[emotion]
        clip = neutral if emotion == "neutral" else read_clip(path)
        track, rest = face_frame_track(clip.meshes, reference)
        moves = (track - rest)[:: args.step]
        images = clip.images[:: args.step]
        fps = clip.fps / args.step
        warped_path = videos / f"{speaker}_{emotion}_warped.mp4"
        crop_path = videos / f"{speaker}_{emotion}_real_crop.mp4"
        warped_frames = [warp(m) for m in moves]
        write_video(warped_frames, warped_path, fps, len(warped_frames))
        write_video((still.box.cut(im) for im in images), crop_path, fps, len(images))
        result = {
            "path": rows[emotion],
            "fps": clip.fps,
            "mesh_frames": len(clip.meshes),
            "mesh_missed": clip.missed,
            "warped_fps": fps,
            "mean_motion_iod": float(np.linalg.norm(moves, axis=2).mean()),
            "real": judged(path, emotion, judge, args.judging),
            "real_crop": judged(crop_path, emotion, judge, args.judging),
            "warped": judged(warped_path, emotion, judge, args.judging),
            "still": rescore(still_judged, emotion),
        }
        clips[emotion] = result
        print(
            f"  {speaker} {emotion:8s} real {result['real']['agreement']:.0%} ({result['real']['majority']})"
            f"  real_crop {result['real_crop']['agreement']:.0%} ({result['real_crop']['majority']})"
            f"  warped {result['warped']['agreement']:.0%} ({result['warped']['majority']})"
            f"  still {result['still']['agreement']:.0%}",
            flush=True,
        )
        if args.frames_dir is not None:
            middle = len(images) // 2
            peak = int(np.argmax(np.linalg.norm(moves, axis=2).mean(axis=1)))
            sheet.append(
                np.hstack(
                    [
                        tile(still.box.cut(images[middle]), f"{speaker} {emotion} real t={middle}"),
                        tile(warped_frames[middle], f"warped t={middle}"),
                        tile(still.box.cut(images[peak]), f"real peak t={peak}"),
                        tile(warped_frames[peak], f"warped peak t={peak}"),
                    ]
                )
            )
    return {
        "still": {
            "neutral_frame": still.frame,
            "distance_iod": still.distance_iod,
            "crop": {"x0": still.box.x0, "y0": still.box.y0, "side": still.box.side},
            "judged": still_judged,
        },
        "clips": clips,
        "seconds": time.perf_counter() - started,
    }


def summarise(speakers: dict[str, Any]) -> dict[str, Any]:
    clips = [c for s in speakers.values() for c in s["clips"].values()]
    emotional = [c for s in speakers.values() for e, c in s["clips"].items() if e != "neutral"]
    neutral = [c for s in speakers.values() for e, c in s["clips"].items() if e == "neutral"]
    out: dict[str, Any] = {"clips": len(clips), "emotional_clips": len(emotional)}
    for cond in CONDITIONS:
        hits = sum(c[cond]["hits"] for c in clips)
        frames = sum(c[cond]["frames"] for c in clips)
        out[cond] = {
            "mean_emotional": float(np.mean([c[cond]["agreement"] for c in emotional])),
            "mean_neutral": float(np.mean([c[cond]["agreement"] for c in neutral])),
            "frame_weighted": hits / frames if frames else float("nan"),
            "frame_weighted_emotional": sum(c[cond]["hits"] for c in emotional)
            / max(1, sum(c[cond]["frames"] for c in emotional)),
            "frames": frames,
        }
    return out


def markdown(speakers: dict[str, Any], summary: dict[str, Any]) -> str:
    head = "| speaker | emotion | " + " | ".join(CONDITIONS) + " | motion IOD |"
    lines = [head, "|" + "---|" * (len(CONDITIONS) + 3)]
    for speaker, result in speakers.items():
        for emotion, clip in result["clips"].items():
            cells = [f"{clip[c]['agreement']:.0%} ({clip[c]['majority']})" for c in CONDITIONS]
            lines.append(
                f"| {speaker} | {emotion} | " + " | ".join(cells) + f" | {clip['mean_motion_iod']:.3f} |"
            )
    for key, name in (
        ("mean_emotional", "mean of the 12 non-neutral clips"),
        ("mean_neutral", "mean of the 2 neutral clips"),
        ("frame_weighted_emotional", "non-neutral frames pooled"),
        ("frame_weighted", "all 14 clips, frames pooled"),
    ):
        cells = [f"{summary[c][key]:.0%}" for c in CONDITIONS]
        lines.append(f"| | **{name}** | " + " | ".join(cells) + " | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "warp_ceiling.json")
    parser.add_argument("--frames-dir", type=Path, default=None, help="write warp_ceiling_sheet.png here")
    parser.add_argument("--videos-dir", type=Path, default=None, help="keep the judged mp4s here")
    parser.add_argument("--step", type=int, default=1, help="warp every n-th frame (fps divided by n)")
    parser.add_argument("--still-frames", type=int, default=50, help="length of the still's video")
    parser.add_argument(
        "--still",
        choices=("mesh", "judge"),
        default="mesh",
        help="mesh: the neutral frame nearest the resting face; judge: the most neutral of the nearer half",
    )
    parser.add_argument("--speakers", nargs="*", default=None, help="default: every speaker in labels.csv")
    parser.add_argument(
        "--judging",
        choices=sorted(JUDGING),
        default="clips",
        help="clips: as judge_mead (MediaPipe box, smoothed); render: as evaluate render (Haar box, raw)",
    )
    args = parser.parse_args()
    if args.step < 1:
        parser.error("--step must be at least 1")
    started = time.perf_counter()
    mead = args.data / "mead"
    with (mead / "labels.csv").open(encoding="utf-8", newline="") as handle:
        table = [r for r in csv.DictReader(handle) if MEAD_MAP.get(r["emotion"])]
    by_speaker: dict[str, dict[str, str]] = {}
    for row in table:
        by_speaker.setdefault(row["speaker"], {})[MEAD_MAP[row["emotion"]]] = row["path"]
    names = args.speakers or sorted(by_speaker)
    judge = FaceEmotionJudge.shared()
    sheet: list[np.ndarray] = []
    speakers: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="warp_ceiling_") as tmp:
        videos = args.videos_dir or Path(tmp)
        videos.mkdir(parents=True, exist_ok=True)
        for speaker in names:
            speakers[speaker] = run_speaker(mead, speaker, by_speaker[speaker], judge, videos, args, sheet)
    summary = summarise(speakers)
    report = {
        "what": "FER judge agreement on real MEAD clips vs the actor's neutral still warped with the actor's "
        "own landmark motion (geometry only)",
        "size": SIZE,
        "step": args.step,
        "still_rule": args.still,
        "judging": args.judging,
        "still_frames": args.still_frames,
        "speakers": speakers,
        "summary": summary,
        "seconds": time.perf_counter() - started,
    }
    if args.frames_dir is not None and sheet:
        args.frames_dir.mkdir(parents=True, exist_ok=True)
        sheet_path = args.frames_dir / "warp_ceiling_sheet.png"
        cv2.imwrite(str(sheet_path), cv2.cvtColor(np.vstack(sheet), cv2.COLOR_RGB2BGR))
        report["sheet"] = str(sheet_path)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(markdown(speakers, summary))
    print(f"\nwrote {args.out} in {report['seconds']:.0f} s")


if __name__ == "__main__":
    main()
