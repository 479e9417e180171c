"""Which EFP engine a job uses, with learned models found in the store by name or sha256.

`python -m flows.train_efp` commits each trained model as an "efp-model" artifact and records an
"efp.train" audit event naming it. A model reference (job option `efp_model`, else EMOFLOW_EFP_MODEL)
is, in this order: a local model file or folder; a name (the newest model trained under it); or at least
6 hex characters of an "efp-model" artifact's sha256.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kernel.errors import InputError
from kernel.settings import get_settings
from stores.records import ArtifactRef
from stores.store import ArtifactStore
from tasks.engines import get_engine

MODEL_KIND = "efp-model"
TRAIN_ACTION = "efp.train"


def efp_engine(store: ArtifactStore, options: dict[str, Any]) -> Any:
    """The job's EFP engine; a learned one is loaded with the model its reference names."""
    name = options["efp_engine"]
    if name != "learned":
        return get_engine("efp_engine", name)
    from models.efp.learned import TRAIN_HINT, LearnedEFP

    ref = options.get("efp_model") or get_settings().efp_model
    if not ref:
        raise InputError(f"efp_engine=learned needs a model; {TRAIN_HINT}")
    return LearnedEFP(model_path(store, str(ref)))


def check_efp_model(store: ArtifactStore, options: dict[str, Any]) -> None:
    """At submission: a learned EFP's model must exist now, not after plan, speak and align have run."""
    from models.efp.learned import TRAIN_HINT

    ref = options.get("efp_model") or get_settings().efp_model
    if not ref:
        raise InputError(f"efp_engine=learned needs a model; {TRAIN_HINT}")
    model_path(store, str(ref))


def model_path(store: ArtifactStore, ref: str) -> Path:
    """A loadable model file for `ref` (local path, store name or sha256 prefix)."""
    local = Path(ref).expanduser()
    if local.exists():
        return local
    return store.blob_path(find_model(store, ref).sha256)


def find_model(store: ArtifactStore, ref: str) -> ArtifactRef:
    """The "efp-model" artifact a name or sha256 prefix refers to; InputError if none or ambiguous."""
    sha256 = _newest_sha256_named(store, ref)
    if sha256 is not None:
        return store.artifact(sha256, kind=MODEL_KIND)
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


def _newest_sha256_named(store: ArtifactStore, name: str) -> str | None:
    # names live in the audit trail ("efp.train" events); identical weights trained under two names
    # are one artifact, and either name finds it
    for event in store.audit_events_by_action(TRAIN_ACTION):
        if event.details.get("name") == name and event.details.get("model"):
            return str(event.details["model"])
    return None
