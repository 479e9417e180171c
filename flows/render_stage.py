"""Stage 5 on another work pool: a narration on a CPU worker hands its render to a GPU worker.

    narrate (cpu pool) ─ plan ─ speak ─ align ─ feel ─┐                     ┌─ publish (cpu pool)
                                                      └─ render-stage ──────┘
                                                         (gpu pool: EMOFLOW_RENDER_DEPLOYMENT)

With EMOFLOW_RENDER_DEPLOYMENT set on the CPU workers, jobs whose renderer is in
EMOFLOW_ROUTED_RENDERERS (the diffusion renderer by default) are rendered by that deployment's flow
run, while the narration waits and keeps its job lease. The two sides share nothing but the store:
the render flow reads its inputs there by content hash, commits the render step to the narration's
run, and the narration reads the step's output back. The GPU pool's concurrency limit decides how many
renders run at once (docs/deploy.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from prefect import flow, get_run_logger

from kernel.errors import EngineError
from kernel.jobs import JobOptions
from kernel.progress import emit
from kernel.settings import get_settings
from stores.records import ArtifactRef
from stores.status import StepStatus
from stores.store import ArtifactStore
from tasks.context import open_store
from tasks.job import load_job
from tasks.render import render_task
from tasks.stages import RENDER, JobInputs, Rendered

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

__all__ = ["render_elsewhere", "render_stage", "routed"]

DONE = (StepStatus.SUCCEEDED, StepStatus.CACHED)


@flow(name="render-stage", flow_run_name="render-{run_id}", validate_parameters=False)
def render_stage(run_id: str, job_id: str, speech: str, word_timings: str, curve: str) -> str:
    """Render one narration's frames here; returns the frames' sha256 (the store holds the step)."""
    store = open_store()
    job = load_job(store, job_id)
    rendered = render_task()(
        run_id,
        job.portrait,
        store.artifact(speech, kind="speech"),
        store.artifact(word_timings, kind="word-timings"),
        store.artifact(curve),  # the predictor's curve or an edit of it: kinds differ, the hash says
        job.options,
    )
    return rendered.frames.sha256


def routed(options: JobOptions) -> bool:
    """Whether this worker sends the job's render to EMOFLOW_RENDER_DEPLOYMENT."""
    settings = get_settings()
    renderers = {name.strip() for name in settings.routed_renderers.split(",") if name.strip()}
    return bool(settings.render_deployment) and options.renderer in renderers


def render_elsewhere(
    run_id: str, job: JobInputs, speech: ArtifactRef, word_timings: ArtifactRef, curve: ArtifactRef
) -> Rendered:
    """Run the render deployment for this narration, wait for it, and take its step from the store."""
    from prefect.deployments import run_deployment  # only routing workers pay for importing it

    deployment = get_settings().render_deployment
    emit("stage_started", RENDER.name)
    get_run_logger().info("render: sent to deployment %s", deployment)
    parameters = {
        "run_id": run_id,
        "job_id": job.job_id,
        "speech": speech.sha256,
        "word_timings": word_timings.sha256,
        "curve": curve.sha256,
    }
    # called from a flow, so it blocks (sync); timeout None: wait however long the GPU queue is
    flow_run = cast("FlowRun", run_deployment(deployment, parameters=parameters, timeout=None))
    state = flow_run.state
    if state is None or not state.is_completed():
        name = state.name if state else "without a state"
        message = f": {state.message}" if state and state.message else ""
        raise EngineError(f"the render on {deployment} (flow run {flow_run.name}) ended {name}{message}")
    rendered = committed_render(open_store(), run_id, parameters)
    emit("stage_finished", RENDER.name, False, 0.0)
    return rendered


def committed_render(store: ArtifactStore, run_id: str, inputs: dict[str, str]) -> Rendered:
    """The run's render step on these inputs, as the other worker committed (or reused) it."""
    wanted = {name: inputs[name] for name in ("speech", "word_timings", "curve")}
    for step in reversed(store.run(run_id).steps):
        got = {name: step.inputs[name].sha256 for name in wanted if name in step.inputs}
        if step.stage == RENDER.name and step.status in DONE and got == wanted:
            return Rendered(**step.outputs)
    raise EngineError(f"the render deployment finished, but run {run_id} has no render step on these inputs")
