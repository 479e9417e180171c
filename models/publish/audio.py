"""Delivery audio: the published speech, loudness-normalised (EBU R128) and in the format asked for.

Normalisation is ffmpeg's `loudnorm` in two passes: the first measures the speech (integrated loudness,
true peak, loudness range), the second applies the measured values with `linear=true`, a plain gain
when that reaches the target without crossing the true-peak ceiling; where it cannot, loudnorm falls
back to its dynamic mode (a gentle compressor and a true-peak limiter). The second pass writes float
samples, the 16-bit WAV is written from them and measured on its own, so the recorded output numbers are
those of the file, not loudnorm's estimate. Where that file's true peak is over the ceiling (resampling
back from loudnorm's 192 kHz can overshoot on impulsive sounds), a linear trim of the float samples,
which never clip, brings it under; the speech is then a little under the target, and the report says so.

Loudness is undefined for silence and for anything shorter than one 400 ms gating block (ITU-R
BS.1770): such speech is passed through unchanged and the report says why (`normalization: "none"`).

Everything goes through files and ffmpeg's streaming filters, so an hour of speech costs no more
memory than a minute. Outputs are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

import imageio_ffmpeg
import soundfile

from kernel.errors import EngineError, InputError
from kernel.settings import SpeechFormat

DEFAULT_LOUDNESS_LUFS = -16.0  # integrated; the common target for spoken-word streaming and podcasts
TRUE_PEAK_CEILING_DB = -1.0  # dBTP: headroom for the lossy encoders' overshoot
LOUDNESS_RANGE_LU = 11.0  # loudnorm's LRA target; raised to the speech's own so linear mode can hold
MIN_LOUDNESS_LUFS = -70.0  # BS.1770's absolute gate: anything quieter counts as silence
MIN_MEASURABLE_S = 0.4  # one gating block
_PEAK_MARGIN_DB = 0.1  # below the ceiling after a trim: room for 16-bit requantisation

T = TypeVar("T")
Normalization = Literal["linear", "dynamic", "none"]

# speech_format -> (ffmpeg encoder, ffmpeg muxer, media type, encoder options)
FORMATS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "wav": ("pcm_s16le", "wav", "audio/wav", ()),
    "mp3": ("libmp3lame", "mp3", "audio/mpeg", ("-b:a", "128k")),
    "m4a": ("aac", "ipod", "audio/mp4", ("-b:a", "128k", "-movflags", "+faststart")),
}


@dataclass(frozen=True)
class Loudness:
    """One measurement; None where it is undefined (silence, or too short to gate)."""

    integrated_lufs: float | None
    true_peak_db: float | None
    range_lu: float | None


@dataclass(frozen=True)
class LoudnessReport:
    target_lufs: float
    true_peak_ceiling_db: float
    normalization: Normalization
    input: Loudness
    output: Loudness
    note: str | None = None  # why nothing was done, or what the final trim did

    def to_metadata(self) -> dict[str, Any]:
        """Flat and JSON-safe, for the artifact's metadata (and `emoflow show`)."""
        return {
            "target_lufs": self.target_lufs,
            "true_peak_ceiling_db": self.true_peak_ceiling_db,
            "normalization": self.normalization,
            **{f"input_{k}": v for k, v in asdict(self.input).items()},
            **{f"output_{k}": v for k, v in asdict(self.output).items()},
            "note": self.note,
        }


@dataclass(frozen=True)
class DeliveredSpeech:
    wav: Path  # the normalised speech as 16-bit WAV: what the video's AAC track is encoded from
    path: Path  # the published file, in `speech_format` (the same file as `wav` for wav)
    media_type: str
    seconds: float
    sample_rate: int
    loudness: LoudnessReport


def deliver_speech(
    source: Path,
    workdir: Path,
    *,
    target_lufs: float = DEFAULT_LOUDNESS_LUFS,
    speech_format: SpeechFormat = "wav",
    true_peak_db: float = TRUE_PEAK_CEILING_DB,
) -> DeliveredSpeech:
    """The speech as it is published: normalised to `target_lufs`, then encoded to `speech_format`."""
    # 1. Check inputs (the encoder first: refuse before any work)
    encoder, _, media_type, _ = _format(speech_format)
    _require_encoder(encoder, speech_format)
    # 2. Normalise
    wav = workdir / "speech.wav"
    report = normalise_loudness(source, wav, target_lufs=target_lufs, true_peak_db=true_peak_db)
    # 3. Encode
    path = wav if speech_format == "wav" else encode_speech(wav, workdir / f"speech.{speech_format}")
    info = soundfile.info(str(wav))
    return DeliveredSpeech(wav, path, media_type, round(info.duration, 3), info.samplerate, report)


