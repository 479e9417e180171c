"""producer_of / consumers_of: which committed step made an artifact, and which steps used it."""

from __future__ import annotations

from stores.store import ArtifactStore
from tests.stores.helpers import new_job, new_run, step


def test_producer_is_the_committed_step_with_its_run(store: ArtifactStore) -> None:
    run_id = new_run(store)
    plan = step(store, run_id, "plan", {"plan": b"p"})
    speech = step(store, run_id, "speak", {"speech": b"s"}, inputs={"plan": plan["plan"]})

    produced = store.producer_of(speech["speech"].sha256)
    assert produced is not None
    assert produced.run_id == run_id and produced.name == "speech"
    assert produced.step.stage == "speak" and produced.step.status == "succeeded"
    assert produced.step.outputs == speech and produced.step.inputs == {"plan": plan["plan"]}


def test_producer_is_the_newest_and_never_a_cache_hit_or_failure(store: ArtifactStore) -> None:
    job_id = new_job(store)
    first = new_run(store, job_id)
    refs = step(store, first, "plan", {"plan": b"same"}, key="k-first")
    second = new_run(store, job_id)
    step(store, second, "plan", {"plan": b"same"}, key="k-second")  # recomputed: same content
    third = new_run(store, job_id)
    store.record_cache_hit(
        run_id=third,
        stage="plan",
        engine="e",
        engine_version="1",
        params={},
        cache_key="k-second",
        inputs={},
        outputs=refs,
    )
    failed = store.begin_step(
        run_id=third, stage="other", engine="e", engine_version="1", params={}, cache_key="x", inputs={}
    )
    store.fail_step(failed, "EngineError: no")

    produced = store.producer_of(refs["plan"].sha256)
    assert produced is not None and produced.run_id == second


def test_producer_of_unknown_or_input_only_artifact_is_none(store: ArtifactStore) -> None:
    assert store.producer_of("0" * 64) is None
    run_id = new_run(store)
    job = store.run(run_id).job
    portrait = store.artifact(job.portrait_sha256)
    step(store, run_id, "plan", {"plan": b"p"}, inputs={"portrait": portrait})
    assert store.producer_of(portrait.sha256) is None
    assert store.producer_of(portrait.sha256, kind="video") is None


def test_consumers_are_every_step_that_took_it_as_input(store: ArtifactStore) -> None:
    run_id = new_run(store)
    plan = step(store, run_id, "plan", {"plan": b"p"})["plan"]
    speak = step(store, run_id, "speak", {"speech": b"s"}, inputs={"plan": plan})
    step(store, run_id, "align", {"timings": b"t"}, inputs={"script_plan": plan, "speech": speak["speech"]})
    other_run = new_run(store)
    step(store, other_run, "speak", {"speech": b"s2"}, inputs={"plan": plan})

    consumers = store.consumers_of(plan.sha256)
    assert [(c.run_id, c.step.stage, c.name) for c in consumers] == [
        (run_id, "speak", "plan"),
        (run_id, "align", "script_plan"),
        (other_run, "speak", "plan"),
    ]
    assert store.consumers_of(speak["speech"].sha256)[0].step.stage == "align"
    assert store.consumers_of("0" * 64) == []
    assert store.consumers_of(plan.sha256, kind="video") == []
