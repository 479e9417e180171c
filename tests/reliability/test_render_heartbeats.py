"""The pieces that tell a dead routed render from a slow or queued one, without a cluster (the whole
story, with a real GPU worker killed, is test_render_worker_death.py): heartbeats in the store, on
SQLite and PostgreSQL alike, and the narration's reading of a flow run's state beside its beat."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import uuid4

import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.states import Cancelling, Completed, Late, Pending, Running, Scheduled

from flows.render_stage import Lost, await_render, heartbeat_key, silence, stalled_start
from kernel.errors import RunCancelled
from stores.heartbeats import SWEEP_AFTER, WORKER_LOST, Beat, HeartbeatRow, kept_heartbeat
from stores.leases import process_owner
from stores.schema import utcnow
from stores.status import StepStatus
from stores.store import ArtifactStore
from tests.stores.helpers import new_run

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=utcnow().tzinfo)


def _beat(seconds_ago: float) -> Beat:
    at = NOW - timedelta(seconds=seconds_ago)
    return Beat("render-stage:x", "gpu-a:41", at, at)


def test_a_kept_heartbeat_beats_while_the_work_runs_and_leaves_its_last_beat(store: ArtifactStore) -> None:
    store.lease_seconds = 0.3  # a beat every 0.1 s
    with kept_heartbeat(store, "render-stage:1"):
        first = store.heartbeat("render-stage:1")
        assert first is not None and first.owner == process_owner() and first.age() < 5
        time.sleep(0.5)
        renewed = store.heartbeat("render-stage:1")
        assert renewed is not None and renewed.beat_at > first.beat_at
        assert renewed.started_at == first.started_at
    last = store.heartbeat("render-stage:1")
    assert last is not None  # for the waiting side to forget, once it has seen the flow run end
    store.forget_heartbeat("render-stage:1")
    assert store.heartbeat("render-stage:1") is None


def test_a_new_heartbeat_sweeps_beats_left_over_for_a_day(store: ArtifactStore) -> None:
    store.beat("render-stage:old", "gpu-a:1")
    with store._session() as session:
        row = session.get(HeartbeatRow, "render-stage:old")
        assert row is not None
        row.beat_at = utcnow() - SWEEP_AFTER - timedelta(minutes=1)
    store.beat("render-stage:new", "gpu-b:2")
    assert store.heartbeat("render-stage:old") is None and store.heartbeat("render-stage:new") is not None


def test_a_lost_worker_fails_its_running_step_which_the_next_attempt_reopens(store: ArtifactStore) -> None:
    run_id = new_run(store)
    begun = {"run_id": run_id, "stage": "render", "engine": "e", "engine_version": "1", "params": {}}
    step_id = store.begin_step(**begun, cache_key="k", inputs={})
    store.beat("render-stage:1", "gpu-a:41")
    failed = store.record_lost_worker(
        "render-stage:1", run_id=run_id, stage="render", why="gpu-a went silent", details={"host": "gpu-a"}
    )
    assert failed == [step_id] and store.heartbeat("render-stage:1") is None
    (step,) = store.run(run_id).steps
    assert step.status == StepStatus.FAILED and step.error == "gpu-a went silent"
    (event,) = store.audit_events_by_action(WORKER_LOST)
    assert event.run_id == run_id and event.details == {
        "stage": "render",
        "why": "gpu-a went silent",
        "host": "gpu-a",
    }
    assert store.begin_step(**begun, cache_key="k", inputs={}) == step_id  # the next GPU worker's attempt
    assert store.run(run_id).steps[0].attempts == 2


@pytest.mark.parametrize("waiting", [Scheduled(), Late()], ids=lambda s: s.name)
def test_a_render_in_the_queue_is_waiting_however_long(waiting: State) -> None:
    waiting.timestamp = NOW - timedelta(hours=3)  # a busy GPU queue, or the pool's concurrency limit
    assert silence(waiting, None, NOW) is None and stalled_start(waiting, None, NOW) is None


def test_a_render_a_worker_took_is_starting_until_it_beats() -> None:
    taken = Pending(timestamp=NOW - timedelta(seconds=40))
    assert silence(taken, None, NOW) is None  # not judged by the lease: a start may be slow
    assert stalled_start(taken, None, NOW) == 40
    assert stalled_start(taken, _beat(3), NOW) is None  # it beat: the lease judges it


def test_a_beat_is_stale_after_the_longer_of_the_two_leases(store: ArtifactStore) -> None:
    store.lease_seconds = 300.0  # the GPU pool's: it beats every 100 s
    store.beat("render-stage:1", "gpu-a:41")
    beat = store.heartbeat("render-stage:1")
    assert beat is not None and beat.lease_seconds == 300.0
    assert beat.stale_after(60.0) == 300.0 and beat.stale_after(600.0) == 600.0
    assert _beat(0).stale_after(60.0) == 60.0  # a beat from before the lease was recorded


def test_a_running_render_is_silent_since_its_last_sign_of_life() -> None:
    since_running = Running(timestamp=NOW - timedelta(seconds=90))
    assert silence(since_running, None, NOW) == 90  # died before its first beat
    assert silence(since_running, _beat(4), NOW) == 4
    assert silence(Running(timestamp=NOW - timedelta(seconds=2)), _beat(30), NOW) == 2  # retried
    assert silence(Cancelling(timestamp=NOW - timedelta(seconds=70)), _beat(65), NOW) == 65


def test_a_render_back_in_pending_after_it_beat_is_judged_by_its_beat() -> None:
    assert silence(Pending(timestamp=NOW - timedelta(seconds=1)), _beat(75), NOW) == 75


class FakePrefect:
    """The two calls the narration's wait makes, over a scripted sequence of flow run states."""

    def __init__(self, *states: State) -> None:
        self.run = FlowRun(id=uuid4(), name="render-x", flow_id=uuid4(), state=states[0])
        self.states, self.proposed = list(states), list[State]()

    def read_flow_run(self, flow_run_id: Any) -> FlowRun:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return self.run.model_copy(update={"state": state})

    def set_flow_run_state(self, flow_run_id: Any, state: State, force: bool = False) -> None:
        self.proposed.append(state)


