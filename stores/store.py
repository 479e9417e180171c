"""The artifact store API: what tasks, the CLI and the inspector call. No Prefect here.

`ArtifactStore` is composed of cohesive parts, each a mixin over stores/base.py's `StoreBase`:

- stores/artifacts.py: blobs and artifacts, exports, lineage queries (`producer_of`, `consumers_of`);
- stores/runs.py: jobs, runs and steps (begin, commit, fail, cache hits);
- stores/queue.py: drains claiming pending jobs;
- stores/leases.py: who holds a claimed or running job, renewed while it works, reclaimed when it lapses;
- stores/audit.py: the append-only audit trail;
- stores/heartbeats.py: a process working for another shows it is alive (routed renders);
- stores/registry.py: registered (named, versioned) models.
"""

from __future__ import annotations

from stores.artifacts import ArtifactsMixin
from stores.audit import AuditMixin
from stores.base import SYSTEM_ACTOR
from stores.heartbeats import HeartbeatMixin
from stores.queue import QueueMixin
from stores.registry import RegistryMixin
from stores.runs import RunsMixin

__all__ = ["SYSTEM_ACTOR", "ArtifactStore"]


class ArtifactStore(RunsMixin, RegistryMixin, ArtifactsMixin, QueueMixin, AuditMixin, HeartbeatMixin):
    """One SQL database (SQLite or PostgreSQL, migrated on open) plus one content-addressed blob store."""
