"""What a narration returns and how its run is closed in the store; without Prefect, so the flow and
the store-only fast path (flows/fast_path.py) share them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from stores.store import SYSTEM_ACTOR, ArtifactStore


@dataclass(frozen=True)
class Narration:
    job_id: str
    run_id: str
    published: dict[str, str]  # file name -> path


@dataclass(frozen=True)
class JobOutcome:
    row_id: str
    where: str  # manifest file:line, or "queue"
    status: str  # succeeded | failed | rejected
    job_id: str | None = None
    run_id: str | None = None
    computed_steps: int | None = None
    video: str | None = None
    error: str | None = None


@contextmanager
def recorded_run(store: ArtifactStore, run_id: str, actor: str = SYSTEM_ACTOR) -> Iterator[None]:
    """The run is finished in the store whatever happens: succeeded, or failed with the error."""
    try:
        yield
    except BaseException as exc:
        store.finish_run(run_id, error=str(exc) or type(exc).__name__, actor=actor)
        raise
    store.finish_run(run_id, actor=actor)
