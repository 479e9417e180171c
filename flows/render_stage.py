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

A GPU worker can die mid-render, and Prefect then shows its flow run "Running" forever. So the render
beats in the store (stores/heartbeats.py) while it works, and the narration polls instead of blocking:

    flow run Scheduled / Late, no beat yet            -> waiting in the GPU queue: wait on
    flow run Pending, no beat yet                     -> a worker took it and is starting it: alive for
                                                         EMOFLOW_RENDER_START_SECONDS
    flow run Running, or a beat seen                  -> alive while its last sign of life (the beat,
                                                         or entering Running) is under the lease (the
                                                         longer of the beater's and the waiter's)
    silent past the lease, or Pending past the start  -> dead: the flow run set Crashed, the loss audited
                                                         (step.worker_lost), the render sent once more
    a second death                                    -> EngineError
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, cast
from uuid import UUID

import httpx
from prefect import flow, get_run_logger
from prefect.client.schemas.objects import StateType
from prefect.exceptions import PrefectHTTPStatusError
from prefect.runtime import flow_run as this_flow_run

from kernel.errors import EngineError, RunCancelled
from kernel.jobs import JobOptions
from kernel.progress import emit
from kernel.settings import get_settings
from stores.heartbeats import Beat, kept_heartbeat
from stores.records import ArtifactRef
from stores.schema import utcnow
from stores.status import StepStatus
from stores.store import ArtifactStore
from tasks.context import open_store
from tasks.job import load_job
from tasks.keys import stop_if_cancelled
from tasks.render import render_task
from tasks.stages import RENDER, JobInputs, Rendered

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRun, State

__all__ = ["Lost", "heartbeat_key", "render_elsewhere", "render_stage", "routed", "silence", "stalled_start"]

DONE = (StepStatus.SUCCEEDED, StepStatus.CACHED)
ATTEMPTS = 2  # a render whose worker died is sent once more; the second death fails the narration
POLL_SECONDS = 2.0  # at most; a quarter of the lease when that is shorter
LIVE = (StateType.RUNNING, StateType.CANCELLING)  # states in which a process should be beating


def heartbeat_key(flow_run_id: UUID | str) -> str:
    """What a render-stage flow run beats under in the store."""
    return f"render-stage:{flow_run_id}"


@flow(name="render-stage", flow_run_name="render-{run_id}", validate_parameters=False)
def render_stage(run_id: str, job_id: str, speech: str, word_timings: str, curve: str) -> str:
    """Render one narration's frames here; returns the frames' sha256 (the store holds the step)."""
    store = open_store()
    # first: the narration counts this run dead once it has been Running without a beat for a lease
    beating: AbstractContextManager[None] = (
        kept_heartbeat(store, heartbeat_key(this_flow_run.id)) if this_flow_run.id else nullcontext()
    )
    with beating:
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


@dataclass(frozen=True)
class Lost:
    """A routed render that stopped showing signs of life while Prefect still calls it live."""

    flow_run: FlowRun
    owner: str  # host:pid of its last beat (or, if it never beat, the worker's infrastructure id)
    silent_seconds: float
    why: str  # which sign of life stopped, against which limit

    @property
    def host(self) -> str:
        return self.owner.rsplit(":", 1)[0]


def silence(state: State, beat: Beat | None, now: datetime) -> float | None:
    """Seconds the routed render has shown no sign of life; None while it has not started.

    A run that no worker has started (Scheduled, Late, Pending, behind the GPU pool's concurrency
    limit) is waiting, not dead, however long it waits. Once it beat, or Prefect calls it Running, its
    last beat or its entering that state is the latest sign of life.
    """
    if beat is None and state.type not in LIVE:
        return None
    signs = [beat.beat_at] if beat else []
    if state.type in LIVE:
        signs.append(state.timestamp)
    return (now - max(signs)).total_seconds()


def stalled_start(state: State, beat: Beat | None, now: datetime) -> float | None:
    """Seconds a worker has held the routed render Pending without starting it; None otherwise.

    Pending is set by the worker that took the run, as it starts the process: a busy queue or a
    concurrency limit keeps runs Scheduled or Late instead, so a long Pending means that worker died.
    """
    if beat is not None or state.type != StateType.PENDING:
        return None
    return (now - state.timestamp).total_seconds()


