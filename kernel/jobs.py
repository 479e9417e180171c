"""Job files: what a content team submits (YAML), validated with errors that name the field."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kernel.errors import InputError
from kernel.settings import Settings

BUILTIN_PORTRAIT_PREFIX = "skimage:"


class JobSpec(BaseModel):
    """One narration request. Relative paths are relative to the job file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="narration", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    script: str = ""
    script_file: Path | None = None
    description: str = ""
    portrait: str = Field(
        description="image path, or skimage:astronaut for scikit-image's public-domain photo"
    )
    output_dir: Path | None = None
    submitter: str | None = None

    planner: str | None = None
    tts_engine: str | None = None
    aligner: str | None = None
    efp_engine: str | None = None
    efp_model: str | None = Field(default=None, description="learned EFP model: a store name, sha256 or file")
    renderer: str | None = None

    weights: str | None = Field(default=None, description="diffusion weights: a directory or a hub id")
    steps: int | None = Field(default=None, ge=1, le=200)
    guidance: float | None = Field(default=None, ge=1.0, le=20.0)
    device: str | None = None

    fps: int | None = Field(default=None, ge=1, le=60)
    size: int | None = Field(default=None, ge=64, le=2048)
    seed: int | None = None
    head_motion: float = Field(default=1.0, ge=0.0, le=3.0)
    face_index: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _one_script(self) -> JobSpec:
        if self.script and self.script_file:
            raise ValueError("give either script or script_file, not both")
        return self

    def resolved(self, base: Path) -> JobSpec:
        """Paths made absolute against `base` and script_file read into script."""
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
        return self.model_copy(update=update)

    def options(self, settings: Settings) -> dict[str, Any]:
        """Everything that decides how the job runs, with settings filling the gaps."""
        output_dir = self.output_dir if self.output_dir is not None else settings.output_dir / self.name
        return {
            "planner": self.planner or settings.planner,
            "tts_engine": self.tts_engine or settings.tts_engine,
            "aligner": self.aligner or settings.aligner,
            "efp_engine": self.efp_engine or settings.efp_engine,
            "efp_model": self.efp_model or settings.efp_model,
            "renderer": self.renderer or settings.renderer,
            "fps": self.fps or settings.fps,
            "size": self.size or settings.size,
            "seed": settings.seed if self.seed is None else self.seed,
            "head_motion": self.head_motion,
            "face_index": self.face_index,
            "output_dir": str(Path(output_dir).expanduser().resolve()),
            "weights": self.weights or settings.diffusion_weights,
            "steps": self.steps or settings.diffusion_steps,
            "guidance": self.guidance or settings.diffusion_guidance,
            "device": self.device or settings.device,
        }

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
