from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from kernel.errors import InputError, StoreError
from stores.records import NewArtifact
from stores.schema import Base, utcnow
from stores.store import ArtifactStore


def submit(store: ArtifactStore) -> tuple[str, str]:
    portrait = store.put_artifact(NewArtifact("portrait", "portrait", "image/png", data=b"\x89PNG fake"))
    job_id = store.submit_job(
        name="t", submitter="ann", script="Hello.", description="", portrait=portrait, options={"fps": 25}
    )
    return job_id, store.start_run(job_id, prefect_flow_run_id="flow-1")


def begin(store: ArtifactStore, run_id: str, key: str = "k1", stage: str = "plan") -> int:
    return store.begin_step(
        run_id=run_id, stage=stage, engine="rules", engine_version="1", params={}, cache_key=key, inputs={}
    )


def test_migration_matches_the_orm_schema(store: ArtifactStore) -> None:
    with store.engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diffs == []


def test_opening_twice_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    ArtifactStore(url, tmp_path / "b").close()
    ArtifactStore(url, tmp_path / "b").close()


def test_sqlite_runs_in_wal_mode(store: ArtifactStore) -> None:
    if store.engine.dialect.name != "sqlite":
        pytest.skip("SQLite pragmas")
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 30000


def test_step_lifecycle_records_outputs_lineage_and_audit(store: ArtifactStore) -> None:
    _job_id, run_id = submit(store)
    step = begin(store, run_id)
    refs = store.commit_step(step, [NewArtifact("plan", "plan", "application/json", data=b"{}")])
    store.finish_run(run_id)

    record = store.run(run_id[:8])
    assert record.status == "succeeded" and record.job.status == "succeeded"
    (only,) = record.steps
    assert only.status == "succeeded" and not only.cache_hit and only.seconds is not None
    assert only.outputs == refs
    assert store.read_bytes(refs["plan"].sha256) == b"{}"
    actions = [e.action for e in store.audit_events(run_id=run_id)]
    assert actions == ["run.start", "step.start", "step.finish", "run.finish"]
    assert next(e.action for e in store.audit_events()) == "job.submit"


def test_cached_outputs_are_found_by_key_across_runs(store: ArtifactStore) -> None:
    job_id, run_id = submit(store)
    step = begin(store, run_id, key="same")
    refs = store.commit_step(step, [NewArtifact("plan", "plan", "application/json", data=b"[1]")])
    assert store.cached_outputs("other") is None
    assert store.cached_outputs("same") == refs

    second = store.start_run(job_id, None)
    store.record_cache_hit(
        run_id=second,
        stage="plan",
        engine="rules",
        engine_version="1",
        params={},
        cache_key="same",
        inputs={},
        outputs=refs,
    )
    (hit,) = store.run(second).steps
    assert hit.cache_hit and hit.status == "cached" and hit.outputs == refs


def test_cache_ignores_steps_whose_blob_vanished(store: ArtifactStore) -> None:
    _, run_id = submit(store)
    refs = store.commit_step(
        begin(store, run_id), [NewArtifact("plan", "plan", "application/json", data=b"x")]
    )
    store.blobs.path_for(refs["plan"].sha256).unlink()
    assert store.cached_outputs("k1") is None


def test_failed_step_commits_no_artifact(store: ArtifactStore) -> None:
    _, run_id = submit(store)
    step = begin(store, run_id)
    store.fail_step(step, "InputError: unknown emotion")
    (failed,) = store.run(run_id).steps
    assert failed.status == "failed" and failed.outputs == {} and "unknown emotion" in failed.error
    assert store.cached_outputs("k1") is None
    assert store.audit_events(run_id=run_id)[-1].action == "step.fail"


def test_retry_reopens_the_same_step_and_counts_attempts(store: ArtifactStore) -> None:
    _, run_id = submit(store)
    first = begin(store, run_id)
    store.fail_step(first, "EngineError: flaky")
    again = begin(store, run_id)
    assert again == first
    store.commit_step(again, [NewArtifact("plan", "plan", "application/json", data=b"ok")])
    (step,) = store.run(run_id).steps
    assert step.attempts == 2 and step.status == "succeeded" and step.error is None


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events"]
)
def test_audit_events_are_append_only_in_the_database(store: ArtifactStore, statement: str) -> None:
    submit(store)
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as connection:
        connection.execute(text(statement))
    assert len(store.audit_events()) == 2