def render_elsewhere(
    run_id: str, job: JobInputs, speech: ArtifactRef, word_timings: ArtifactRef, curve: ArtifactRef
) -> Rendered:
    """Run the render deployment for this narration, wait for it, and take its step from the store.

    A render whose worker died is crashed in Prefect and sent once more; a cancel request on the
    narration cancels the routed flow run too.
    """
    # only routing workers pay for importing these
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    deployment = get_settings().render_deployment
    store = open_store()
    emit("stage_started", RENDER.name)
    parameters = {
        "run_id": run_id,
        "job_id": job.job_id,
        "speech": speech.sha256,
        "word_timings": word_timings.sha256,
        "curve": curve.sha256,
    }
    lost: list[Lost] = []
    with get_client(sync_client=True) as client:
        while True:
            # timeout 0: only submit; the wait below tells a busy GPU queue from a dead GPU worker
            sent = cast("FlowRun", run_deployment(deployment, parameters=parameters, timeout=0))
            get_run_logger().info("render: sent to deployment %s (flow run %s)", deployment, sent.id)
            outcome = await_render(store, client, run_id, sent)
            store.forget_heartbeat(heartbeat_key(sent.id))
            if not isinstance(outcome, Lost):
                break
            lost.append(outcome)
            crash(store, client, run_id, outcome, again=len(lost) < ATTEMPTS)
            if len(lost) == ATTEMPTS:
                deaths = "; ".join(f"{death.host}: {death.why}" for death in lost)
                raise EngineError(
                    f"the render on {deployment} lost its worker {len(lost)} times ({deaths}); check the "
                    "GPU workers, then retry the job (its finished stages are reused)"
                )
    state = outcome.state
    if state is None or not state.is_completed():
        name = state.name if state else "without a state"
        message = f": {state.message}" if state and state.message else ""
        raise EngineError(f"the render on {deployment} (flow run {outcome.name}) ended {name}{message}")
    rendered = committed_render(store, run_id, parameters)
    emit("stage_finished", RENDER.name, False, 0.0)
    return rendered


def await_render(
    store: ArtifactStore,
    client: SyncPrefectClient,
    run_id: str,
    sent: FlowRun,
    start_seconds: float | None = None,
) -> FlowRun | Lost:
    """Poll the routed flow run and its heartbeat until it ends (the final flow run) or its worker is
    found dead (Lost). `start_seconds`: how long Pending may last (EMOFLOW_RENDER_START_SECONDS)."""
    key, poll = heartbeat_key(sent.id), min(POLL_SECONDS, store.lease_seconds / 4)
    start_limit = get_settings().render_start_seconds if start_seconds is None else start_seconds
    while True:
        try:
            stop_if_cancelled(store, run_id, RENDER.name)
        except RunCancelled as exc:
            cancel(client, sent, str(exc))
            raise
        current = client.read_flow_run(sent.id)
        state = current.state
        if state is not None and state.is_final():
            return current
        if state is not None and (lost := judged(store, current, state, store.heartbeat(key), start_limit)):
            return lost
        time.sleep(poll)


def judged(
    store: ArtifactStore, current: FlowRun, state: State, beat: Beat | None, start_limit: float
) -> Lost | None:
    """The routed render found dead by its last sign of life, or None while it may still be alive."""
    now, owner = utcnow(), beat.owner if beat else current.infrastructure_pid or "an unknown worker"
    lease = beat.stale_after(store.lease_seconds) if beat else store.lease_seconds
    quiet = silence(state, beat, now)
    if quiet is not None and quiet > lease:
        return Lost(
            current,
            owner,
            quiet,
            f"no heartbeat for {quiet:.0f} s (lease {lease:g} s, EMOFLOW_LEASE_SECONDS)",
        )
    starting = stalled_start(state, beat, now)
    if starting is not None and starting > start_limit:
        why = f"Pending for {starting:.0f} s, never started (EMOFLOW_RENDER_START_SECONDS={start_limit:g})"
        return Lost(current, owner, starting, why)
    return None


def crash(store: ArtifactStore, client: SyncPrefectClient, run_id: str, lost: Lost, again: bool) -> None:
    """Set the dead render's flow run Crashed (it would stay Running, holding a GPU pool slot) and
    record the lost worker in the store (its running render step fails; the next attempt reopens it)."""
    from prefect.states import Crashed

    then = "sending the render again" if again else "the narration fails"
    message = f"render worker {lost.host} went silent: {lost.why}; {then}"
    client.set_flow_run_state(lost.flow_run.id, Crashed(message=message), force=True)
    details = {
        "host": lost.host,
        "owner": lost.owner,
        "flow_run": str(lost.flow_run.id),
        "flow_run_name": lost.flow_run.name,
        "silent_seconds": round(lost.silent_seconds, 1),
        "again": again,
    }
    store.record_lost_worker(
        heartbeat_key(lost.flow_run.id), run_id=run_id, stage=RENDER.name, why=message, details=details
    )
    get_run_logger().warning("render: flow run %s crashed: %s", lost.flow_run.name, message)


def cancel(client: SyncPrefectClient, sent: FlowRun, why: str) -> None:
    """Ask Prefect to cancel the routed flow run (a queued one is cancelled at once, a running one by its
    worker). Best effort: the render also stops on its own, at its next progress report."""
    from prefect.states import Cancelling

    try:
        client.set_flow_run_state(sent.id, Cancelling(message=why))
    except (PrefectHTTPStatusError, httpx.HTTPError) as exc:
        get_run_logger().warning("render: could not cancel flow run %s: %s", sent.id, exc)


def committed_render(store: ArtifactStore, run_id: str, inputs: dict[str, str]) -> Rendered:
    """The run's render step on these inputs, as the other worker committed (or reused) it."""
    wanted = {name: inputs[name] for name in ("speech", "word_timings", "curve")}
    for step in reversed(store.run(run_id).steps):
        got = {name: step.inputs[name].sha256 for name in wanted if name in step.inputs}
        if step.stage == RENDER.name and step.status in DONE and got == wanted:
            return Rendered(**step.outputs)
    raise EngineError(f"the render deployment finished, but run {run_id} has no render step on these inputs")
