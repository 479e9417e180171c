"""The run page and run JSON show what each step's cache key covers (its engine digests).
The run is recorded straight into the store: no flow runs."""

from __future__ import annotations

import pytest

from stores.records import NewArtifact
from tests.web.conftest import Inspector

DIGESTS = {"source": "a1" * 32, "table:facs.yaml": "b2" * 32, "model:voice.onnx": "c3" * 32}


@pytest.fixture(scope="module")
def run_id(inspector: Inspector) -> str:
    store = inspector.store
    portrait = store.put_artifact(NewArtifact("portrait", "portrait", "image/png", data=b"not drawn"))
    job_id = store.submit_job(
        name="digests", submitter="alice", script="Hi.", description="", portrait=portrait, options={}
    )
    run = store.start_run(job_id, None)
    common = {"run_id": run, "engine_version": "1", "params": {}, "inputs": {"portrait": portrait}}
    plan = store.begin_step(
        stage="plan", engine="rules", cache_key="1" * 64, engine_digests=DIGESTS, **common
    )
    store.commit_step(plan, [NewArtifact("plan", "plan", "application/json", data=b"{}")])
    bare = store.begin_step(stage="speak", engine="piper", cache_key="2" * 64, **common)
    store.commit_step(bare, [NewArtifact("speech", "speech", "audio/wav", data=b"RIFF")])
    store.finish_run(run)
    return run


def test_run_json_has_engine_digests(inspector: Inspector, run_id: str) -> None:
    run = inspector.client.get(f"/runs/{run_id}", headers=inspector.viewer).json()
    steps = {s["stage"]: s for s in run["steps"]}
    assert steps["plan"]["engine_digests"] == DIGESTS
    assert steps["speak"]["engine_digests"] == {}


def test_run_page_folds_the_digests_per_step(inspector: Inspector, run_id: str) -> None:
    browser = inspector.browser()
    browser.post("/ui/login", data={"token": inspector.viewer_secret})
    page = browser.get(f"/ui/runs/{run_id}")
    assert page.status_code == 200
    assert page.text.count("what the cache key covers") == 1  # only the step that has digests
    for key, hex_ in DIGESTS.items():
        assert f'<code>{key}</code> <code title="{hex_}">{hex_[:12]}</code>' in page.text
    assert "no engine digests recorded" in page.text  # the speak step
    assert (
        f"/artifacts/{inspector.store.run(run_id).steps[1].outputs['speech'].sha256}?name=speech" in page.text
    )
