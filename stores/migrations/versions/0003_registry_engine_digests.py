"""Registered models; steps record the digests their engine identity covered.

- ``registered_models``: (kind, name, version) -> artifact. Backfilled from the audit trail, where
  models were named until now: every "efp.train" event becomes an "efp" registration under its name,
  every "renderer.train" event a "renderer" registration named "renderer", in event order.
- ``steps.engine_digests``: JSON, not null; existing steps get ``{}``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)

# audit action -> (detail naming the artifact, artifact kind, registry kind, name if the event has none)
BACKFILL: dict[str, tuple[str, str, str, str]] = {
    "efp.train": ("model", "efp-model", "efp", ""),
    "renderer.train": ("weights", "renderer-weights", "renderer", "renderer"),
}


def upgrade() -> None:
    op.create_table(
        "registered_models",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("artifact_id", sa.Integer(), sa.ForeignKey("artifacts.id"), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("kind", "name", "version", name="uq_registered_models_kind_name_version"),
    )
    op.create_index("ix_registered_models_sha256", "registered_models", ["sha256"])
    # batch mode: SQLite adds the column in place, and rebuilds the table only where it must
    with op.batch_alter_table("steps") as batch:
        batch.add_column(
            sa.Column("engine_digests", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    _backfill_registry()


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("engine_digests")
    op.drop_index("ix_registered_models_sha256", table_name="registered_models")
    op.drop_table("registered_models")


def _backfill_registry() -> None:
    """Names that lived only in audit events become registrations (the events themselves stay)."""
    bind = op.get_bind()
    events = sa.table(
        "audit_events",
        sa.column("id", sa.Integer()),
        sa.column("at", TS),
        sa.column("actor", sa.String()),
        sa.column("action", sa.String()),
        sa.column("details", sa.JSON()),
    )
    artifacts = sa.table(
        "artifacts",
        sa.column("id", sa.Integer()),
        sa.column("sha256", sa.String()),
        sa.column("kind", sa.String()),
    )
    models = sa.table(
        "registered_models",
        sa.column("kind", sa.String()),
        sa.column("name", sa.String()),
        sa.column("version", sa.Integer()),
        sa.column("sha256", sa.String()),
        sa.column("artifact_id", sa.Integer()),
        sa.column("metadata", sa.JSON()),
        sa.column("actor", sa.String()),
        sa.column("created_at", TS),
    )
    rows = bind.execute(
        sa.select(events.c.id, events.c.at, events.c.actor, events.c.action, events.c.details)
        .where(events.c.action.in_(list(BACKFILL)))
        .order_by(events.c.id)
    )
    versions: dict[tuple[str, str], int] = {}
    for event_id, at, actor, action, details in rows.all():
        sha_key, artifact_kind, registry_kind, default_name = BACKFILL[action]
        details = details or {}
        name, sha256 = str(details.get("name") or default_name), details.get(sha_key)
        if not name or not sha256:
            continue
        artifact_id = bind.execute(
            sa.select(artifacts.c.id).where(artifacts.c.sha256 == sha256, artifacts.c.kind == artifact_kind)
        ).scalar()
        if artifact_id is None:
            continue  # the artifact row is gone; nothing to name
        version = versions[registry_kind, name] = versions.get((registry_kind, name), 0) + 1
        meta = {k: v for k, v in details.items() if k not in ("name", sha_key)}
        bind.execute(
            models.insert().values(
                kind=registry_kind,
                name=name,
                version=version,
                sha256=sha256,
                artifact_id=artifact_id,
                metadata=meta | {"audit_event": event_id},
                actor=actor,
                created_at=at,
            )
        )
