"""The narrate flow with blobs in an fsspec object store (fsspec's in-memory filesystem)."""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import pytest

from flows.narrate import submit_and_narrate
from kernel.jobs import parse_job
from tasks.context import open_store, reset_stores


@pytest.mark.parametrize("emoflow_home", ["sqlite"], indirect=True)  # not about the database
def test_narrate_with_blobs_in_an_object_store(
    prefect_api: str, emoflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = f"memory://emoflow-{uuid.uuid4().hex}/blobs"
    monkeypatch.setenv("EMOFLOW_BLOB_ROOT", bucket)
    reset_stores()
    spec = parse_job(
        {"script": "Stored far away.", "portrait": "skimage:astronaut", "tts_engine": "espeak", "size": 128},
        tmp_path,
    )
    result = submit_and_narrate(spec)
    store = open_store()
    outputs = [ref for step in store.run(result.run_id).steps for ref in step.outputs.values()]
    assert outputs and all(ref.uri.startswith("memory://") for ref in outputs)
    assert len(fsspec.filesystem("memory").find(bucket.removeprefix("memory://"))) >= len(outputs)
    assert Path(result.published["video.mp4"]).stat().st_size > 0

    again = submit_and_narrate(spec)
    assert all(step.cache_hit for step in store.run(again.run_id).steps)
