"""Alembic environment: the engine comes from stores.db, so migrations use the store's own settings."""

from alembic import context

from stores.schema import Base

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