def normalise_loudness(
    source: Path,
    out: Path,
    *,
    target_lufs: float = DEFAULT_LOUDNESS_LUFS,
    true_peak_db: float = TRUE_PEAK_CEILING_DB,
) -> LoudnessReport:
    """`source` as 16-bit WAV at `out` (same rate), at `target_lufs` integrated, peaks under the ceiling."""
    # 1. Check inputs
    if not -70.0 <= target_lufs <= -5.0:  # loudnorm's own range
        raise InputError(f"loudness target {target_lufs} LUFS is outside -70..-5 (the default is -16)")
    if not -9.0 <= true_peak_db <= 0.0:
        raise InputError(f"true-peak ceiling {true_peak_db} dBTP is outside -9..0 (the default is -1)")
    try:
        info = soundfile.info(str(source))
    except (OSError, RuntimeError) as exc:  # soundfile reports unreadable files as RuntimeError
        raise InputError(f"cannot read speech {source}: {exc}") from exc
    if info.frames == 0:
        raise InputError(f"speech {source} holds no samples: there is nothing to normalise")
    rate = info.samplerate

    # 2. First pass: measure
    lra = LOUDNESS_RANGE_LU
    measured = _loudnorm_pass(
        source, f"loudnorm=I={target_lufs}:TP={true_peak_db}:LRA={lra}:print_format=json"
    )
    before = _loudness(measured)
    if before.integrated_lufs is None:  # silent or shorter than a gating block: nothing to aim at
        why = (
            "silent"
            if before.true_peak_db is None
            else f"under {MIN_MEASURABLE_S} s of sound above {MIN_LOUDNESS_LUFS:.0f} LUFS"
        )
        _write_atomically(out, lambda partial: _pcm16_copy(source, partial))
        note: str | None = f"passed through unchanged: the speech is {why}, so its loudness is undefined"
        return LoudnessReport(target_lufs, true_peak_db, "none", before, _measure(out), note)

    # 3. Second pass: apply the measured values, linearly where the ceiling allows
    lra = min(50.0, max(lra, float(measured["input_lra"])))  # a lower target LRA forces dynamic mode
    apply = (
        f"loudnorm=I={target_lufs}:TP={true_peak_db}:LRA={lra}"
        f":measured_I={measured['input_i']}:measured_TP={measured['input_tp']}"
        f":measured_LRA={measured['input_lra']}:measured_thresh={measured['input_thresh']}"
        f":offset={measured['target_offset']}:linear=true:print_format=json"
    )
    float_wav = out.with_name(f".{out.name}.float.partial")  # unclipped, so a trim below is linear
    try:
        mode = str(_render(source, float_wav, apply, rate, codec="pcm_f32le")["normalization_type"])
        _write_atomically(out, lambda partial: _pcm16_copy(float_wav, partial))
        after = _measure(out)

        # 4. Post-process: trim any inter-sample overshoot that resampling back from 192 kHz left above
        # the ceiling (impulsive sounds); the trim is measured on the float samples, which never clip
        note = None
        if after.true_peak_db is not None and after.true_peak_db > true_peak_db:
            peak = _measure(float_wav).true_peak_db
            trim = true_peak_db - max(peak or after.true_peak_db, after.true_peak_db) - _PEAK_MARGIN_DB
            _write_atomically(out, lambda partial: _pcm16_copy(float_wav, partial, gain_db=trim))
            note = f"trimmed {trim:.2f} dB after {mode} normalisation to keep the true peak under the ceiling"
            after = _measure(out)
    finally:
        float_wav.unlink(missing_ok=True)
    normalization: Normalization = "dynamic" if mode == "dynamic" else "linear"
    return LoudnessReport(target_lufs, true_peak_db, normalization, before, after, note)


def measure_loudness(path: Path) -> Loudness:
    """Integrated loudness, true peak and loudness range of an audio file, as ffmpeg's loudnorm reads them."""
    if not path.is_file():
        raise InputError(f"cannot measure {path}: no such file")
    return _measure(path)