def test_unknown_and_ambiguous_runs_are_input_errors(store: ArtifactStore) -> None:
    submit(store)
    with pytest.raises(InputError, match="no run"):
        store.run("nope")
    with pytest.raises(StoreError):
        store.artifact("f" * 64)


def test_concurrent_writers_do_not_hit_database_locked(store: ArtifactStore) -> None:
    _, run_id = submit(store)

    def write(i: int) -> str:
        step = begin(store, run_id, key=f"k{i}", stage=f"stage{i}")
        refs = store.commit_step(step, [NewArtifact("out", "blob", "text/plain", data=f"{i}".encode())])
        return refs["out"].sha256

    with ThreadPoolExecutor(max_workers=16) as pool:
        shas = list(pool.map(write, range(48)))
    assert len(set(shas)) == 48
    assert len(store.run(run_id).steps) == 48


def test_same_content_from_two_threads_is_one_artifact(store: ArtifactStore) -> None:
    def put(_: int) -> int:
        return store.put_artifact(NewArtifact("x", "speech", "audio/wav", data=b"same bytes")).size

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(put, range(16))) == {10}
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM artifacts")).scalar() == 1


def test_export_writes_verified_copy_and_audits(store: ArtifactStore, tmp_path: Path) -> None:
    ref = store.put_artifact(NewArtifact("c", "curve", "application/json", data=b'{"a": 1}'))
    out = store.export(ref.sha256, tmp_path / "out" / "curve.json", actor="ann")
    assert out.read_bytes() == b'{"a": 1}'
    assert store.audit_events()[-1].action == "artifact.export"


def test_export_to_unwritable_place_is_an_input_error(store: ArtifactStore, tmp_path: Path) -> None:
    ref = store.put_artifact(NewArtifact("c", "curve", "application/json", data=b"{}"))
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(InputError, match="cannot write"):
        store.export(ref.sha256, blocker / "curve.json")


def test_overlapping_drains_claim_each_pending_job_once(store: ArtifactStore) -> None:
    portrait = store.put_artifact(NewArtifact("portrait", "portrait", "image/png", data=b"png"))
    queued = [
        store.submit_job(
            name=f"q{i}",
            submitter="s",
            script="Hi.",
            description="",
            portrait=portrait,
            options={},
            queued=True,
        )
        for i in range(12)
    ]
    store.submit_job(name="now", submitter="s", script="Hi.", description="", portrait=portrait, options={})

    with ThreadPoolExecutor(max_workers=4) as pool:
        claims = list(pool.map(lambda n: store.claim_pending_jobs(f"drain{n}"), range(4)))
    claimed = [job_id for claim in claims for job_id in claim]
    assert sorted(claimed) == sorted(queued)  # every queued job once; the run-now job never
    assert store.claim_pending_jobs("late") == []
    assert sum(e.action == "job.claim" for e in store.audit_events()) == 12


def test_a_drain_that_loses_its_oldest_job_to_another_takes_the_next(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # two drains asking for one job each both see the same oldest one; the loser must not stop there
    portrait = store.put_artifact(NewArtifact("portrait", "portrait", "image/png", data=b"png"))
    first, second = (
        store.submit_job(
            name=name, submitter="s", script="Hi.", description="", portrait=portrait, options={}, queued=True
        )
        for name in ("first", "second")
    )
    pending_job_ids = store._pending_job_ids
    raced: list[str] = []

    def another_drain_claims_first(limit: int | None) -> list[str]:
        found = pending_job_ids(limit)
        if not raced:
            raced.append(found[0])
            assert store._claim(found[0], "other", "host-b:1", utcnow() + timedelta(seconds=30))
        return found

    monkeypatch.setattr(store, "_pending_job_ids", another_drain_claims_first)
    assert store.claim_pending_jobs("late", 1) == [second]
    assert raced == [first]
    assert store.claim_pending_jobs("last", 1) == []