def _wait(store: ArtifactStore, fake: FakePrefect, run_id: str) -> FlowRun | Lost:
    return await_render(store, cast(SyncPrefectClient, fake), run_id, fake.run)


def test_a_render_queued_for_longer_than_the_lease_is_waited_for(store: ArtifactStore) -> None:
    store.lease_seconds = 0.2  # polls every 0.05 s; the queue outlasts the lease eight times over
    fake = FakePrefect(*[Scheduled()] * 16, Late(), Late(), Pending(), Pending(), Completed())
    finished = _wait(store, fake, new_run(store))
    assert isinstance(finished, FlowRun) and finished.state is not None
    assert finished.state.type == StateType.COMPLETED and not fake.proposed


def test_a_running_render_silent_past_the_lease_is_lost(store: ArtifactStore) -> None:
    store.lease_seconds = 0.2
    fake = FakePrefect(Running())
    store.beat(heartbeat_key(fake.run.id), "gpu-a:41")
    lost = _wait(store, fake, new_run(store))  # Prefect says Running forever; the beat goes stale
    assert isinstance(lost, Lost) and lost.host == "gpu-a" and lost.silent_seconds > 0.2


def test_a_beat_within_its_workers_longer_lease_is_alive(store: ArtifactStore) -> None:
    store.lease_seconds = 3.0
    fake = FakePrefect(Running(timestamp=utcnow() - timedelta(seconds=30)), Completed())
    store.beat(heartbeat_key(fake.run.id), "gpu-a:41")
    with store._session() as session:  # beaten 1.5 s ago by a GPU worker whose lease is 3 s ...
        row = session.get(HeartbeatRow, heartbeat_key(fake.run.id))
        assert row is not None
        row.beat_at = utcnow() - timedelta(seconds=1.5)
    store.lease_seconds = 0.2  # ... read by a narration whose lease is 0.2 s
    finished = _wait(store, fake, new_run(store))
    assert isinstance(finished, FlowRun) and not fake.proposed


def test_a_render_pending_past_the_start_allowance_is_lost(store: ArtifactStore) -> None:
    store.lease_seconds = 0.2
    fake = FakePrefect(Pending(timestamp=utcnow()))  # its worker was killed as it started the process
    lost = await_render(store, cast(SyncPrefectClient, fake), new_run(store), fake.run, start_seconds=0.3)
    assert isinstance(lost, Lost) and lost.silent_seconds > 0.3
    assert "Pending for" in lost.why and "EMOFLOW_RENDER_START_SECONDS=0.3" in lost.why


def test_cancelling_the_narration_cancels_the_render_it_waits_for(store: ArtifactStore) -> None:
    run_id = new_run(store)
    store.request_cancel(run_id, "ann")
    fake = FakePrefect(Scheduled())
    with pytest.raises(RunCancelled, match="cancelled by ann"):
        _wait(store, fake, run_id)
    assert [state.type for state in fake.proposed] == [StateType.CANCELLING]
