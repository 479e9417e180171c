"""Evaluate the preview renderer on real portraits: fixed (portrait, emotion, intensity) clips are
rendered with synthetic speech, every frame is scored by the FER judge and re-measured by the face mesh.

    portraits dir -> render clips -> judge + landmarks per frame -> report (JSON) + contact sheets (PNG)

Metrics (per clip, then per emotion and overall):
  ef_agreement  share of frames whose judged label equals the curve's label (TIE-TFG eq. 10)
  lip_sync      Pearson correlation between the re-detected mouth opening and the speech RMS per frame
  lip_follow    the same against the inner-lip gap the warp was given (the renderer's own speech track):
                whether the picture shows the mouth it was asked to, whatever the loudness. With real
                speech lip_sync is capped well below 1 (nasals and fricatives are loud with the lips
                nearly closed: 0.65 for the rig's own track on Piper speech), lip_follow is not
  drift_iod     stable-landmark drift from the portrait after removing head motion (inter-ocular units)
  bg_ssim       SSIM of the frame against the portrait outside the head
  range_ratio   per face region, the clip's p95 landmark move from the portrait's own rendered neutral over
                real actors' p95 for the same emotion (models.evaluate.naturalness; <= 1 is human range)
  lip frames    frames whose lips the renderer bends into a wave or folds through each other
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kernel.errors import EmoflowError, InputError
from models.evaluate import metrics, naturalness
from models.evaluate.real_faces import detect_mesh, face_frame_track, neutral_reference
from models.evaluate.speech import frame_energy, synthetic_speech
from models.render import PreviewRenderer
from models.render.rig import FaceFrame
from models.types import CurvePoint, EmotionCurve, Speech
from models.vision.face import Portrait, detect_landmarks, load_image, prepare_portrait
from models.vision.judge import LABELS as JUDGE_LABELS
from models.vision.judge import FaceEmotionJudge

CURVE_LABELS = ["neutral", "happy", "sad", "angry", "fear", "surprise", "disgust"]
EMOTIONS = ("neutral", "happy", "sad", "angry", "fear", "surprise", "disgust")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
_THUMB = 176  # contact-sheet cell size (px)


@dataclass
class RenderEvalConfig:
    emotions: Sequence[str] = EMOTIONS
    intensity: float = 1.0
    seconds: float = 3.0
    size: int = 512
    fps: int = 25
    seed: int = 0
    ssim_every: int = 5  # background SSIM on every n-th frame (it is the slowest metric)
    expressions: str = "real"  # the renderer's expression source: real actors' motion or the FACS rows


@dataclass
class ClipResult:
    portrait: str
    emotion: str
    intensity: float
    frames: int
    ef_agreement: float
    judged: dict[str, int]  # label -> frames
    mean_probs: dict[str, float]
    lip_sync: float
    lip_follow: float
    drift_iod: float
    bg_ssim: float
    face_found: float  # share of frames where the judge's face detector found the face
    mesh_found: float  # share of frames where the face mesh found the face
    range_ratio: dict[str, float] = field(default_factory=dict)  # region -> clip p95 / real p95
    range_ratio_max: float = float("nan")
    # the same ratio on the geometry the warp was given (head held still), before the face mesh reads it
    range_ratio_given: dict[str, float] = field(default_factory=dict)
    range_ratio_given_max: float = float("nan")
    wavy_lip_frames: int = 0
    crossed_lip_frames: int = 0


@dataclass
class PortraitStatus:
    name: str
    status: str  # "ok" or "skipped"
    reason: str = ""
    judged_as: str = ""  # the judge's label on the unrendered portrait
    detector_noise_iod: float = float("nan")  # drift of a re-detection of the portrait itself


@dataclass
class RenderEvalReport:
    renderer: dict[str, str]
    config: dict[str, Any]
    portraits: list[PortraitStatus]
    clips: list[ClipResult]
    summary: dict[str, Any] = field(default_factory=dict)
    contact_sheets: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return finite(asdict(self))


def constant_curve(label: str, intensity: float, duration: float) -> EmotionCurve:
    dist = {name: float(name == label) for name in CURVE_LABELS}
    return EmotionCurve(CURVE_LABELS, [CurvePoint(0, "clip", 0.0, duration, label, intensity, dist, {}, {})])


def portrait_files(directory: Path) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"portraits directory not found: {directory} (pass a folder of JPEG/PNG images)")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"no images (.jpg, .png, .webp) in {directory}")
    return files


def evaluate_clip(
    renderer: PreviewRenderer,
    judge: FaceEmotionJudge,
    portrait: Portrait,
    speech: Speech,
    emotion: str,
    intensity: float,
    name: str,
    ssim_every: int = 5,
) -> tuple[ClipResult, list[np.ndarray], float, np.ndarray, np.ndarray]:
    """Render one clip and score it; returns the result, the frames, the render-only seconds, the
    re-detected meshes (frames with a face, 468, 3) and the landmarks the warp was given with the head
    held still (frames, 468, 2) px."""
    curve = constant_curve(emotion, intensity, speech.duration)
    start = time.perf_counter()
    frames = list(renderer.render(portrait, speech, curve))
    render_s = time.perf_counter() - start
    n = len(frames)
    reference = portrait.image
    if reference.shape[0] != renderer.size:
        reference = cv2.resize(reference, (renderer.size, renderer.size), interpolation=cv2.INTER_AREA)
    rest = np.asarray(portrait.landmarks, dtype=np.float64) * (renderer.size / portrait.image.shape[0])

    # 1. Judge: Haar box per frame, as the judge was meant to be used; where it misses, the portrait's box.
    fallback = judge.face_box(reference)
    boxes = [judge.face_box(f) for f in frames]
    probs = judge.classify_crops(
        np.stack([judge.crop(f, b or fallback) for f, b in zip(frames, boxes, strict=True)])
    )
    judged = [JUDGE_LABELS[i] for i in probs.argmax(axis=1)]
    intended = curve.per_frame(renderer.fps, n)
    intended_labels = [intended.labels[i] for i in intended.probs.argmax(axis=1)]

    # 2. Landmarks again on every frame: mouth opening (lip sync), identity drift, and the face-frame
    #    landmarks for the naturalness measure; the lips are checked on the warp's own targets (the face
    #    mesh smooths a wave away), against the portrait at rest.
    opening = np.full(n, np.nan)
    drift = []
    meshes = []
    for i, frame in enumerate(frames):
        mesh = detect_mesh(frame)
        if mesh is None:
            continue
        points = mesh[:, :2]
        opening[i] = metrics.mouth_opening(points)
        drift.append(metrics.landmark_drift(points, rest))
        meshes.append(mesh)
    face = FaceFrame.from_landmarks(rest)  # the lip check's thresholds are in IOD
    targets = renderer.landmark_track(portrait, speech, curve)
    lips = naturalness.lip_check(face.normalise(targets), face.normalise(rest))
    asked = np.array([metrics.mouth_opening(t) for t in targets])
    energy = frame_energy(speech, renderer.fps, n)

    # 3. Background.
    mask = metrics.background_mask(rest, renderer.size)
    ssim = [metrics.background_ssim(frames[i], reference, mask) for i in range(0, n, max(1, ssim_every))]

    result = ClipResult(
        portrait=name,
        emotion=emotion,
        intensity=intensity,
        frames=n,
        ef_agreement=metrics.ef_agreement(judged, intended_labels),
        judged=dict(Counter(judged)),
        mean_probs={label: float(p) for label, p in zip(JUDGE_LABELS, probs.mean(axis=0), strict=True)},
        lip_sync=metrics.correlation(opening, energy),
        lip_follow=metrics.correlation(opening, asked),
        drift_iod=float(np.mean(drift)) if drift else float("nan"),
        bg_ssim=float(np.nanmean(ssim)) if ssim else float("nan"),
        face_found=float(np.mean([b is not None for b in boxes])) if boxes else 0.0,
        mesh_found=float(np.isfinite(opening).mean()) if n else 0.0,
        wavy_lip_frames=lips.wavy_frames,
        crossed_lip_frames=lips.crossed_frames,
    )
    given = renderer.landmark_track(portrait, speech, curve, still_head=True)
    meshes_found = np.stack(meshes) if meshes else np.zeros((0, 468, 3))
    return result, frames, render_s, meshes_found, given


def score_range(
    clip: ClipResult,
    meshes: np.ndarray,
    neutral: np.ndarray,
    given: np.ndarray | None = None,
    neutral_given: np.ndarray | None = None,
) -> None:
    """Fill the clip's ratios to the real actors' p95: as the face mesh re-detects the frames (against the
    portrait's rendered neutral mesh), and, when given, on the warp's own landmarks with the head still
    (against the median of the neutral clip's): what the renderer asked for, before the mesh's gain and
    its coupling of regions (a talking mouth moves the re-detected brows)."""
    if len(meshes):
        track, rest = face_frame_track(meshes, neutral)
        clip.range_ratio, clip.range_ratio_max = _ratios(track, rest, clip.emotion)
    if given is not None and neutral_given is not None and len(given):
        frame = FaceFrame.from_landmarks(neutral_given)
        found = _ratios(frame.normalise(given), frame.normalise(neutral_given), clip.emotion)
        clip.range_ratio_given, clip.range_ratio_given_max = found


def _ratios(track: np.ndarray, rest: np.ndarray, emotion: str) -> tuple[dict[str, float], float]:
    """Per region, the p95 move of `track` from `rest` over the actors' p95; and the largest of them."""
    ratios = naturalness.range_ratio(naturalness.region_displacement(track, rest), emotion)
    return ratios, max(ratios.values(), default=float("nan"))


def evaluate_render(
    portraits_dir: Path,
    out_dir: Path | None = None,
    config: RenderEvalConfig | None = None,
    log: Callable[[str], None] | None = None,
) -> RenderEvalReport:
    """Render and score every (portrait, emotion) clip; write report.json and contact sheets to out_dir."""
    # 1. Check inputs.
    config = config or RenderEvalConfig()
    unknown = [e for e in config.emotions if e not in CURVE_LABELS]
    if unknown:
        raise InputError(f"unknown emotions {unknown}: choose from {', '.join(CURVE_LABELS)}")
    if not 0.0 <= config.intensity <= 1.0:
        raise InputError(f"intensity must be between 0 and 1, got {config.intensity}")
    files = portrait_files(portraits_dir)
    say = log or (lambda _msg: None)

    # 2. Shared components: one renderer, one judge, one speech track for every clip.
    renderer = PreviewRenderer(
        size=config.size, fps=config.fps, seed=config.seed, expressions=config.expressions
    )
    judge = FaceEmotionJudge.shared()
    speech = synthetic_speech(config.seconds, seed=config.seed)

    # 3. Clips.
    statuses: list[PortraitStatus] = []
    clips: list[ClipResult] = []
    stills: dict[str, dict[str, tuple[np.ndarray, str, bool]]] = {}
    originals: dict[str, np.ndarray] = {}
    render_s, rendered = 0.0, 0
    for path in files:
        name = path.stem
        try:
            portrait = prepare_portrait(load_image(path), size=config.size)
        except EmoflowError as exc:  # no human face (the dog, the cat), unreadable file: report, go on
            statuses.append(PortraitStatus(name, "skipped", str(exc).splitlines()[0]))
            say(f"{name}: skipped ({exc})")
            continue
        status = PortraitStatus(name, "ok")
        status.judged_as = JUDGE_LABELS[int(judge.classify(portrait.image)[0].argmax())]
        again = detect_landmarks(portrait.image)
        if again is not None:
            status.detector_noise_iod = metrics.landmark_drift(again, portrait.landmarks)
        statuses.append(status)
        originals[name] = portrait.image
        stills[name] = {}
        # neutral first: its re-detected landmarks are this face's resting reference for the range ratios
        order = ["neutral", *[e for e in config.emotions if e != "neutral"]]
        neutral: np.ndarray | None = None
        neutral_given: np.ndarray | None = None
        for emotion in order:
            result, frames, seconds, meshes, given = evaluate_clip(
                renderer, judge, portrait, speech, emotion, config.intensity, name, config.ssim_every
            )
            if emotion == "neutral" and len(meshes):
                neutral = neutral_reference(meshes)
                neutral_given = np.median(given, axis=0)
            if neutral is not None:  # no reference when the mesh lost the neutral face: no ratios
                score_range(result, meshes, neutral, given, neutral_given)
            if emotion not in config.emotions:
                continue
            clips.append(result)
            render_s += seconds
            rendered += len(frames)
            still = _still_index(speech, renderer.fps, len(frames))
            label = JUDGE_LABELS[int(judge.classify(frames[still])[0].argmax())]
            stills[name][emotion] = (frames[still], label, label == emotion)
            say(
                f"{name} {emotion}: EF {result.ef_agreement:.0%} judged {result.judged} "
                f"lip {result.lip_sync:.2f} / {result.lip_follow:.2f} drift {result.drift_iod:.3f} "
                f"bg {result.bg_ssim:.3f}"
            )

    # 4. Summary and files.
    report = RenderEvalReport(
        renderer={"name": renderer.name, "version": renderer.version},
        config={**asdict(config), "emotions": list(config.emotions), "judge": "fer2013-mini-xception"},
        portraits=statuses,
        clips=clips,
    )
    report.summary = summarise(clips, statuses, rendered / render_s if render_s > 0 else float("nan"))
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if stills:
            sheet = out_dir / f"contact_sheet_i{round(config.intensity * 100):03d}.png"
            cv2.imwrite(
                str(sheet),
                cv2.cvtColor(contact_sheet(originals, stills, list(config.emotions)), cv2.COLOR_RGB2BGR),
            )
            report.contact_sheets.append(str(sheet))
        (out_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2))
    return report


def summarise(clips: list[ClipResult], statuses: list[PortraitStatus], render_fps: float) -> dict[str, Any]:
    def mean(values: list[float]) -> float:
        finite = [v for v in values if np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")

    emotions = list(dict.fromkeys(c.emotion for c in clips))
    per_emotion = {e: mean([c.ef_agreement for c in clips if c.emotion == e]) for e in emotions}
    expressive = [e for e in emotions if e != "neutral"]
    drifts = [c.drift_iod for c in clips if np.isfinite(c.drift_iod)]
    return {
        "ef_agreement": per_emotion,
        "ef_agreement_mean": mean(list(per_emotion.values())),
        "ef_agreement_mean_non_neutral": mean([per_emotion[e] for e in expressive]),
        "lip_sync": mean([c.lip_sync for c in clips]),
        "lip_sync_min": float(np.nanmin([c.lip_sync for c in clips])) if clips else float("nan"),
        "lip_follow": mean([c.lip_follow for c in clips]),
        "lip_follow_min": float(np.nanmin([c.lip_follow for c in clips])) if clips else float("nan"),
        "drift_iod_mean": mean(drifts),
        "drift_iod_max": float(max(drifts)) if drifts else float("nan"),
        "detector_noise_iod": mean([s.detector_noise_iod for s in statuses if s.status == "ok"]),
        "bg_ssim_mean": mean([c.bg_ssim for c in clips]),
        "bg_ssim_min": float(np.nanmin([c.bg_ssim for c in clips])) if clips else float("nan"),
        "range_ratio_max": {
            e: float(np.nanmax([c.range_ratio_max for c in clips if c.emotion == e] or [np.nan]))
            for e in emotions
        },
        "range_ratio_max_overall": float(np.nanmax([c.range_ratio_max for c in clips] or [np.nan])),
        "clips_within_range": sum(c.range_ratio_max <= 1.0 for c in clips),
        "range_ratio_given_max_overall": float(
            np.nanmax([c.range_ratio_given_max for c in clips] or [np.nan])
        ),
        "clips_within_range_given": sum(c.range_ratio_given_max <= 1.0 for c in clips),
        "wavy_lip_frames": sum(c.wavy_lip_frames for c in clips),
        "crossed_lip_frames": sum(c.crossed_lip_frames for c in clips),
        "face_found": mean([c.face_found for c in clips]),
        "mesh_found": mean([c.mesh_found for c in clips]),
        "render_fps": render_fps,
        "portraits_ok": sum(s.status == "ok" for s in statuses),
        "portraits_skipped": [s.name for s in statuses if s.status == "skipped"],
        "portrait_judged_as": {s.name: s.judged_as for s in statuses if s.status == "ok"},
    }


def _still_index(speech: Speech, fps: int, n_frames: int) -> int:
    """A frame in a pause between words past the middle (mouth at rest), so the sheet shows expression."""
    words = speech.timings.words
    times = np.arange(n_frames) / fps
    for a, b in itertools.pairwise(words):
        if a.end >= speech.duration / 2 and b.start - a.end > 0.1:
            return int(np.clip(np.searchsorted(times, (a.end + b.start) / 2), 0, n_frames - 1))
    return n_frames // 2


def contact_sheet(
    originals: dict[str, np.ndarray],
    stills: dict[str, dict[str, tuple[np.ndarray, str, bool]]],
    emotions: list[str],
) -> np.ndarray:
    """Rows: portraits; columns: the portrait, then one still per emotion, captioned with the judge's label
    (green when it matches the intended emotion)."""
    header = 28
    cols = 1 + len(emotions)
    sheet = np.full((header + len(stills) * _THUMB, cols * _THUMB, 3), 255, np.uint8)
    for c, title in enumerate(["portrait", *emotions]):
        cv2.putText(
            sheet, title, (c * _THUMB + 6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA
        )
    for r, (name, row) in enumerate(stills.items()):
        y = header + r * _THUMB
        cells = [(originals[name], name, None)] + [(row[e][0], row[e][1], row[e][2]) for e in emotions]
        for c, (image, caption, ok) in enumerate(cells):
            thumb = cv2.resize(image, (_THUMB, _THUMB), interpolation=cv2.INTER_AREA)
            colour = (0, 0, 0) if ok is None else (0, 160, 0) if ok else (200, 0, 0)
            cv2.rectangle(thumb, (0, _THUMB - 22), (_THUMB, _THUMB), (255, 255, 255), -1)
            cv2.putText(
                thumb, caption[:18], (4, _THUMB - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA
            )
            sheet[y : y + _THUMB, c * _THUMB : (c + 1) * _THUMB] = thumb
    return sheet


def finite(value: Any) -> Any:
    """NaN is not JSON: write null."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value
