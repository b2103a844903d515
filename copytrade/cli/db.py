"""`copytrade db`: schema migrations of the ledger database."""

from __future__ import annotations

import typer

from copytrade import migrate
from copytrade.cli.common import console, refuse
from copytrade.config import get_settings

app = typer.Typer(help="Ledger database: migrate and inspect the schema.", no_args_is_help=True)


@app.command()
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Migrate the ledger database (COPYTRADE_DATABASE_URL; default SQLite under var/) to REVISION."""
    from alembic.util import CommandError

    if not revision.strip():
        raise refuse("revision: '' is empty: give a revision id such as 0003, or head")
    try:
        current = migrate.upgrade(revision=revision)
    except CommandError as exc:  # an unknown or ambiguous revision id
        raise refuse(f"revision: {revision!r}: {exc}") from None
    console.print(f"ledger database at revision [bold]{current}[/] ({_where()})")


@app.command()
def current() -> None:
    """Print the ledger database's current revision."""
    console.print(migrate.current_revision() or "empty (run `copytrade db upgrade`)")


@app.command()
def revision(
    message: str = typer.Argument(
        ..., help="What the schema change does, e.g. 'index fills by time'."
    ),
) -> None:
    """Write the next migration (models/migrations/versions/NNNN_…) from the models' changes."""
    if not message.strip():
        raise refuse("message: '' is empty: say what the schema change does")
    path = migrate.new_revision(message)
    console.print(f"wrote [bold]{path}[/]; review it, then `copytrade db upgrade`")


def _where() -> str:
    from sqlalchemy.engine import make_url

    return make_url(get_settings().ledger_url).render_as_string(hide_password=True)
