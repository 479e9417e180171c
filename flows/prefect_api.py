"""Prefect's record of a narration that the fast path resolved, written through Prefect's REST API with
httpx (importing Prefect costs a CLI process about 2 s).

What a cached `narrate` flow run leaves on the server, as far as a run without task runs can: a flow
run of the `narrate` flow named `narrate-<job id>` with the parameter `job_id` and no tags, Completed
(or Failed, with the error), and the run's markdown summary artifact. The store records the run first;
the flow run is created after, directly in its final state, so Prefect never shows a resolved run as
Completed before the store has it, and its start and end are the same instant (nothing ran). That is two
requests per run (a Running flow run later set Completed was three, and the client waited for its id).

Requests go one at a time over one keep-alive connection: Prefect's server on SQLite answered 503 to
two concurrent writes here. `later` sends them from one background thread instead, so the caller
writes the store while the server answers (the two share this machine's cores).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

import httpx

from kernel.errors import EngineError

FLOW_NAME = "narrate"
TIMEOUT_S = 5.0
ATTEMPTS = 3  # tries of each request on a transport error or a server error
RESOLVED = "resolved from the emoflow store: every step was already computed"
COMPLETED = {"type": "COMPLETED", "name": "Completed", "message": RESOLVED}

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
        self._flow_lookup: Future[str] | None = None
        self._one_at_a_time = threading.Lock()
        self._background: ThreadPoolExecutor | None = None

    @classmethod
    def from_environment(cls) -> PrefectRecorder | None:
        """The recorder for this process's Prefect server; None when there is none to write to (an
        ephemeral server lives only inside a process that imports Prefect)."""
        url = os.environ.get("PREFECT_API_URL")
        return cls(url).warm() if url else None

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

    def warm(self) -> PrefectRecorder:
        """Ask for the `narrate` flow's id in the background now, so that a CLI process has it (or
        knows the server is not answering) by the time its first job is resolved."""
        self._flow_lookup = self.later(self._flow)
        return self

    def ready(self) -> None:
        """Raise EngineError unless the server answers (asked once; `warm` may have asked already)."""
        if self._flow_lookup is not None:
            self._flow_lookup.result()
        self._flow()

    def record(self, job_id: str, error: str | None = None) -> str:
        """A `narrate` flow run for the job, created Completed (or Failed with `error`); its id."""
        state = {"type": "FAILED", "name": "Failed", "message": error} if error else COMPLETED
        run = self._post(
            "flow_runs/",
            {
                "flow_id": self._flow(),
                "name": f"{FLOW_NAME}-{job_id}",
                "parameters": {"job_id": job_id},
                "tags": [],
                "state": state,
                # a request sent again after a dropped connection finds the run it created, not a second
                "idempotency_key": f"emoflow-resolved-{uuid.uuid4()}",
            },
        )
        if run.get("state_type") != state["type"]:
            raise EngineError(f"Prefect did not create flow run {run.get('id')} {state['name']}")
        return str(run["id"])

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
