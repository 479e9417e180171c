"""H.264 encoding of frame streams and muxing with speech, through the ffmpeg in imageio-ffmpeg."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from kernel.errors import EngineError
from models.types import ProgressFn


def encode_frames(
    frames: Iterable[np.ndarray],
    path: Path,
    fps: int,
    size: int | tuple[int, int],
    total: int,
    progress: ProgressFn | None = None,
    crf: int = 14,
) -> int:
    """Stream RGB frames into a silent, near-lossless H.264 file; returns the frame count.

    The frames stay an intermediate artifact, so quality is high (crf 14); publish re-uses the
    stream as is when it muxes the audio in. `size` is a square's side or (width, height).
    """
    width, height = (size, size) if isinstance(size, int) else size
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=fps,
        codec="libx264",
        pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p",
        quality=None,
        macro_block_size=1,
        output_params=["-crf", str(crf), "-preset", "veryfast"],
        ffmpeg_log_level="error",
    )
    writer.send(None)
    count = 0
    try:
        for frame in frames:
            if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
                raise EngineError(
                    f"renderer gave a frame of {frame.shape} {frame.dtype}, not ({height},{width},3) uint8"
                )
            writer.send(np.ascontiguousarray(frame))
            count += 1
            if progress and (count % 10 == 0 or count == total):
                progress(count, total)
    finally:
        writer.close()
    return count


def mux(video: Path, audio: Path, out: Path) -> None:
    """Copy the H.264 stream, encode the speech as AAC; the shorter stream sets the length."""
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-y",
        "-loglevel",
        "error",
        "-i",
        str(video),
        "-i",
        str(audio),
        "-map",
        "0:v:0",
        "-map",
        "1:a:0",
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        "-b:a",
        "160k",
        "-movflags",
        "+faststart",
        str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise EngineError(
            f"ffmpeg could not mux {video.name} and {audio.name}: {result.stderr.strip()[-300:]}"
        )


def ffmpeg_report(path: Path) -> str:
    """What `ffmpeg -i` says about a file (its streams and duration); ffmpeg exits 1 here by design."""
    result = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stderr


def probe(path: Path) -> dict[str, float | bool]:
    """Duration and stream presence, read from ffmpeg's own report of the file."""
    report = ffmpeg_report(path)
    duration = 0.0
    for line in report.splitlines():
        line = line.strip()
        if line.startswith("Duration:"):
            hours, minutes, seconds = line.split(",")[0].split()[1].split(":")
            duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return {
        "duration": duration,
        "has_video": "Video: h264" in report,
        "has_audio": "Audio: aac" in report,
    }
