"""Migration 0003 on a store created at 0002: steps keep their rows (with `{}` digests) and model names
recorded only in the audit trail become registrations."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from stores.db import alembic_config, make_engine
from stores.store import ArtifactStore
from tests.conftest import BACKENDS, database_url

TS = sa.DateTime(timezone=True)
NOW = datetime(2026, 11, 1, tzinfo=UTC)
MODEL_SHA = "ab" * 32

# the tables as revision 0002 left them (only the columns these rows need)
JOBS = sa.table(
    "jobs",
    *(sa.column(c, sa.String()) for c in ("id", "name", "submitter", "script", "description")),
    sa.column("portrait_sha256", sa.String()),
    sa.column("options", sa.JSON()),
    sa.column("status", sa.String()),
    sa.column("submitted_at", TS),
)
RUNS = sa.table(
    "runs",
    *(sa.column(c, sa.String()) for c in ("id", "job_id", "status")),
    sa.column("started_at", TS),
)
STEPS = sa.table(
    "steps",
    *(
        sa.column(c, sa.String())
        for c in ("run_id", "stage", "engine", "engine_version", "cache_key", "status")
    ),
    sa.column("params", sa.JSON()),
    sa.column("cache_hit", sa.Boolean()),
    sa.column("attempts", sa.Integer()),
    sa.column("started_at", TS),
    sa.column("finished_at", TS),
)
ARTIFACTS = sa.table(
    "artifacts",
    *(sa.column(c, sa.String()) for c in ("sha256", "kind", "media_type", "uri")),
    sa.column("size", sa.BigInteger()),
    sa.column("metadata", sa.JSON()),
    sa.column("created_at", TS),
)
EVENTS = sa.table(
    "audit_events",
    sa.column("at", TS),
    *(sa.column(c, sa.String()) for c in ("actor", "action")),
    sa.column("details", sa.JSON()),
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrade_from_0002_keeps_steps_and_registers_trained_models(backend: str, tmp_path: Path) -> None:
    url = database_url(backend, tmp_path)
    engine = make_engine(url)
    command.upgrade(alembic_config(engine), "0002")
    with engine.begin() as connection:
        connection.execute(
            JOBS.insert().values(
                id="job-1",
                name="old",
                submitter="ann",
                script="Hi.",
                description="",
                portrait_sha256="cd" * 32,
                options={},
                status="succeeded",
                submitted_at=NOW,
            )
        )
        connection.execute(
            RUNS.insert().values(id="run-1", job_id="job-1", status="succeeded", started_at=NOW)
        )
        connection.execute(
            STEPS.insert().values(
                run_id="run-1",
                stage="plan",
                engine="rules",
                engine_version="1",
                params={"a": 1},
                cache_key="k",
                status="succeeded",
                cache_hit=False,
                attempts=1,
                started_at=NOW,
                finished_at=NOW,
            )
        )
        connection.execute(
            ARTIFACTS.insert().values(
                sha256=MODEL_SHA,
                kind="efp-model",
                media_type="application/vnd.safetensors",
                uri="file:///m",
                size=3,
                metadata={},
                created_at=NOW,
            )
        )
        for name, sha in (("tones", MODEL_SHA), ("gone", "ef" * 32)):  # "gone" has no artifact row
            connection.execute(
                EVENTS.insert().values(
                    at=NOW,
                    actor="ann",
                    action="efp.train",
                    details={"name": name, "model": sha, "metrics": {}},
                )
            )
    engine.dispose()

    store = ArtifactStore(url, tmp_path / "blobs")  # migrates to head on open
    try:
        (step,) = store.run("run-1").steps
        assert step.engine_digests == {} and step.params == {"a": 1} and step.status == "succeeded"
        model = store.find_model("efp", "tones")
        assert model is not None and model.sha256 == MODEL_SHA and model.version == 1 and model.actor == "ann"
        assert store.find_model("efp", "gone") is None
        assert [e.action for e in store.audit_events()] == ["efp.train", "efp.train"]  # untouched
        # new steps take digests; the audit trail is still append-only
        run_id = store.start_run("job-1", None)
        store.begin_step(
            run_id=run_id,
            stage="plan",
            engine="rules",
            engine_version="1",
            params={},
            cache_key="k2",
            inputs={},
            engine_digests={"t": "1"},
        )
        assert store.run(run_id).steps[0].engine_digests == {"t": "1"}
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), store.engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM audit_events"))
    finally:
        store.close()


def test_head_revision_is_alembics_head() -> None:
    """stores.db skips alembic for a store at HEAD_REVISION: it must name the newest migration."""
    from alembic.script import ScriptDirectory

    from stores.db import HEAD_REVISION

    engine = make_engine("sqlite://")
    assert ScriptDirectory.from_config(alembic_config(engine)).get_current_head() == HEAD_REVISION
