"""Alembic, driven from code: `bff migrate`, the Procfile's release step and the test template."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from bff.db import normalise_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_url(database_url: str) -> str:
    """The SQLAlchemy async URL for a bff DATABASE_URL."""
    url = normalise_url(database_url)
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://") :]
    return "sqlite+aiosqlite://" + url[len("sqlite://") :]


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", alembic_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database to `revision`. Synchronous: call it outside a running event loop."""
    command.upgrade(alembic_config(database_url), revision)


def current_head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite:///:memory:")).get_current_head()
