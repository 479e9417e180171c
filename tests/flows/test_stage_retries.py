"""Prefect retries transient failures through run_stage; the store records one step, two attempts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from kernel.errors import EngineError, InputError
from models.identity import EngineIdentity
from stores.records import ArtifactRef, NewArtifact
from tasks.context import open_store
from tasks.stage import Stage, retry_transient, run_stage

calls: list[str] = []


@dataclass(frozen=True)
class Out:
    out: ArtifactRef


FLAKY = Stage("plan", inputs=(), outputs=Out)


class FlakyEngine:
    name = "flaky"
    version = "1"

    def identity(self) -> EngineIdentity:
        return EngineIdentity(self.name, self.version, {"source": "0" * 64})


def start_run() -> str:
    store = open_store()
    portrait = store.put_artifact(NewArtifact("p", "portrait", "image/png", data=b"png"))
    job_id = store.submit_job(
        name="r", submitter="t", script="Hi.", description="", portrait=portrait, options={}
    )
    return store.start_run(job_id, None)


@task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def flaky_stage(run_id: str, error: str) -> str:
    def compute(_workdir: Path, _progress: object) -> list[NewArtifact]:
        calls.append(error)
        if len(calls) == 1:
            raise EngineError("engine hiccup") if error == "engine" else InputError("bad script")
        return [NewArtifact("out", "plan", "application/json", data=b"{}")]

    outputs = run_stage(
        open_store(),
        FLAKY,
        run_id=run_id,
        engine=FlakyEngine(),
        params={"error": error},
        inputs={},
        compute=compute,
    )
    return outputs.out.sha256


@flow
def one_stage(run_id: str, error: str) -> str:
    return flaky_stage(run_id, error)


def test_transient_engine_error_is_retried(prefect_api: str, emoflow_home: Path) -> None:
    calls.clear()
    run_id = start_run()
    assert len(one_stage(run_id, "engine")) == 64
    (step,) = open_store().run(run_id).steps
    assert (step.status, step.attempts, len(calls)) == ("succeeded", 2, 2)
    actions = [e.action for e in open_store().audit_events(run_id=run_id)]
    assert actions == ["run.start", "step.start", "step.fail", "step.start", "step.finish"]


def test_input_error_is_not_retried(prefect_api: str, emoflow_home: Path) -> None:
    calls.clear()
    run_id = start_run()
    with pytest.raises(InputError, match="bad script"):
        one_stage(run_id, "input")
    (step,) = open_store().run(run_id).steps
    assert (step.status, step.attempts, len(calls)) == ("failed", 1, 1)
