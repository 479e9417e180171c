"""Job files: what a content team submits (YAML), validated with errors that name the field."""

from __future__ import annotations

import getpass
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kernel.errors import InputError
from kernel.settings import (
    MAX_SPEECH_LOUDNESS,
    MIN_SPEECH_LOUDNESS,
    AlignerName,
    EfpEngineName,
    PlannerName,
    RendererName,
    Settings,
    SpeechFormat,
    TtsEngineName,
)

BUILTIN_PORTRAIT_PREFIX = "skimage:"

# Limits, defined once: the CLI, the API and batch manifests all validate jobs through JobSpec.
MAX_SCRIPT_CHARS = 60_000  # about 10,000 words, an hour of speech
MAX_DESCRIPTION_CHARS = 4_000
MAX_PORTRAIT_PIXELS = 40_000_000  # decoded; bigger photos gain nothing at render sizes <= 2048
SPOKEN_WORDS_PER_SECOND = 2.6  # a calm narration pace, for the speech-length estimate
MIN_FRAME_SIDE, MAX_FRAME_SIDE = 64, 4096  # output frame sides (`frame: WxH`); H.264 also needs them even

# `frame`: what the video shows. "crop": the size x size square around the face (the default);
# "portrait": the whole portrait at its own resolution and aspect; "WxH" (e.g. 1920x1080): the portrait
# fitted to that aspect around the face. Outside "crop", the animated crop is pasted back into the still.
FRAME_CROP, FRAME_PORTRAIT = "crop", "portrait"
_FRAME_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


def frame_size(frame: str) -> tuple[int, int] | None:
    """(width, height) of a `WxH` frame option, None for "crop" and "portrait"; bad values raise ValueError
    with the fix in the message (pydantic and InputError callers both show it)."""
    if frame in (FRAME_CROP, FRAME_PORTRAIT):
        return None
    match = _FRAME_SIZE.match(frame.strip().lower())
    if match is None:
        raise ValueError(f"frame must be crop, portrait or WIDTHxHEIGHT such as 1920x1080, not {frame!r}")
    width, height = int(match[1]), int(match[2])
    if not (MIN_FRAME_SIDE <= width <= MAX_FRAME_SIDE and MIN_FRAME_SIDE <= height <= MAX_FRAME_SIDE):
        raise ValueError(
            f"frame {width}x{height}: each side must be between {MIN_FRAME_SIDE} and {MAX_FRAME_SIDE} px"
        )
    if width % 2 or height % 2:
        # H.264 with 4:2:0 chroma needs even sides; say which, rather than silently cropping a pixel
        raise ValueError(
            f"frame {width}x{height}: H.264 needs even sides, use {width - width % 2}x{height - height % 2}"
        )
    return width, height


