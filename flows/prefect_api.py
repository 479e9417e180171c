"""Prefect's record of a narration that the fast path resolved, written through Prefect's REST API with
httpx (importing Prefect costs a CLI process about 2 s).

What a cached `narrate` flow run leaves on the server, as far as a run without task runs can: a flow
run of the `narrate` flow named `narrate-<job id>` with the parameter `job_id` and no tags, Running
then Completed (so it has a start and an end time), and the run's markdown summary artifact.

Requests go one at a time over one keep-alive connection: Prefect's server on SQLite answered 503 to
two concurrent writes here. `later` sends them from one background thread instead, so the caller
writes the store while the server answers (the two share this machine's cores). A manifest's runs
are completed together, 50 per request (`flow_runs/bulk_set_state`, the server's limit).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

import httpx

from kernel.errors import EngineError

FLOW_NAME = "narrate"
TIMEOUT_S = 5.0
ATTEMPTS = 3  # tries of each request on a transport error or a server error
RESOLVED = "resolved from the emoflow store: every step was already computed"
BULK_LIMIT = 50  # flow runs per bulk_set_state request: the most Prefect 3.8's server takes

P = ParamSpec("P")
T = TypeVar("T")


class PrefectRecorder:
    """A client of one Prefect API (PREFECT_API_URL); one connection for all of a process's runs."""

    def __init__(self, api_url: str) -> None:
        headers: dict[str, str] = {}
        if key := os.environ.get("PREFECT_API_KEY"):
            headers["Authorization"] = f"Bearer {key}"
        auth: tuple[str, str] | None = None
        if auth_string := os.environ.get("PREFECT_API_AUTH_STRING"):  # a self-hosted server's basic auth
            user, _, password = auth_string.partition(":")
            auth = (user, password)
        self._client = httpx.Client(
            base_url=api_url.rstrip("/") + "/", headers=headers, auth=auth, timeout=TIMEOUT_S
        )
        self._flow_id: str | None = None
        self._one_at_a_time = threading.Lock()
        self._background: ThreadPoolExecutor | None = None

    @classmethod
    def from_environment(cls) -> PrefectRecorder | None:
        """The recorder for this process's Prefect server; None when there is none to write to (an
        ephemeral server lives only inside a process that imports Prefect)."""
        url = os.environ.get("PREFECT_API_URL")
        return cls(url) if url else None

    def close(self) -> None:
        """Send what `later` queued, then close the connection."""
        if self._background is not None:
            self._background.shutdown(wait=True)
            self._background = None
        self._client.close()

    def later(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run `call` (one of this recorder's requests) in the recorder's background thread, after the
        calls queued before it."""
        if self._background is None:
            self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefect-recorder")
        return self._background.submit(call, *args, **kwargs)

    def complete(self, flow_run_id: str, summary_key: str, description: str, markdown: str) -> None:
        """The run's summary artifact, then its Completed state."""
        self.markdown(flow_run_id, summary_key, description, markdown)
        self.finish(flow_run_id)

    def complete_all(self, flow_run_ids: Sequence[str]) -> dict[str, str]:
        """Running flow runs set Completed, BULK_LIMIT per request; returns, by flow run id, why Prefect
        did not complete those it did not."""
        refused: dict[str, str] = {}
        completed = {"type": "COMPLETED", "name": "Completed", "message": RESOLVED}
        for start in range(0, len(flow_run_ids), BULK_LIMIT):
            chunk = list(flow_run_ids[start : start + BULK_LIMIT])
            answer = self._post(
                "flow_runs/bulk_set_state",
                {
                    "flow_runs": {"id": {"any_": chunk}},
                    "state": completed,
                    "force": False,
                    "limit": BULK_LIMIT,
                },
            )
            results = {str(result["flow_run_id"]): result for result in answer.get("results", [])}
            for flow_run_id in chunk:
                result = results.get(flow_run_id)
                if result is not None and result.get("status") == "ACCEPT":
                    continue
                # a request sent again after a dropped connection finds its runs Completed already
                if result is not None and self.flow_run(flow_run_id)["state_type"] == "COMPLETED":
                    continue
                why = result.get("details") if result is not None else "no such flow run"
                refused[flow_run_id] = f"Prefect did not accept flow run {flow_run_id}'s end: {why}"
        return refused

    def start(self, job_id: str) -> str:
        """A Running flow run of `narrate` for the job; returns its id."""
        run = self._post(
            "flow_runs/",
            {
                "flow_id": self._flow(),
                "name": f"{FLOW_NAME}-{job_id}",
                "parameters": {"job_id": job_id},
                "tags": [],
                "state": {"type": "RUNNING", "name": "Running", "message": RESOLVED},
                # a request sent again after a dropped connection finds the run it created, not a second
                "idempotency_key": f"emoflow-resolved-{uuid.uuid4()}",
            },
        )
        return str(run["id"])

    def finish(self, flow_run_id: str, error: str | None = None) -> None:
        state = (
            {"type": "FAILED", "name": "Failed", "message": error}
            if error
            else {
                "type": "COMPLETED",
                "name": "Completed",
                "message": RESOLVED,
            }
        )
        answer = self._post(f"flow_runs/{flow_run_id}/set_state", {"state": state, "force": False})
        if answer.get("status") != "ACCEPT" and self.flow_run(flow_run_id)["state_type"] != state["type"]:
            raise EngineError(f"Prefect did not accept flow run {flow_run_id}'s end: {answer.get('details')}")

    def markdown(self, flow_run_id: str, key: str, description: str, markdown: str) -> None:
        self._post(
            "artifacts/",
            {
                "key": key,
                "type": "markdown",
                "description": description,
                "data": markdown,
                "flow_run_id": flow_run_id,
            },
        )

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        try:
            with self._one_at_a_time:
                answer = self._client.get(f"flow_runs/{flow_run_id}")
            answer.raise_for_status()
            return dict(answer.json())
        except (httpx.HTTPError, ValueError) as exc:
            raise EngineError(f"Prefect API flow_runs/{flow_run_id}: {exc}") from exc

    def _flow(self) -> str:
        if self._flow_id is None:  # the server creates the flow, or answers with the one of that name
            self._flow_id = str(self._post("flows/", {"name": FLOW_NAME})["id"])
        return self._flow_id

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(ATTEMPTS):
            try:
                with self._one_at_a_time:
                    answer = self._client.post(path, json=body)
                if answer.status_code >= 500 and attempt + 1 < ATTEMPTS:
                    raise httpx.TransportError(f"{answer.status_code} {answer.reason_phrase}")
                answer.raise_for_status()
                return dict(answer.json())
            except httpx.TransportError as exc:  # a dropped keep-alive connection, a busy server
                if attempt + 1 == ATTEMPTS:
                    raise EngineError(f"Prefect API {path}: {exc}") from exc
                time.sleep(0.1 * (attempt + 1))
            except (httpx.HTTPError, ValueError) as exc:
                raise EngineError(f"Prefect API {path}: {exc}") from exc
        raise AssertionError("unreachable")
