"""Pseudo-label talking videos: frame-level facial emotion (FER mini-Xception) aligned to words.

    videos ─ face per frame ─ judge ─ smooth ─ per word: majority label, confidence, intensity
             word spans: the emoflow run that made the video, or transcript + DTW, or fixed windows
    ─> clip set folder (wav + clips.jsonl) + a "clip-set" artifact in the store

Run: .venv/bin/python -m flows.pseudo_label VIDEO... --out CLIPSET_DIR [--transcript TEXT_OR_FILE]
The clip set is what the learned EFP trains on (models/efp/dataset.py).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Any

from prefect import flow

from kernel.errors import EmoflowError
from models.vision.pseudo_labels import CROPS, SMOOTHING_S, WINDOW_S
from stores.store import SYSTEM_ACTOR
from tasks.pseudo_label import check_inputs, pseudo_label_videos


@dataclass(frozen=True)
class PseudoLabelledSet:
    clip_set_sha256: str  # the "clip-set" artifact (clips.jsonl)
    out_dir: str
    clips: list[dict[str, Any]] = field(default_factory=list)  # per video: words, dropped, frames, ...


@flow(name="pseudo-label", validate_parameters=False)
def pseudo_label(
    videos: list[str],
    out_dir: str,
    transcripts: list[str] | None = None,
    window_s: float = WINDOW_S,
    crop: str = "mediapipe",
    smoothing_s: float = SMOOTHING_S,
    actor: str = SYSTEM_ACTOR,
) -> PseudoLabelledSet:
    out = pseudo_label_videos(
        videos,
        out_dir,
        transcripts=transcripts,
        window_s=window_s,
        crop=crop,
        smoothing_s=smoothing_s,
        actor=actor,
    )
    return PseudoLabelledSet(
        clip_set_sha256=out["clip_set"].sha256, out_dir=out["out_dir"], clips=out["clips"]
    )


def main(argv: list[str] | None = None) -> PseudoLabelledSet:
    parser = argparse.ArgumentParser(prog="python -m flows.pseudo_label", description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="+", help="talking-face videos (mp4, mov, webm, ...)")
    parser.add_argument("--out", required=True, help="new folder for the clip set (wav + clips.jsonl)")
    parser.add_argument(
        "--transcript",
        action="append",
        default=None,
        help="what is said, as text or a file; once for all videos or once per video, in order",
    )
    parser.add_argument("--window", type=float, default=WINDOW_S, help="seconds per label without words")
    parser.add_argument("--crop", choices=CROPS, default="mediapipe", help="face box for the judge")
    parser.add_argument("--smoothing", type=float, default=SMOOTHING_S, help="temporal sigma, seconds")
    args = parser.parse_args(argv)
    try:
        check_inputs(args.videos, args.out, args.transcript)  # bad input: one line, before Prefect starts
        result = pseudo_label(
            args.videos,
            args.out,
            transcripts=args.transcript,
            window_s=args.window,
            crop=args.crop,
            smoothing_s=args.smoothing,
        )
    except EmoflowError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        raise SystemExit(1) from None
    for clip in result.clips:
        print(
            f"{clip['clip_id']}: {clip['words']} labelled ({clip['dropped']} without a face), "
            f"{clip['frames_without_face']}/{clip['frames']} frames without a face, "
            f"spans from {clip['spans']}"
        )
    print(f"clip-set {result.clip_set_sha256}  {result.out_dir}")
    return result


if __name__ == "__main__":
    main()
