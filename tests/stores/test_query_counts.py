"""list_runs and job_runs load any number of runs in a constant number of SQL statements."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

from stores.store import ArtifactStore
from tests.stores.helpers import new_job, new_run, step


@contextmanager
def counting(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def add_runs(store: ArtifactStore, job_id: str, n: int) -> None:
    for i in range(n):
        run_id = new_run(store, job_id)
        plan = step(store, run_id, "plan", {"plan": f"{job_id}{i}".encode()})
        step(store, run_id, "speak", {"speech": f"s{job_id}{i}".encode()}, inputs=plan)


def test_list_runs_and_job_runs_do_not_grow_with_the_number_of_runs(store: ArtifactStore) -> None:
    few, many = new_job(store, "few"), new_job(store, "many")
    add_runs(store, few, 3)

    with counting(store.engine) as statements:
        assert len(store.list_runs()) == 3
    listing_few = len(statements)
    with counting(store.engine) as statements:
        assert len(store.job_runs(few)) == 3
    job_few = len(statements)

    add_runs(store, many, 12)
    with counting(store.engine) as statements:
        runs = store.list_runs()
    assert len(runs) == 15 and all(len(r.steps) == 2 and r.steps[1].inputs for r in runs)
    assert len(statements) == listing_few <= 6  # runs, jobs, steps, lineage, artifacts
    with counting(store.engine) as statements:
        assert len(store.job_runs(many)) == 12
    assert len(statements) == job_few <= 6
