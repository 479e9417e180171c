"""`store verify [--repair]` on hand-made damage: tampering, orphans, temp files, dead runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emoflow.commands.store import store_app
from kernel.errors import IntegrityError
from stores.records import NewArtifact
from stores.store import ArtifactStore
from stores.verify import verify_store

runner = CliRunner()


def committed_step(store: ArtifactStore, data: bytes = b'{"plan": 1}') -> tuple[str, str]:
    """A run with one succeeded step; returns (run id, the step's output sha256)."""
    portrait = store.put_artifact(NewArtifact("portrait", "portrait", "image/png", data=b"\x89PNG x"))
    job_id = store.submit_job(
        name="v", submitter="t", script="Hi.", description="", portrait=portrait, options={}
    )
    run_id = store.start_run(job_id, None)
    step = store.begin_step(
        run_id=run_id, stage="plan", engine="e", engine_version="1", params={}, cache_key="k", inputs={}
    )
    refs = store.commit_step(step, [NewArtifact("plan", "plan", "application/json", data=data)])
    store.finish_run(run_id)
    return run_id, refs["plan"].sha256


def test_a_healthy_store_verifies_clean(store: ArtifactStore) -> None:
    committed_step(store)
    report = verify_store(store)
    assert report.ok and report.problems == [] and report.blobs_checked == 2


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "append", "replace"])
def test_tampered_blob_is_caught_on_read_and_by_verify_and_repair_forces_recompute(
    store: ArtifactStore, damage: str
) -> None:
    _, sha = committed_step(store)
    path = store.blobs.path_for(sha)
    data = path.read_bytes()
    tampered = {
        "flip_byte": bytes([data[0] ^ 1]) + data[1:],
        "truncate": data[:-1],
        "append": data + b" ",
        "replace": b"something else entirely",
    }[damage]
    path.write_bytes(tampered)

    with pytest.raises(IntegrityError, match="is corrupt"):
        store.read_bytes(sha)
    report = verify_store(store)
    (problem,) = report.problems
    assert (problem.kind, problem.subject, report.ok) == ("corrupt_blob", sha, False)

    repaired = verify_store(store, repair=True, actor="auditor")
    assert repaired.ok and len(repaired.invalidated_steps) == 1
    (moved,) = repaired.quarantined
    assert Path(moved).read_bytes() == tampered  # quarantined, never deleted
    assert not path.exists() and store.cached_outputs("k") is None  # the next run recomputes
    event = store.audit_events()[-1]
    assert (event.action, event.actor) == ("store.repair", "auditor")
    assert event.details["problems"] == {"corrupt_blob": 1}
    assert verify_store(store).ok


def test_orphan_blob_and_temp_file_are_reported_and_quarantined(store: ArtifactStore) -> None:
    committed_step(store)
    orphan = store.blobs.put_bytes(b"written, never committed")
    part = store.blobs.tmp / "dead.part"
    part.write_bytes(b"half a bl")
    report = verify_store(store)
    assert {(p.kind, p.subject) for p in report.problems} == {
        ("orphan_blob", orphan),
        ("temp_file", str(part)),
    }
    repaired = verify_store(store, repair=True)
    assert repaired.ok and len(repaired.quarantined) == 2 and not repaired.invalidated_steps
    assert not part.exists() and not store.blobs.exists(orphan)
    assert verify_store(store).ok


def test_missing_blob_invalidates_the_step_that_made_it(store: ArtifactStore) -> None:
    _, sha = committed_step(store)
    store.blobs.path_for(sha).unlink()
    report = verify_store(store)
    assert [p.kind for p in report.problems] == ["missing_blob"]
    assert verify_store(store, repair=True).invalidated_steps
    assert verify_store(store).ok


def test_step_left_running_by_a_dead_process_is_reported_and_closed(store: ArtifactStore) -> None:
    portrait = store.put_artifact(NewArtifact("portrait", "portrait", "image/png", data=b"\x89PNG y"))
    job_id = store.submit_job(
        name="d", submitter="t", script="Hi.", description="", portrait=portrait, options={}
    )
    # a real run.start from a process that has since exited
    code = (
        "import sys; from stores.store import ArtifactStore; "
        "s = ArtifactStore(sys.argv[1], sys.argv[2]); r = s.start_run(sys.argv[3], None); "
        "s.begin_step(run_id=r, stage='plan', engine='e', engine_version='1', params={}, "
        "cache_key='k', inputs={}); print(r)"
    )
    url = store.engine.url.render_as_string(hide_password=False)
    done = subprocess.run(
        [sys.executable, "-c", code, url, str(store.blobs.root), job_id],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    run_id = done.stdout.strip()
    report = verify_store(store)
    assert sorted(p.kind for p in report.problems) == ["abandoned_run", "stuck_step"]
    assert verify_store(store, repair=True).ok
    run = store.run(run_id)
    assert run.status == "failed" and "abandoned" in (run.error or "")
    assert run.steps[0].status == "failed" and verify_store(store).ok


def test_a_live_run_is_not_abandoned(store: ArtifactStore) -> None:
    portrait = store.put_artifact(NewArtifact("portrait", "portrait", "image/png", data=b"\x89PNG z"))
    job_id = store.submit_job(
        name="l", submitter="t", script="Hi.", description="", portrait=portrait, options={}
    )
    store.start_run(job_id, None)  # this very process: alive
    assert verify_store(store).ok


@pytest.mark.parametrize("emoflow_home", ["sqlite"], indirect=True)
def test_cli_reports_json_and_exits_1_until_repaired(emoflow_home: Path) -> None:
    from tasks.context import open_store

    store = open_store()
    _, sha = committed_step(store)
    store.blobs.path_for(sha).write_bytes(b"tampered")

    shown = runner.invoke(store_app, ["verify"])
    assert shown.exit_code == 1 and "corrupt_blob" in shown.stdout
    as_json = runner.invoke(store_app, ["verify", "--json"])
    document = json.loads(as_json.stdout)
    assert as_json.exit_code == 1 and document["ok"] is False
    assert [p["kind"] for p in document["problems"]] == ["corrupt_blob"]
    repaired = runner.invoke(store_app, ["verify", "--repair"])
    assert repaired.exit_code == 0 and "quarantined:" in repaired.stdout
    assert runner.invoke(store_app, ["verify"]).exit_code == 0