class JobOptions(BaseModel):
    """How a job runs, resolved once at submission (job fields first, settings fill the gaps).

    This is what the store keeps: a re-run or a retry reads it back and never consults settings again.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    planner: PlannerName
    planner_model: str | None = None
    tts_engine: TtsEngineName
    aligner: AlignerName
    efp_engine: EfpEngineName
    efp_model: str | None = None
    renderer: RendererName
    weights: str | None = None
    steps: int
    guidance: float
    device: str
    fps: int
    size: int
    seed: int
    head_motion: float
    face_index: int
    output_dir: str
    # defaults, so options stored before these fields existed read back as they ran
    frame: str = FRAME_CROP
    allow_non_human: bool = False
    # older jobs published raw speech; they read back with today's delivery defaults, and their publish
    # step recomputes anyway (the publisher's version and code changed with normalisation)
    speech_loudness: float = -16.0
    speech_format: SpeechFormat = "wav"


class JobSpec(BaseModel):
    """One narration request. Relative paths are relative to the job file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="narration", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    script: str = Field(default="", max_length=MAX_SCRIPT_CHARS, description="the words to speak")
    script_file: Path | None = Field(default=None, description="a UTF-8 text file holding the script")
    description: str = Field(
        default="", max_length=MAX_DESCRIPTION_CHARS, description="the free-form emotion brief"
    )
    portrait: str = Field(
        description="image path, or skimage:astronaut for scikit-image's public-domain photo"
    )
    output_dir: Path | None = None
    submitter: str | None = None

    planner: PlannerName | None = None
    planner_model: str | None = Field(default=None, description="instruct LM for the llm planner")
    tts_engine: TtsEngineName | None = None
    aligner: AlignerName | None = None
    efp_engine: EfpEngineName | None = None
    efp_model: str | None = Field(default=None, description="learned EFP model: a store name, sha256 or file")
    renderer: RendererName | None = None

    weights: str | None = Field(
        default=None, description="diffusion weights: Hallo's pretrained_models folder"
    )
    steps: int | None = Field(default=None, ge=1, le=200)
    guidance: float | None = Field(default=None, ge=1.0, le=20.0)
    device: str | None = None

    fps: int | None = Field(default=None, ge=1, le=60)
    size: int | None = Field(default=None, ge=64, le=2048)
    seed: int | None = None
    head_motion: float = Field(default=1.0, ge=0.0, le=3.0)
    face_index: int = Field(default=0, ge=0)
    frame: str = Field(
        default=FRAME_CROP,
        description="crop (the size x size face crop), portrait (the whole portrait, its own resolution "
        "and aspect) or WIDTHxHEIGHT such as 1920x1080 (even sides, at most 4096)",
    )
    allow_non_human: bool = Field(
        default=False, description="animate a face that does not look human (an animal, a mask) anyway"
    )
    speech_loudness: float | None = Field(
        default=None,
        ge=MIN_SPEECH_LOUDNESS,
        le=MAX_SPEECH_LOUDNESS,
        description="integrated loudness of the published speech and video, in LUFS (default -16; "
        "true peak stays at or under -1 dBTP)",
    )
    speech_format: SpeechFormat | None = Field(
        default=None, description="published speech file: wav (default), mp3 or m4a"
    )

    @field_validator("frame")
    @classmethod
    def _frame(cls, value: str) -> str:
        size = frame_size(value)
        return value if size is None else f"{size[0]}x{size[1]}"  # canonical, for the cache key

    @model_validator(mode="after")
    def _one_script(self) -> JobSpec:
        if self.script and self.script_file:
            raise ValueError("give either script or script_file, not both")
        return self

    def resolved(self, base: Path) -> JobSpec:
        """Paths made absolute against `base` and script_file read into script (limits checked again)."""
        update: dict[str, Any] = {}
        if self.script_file is not None:
            path = (base / self.script_file).expanduser()
            try:
                update["script"] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"cannot read script_file {path}: {exc}") from exc
            update["script_file"] = None
        if not self.portrait.startswith(BUILTIN_PORTRAIT_PREFIX):
            update["portrait"] = str((base / self.portrait).expanduser())
        if self.output_dir is not None:
            update["output_dir"] = (base / self.output_dir).expanduser()
        if self.weights and (base / self.weights).expanduser().exists():
            update["weights"] = str((base / self.weights).expanduser().resolve())
        return JobSpec.model_validate(self.model_dump() | update)

    def options(self, settings: Settings) -> JobOptions:
        """Everything that decides how the job runs, with settings filling the gaps: the one place
        where a job field and a setting meet."""
        output_dir = self.output_dir if self.output_dir is not None else settings.output_dir / self.name

        def pick(field: str, setting: str | None = None) -> Any:
            value = getattr(self, field)
            return getattr(settings, setting or field) if value is None else value

        return JobOptions(
            planner=pick("planner"),
            planner_model=pick("planner_model"),
            tts_engine=pick("tts_engine"),
            aligner=pick("aligner"),
            efp_engine=pick("efp_engine"),
            efp_model=pick("efp_model"),
            renderer=pick("renderer"),
            weights=pick("weights", "diffusion_weights"),
            steps=pick("steps", "diffusion_steps"),
            guidance=pick("guidance", "diffusion_guidance"),
            device=pick("device"),
            fps=pick("fps"),
            size=pick("size"),
            seed=pick("seed"),
            head_motion=self.head_motion,
            face_index=self.face_index,
            output_dir=str(Path(output_dir).expanduser().resolve()),
            frame=self.frame,
            allow_non_human=self.allow_non_human,
            speech_loudness=pick("speech_loudness"),
            speech_format=pick("speech_format"),
        )

    def speech_seconds_estimate(self) -> float:
        """How long the speech will be, roughly, at a calm pace (inline [tags] are not spoken)."""
        spoken = re.sub(r"\[[^\]]*\]", " ", self.script)
        return len(spoken.split()) / SPOKEN_WORDS_PER_SECOND

    def submitter_name(self) -> str:
        if self.submitter:
            return self.submitter
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "unknown"


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "job"
    given = first.get("input")
    if first["type"] == "literal_error" and isinstance(given, str):  # name the bad choice too
        return f"{where}: {first['msg']}, not {given!r}"
    return f"{where}: {first['msg']}"


def parse_job(data: Any, base: Path) -> JobSpec:
    if not isinstance(data, dict):
        raise InputError("a job must be a mapping of fields (script, description, portrait, ...)")
    try:
        return JobSpec.model_validate(data).resolved(base)
    except ValidationError as exc:
        raise InputError(f"invalid job: {_describe(exc)}") from exc


def load_job_file(path: Path, overrides: dict[str, Any] | None = None) -> JobSpec:
    """Read a YAML job file; `overrides` (CLI flags) win over the file's fields."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(f"job file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read job file {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"job file {path} is not valid YAML: {exc}") from exc
    data = dict(data) if isinstance(data, dict) else data
    if isinstance(data, dict) and overrides:
        data.update({k: v for k, v in overrides.items() if v is not None})
        if overrides.get("script") is not None:
            data.pop("script_file", None)
    return parse_job(data, path.parent.resolve())
