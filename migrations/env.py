"""Alembic environment for the tagger library database.

`tagger.db.migrate.upgrade` passes an open connection in ``config.attributes["connection"]``; the
``alembic`` command line works too, with ``sqlalchemy.url`` set in its configuration.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from tagger.db.models import Base

config = context.config
target_metadata = Base.metadata


def _applied(*, ctx, step, heads, run_args) -> None:
    """Note each step applied, so that a failure names the step that failed (`tagger.db.migrate.upgrade`)."""
    config.attributes.setdefault("applied", []).append(step.up_revision_id)


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        on_version_apply=_applied,
    )


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
