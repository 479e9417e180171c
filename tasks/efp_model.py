"""Which EFP engine a job uses, with learned models found in the store by name or sha256.

`python -m flows.train_efp` commits each trained model as an "efp-model" artifact and registers it in
the store's model registry (kind "efp") under its name; an "efp.train" audit event records the training
too. A model reference (job option `efp_model`, else EMOFLOW_EFP_MODEL) is, in this order: a local model
file or folder; a registered name (its newest version); or at least 6 hex characters of an "efp-model"
artifact's sha256.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kernel.errors import InputError
from kernel.jobs import JobOptions
from stores.records import ArtifactRef
from stores.store import ArtifactStore
from tasks.engines import get_engine

MODEL_KIND = "efp-model"  # the artifact kind
REGISTRY_KIND = "efp"  # the kind of its registered name
TRAIN_ACTION = "efp.train"


def efp_engine(store: ArtifactStore, options: JobOptions) -> Any:
    """The job's EFP engine; a learned one is loaded with the model its reference names."""
    if options.efp_engine != "learned":
        return get_engine("efp_engine", options.efp_engine)
    from models.efp.learned import LearnedEFP

    return LearnedEFP(model_path(store, _model_ref(options)))


def check_efp_model(store: ArtifactStore, options: JobOptions) -> None:
    """At submission: a learned EFP's model must exist now, not after plan, speak and align have run."""
    model_path(store, _model_ref(options))


def _model_ref(options: JobOptions) -> str:
    from models.efp.learned import TRAIN_HINT

    if not options.efp_model:  # resolved at submission: the job's field, else EMOFLOW_EFP_MODEL
        raise InputError(f"efp_engine=learned needs a model; {TRAIN_HINT}")
    return options.efp_model


def model_path(store: ArtifactStore, ref: str) -> Path:
    """A loadable model file for `ref` (local path, store name or sha256 prefix)."""
    local = Path(ref).expanduser()
    if local.exists():
        return local
    return store.blob_path(find_model(store, ref).sha256)


def find_model(store: ArtifactStore, ref: str) -> ArtifactRef:
    """The "efp-model" artifact a name or sha256 prefix refers to; InputError if none or ambiguous."""
    # identical weights trained under two names are one artifact, and either name finds it
    registered = store.find_model(REGISTRY_KIND, ref)
    if registered is not None:
        return registered.artifact
    if len(ref) >= 6 and all(ch in "0123456789abcdefABCDEF" for ch in ref):
        matches = {a.sha256: a for a in store.find_artifacts(ref) if a.kind == MODEL_KIND}
        if len(matches) == 1:
            return next(iter(matches.values()))
        if len(matches) > 1:
            raise InputError(f"EFP model sha256 prefix {ref!r} is ambiguous; give more characters")
    raise InputError(
        f"no EFP model named {ref!r} in the store, and no such file; "
        f"train one with `python -m flows.train_efp CLIPSET_DIR --name {ref}`"
    )
