"""Whether a job has anything left to compute, decided from the store alone (no Prefect, no engines).

The resolver walks the stages in the flow's order and computes each step's cache key as `run_stage`
does (`tasks.keys.stage_key`, with the same parameters and inputs), taking each engine's identity from
what the last run that computed it remembered (`tasks.keys.remembered_identity`: only while the code,
tables, model files and packages it rests on are unchanged). A found step's outputs feed the next
stage's key. Only when every stage is found does it answer with the steps; any doubt is a decline with
the reason, and the caller runs the flow, which decides for itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kernel.errors import StoreError
from kernel.jobs import JobOptions
from kernel.settings import get_settings
from models.identity import EngineIdentity
from models.identity_memo import one_look
from stores.records import ArtifactRef, JobRecord
from stores.store import ArtifactStore
from tasks.keys import Stage, identity_key, remembered_identity, reusable_outputs_many, stage_key
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

__all__ = [
    "Resolution",
    "ResolvedStep",
    "find_jobs",
    "one_look",
    "parameters",
    "resolve",
    "resolve_many",
    "unsupported",
]

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
    return resolve_many(store, [job])[0]


def resolve_many(store: ArtifactStore, jobs: Sequence[JobInputs]) -> list[Resolution]:
    """`resolve` of each job, in order, looking the store up once per stage for all of them."""
    walks = [_Walk(job, unsupported(job.options)) for job in jobs]
    identities: dict[tuple[str, str], tuple[EngineIdentity | None, str]] = {}
    for stage in PIPELINE:
        wanted: list[tuple[_Walk, ResolvedStep]] = []
        for walk in walks:
            if walk.declined is not None:
                continue
            # jobs of one manifest mostly share their options: recall each identity once
            memo = (stage.name, identity_key(stage.name, walk.job.options))
            if memo not in identities:
                identities[memo] = remembered_identity(stage.name, walk.job.options)
            identity, why = identities[memo]
            if identity is None:
                walk.declined = f"{stage.name}: {why}"
                continue
            sources = SOURCES.get(stage.name, {})
            inputs = {name: walk.available[sources.get(name, name)] for name in stage.inputs}
            params = parameters(stage, walk.job)
            key = walk.keys[stage.name] = stage_key(stage, identity, params, inputs)
            wanted.append((walk, ResolvedStep(stage, identity, params, inputs, key, {})))
        found = reusable_outputs_many(store, stage, {step.key for _, step in wanted}) if wanted else {}
        for walk, step in wanted:
            outputs = found.get(step.key)
            if outputs is None:
                walk.declined = f"{stage.name}: not in the store"
                continue
            walk.steps.append(dataclasses.replace(step, outputs=outputs))
            walk.available |= outputs
    return [Resolution(w.job, tuple(w.steps), w.declined, w.keys) for w in walks]


@dataclass
class _Walk:
    """One job's way through the stages while `resolve_many` looks them up."""

    job: JobInputs
    declined: str | None
    steps: list[ResolvedStep] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    available: dict[str, ArtifactRef] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.available = {
            "script": self.job.script,
            "description": self.job.description,
            "portrait": self.job.portrait,
        }


def find_jobs(store: ArtifactStore, job_ids: Sequence[str]) -> dict[str, JobInputs | None]:
    """`tasks.job.find_job` of many jobs in two queries, without writing: job id -> its inputs, or None
    when its texts are not stored yet."""
    records = store.jobs(job_ids)
    missing = [job_id for job_id in job_ids if job_id not in records]
    if missing:
        raise StoreError(f"no job {missing[0]}")

    def texts(record: JobRecord) -> list[tuple[str, str]]:
        return [
            (hashlib.sha256(record.script.encode("utf-8")).hexdigest(), "script"),
            (hashlib.sha256(record.description.encode("utf-8")).hexdigest(), "description"),
            (record.portrait_sha256, "portrait"),
        ]

    wanted = {job_id: texts(record) for job_id, record in records.items()}
    artifacts = store.artifacts_by_hash(pair for pairs in wanted.values() for pair in pairs)
    found: dict[str, JobInputs | None] = {}
    for job_id in job_ids:
        record, pairs = records[job_id], wanted[job_id]
        if not all(pair in artifacts for pair in pairs):
            found[job_id] = None
            continue
        script, description, portrait = (artifacts[pair] for pair in pairs)
        found[job_id] = JobInputs(
            job_id=record.id,
            name=record.name,
            script=script,
            description=description,
            portrait=portrait,
            options=JobOptions.model_validate(record.options),
        )
    return found
