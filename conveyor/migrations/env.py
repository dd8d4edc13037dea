"""Alembic environment: runs migrations on the connection or URL handed over by Conveyor."""

from __future__ import annotations

from alembic import context

from conveyor.kernel.db import Base, make_engine
from conveyor.migrations.models import import_all_models

import_all_models()
config = context.config
target_metadata = Base.metadata


def run() -> None:
    """Run migrations online against the configured database."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        context.configure(
            connection=conn,
            target_metadata=target_metadata,
            render_as_batch=conn.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
