"""The stages of the pipeline, declared once: inputs, typed outputs, and the options in their keys.

Engines are chosen by the job option named like the stage's engine (`tasks/engines.py`). Outputs travel
between tasks as these records, never as string-keyed dicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kernel.jobs import JobOptions
from stores.records import ArtifactRef
from tasks.keys import Stage


@dataclass(frozen=True)
class JobInputs:
    """What a content team submitted, as the store holds it: texts and portrait by content hash."""

    job_id: str
    name: str
    script: ArtifactRef
    description: ArtifactRef
    portrait: ArtifactRef
    options: JobOptions  # resolved at submission


@dataclass(frozen=True)
class Planned:
    plan: ArtifactRef  # target emotion and intensity per word


@dataclass(frozen=True)
class Spoken:
    speech: ArtifactRef  # WAV
    timings: ArtifactRef  # the engine's own word (and phoneme) timings


@dataclass(frozen=True)
class Aligned:
    word_timings: ArtifactRef  # checked against the audio, or found in it


@dataclass(frozen=True)
class Felt:
    curve: ArtifactRef  # label distribution and intensity per word (the EFP's output, or an edit of it)


@dataclass(frozen=True)
class Rendered:
    frames: ArtifactRef  # silent H.264


@dataclass(frozen=True)
class Published:
    video: ArtifactRef  # MP4 with the delivery speech as AAC
    delivery_speech: ArtifactRef  # loudness-normalised speech in the job's speech_format (raw: speech)
    curve_plot: ArtifactRef
    captions: ArtifactRef


PLAN = Stage("plan", inputs=("script", "description"), outputs=Planned)
SPEAK = Stage("speak", inputs=("plan",), outputs=Spoken)
ALIGN = Stage("align", inputs=("speech", "engine_timings", "plan"), outputs=Aligned)
FEEL = Stage("feel", inputs=("speech", "word_timings", "plan"), outputs=Felt)
EDIT = Stage("feel", inputs=("curve",), outputs=Felt)  # an edited curve takes the feel stage's place
RENDER = Stage(
    "render",
    inputs=("portrait", "speech", "word_timings", "curve"),
    outputs=Rendered,
    params=("size", "fps", "seed", "face_index", "frame"),
)
PUBLISH = Stage(
    "publish",
    inputs=("frames", "speech", "curve"),
    outputs=Published,
    params=("speech_loudness", "speech_format"),
)

# the pipeline in the flow's order (flows/narrate.py); the resolver walks it the same way
PIPELINE = (PLAN, SPEAK, ALIGN, FEEL, RENDER, PUBLISH)


def render_parameters(options: JobOptions) -> dict[str, Any]:
    """The render step's key parameters for renderers other than diffusion (whose weights' hash the
    engine finds: tasks/render.py)."""
    return RENDER.parameters(options, head_motion=options.head_motion)


def publish_parameters(job: JobInputs) -> dict[str, Any]:
    return PUBLISH.parameters(job.options, title=job.name)  # the curve plot's title shows the job name


def published_files(
    options: JobOptions, published: Published, plan: ArtifactRef, curve: ArtifactRef
) -> dict[str, ArtifactRef]:
    """File name in the job's output folder -> the artifact exported there."""
    return {
        "video.mp4": published.video,
        f"speech.{options.speech_format}": published.delivery_speech,
        "plan.json": plan,
        "curve.json": curve,
        "curve.png": published.curve_plot,
        "captions.vtt": published.captions,
    }
