"""Status values of jobs, runs and steps.

StrEnums, so a status still compares equal to (and serialises as) the plain string stored in the
database: `JobStatus.PENDING == "pending"`. The column values are exactly these strings.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "pending"  # queued, waiting for a drain to claim it
    CLAIMED = "claimed"  # a drain (or the submitting caller) owns it, no run started yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # its last run was cancelled on request


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABANDONED = "abandoned"  # its worker stopped renewing the job's lease; the job went back to the queue
    CANCELLED = "cancelled"  # stopped on request (`request_cancel`); its committed steps stay reusable


class StepStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CACHED = "cached"  # a committed step with the same cache key was reused
    INVALIDATED = "invalidated"  # `store verify --repair` found an output corrupt or missing


# steps whose outputs a later run may rely on
LIVE_STEP_STATUSES = (StepStatus.SUCCEEDED, StepStatus.CACHED)