def encode_speech(wav: Path, out: Path) -> Path:
    """`wav` encoded into the format `out`'s suffix names (.wav, .mp3 or .m4a); returns `out`."""
    speech_format = out.suffix.lstrip(".").lower()
    encoder, muxer, _, options = _format(speech_format)
    _require_encoder(encoder, speech_format)
    command = ["-c:a", encoder, *options, "-f", muxer]
    _write_atomically(out, lambda partial: _ffmpeg(["-i", str(wav), "-vn", *command, str(partial)], wav))
    return out


# -- ffmpeg ----------------------------------------------------------------------------------------


def _format(speech_format: str) -> tuple[str, str, str, tuple[str, ...]]:
    if speech_format not in FORMATS:
        raise InputError(f"speech_format must be {', '.join(FORMATS)}, not {speech_format!r}")
    return FORMATS[speech_format]


@cache
def ffmpeg_encoders() -> frozenset[str]:
    """The audio encoders imageio-ffmpeg's ffmpeg was built with."""
    result = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-encoders"],
        capture_output=True,
        text=True,
        check=False,
    )
    # rows look like " A....D libmp3lame   libmp3lame MP3 (MPEG audio layer 3)"
    return frozenset(
        parts[1]
        for line in result.stdout.splitlines()
        if len(parts := line.split()) > 1 and parts[0][0] == "A"
    )


def _require_encoder(encoder: str, speech_format: str) -> None:
    if encoder not in ffmpeg_encoders():
        raise EngineError(
            f"speech_format {speech_format} needs ffmpeg's {encoder} encoder, which this ffmpeg "
            f"({imageio_ffmpeg.get_ffmpeg_exe()}) lacks: choose another speech_format (wav always works)"
        )


def _ffmpeg(args: list[str], source: Path) -> str:
    """Run ffmpeg quietly; returns its stderr (where loudnorm prints its JSON)."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostats", "-y", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise EngineError(f"ffmpeg failed on {source.name}: {result.stderr.strip()[-300:]}")
    return result.stderr


def _loudnorm_pass(source: Path, audio_filter: str, out: list[str] | None = None) -> dict[str, Any]:
    """Run `audio_filter` (ending in a print_format=json loudnorm) and return loudnorm's JSON."""
    stderr = _ffmpeg(["-i", str(source), "-vn", "-af", audio_filter, *(out or ["-f", "null", "-"])], source)
    start, end = stderr.rfind("{"), stderr.rfind("}")
    try:
        found = json.loads(stderr[start : end + 1])
    except ValueError as exc:
        raise EngineError(f"ffmpeg's loudnorm printed no measurement for {source.name}") from exc
    if not isinstance(found, dict) or "input_i" not in found:
        raise EngineError(f"ffmpeg's loudnorm printed an unexpected measurement for {source.name}")
    return found


def _render(source: Path, out: Path, audio_filter: str, rate: int, codec: str) -> dict[str, Any]:
    # loudnorm works at 192 kHz inside its dynamic mode: come back to the speech's own rate
    return _loudnorm_pass(source, audio_filter, ["-ar", str(rate), "-c:a", codec, "-f", "wav", str(out)])


def _pcm16_copy(source: Path, out: Path, gain_db: float = 0.0) -> None:
    gain = ["-af", f"volume={gain_db:.3f}dB"] if gain_db else []
    _ffmpeg(["-i", str(source), "-vn", *gain, "-c:a", "pcm_s16le", "-f", "wav", str(out)], source)


def _measure(path: Path) -> Loudness:
    return _loudness(_loudnorm_pass(path, "loudnorm=print_format=json"))


def _loudness(measured: dict[str, Any]) -> Loudness:
    def number(key: str, floor: float | None = None) -> float | None:
        value = float(measured[key])
        if not math.isfinite(value) or (floor is not None and value < floor):
            return None
        return round(value, 2)

    integrated = number("input_i", MIN_LOUDNESS_LUFS)
    return Loudness(integrated, number("input_tp"), number("input_lra") if integrated is not None else None)


def _write_atomically(out: Path, write: Callable[[Path], T]) -> T:
    """`write(partial)` then rename onto `out`: a failure never leaves a half-written file there."""
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: folder {out.parent} does not exist")
    partial = out.with_name(f".{out.name}.partial")
    try:
        result = write(partial)
        os.replace(partial, out)
    finally:
        if partial.exists():
            partial.unlink()
    return result
