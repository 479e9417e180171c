"""The scheduled drain: a Prefect deployment that narrates every pending job on a cron schedule.

`emoflow schedule` serves it from this process (it needs a running Prefect server: set
PREFECT_API_URL; an ephemeral server never fires schedules). `prefect.yaml` describes the same
deployment for work pools and `prefect deploy`.
"""

from __future__ import annotations

from flows.batch import drain_queue_flow

DEFAULT_CRON = "0 2 * * *"  # nightly, 02:00 UTC


def serve_drain(name: str = "nightly-drain", cron: str = DEFAULT_CRON, limit: int | None = None) -> None:
    """Register the deployment `drain-queue/<name>` and run its flow runs until interrupted."""
    drain_queue_flow.serve(name=name, cron=cron, parameters={"limit": limit}, print_starting_message=False)
