"""The `bff` command: run, migrate, seed, token, export-schema, check-schema, register-operations."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bff.config import load_settings

app = typer.Typer(help="bff: a GraphQL backend-for-frontend for mobile apps.", no_args_is_help=True)
err = Console(stderr=True)


@app.command()
def run(
    host: str | None = typer.Option(None, help="Interface to bind (default: HOST)"),
    port: int | None = typer.Option(None, help="Port (default: PORT)"),
    workers: int | None = typer.Option(None, help="Worker processes (default: WEB_CONCURRENCY)"),
    migrate: bool = typer.Option(True, help="Apply migrations first"),
    seed: str | None = typer.Option(
        None, help="Seed this size first when the database is empty (tiny|small|medium)"
    ),
) -> None:
    """Serve the BFF with uvicorn (GraphQL, WebSocket and the playground on /graphql); several
    workers each listen on a socket of their own (bff/workers.py)."""
    import uvicorn

    from bff import workers as worker_processes

    settings = load_settings()
    if migrate:
        _migrate(settings.database_url)
    if seed:
        _seed(settings.database_url, seed, reset=False)
    config = uvicorn.Config(
        "bff.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers or settings.web_concurrency,
        log_level="warning",
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
        # permessage-deflate costs ~50 KiB per socket and CPU per frame; frames are small JSON.
        ws_per_message_deflate=False,
        ws="bff.ws_protocol:WebSocketProtocol",  # uvicorn's, holding less per idle socket
    )
    worker_processes.run(config)


def _migrate(database_url: str) -> None:
    from bff.migrate import upgrade

    with err.status("Applying migrations…"):
        upgrade(database_url)
    err.print("[green]Database at the latest migration[/green]")


@app.command()
def migrate() -> None:
    """Apply Alembic migrations to DATABASE_URL (Postgres or SQLite)."""
    _migrate(load_settings().database_url)


def _seed(database_url: str, size: str, *, reset: bool) -> None:
    from bff.db import Database
    from bff.seed import TABLES, seed

    async def go() -> None:
        db = Database(database_url)
        await db.connect()
        try:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} tables"),
                TimeElapsedColumn(),
                console=err,
            ) as progress:
                task = progress.add_task(f"Seeding {size}", total=len(TABLES))

                def step(table: str, rows: int) -> None:
                    progress.update(task, advance=1, description=f"Seeding {size}: {table} ({rows:,} rows)")

                result = await seed(db, size, reset=reset, progress=step)
        finally:
            await db.disconnect()
        if result.loaded:
            err.print(
                f"[green]Seeded {size}[/green]: " + ", ".join(f"{t} {n:,}" for t, n in result.rows.items())
            )
        else:
            err.print(f"Already seeded ({result.size}); nothing to do. Use --reset to reload.")

    asyncio.run(go())


@app.command()
def seed(
    size: str = typer.Option("small", help="tiny | small | medium (the reference dataset)"),
    reset: bool = typer.Option(False, help="Empty the tables and load again"),
    migrate: bool = typer.Option(True, help="Apply migrations first"),
) -> None:
    """Load the reference dataset (deterministic from seed 42). Re-running does not duplicate it."""
    settings = load_settings()
    if migrate:
        _migrate(settings.database_url)
    _seed(settings.database_url, size, reset=reset)


@app.command()
def token(
    user: int = typer.Option(..., "--user", help="Database id of the user"),
    ttl: int | None = typer.Option(None, help="Lifetime in seconds (default: JWT_TTL_SECONDS)"),
    count: int = typer.Option(1, help="Print tokens for users USER..USER+COUNT-1, one per line (load tests)"),
) -> None:
    """Print a development token (signed with JWT_SECRET) for a user."""
    from bff.auth import TokenVerifier

    verifier = TokenVerifier(load_settings())
    for user_id in range(user, user + count):
        typer.echo(verifier.issue(user_id, ttl))


@app.command("export-schema")
def export_schema(output: Path = typer.Option(Path("schema.graphql"), help="Where to write the SDL")) -> None:
    """Write the schema's SDL (commit it: clients and the breaking-change check read it)."""
    from bff.schema_check import export_sdl

    output.write_text(export_sdl())
    err.print(f"Wrote {output}")


@app.command("check-schema")
def check_schema() -> None:
    """Fail on a stale schema.graphql or an unacknowledged breaking change."""
    from bff.schema_check import ACK_FILE, ROOT, SDL_FILE, export_sdl, unacknowledged

    current = export_sdl()
    problems = 0
    if (ROOT / SDL_FILE).read_text() != current:
        err.print(f"[red]{SDL_FILE} is stale[/red]: run `bff export-schema` and commit it")
        problems += 1
    for change in unacknowledged(current):
        err.print(f"[red]Breaking change[/red] ({change.between}): {change.description}")
        problems += 1
    if problems:
        err.print(f"Acknowledge intended breaking changes in {ACK_FILE} with a reason.")
        raise typer.Exit(1)
    err.print("[green]Schema up to date, no unacknowledged breaking change[/green]")


@app.command("register-operations")
def register_operations(
    manifest: Path = typer.Argument(
        ..., help="Apollo persisted-query manifest, or a JSON {sha256: query} map"
    ),
    migrate: bool = typer.Option(True, help="Apply migrations first"),
) -> None:
    """Store trusted operations in the database: with TRUSTED_DOCUMENTS=true only these run."""
    import json

    from graphql import GraphQLSyntaxError, parse, validate

    from bff.db import Database
    from bff.persisted import read_manifest, register
    from schema import schema

    settings = load_settings()
    try:
        entries = read_manifest(json.loads(manifest.read_text()))
    except (OSError, ValueError) as error:  # unreadable, not JSON, or not a manifest
        err.print(f"[red]{manifest}[/red]: {error}")
        raise typer.Exit(1) from None
    problems = 0
    for digest, name, body in entries:
        try:
            errors = validate(schema._schema, parse(body))
        except GraphQLSyntaxError as error:
            errors = [error]
        for invalid in errors:
            err.print(f"[red]{name or digest[:12]}[/red]: {invalid.message}")
            problems += 1
    if problems:
        err.print("Nothing registered: every operation must be valid against the current schema.")
        raise typer.Exit(1)
    if migrate:
        _migrate(settings.database_url)

    async def go() -> int:
        db = Database(settings.database_url)
        await db.connect()
        try:
            return await register(db, entries)
        finally:
            await db.disconnect()

    added = asyncio.run(go())
    err.print(f"[green]Registered {len(entries)} operations[/green] ({added} new)")


if __name__ == "__main__":  # pragma: no cover
    app()
