"""`emoflow store verify [--repair]`: re-hash every blob and check rows, lineage and steps agree.

Register in emoflow/cli.py with:

    from emoflow.commands.store import store_app
    app.add_typer(store_app, name="store")
"""

from __future__ import annotations

import getpass
import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kernel.errors import EmoflowError
from kernel.settings import get_settings

if TYPE_CHECKING:
    from stores.verify import VerifyReport

store_app = typer.Typer(
    name="store",
    help="Check and repair the artifact store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
_console = Console()
_errors = Console(stderr=True)


@store_app.callback()
def _group() -> None:
    """Check and repair the artifact store."""


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@store_app.command("verify")
def verify(
    repair: Annotated[
        bool,
        typer.Option("--repair", help="Quarantine bad blobs, invalidate their steps, close dead runs."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    stale_hours: Annotated[
        float, typer.Option(help="Runs of other hosts still 'running' after this long count as abandoned.")
    ] = 24.0,
) -> None:
    """Re-hash every blob; report corrupt, orphan and missing blobs, temp files, dangling rows and
    stuck steps. Exit 1 when problems were found and not repaired."""
    from datetime import timedelta

    from stores.store import ArtifactStore
    from stores.verify import verify_store

    try:
        store = ArtifactStore.from_settings(get_settings())
        report = verify_store(store, repair=repair, actor=_actor(), stale_after=timedelta(hours=stale_hours))
    except EmoflowError as exc:
        _errors.print(Text.assemble(("error: ", "red"), str(exc).splitlines()[0]), highlight=False)
        raise typer.Exit(code=1) from None
    if as_json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        _print(report)
    if not report.ok:
        raise typer.Exit(code=1)


def _print(report: VerifyReport) -> None:
    problems = report.problems
    summary = (
        f"{report.blobs_checked} blobs re-hashed, {report.artifacts_checked} artifacts, "
        f"{report.steps_checked} steps checked: {len(problems)} problem(s)"
    )
    if problems:
        table = Table("problem", "subject", "detail", "repaired")
        for p in problems:
            table.add_row(p.kind, p.subject, Text(p.detail), "yes" if p.repaired else "no")
        _console.print(table)
    _console.print(summary)
    for path in report.quarantined:
        _console.print(Text(f"quarantined: {path}"))
