"""steps.engine_digests: which digests a step's engine identity covered, stored as given."""

from __future__ import annotations

from stores.store import ArtifactStore
from tests.stores.helpers import new_job, new_run, step

DIGESTS = {"table:visemes": "ab" * 32, "model:tts": "cd" * 32}


def test_begin_and_commit_round_trip(store: ArtifactStore) -> None:
    run_id = new_run(store)
    refs = step(store, run_id, "plan", {"plan": b"p"}, key="k", engine_digests=DIGESTS)
    step(store, run_id, "speak", {"speech": b"s"})  # none given: an empty mapping
    plan, speak = store.run(run_id).steps
    assert plan.engine_digests == DIGESTS and plan.outputs == refs
    assert speak.engine_digests == {}
    produced = store.producer_of(refs["plan"].sha256)
    assert produced is not None and produced.step.engine_digests == DIGESTS


def test_a_retry_records_the_new_attempts_digests(store: ArtifactStore) -> None:
    run_id = new_run(store)
    common = {"run_id": run_id, "stage": "plan", "engine": "e", "engine_version": "1", "params": {}}
    first = store.begin_step(**common, cache_key="k", inputs={}, engine_digests={"a": "1"})
    store.fail_step(first, "EngineError: flaky")
    assert store.begin_step(**common, cache_key="k", inputs={}, engine_digests={"a": "2"}) == first
    (only,) = store.run(run_id).steps
    assert only.engine_digests == {"a": "2"} and only.attempts == 2


def test_cache_hit_round_trip(store: ArtifactStore) -> None:
    job_id = new_job(store)
    refs = step(store, new_run(store, job_id), "plan", {"plan": b"p"}, key="k")
    second = new_run(store, job_id)
    store.record_cache_hit(
        run_id=second,
        stage="plan",
        engine="e",
        engine_version="1",
        params={},
        cache_key="k",
        inputs={},
        outputs=refs,
        engine_digests=DIGESTS,
    )
    (hit,) = store.run(second).steps
    assert hit.cache_hit and hit.engine_digests == DIGESTS
