"""Whether a job has anything left to compute, decided from the store alone (no Prefect, no engines).

The resolver walks the stages in the flow's order and computes each step's cache key as `run_stage`
does (`tasks.keys.stage_key`, with the same parameters and inputs), taking each engine's identity from
what the last run that computed it remembered (`tasks.keys.remembered_identity`: only while the code,
tables, model files and packages it rests on are unchanged). A found step's outputs feed the next
stage's key. Only when every stage is found does it answer with the steps; any doubt is a decline with
the reason, and the caller runs the flow, which decides for itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kernel.jobs import JobOptions
from kernel.settings import get_settings
from models.identity import EngineIdentity
from models.identity_memo import one_look
from stores.records import ArtifactRef
from stores.store import ArtifactStore
from tasks.keys import Stage, remembered_identity, reusable_outputs, stage_key
from tasks.stages import (
    ALIGN,
    FEEL,
    PIPELINE,
    PLAN,
    PUBLISH,
    RENDER,
    SPEAK,
    JobInputs,
    publish_parameters,
    render_parameters,
)

__all__ = ["Resolution", "ResolvedStep", "one_look", "parameters", "resolve", "unsupported"]

# the engines whose identity follows from the job's options and the files the witness covers; the
# others read more (a learned EFP's model by store name, diffusion weights hashed by the engine, an
# LLM folder, an engine environment's own Python) and always go through the flow
UNDERSTOOD = {
    "planner": ("rules",),
    "tts_engine": ("piper", "espeak"),
    "aligner": ("engine", "dtw"),
    "efp_engine": ("embedded",),
    "renderer": ("preview",),
}
# where each stage's inputs come from, by the name they have in `available` (the flow's wiring:
# flows/narrate.py passes the speaker's `timings` to the aligner as `engine_timings`)
SOURCES: Mapping[str, Mapping[str, str]] = {"align": {"engine_timings": "timings"}}


@dataclass(frozen=True)
class ResolvedStep:
    stage: Stage[Any]
    identity: EngineIdentity
    params: dict[str, Any]
    inputs: dict[str, ArtifactRef]
    key: str
    outputs: dict[str, ArtifactRef]


@dataclass(frozen=True)
class Resolution:
    job: JobInputs
    steps: tuple[ResolvedStep, ...] = ()
    declined: str | None = None  # why the flow must run; None: every step is in the store
    keys: dict[str, str] = field(default_factory=dict)  # stage -> key, as far as it got

    @property
    def complete(self) -> bool:
        return self.declined is None


def parameters(stage: Stage[Any], job: JobInputs) -> dict[str, Any]:
    """The step's key parameters, as the stage's task gives them to run_stage."""
    if stage is RENDER:
        return render_parameters(job.options)
    if stage is PUBLISH:
        return publish_parameters(job)
    assert stage in (PLAN, SPEAK, ALIGN, FEEL), stage.name
    return stage.parameters(job.options)


def unsupported(options: JobOptions) -> str | None:
    for option, names in UNDERSTOOD.items():
        if getattr(options, option) not in names:
            return f"{option} {getattr(options, option)} is always run by the flow"
    if get_settings().render_deployment:
        return "renders may be routed to another work pool (EMOFLOW_RENDER_DEPLOYMENT)"
    return None


def resolve(store: ArtifactStore, job: JobInputs) -> Resolution:
    """Every step of the job as the store holds it, or a decline saying why the flow must run."""
    reason = unsupported(job.options)
    if reason is not None:
        return Resolution(job, declined=reason)
    available: dict[str, ArtifactRef] = {
        "script": job.script,
        "description": job.description,
        "portrait": job.portrait,
    }
    steps: list[ResolvedStep] = []
    keys: dict[str, str] = {}
    for stage in PIPELINE:
        identity, why = remembered_identity(stage.name, job.options)
        if identity is None:
            return Resolution(job, tuple(steps), f"{stage.name}: {why}", keys)
        sources = SOURCES.get(stage.name, {})
        inputs = {name: available[sources.get(name, name)] for name in stage.inputs}
        params = parameters(stage, job)
        key = keys[stage.name] = stage_key(stage, identity, params, inputs)
        outputs = reusable_outputs(store, stage, key)
        if outputs is None:
            return Resolution(job, tuple(steps), f"{stage.name}: not in the store", keys)
        steps.append(ResolvedStep(stage, identity, params, inputs, key, outputs))
        available |= outputs
    return Resolution(job, tuple(steps), None, keys)
