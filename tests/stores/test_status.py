"""Status enums: StrEnums whose values are exactly the strings in the database."""

from __future__ import annotations

from sqlalchemy import text

from stores.records import JobStatus, RunStatus, StepStatus
from stores.store import ArtifactStore
from tests.stores.helpers import new_run, portrait, step


def test_values_are_the_stored_strings() -> None:
    assert [s.value for s in JobStatus] == [
        "pending",
        "claimed",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    ]
    assert [s.value for s in RunStatus] == ["running", "succeeded", "failed", "abandoned", "cancelled"]
    assert [s.value for s in StepStatus] == ["running", "succeeded", "failed", "cached", "invalidated"]
    assert StepStatus.CACHED == "cached" and f"{RunStatus.FAILED}" == "failed"
    assert {"succeeded": 1}[StepStatus.SUCCEEDED] == 1


def test_records_carry_enums_and_columns_hold_plain_strings(store: ArtifactStore) -> None:
    queued = store.submit_job(
        name="q",
        submitter="s",
        script="Hi.",
        description="",
        portrait=portrait(store),
        options={},
        queued=True,
    )
    assert store.job(queued).status is JobStatus.PENDING
    run_id = new_run(store)
    step(store, run_id, "plan", {"plan": b"p"})
    store.finish_run(run_id)
    run = store.run(run_id)
    assert run.status is RunStatus.SUCCEEDED and run.job.status is JobStatus.SUCCEEDED
    assert run.steps[0].status is StepStatus.SUCCEEDED
    with store.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT status FROM jobs UNION ALL SELECT status FROM runs UNION ALL SELECT status FROM steps"
            )
        ).scalars()
        assert sorted(rows) == ["pending", "succeeded", "succeeded", "succeeded"]
