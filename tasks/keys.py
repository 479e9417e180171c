"""Stage declarations and their cache keys, without Prefect: shared by `run_stage` (tasks/stage.py) and
the store-only resolver (tasks/resolve.py), so both compute a step's key and record it one way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from kernel.canonical import canonical_digest
from kernel.errors import RunCancelled, StoreError
from kernel.jobs import JobOptions
from models.identity import EngineIdentity, Identified
from models.identity_memo import MEMO, witnessed_identity
from stores.cache_keys import step_cache_key
from stores.records import ArtifactRef
from stores.store import ArtifactStore

Outputs = TypeVar("Outputs")


@dataclass(frozen=True)
class Stage(Generic[Outputs]):
    """One stage of the pipeline: what it reads, what it writes, and which options shape its output.

    `outputs` is a frozen dataclass whose fields are ArtifactRefs named like the stage's outputs.
    """

    name: str
    inputs: tuple[str, ...]
    outputs: type[Outputs]
    params: tuple[str, ...] = ()  # job options that go into the cache key

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.outputs))  # type: ignore[arg-type]

    def parameters(self, options: JobOptions, **extra: Any) -> dict[str, Any]:
        return {name: getattr(options, name) for name in self.params} | extra


def stage_key(
    stage: Stage[Any], identity: EngineIdentity, params: Mapping[str, Any], inputs: Mapping[str, ArtifactRef]
) -> str:
    """The step's cache key: stage, engine identity, canonical parameters and the inputs' hashes."""
    if set(inputs) != set(stage.inputs):
        raise StoreError(f"{stage.name} takes {sorted(stage.inputs)}, was given {sorted(inputs)}")
    return step_cache_key(
        stage.name,
        identity.name,
        identity.version,
        params,
        {k: v.sha256 for k, v in inputs.items()},
        identity.digests,
    )


def step_fields(
    run_id: str,
    stage: Stage[Any],
    identity: EngineIdentity,
    params: Mapping[str, Any],
    key: str,
    inputs: Mapping[str, ArtifactRef],
) -> dict[str, Any]:
    """What the store records of a step, computed or cached (begin_step / record_cache_hit)."""
    return {
        "run_id": run_id,
        "stage": stage.name,
        "engine": identity.name,
        "engine_version": identity.version,
        "engine_digests": identity.digests,
        "params": params,
        "cache_key": key,
        "inputs": inputs,
    }


def reusable_outputs(store: ArtifactStore, stage: Stage[Any], key: str) -> dict[str, ArtifactRef] | None:
    """The committed outputs of this key, all blobs present and named as the stage's outputs; or None."""
    cached = store.cached_outputs(key)
    if cached is not None and set(cached) == set(stage.output_names):
        return cached
    return None


def reusable_outputs_many(
    store: ArtifactStore, stage: Stage[Any], keys: Collection[str]
) -> dict[str, dict[str, ArtifactRef]]:
    """`reusable_outputs` of many keys of one stage in one store query: key -> outputs, where reusable."""
    names = set(stage.output_names)
    return {key: cached for key, cached in store.cached_outputs_many(keys).items() if set(cached) == names}


def stop_if_cancelled(store: ArtifactStore, run_id: str, stage: str) -> None:
    """Raise RunCancelled when someone asked this run to stop (`ArtifactStore.request_cancel`)."""
    actor = store.cancel_requested(run_id)
    if actor is not None:
        raise RunCancelled(f"cancelled by {actor} before {stage} finished")


# -- engine identities, remembered for the resolver -------------------------------------------------


# options no engine is built from: where the published files are exported, after the publish step
NOT_ENGINE_OPTIONS = frozenset({"output_dir"})


def identity_key(stage: str, options: JobOptions) -> str:
    """What an identity is remembered under: the options, since the task builds its engine from them
    (all but NOT_ENGINE_OPTIONS, so a job exported to another folder finds the same identities)."""
    kept = {k: v for k, v in options.model_dump(mode="json").items() if k not in NOT_ENGINE_OPTIONS}
    return f"{stage}:{canonical_digest(kept)}"


def engine_identity(engine: Identified, stage: str, options: JobOptions | None) -> EngineIdentity:
    """The engine's identity, remembered (when its witness is sound) for `remembered_identity`."""
    if options is None:
        return engine.identity()
    identity, witness = witnessed_identity(engine)
    if witness is not None:
        MEMO.remember(identity_key(stage, options), identity, witness)
    return identity


def remembered_identity(stage: str, options: JobOptions) -> tuple[EngineIdentity | None, str]:
    """The identity the stage's engine would have now, known without importing it, or None and why."""
    return MEMO.recall(identity_key(stage, options))
