"""Which renders a worker routes to another work pool, and how it takes the result back from the store
(the routing itself, across two pools, is tests/reliability/test_stage_routing.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.render_stage import committed_render, routed
from kernel.errors import EngineError
from kernel.jobs import JobSpec
from kernel.settings import get_settings
from tasks.context import open_store
from tasks.intake import submit_job


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("deployment", "renderers", "renderer", "expected"),
    [
        ("", "diffusion", "diffusion", False),  # no deployment: everything renders here
        ("render-stage/gpu", "diffusion", "diffusion", True),
        ("render-stage/gpu", "diffusion", "preview", False),
        ("render-stage/gpu", " preview , diffusion", "preview", True),
    ],
)
def test_routed_needs_a_deployment_and_a_listed_renderer(
    monkeypatch: pytest.MonkeyPatch,
    fresh_settings: None,
    deployment: str,
    renderers: str,
    renderer: str,
    expected: bool,
) -> None:
    monkeypatch.setenv("EMOFLOW_RENDER_DEPLOYMENT", deployment)
    monkeypatch.setenv("EMOFLOW_ROUTED_RENDERERS", renderers)
    options = JobSpec(script="Hi.", portrait="skimage:astronaut").options(get_settings())
    assert routed(options.model_copy(update={"renderer": renderer})) is expected


@pytest.mark.parametrize("emoflow_home", ["sqlite"], indirect=True)
def test_a_finished_deployment_without_the_render_step_is_an_error(emoflow_home: Path) -> None:
    store = open_store()
    job_id = submit_job(JobSpec(script="Hi.", portrait="skimage:astronaut"), get_settings(), store)
    run_id = store.start_run(job_id, prefect_flow_run_id=None)
    inputs = {"speech": "a" * 64, "word_timings": "b" * 64, "curve": "c" * 64}
    with pytest.raises(EngineError, match="has no render step on these inputs"):
        committed_render(store, run_id, inputs)
