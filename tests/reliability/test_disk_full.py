"""A write that fails mid-blob (disk full, permission denied) leaves no partial artifact."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from emoflow.cli import app
from kernel.errors import StoreError
from stores import blobs as blobs_module
from stores.records import NewArtifact
from stores.store import ArtifactStore
from stores.verify import verify_store

FAILURES = [(errno.ENOSPC, "No space left on device"), (errno.EACCES, "Permission denied")]


def fail_mid_write(monkeypatch: pytest.MonkeyPatch, code: int, message: str) -> None:
    """Half of the first write reaches the temp file, then the disk 'fills up'."""
    original = blobs_module._HashingWriter.write

    def write(self: blobs_module._HashingWriter, data: bytes) -> int:
        original(self, data[: len(data) // 2])
        raise OSError(code, message)

    monkeypatch.setattr(blobs_module._HashingWriter, "write", write)


def counts(store: ArtifactStore) -> tuple[int, ...]:
    with store.engine.connect() as connection:
        return tuple(
            connection.execute(text(f"SELECT count(*) FROM {t}")).scalar()
            for t in ("jobs", "runs", "steps", "artifacts")
        )


@pytest.mark.parametrize(("code", "message"), FAILURES)
def test_commit_step_fails_cleanly_and_leaves_no_partial_artifact(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch, code: int, message: str
) -> None:
    portrait = store.put_artifact(NewArtifact("portrait", "portrait", "image/png", data=b"\x89PNG"))
    job_id = store.submit_job(
        name="f", submitter="t", script="Hi.", description="", portrait=portrait, options={}
    )
    run_id = store.start_run(job_id, None)
    step = store.begin_step(
        run_id=run_id, stage="plan", engine="e", engine_version="1", params={}, cache_key="k", inputs={}
    )
    fail_mid_write(monkeypatch, code, message)
    with pytest.raises(StoreError, match=f"could not write blob under .*{message}"):
        store.commit_step(step, [NewArtifact("plan", "plan", "application/json", data=b"x" * 4096)])
    store.fail_step(step, "disk")
    assert not any(store.blobs.tmp.iterdir())  # the partial temp file is gone
    assert counts(store)[3] == 1  # only the portrait
    assert store.cached_outputs("k") is None
    assert [p.kind for p in verify_store(store).problems] == []


@pytest.mark.parametrize(("code", "message"), FAILURES)
@pytest.mark.parametrize("emoflow_home", ["sqlite"], indirect=True)
def test_cli_reports_the_write_failure_on_one_line(
    emoflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, message: str
) -> None:
    from tasks.context import open_store

    job = tmp_path / "job.yaml"
    job.write_text(
        "script: Hello.\nportrait: skimage:astronaut\nsize: 128\ntts_engine: espeak\n", encoding="utf-8"
    )
    fail_mid_write(monkeypatch, code, message)
    result = CliRunner().invoke(app, ["narrate", str(job)])
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert line.startswith("error: could not write blob under") and message in line
    store = open_store()
    assert counts(store) == (0, 0, 0, 0)
    assert not any(store.blobs.tmp.iterdir()) and not list(store.blobs.iter_shas())
