"""The fast path's bulk store calls write and read what their one-at-a-time counterparts do: cache-hit
steps with their lineage and audit events, exports, key, job, artifact and run lookups. (That a manifest
resolved in bulk records what the same jobs narrated one at a time record, Prefect included, is in
tests/flows/test_fast_path.py, on its tree of fresh processes.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kernel.errors import StoreError
from stores.records import ArtifactRef, NewArtifact
from stores.runs import CacheHit
from stores.store import ArtifactStore
from tests.stores.helpers import new_job, new_run, step


def _hits(store: ArtifactStore, run_id: str) -> list[CacheHit]:
    """Two cache hits reusing committed outputs: one with an input, one with two outputs."""
    source = new_run(store)
    planned = step(store, source, "plan", {"plan": b"a plan"}, key="k-plan")
    spoken = step(
        store, source, "speak", {"speech": b"speech", "timings": b"t"}, inputs=planned, key="k-speak"
    )
    store.finish_run(source)
    return [
        CacheHit(run_id, "plan", "rules", "1", {"a": 1}, "k-plan", {}, planned, {"code": "c1"}),
        CacheHit(run_id, "speak", "espeak", "2", {"b": [2]}, "k-speak", planned, spoken, None),
    ]


def _shape(store: ArtifactStore, run_id: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(steps with their lineage, audit events) of a run, without ids and times."""
    steps = [
        (
            *(s.stage, s.engine, s.engine_version, s.params, s.cache_key, s.status, s.cache_hit),
            *(s.attempts, s.seconds, s.engine_digests),
            {n: (a.sha256, a.kind) for n, a in s.inputs.items()},
            {n: (a.sha256, a.kind) for n, a in s.outputs.items()},
        )
        for s in store.run(run_id).steps
    ]
    events = [
        (e.action, e.actor, e.job_id, {k: v for k, v in e.details.items() if k not in ("pid", "host")})
        for e in store.audit_events(run_id=run_id)
    ]
    return steps, events


def test_bulk_cache_hits_write_what_one_call_per_hit_writes(store: ArtifactStore) -> None:
    one, bulk = new_run(store), new_run(store)
    hits = _hits(store, one)
    for hit in hits:
        store.record_cache_hit(**vars(hit))
    ids = store.record_cache_hits([CacheHit(**(vars(hit) | {"run_id": bulk})) for hit in hits])
    assert ids == sorted(ids) and [s.id for s in store.run(bulk).steps] == ids
    one_steps, one_events = _shape(store, one)
    bulk_steps, bulk_events = _shape(store, bulk)
    assert bulk_steps == one_steps and len(bulk_steps) == 2
    assert [e[:2] + e[3:] for e in bulk_events] == [e[:2] + e[3:] for e in one_events]
    # the audit events point at the steps they describe, in order
    assert [e.step_id for e in store.audit_events(run_id=bulk) if e.action == "step.cache_hit"] == ids


def test_bulk_cache_hits_refuse_an_unknown_artifact_and_write_nothing(store: ArtifactStore) -> None:
    run_id = new_run(store)
    ghost = ArtifactRef("0" * 64, "blob", "application/octet-stream", 1, "file:///nowhere", {})
    hit = CacheHit(run_id, "plan", "rules", "1", {}, "k", {}, {"plan": ghost})
    with pytest.raises(Exception, match="no blob artifact"):
        store.record_cache_hits([hit])
    assert store.run(run_id).steps == []
    assert [e.action for e in store.audit_events(run_id=run_id)] == ["run.start"]


def test_bulk_lookups_answer_as_one_lookup_each(store: ArtifactStore) -> None:
    run_id = new_run(store)
    hits = _hits(store, run_id)
    keys = ["k-plan", "k-speak", "k-missing"]
    assert store.cached_outputs_many(keys) == {
        key: outputs for key in keys if (outputs := store.cached_outputs(key)) is not None
    }
    assert set(store.cached_outputs_many(keys)) == {"k-plan", "k-speak"}
    # a missing blob makes a key unusable, as for cached_outputs
    store.blob_path(hits[0].outputs["plan"].sha256).unlink()
    assert "k-plan" not in store.cached_outputs_many(keys) and store.cached_outputs("k-plan") is None

    job_ids = [new_job(store, "a"), new_job(store, "b")]
    assert store.jobs([*job_ids, "nobody"]) == {job_id: store.job(job_id) for job_id in job_ids}
    ref = hits[1].outputs["speech"]
    found = store.artifacts_by_hash([(ref.sha256, ref.kind), (ref.sha256, "other"), ("f" * 64, "blob")])
    assert found == {(ref.sha256, ref.kind): store.artifact(ref.sha256, ref.kind)}
    runs = store.runs_by_id([run_id, store.list_runs(1)[0].id])
    assert [r.id for r in runs] == [run_id, store.list_runs(1)[0].id]


def test_bulk_exports_write_the_files_and_events_of_one_export_each(
    store: ArtifactStore, tmp_path: Path
) -> None:
    one, bulk = new_run(store), new_run(store)
    refs = [store.put_artifact(NewArtifact(n, "blob", "text/plain", data=n.encode())) for n in ("a", "b")]
    for ref, name in zip(refs, ("a.txt", "b.txt"), strict=True):
        store.export(ref.sha256, tmp_path / "one" / name, run_id=one)
    paths = store.export_many(
        [(ref.sha256, tmp_path / "bulk" / n) for ref, n in zip(refs, ("a.txt", "b.txt"), strict=True)],
        run_id=bulk,
    )
    assert [p.read_bytes() for p in paths] == [b"a", b"b"]

    def exports(run_id: str, folder: str) -> list[tuple[str, str]]:
        return [
            (e.details["sha256"], str(Path(e.details["path"]).relative_to(tmp_path.resolve() / folder)))
            for e in store.audit_events(run_id=run_id)
            if e.action == "artifact.export"
        ]

    assert exports(bulk, "bulk") == exports(one, "one") and len(exports(bulk, "bulk")) == 2
    # a copy that fails still leaves the events of the copies before it
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")
    with pytest.raises(Exception, match="cannot write"):
        store.export_many(
            [(refs[0].sha256, tmp_path / "late" / "a.txt"), (refs[1].sha256, blocked / "b.txt")], run_id=one
        )
    paths_after = [e.details["path"] for e in store.audit_events(run_id=one) if e.action == "artifact.export"]
    assert len(paths_after) == 3 and paths_after[-1] == str((tmp_path / "late" / "a.txt").resolve())


def test_runs_are_linked_to_their_flow_runs_in_one_call_and_never_relinked(store: ArtifactStore) -> None:
    first, second, third = new_run(store), new_run(store), new_run(store)
    store.link_flow_runs({first: "flow-run-1", second: "flow-run-2"})
    assert [r.prefect_flow_run_id for r in store.runs_by_id([first, second])] == ["flow-run-1", "flow-run-2"]
    store.link_flow_runs({first: "flow-run-1"})  # the same link again changes nothing
    with pytest.raises(StoreError, match="belongs to Prefect flow run flow-run-1"):
        store.link_flow_runs({third: "flow-run-5", first: "flow-run-3"})
    with pytest.raises(StoreError, match="no run"):
        store.link_flow_runs({"no-such-run": "flow-run-4"})
    # a refused call writes nothing: not even the run it could have linked
    linked = [r.prefect_flow_run_id for r in store.runs_by_id([first, second, third])]
    assert linked == ["flow-run-1", "flow-run-2", None]
